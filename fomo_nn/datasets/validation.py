"""Check a raw dataset before anyone spends hours on it: does dataset.json agree with the files,
is every case complete, is every image readable and on the same grid as its siblings?

Two depths per image:
- header level (`read_grid`): the header parses, the image is 3D and not degenerate, the affine is
  usable, and the file is not shorter than the header promises (uncompressed size checked against
  the gzip trailer, with a full decompression only when the trailer disagrees). Milliseconds per file.
- data level (`read_image`, when `check_images`): every voxel is read, so NaN/Inf voxels and damaged
  compressed streams are found too.

Every problem is a BadInputError naming the file; the validator collects them all instead of
stopping at the first, so one run tells a user everything to fix.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.datasets.cases import list_supervised_cases
from fomo_nn.datasets.dataset_json import DatasetSpec, load_dataset_json
from fomo_nn.io import read_image
from fomo_nn.io.errors import BadInputError
from fomo_nn.io.geometry import reoriented_affine, same_grid, to_ras_transform
from fomo_nn.io.image_io import NIFTI_ENDINGS, file_ending

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class ImageGrid:
    """The voxel grid of an image in RAS order: what must agree between channels and labels."""

    path: str
    ras_shape: tuple[int, int, int]
    ras_affine: np.ndarray

    def same_as(self, other: "ImageGrid") -> bool:
        return same_grid(self.ras_shape, self.ras_affine, other.ras_shape, other.ras_affine)

    def describe(self) -> str:
        spacing = np.sqrt((self.ras_affine[:3, :3] ** 2).sum(axis=0))
        return f"shape {self.ras_shape}, spacing {tuple(round(float(s), 3) for s in spacing)}"


def grid_mismatch(path, grid: ImageGrid, reference: ImageGrid, what: str = "image") -> BadInputError:
    return BadInputError(path, f"grid differs from its {what} {Path(reference.path).name} "
                               f"({grid.describe()} vs {reference.describe()}, or a different affine)")


# ---------------------------------------------------------------------------------------------- one image
def _ras_grid(path, shape, affine) -> ImageGrid:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) > 3:
        raise BadInputError(path, f"expected a 3D image but it is {len(shape)}D with shape {shape}"
                                  " (a 4D series cannot be used as one channel)")
    if len(shape) < 3 or min(shape) < 2:
        raise BadInputError(path, f"expected a 3D image, got shape {shape}")
    affine = np.asarray(affine, dtype=float)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadInputError(path, "the affine (voxel-to-world matrix) is not finite or not invertible")
    ornt = to_ras_transform(affine)
    ras_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        ras_shape[int(target)] = shape[axis]
    return ImageGrid(str(path), tuple(ras_shape), reoriented_affine(affine, shape, ornt))


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
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file does not exist")
    ending = file_ending(path)
    if ending in NIFTI_ENDINGS:
        try:
            image = nib.load(str(path))
            shape, affine = image.shape, image.affine
        except Exception as error:  # nibabel raises many types for corrupt headers
            raise BadInputError(path, f"unreadable NIfTI header ({type(error).__name__}: {error})") from None
        if affine is None:
            raise BadInputError(path, "the header has no affine (voxel-to-world matrix)")
        grid = _ras_grid(path, shape, affine)
        _check_nifti_length(path, image)
        return grid
    return _read_sitk_grid(path)


def _read_sitk_grid(path: Path) -> ImageGrid:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as error:
        raise BadInputError(path, f"unreadable image header ({error})") from None
    if reader.GetNumberOfComponents() != 1:
        raise BadInputError(path, f"expected a scalar image, got {reader.GetNumberOfComponents()} components")
    size = reader.GetSize()
    if len(size) != 3:
        return _ras_grid(path, size, np.eye(4))  # raises the 3D message
    direction = np.asarray(reader.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(reader.GetSpacing())[None, :]
    lps[:3, 3] = reader.GetOrigin()
    return _ras_grid(path, size, _LPS_TO_RAS @ lps)


def read_grid_checked(path: str | os.PathLike, check_data: bool) -> ImageGrid:
    """`read_grid`, plus a read of every voxel (NaN/Inf, damaged data) when `check_data`."""
    grid = read_grid(path)
    if check_data:
        read_image(path)
    return grid


def check_image_file(path: str, check_data: bool = False) -> tuple[str, str] | None:
    """Process-pool friendly: None if fine, else (path, problem) (BadInputError does not pickle)."""
    try:
        read_grid_checked(path, check_data)
    except BadInputError as error:
        return error.path, error.problem
    return None


def check_image_files(paths: list[str], check_data: bool, num_processes: int = 1,
                      progress: bool = False, description: str = "checking images") -> list[BadInputError]:
    """Check many images, in parallel when `num_processes` > 1; returns the problems found."""
    from functools import partial

    from tqdm import tqdm

    work = partial(check_image_file, check_data=check_data)
    bar = dict(total=len(paths), desc=description, unit="img", disable=not progress, mininterval=1.0)
    if num_processes <= 1 or len(paths) < 2:
        results = [work(p) for p in tqdm(paths, **bar)]
    else:
        chunk = max(1, min(256, len(paths) // (num_processes * 8)))
        with ProcessPoolExecutor(num_processes) as pool:
            results = list(tqdm(pool.map(work, paths, chunksize=chunk), **bar))
    return [BadInputError(*found) for found in results if found is not None]


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
    if spec.task_type == "pretraining":
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
                problems.append(BadInputError(entry.path, "label without images in imagesTr"))
            elif ending is None and spec.auxiliary_labels is None and entry.name.endswith(spec.file_ending):
                problems.append(BadInputError(entry.path, "a mask beside the targets, but dataset.json declares no "
                                                          "auxiliary_labels (stale file?)"))
    return problems


def label_endings(spec: DatasetSpec) -> tuple[str, ...]:
    """File endings of labelsTr entries: masks, targets, or targets plus auxiliary masks."""
    if spec.task_type == "segmentation":
        return (spec.file_ending,)
    return (".txt", spec.file_ending) if spec.auxiliary_labels is not None else (".txt",)


def _validate_split(dataset_dir: Path, spec: DatasetSpec, split: str, check_images: bool, num_processes: int,
                    progress: bool) -> list[BadInputError]:
    try:
        cases, problems = list_supervised_cases(dataset_dir, spec, split=split, strict=False)
    except BadInputError as error:
        return [error]
    jobs = [(case.image_files, case.label_file if spec.task_type == "segmentation" else case.mask_file,
             spec.voxel_label_values or [], check_images) for case in cases]
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc=f"validating images{split}", unit="case", disable=not progress)
    if num_processes <= 1 or len(jobs) < 2:
        results = [_check_case_files(job) for job in tqdm(jobs, **bar)]
    else:
        with ProcessPoolExecutor(num_processes) as pool:
            results = list(tqdm(pool.map(_check_case_files, jobs), **bar))
    return problems + [BadInputError(*found) for result in results for found in result]


def _check_case_files(job) -> list[tuple[str, str]]:
    """All channels and the mask of one case: readable, 3D, finite, on one grid, mask values allowed."""
    image_files, mask_file, allowed, check_data = job
    grids, problems = [], []
    for path in image_files:
        try:
            grids.append(read_grid_checked(path, check_data))
        except BadInputError as error:
            problems.append((error.path, error.problem))
    reference = grids[0] if grids and grids[0].path == image_files[0] else None
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


def check_mask_values(path: str | os.PathLike, allowed: list[int], data: np.ndarray | None = None) -> None:
    """A segmentation holds only whole numbers from `allowed` (the labels of dataset.json)."""
    if data is None:
        data, _ = read_image(path)
    values = np.unique(data)
    if np.any(values != np.round(values)):
        raise BadInputError(path, "segmentation holds non-integer values")
    unexpected = sorted(set(int(v) for v in values) - set(int(a) for a in allowed))
    if unexpected:
        raise BadInputError(path, f"segmentation holds values {unexpected} that are not labels {sorted(allowed)}")
