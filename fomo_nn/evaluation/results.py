"""Several models' summaries -> one aligned table per task, the input of ranking and its statistics.

A RESULT_DIR is one model (named after the folder); every *.json below it with a `task` field and
per-case records is one task's summary (written by fomo_nn_evaluate), keyed by its challenge task
(summary.key: `fomo26_task2` and `fomo26_task4` are two segmentation tasks side by side; FOMO25's and
--task-type summaries keep their task type as key). All models scored on a task
must share its cases and reference values: resampling the same cases for everybody is what makes
the bootstrap and the paired permutation tests fair.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomo_nn.evaluation.summary import EvaluationSummary, summary_from_dict
from fomo_nn.evaluation.task_metrics import key_challenge, key_evaluation, key_stream
from fomo_nn.utils.errors import BadInputError


@dataclass
class ModelResults:
    name: str
    summaries: dict[str, EvaluationSummary]  # task key -> summary
    sources: dict[str, str]  # task key -> summary file


def _summary_candidates(result_dir: Path) -> list[tuple[Path, dict]]:
    """Every JSON object below `result_dir` that names a task; unreadable JSON is skipped with a note."""
    found = []
    for path in sorted(result_dir.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            print(f"[fomo_nn_rank] skipping {path}: not readable JSON", file=sys.stderr)
            continue
        if isinstance(data, dict) and "task" in data and "per_case" in data:
            found.append((path, data))
    return found


def load_model_results(result_dir: str | Path) -> ModelResults:
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise BadInputError(result_dir, "is not a folder of summary JSON files")
    summaries, sources = {}, {}
    for path, data in _summary_candidates(result_dir):
        summary = summary_from_dict(data, path)
        key = summary.key
        if key in summaries:
            raise BadInputError(path, f"is a second {key} summary for model {result_dir.name} "
                                      f"(first: {sources[key]}); keep one per task")
        summaries[key], sources[key] = summary, str(path)
    if not summaries:
        raise BadInputError(result_dir, "holds no summary JSON (a *.json with 'task' and 'per_case', "
                                        "as written by fomo_nn_evaluate)")
    return ModelResults(result_dir.resolve().name, summaries, sources)


@dataclass
class TaskTable:
    """One task, all models: per-case columns aligned on the same sorted case ids.

    `columns[field]` is (n, M) over all ranked models; models without the task have NaN columns and
    `present[m]` False. Fields: probability (classification), dice and nsd (segmentation),
    prediction (regression). `reference` holds 0/1 labels or targets; None for segmentation.
    A NaN inside a present model's dice or nsd column is a case the "exclude" empty-pair policy left
    unscored: means skip it, and a model without any scored case has no value (ranks last).
    """

    task: str  # the task key (a task type, or a challenge task's key)
    case_ids: list[str]
    present: np.ndarray
    columns: dict[str, np.ndarray]
    reference: np.ndarray | None = None
    sources: list[str | None] = field(default_factory=list)

    @property
    def evaluation(self):
        return key_evaluation(self.task)

    @property
    def num_cases(self) -> int:
        return len(self.case_ids)

    def metric_values(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """{metric key: (B, M)} for resample counts (B, n); NaN for models without the task."""
        have = self.present
        values = self.evaluation.hook("resampled_metrics")(self, counts)
        full = {}
        for key, present_values in values.items():
            full[key] = np.full((counts.shape[0], have.size), np.nan)
            full[key][:, have] = present_values
        return full

    def point_metrics(self) -> dict[str, np.ndarray]:
        """{metric key: (M,)} on all cases."""
        return {key: value[0] for key, value in self.metric_values(np.ones((1, self.num_cases))).items()}


def _unscored_allowed(summary: EvaluationSummary, key: str) -> bool:
    """Only mask scores (Dice and NSD) under the "exclude" empty-pair policy may be null (not scored)."""
    evaluation = key_evaluation(summary.task)
    return evaluation.masks and key in evaluation.value_fields and summary.empty_pair == "exclude"


def _aligned(summary: EvaluationSummary, source: str, key: str) -> np.ndarray:
    """One per-case field in case-id order; null -> NaN where the empty-pair policy allows it."""
    records = sorted(summary.per_case, key=lambda record: record["case_id"])
    allow_null = _unscored_allowed(summary, key)
    if not allow_null and any(record[key] is None for record in records):
        raise BadInputError(source, f"per_case field {key!r} is null, which only segmentation Dice and NSD of a "
                                    "summary scored with --empty-pair exclude may be")
    try:
        values = np.array([np.nan if record[key] is None and allow_null else float(record[key]) for record in records])
    except (TypeError, ValueError):
        raise BadInputError(source, f"per_case field {key!r} holds a value that is not a number") from None
    finite = np.isfinite(values) | (np.isnan(values) & allow_null)
    if not finite.all():
        raise BadInputError(source, f"per_case field {key!r} holds NaN or infinite values")
    return values


def _check_same_cases(task: str, first: tuple[str, list[str]], other: tuple[str, list[str]]) -> None:
    (first_source, first_ids), (source, ids) = first, other
    if ids != first_ids:
        only_here = sorted(set(ids) - set(first_ids))[:5]
        only_there = sorted(set(first_ids) - set(ids))[:5]
        raise BadInputError(source, f"{task} cases differ from {first_source}: only here {only_here}, "
                                    f"only there {only_there}; score every model against the same reference")


def build_task_table(task: str, models: list[ModelResults]) -> TaskTable:
    having = [model for model in models if task in model.summaries]
    first = having[0]
    case_ids = sorted(first.summaries[task].case_ids)
    if len(set(case_ids)) != len(case_ids):
        raise BadInputError(first.sources[task], "lists a case twice")
    evaluation = key_evaluation(task)
    reference_field = evaluation.reference_field
    reference = None
    if reference_field is not None:
        reference = _aligned(first.summaries[task], first.sources[task], reference_field)
    columns = {key: np.full((len(case_ids), len(models)), np.nan) for key in evaluation.value_fields}
    present = np.array([task in model.summaries for model in models])
    for index, model in enumerate(models):
        if task not in model.summaries:
            continue
        summary, source = model.summaries[task], model.sources[task]
        _check_same_cases(task, (first.sources[task], case_ids), (source, sorted(summary.case_ids)))
        if reference is not None and not np.allclose(_aligned(summary, source, reference_field), reference,
                                                     rtol=0, atol=1e-9):
            raise BadInputError(source, f"{task} reference values differ from {first.sources[task]}; "
                                        "score every model against the same reference")
        for key in columns:
            columns[key][:, index] = _aligned(summary, source, key)
    if evaluation.class_reference and len(np.unique(reference)) < 2:
        raise BadInputError(first.sources[task], f"{task} reference holds a single class; "
                                                 f"{evaluation.metrics[0].label} is undefined")
    return TaskTable(task, case_ids, present, columns, reference, [model.sources.get(task) for model in models])


def results_edition(models: list[ModelResults]) -> str:
    """The one challenge edition every summary belongs to (a --task-type summary is the default edition's);
    models of different editions are not ranked together (their tasks, weights and rules differ)."""
    editions = {}
    for model in models:
        for key, source in model.sources.items():
            task = key_challenge(key)
            editions.setdefault(task.edition if task is not None else "fomo25", source)
    if len(editions) > 1:
        listing = "; ".join(f"{edition} in {source}" for edition, source in editions.items())
        raise ValueError(f"summaries of several challenge editions ({listing}); rank one edition at a time (a "
                         "summary scored with --task-type counts as FOMO25's: score FOMO26 predictions with "
                         "fomo_nn_evaluate --edition fomo26 --task N)")
    return next(iter(editions), "fomo25")


def build_task_tables(models: list[ModelResults]) -> dict[str, TaskTable]:
    """One table per task any model was scored on, in the task order (task types: classification,
    segmentation, regression; challenge tasks: their number)."""
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"model names must be unique, but several result folders are called {duplicates}")
    results_edition(models)
    keys = {key for model in models for key in model.summaries}
    tasks = sorted(keys, key=lambda key: (key_stream(key), key))
    return {task: build_task_table(task, models) for task in tasks}
