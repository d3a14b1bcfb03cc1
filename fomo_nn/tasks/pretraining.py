"""Pretraining: a corpus of single-channel images (subject and session kept for pair sampling), no target.

Training recipe: AdamW 1e-4, weight decay 0.05, 10 warm-up epochs then cosine, 100 epochs of 250
steps (the FOMO25 baseline's optimiser and length; MAE-style weight decay). The augmentation family
is chosen at planning time (fomo_nn_plan_and_preprocess --pretraining-family): reconstruction
objectives and contrastive ones want different presets. Its networks come from the pretraining
method (fomo_nn.networks.builders.build_pretraining_network), and its checkpoints do not predict:
they are finetuned first.
"""
from fomo_nn.tasks.kind import TaskKind

PRETRAINING = TaskKind(
    name="pretraining", target=None, label_field=None, default_trainer="mae",
    augmentation_families=("pretraining_reconstruction", "pretraining_contrastive"),
    training={"optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 0.05, "schedule": "warmup_cosine",
              "warmup_epochs": 10, "epochs": 100, "iterations_per_epoch": 250},
    corpus=True,
)
