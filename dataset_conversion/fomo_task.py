"""FOMO finetuning task folder -> nnU-Net-style raw dataset (classification, segmentation or regression).

`fomo_nn_convert fomo-task SRC --task {1,2,3} -d N` reads `SRC/preprocessed/sub_X/ses_1/<sequence>.nii.gz`
and the labels in `SRC/labels/sub_X/ses_1/` or `SRC/labels/sub_X/`, picks the channels of the task's
rule, reads every image once (unreadable, truncated, NaN/Inf, 4D, grids that disagree) and writes
`imagesTr/sub_X_000k.nii.gz` (hard link or byte copy: the scan is not re-encoded, its geometry stays
exactly as given) plus `labelsTr/sub_X.nii.gz` (task 2) or `labelsTr/sub_X.txt` (tasks 1, 3).
Task 1 ships an infarct mask `seg.nii.gz` beside `label.txt` (all-zero for negatives): when the source
has any, every labelled case must have one, and it is kept as the auxiliary mask
`labelsTr/sub_X.nii.gz` (dataset.json `auxiliary_labels`), checked like a task-2 mask.
A bad case is reported and nothing of it is written; the other cases go on.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataset_conversion.layout import TaskSubject, find_task_label, find_task_subjects, has_task_labels
from dataset_conversion.nnunet_dataset import ConversionReport, place_file, remove_case_outputs, target_dataset_dir
from fomo_nn.datasets.cases import read_target_txt
from fomo_nn.datasets.dataset_json import DatasetSpec, load_dataset_json, save_dataset_json
from fomo_nn.datasets.validation import ImageGrid, check_mask_values, grid_mismatch
from fomo_nn.io import read_image
from fomo_nn.io.errors import BadInputError
from fomo_nn.utils.files import write_text_atomic

# FOMO task 3 targets are ages in years: anything outside is a broken label file, not a patient
PLAUSIBLE_AGE_YEARS = (0.0, 120.0)

FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class ChannelRule:
    name: str  # channel name in dataset.json
    sequences: tuple[str, ...]  # candidate file stems, first present wins

    def pick(self, images: dict[str, Path]) -> str | None:
        return next((s for s in self.sequences if s in images), None)


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

    @property
    def channel_names(self) -> dict[str, str]:
        return {str(i): rule.name for i, rule in enumerate(self.channels)}

    @property
    def label_kind(self) -> str:
        if self.label_stem == "seg":
            return "mask"
        return "class" if self.task_type == "classification" else "value"


_SWI_OR_T2S = ChannelRule("swi_or_t2s", ("swi", "t2s"))
TASK_RULES = {
    1: TaskRule(1, "classification", (ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                      ChannelRule("adc", ("adc",)), _SWI_OR_T2S),
                "label", "FOMOTask1Infarct", {"classes": {"0": "no_infarct", "1": "infarct"}},
                mask_stem="seg", mask_labels={"background": 0, "infarct": 1}),
    2: TaskRule(2, "segmentation", (ChannelRule("dwi_b1000", ("dwi_b1000",)), ChannelRule("flair", ("flair",)),
                                    _SWI_OR_T2S),
                "seg", "FOMOTask2Meningioma", {"labels": {"background": 0, "meningioma": 1}}),
    3: TaskRule(3, "regression", (ChannelRule("t1", ("t1",)), ChannelRule("t2", ("t2",))),
                "label", "FOMOTask3BrainAge", {"target": {"name": "age", "unit": "years"}}),
}


def format_target(value: float) -> str:
    """`1`, `63`, `63.5`: a whole number without a trailing `.0`, anything else exactly."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ------------------------------------------------------------------------------------------- one case
@dataclass
class CaseJob:
    """Everything a worker needs for one case (plain data: it crosses process boundaries)."""

    case_id: str
    num_channels: int  # of the task (channel_files is shorter when a sequence is missing)
    channel_files: list[str]
    label_file: str | None
    label_kind: str | None  # "class", "value", "mask"; None: no label expected (unlabelled test split)
    allowed_classes: list[int]
    images_dir: str
    labels_dir: str
    link: bool
    problems: list[tuple[str, str]]  # found while locating files (missing sequence, missing label)
    mask_file: str | None = None  # auxiliary mask (task 1 seg.nii.gz)


@dataclass
class CaseOutcome:
    case_id: str
    problems: list[tuple[str, str]]
    target: float | None = None
    placed: dict[str, int] = field(default_factory=dict)  # "linked"/"copied"/... -> count
    mask_voxels: int | None = None  # foreground voxels of the auxiliary mask


def convert_case(job: CaseJob) -> CaseOutcome:
    """Read and check every file of one case; write it only when all is well (else remove old outputs)."""
    problems = list(job.problems)
    reference = None
    for path in job.channel_files:
        try:
            _, props = read_image(path)
        except BadInputError as error:
            problems.append((error.path, error.problem))
            continue
        grid = ImageGrid(path, props.ras_shape, np.asarray(props.ras_affine))
        if reference is None:
            reference = grid
        elif not grid.same_as(reference):
            error = grid_mismatch(path, grid, reference, "first channel")
            problems.append((error.path, error.problem))
    target = _check_label(job, reference, problems) if job.label_file else None
    mask_voxels = _check_mask(job.mask_file, reference, problems) if job.mask_file else None
    images_dir, labels_dir = Path(job.images_dir), Path(job.labels_dir)
    if problems:
        remove_case_outputs(images_dir, labels_dir, job.case_id, job.num_channels, FILE_ENDING)
        return CaseOutcome(job.case_id, problems)
    return CaseOutcome(job.case_id, [], target, _write_case(job, target, images_dir, labels_dir), mask_voxels)


def _check_mask(path: str, reference: ImageGrid | None, problems: list) -> int | None:
    """A {0, 1} mask on the image grid; returns its foreground voxel count."""
    try:
        data, props = read_image(path)
        grid = ImageGrid(path, props.ras_shape, np.asarray(props.ras_affine))
        if reference is not None and not grid.same_as(reference):
            raise grid_mismatch(path, grid, reference, "image")
        check_mask_values(path, [0, 1], data)
        return int(np.count_nonzero(data))
    except BadInputError as error:
        problems.append((error.path, error.problem))
        return None


def _check_label(job: CaseJob, reference: ImageGrid | None, problems: list) -> float | None:
    if job.label_kind == "mask":
        _check_mask(job.label_file, reference, problems)
        return None
    try:
        value = read_target_txt(job.label_file, PLAUSIBLE_AGE_YEARS if job.label_kind == "value" else None)
        if job.label_kind == "class" and value not in job.allowed_classes:
            raise BadInputError(job.label_file, f"class {value:g} is not one of {job.allowed_classes}")
        return value
    except BadInputError as error:
        problems.append((error.path, error.problem))
        return None


def _write_case(job: CaseJob, target: float | None, images_dir: Path, labels_dir: Path) -> dict[str, int]:
    placed: dict[str, int] = {}
    for channel, path in enumerate(job.channel_files):
        how = place_file(path, images_dir / f"{job.case_id}_{channel:04d}{FILE_ENDING}", link=job.link)
        placed[how] = placed.get(how, 0) + 1
    if job.label_kind == "mask":
        place_file(job.label_file, labels_dir / f"{job.case_id}{FILE_ENDING}", link=job.link)
    elif job.label_file is not None:
        write_text_atomic(labels_dir / f"{job.case_id}.txt", format_target(target) + "\n")
        mask = labels_dir / f"{job.case_id}{FILE_ENDING}"
        if job.mask_file is not None:
            place_file(job.mask_file, mask, link=job.link)
        else:
            mask.unlink(missing_ok=True)  # an earlier conversion's mask would outlive its dataset.json entry
    return placed


# ------------------------------------------------------------------------------------------- the task
def plan_case(src: Path, subject: TaskSubject, rule: TaskRule, images_dir: Path, labels_dir: Path,
              expect_labels: bool, link: bool, masks: str = "none") -> tuple[CaseJob, dict[str, str]]:
    """Locate a case's files by the task's channel rule; the job carries what is missing as problems.

    `masks`: the auxiliary mask is "required" (training split of a source that has masks), "optional"
    (test split) or "none" (not kept).
    """
    problems = [(subject.problem.path, subject.problem.problem)] if subject.problem else []
    folder = subject.session_dir or (src / "preprocessed" / subject.subject)
    channel_files, choices = [], {}
    for channel in rule.channels:
        sequence = channel.pick(subject.images)
        if sequence is None:
            found = ", ".join(sorted(subject.images)) or "no images"
            wanted = " or ".join(f"{s}{FILE_ENDING}" for s in channel.sequences)
            problems.append((str(folder / f"{channel.sequences[0]}{FILE_ENDING}"),
                             f"missing sequence: no {wanted} for channel {channel.name} (found: {found})"))
            continue
        channel_files.append(str(subject.images[sequence]))
        if len(channel.sequences) > 1:
            choices[channel.name] = sequence
    label_file, label_kind = None, None
    if expect_labels:
        label_kind = rule.label_kind
        label = find_task_label(src, subject, rule.label_stem)
        if label is None:
            ending = ".txt" if rule.label_stem == "label" else FILE_ENDING
            session = subject.session_dir.name + "/" if subject.session_dir else ""
            problems.append((str(src / "labels" / subject.subject / f"{session}{rule.label_stem}{ending}"),
                             f"label is missing (looked in labels/{subject.subject}/{session} and "
                             f"labels/{subject.subject}/)"))
        else:
            label_file = str(label)
    mask_file = None
    if masks != "none":
        mask = find_task_label(src, subject, rule.mask_stem)
        mask_file = None if mask is None else str(mask)
        if mask is None and masks == "required":
            session = subject.session_dir.name + "/" if subject.session_dir else ""
            problems.append((str(src / "labels" / subject.subject / f"{session}{rule.mask_stem}{FILE_ENDING}"),
                             f"lesion mask is missing while other cases of this source have one (looked in "
                             f"labels/{subject.subject}/{session} and labels/{subject.subject}/); every case needs "
                             "one, all-zero for a case without a lesion"))
    classes = [int(k) for k in rule.targets.get("classes", {})]
    job = CaseJob(subject.subject, len(rule.channels), channel_files, label_file, label_kind, classes,
                  str(images_dir), str(labels_dir), link, problems, mask_file)
    return job, choices


def mask_policy(src: Path, subjects: list[TaskSubject], rule: TaskRule, target: Path, split: str,
                expect_labels: bool) -> str:
    """"required", "optional" or "none": whether this conversion keeps the task's auxiliary masks.

    Kept when the rule has them and the source ships any; the test split only adds them to a dataset
    whose dataset.json declares them (or that has none yet), and never requires them.
    """
    if rule.mask_stem is None or not expect_labels:
        return "none"
    if not any(find_task_label(src, subject, rule.mask_stem) is not None for subject in subjects):
        return "none"
    if split == "train":
        return "required"
    existing = target / "dataset.json"
    return "optional" if not existing.is_file() or load_dataset_json(target).auxiliary_labels else "none"


def convert_fomo_task(src: str | os.PathLike, task: int, dataset: str | int, name: str | None = None,
                      split: str = "train", link: bool = True, num_processes: int = 1,
                      progress: bool = True) -> ConversionReport:
    """Convert one FOMO task folder; returns the report (bad cases listed, nothing of them written)."""
    if task not in TASK_RULES:
        raise ValueError(f"--task must be 1, 2 or 3, got {task}")
    if split not in ("train", "test"):
        raise ValueError(f"--split must be train or test, got {split!r}")
    rule = TASK_RULES[task]
    src = Path(os.path.abspath(src))
    if not src.is_dir():
        raise BadInputError(src, "source folder does not exist")
    subjects = find_task_subjects(src)
    target = target_dataset_dir(dataset, name, rule.default_name)
    _check_existing_dataset(target, rule)
    suffix = "Tr" if split == "train" else "Ts"
    images_dir, labels_dir = target / f"images{suffix}", target / f"labels{suffix}"
    expect_labels = split == "train" or has_task_labels(src)
    masks = mask_policy(src, subjects, rule, target, split, expect_labels)

    planned = [plan_case(src, s, rule, images_dir, labels_dir, expect_labels, link, masks) for s in subjects]
    outcomes = _run(planned, num_processes, progress)
    good = [o for o in outcomes if not o.problems]
    report = ConversionReport(target, f"cases (images{suffix})", converted=len(good),
                              bad=[BadInputError(p, problem) for o in outcomes for p, problem in o.problems])
    _notes(report, good, expect_labels, images_dir, {s.subject for s in subjects})
    _mask_notes(report, good, masks, rule)
    if not good:
        report.notes.append("nothing written: no usable case")
        return report
    choices = {job.case_id: chosen for job, chosen in planned if chosen}
    _save_spec(target, rule, src, split, good, {c: choices[c] for c in (o.case_id for o in good) if c in choices},
               with_masks=masks != "none")
    return report


def _mask_notes(report: ConversionReport, good: list[CaseOutcome], masks: str, rule: TaskRule) -> None:
    """How many masks were kept, and cases whose mask and class disagree (worth a look, not refused)."""
    if masks == "none":
        return
    kept = [o for o in good if o.mask_voxels is not None]
    report.notes.append(f"lesion masks ({rule.mask_stem}{FILE_ENDING}) kept for {len(kept)} case(s) as auxiliary "
                        "labels")
    empty_positive = sorted(o.case_id for o in kept if o.target == 1 and o.mask_voxels == 0)
    lesion_negative = sorted(o.case_id for o in kept if o.target == 0 and o.mask_voxels > 0)
    if empty_positive:
        report.notes.append(f"{len(empty_positive)} positive case(s) with an empty mask: "
                            f"{', '.join(empty_positive[:5])}")
    if lesion_negative:
        report.notes.append(f"{len(lesion_negative)} negative case(s) with a non-empty mask: "
                            f"{', '.join(lesion_negative[:5])}")


def _run(planned, num_processes: int, progress: bool) -> list[CaseOutcome]:
    jobs = [job for job, _ in planned]
    bar = dict(total=len(jobs), desc="converting cases", unit="case", disable=not progress)
    if num_processes <= 1 or len(jobs) < 2:
        return [convert_case(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(min(num_processes, len(jobs))) as pool:
        return list(tqdm(pool.map(convert_case, jobs), **bar))


def _check_existing_dataset(target: Path, rule: TaskRule) -> None:
    """Refuse to mix tasks in one folder (a rerun or the test split of the same task is fine)."""
    if not (target / "dataset.json").is_file():
        return
    spec = load_dataset_json(target)
    if spec.task_type != rule.task_type or spec.channel_names != rule.channel_names:
        raise ValueError(f"{target} already holds a {spec.task_type} dataset with channels {spec.channels}, "
                         f"not FOMO task {rule.task}; choose another -d/--name")


def _notes(report: ConversionReport, good: list[CaseOutcome], expect_labels: bool, images_dir: Path,
           source_cases: set[str]) -> None:
    placed: dict[str, int] = {}
    for outcome in good:
        for how, n in outcome.placed.items():
            placed[how] = placed.get(how, 0) + n
    if placed:
        report.notes.append("images " + ", ".join(f"{how} {n}" for how, n in sorted(placed.items())))
    if not expect_labels:
        report.notes.append("SRC has no labels folder: images only")
    strangers = sorted({p.name[: -len(f"_0000{FILE_ENDING}")] for p in images_dir.glob(f"*_0000{FILE_ENDING}")}
                       - source_cases)
    if strangers:
        report.notes.append(f"{images_dir} also holds {len(strangers)} case(s) not in SRC (e.g. {strangers[0]}); "
                            "they were left as they are")


def _description(rule: TaskRule, src: Path) -> str:
    text = f"FOMO25 task {rule.task} ({rule.task_type}) converted from {src}"
    if _SWI_OR_T2S in rule.channels:
        text += "; channel swi_or_t2s holds swi where a case has it, else t2s (see channel_choices)"
    return text


def _save_spec(target: Path, rule: TaskRule, src: Path, split: str, good: list[CaseOutcome],
               choices: dict[str, dict[str, str]], with_masks: bool = False) -> None:
    """dataset.json from the training split; the test split keeps an existing one untouched."""
    if split == "test" and (target / "dataset.json").is_file():
        return
    training = split == "train"
    cases = sorted(o.case_id for o in good) if training else []
    spec = DatasetSpec(
        name=target.name.split("_", 1)[1], task_type=rule.task_type, channel_names=rule.channel_names,
        file_ending=FILE_ENDING, num_training=len(cases), case_subjects={c: c for c in cases},
        description=_description(rule, src),
        labels=rule.targets.get("labels"), classes=rule.targets.get("classes"), target=rule.targets.get("target"),
        auxiliary_labels=rule.mask_labels if with_masks else None,
        extra={"fomo_task": rule.task, **({"channel_choices": choices} if choices and training else {})})
    save_dataset_json(spec, target)
