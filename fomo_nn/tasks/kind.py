"""What a task type is, as data: the facts code used to branch on with ``task_type == "..."``.

Modules read a task's behaviour through its TaskKind (``fomo_nn.tasks.task_kind(name)``), so a new
task type is one file in fomo_nn/tasks/ and one line in registry.py. Facts are plain values;
behaviour that needs heavy code (networks, case prediction, export, scoring) is a hook: a
"package.module:function" string that `resolve` imports on first use. So this package imports only
the standard library, loads fast (spawned preprocessing workers read it) and sits below every
other part of fomo_nn without cycles.

Hook signatures (every kind that has the hook uses the same one):
- network(plans, settings) -> nn.Module: the finetuning network; settings = plans.method + overrides.
- predict(network, data, plans, window, target_normalization, aggregation): one preprocessed case
  (network in eval mode; window = sliding-window options), see fomo_nn.inference.case_prediction.
- export(prediction, case_id, properties, plans, outputs) -> predictions.csv row or None.
- Evaluation.score(reference, prediction, options) -> EvaluationSummary (options: ScoringOptions).
- Evaluation.resampled_metrics(table, counts) -> {metric key: (B, models with the task)}.
- Evaluation.permutation_pvalues(table, pairs, num_permutations, rng) -> {metric key: p per pair}.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

# What one case's prediction target is.
VOXELS = "voxels"  # a label per voxel: a mask (segmentation)
CASE_CLASS = "case_class"  # one class per case (classification)
CASE_VALUE = "case_value"  # one number per case, learned normalised (regression)
TARGETS = (VOXELS, CASE_CLASS, CASE_VALUE)


def resolve(hook: str) -> Callable:
    """'package.module:function' -> the function: the one place task hooks are imported."""
    module, _, name = hook.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class MetricSpec:
    key: str  # key in summary.json "metrics"
    label: str  # column title on the leaderboard
    higher_is_better: bool


@dataclass(frozen=True, eq=False)
class Evaluation:
    """How fomo_nn_evaluate scores the task and fomo_nn_rank compares models on it."""

    metrics: tuple[MetricSpec, ...]  # in leaderboard order; ranking averages them within the task
    per_case_fields: tuple[str, ...]  # summary.json per_case fields (besides case_id) the ranker needs
    value_fields: tuple[str, ...]  # the model outputs the ranker aligns across models
    reference_field: str | None  # per-case reference every model must share (None: nothing to compare)
    missing_rule: str  # how a reference case without a prediction is scored, in words (summary.json)
    score: str  # hook, see the module docstring
    resampled_metrics: str  # hook
    permutation_pvalues: str  # hook
    # the reference is a class per case: the bootstrap resamples each class apart (so every resample has
    # both) and a reference holding one class cannot be ranked
    class_reference: bool = False
    masks: bool = False  # scored on masks: the empty-pair policy applies (policies.EMPTY_PAIR_POLICIES)

    def metric(self, key: str) -> MetricSpec:
        return next(spec for spec in self.metrics if spec.key == key)

    def hook(self, name: str) -> Callable:
        return resolve(getattr(self, name))


@dataclass(frozen=True, eq=False)
class TaskKind:
    """One task type: its targets, planning defaults, network, prediction, export and metrics."""

    name: str  # dataset.json / plans.json "task_type", summary.json "task"
    target: str | None  # one of TARGETS; None: no target (pretraining)
    label_field: str | None  # the dataset.json / plans field declaring the targets (labels, classes, target)
    default_trainer: str  # fomo_nn_train without -tr
    augmentation_families: tuple[str, ...]  # augmentation presets; several: the planner option picks, first default
    training: dict  # TrainingPlan fields of the planner's default recipe
    finetuning_training: dict | None = None  # recipe when planned like a pretrained model (None: `training`)
    corpus: bool = False  # a manifest of single-channel images (subject/session kept), not cases with channels
    auxiliary_masks: bool = False  # may declare auxiliary_labels: voxel masks beside a case's target
    foreground_oversampling: float = 0.0  # share of patches centred on foreground (plans default)
    tta: bool = False  # mirroring test-time augmentation by default (fomo_nn_predict without --tta/--no-tta)
    network: str | None = None  # hook; None: no finetuning network (pretraining networks come from the method)
    predict: str | None = None  # hook; None: its checkpoints do not predict
    export: str | None = None  # hook
    evaluation: Evaluation | None = None  # None: fomo_nn_evaluate and fomo_nn_rank do not score it
    probe_metrics: tuple[str, ...] = ()  # frozen-feature probe columns, headline first; (): not probed
    network_settings: tuple[str, ...] = ()  # plans.method / --set keys the network hook reads

    @property
    def supervised(self) -> bool:
        return self.target is not None

    @property
    def stratified_splits(self) -> bool:
        """Cross-validation folds keep the class balance (grouped by subject either way)."""
        return self.target == CASE_CLASS

    @property
    def case_target(self) -> bool:
        """One target per case: a CASE.txt per prediction and one predictions.csv row."""
        return self.target in (CASE_CLASS, CASE_VALUE)

    @property
    def head_name(self) -> str:
        """What sits on the encoder: a decoder for voxel targets, a pooled head otherwise."""
        return "decoder" if self.target == VOXELS else "head"

    def output_channels(self, spec) -> int:
        """Network outputs for a DatasetSpec or Plans: one per label or class, else one value."""
        if self.target in (VOXELS, CASE_CLASS):
            return len(getattr(spec, self.label_field))
        return 1

    def augmentation_family(self, choice: str | None = None) -> str:
        """The augmentation preset: the kind's only one, or `choice` among its several."""
        families = self.augmentation_families
        if len(families) == 1:
            return families[0]
        choice = choice or families[0]
        if choice not in families:
            raise ValueError(f"{self.name} family {choice!r} is not one of {families}")
        return choice

    def training_recipe(self, finetuning: bool = False) -> dict:
        """TrainingPlan fields: the default recipe, or the one for finetuning a pretrained encoder."""
        return dict(self.finetuning_training if finetuning and self.finetuning_training else self.training)

    def hook(self, name: str) -> Callable:
        """The function a hook field names; ValueError when this kind has none."""
        path = getattr(self, name)
        if path is None:
            raise ValueError(f"task type {self.name!r} has no {name} hook")
        return resolve(path)
