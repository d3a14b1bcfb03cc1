"""summary.json: what fomo_nn_evaluate writes and fomo_nn_rank reads.

Per-case records (what the ranker resamples):
- classification: {case_id, label, probability, missing}; AUROC is computed on the whole set.
- segmentation:   {case_id, dice, nsd, missing}; the task's Dice and NSD are case means. Under the
                  "exclude" empty-pair policy an empty pair has dice and nsd null, left out of the means.
                  Scored per class (FOMO26): also dice_per_class / nsd_per_class {label: value}, the
                  case's dice / nsd being their mean, and `class_metrics` per class name; under
                  "fomo26" a prediction that could not be scored has `failure` (its problem).
- regression:     {case_id, target, prediction, absolute_error, missing}; MAE and Pearson r on the set.
Scoring rules: `missing_policy` (this task's missing-case rule), `empty_pair` (segmentation: "score" or
"exclude") and `policies` (every task's missing-case rule and the empty-pair rule, in words); see
policies.py. `challenge` {edition, task} names the challenge task scored (fomo_nn_evaluate --task N); its
`key` is what summaries are keyed by in fomo_nn_rank. A summary without it (scored by --task-type) is
the default edition's (FOMO25's) task of its type, as fomo_nn_rank has always read it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from fomo_nn.challenges.edition import ChallengeTask
from fomo_nn.challenges.registry import challenge_task, default_task_for_type
from fomo_nn.evaluation.policies import EMPTY_PAIR_POLICIES
from fomo_nn.evaluation.task_metrics import TASKS, task_evaluation
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import read_json, write_json_atomic

SUMMARY_FORMAT = "fomo_nn_evaluation_summary"


@dataclass
class EvaluationSummary:
    task: str
    per_case: list[dict]
    metrics: dict[str, float | None] = field(default_factory=dict)  # None: no case scored (empty pairs excluded)
    missing_cases: list[str] = field(default_factory=list)
    missing_policy: str = ""
    extra_cases: list[str] = field(default_factory=list)
    reference: str = ""
    prediction: str = ""
    nsd_tolerance_mm: float | None = None
    positive_class: float | None = None
    empty_pair: str | None = None  # segmentation: the empty-pair policy (policies.EMPTY_PAIR_POLICIES)
    policies: dict = field(default_factory=dict)  # policies.policy_record
    challenge: dict | None = None  # {"edition": "fomo26", "task": 4}: the challenge task scored
    class_metrics: dict | None = None  # per class name: {"dice": mean, "nsd": mean} (scored per class)
    format: str = SUMMARY_FORMAT

    @property
    def challenge_task(self) -> ChallengeTask | None:
        """The challenge task this summary scores: its own, else the default edition's task of its type."""
        if self.challenge is not None:
            return challenge_task(self.challenge["edition"], self.challenge["task"])
        return default_task_for_type(self.task)

    @property
    def key(self) -> str:
        """What fomo_nn_rank keys it by: the challenge task's key, else the task type."""
        task = self.challenge_task
        return task.key if task is not None else self.task

    @property
    def case_ids(self) -> list[str]:
        return [record["case_id"] for record in self.per_case]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["num_cases"] = len(self.per_case)
        data["num_missing"] = len(self.missing_cases)
        if task_evaluation(self.task).masks:
            data["num_excluded"] = sum(record["dice"] is None for record in self.per_case)
        return data

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())


def summary_from_dict(data: dict, source: str | Path) -> EvaluationSummary:
    """Validate a parsed summary.json; problems name the file."""
    task = data.get("task")
    if task not in TASKS:
        raise BadInputError(source, f"task {task!r} is not one of {', '.join(TASKS)}")
    per_case = data.get("per_case")
    if not isinstance(per_case, list) or not per_case:
        raise BadInputError(source, "has no per_case records")
    evaluation = task_evaluation(task)
    needed = ("case_id",) + evaluation.per_case_fields
    for index, record in enumerate(per_case):
        absent = [key for key in needed if not isinstance(record, dict) or key not in record]
        if absent:
            raise BadInputError(source, f"per_case[{index}] lacks {', '.join(absent)}")
    known = {name for name in EvaluationSummary.__dataclass_fields__}
    summary = EvaluationSummary(**{key: value for key, value in data.items() if key in known})
    if summary.challenge is not None:
        try:
            task_of_summary = challenge_task(summary.challenge.get("edition"), summary.challenge.get("task"))
        except (AttributeError, TypeError, ValueError) as error:
            raise BadInputError(source, f"challenge {summary.challenge!r} names no known challenge task ({error})") \
                from None
        if task_of_summary.task_type != task:
            raise BadInputError(source, f"challenge {task_of_summary.name} is a {task_of_summary.task_type} task, "
                                        f"but the summary scores {task}")
    if evaluation.masks:
        if summary.empty_pair is None:
            summary.empty_pair = "score"  # summaries written before the option scored two empty masks 1
        if summary.empty_pair not in EMPTY_PAIR_POLICIES:
            raise BadInputError(source, f"empty_pair {summary.empty_pair!r} is not one of "
                                        f"{', '.join(EMPTY_PAIR_POLICIES)}")
    return summary


def load_summary(path: str | Path) -> EvaluationSummary:
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        raise BadInputError(path, f"cannot read summary JSON ({error})") from None
    if not isinstance(data, dict):
        raise BadInputError(path, "is not a JSON object")
    return summary_from_dict(data, path)
