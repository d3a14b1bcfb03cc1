"""FOMO finetuning task folder -> nnU-Net-style raw dataset (classification, segmentation or regression).

`fomo_nn_convert fomo-task SRC [--edition fomo25|fomo26] --task N -d N` reads
`SRC/preprocessed/sub_X/ses_1/<sequence>.nii.gz` (FOMO26: `sub-XX/ses-01/`) and the labels in
`SRC/labels/sub_X/ses_1/` or `SRC/labels/sub_X/`, picks the channels of the task's rule (its own files
only: FOMO26 task 3 reads `t1w.nii.gz`, task 4 `t2w.nii.gz`, task 5 `t1.nii.gz`), reads every image once (unreadable, truncated, NaN/Inf, 4D, grids that disagree) and writes
`imagesTr/sub_X_000k.nii.gz` (hard link or byte copy: the scan is not re-encoded, its geometry stays
exactly as given) plus `labelsTr/sub_X.nii.gz` (segmentation: values among the task's labels, {0, 1, 2}
for FOMO26 task 4) or `labelsTr/sub_X.txt` (classification, regression: `label.txt` / `labels.txt`).
Task 1 ships an infarct mask `seg.nii.gz` beside `label.txt` (all-zero for negatives): when the source
has any, every labelled case must have one, and it is kept as the auxiliary mask
`labelsTr/sub_X.nii.gz` (dataset.json `auxiliary_labels`), checked like a task-2 mask.
A bad case is reported (each problem once, with its file) and nothing of it is written; the other
cases go on. The new images/labels folders are built in a hidden folder beside the dataset and put in
place when every case is done, dataset.json last: an interrupted or failed run leaves the dataset as
it was (or, the first time, no dataset.json), and a rerun does the whole conversion again.
The task rules themselves (channels, label files, the swi/t2s choice) live in `fomo_nn.challenges`.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataset_conversion.nnunet_dataset import (ConversionReport, link_or_copy, place_file, replace_folder,
                                               restore_interrupted, staging_area, target_dataset_dir)
from fomo_nn.datasets.cases import case_id_problem, read_target_txt
from fomo_nn.datasets.dataset_json import DatasetSpec, load_dataset_json, save_dataset_json
from fomo_nn.datasets.validation import ImageGrid, check_mask_values, grid_mismatch, read_grid
from fomo_nn.challenges.edition import IMAGE_FILE_ENDING as FILE_ENDING
from fomo_nn.challenges.edition import ChallengeTask
from fomo_nn.challenges.fomo25 import SWI_OR_T2S
from fomo_nn.challenges.layout import (TaskSubject, find_task_label, find_task_subjects, has_task_labels,
                                       hidden_folders_note, natural_key)
from fomo_nn.challenges.registry import challenge_task
from fomo_nn.io import read_image
from fomo_nn.utils.errors import BadInputError
from fomo_nn.preprocessing.parallel import run_parallel
from fomo_nn.utils.files import write_text_atomic

_IMAGE_NAME = re.compile(rf"(?P<case>.+)_\d{{4}}{re.escape(FILE_ENDING)}")


def format_target(value: float) -> str:
    """`1`, `63`, `63.5`: a whole number without a trailing `.0`, anything else exactly."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ------------------------------------------------------------------------------------------- one case
@dataclass
class CaseJob:
    """Everything a worker needs for one case (plain data: it crosses process boundaries)."""

    case_id: str
    channel_files: list[str]  # shorter than the task's channels when a sequence is missing
    label_file: str | None
    label_kind: str | None  # "class", "value", "mask"; None: no label expected (unlabelled test split)
    allowed_classes: list[int]
    target_range: tuple[float, float] | None
    images_dir: str
    labels_dir: str
    link: bool
    problems: list[tuple[str, str]]  # found while locating files (missing sequence, missing label)
    mask_file: str | None = None  # auxiliary mask (task 1 seg.nii.gz)
    label_values: tuple[int, ...] = (0, 1)  # the values a label mask may hold (the task's labels)


@dataclass
class CaseOutcome:
    case_id: str
    problems: list[tuple[str, str]]
    target: float | None = None
    placed: dict[str, int] = field(default_factory=dict)  # "linked"/"copied"/... -> count
    mask_voxels: int | None = None  # foreground voxels of the auxiliary mask


def convert_case(job: CaseJob) -> CaseOutcome:
    """Read and check every file of one case; write it (into the staging folders) only when all is well."""
    problems = list(job.problems)
    reference = None
    for path in job.channel_files:
        grid, _ = _read(path, problems)
        if grid is None:
            continue
        if reference is None:
            reference = grid
        elif not grid.same_as(reference):
            error = grid_mismatch(path, grid, reference, "first channel")
            problems.append((error.path, error.problem))
    target = _check_label(job, reference, problems) if job.label_file else None
    mask_voxels = _check_mask(job.mask_file, reference, problems) if job.mask_file else None
    if problems:
        return CaseOutcome(job.case_id, problems)
    placed = _write_case(job, target, Path(job.images_dir), Path(job.labels_dir))
    return CaseOutcome(job.case_id, [], target, placed, mask_voxels)


def _read(path: str, problems: list) -> tuple[ImageGrid | None, np.ndarray | None]:
    """The grid and voxels of one file, or (None, None) with its problem recorded.

    The header is checked first as `fomo_nn_convert validate` does (3D, invertible affine, complete
    file); whatever a reader raises is this file's problem, never the end of the whole conversion.
    """
    try:
        read_grid(path)
        data, props = read_image(path)
        return ImageGrid(path, props.ras_shape, np.asarray(props.ras_affine)), data
    except BadInputError as error:
        problems.append((error.path, error.problem))
    except Exception as error:  # a reader's unforeseen failure, e.g. an RGB image it cannot cast to float
        problems.append((path, f"cannot be read as a 3D scalar image ({type(error).__name__}: {error})"))
    return None, None


def _check_mask(path: str, reference: ImageGrid | None, problems: list, values=(0, 1)) -> int | None:
    """A mask on the image grid holding only `values`; returns its foreground voxel count."""
    grid, data = _read(path, problems)
    if grid is None:
        return None
    try:
        if reference is not None and not grid.same_as(reference):
            raise grid_mismatch(path, grid, reference, "image")
        check_mask_values(path, list(values), data)
        return int(np.count_nonzero(data))
    except BadInputError as error:
        problems.append((error.path, error.problem))
        return None


def _check_label(job: CaseJob, reference: ImageGrid | None, problems: list) -> float | None:
    if job.label_kind == "mask":
        _check_mask(job.label_file, reference, problems, job.label_values)
        return None
    try:
        value = read_target_txt(job.label_file, job.target_range)
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
        if job.mask_file is not None:
            place_file(job.mask_file, labels_dir / f"{job.case_id}{FILE_ENDING}", link=job.link)
    return placed


# ------------------------------------------------------------------------------------------- the task
def plan_case(src: Path, subject: TaskSubject, rule: ChallengeTask, images_dir: Path, labels_dir: Path,
              expect_labels: bool, link: bool, masks: str = "none") -> tuple[CaseJob, dict[str, str]]:
    """Locate a case's files by the task's channel rule; the job carries what is missing as problems.

    `masks`: the auxiliary mask is "required" (training split of a source that has masks), "optional"
    (test split) or "none" (not kept).
    """
    problems = [(subject.problem.path, subject.problem.problem)] if subject.problem else []
    subject_dir = src / "preprocessed" / subject.subject
    name_problem = case_id_problem(subject.subject)
    if name_problem:  # preprocessing would drop it later; say so now, naming the folder to rename
        problems.append((str(subject_dir), f"subject folder name cannot be a case id: {name_problem}; rename it"))
    folder = subject.session_dir or subject_dir
    channel_files, choices = [], {}
    for channel in rule.channels:
        sequence = channel.pick(subject.images)
        if sequence is None:
            found = ", ".join(sorted(subject.images)) or "no images"
            wanted = " or ".join(f"{s}{FILE_ENDING}" for s in channel.sequences)
            problems.append((str(folder / f"{channel.sequences[0]}{FILE_ENDING}"),
                             f"missing sequence: no {wanted} for channel {channel.name} (found: {found})"))
            continue
        try:
            channel_files.append(str(subject.image(sequence)))
        except BadInputError as error:
            problems.append((error.path, error.problem))
            continue
        if len(channel.sequences) > 1:
            choices[channel.name] = sequence
    label_file, label_kind = None, None
    if expect_labels:
        label_kind = rule.label_kind
        label_file = _locate_label(src, subject, rule.label_stem, rule.label_file, problems, "label is missing",
                                   text=label_kind != "mask")
    mask_file = None
    if masks != "none":
        needed = ("lesion mask is missing while other cases of this source have one; every case needs one, "
                  "all-zero for a case without a lesion") if masks == "required" else None
        mask_file = _locate_label(src, subject, rule.mask_stem, f"{rule.mask_stem}{FILE_ENDING}", problems, needed)
    classes = [int(k) for k in rule.targets.get("classes", {})]
    label_values = tuple(sorted(rule.targets.get("labels", {"background": 0, "foreground": 1}).values()))
    job = CaseJob(subject.subject, channel_files, label_file, label_kind, classes,
                  rule.target_range, str(images_dir), str(labels_dir), link, problems, mask_file, label_values)
    return job, choices


def _locate_label(src: Path, subject: TaskSubject, stem: str, file_name: str, problems: list,
                  missing: str | None, text: bool = False) -> str | None:
    """The subject's label file `stem`; a problem is recorded when it is ambiguous (seg.nii beside
    seg.nii.gz) or absent while `missing` says why it is needed."""
    try:
        found = find_task_label(src, subject, stem, text)
    except BadInputError as error:
        problems.append((error.path, error.problem))
        return None
    if found is None and missing:
        session = subject.session_dir.name + "/" if subject.session_dir else ""
        problems.append((str(src / "labels" / subject.subject / f"{session}{file_name}"),
                         f"{missing} (looked in labels/{subject.subject}/{session} and labels/{subject.subject}/)"))
    return None if found is None else str(found)


def _has_label(src: Path, subject: TaskSubject, stem: str) -> bool:
    """Whether the subject has the (NIfTI) auxiliary mask `stem`."""
    try:
        return find_task_label(src, subject, stem, text=False) is not None
    except BadInputError:  # there is one, twice: that case reports it
        return True


def mask_policy(src: Path, subjects: list[TaskSubject], rule: ChallengeTask, target: Path, split: str,
                expect_labels: bool) -> str:
    """"required", "optional" or "none": whether this conversion keeps the task's auxiliary masks.

    Kept when the rule has them and the source ships any; the test split only adds them to a dataset
    whose dataset.json declares them (or that has none yet), and never requires them.
    """
    if rule.mask_stem is None or not expect_labels:
        return "none"
    if not any(_has_label(src, subject, rule.mask_stem) for subject in subjects):
        return "none"
    if split == "train":
        return "required"
    existing = target / "dataset.json"
    return "optional" if not existing.is_file() or load_dataset_json(target).auxiliary_labels else "none"


def convert_fomo_task(src: str | os.PathLike, task: int, dataset: str | int, name: str | None = None,
                      split: str = "train", link: bool = True, num_processes: int = 1,
                      progress: bool = True, edition: str | None = None) -> ConversionReport:
    """Convert one FOMO task folder of `edition` (default FOMO25); returns the report (bad cases listed,
    nothing of them written)."""
    rule = challenge_task(edition, task)
    if not rule.finetuned:
        raise ValueError(f"{rule.name} ({rule.title}) has no finetuning data to convert: its embeddings are "
                         "probed (fomo_nn_probe)")
    if split not in ("train", "test"):
        raise ValueError(f"--split must be train or test, got {split!r}")
    src = Path(os.path.abspath(src))
    if not src.is_dir():
        raise BadInputError(src, "source folder does not exist")
    listing = find_task_subjects(src)
    subjects = listing.subjects
    target = target_dataset_dir(dataset, name, rule.default_name)
    _check_existing_dataset(target, rule)
    suffix = "Tr" if split == "train" else "Ts"
    folders = (f"images{suffix}", f"labels{suffix}")
    expect_labels = split == "train" or has_task_labels(src)
    masks = mask_policy(src, subjects, rule, target, split, expect_labels)

    with staging_area(target) as staging:
        planned = [plan_case(src, s, rule, staging / folders[0], staging / folders[1], expect_labels, link, masks)
                   for s in subjects]
        outcomes = _run(planned, num_processes, progress)
        good = [o for o in outcomes if not o.problems]
        report = ConversionReport(target, f"cases (images{suffix})", converted=len(good),
                                  bad=[BadInputError(p, problem) for o in outcomes for p, problem in o.problems])
        _notes(report, good, expect_labels, listing.hidden)
        _mask_notes(report, good, masks, rule)
        if not good:
            report.notes.append("nothing written: no usable case")
            return report
        _put_in_place(report, target, staging, folders, {s.subject for s in subjects}, split == "train")
    choices = {job.case_id: chosen for job, chosen in planned if chosen}
    _save_spec(target, rule, src, split, good, {c: choices[c] for c in (o.case_id for o in good) if c in choices},
               with_masks=masks != "none")
    return report


def _put_in_place(report: ConversionReport, target: Path, staging: Path, folders: tuple[str, ...],
                  source_cases: set[str], rewrites_spec: bool) -> None:
    """Swap the staged folders in, keeping the other cases of the old ones; dataset.json is written after."""
    strangers = _keep_other_cases(target, staging, folders, source_cases)
    if strangers:
        report.notes.append(f"{target / folders[0]} also holds {len(strangers)} case(s) not in SRC (e.g. "
                            f"{strangers[0]}); they were left as they are")
    if rewrites_spec:  # a dataset.json is there only beside the folders it describes
        (target / "dataset.json").unlink(missing_ok=True)
    for folder in folders:
        if (staging / folder).is_dir():
            replace_folder(staging / folder, target / folder)
        elif (target / folder).is_dir():  # labels of an earlier run, for cases now converted without them
            shutil.rmtree(target / folder)


def _keep_other_cases(target: Path, staging: Path, folders: tuple[str, ...], source_cases: set[str]) -> list[str]:
    """Carry whatever the old folders hold that is not a case of SRC into the new ones (linked, else copied).

    Returns those other cases, by the images folder's file names.
    """
    others = set()
    for folder in folders:
        old = target / folder
        restore_interrupted(old)
        if not old.is_dir():
            continue
        for entry in os.scandir(old):
            case = _case_of(entry.name, folder.startswith("images"))
            if case in source_cases:
                continue
            (staging / folder).mkdir(parents=True, exist_ok=True)
            if entry.is_dir():
                shutil.copytree(entry.path, staging / folder / entry.name, copy_function=link_or_copy)
            else:
                link_or_copy(entry.path, staging / folder / entry.name)
            if case is not None and folder.startswith("images"):
                others.add(case)
    return sorted(others, key=natural_key)


def _case_of(file_name: str, images: bool) -> str | None:
    """The case a dataset file belongs to: `sub_1_0003.nii.gz` (images), `sub_1.nii.gz` / `sub_1.txt` (labels)."""
    if images:
        match = _IMAGE_NAME.fullmatch(file_name)
        return match["case"] if match else None
    for ending in (FILE_ENDING, ".txt"):
        if file_name.endswith(ending) and len(file_name) > len(ending):
            return file_name[: -len(ending)]
    return None


def _mask_notes(report: ConversionReport, good: list[CaseOutcome], masks: str, rule: ChallengeTask) -> None:
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
    """Every case's outcome, in the order planned; workers through run_parallel (a dead one is named)."""
    jobs = [job for job, _ in planned]
    finished = dict(run_parallel(convert_case, jobs, [job.case_id for job in jobs], min(num_processes, len(jobs)),
                                 "converting cases", progress))
    return [finished[job.case_id] for job in jobs]


def _check_existing_dataset(target: Path, rule: ChallengeTask) -> None:
    """Refuse to mix tasks in one folder (a rerun or the test split of the same task is fine)."""
    if not (target / "dataset.json").is_file():
        return
    spec = load_dataset_json(target)
    if spec.task_type != rule.task_type or spec.channel_names != rule.channel_names:
        raise ValueError(f"{target} already holds a {spec.task_type} dataset with channels {spec.channels}, "
                         f"not {rule.name}; choose another -d/--name")


def _notes(report: ConversionReport, good: list[CaseOutcome], expect_labels: bool, hidden: list[str]) -> None:
    placed: dict[str, int] = {}
    for outcome in good:
        for how, n in outcome.placed.items():
            placed[how] = placed.get(how, 0) + n
    if placed:
        report.notes.append("images " + ", ".join(f"{how} {n}" for how, n in sorted(placed.items())))
    if not expect_labels:
        report.notes.append("SRC has no labels folder: images only")
    hidden_note = hidden_folders_note(hidden)
    if hidden_note:
        report.notes.append(hidden_note)


def _description(rule: ChallengeTask, src: Path) -> str:
    text = f"{rule.name} ({rule.title}, {rule.task_type}) converted from {src}"
    if SWI_OR_T2S in rule.channels:
        text += "; channel swi_or_t2s holds swi where a case has it, else t2s (see channel_choices)"
    return text


def _save_spec(target: Path, rule: ChallengeTask, src: Path, split: str, good: list[CaseOutcome],
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
        extra={"fomo_task": rule.number, "fomo_edition": rule.edition, **({"channel_choices": choices} if choices and training else {})})
    save_dataset_json(spec, target)
