"""Small raw datasets for tests: synthetic skull-stripped 'brains' in any orientation and spacing.

Importable by every test module (`from builders import ...`; pytest puts tests/ on sys.path).
Volumes are tiny (24-40 voxels a side) so whole pipelines run in seconds on 2 CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.datasets.dataset_json import DatasetSpec, save_dataset_json
from fomo_nn.datasets.manifest import Manifest, ManifestImage, save_manifest

ORIENTATIONS = {"RAS": (1, 1, 1), "LPS": (-1, -1, 1), "LAS": (-1, 1, 1), "RPI": (1, -1, -1)}


def affine_for(spacing=(1.0, 1.0, 1.0), orientation: str = "RAS", origin=(-20.0, -24.0, -16.0)) -> np.ndarray:
    """A diagonal affine whose axes point along `orientation` (a key of ORIENTATIONS)."""
    signs = np.asarray(ORIENTATIONS[orientation], dtype=float)
    affine = np.diag([*(signs * np.asarray(spacing, dtype=float)), 1.0])
    affine[:3, 3] = origin
    return affine


def ellipsoid(shape, centre_fraction=(0.5, 0.5, 0.5), radii_fraction=(0.38, 0.4, 0.36)) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    distance = sum(((g - c * s) / (r * s)) ** 2 for g, c, r, s in zip(grids, centre_fraction, radii_fraction, shape))
    return distance <= 1.0


def brain_image(shape, seed: int = 0, scale: float = 400.0, smooth: bool = False) -> np.ndarray:
    """Positive intensities inside an ellipsoid 'brain', exactly 0 outside (skull-stripped)."""
    rng = np.random.default_rng(seed)
    mask = ellipsoid(shape)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    texture = 1.0 + 0.3 * np.sin(2.5 * grids[0] + seed) * np.cos(2.0 * grids[1]) + 0.2 * grids[2]
    if not smooth:
        texture = texture + rng.normal(0, 0.05, size=shape)
    image = np.where(mask, scale * np.clip(texture, 0.2, None), 0.0)
    return image.astype(np.float32)


def lesion_label(shape, centre=(0.45, 0.55, 0.5), radii=(0.15, 0.12, 0.2), second: bool = True) -> np.ndarray:
    label = ellipsoid(shape, centre, radii).astype(np.uint8)
    if second:
        label[ellipsoid(shape, (0.6, 0.35, 0.45), (0.08, 0.1, 0.12))] = 2
    return label


def write_nifti(path, array, affine, dtype=np.float32) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


def dataset_dir(root, dataset_id: int, name: str) -> Path:
    path = Path(root) / f"Dataset{dataset_id:03d}_{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_segmentation_dataset(root, dataset_id: int = 1, name: str = "Seg", num_cases: int = 4,
                              shapes=((32, 36, 28),), spacings=((1.0, 1.0, 1.0),), orientations=("RAS",),
                              channels=("t1", "flair")) -> Path:
    """imagesTr/CASE_000X.nii.gz per channel + labelsTr/CASE.nii.gz with labels 0, 1, 2."""
    folder = dataset_dir(root, dataset_id, name)
    for index in range(num_cases):
        shape = shapes[index % len(shapes)]
        affine = affine_for(spacings[index % len(spacings)], orientations[index % len(orientations)])
        case = f"case_{index:03d}"
        for channel in range(len(channels)):
            write_nifti(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz",
                        brain_image(shape, seed=10 * index + channel, scale=300.0 + 100 * channel), affine)
        write_nifti(folder / "labelsTr" / f"{case}.nii.gz", lesion_label(shape), affine, np.uint8)
    save_dataset_json(DatasetSpec(name=name, task_type="segmentation",
                                  channel_names={str(i): c for i, c in enumerate(channels)},
                                  labels={"background": 0, "lesion": 1, "edema": 2}, num_training=num_cases), folder)
    return folder


def classification_lesion(shape, index: int) -> np.ndarray:
    """The infarct mask of case `index` of make_classification_dataset: a blob for positives (odd), empty else."""
    if index % 2 == 0:
        return np.zeros(shape, np.uint8)
    return ellipsoid(shape, (0.4 + 0.05 * index, 0.55, 0.5), (0.12, 0.1, 0.15)).astype(np.uint8)


def make_classification_dataset(root, dataset_id: int = 2, name: str = "Cls", num_cases: int = 4,
                                shape=(30, 34, 26), channels=("flair", "adc"), lesion_masks: bool = False) -> Path:
    """imagesTr + labelsTr/CASE.txt holding 0 or 1; with `lesion_masks`, also labelsTr/CASE.nii.gz (the
    auxiliary infarct mask, brighter in the images) declared as dataset.json auxiliary_labels."""
    folder = dataset_dir(root, dataset_id, name)
    affine = affine_for((1.0, 1.0, 1.2))
    for index in range(num_cases):
        case = f"cls_{index:03d}"
        lesion = classification_lesion(shape, index)
        for channel in range(len(channels)):
            image = brain_image(shape, seed=index + 7 * channel)
            if lesion_masks:
                image[lesion > 0] *= 1.8
            write_nifti(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image, affine)
        (folder / "labelsTr").mkdir(exist_ok=True)
        (folder / "labelsTr" / f"{case}.txt").write_text(f"{index % 2}\n")
        if lesion_masks:
            write_nifti(folder / "labelsTr" / f"{case}.nii.gz", lesion, affine, np.uint8)
    save_dataset_json(DatasetSpec(name=name, task_type="classification",
                                  channel_names={str(i): c for i, c in enumerate(channels)},
                                  classes={"0": "healthy", "1": "infarct"}, num_training=num_cases,
                                  auxiliary_labels={"background": 0, "infarct": 1} if lesion_masks else None), folder)
    return folder


def make_pretraining_dataset(root, dataset_id: int = 3, name: str = "Corpus", num_subjects: int = 3,
                             sessions: int = 1, sequences=("t1", "flair"), shape=(24, 28, 24)) -> Path:
    """Scans under source/sub_X/ses_Y/SEQ.nii.gz listed by a manifest (never copied)."""
    folder = dataset_dir(root, dataset_id, name)
    source = folder / "source"
    images = []
    for subject in range(num_subjects):
        for session in range(1, sessions + 1):
            for k, sequence in enumerate(sequences):
                relative = f"sub_{subject}/ses_{session}/{sequence}.nii.gz"
                spacing = (1.0, 1.0, 1.0) if (subject + k) % 2 == 0 else (1.2, 1.2, 1.5)
                write_nifti(source / relative, brain_image(shape, seed=100 * subject + 10 * session + k),
                            affine_for(spacing, "LPS" if k % 2 else "RAS"))
                images.append(ManifestImage(image_id=f"sub_{subject}_ses_{session}_{sequence}",
                                            subject=f"sub_{subject}", session=f"ses_{session}", sequence=sequence,
                                            path=relative))
    save_manifest(Manifest(source_root=str(source), images=images, sources=["synthetic"]), folder)
    save_dataset_json(DatasetSpec(name=name, task_type="pretraining", channel_names={"0": "mri"},
                                  num_training=len(images)), folder)
    return folder


def synthetic_fingerprint(spacings, shapes_after_crop, num_cases: int | None = None, relative_size: float = 0.6,
                          channels=("t1",)) -> dict:
    """The fields of a dataset fingerprint the planner reads, for planner tests without images."""
    cases = [{"case_id": f"c{i:04d}", "spacing": list(map(float, sp)), "shape_after_crop": list(map(int, sh)),
              "shape_before_crop": list(map(int, sh)), "relative_size_after_crop": relative_size}
             for i, (sp, sh) in enumerate(zip(spacings, shapes_after_crop))]
    return {"cases": cases, "num_cases": num_cases or len(cases), "channel_names": list(channels),
            "median_relative_size_after_crop": relative_size}


def exit_on_marker(item):
    """For pool tests: a worker that dies abruptly (like an out-of-memory kill) on the item 'die'."""
    import os
    import time

    if item == "die":
        os._exit(9)
    time.sleep(0.05)
    return item * 2


def simple_plans(channels=("t1",), target_spacing=(1.0, 1.0, 1.0), task_type: str = "segmentation",
                 labels=None):
    """A hand-made Plans for preprocessing tests (no fingerprint or planner involved)."""
    from fomo_nn.plans.records import NetworkPlan, NormalizationPlan, Plans

    if task_type == "segmentation" and labels is None:
        labels = {"background": 0, "lesion": 1, "edema": 2}
    return Plans(dataset_name="Dataset999_Test", task_type=task_type, channel_names=list(channels),
                 target_spacing=list(target_spacing), spacing_reason="test", median_shape=[32, 32, 32],
                 patch_size=[32, 32, 32], batch_size=2, normalization=[NormalizationPlan() for _ in channels],
                 network=NetworkPlan(input_channels=len(channels)), labels=labels)
