"""Reorientation between an image's own voxel grid and RAS+ voxel order, and the rules an affine must meet.

Only axis permutations and flips are applied (no resampling), so going to RAS and back reproduces
every voxel exactly; the oblique part of an affine stays in the affine.

`check_affine` refuses what that bookkeeping cannot represent faithfully, from the header alone
(before any voxel is read): a non-finite or singular matrix, a shear (voxel axes not perpendicular;
ITK/SimpleITK, and so nnU-Net, refuse those too: "ITK only supports orthonormal direction
cosines"), and a spacing no MRI has (> MAX_SPACING_MM: a units or pixdim error whose resampling to
~1 mm would allocate (spacing)^3 times the file's voxels).
"""
from __future__ import annotations

import numpy as np
import nibabel as nib
from nibabel import orientations as nio

from fomo_nn.utils.errors import BadInputError

RAS = nio.axcodes2ornt("RAS")
GRID_TOLERANCE_MM = 1e-3  # two grids are one when shapes match and affines agree within this
ORTHOGONALITY_TOLERANCE = 1e-4  # ITK's: |D^T D - I| of the unit direction columns D
MAX_SPACING_MM = 20.0  # thick clinical slices are <= ~10 mm with gap; beyond this the header is wrong


class GeometryWarning(UserWarning):
    """A usable image whose header is ambiguous (e.g. qform and sform disagree); names the file."""


def to_ras_transform(affine: np.ndarray) -> np.ndarray:
    """Orientation transform (nibabel 'ornt') that brings the array of `affine` into RAS order."""
    return nio.ornt_transform(nio.io_orientation(affine), RAS)


def reorient_array(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply an orientation transform to the first three axes of `data`."""
    return np.ascontiguousarray(nio.apply_orientation(data, ornt))


def inverse_ornt(ornt: np.ndarray) -> np.ndarray:
    """Orientation transform that undoes `ornt`."""
    ornt = np.asarray(ornt, dtype=float)
    inverse = np.zeros_like(ornt)
    for source_axis, (target_axis, flip) in enumerate(ornt):
        inverse[int(target_axis)] = (source_axis, flip)
    return inverse


def reoriented_affine(affine: np.ndarray, shape: tuple[int, ...], ornt: np.ndarray) -> np.ndarray:
    """Affine of the array after `reorient_array(data, ornt)` so world coordinates are unchanged."""
    return np.asarray(affine, dtype=float) @ nio.inv_ornt_aff(ornt, shape[:3])


def ras_shape_of(shape, ornt: np.ndarray) -> tuple[int, int, int]:
    """The shape of a `shape` array after `reorient_array(data, ornt)`."""
    ras = [0, 0, 0]
    for source_axis, (target_axis, _) in enumerate(np.asarray(ornt)):
        ras[int(target_axis)] = int(shape[source_axis])
    return tuple(ras)


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def axcodes(affine: np.ndarray) -> str:
    return "".join(nib.aff2axcodes(affine))


def grid_difference(shape, affine, reference_shape, reference_affine, atol: float = GRID_TOLERANCE_MM) -> str | None:
    """How a grid differs from a reference grid (None: the same grid). The one grid rule of fomo_nn."""
    if tuple(shape) != tuple(reference_shape):
        return f"shape {tuple(shape)} vs {tuple(reference_shape)} (in RAS order)"
    offset = float(np.abs(np.asarray(affine, dtype=float) - np.asarray(reference_affine, dtype=float)).max())
    if offset <= atol:
        return None
    spacing = tuple(round(s, 3) for s in spacing_from_affine(affine))
    reference_spacing = tuple(round(s, 3) for s in spacing_from_affine(reference_affine))
    return (f"same shape but the affines differ by up to {offset:.3g} mm (spacing {spacing} vs "
            f"{reference_spacing}, or origin or orientation)")


def same_grid(shape_a, affine_a, shape_b, affine_b, atol: float = GRID_TOLERANCE_MM) -> bool:
    """Whether two images share a voxel grid (shape and affine within `atol` mm)."""
    return grid_difference(shape_a, affine_a, shape_b, affine_b, atol) is None


def shear_problem(affine: np.ndarray) -> str | None:
    """Why the voxel axes of `affine` are not perpendicular (None: they are, within ITK's tolerance)."""
    columns = np.asarray(affine, dtype=float)[:3, :3]
    directions = columns / np.linalg.norm(columns, axis=0)[None, :]
    gram = directions.T @ directions
    if np.abs(gram - np.eye(3)).max() <= ORTHOGONALITY_TOLERANCE:
        return None
    i, j = divmod(int(np.argmax(np.abs(np.triu(gram, 1)))), 3)
    angle = float(np.degrees(np.arccos(np.clip(gram[i, j], -1.0, 1.0))))
    return f"voxel axes {i} and {j} meet at {angle:.2f} degrees, not 90"


def check_affine(path, affine: np.ndarray) -> None:
    """Refuse a voxel-to-world matrix fomo_nn cannot use faithfully (BadInputError naming `path`)."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadInputError(path, "the affine (voxel-to-world matrix) is not finite or not invertible")
    problem = shear_problem(affine)
    if problem:
        raise BadInputError(path, f"the affine is sheared ({problem}); fomo_nn, like ITK/SimpleITK, supports only "
                                  "rotations, flips and spacing: resample the image onto an orthogonal grid first")
    spacing = spacing_from_affine(affine)
    if max(spacing) > MAX_SPACING_MM:
        raise BadInputError(path, f"voxel spacing {tuple(round(s, 4) for s in spacing)} mm exceeds "
                                  f"{MAX_SPACING_MM:g} mm: the header's pixdim/affine (or its units) is wrong, and "
                                  "resampling it to a ~1 mm grid would allocate an array "
                                  f"~{int(np.prod(spacing)):,} times the image's voxel count")
