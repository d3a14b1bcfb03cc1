"""Regression: one number per case (e.g. FOMO25 task 3, brain age in years), scored by MAE and Pearson r.

Training recipe as classification's: AdamW 1e-4, weight decay 3e-5, 5 warm-up epochs then cosine,
100 epochs of 100 steps. Targets are learned as (y - mean) / std of the training fold (stored in the
checkpoint); a pooled head on the encoder; a case's prediction is the de-normalised tile outputs
averaged, written as CASE.txt at full float precision and a predictions.csv row. Voxel masks beside
the value (auxiliary_labels) are allowed.
"""
from fomo_nn.tasks.kind import CASE_VALUE, Evaluation, MetricSpec, TaskKind

REGRESSION = TaskKind(
    name="regression", target=CASE_VALUE, label_field="target", default_trainer="regression",
    augmentation_families=("regression",),
    training={"optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 3e-5, "schedule": "warmup_cosine",
              "warmup_epochs": 5, "epochs": 100, "iterations_per_epoch": 100},
    auxiliary_masks=True,
    network="fomo_nn.networks.builders:regression_network",
    predict="fomo_nn.inference.case_prediction:case_value",
    export="fomo_nn.inference.export:export_regression_case",
    evaluation=Evaluation(
        metrics=(MetricSpec("pearson_r", "Pearson r", True), MetricSpec("mae", "MAE", False)),
        per_case_fields=("target", "prediction"), value_fields=("prediction",), reference_field="target",
        missing_rule="a case without a prediction is predicted as the mean of the model's own predictions on the "
                     "other reference cases (no reference value is used; |Pearson r| can only shrink)",
        score="fomo_nn.evaluation.scoring:score_regression",
        resampled_metrics="fomo_nn.evaluation.resampled:resampled_regression",
        permutation_pvalues="fomo_nn.evaluation.permutation:regression_pvalues"),
    probe_metrics=("mae", "pearson_r", "bias"), network_settings=("fusion_weighting", "pool", "head_dropout"),
)
