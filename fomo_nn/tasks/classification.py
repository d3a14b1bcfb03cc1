"""Classification: one class per case (e.g. FOMO25 task 1, infarct yes/no), scored by AUROC.

Training recipe (few-shot, often from a pretrained encoder): AdamW 1e-4, weight decay 3e-5 (the
FOMO25 baseline's finetuning), 5 warm-up epochs then cosine, 100 epochs of 100 steps. A pooled head
on the encoder; a case's prediction is the class probabilities averaged over sliding-window tiles,
written as CASE.txt (binary: the positive class's probability) and a predictions.csv row with one
prob_<class> column per class. Folds are stratified by class; voxel masks beside the class
(auxiliary_labels) are allowed.
"""
from fomo_nn.tasks.kind import CASE_CLASS, Evaluation, MetricSpec, TaskKind

CLASSIFICATION = TaskKind(
    name="classification", target=CASE_CLASS, label_field="classes", default_trainer="classification",
    augmentation_families=("classification",),
    training={"optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 3e-5, "schedule": "warmup_cosine",
              "warmup_epochs": 5, "epochs": 100, "iterations_per_epoch": 100},
    auxiliary_masks=True,
    network="fomo_nn.networks.builders:classification_network",
    predict="fomo_nn.inference.case_prediction:case_class_probabilities",
    export="fomo_nn.inference.export:export_classification_case",
    evaluation=Evaluation(
        metrics=(MetricSpec("auroc", "AUROC", True),),
        per_case_fields=("label", "probability"), value_fields=("probability",), reference_field="label",
        missing_rule="a case without a prediction gets probability 0.5: uninformative, it ties with every other "
                     "0.5 and orders nothing",
        score="fomo_nn.evaluation.scoring:score_classification",
        resampled_metrics="fomo_nn.evaluation.resampled:resampled_auroc",
        permutation_pvalues="fomo_nn.evaluation.permutation:auroc_pvalues",
        class_reference=True),
    probe_metrics=("auroc",), network_settings=("fusion_weighting", "pool", "head_dropout"),
)
