"""FOMO300K download -> pretraining dataset: dataset.json + manifest.json with metadata, no copy of any scan.

`fomo_nn_convert fomo300k SRC -d N` walks the layout of fomo300k_layout.py (PT source folders,
OpenNeuro `ds*` subfolders, `sub-*/ses-*` folders or `ses-*.zip` archives), extracts zipped sessions
once (fomo300k_zips.py: beside the zip as the organisers' PT902 script does, or under `--unzip-to`),
lists every image with its source dataset, subject, session and sequence, and joins what
`participants.tsv`, `mri_info.tsv` and `mapping.tsv` record about it (fomo300k_metadata.py): age and
sex at the session, vendor, field strength, BIDS modality folder. The manifest then feeds the usual
planning and preprocessing like FOMO60K's.

Subjects are numbered per source (every source has a `sub-01`), so the manifest's subject and image
ids carry the source: `PT021_IXI_sub-002`, `PT021_IXI_sub-002_ses-01_T1w`. Bad inputs (a damaged zip,
an empty file, an unreadable table, with `--check-headers` a broken header) are each one message
naming the file; the rest is converted. manifest.json is written before dataset.json, each atomically:
a dataset.json always has its manifest beside it, and a rerun resumes (extracted sessions are kept).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from dataset_conversion.fomo300k_layout import (CorpusLayout, CorpusScan, list_session_scans, sequence_family,
                                                walk_fomo300k)
from dataset_conversion.fomo300k_metadata import CorpusMetadata, read_tables
from dataset_conversion.fomo300k_zips import ZipJob, extract_sessions, outcome_problem
from dataset_conversion.fomo60k import save_corpus_dataset
from dataset_conversion.nnunet_dataset import ConversionReport, target_dataset_dir
from fomo_nn.datasets.cases import case_id_problem
from fomo_nn.datasets.manifest import MANIFEST_NAME, Manifest, ManifestImage
from fomo_nn.datasets.validation import check_image_files
from fomo_nn.challenges.layout import hidden_folders_note
from fomo_nn.utils.errors import BadInputError
from fomo_nn.preprocessing.parallel import run_parallel

DEFAULT_NAME = "FOMO300K"
ZIPS_PER_TASK = 32  # sessions per worker task: one task per tiny session would be mostly messaging
CHECKS = ("none", "header", "full")


def source_tag(source: str) -> str:
    """`PT030_OpenNeuro/ds000117` -> `PT030_OpenNeuro_ds000117`: a source as a piece of an id."""
    return source.replace("/", "_")


def image_id(scan: CorpusScan) -> str:
    return f"{source_tag(scan.source)}_{scan.subject}_{scan.session}_{scan.sequence}"


def convert_fomo300k(src: str | os.PathLike, dataset: str | int = 1, name: str | None = None, check: str = "none",
                     unzip_to: str | os.PathLike | None = None, num_processes: int = 1,
                     progress: bool = True) -> ConversionReport:
    """Write the pretraining dataset for a FOMO300K tree; bad inputs are left out and reported."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    source_root = Path(os.path.abspath(src))
    if not source_root.is_dir():
        raise BadInputError(source_root, "source folder does not exist")
    target = target_dataset_dir(dataset, name, DEFAULT_NAME)
    unzip_root = Path(os.path.abspath(unzip_to)) if unzip_to is not None else None

    layout = walk_fomo300k(source_root, unzip_root)
    if not layout.sessions and not layout.problems:
        raise BadInputError(source_root, "no sessions found; expected the FOMO300K layout "
                                         "PTnnn_<name>/sub-*/ses-*/<scan>.nii.gz (or ses-*.zip)")
    bad = list(layout.problems)
    extracted = _extract_zips(layout, num_processes, progress, bad)
    scans, ignored = _list_scans(layout, bad, progress)
    metadata, table_problems = read_tables(layout.tables)
    bad += table_problems
    scans = _usable(scans, bad)
    if check != "none":
        scans = _checked(scans, check == "full", num_processes, progress, bad)

    report = ConversionReport(target, "images", converted=len(scans), bad=bad)
    report.notes += _notes(layout, extracted, ignored, metadata)
    if not scans:
        report.notes.append("nothing written: no usable image")
        return report
    images = [_manifest_image(scan, source_root, metadata) for scan in scans]
    manifest = Manifest(str(source_root), images, sources=[target.name.split("_", 1)[1]])
    save_corpus_dataset(target, manifest, {scan.sequence: sequence_family(scan.sequence) for scan in scans}, check,
                        f"FOMO300K-layout corpus at {manifest.source_root}: {len(scans)} images of "
                        f"{manifest.num_subjects} subjects from {len(manifest.images_per_source())} sources; the "
                        f"scans stay there (see {MANIFEST_NAME})")
    families = Counter(sequence_family(scan.sequence) for scan in scans)
    known = sum(1 for im in images if im.vendor or im.field_strength)
    report.notes.append(f"{len(manifest.images_per_source())} sources, {manifest.num_subjects} subjects, "
                        f"{manifest.num_sessions} sessions; scanner metadata for {known} of {len(images)} images; "
                        "sequence families: " + ", ".join(f"{f} {n}" for f, n in families.most_common(8)))
    return report


def _extract_zips(layout: CorpusLayout, num_processes: int, progress: bool, bad: list) -> tuple[int, int]:
    """Extract every zipped session not yet extracted; returns (sessions extracted, bytes written)."""
    jobs = [ZipJob(str(s.archive), str(s.folder), s.subject, s.session)
            for s in layout.sessions if s.archive is not None and not s.folder.is_dir()]
    if not jobs:
        return 0, 0
    failed, sessions, written = set(), 0, 0
    batches = [jobs[start:start + ZIPS_PER_TASK] for start in range(0, len(jobs), ZIPS_PER_TASK)]
    keys = [f"{len(batch)} zipped sessions from {batch[0].archive}" for batch in batches]
    done = dict(run_parallel(extract_sessions, batches, keys, min(num_processes, len(batches)),
                             "extracting zipped sessions", progress))
    for outcome in (outcome for key in keys for outcome in done[key]):
        problem = outcome_problem(outcome)
        if problem is not None:
            bad.append(problem)
            failed.add(outcome.folder)
        elif outcome.extracted:
            sessions += 1
            written += outcome.bytes_written
    layout.sessions = [s for s in layout.sessions if str(s.folder) not in failed]
    return sessions, written


def _list_scans(layout: CorpusLayout, bad: list, progress: bool) -> tuple[list[CorpusScan], list[str]]:
    scans, ignored = [], []
    for session in tqdm(layout.sessions, desc="listing FOMO300K", unit="session", disable=not progress,
                        mininterval=1.0):
        found, problems, skipped = list_session_scans(session)
        scans += found
        bad += problems
        ignored += skipped
    return scans, ignored


def _usable(scans: list[CorpusScan], bad: list) -> list[CorpusScan]:
    """Ids preprocessing can use as case ids, each once (two spellings of one sequence collide)."""
    kept, seen = [], {}
    for scan in scans:
        key = image_id(scan)
        problem = case_id_problem(key)
        if problem:
            bad.append(BadInputError(scan.path, f"its image id cannot be a case id: {problem}; rename the "
                                                "folder or file"))
        elif key in seen:
            bad.append(BadInputError(scan.path, f"its image id {key!r} collides with {seen[key]}; rename one"))
        else:
            seen[key] = scan.path
            kept.append(scan)
    return kept


def _checked(scans: list[CorpusScan], full: bool, num_processes: int, progress: bool, bad: list):
    paths = [scan.path for scan in scans]
    found = check_image_files(paths, check_data=full, num_processes=num_processes, progress=progress,
                              description="reading images" if full else "reading headers")
    bad += found
    bad_paths = {error.path for error in found}
    return [scan for scan, path in zip(scans, paths) if path not in bad_paths]


def _manifest_image(scan: CorpusScan, source_root: Path, metadata: CorpusMetadata) -> ManifestImage:
    details = metadata.scan(scan.source, scan.subject, scan.session, scan.sequence)
    age, sex = metadata.demographics(scan.source, scan.subject, scan.session)
    prefix = f"{source_root}{os.sep}"
    relative = scan.path[len(prefix):] if scan.path.startswith(prefix) else scan.path
    return ManifestImage(image_id=image_id(scan), subject=f"{source_tag(scan.source)}_{scan.subject}",
                         session=scan.session, sequence=scan.sequence, path=relative, source=scan.source,
                         modality=details.modality or scan.modality, vendor=details.vendor,
                         field_strength=details.field_strength, age=age, sex=sex)


def _notes(layout: CorpusLayout, extracted: tuple[int, int], ignored: list[str], metadata: CorpusMetadata) -> list:
    notes = []
    sessions, written = extracted
    if sessions:
        notes.append(f"extracted {sessions} zipped session(s), {written / 1e9:.2f} GB written")
    if layout.already_extracted:
        notes.append(f"{layout.already_extracted} zipped session(s) already extracted (their folder is there)")
    if metadata.rows_read:
        notes.append("metadata rows used: " + ", ".join(f"{n} {k}" for k, n in sorted(metadata.rows_read.items())))
    else:
        notes.append("no participants.tsv / mri_info.tsv / mapping.tsv found: age, sex, vendor and field "
                     "strength are unknown")
    ignored = list(layout.ignored) + ignored
    if ignored:
        notes.append(f"ignored {len(ignored)} file(s) or folder(s) outside the layout or not images, e.g. {ignored[0]}")
    hidden = hidden_folders_note(layout.hidden)
    if hidden:
        notes.append(hidden)
    return notes


