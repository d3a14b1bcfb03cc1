"""Reorientation between an image's own voxel grid and RAS+ voxel order.

Only axis permutations and flips are applied (no resampling), so going to RAS and back reproduces
every voxel exactly; the oblique part of an affine stays in the affine.
"""
from __future__ import annotations

import numpy as np
import nibabel as nib
from nibabel import orientations as nio

RAS = nio.axcodes2ornt("RAS")


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


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def axcodes(affine: np.ndarray) -> str:
    return "".join(nib.aff2axcodes(affine))


def same_grid(shape_a, affine_a, shape_b, affine_b, atol: float = 1e-3) -> bool:
    """Whether two images share a voxel grid (shape and affine within `atol` mm)."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol)
