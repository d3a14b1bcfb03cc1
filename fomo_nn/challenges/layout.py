"""Where things are in the two FOMO source layouts. Pure discovery: no image is read here.

- FOMO60K corpus: `SRC/sub_<id>/ses_<n>/<sequence>.nii.gz` (names such as t1, t1_2, scan_3, flair).
- FOMO finetuning task: `SRC/preprocessed/sub_X/ses_1/<sequence>.nii.gz` with labels in
  `SRC/labels/sub_X/ses_1/` or `SRC/labels/sub_X/` (the validation layout drops `ses_1`); FOMO26
  names them `sub-XX/ses-01/` (asparagus_preprocessing @ fce45b3), read the same way.

Folders are walked with os.scandir: one readdir per folder and, thanks to the cached entry type,
one stat per image (for its size) and nothing more, so 60K files take well under a second.
Hidden entries (`.DS_Store`, `._flair.nii.gz`, `.sub_3/`) are skipped; hidden folders are listed so that
a converter can say so.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.utils.errors import BadInputError

IMAGE_ENDINGS = (".nii.gz", ".nii")
FIRST_SESSIONS = ("ses_1", "ses-01")  # a finetuning case's session: FOMO25's name, FOMO26's
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


def _sorted_entries(folder: str, hidden: list[str] | None = None) -> list[os.DirEntry]:
    """Visible entries in natural order; hidden folders are added to `hidden` (when given)."""
    with os.scandir(folder) as entries:
        entries = list(entries)
    if hidden is not None:
        hidden += sorted((e.path for e in entries if e.name.startswith(".") and e.is_dir()), key=natural_key)
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: natural_key(e.name))


def hidden_folders_note(hidden: list[str], limit: int = 5) -> str | None:
    """`skipped hidden folder .sub_3 in /data/preprocessed` (a few named, then a count), or None."""
    if not hidden:
        return None
    named = ", ".join(f"{Path(h).name} in {Path(h).parent}" for h in hidden[:limit])
    more = f" and {len(hidden) - limit} more" if len(hidden) > limit else ""
    return f"skipped hidden folder{'s' if len(hidden) > 1 else ''} {named}{more}"


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
    hidden: list[str] = field(default_factory=list)  # hidden subject / session folders, not walked


def walk_fomo60k(src: str | os.PathLike, on_subject=None) -> CorpusListing:
    """Every image of a FOMO60K-layout tree, in natural order, with what does not fit the layout.

    `on_subject(n_images_so_far)` is called after each subject (for a progress display).
    """
    root = os.fspath(src)
    listing = CorpusListing()
    for subject in _sorted_entries(root, listing.hidden):
        if not subject.is_dir():
            _file_outside_layout(listing, subject, "at the corpus root")
            continue
        for session in _sorted_entries(subject.path, listing.hidden):
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
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)  # stem -> every file claiming it

    def image(self, stem: str) -> Path:
        """The file of sequence `stem`; refused when two files claim it (`flair.nii` and `flair.nii.gz`)."""
        files = self.ambiguous.get(stem)
        if files:
            names = " and ".join(f.name for f in files)
            raise BadInputError(files[0].parent, f"ambiguous sequence {stem}: {names} are both there; keep one")
        return self.images[stem]


@dataclass
class TaskListing:
    subjects: list[TaskSubject] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # hidden subject folders, skipped


def task_images_root(src: str | os.PathLike) -> Path:
    root = Path(src) / "preprocessed"
    if not root.is_dir():
        raise BadInputError(root, "folder is missing; expected the FOMO finetuning layout "
                                  "SRC/preprocessed/sub_X/ses_1/<sequence>.nii.gz (FOMO26: sub-XX/ses-01/)")
    return root


def list_subjects(root: str | os.PathLike) -> TaskListing:
    """The subject folders directly under `root` (sub_X/[ses_1/]<sequence>.nii.gz), in natural order."""
    listing = TaskListing()
    for entry in _sorted_entries(os.fspath(root), listing.hidden):
        if entry.is_dir():
            listing.subjects.append(task_subject(Path(entry.path)))
    return listing


def find_task_subjects(src: str | os.PathLike) -> TaskListing:
    """The subjects of a finetuning task folder (`SRC/preprocessed/...`) and their images by sequence name."""
    root = task_images_root(src)
    listing = list_subjects(root)
    if not listing.subjects:
        raise BadInputError(root, "holds no subject folders (sub_X/ses_1/<sequence>.nii.gz)")
    return listing


def task_subject(subject_dir: Path) -> TaskSubject:
    entries = _sorted_entries(os.fspath(subject_dir))
    sessions = [Path(e.path) for e in entries if e.is_dir()]
    direct, ambiguous = _images_in(subject_dir)
    if direct or not sessions:  # images straight in the subject folder (no session level)
        return TaskSubject(subject_dir.name, direct, None, ambiguous=ambiguous)
    if len(sessions) > 1:
        chosen = [s for s in sessions if s.name in FIRST_SESSIONS]
        if len(chosen) != 1:
            names = ", ".join(s.name for s in sessions)
            return TaskSubject(subject_dir.name, {}, None, BadInputError(
                subject_dir, f"several sessions ({names}) and not one of them is {' or '.join(FIRST_SESSIONS)}; "
                             "a finetuning case has one session"))
        sessions = chosen
    images, ambiguous = _images_in(sessions[0])
    return TaskSubject(subject_dir.name, images, sessions[0], ambiguous=ambiguous)


def _images_in(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Images by lower-case stem, and the stems more than one file claims (`t1.nii` + `t1.nii.gz`, `T1` + `t1`)."""
    claims: dict[str, list[Path]] = {}
    for entry in _sorted_entries(os.fspath(folder)):
        parts = split_image_name(entry.name)
        if parts is not None and not entry.is_dir():
            claims.setdefault(parts[0].lower(), []).append(Path(entry.path))
    images = {stem: files[0] for stem, files in claims.items()}
    return images, {stem: files for stem, files in claims.items() if len(files) > 1}


def find_task_label(src: str | os.PathLike, subject: TaskSubject, stem: str, text: bool) -> Path | None:
    """The label file `stem` (+ `.txt` when `text`, else a NIfTI ending) of a subject: session level first,
    then subject level.

    `seg.nii` and `seg.nii.gz` side by side are refused (BadInputError): which one is meant is unknown.
    """
    base = Path(src) / "labels" / subject.subject
    folders = [base / subject.session_dir.name] if subject.session_dir is not None else []
    folders.append(base)
    endings = (".txt",) if text else IMAGE_ENDINGS
    for folder in folders:
        found = [folder / f"{stem}{ending}" for ending in endings if (folder / f"{stem}{ending}").is_file()]
        if len(found) > 1:
            raise BadInputError(folder, f"ambiguous label {stem}: {' and '.join(f.name for f in found)} are both "
                                        "there; keep one")
        if found:
            return found[0]
    return None


def has_task_labels(src: str | os.PathLike) -> bool:
    return (Path(src) / "labels").is_dir()
