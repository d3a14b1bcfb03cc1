"""The output side of every converter: an nnU-Net-style raw dataset under `fomo_nn_raw`.

Which folder a conversion writes to, how a scan gets there unchanged (hard link, else a byte copy;
a plain `.nii` is only gzip-compressed), how a conversion is built aside and put in place only when
finished (so a dataset folder never holds half a conversion), what a conversion reports, and
importing an existing nnU-Net v2 raw dataset as it is (its dataset.json has no task_type and is read
as segmentation).
"""
from __future__ import annotations

import gzip
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.utils.errors import BadInputError
from fomo_nn.paths import DATASET_PATTERN, dataset_folder_name, raw_root
from fomo_nn.utils.files import atomic_path


# ---------------------------------------------------------------------------------------- target folder
def parse_dataset_target(dataset: str | int, name: str | None, default_name: str) -> tuple[int, str]:
    """`-d 2 --name X`, `-d 2` (default name) or `-d Dataset002_X` -> (2, "X")."""
    text = str(dataset)
    match = DATASET_PATTERN.match(text)
    if match:
        if name is not None and name != match.group(2):
            raise ValueError(f"-d {text} and --name {name} disagree on the dataset name")
        return int(match.group(1)), match.group(2)
    if not text.isdigit():
        raise ValueError(f"-d takes a dataset id (e.g. 2) or a folder name (Dataset002_Name), got {text!r}")
    return int(text), name or default_name


def target_dataset_dir(dataset: str | int, name: str | None, default_name: str) -> Path:
    """fomo_nn_raw/DatasetNNN_Name, refusing an id that another dataset already uses (-d would be ambiguous)."""
    dataset_id, name = parse_dataset_target(dataset, name, default_name)
    folder = dataset_folder_name(dataset_id, name)
    root = raw_root()
    if root.is_dir():
        taken = sorted(p.name for p in root.iterdir()
                       if p.is_dir() and p.name.startswith(f"Dataset{dataset_id:03d}_") and p.name != folder)
        if taken:
            raise ValueError(f"dataset id {dataset_id} is already used by {root / taken[0]}; choose another -d "
                             "or remove that folder")
    return root / folder


# ------------------------------------------------------------------------------------------ placing files
def place_file(source: str | os.PathLike, destination: str | os.PathLike, link: bool = True) -> str:
    """Put `source` at `destination` without touching its content; atomic. Returns how it was done.

    Hard link when allowed (same filesystem, no extra disk), otherwise a byte copy. A `.nii` going to a
    `.nii.gz` name is gzip-compressed: the decompressed bytes stay identical, so does the geometry.
    """
    source, destination = Path(source), Path(destination)
    compress = source.name.lower().endswith(".nii") and destination.name.lower().endswith(".nii.gz")
    if not compress and destination.exists() and os.path.samefile(source, destination):
        return "unchanged"
    temp = atomic_path(destination, ".part")
    try:
        how = _place_via(source, temp, link, compress)
        os.replace(temp, destination)
    finally:
        if temp.exists():
            temp.unlink()
    return how


def _place_via(source: Path, temp: Path, link: bool, compress: bool) -> str:
    if compress:
        with open(source, "rb") as raw, gzip.open(temp, "wb", compresslevel=1) as packed:
            shutil.copyfileobj(raw, packed, 1 << 20)
        return "compressed"
    if link:
        temp.unlink()
        try:
            os.link(source, temp)
            return "linked"
        except OSError:  # another filesystem, or links not allowed there
            pass
    shutil.copyfile(source, temp)
    return "copied"


def link_or_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Hard link, else a byte copy (shutil.copytree's copy_function signature)."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


# ------------------------------------------------------------------------------------------ staging
@contextmanager
def staging_area(target: Path):
    """An empty hidden folder beside `target` (same filesystem: moving out of it is a rename).

    It is removed on exit, whatever happened; what a killed run left there is discarded first (the
    conversion is redone from its source).
    """
    staging = target.with_name(f".{target.name}.converting")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _previous(final: Path) -> Path:
    return final.with_name(f".{final.name}.previous")


def restore_interrupted(final: Path) -> None:
    """A replacement cut short between its two renames left only `.NAME.previous`: put it back."""
    previous = _previous(final)
    if previous.exists() and not final.exists():
        os.rename(previous, final)


def replace_folder(staged: Path, final: Path) -> None:
    """Put the finished folder `staged` at `final`; the folder it replaces is deleted only afterwards."""
    restore_interrupted(final)
    previous = _previous(final)
    if previous.exists():
        shutil.rmtree(previous)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        os.rename(final, previous)
    os.rename(staged, final)
    if previous.exists():
        shutil.rmtree(previous)


# ------------------------------------------------------------------------------------------------ report
@dataclass
class ConversionReport:
    """What a conversion did and every bad input it met (nothing is lost: all are listed at the end)."""

    dataset_dir: Path
    unit: str  # "cases" or "images"
    converted: int = 0
    bad: list[BadInputError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def exit_code(self, skip_bad: bool) -> int:
        """0 when all went in (or bad ones were skipped on purpose); 1 when something was left out or
        nothing at all was converted."""
        if self.converted == 0:
            return 1
        return 0 if skip_bad or not self.bad else 1

    def summary(self) -> str:
        lines = [f"{self.converted} {self.unit} converted into {self.dataset_dir}"]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def bad_summary(self, skip_bad: bool) -> str:
        if not self.bad:
            return ""
        verdict = "skipped (--skip-bad)" if skip_bad else "left out; fix them and rerun, or pass --skip-bad"
        lines = [f"{len(self.bad)} bad input(s), {verdict}:"]
        lines += [f"  {error.path}: {error.problem}" for error in self.bad]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- nnU-Net v2 import
def import_nnunet_dataset(src: str | os.PathLike, dataset: str | int, name: str | None = None, link: bool = True,
                          check_images: bool = False, num_processes: int = 1,
                          progress: bool = True) -> ConversionReport:
    """Bring an nnU-Net v2 raw dataset in unchanged (files linked or copied) and validate it."""
    from tqdm import tqdm

    from fomo_nn.datasets.dataset_json import load_dataset_json
    from fomo_nn.datasets.validation import validate_raw_dataset

    src = Path(src).resolve()
    spec = load_dataset_json(src)  # raises a clear error if it is not a dataset
    match = DATASET_PATTERN.match(src.name)
    default_name = match.group(2) if match else "".join(c if c.isalnum() or c in "_-" else "_" for c in spec.name)
    target = target_dataset_dir(dataset, name, default_name)
    if target.resolve() == src:
        raise ValueError(f"{src} is already the target folder")
    files = [Path(folder) / f for folder, _, names in os.walk(src) for f in sorted(names) if not f.startswith(".")]
    ways: dict[str, int] = {}
    with staging_area(target) as staging:  # built aside and moved in whole: never half a dataset
        for path in tqdm(files, desc="importing", unit="file", disable=not progress, mininterval=1.0):
            how = place_file(path, staging / path.relative_to(src), link=link)
            ways[how] = ways.get(how, 0) + 1
        replace_folder(staging, target)
    report = ConversionReport(target, "files", converted=len(files))
    report.notes.append(", ".join(f"{n} {how}" for how, n in sorted(ways.items())) or "no files")
    report.notes.append(f"task type {spec.task_type}, {spec.num_channels} channel(s)")
    report.bad = validate_raw_dataset(target, check_images=check_images, num_processes=num_processes,
                                      progress=progress)
    return report
