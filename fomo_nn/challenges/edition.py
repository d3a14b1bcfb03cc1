"""What a challenge edition and one of its tasks are, as data (the tables are fomo25.py and fomo26.py).

A challenge task is identified by (edition, number): conversion, evaluation, ranking, challenge-mode
prediction, the container check and the demo read its row. Its `key` names it in summaries,
leaderboards and bootstrap streams; FOMO25's tasks, one per task type, keep their type as key
("classification", ...) so every FOMO25 report reads as before, FOMO26's are `fomo26_task<N>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fomo_nn.tasks import CASE_CLASS, VOXELS, task_kind

IMAGE_FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class ChannelRule:
    name: str  # channel name in dataset.json and in a model's plans
    sequences: tuple[str, ...]  # file stems that can serve it, in order of preference

    def pick(self, available) -> str | None:
        """The first of this channel's own sequences among the `available` stems (conversion: the rule's files only)."""
        return next((s for s in self.sequences if s in available), None)


@dataclass(frozen=True)
class ChallengeTask:
    edition: str  # "fomo25", "fomo26"
    number: int
    title: str  # "infarct", as the organisers name the task
    task_type: str | None  # a fomo_nn task kind; None: no finetuning (FOMO26 tasks 6/7, the probe's)
    channels: tuple[ChannelRule, ...]
    label_stem: str  # "label" -> label.txt, "labels" -> labels.txt, "seg" -> seg.nii.gz
    default_name: str  # raw dataset name fomo_nn_convert gives it
    targets: dict = field(default_factory=dict)  # classes / labels / target entry of dataset.json
    mask_stem: str | None = None  # auxiliary mask beside label.txt ("seg" -> seg.nii.gz), kept when the source has it
    mask_labels: dict | None = None  # its dataset.json auxiliary_labels
    target_range: tuple[float, float] | None = None  # a label file outside it is a broken file, not a patient
    flags: dict = field(default_factory=dict)  # sequence stem -> container flag, where it is not --<stem>
    output_endings: tuple[str, ...] = (".txt",)  # what the challenge container writes for one case
    output_text: str = ""
    empty_pair: str | None = None  # segmentation: the empty-pair policy it is scored with by default
    weight: float = 1.0  # share of the overall rank (the edition's ranking)
    key_by_type: bool = False  # the key is the task type (FOMO25: one task per type)

    @property
    def key(self) -> str:
        """The name in summaries, leaderboards and bootstrap streams."""
        return self.task_type if self.key_by_type else f"{self.edition}_task{self.number}"

    @property
    def stream(self) -> int:
        """The task's position in its edition: the index of its bootstrap and permutation random streams."""
        return self.number - 1

    @property
    def finetuned(self) -> bool:
        return self.task_type is not None

    @property
    def channel_names(self) -> dict[str, str]:
        return {str(i): rule.name for i, rule in enumerate(self.channels)}

    @property
    def label_kind(self) -> str:
        kind = task_kind(self.task_type)
        if kind.target == VOXELS:
            return "mask"
        return "class" if kind.target == CASE_CLASS else "value"

    @property
    def label_ending(self) -> str:
        return IMAGE_FILE_ENDING if self.label_kind == "mask" else ".txt"

    @property
    def label_file(self) -> str:
        return f"{self.label_stem}{self.label_ending}"

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Segmentation: the label values scored, background excluded (1 for a binary mask)."""
        return tuple(sorted(v for v in self.targets.get("labels", {}).values() if v != 0))

    @property
    def required_sequences(self) -> tuple[str, ...]:
        """Sequences every case must have (each is a channel of its own)."""
        return tuple(c.sequences[0] for c in self.channels if len(c.sequences) == 1)

    @property
    def alternative_sequences(self) -> tuple[str, ...]:
        """Sequences of the merged channel: a case has at least one of them (empty when there is none)."""
        return tuple(s for c in self.channels if len(c.sequences) > 1 for s in c.sequences)

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(s for c in self.channels for s in c.sequences)

    def flag(self, sequence: str) -> str:
        """The container argument that passes `sequence` (`dwi_b1000` -> `dwi` in FOMO26), without dashes."""
        return self.flags.get(sequence, sequence)

    @property
    def name(self) -> str:
        return f"{self.edition.upper()} task {self.number}"


@dataclass(frozen=True)
class Ranking:
    """How an edition combines metric ranks into the overall rank.

    - task_rank "mean": a task's rank is the mean of its metric ranks (FOMO25);
      "rank_of_mean": the models are ranked on that mean (FOMO26: "Submissions are then ranked based on
      this summary statistic").
    - overall "mean": plain mean of task ranks; "weighted": mean weighted by each task's `weight`,
      renormalised over the tasks any ranked model has (the same order as adding the tasks nobody has).
    - missing "shared_last": models without a task share the average of the last places (FOMO25 here);
      "worst": each gets the worst possible rank, the number of models (FOMO26 rules).
    """

    task_rank: str = "mean"
    overall: str = "mean"
    missing: str = "shared_last"
    source: str = ""


@dataclass(frozen=True)
class Edition:
    name: str
    tasks: dict[int, ChallengeTask]
    session: str  # the session folder of a finetuning case ("ses_1", "ses-01")
    ranking: Ranking
    sources: str = ""  # where the rules come from, with commits
    # the validator refuses a mask unless its values are exactly these (None: only the range is checked)
    exact_mask_values: tuple[int, ...] | None = None
    validator: str = ""  # which validator checks the container, for messages
    # a missing classification prediction scores the worst probability for its label (else 0.5)
    worst_missing: bool = False
    constant_pearson: float = 0.0  # Pearson r of a constant input (undefined): fomo_nn's 0, or the organisers' worst

    def task(self, number: int) -> ChallengeTask:
        if number not in self.tasks:
            raise ValueError(f"{self.name} has no task {number}; its tasks are "
                             + ", ".join(f"{n} ({t.title})" for n, t in self.tasks.items()))
        return self.tasks[number]

    def finetuned_tasks(self) -> dict[int, ChallengeTask]:
        return {n: t for n, t in self.tasks.items() if t.finetuned}

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for t in self.tasks.values() for s in t.sequences))
