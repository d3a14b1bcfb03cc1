"""Check a raw dataset before anyone spends hours on it: does dataset.json agree with the files,
is every case complete, is every image readable and on the same grid as its siblings?

The one raw-dataset validator: `fomo_nn_convert validate` and `fomo_nn_plan_and_preprocess --verify`
both run it, and the case reader of preprocessing and prediction applies the same image rules
(`grid_mismatch`, `check_not_empty`, `check_mask_values`), so what passes here is what
preprocessing accepts.

Two depths per image:
- header level (`read_grid`): fomo_nn.io's header rules (3D scalar real data, usable voxel size and
  affine), and the file is not shorter than the header promises (uncompressed size checked against
  the gzip trailer, with a full decompression only when the trailer disagrees). Milliseconds per file.
- data level (`read_image`, when `check_images`): every voxel is read, so NaN/Inf voxels, all-zero
  images, mask values and damaged compressed streams are found too.

Every problem is a BadInputError naming the file; the validator collects them all instead of
stopping at the first, so one run tells a user everything to fix.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fomo_nn.datasets.cases import case_id_problem, list_supervised_cases
from fomo_nn.datasets.dataset_json import MAX_LABEL_VALUE, DatasetSpec, load_dataset_json
from fomo_nn.io import read_image
from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.geometry import grid_difference, same_grid
from fomo_nn.io.image_io import read_header
from fomo_nn.tasks import VOXELS

IMAGES_PER_TASK = 64  # header checks take milliseconds: batch them so 60K files are not 60K round trips


@dataclass(frozen=True)
class ImageGrid:
    """The voxel grid of an image in RAS order: what must agree between channels and labels."""

    path: str
    ras_shape: tuple[int, int, int]
    ras_affine: np.ndarray

    @classmethod
    def of(cls, path, image) -> "ImageGrid":
        """The grid of an ImageHeader or ImageProperties."""
        return cls(str(path), tuple(image.ras_shape), np.asarray(image.ras_affine, dtype=float))

    def same_as(self, other: "ImageGrid") -> bool:
        return same_grid(self.ras_shape, self.ras_affine, other.ras_shape, other.ras_affine)


class GridMismatchError(BadInputError):
    """A file whose voxel grid differs from the one it must share (a channel's or the image's)."""


def grid_mismatch(path, grid: ImageGrid, reference: ImageGrid, what: str = "image") -> GridMismatchError:
    """The message for `grid` not being on `reference`'s grid (call when `not grid.same_as(reference)`)."""
    difference = grid_difference(grid.ras_shape, grid.ras_affine, reference.ras_shape, reference.ras_affine)
    return GridMismatchError(path, f"grid differs from its {what} {reference.path}: {difference or 'same grid'}")


def check_not_empty(path, image: np.ndarray) -> None:
    """An all-zero image has no foreground to crop, normalise or learn from."""
    if not np.any(image):
        raise BadInputError(path, "image is empty (every voxel is 0)")


def check_mask_values(path: str | os.PathLike, allowed, data: np.ndarray | None = None) -> np.ndarray:
    """A mask holds whole numbers in 0..MAX_LABEL_VALUE, from `allowed` (dataset.json's labels) when given.

    Returns the mask as int16. Reads `path` unless `data` is given.
    """
    if data is None:
        data, _ = read_image(path)
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        raise BadInputError(path, "segmentation holds non-integer values (is it an image or a probability map?)")
    present = np.unique(rounded).astype(np.int64)
    if allowed is not None:
        unknown = sorted(set(present.tolist()) - {int(v) for v in allowed})
        if unknown:
            raise BadInputError(path, f"label values {unknown} are not declared: the labels are "
                                      f"{sorted(int(v) for v in allowed)}")
    if present.min() < 0 or present.max() > MAX_LABEL_VALUE:
        raise BadInputError(path, f"label values must lie in 0..{MAX_LABEL_VALUE}, found {present.min()}.."
                                  f"{present.max()}")
    return rounded.astype(np.int16)


# ---------------------------------------------------------------------------------------------- one image
def _gzip_trailer_size(path: Path) -> int | None:
    """ISIZE of the last gzip member: uncompressed size modulo 2**32 (None if the file is too short)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < 18:
            return None
        handle.seek(-4, os.SEEK_END)
        return struct.unpack("<I", handle.read(4))[0]


def _decompressed_size(path: Path) -> int:
    """Stream-decompress every gzip member and count bytes; raises EOFError/zlib.error if damaged.

    Small chunks bound the memory (deflate expands at most ~1000x); bytes after the last member that
    do not start a new member are ignored, as Python's gzip module does with padding.
    """
    total = 0
    decompressor = zlib.decompressobj(wbits=31)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            while chunk:
                if decompressor.eof:
                    if not b"\x1f\x8b".startswith(chunk[:2]):  # not a new member: padding
                        return total
                    decompressor = zlib.decompressobj(wbits=31)
                total += len(decompressor.decompress(chunk))
                chunk = decompressor.unused_data if decompressor.eof else b""
    if not decompressor.eof:
        raise EOFError("compressed stream ends before its end marker")
    return total


def _check_nifti_length(path: Path, image) -> None:
    proxy = image.dataobj  # the offset nibabel really reads from (vox_offset 0 in a header means 352)
    if not hasattr(proxy, "offset"):
        return
    expected = int(proxy.offset) + int(np.prod(proxy.shape)) * np.dtype(proxy.dtype).itemsize
    if str(path).lower().endswith(".gz"):
        if _gzip_trailer_size(path) == expected % 2 ** 32:
            return
        try:  # the trailer disagrees (truncated, or an unusual multi-member file): decide by decompressing
            actual = _decompressed_size(path)
        except (EOFError, zlib.error) as error:
            raise BadInputError(path, f"truncated or corrupt compressed file ({error})") from None
    else:
        actual = path.stat().st_size
    if actual < expected:
        raise BadInputError(path, f"truncated file: {actual} bytes of image data where the header promises "
                                  f"{expected}")


def read_grid(path: str | os.PathLike) -> ImageGrid:
    """Header-level check of one image; returns its RAS grid. Raises BadInputError on bad input."""
    header = read_header(path)
    if str(path).lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        _check_nifti_length(Path(path), nib.load(str(path)))
    return ImageGrid.of(path, header)


def read_grid_checked(path: str | os.PathLike, check_data: bool) -> ImageGrid:
    """`read_grid`, plus a read of every voxel (NaN/Inf, all zero, damaged data) when `check_data`."""
    grid = read_grid(path)
    if check_data:
        check_not_empty(path, read_image(path)[0])
    return grid


def check_image_file(path: str, check_data: bool = False) -> tuple[str, str] | None:
    """Process-pool friendly: None if fine, else (path, problem) (BadInputError does not pickle)."""
    try:
        read_grid_checked(path, check_data)
    except BadInputError as error:
        return error.path, error.problem
    return None


def _check_image_batch(paths: list[str], check_data: bool) -> list[tuple[str, str] | None]:
    return [check_image_file(path, check_data) for path in paths]


def check_image_files(paths: list[str], check_data: bool, num_processes: int = 1,
                      progress: bool = False, description: str = "checking images") -> list[BadInputError]:
    """Check many images, in parallel when `num_processes` > 1; returns the problems found, in input order."""
    from fomo_nn.preprocessing.parallel import run_parallel

    starts = range(0, len(paths), IMAGES_PER_TASK)
    batches = [list(paths[start:start + IMAGES_PER_TASK]) for start in starts]
    keys = [f"images {start + 1}-{start + len(batch)} (from {batch[0]})" for start, batch in zip(starts, batches)]
    found = dict(run_parallel(partial(_check_image_batch, check_data=check_data), batches, keys,
                              num_processes if len(paths) > 1 else 1, description, progress))
    return [BadInputError(*problem) for key in keys for problem in found[key] if problem is not None]


# -------------------------------------------------------------------------------------------- the dataset
def validate_raw_dataset(dataset_dir: str | os.PathLike, check_images: bool = True, num_processes: int = 1,
                         progress: bool = False) -> list[BadInputError]:
    """Every problem of a raw dataset (empty list: fine). Never raises for bad data.

    `check_images=False` stops at header level (fast); True also reads every voxel.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        return [BadInputError(dataset_dir, "dataset folder does not exist")]
    try:
        spec = load_dataset_json(dataset_dir)
    except BadInputError as error:
        return [error]
    if spec.kind.corpus:
        return _validate_pretraining(dataset_dir, spec, check_images, num_processes, progress)
    if not (dataset_dir / "imagesTr").is_dir():
        return [BadInputError(dataset_dir / "imagesTr", "folder is missing")]
    problems = _check_dataset_json_against_files(dataset_dir, spec)
    for split in ("Tr", "Ts"):
        if split == "Ts" and not (dataset_dir / "imagesTs").is_dir():
            continue
        problems += _validate_split(dataset_dir, spec, split, check_images, num_processes, progress)
    return problems


def _validate_pretraining(dataset_dir: Path, spec: DatasetSpec, check_images: bool, num_processes: int,
                          progress: bool) -> list[BadInputError]:
    from fomo_nn.datasets.manifest import MANIFEST_NAME, load_manifest

    try:
        manifest = load_manifest(dataset_dir)
    except BadInputError as error:
        return [error]
    manifest_path = dataset_dir / MANIFEST_NAME
    problems = []
    seen: set[str] = set()
    for image in manifest.images:
        if image.image_id in seen:
            problems.append(BadInputError(manifest_path, f"image id {image.image_id!r} is listed twice"))
        name_problem = case_id_problem(image.image_id)
        if name_problem:
            problems.append(BadInputError(manifest_path, name_problem))
        seen.add(image.image_id)
    if not manifest.images:
        problems.append(BadInputError(manifest_path, "the manifest lists no images"))
    if spec.num_training is not None and spec.num_training != len(manifest.images):
        problems.append(BadInputError(dataset_dir / "dataset.json", f"numTraining is {spec.num_training} but "
                                      f"{MANIFEST_NAME} lists {len(manifest.images)} images"))
    paths = [manifest.absolute_path(image) for image in manifest.images]
    return problems + check_image_files(paths, check_images, num_processes, progress, "validating images")


def _image_names(folder: Path, spec: DatasetSpec) -> tuple[dict[str, set[int]], list[str]]:
    """Cases and channel indices present in `folder`, and the names that do not fit the pattern."""
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(spec.file_ending)}$")
    cases: dict[str, set[int]] = {}
    strays = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        match = pattern.match(entry.name)
        if match:
            cases.setdefault(match["case"], set()).add(int(match["channel"]))
        else:
            strays.append(entry.name)
    return cases, strays


def _check_dataset_json_against_files(dataset_dir: Path, spec: DatasetSpec) -> list[BadInputError]:
    """dataset.json vs imagesTr/labelsTr: counts, channel indices, case_subjects, stray files."""
    source = dataset_dir / "dataset.json"
    images_dir = dataset_dir / "imagesTr"
    cases, strays = _image_names(images_dir, spec)
    problems = [BadInputError(images_dir / name, f"name does not follow CASE_XXXX{spec.file_ending}"
                                                 f" (file_ending in dataset.json is {spec.file_ending!r})")
                for name in sorted(strays)]
    for case_id, channels in sorted(cases.items()):
        name_problem = case_id_problem(case_id)
        if name_problem:
            problems.append(BadInputError(images_dir / f"{case_id}_{min(channels):04d}{spec.file_ending}",
                                          name_problem))
        extra = sorted(c for c in channels if c >= spec.num_channels)
        if extra:
            problems.append(BadInputError(images_dir / f"{case_id}_{extra[0]:04d}{spec.file_ending}",
                                          f"channel {extra[0]} is not in channel_names of {source.name} "
                                          f"({spec.num_channels} channels)"))
    if spec.num_training is not None and spec.num_training != len(cases):
        problems.append(BadInputError(source, f"numTraining is {spec.num_training} but imagesTr holds "
                                              f"{len(cases)} cases"))
    unknown = sorted(set(spec.case_subjects) - set(cases))
    if unknown:
        problems.append(BadInputError(source, f"case_subjects names {len(unknown)} case(s) that are not in "
                                              f"imagesTr: {', '.join(unknown[:5])}"))
    if spec.case_subjects:
        unassigned = sorted(set(cases) - set(spec.case_subjects))
        if unassigned:
            problems.append(BadInputError(source, f"case_subjects lacks {len(unassigned)} case(s) of imagesTr: "
                                                  f"{', '.join(unassigned[:5])}"))
    labels_dir = dataset_dir / "labelsTr"
    if labels_dir.is_dir():
        for entry in sorted(os.scandir(labels_dir), key=lambda e: e.name):
            ending = next((e for e in label_endings(spec) if entry.name.endswith(e)), None)
            if ending is not None and entry.name[:-len(ending)] not in cases:
                problems.append(BadInputError(entry.path, f"label without images in imagesTr (no images named "
                                                          f"{entry.name[:-len(ending)]}_XXXX{spec.file_ending})"))
            elif ending is None and spec.auxiliary_labels is None and entry.name.endswith(spec.file_ending):
                problems.append(BadInputError(entry.path, "a mask beside the targets, but dataset.json declares no "
                                                          "auxiliary_labels (stale file?)"))
    return problems


def label_endings(spec: DatasetSpec) -> tuple[str, ...]:
    """File endings of labelsTr entries: masks, targets, or targets plus auxiliary masks."""
    if spec.kind.target == VOXELS:
        return (spec.file_ending,)
    return (".txt", spec.file_ending) if spec.auxiliary_labels is not None else (".txt",)


def _validate_split(dataset_dir: Path, spec: DatasetSpec, split: str, check_images: bool, num_processes: int,
                    progress: bool) -> list[BadInputError]:
    from fomo_nn.preprocessing.parallel import run_parallel

    try:
        cases, problems = list_supervised_cases(dataset_dir, spec, split=split, strict=False)
    except BadInputError as error:
        return [error]
    jobs = [(case.image_files, case.label_file if spec.kind.target == VOXELS else case.mask_file,
             spec.voxel_label_values, check_images) for case in cases]
    keys = [case.case_id for case in cases]
    found = dict(run_parallel(_check_case_files, jobs, keys, num_processes, f"validating images{split}", progress))
    return problems + [BadInputError(*problem) for key in keys for problem in found[key]]


def _check_case_files(job) -> list[tuple[str, str]]:
    """All channels and the mask of one case: readable, 3D, finite, on one grid, mask values allowed."""
    image_files, mask_file, allowed, check_data = job
    grids, problems = [], []
    for path in image_files:
        try:
            grids.append(read_grid_checked(path, check_data))
        except BadInputError as error:
            problems.append((error.path, error.problem))
    reference = grids[0] if grids and grids[0].path == str(image_files[0]) else None
    if reference is not None:
        for grid in grids[1:]:
            if not grid.same_as(reference):
                error = grid_mismatch(grid.path, grid, reference, "first channel")
                problems.append((error.path, error.problem))
    if mask_file is not None:
        try:
            grid = read_grid(mask_file)
            if reference is not None and not grid.same_as(reference):
                error = grid_mismatch(mask_file, grid, reference, "image")
                problems.append((error.path, error.problem))
            if check_data:
                check_mask_values(mask_file, allowed)
        except BadInputError as error:
            problems.append((error.path, error.problem))
    return problems


