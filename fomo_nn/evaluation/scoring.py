"""Score one model's predictions against a reference: per-case values and the task's metrics.

A reference case without a prediction is a failure, never skipped (policies.MISSING_RULES says how it
is scored, and summary.json repeats every rule); a prediction without a reference case is reported and
ignored. Two empty masks follow the empty-pair policy (policies.py); under "exclude" their Dice and
NSD are null in per_case and the task means average the scored cases only. A challenge task (edition,
number; fomo_nn.challenges) fixes the default policy and, for a label mask, the classes scored one by
one (multiclass.py): FOMO26 segmentation is scored per class under "fomo26"; FOMO25's stays binary
(every nonzero voxel) under "score".
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fomo_nn.evaluation import metrics
from fomo_nn.challenges.edition import ChallengeTask
from fomo_nn.evaluation.case_files import ScalarEntry, find_masks, find_scalars
from fomo_nn.evaluation.masks import check_same_grid, read_mask
from fomo_nn.evaluation.multiclass import class_mean, per_class_scores
from fomo_nn.challenges.registry import edition
from fomo_nn.evaluation.policies import (DEFAULT_EMPTY_PAIR, MISSING_MASK_SCORE, MISSING_RULES, WORST_ON_FAILURE,
                                         check_empty_pair, missing_probability, missing_regression_value,
                                         missing_rules, policy_record)
from fomo_nn.evaluation.summary import EvaluationSummary
from fomo_nn.evaluation.task_metrics import task_evaluation
from fomo_nn.utils.errors import BadInputError

DEFAULT_NSD_TOLERANCE_MM = 1.0  # Yucca's, which the FOMO25 baseline evaluator uses (metrics module docstring)


def _split_cases(reference_ids, prediction_ids, reference, prediction) -> tuple[list[str], list[str], list[str]]:
    """(all reference cases, reference cases without prediction, predictions without reference); refuses
    when no prediction matches a reference id (a summary of failures only would look like a scored model)."""
    reference_ids, prediction_ids = set(reference_ids), set(prediction_ids)
    if reference_ids and not reference_ids & prediction_ids:
        raise BadInputError(prediction, f"no prediction matches a reference case id: reference {reference} has "
                                        f"{_few_ids(reference_ids)}, prediction has {_few_ids(prediction_ids)}; "
                                        "are REF and PRED of the same cases, named alike?")
    return sorted(reference_ids), sorted(reference_ids - prediction_ids), sorted(prediction_ids - reference_ids)


def _few_ids(ids, shown: int = 5) -> str:
    ids = sorted(ids)
    if not ids:
        return "no case"
    return f"{len(ids)} case(s) ({', '.join(ids[:shown])}{', ...' if len(ids) > shown else ''})"


def _class_labels(reference: Path, entries: dict[str, ScalarEntry], positive_class) -> tuple[dict[str, int], float, int]:
    """{case: 1 if positive else 0}, the positive class (default: the larger of the two classes), and its
    position among the classes (which prob_<class> column of a predictions CSV holds its probability)."""
    for entry in entries.values():
        if entry.value % 1:
            raise BadInputError(entry.source, f"class label must be a whole number, found {entry.value:g}")
    classes = sorted({entry.value for entry in entries.values()})
    if len(classes) > 2:
        raise BadInputError(reference, f"AUROC scores a binary task, but the reference holds classes "
                                       f"{', '.join(f'{c:g}' for c in classes)}")
    positive = classes[-1] if positive_class is None else float(positive_class)
    if len(classes) == 2 and positive not in classes:
        raise BadInputError(reference, f"positive class {positive:g} is not one of the reference classes "
                                       f"{', '.join(f'{c:g}' for c in classes)}")
    position = 0 if len(classes) == 2 and positive == classes[0] else 1
    return {case: int(entry.value == positive) for case, entry in entries.items()}, positive, position


def evaluate_classification(reference, prediction, positive_class=None, worst_missing: bool = False) -> EvaluationSummary:
    """AUROC; a missing case scores 0.5, or with `worst_missing` (FOMO26) the worst probability for its label."""
    labels, positive, position = _class_labels(Path(reference), find_scalars(reference), positive_class)
    predicted = find_scalars(prediction, probability_column=position)
    for entry in predicted.values():
        if not 0.0 <= entry.value <= 1.0:
            raise BadInputError(entry.source, f"probability {entry.value:g} is outside [0, 1]")
    cases, missing, extra = _split_cases(labels, predicted, reference, prediction)
    records = [{"case_id": case, "label": labels[case],
                "probability": predicted[case].value if case in predicted else missing_probability(labels[case],
                                                                                                   worst_missing),
                "missing": case not in predicted} for case in cases]
    try:
        auroc = metrics.auroc([r["label"] for r in records], [r["probability"] for r in records])
    except ValueError as error:
        raise BadInputError(reference, str(error)) from None
    return EvaluationSummary("classification", records, {"auroc": auroc}, missing,
                             missing_rules(worst_missing)["classification"], extra, str(reference), str(prediction),
                             positive_class=positive, policies=policy_record("classification", None, worst_missing))


def _score_mask_pair(reference_file, prediction_file, tolerance_mm: float, empty_pair: str,
                     labels: tuple[int, ...] | None = None) -> dict:
    """One case's record fields: dice, nsd (NaN = not scored), and per class when `labels` are given.

    Without labels every nonzero voxel is foreground (num_labels says how many labels were merged).
    Under a policy of WORST_ON_FAILURE a prediction that cannot be scored (unreadable, another grid)
    gets Dice 0 and NSD 0 with its problem recorded; a broken reference always stops the evaluation.
    """
    reference = read_mask(reference_file)
    try:
        prediction = read_mask(prediction_file)
        check_same_grid(reference, prediction)
    except BadInputError as error:
        if empty_pair not in WORST_ON_FAILURE:
            raise
        worst = {"dice": MISSING_MASK_SCORE, "nsd": MISSING_MASK_SCORE, "failure": str(error)}
        if labels is not None:
            worst.update({"dice_per_class": {str(label): MISSING_MASK_SCORE for label in labels},
                          "nsd_per_class": {str(label): MISSING_MASK_SCORE for label in labels}})
        return worst
    if labels is None:
        nsd = metrics.normalized_surface_distance(reference.foreground, prediction.foreground,
                                                  reference.spacing, tolerance_mm, empty_pair)
        return {"dice": metrics.dice(reference.foreground, prediction.foreground, empty_pair), "nsd": nsd,
                "num_labels": reference.num_labels}
    scores = per_class_scores(reference.values, prediction.values, reference.spacing, labels, tolerance_mm, empty_pair)
    return {"dice": class_mean(d for d, _ in scores.values()), "nsd": class_mean(n for _, n in scores.values()),
            "dice_per_class": {str(label): _scored(d) for label, (d, _) in scores.items()},
            "nsd_per_class": {str(label): _scored(n) for label, (_, n) in scores.items()}}


def _scored(value: float) -> float | None:
    """JSON has no NaN: a case the empty-pair policy leaves unscored is stored as null."""
    return None if math.isnan(value) else value


def _mean_of_scored(records: list[dict], key: str) -> float | None:
    values = [record[key] for record in records if record[key] is not None]
    return float(np.mean(values)) if values else None


def _class_metrics(records: list[dict], labels: tuple[int, ...], names: dict[int, str]) -> dict:
    """Per class: its Dice and NSD averaged over the cases (missing cases count 0, as in the task means)."""
    result = {}
    for label in labels:
        means = {}
        for key in ("dice", "nsd"):
            values = [r[f"{key}_per_class"][str(label)] if f"{key}_per_class" in r else r[key] for r in records]
            scored = [v for v in values if v is not None]
            means[key] = float(np.mean(scored)) if scored else None
        result[names.get(label, str(label))] = means
    return result


def evaluate_segmentation(reference, prediction, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                          progress: bool = True, empty_pair: str = DEFAULT_EMPTY_PAIR,
                          labels: tuple[int, ...] | None = None,
                          label_names: dict[int, str] | None = None) -> EvaluationSummary:
    """Dice and NSD per case and their means; with `labels`, per class (background excluded) and a case's
    value is the mean over the classes (multiclass.py)."""
    if not nsd_tolerance_mm >= 0:
        raise ValueError(f"NSD tolerance must be >= 0 mm, got {nsd_tolerance_mm}")
    check_empty_pair(empty_pair)
    reference_files, prediction_files = find_masks(reference), find_masks(prediction)
    cases, missing, extra = _split_cases(reference_files, prediction_files, reference, prediction)
    records, merged = [], []
    for case in tqdm(cases, desc="scoring masks", unit="case", disable=not progress):
        if case not in prediction_files:
            read_mask(reference_files[case])  # a broken reference file is reported even without a prediction
            records.append({"case_id": case, "dice": MISSING_MASK_SCORE, "nsd": MISSING_MASK_SCORE, "missing": True})
            continue
        fields = _score_mask_pair(reference_files[case], prediction_files[case], nsd_tolerance_mm, empty_pair,
                                  labels)
        if fields.pop("num_labels", 0) > 1:
            merged.append(case)
        fields.update(dice=_scored(fields["dice"]), nsd=_scored(fields["nsd"]))
        records.append({"case_id": case, **fields, "missing": False})
    if merged:
        warnings.warn(f"{len(merged)} reference masks hold several labels (e.g. {merged[0]}); all nonzero "
                      "labels were scored as one foreground", stacklevel=2)
    if labels is not None:
        for record in records:
            if record["missing"]:
                record.update({f"{key}_per_class": {str(label): MISSING_MASK_SCORE for label in labels}
                               for key in ("dice", "nsd")})
    failed = [r["case_id"] for r in records if "failure" in r]
    if failed:
        warnings.warn(f"{len(failed)} predictions could not be scored and got Dice 0 and NSD 0 ({empty_pair} "
                      f"policy), e.g. {failed[0]}: see 'failure' in per_case", stacklevel=2)
    aggregate = {"dice": _mean_of_scored(records, "dice"), "nsd": _mean_of_scored(records, "nsd")}
    class_metrics = _class_metrics(records, labels, label_names or {}) if labels is not None else None
    return EvaluationSummary("segmentation", records, aggregate, missing, MISSING_RULES["segmentation"], extra,
                             str(reference), str(prediction), nsd_tolerance_mm=float(nsd_tolerance_mm),
                             empty_pair=empty_pair, policies=policy_record("segmentation", empty_pair),
                             class_metrics=class_metrics)


def evaluate_regression(reference, prediction, constant_r: float = 0.0) -> EvaluationSummary:
    """MAE and Pearson r; r of a constant input is `constant_r` (0; FOMO26 -100, its edition's constant_pearson)."""
    targets = {case: entry.value for case, entry in find_scalars(reference).items()}
    predicted = find_scalars(prediction)
    cases, missing, extra = _split_cases(targets, predicted, reference, prediction)
    if len(cases) < 2:
        raise BadInputError(reference, f"regression needs at least 2 reference cases, found {len(cases)}")
    try:
        fallback = missing_regression_value([predicted[case].value for case in cases if case in predicted])
    except ValueError as error:
        raise BadInputError(prediction, str(error)) from None
    records = []
    for case in cases:
        value = predicted[case].value if case in predicted else fallback
        records.append({"case_id": case, "target": targets[case], "prediction": value,
                        "absolute_error": abs(value - targets[case]), "missing": case not in predicted})
    truth, guesses = [r["target"] for r in records], [r["prediction"] for r in records]
    aggregate = {"mae": metrics.mean_absolute_error(truth, guesses), "pearson_r": metrics.pearson_r(truth, guesses, constant_r)}
    return EvaluationSummary("regression", records, aggregate, missing, MISSING_RULES["regression"], extra,
                             str(reference), str(prediction), policies=policy_record("regression"))


@dataclass(frozen=True)
class ScoringOptions:
    """fomo_nn_evaluate's options; each task's scorer reads the ones that concern it."""

    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    positive_class: float | None = None
    progress: bool = True
    empty_pair: str = DEFAULT_EMPTY_PAIR
    challenge: ChallengeTask | None = None  # the (edition, number) scored, when given


# Each task's scorer (task kinds' evaluation.score hook, fomo_nn.tasks).
def score_classification(reference, prediction, options: ScoringOptions) -> EvaluationSummary:
    worst = options.challenge is not None and edition(options.challenge.edition).worst_missing
    return evaluate_classification(reference, prediction, options.positive_class, worst)


def score_segmentation(reference, prediction, options: ScoringOptions) -> EvaluationSummary:
    labels, names = None, None
    if options.challenge is not None and options.challenge.edition != "fomo25":
        labels = options.challenge.foreground_labels  # FOMO25 stays binary: every nonzero voxel, as before
        names = {v: k for k, v in options.challenge.targets["labels"].items()}
    return evaluate_segmentation(reference, prediction, options.nsd_tolerance_mm, options.progress, options.empty_pair,
                                 labels, names)


def score_regression(reference, prediction, options: ScoringOptions) -> EvaluationSummary:
    constant_r = edition(options.challenge.edition).constant_pearson if options.challenge is not None else 0.0
    return evaluate_regression(reference, prediction, constant_r)


def evaluate(task: str, reference, prediction, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
             positive_class=None, progress: bool = True, empty_pair: str | None = None,
             challenge: ChallengeTask | None = None) -> EvaluationSummary:
    """Score PRED against REF for one task type, or one challenge task (see case_files for the accepted
    layouts). `empty_pair` None: the challenge task's policy (FOMO26: "fomo26"), else DEFAULT_EMPTY_PAIR."""
    if challenge is not None:
        if challenge.task_type != task:
            raise ValueError(f"{challenge.name} is a {challenge.task_type} task, not {task}")
    evaluation = task_evaluation(task)
    if empty_pair is None:
        empty_pair = (challenge.empty_pair if challenge is not None and challenge.empty_pair else DEFAULT_EMPTY_PAIR)
    check_empty_pair(empty_pair)
    options = ScoringOptions(nsd_tolerance_mm, positive_class, progress, empty_pair, challenge)
    summary = evaluation.hook("score")(reference, prediction, options)
    if challenge is not None:
        summary.challenge = {"edition": challenge.edition, "task": challenge.number}
        summary.policies["missing_case"] = missing_rules(edition(challenge.edition).worst_missing)
    return summary
