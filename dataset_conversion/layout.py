"""Where things are in the two FOMO source layouts. Pure discovery: no image is read here.

- FOMO60K corpus: `SRC/sub_<id>/ses_<n>/<sequence>.nii.gz` (names such as t1, t1_2, scan_3, flair).
- FOMO finetuning task: `SRC/preprocessed/sub_X/ses_1/<sequence>.nii.gz` with labels in
  `SRC/labels/sub_X/ses_1/` or `SRC/labels/sub_X/` (the validation layout drops `ses_1`).

Folders are walked with os.scandir: one readdir per folder and, thanks to the cached entry type,
one stat per image (for its size) and nothing more, so 60K files take well under a second.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.io.errors import BadInputError

IMAGE_ENDINGS = (".nii.gz", ".nii")
_MIN_BYTES = {".nii.gz": 18, ".nii": 352}  # a gzip member header + trailer; a NIfTI-1 header + offset
_TRAILING_INDEX = re.compile(r"_\d+$")
_UNNAMED_FAMILIES = {"scan": "unknown"}  # FOMO60K `scan_<k>`: the sequence was not known to the curators


def natural_key(name: str) -> list:
    """Sort `sub_2` before `sub_10` so listings read the way people number subjects."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def split_image_name(name: str) -> tuple[str, str] | None:
    """(stem, ending) of a NIfTI file name, e.g. `t1_2.nii.gz` -> ("t1_2", ".nii.gz"); None otherwise."""
    lower = name.lower()
    for ending in IMAGE_ENDINGS:
        if lower.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)], ending
    return None


def sequence_family(stem: str) -> str:
    """The sequence a FOMO60K file name stands for: `t1_2` -> `t1`, `FLAIR` -> `flair`, `scan_3` -> `unknown`.

    FOMO60K numbers repeated acquisitions of one sequence in a session (`t1`, `t1_2`) and calls scans of
    unrecorded type `scan_<k>`; the family drops that numbering. The manifest keeps the stem itself as
    the image's `sequence` (it is what identifies the file) and stores this family beside it.
    """
    family = _TRAILING_INDEX.sub("", stem.lower()) or stem.lower()
    return _UNNAMED_FAMILIES.get(family, family)


def _sorted_entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: natural_key(e.name))


# ------------------------------------------------------------------------------------------------ FOMO60K
@dataclass(frozen=True)
class CorpusImage:
    subject: str
    session: str
    sequence: str  # the file stem, as given
    relative_path: str  # "sub_1/ses_1/t1.nii.gz", relative to the corpus root


@dataclass
class CorpusListing:
    images: list[CorpusImage] = field(default_factory=list)
    problems: list[BadInputError] = field(default_factory=list)  # misplaced, empty, duplicate, broken links
    ignored: list[str] = field(default_factory=list)  # files that are not images (sidecars, notes)


def walk_fomo60k(src: str | os.PathLike, on_subject=None) -> CorpusListing:
    """Every image of a FOMO60K-layout tree, in natural order, with what does not fit the layout.

    `on_subject(n_images_so_far)` is called after each subject (for a progress display).
    """
    root = os.fspath(src)
    listing = CorpusListing()
    for subject in _sorted_entries(root):
        if not subject.is_dir():
            _file_outside_layout(listing, subject, "at the corpus root")
            continue
        for session in _sorted_entries(subject.path):
            if not session.is_dir():
                _file_outside_layout(listing, session, "directly in a subject folder, outside any session")
                continue
            _walk_session(listing, subject.name, session)
        if on_subject is not None:
            on_subject(len(listing.images))
    return listing


def _file_outside_layout(listing: CorpusListing, entry: os.DirEntry, where: str) -> None:
    if split_image_name(entry.name) is None:
        listing.ignored.append(entry.path)
    else:
        listing.problems.append(BadInputError(entry.path, f"image {where}; expected sub_*/ses_*/<sequence>.nii.gz"))


def _walk_session(listing: CorpusListing, subject: str, session: os.DirEntry) -> None:
    seen: dict[str, str] = {}
    for entry in _sorted_entries(session.path):
        parts = split_image_name(entry.name)
        if parts is None or entry.is_dir():
            if not entry.is_dir():
                listing.ignored.append(entry.path)
            continue
        stem, ending = parts
        problem = _file_problem(entry, ending)
        if problem is None and stem in seen:
            problem = f"a second file for sequence {stem!r} in this session (first: {seen[stem]})"
        if problem is not None:
            listing.problems.append(BadInputError(entry.path, problem))
            continue
        seen[stem] = entry.name
        listing.images.append(CorpusImage(subject, session.name, stem, f"{subject}/{session.name}/{entry.name}"))


def _file_problem(entry: os.DirEntry, ending: str) -> str | None:
    """What a directory listing alone can tell: a broken link or a file too short to be an image."""
    if not entry.is_file():
        return "broken symbolic link" if entry.is_symlink() else "not a regular file"
    size = entry.stat().st_size
    if size < _MIN_BYTES[ending]:
        return "empty file" if size == 0 else f"truncated file: only {size} bytes"
    return None


# --------------------------------------------------------------------------------------- finetuning task
@dataclass
class TaskSubject:
    subject: str  # folder name, used as the case id
    images: dict[str, Path]  # lower-case sequence stem -> file
    session_dir: Path | None  # where the images are (None: the subject folder has no session level)
    problem: BadInputError | None = None  # why the subject's images cannot be found


def task_images_root(src: str | os.PathLike) -> Path:
    root = Path(src) / "preprocessed"
    if not root.is_dir():
        raise BadInputError(root, "folder is missing; expected the FOMO finetuning layout "
                                  "SRC/preprocessed/sub_X/ses_1/<sequence>.nii.gz")
    return root


def find_task_subjects(src: str | os.PathLike) -> list[TaskSubject]:
    """The subjects of a finetuning task folder and their images by sequence name."""
    subjects = []
    for entry in _sorted_entries(os.fspath(task_images_root(src))):
        if entry.is_dir():
            subjects.append(task_subject(Path(entry.path)))
    if not subjects:
        raise BadInputError(task_images_root(src), "holds no subject folders (sub_X/ses_1/<sequence>.nii.gz)")
    return subjects


def task_subject(subject_dir: Path) -> TaskSubject:
    entries = _sorted_entries(os.fspath(subject_dir))
    sessions = [Path(e.path) for e in entries if e.is_dir()]
    direct = _images_in(subject_dir)
    if direct or not sessions:  # images straight in the subject folder (no session level)
        return TaskSubject(subject_dir.name, direct, None)
    if len(sessions) > 1:
        chosen = [s for s in sessions if s.name == "ses_1"]
        if not chosen:
            names = ", ".join(s.name for s in sessions)
            return TaskSubject(subject_dir.name, {}, None, BadInputError(
                subject_dir, f"several sessions ({names}) and none is ses_1; a finetuning case has one session"))
        sessions = chosen
    return TaskSubject(subject_dir.name, _images_in(sessions[0]), sessions[0])


def _images_in(folder: Path) -> dict[str, Path]:
    found = {}
    for entry in _sorted_entries(os.fspath(folder)):
        parts = split_image_name(entry.name)
        if parts is not None and not entry.is_dir():
            found.setdefault(parts[0].lower(), Path(entry.path))
    return found


def find_task_label(src: str | os.PathLike, subject: TaskSubject, stem: str) -> Path | None:
    """The label file `stem` (+ `.txt` or a NIfTI ending) of a subject: session level first, then subject level."""
    base = Path(src) / "labels" / subject.subject
    folders = [base / subject.session_dir.name] if subject.session_dir is not None else []
    folders.append(base)
    endings = (".txt",) if stem == "label" else IMAGE_ENDINGS
    for folder in folders:
        for ending in endings:
            candidate = folder / f"{stem}{ending}"
            if candidate.is_file():
                return candidate
    return None


def has_task_labels(src: str | os.PathLike) -> bool:
    return (Path(src) / "labels").is_dir()
