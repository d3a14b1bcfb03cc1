"""The three FOMO25 finetuning tasks: channels, label files, targets, and what the container writes.

Task 1 (infarct, classification): dwi_b1000, flair, adc, swi_or_t2s; `label.txt` (0/1) with the infarct
mask `seg.nii.gz` beside it. Task 2 (meningioma, segmentation): dwi_b1000, flair, swi_or_t2s;
`seg.nii.gz`. Task 3 (brain age, regression): t1, t2; `label.txt` (age in years).
A session has SWI or T2* (some have both): the channel `swi_or_t2s` holds whichever it has (see sequences.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fomo_nn.tasks import CASE_CLASS, task_kind

IMAGE_FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class ChannelRule:
    name: str  # channel name in dataset.json and in a model's plans
    sequences: tuple[str, ...]  # file stems that can serve it, in order of preference


@dataclass(frozen=True)
class TaskRule:
    task: int
    task_type: str
    channels: tuple[ChannelRule, ...]
    label_stem: str  # "label" -> label.txt, "seg" -> seg.nii.gz
    default_name: str
    targets: dict = field(default_factory=dict)  # classes / labels / target entry of dataset.json
    mask_stem: str | None = None  # auxiliary mask beside label.txt ("seg" -> seg.nii.gz), kept when the source has it
    mask_labels: dict | None = None  # its dataset.json auxiliary_labels
    target_range: tuple[float, float] | None = None  # a label.txt outside it is a broken file, not a patient
    output_endings: tuple[str, ...] = (".txt",)  # what the challenge container writes for one case
    output_text: str = ""

    @property
    def channel_names(self) -> dict[str, str]:
        return {str(i): rule.name for i, rule in enumerate(self.channels)}

    @property
    def label_kind(self) -> str:
        if self.label_stem == "seg":
            return "mask"
        return "class" if task_kind(self.task_type).target == CASE_CLASS else "value"

    @property
    def label_file(self) -> str:
        return f"{self.label_stem}{IMAGE_FILE_ENDING if self.label_stem == 'seg' else '.txt'}"

    @property
    def required_sequences(self) -> tuple[str, ...]:
        """Sequences every case must have (each is a channel of its own)."""
        return tuple(c.sequences[0] for c in self.channels if len(c.sequences) == 1)

    @property
    def alternative_sequences(self) -> tuple[str, ...]:
        """Sequences of the merged channel: a case has at least one of them (empty for task 3)."""
        return tuple(s for c in self.channels if len(c.sequences) > 1 for s in c.sequences)

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(s for c in self.channels for s in c.sequences)


SWI_OR_T2S = ChannelRule("swi_or_t2s", ("swi", "t2s"))
TASK_RULES = {
    1: TaskRule(1, "classification", (ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                      ChannelRule("adc", ("adc",)), SWI_OR_T2S),
                "label", "FOMOTask1Infarct", {"classes": {"0": "no_infarct", "1": "infarct"}},
                mask_stem="seg", mask_labels={"background": 0, "infarct": 1},
                output_text="a .txt with the probability of infarct"),
    2: TaskRule(2, "segmentation", (ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                    SWI_OR_T2S),
                "seg", "FOMOTask2Meningioma", {"labels": {"background": 0, "meningioma": 1}},
                output_endings=(".nii.gz", ".nii"), output_text="a NIfTI mask (.nii.gz) in the FLAIR's geometry"),
    3: TaskRule(3, "regression", (ChannelRule("t1", ("t1",)), ChannelRule("t2", ("t2",))),
                "label", "FOMOTask3BrainAge", {"target": {"name": "age", "unit": "years"}},
                target_range=(0.0, 120.0), output_text="a .txt with the predicted age"),
}
SEQUENCES = tuple(dict.fromkeys(s for rule in TASK_RULES.values() for s in rule.sequences))
