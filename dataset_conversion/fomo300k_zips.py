"""Extract a zipped FOMO300K session once, atomically, so every later step reads plain NIfTI files.

Why extract rather than read inside the zip: benchmarks/bench_fomo300k_zips.py (RESULTS.md,
"FOMO300K zipped sessions") — the members are `.nii.gz`, already deflated, so extraction is a copy
(disk: the size of the zip again) and every later reader (header checks, fingerprint, preprocessing,
reruns) gets a seekable file instead of inflating the member from its start each time.

A session is extracted into a hidden sibling folder and renamed into place only when every member is
out: a killed run leaves no half session under the final name, and a rerun skips sessions whose folder
exists (the rule of the organisers' PT902 script). Members are copied with their CRC checked by
zipfile; a damaged or unsafe zip (`..` or absolute member names) is one bad input naming the zip, and
the other sessions go on. A full disk stops the run (NoSpaceLeftError). Only images and their JSON
sidecars are extracted. A member path that repeats the subject or session folder
(`ses-01/anat/x.nii.gz`, `sub-01/ses-01/anat/x.nii.gz`) lands in the session folder all the same.
"""
from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import NoSpaceLeftError, is_no_space

_KEPT_ENDINGS = (".nii.gz", ".nii", ".json")

# what zipfile can decompress (stored, deflate, bzip2, lzma); another method is a per-session problem named
# before any byte is read, not an exception from inside zipfile
READABLE_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


@dataclass(frozen=True)
class ZipJob:
    archive: str
    folder: str  # the session folder to create
    subject: str
    session: str


@dataclass(frozen=True)
class ZipOutcome:
    folder: str
    extracted: int  # members written (0 when the folder was already there)
    bytes_written: int
    problem: tuple[str, str] | None = None  # (path, problem)


def member_target(name: str, subject: str, session: str) -> PurePosixPath | None:
    """Where a member goes inside the session folder; None for folders and files we do not keep.

    Raises ValueError for an unsafe name (absolute or with `..`).
    """
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"unsafe member name {name!r}")
    if name.endswith("/") or not path.name.lower().endswith(_KEPT_ENDINGS) or path.name.startswith("."):
        return None
    parts = list(path.parts)
    while len(parts) > 1 and parts[0] in (subject, session):
        parts.pop(0)
    return PurePosixPath(*parts)


def extract_session(job: ZipJob) -> ZipOutcome:
    """Worker entry: extract one zipped session (or see that it already is)."""
    final = Path(job.folder)
    if final.is_dir():
        return ZipOutcome(job.folder, 0, 0)
    staging = final.with_name(f".{final.name}.unzipping")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    written = count = 0
    try:
        staging.mkdir(parents=True)
        with zipfile.ZipFile(job.archive) as archive:
            for info in archive.infolist():
                target = member_target(info.filename, job.subject, job.session)
                if target is None:
                    continue
                if info.compress_type not in READABLE_COMPRESSION:
                    raise ValueError(f"{info.filename} uses zip compression method {info.compress_type}, which "
                                     "Python's zipfile cannot read")
                destination = staging / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as member, open(destination, "wb") as out:
                    shutil.copyfileobj(member, out, 1 << 20)
                written += info.file_size
                count += 1
        if count == 0:
            raise ValueError("holds no NIfTI image")
        os.rename(staging, final)
        return ZipOutcome(job.folder, count, written)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if is_no_space(error):
            raise NoSpaceLeftError(final.parent) from None
        if isinstance(error, FileNotFoundError) and not Path(job.archive).exists():
            return ZipOutcome(job.folder, 0, 0, (job.archive, "zip disappeared during conversion"))
        return ZipOutcome(job.folder, 0, 0, (job.archive, f"cannot be extracted ({error})"))
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        return ZipOutcome(job.folder, 0, 0, (job.archive, f"damaged or unreadable session zip ({error})"))


def extract_sessions(jobs: list[ZipJob]) -> list[ZipOutcome]:
    """Worker entry for a batch: tens of thousands of small sessions cost less as a few hundred tasks."""
    return [extract_session(job) for job in jobs]


def outcome_problem(outcome: ZipOutcome) -> BadInputError | None:
    return BadInputError(*outcome.problem) if outcome.problem else None
