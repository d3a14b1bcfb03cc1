"""Where things are in a FOMO300K download (pure discovery: no image is opened here).

The layout, as the organisers ship it (asparagus_preprocessing @ fce45b3,
`datasets_pretraining/PT902_FOMO300K_HF.py`, and the FOMO300K dataset card as quoted by its users):

    SRC/PTnnn_<Name>/sub-XX/ses-YY/<scan>.nii.gz            one source dataset per PT folder
    SRC/PT030_OpenNeuro/dsNNNNNN/sub-XX/ses-YY/...           OpenNeuro: one more level, `ds*` folders
    SRC/PTnnn_<Name>/sub-XX/ses-YY.zip                       a session shipped as one zip archive
    SRC/participants.tsv, mapping.tsv, mri_info.tsv           metadata (also per source folder)

Inside a session the card shows `t1w.nii.gz` / `scan.nii.gz` (unknown sequence) and the organisers'
BIDS writer (`utils/bids/bids.py`) names files `<modality>/sub-XX_ses-YY[_run-k]_<suffix>.nii.gz` with
DWI split by b-value (`dwi_bval1000`); both are accepted: a scan's sequence is its file name without
the `sub-XX_` / `ses-YY_` prefixes. A zip whose session folder already exists beside it is taken as
extracted (PT902's rule). A folder is a session when it sits in a subject folder; images may sit in it
directly or one level down (anat/, dwi/, perf/, undefined/).
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.challenges.layout import natural_key, split_image_name
from fomo_nn.utils.errors import BadInputError

SOURCE_FOLDER = re.compile(r"^(PT\d+)(?:_.*)?$")
OPENNEURO_FOLDER = re.compile(r"^ds\d+")
METADATA_TABLES = ("participants.tsv", "mapping.tsv", "mri_info.tsv")
_MIN_BYTES = {".nii.gz": 18, ".nii": 352}
_RUN_OR_ENTITY = re.compile(r"^[a-z0-9]+-[^_]*$", re.IGNORECASE)  # BIDS entities: run-1, acq-mprage, ce-gd


@lru_cache(maxsize=4096)
def source_key(source: str) -> tuple[str, str | None]:
    """("PT030", "ds000117") for "PT030_OpenNeuro/ds000117", ("PT021", None) for "PT021_IXI": how tables
    and folders are matched (the name part after the PT number may be spelled differently)."""
    parts = source.strip().strip("/").split("/")
    match = SOURCE_FOLDER.match(parts[0])
    head = match.group(1).upper() if match else parts[0]
    return head, (parts[1] if len(parts) > 1 else None)


def sequence_stem(file_stem: str, subject: str, session: str) -> str:
    """`sub-01_ses-01_run-2_T1w` -> `run-2_T1w`; `t1w` stays `t1w` (the card's naming)."""
    stem = file_stem
    for prefix in (f"{subject}_", f"{session}_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
    return stem or file_stem


def sequence_family(stem: str) -> str:
    """The sequence a stem stands for: `run-2_T1w` -> `t1w`, `dwi_bval1000` -> `dwi_bval1000`,
    `scan` -> `unknown` (the curators did not know it)."""
    tokens = [t for t in stem.lower().split("_") if t and not _RUN_OR_ENTITY.match(t)]
    family = "_".join(tokens) or stem.lower()
    return "unknown" if family == "scan" else family


@dataclass(frozen=True)
class SessionSource:
    """One session: a folder (`archive` None) or a zip still to be extracted into `folder`."""

    source: str  # "PT021_IXI" or "PT030_OpenNeuro/ds000117"
    subject: str
    session: str
    folder: Path  # where its images are (for a zip: where they will be once extracted)
    archive: Path | None = None


@dataclass(frozen=True)
class CorpusScan:
    source: str
    subject: str
    session: str
    sequence: str  # stem without the subject/session prefixes, e.g. "T1w", "run-2_T1w", "dwi_bval1000"
    modality: str | None  # BIDS folder between session and file (anat, dwi, ...), None when directly in it
    path: str  # absolute (a str: 306K Path objects cost seconds)


@dataclass
class CorpusLayout:
    sessions: list[SessionSource] = field(default_factory=list)
    tables: list[tuple[str | None, Path]] = field(default_factory=list)  # (source or None for root, table path)
    problems: list[BadInputError] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    already_extracted: int = 0  # zips whose session folder is there (not extracted again)


def _entries(folder: Path | str, hidden: list[str]) -> list[os.DirEntry]:
    with os.scandir(folder) as scan:
        entries = list(scan)
    hidden += [e.path for e in entries if e.name.startswith(".") and e.is_dir()]
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: natural_key(e.name))


def walk_fomo300k(src: Path, unzip_to: Path | None = None) -> CorpusLayout:
    """Every session of a FOMO300K tree (folders and zips) and its metadata tables.

    `unzip_to`: where zipped sessions go when extracted (mirroring SRC); default beside the zip.
    """
    layout = CorpusLayout()
    _collect_tables(layout, src, None)
    entries = _entries(src, layout.hidden)
    sources = [e for e in entries if e.is_dir() and SOURCE_FOLDER.match(e.name)]
    if not sources and any(e.is_dir() and e.name.startswith("sub") for e in entries):
        _walk_source(layout, src, src.name, src, unzip_to, root_level=True)  # SRC is one source folder
        layout.tables = [(src.name, path) for _, path in layout.tables]  # its tables describe that source
        return layout
    for entry in entries:
        if entry.is_dir() and SOURCE_FOLDER.match(entry.name):
            folder = Path(entry.path)
            _collect_tables(layout, folder, entry.name)
            children = _entries(folder, layout.hidden)
            datasets = [c for c in children if c.is_dir() and OPENNEURO_FOLDER.match(c.name)]
            if datasets:
                for child in children:
                    if child in datasets:
                        name = f"{entry.name}/{child.name}"
                        _collect_tables(layout, Path(child.path), name)
                        _walk_source(layout, Path(child.path), name, src, unzip_to)
                    elif not child.name.endswith(METADATA_TABLES):
                        layout.ignored.append(child.path)
            else:
                _walk_source(layout, folder, entry.name, src, unzip_to)
        elif entry.name not in METADATA_TABLES:
            layout.ignored.append(entry.path)
    return layout


def _collect_tables(layout: CorpusLayout, folder: Path, source: str | None) -> None:
    for name in METADATA_TABLES:
        if (folder / name).is_file():
            layout.tables.append((source, folder / name))


def _walk_source(layout: CorpusLayout, folder: Path, source: str, src: Path, unzip_to: Path | None,
                 root_level: bool = False) -> None:
    for subject in _entries(folder, layout.hidden):
        if not subject.is_dir():
            if not subject.name.endswith(METADATA_TABLES):
                _outside(layout, subject, f"directly in source folder {source}, outside any subject")
            continue
        if not subject.name.startswith("sub"):
            layout.ignored.append(subject.path)
            continue
        children = _entries(Path(subject.path), layout.hidden)
        folders = {c.name for c in children if c.is_dir()}
        for child in children:
            if child.is_dir():
                layout.sessions.append(SessionSource(source, subject.name, child.name, Path(child.path)))
            elif child.name.lower().endswith(".zip"):
                session = child.name[:-4]
                if session in folders:
                    layout.already_extracted += 1
                    continue
                target = Path(subject.path) / session
                if unzip_to is not None:
                    target = unzip_to / Path(subject.path).relative_to(src if not root_level else src.parent) / session
                    if target.is_dir():
                        layout.already_extracted += 1
                layout.sessions.append(SessionSource(source, subject.name, session, target, Path(child.path)))
            else:
                _outside(layout, child, "directly in a subject folder, outside any session")


def _outside(layout: CorpusLayout, entry: os.DirEntry, where: str) -> None:
    if split_image_name(entry.name) is None:
        layout.ignored.append(entry.path)
    else:
        layout.problems.append(BadInputError(entry.path, f"image {where}; expected "
                                                         "PTnnn_<name>/sub-*/ses-*/<scan>.nii.gz"))


def list_session_scans(session: SessionSource) -> tuple[list[CorpusScan], list[BadInputError], list[str]]:
    """The images of one (extracted) session: (scans, problems, ignored files)."""
    scans, problems, ignored = [], [], []
    seen: dict[str, str] = {}
    hidden: list[str] = []
    for entry in _entries(session.folder, hidden):
        if entry.is_dir():
            for inner in _entries(entry.path, hidden):
                _add_scan(session, inner, entry.name, scans, problems, ignored, seen)
        else:
            _add_scan(session, entry, None, scans, problems, ignored, seen)
    return scans, problems, ignored


def _add_scan(session: SessionSource, entry: os.DirEntry, modality: str | None, scans, problems, ignored, seen):
    parts = split_image_name(entry.name)
    if parts is None or entry.is_dir():
        ignored.append(entry.path)
        return
    stem, ending = parts
    sequence = sequence_stem(stem, session.subject, session.session)
    problem = None
    if not entry.is_file():
        problem = "broken symbolic link" if entry.is_symlink() else "not a regular file"
    elif entry.stat().st_size < _MIN_BYTES[ending]:
        size = entry.stat().st_size
        problem = "empty file" if size == 0 else f"truncated file: only {size} bytes"
    elif sequence.lower() in seen:
        problem = f"a second file for sequence {sequence!r} in this session (first: {seen[sequence.lower()]})"
    if problem:
        problems.append(BadInputError(entry.path, problem))
        return
    seen[sequence.lower()] = entry.path
    scans.append(CorpusScan(session.source, session.subject, session.session, sequence, modality, entry.path))
