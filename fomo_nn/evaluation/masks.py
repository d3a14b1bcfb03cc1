"""Read a segmentation mask with the geometry needed to score it (spacing for NSD, grid check).

NIfTI goes through nibabel (spacing = header zooms); .nrrd/.mha/.mhd through SimpleITK, converted to
the same (x, y, z) array order and RAS affine so a NIfTI reference and an .nrrd prediction compare.
Foreground is every nonzero voxel; `values` keeps the labels themselves for per-class scoring.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.utils.errors import BadInputError

AFFINE_TOLERANCE = 1e-4
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Mask:
    foreground: np.ndarray  # bool, (x, y, z)
    affine: np.ndarray  # 4x4 voxel -> RAS mm
    spacing: tuple[float, float, float]  # mm per array axis
    source: str
    num_labels: int  # distinct nonzero values; > 1 means labels were merged into one foreground
    values: np.ndarray | None = None  # the mask's values as stored, (x, y, z)

    def label(self, value: int) -> np.ndarray:
        """The voxels of one label (per-class Dice and NSD)."""
        return self.values == value


def _as_3d(path, data: np.ndarray) -> np.ndarray:
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadInputError(path, f"expected a 3D mask, got shape {tuple(data.shape)}")
    return data


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    image = nib.load(str(path))
    data = _as_3d(path, np.asanyarray(image.dataobj))
    return data, np.asarray(image.affine, dtype=np.float64), tuple(float(z) for z in image.header.get_zooms()[:3])


def _read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3:
        raise BadInputError(path, f"expected a 3D mask, got {image.GetDimension()} dimensions")
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # SimpleITK gives (z, y, x)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3) * spacing
    affine[:3, 3] = image.GetOrigin()
    return data, _LPS_TO_RAS @ affine, tuple(float(s) for s in spacing)


def read_mask(path: str | Path) -> Mask:
    path = Path(path)
    name = path.name.lower()
    try:
        reader = _read_nifti if name.endswith((".nii", ".nii.gz")) else _read_sitk
        data, affine, spacing = reader(path)
    except BadInputError:
        raise
    except Exception as error:  # nibabel and SimpleITK raise many types for unreadable files
        raise BadInputError(path, f"cannot read mask ({type(error).__name__}: {error})") from None
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise BadInputError(path, "mask holds NaN or infinite values")
    foreground = data != 0
    num_labels = len(np.unique(data[foreground])) if foreground.any() else 0
    return Mask(foreground, affine, spacing, str(path), num_labels, data)


def check_same_grid(reference: Mask, prediction: Mask) -> None:
    """Scoring voxel by voxel only makes sense on one grid: say which files disagree and how."""
    if reference.foreground.shape != prediction.foreground.shape:
        raise BadInputError(prediction.source, f"shape {prediction.foreground.shape} differs from the reference "
                                               f"{reference.source} with shape {reference.foreground.shape}")
    difference = float(np.abs(reference.affine - prediction.affine).max())
    if difference > AFFINE_TOLERANCE:
        raise BadInputError(prediction.source, f"affine differs from the reference {reference.source} by up to "
                                               f"{difference:.4g} (tolerance {AFFINE_TOLERANCE}); the prediction "
                                               "must be on the reference grid")
