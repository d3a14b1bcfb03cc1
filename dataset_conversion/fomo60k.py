"""FOMO60K-layout corpus -> pretraining dataset: dataset.json + manifest.json, no copy of any scan.

`fomo_nn_convert fomo60k SRC -d 1` walks `SRC/sub_*/ses_*/<sequence>.nii.gz` and lists every image with
its subject, session and sequence (the file stem as given, e.g. `t1_2`; its family, e.g. `t1`, is
stored in the manifest's `sequence_families` map), by path relative to SRC. By default no image is
opened (60K files in seconds); `check="header"` parses every header (4D, degenerate, truncated) and
`check="full"` reads every voxel (NaN/Inf too), both in parallel. An image whose id could not name a
case (a space, a leading '-') is refused; hidden folders are skipped and listed.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from dataset_conversion.nnunet_dataset import ConversionReport, target_dataset_dir
from fomo_nn.datasets.cases import case_id_problem
from fomo_nn.datasets.dataset_json import DatasetSpec, save_dataset_json
from fomo_nn.datasets.manifest import MANIFEST_NAME, Manifest, ManifestImage
from fomo_nn.datasets.validation import check_image_files
from fomo_nn.challenges.layout import CorpusImage, hidden_folders_note, sequence_family, walk_fomo60k
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import write_json_atomic

DEFAULT_NAME = "FOMO60K"
CHECKS = ("none", "header", "full")


def image_id(image: CorpusImage) -> str:
    """A file-name-safe unique id: `sub_1_ses_2_t1_2`."""
    return f"{image.subject}_{image.session}_{image.sequence}"


def convert_fomo60k(src: str | os.PathLike, dataset: str | int = 1, name: str | None = None, check: str = "none",
                    num_processes: int = 1, progress: bool = True) -> ConversionReport:
    """Write the pretraining dataset for a FOMO60K-layout tree; bad images are left out and reported."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    source_root = Path(os.path.abspath(src))
    if not source_root.is_dir():
        raise BadInputError(source_root, "source folder does not exist")
    target = target_dataset_dir(dataset, name, DEFAULT_NAME)

    listing = _walk_with_progress(source_root, progress)
    if not listing.images and not listing.problems:
        raise BadInputError(source_root, "no images found; expected the FOMO60K layout "
                                         "sub_*/ses_*/<sequence>.nii.gz under this folder")
    images, bad = _usable_ids(source_root, listing.images)
    bad = list(listing.problems) + bad
    if check != "none":
        images, found = _checked(source_root, images, check == "full", num_processes, progress)
        bad += found
    images, duplicates = _unique_ids(source_root, images)
    bad += duplicates

    report = ConversionReport(target, "images", converted=len(images), bad=bad)
    if listing.ignored:
        report.notes.append(f"ignored {len(listing.ignored)} file(s) that are not NIfTI images, e.g. "
                            f"{listing.ignored[0]}")
    hidden_note = hidden_folders_note(listing.hidden)
    if hidden_note:
        report.notes.append(hidden_note)
    if not images:
        report.notes.append("nothing written: no usable image")
        return report
    name = target.name.split("_", 1)[1]
    manifest = Manifest(str(source_root), [_manifest_image(im) for im in images], sources=[name])
    save_corpus_dataset(target, manifest, {im.sequence: sequence_family(im.sequence) for im in images}, check,
                        f"FOMO60K-layout corpus at {manifest.source_root}: {len(images)} images of "
                        f"{manifest.num_subjects} subjects; the scans stay there (see {MANIFEST_NAME})")
    families = Counter(sequence_family(im.sequence) for im in images)
    report.notes.append(f"{manifest.num_subjects} subjects, {manifest.num_sessions} sessions; sequence families: "
                        + ", ".join(f"{f} {n}" for f, n in families.most_common()))
    return report


def _walk_with_progress(source_root: Path, progress: bool):
    with tqdm(desc="listing FOMO60K", unit="img", disable=not progress, mininterval=1.0) as bar:
        def advance(total: int) -> None:
            bar.update(total - bar.n)

        return walk_fomo60k(source_root, on_subject=advance)


def _checked(source_root: Path, images: list[CorpusImage], full: bool, num_processes: int, progress: bool):
    paths = [str(source_root / im.relative_path) for im in images]
    bad = check_image_files(paths, check_data=full, num_processes=num_processes, progress=progress,
                            description="reading images" if full else "reading headers")
    bad_paths = {error.path for error in bad}
    return [im for im, path in zip(images, paths) if path not in bad_paths], bad


def _usable_ids(source_root: Path, images: list[CorpusImage]):
    """An image whose id preprocessing could not use as a case id is refused here, naming its file."""
    kept, bad = [], []
    for image in images:
        problem = case_id_problem(image_id(image))
        if problem:
            bad.append(BadInputError(source_root / image.relative_path,
                                     f"its image id cannot be a case id: {problem}; rename the folder or file"))
        else:
            kept.append(image)
    return kept, bad


def _unique_ids(source_root: Path, images: list[CorpusImage]):
    """`sub_1/ses_1_t1` and `sub_1_ses_1/t1` would share an id: keep the first, report the other."""
    seen: dict[str, CorpusImage] = {}
    kept, bad = [], []
    for image in images:
        key = image_id(image)
        if key in seen:
            bad.append(BadInputError(source_root / image.relative_path,
                                     f"its image id {key!r} collides with {seen[key].relative_path}; rename one"))
        else:
            seen[key] = image
            kept.append(image)
    return kept, bad


def _manifest_image(image: CorpusImage) -> ManifestImage:
    return ManifestImage(image_id=image_id(image), subject=image.subject, session=image.session,
                         sequence=image.sequence, path=image.relative_path)


def save_corpus_dataset(target: Path, manifest: Manifest, families: dict[str, str], check: str,
                        description: str) -> None:
    """manifest.json first, dataset.json last: a dataset.json always has its own manifest beside it.
    `families`: each sequence stem's family, recorded for the sampler (FOMO60K and FOMO300K name them alike)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "dataset.json").unlink(missing_ok=True)
    data = manifest.to_json()
    data["sequence_families"] = dict(sorted(families.items()))
    data["images_checked"] = check
    write_json_atomic(target / MANIFEST_NAME, data, indent=None)
    spec = DatasetSpec(name=target.name.split("_", 1)[1], task_type="pretraining", channel_names={"0": "mri"},
                       num_training=len(manifest.images), description=description)
    save_dataset_json(spec, target)
