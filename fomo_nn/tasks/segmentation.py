"""Segmentation: a label per voxel, any number of labels (FOMO25/26 task 2, meningioma: 0/1; FOMO26 task 4,
trigeminal neuralgia: 0 background, 1 nerve, 2 vessel), scored by Dice and NSD (per class without the
background for FOMO26, fomo_nn.evaluation.multiclass). One output channel per label, soft Dice over the
foreground classes + cross-entropy, the argmax written as the label values.

Training recipe from scratch: nnU-Net's proven one, SGD 0.01 with Nesterov momentum 0.99 and a poly
schedule, 1000 epochs of 250 steps. Finetuning a pretrained encoder (--plans-like) uses AdamW 1e-4
with 5 warm-up epochs and cosine instead, 200 epochs of 250 steps: SGD at 0.01 tends to wash out
pretrained features. A third of the patches are centred on foreground; a U-Net decoder on the
encoder; a case's prediction is Gaussian-weighted sliding-window class probabilities (mirroring TTA
by default), written as a mask in the input's exact grid.
"""
from fomo_nn.tasks.kind import VOXELS, Evaluation, MetricSpec, TaskKind

SEGMENTATION = TaskKind(
    name="segmentation", target=VOXELS, label_field="labels", default_trainer="segmentation",
    augmentation_families=("segmentation",),
    training={"optimizer": "sgd", "learning_rate": 1e-2, "weight_decay": 3e-5, "momentum": 0.99, "schedule": "poly",
              "warmup_epochs": 0, "epochs": 1000, "iterations_per_epoch": 250},
    finetuning_training={"optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 3e-5,
                         "schedule": "warmup_cosine", "warmup_epochs": 5, "epochs": 200, "iterations_per_epoch": 250},
    foreground_oversampling=0.33, tta=True, network_settings=("fusion_weighting", "deep_supervision"),
    network="fomo_nn.networks.builders:segmentation_network",
    predict="fomo_nn.inference.case_prediction:voxel_class_probabilities",
    export="fomo_nn.inference.export:export_segmentation_case",
    evaluation=Evaluation(
        metrics=(MetricSpec("dice", "Dice", True), MetricSpec("nsd", "NSD", True)),
        per_case_fields=("dice", "nsd"), value_fields=("dice", "nsd"), reference_field=None,
        missing_rule="a case without a prediction scores Dice 0 and NSD 0 (the worst value of both, whatever the "
                     "reference holds; never excluded)",
        score="fomo_nn.evaluation.scoring:score_segmentation",
        resampled_metrics="fomo_nn.evaluation.resampled:resampled_mask_scores",
        permutation_pvalues="fomo_nn.evaluation.permutation:mask_score_pvalues",
        masks=True),
)
