"""Tissue classes and the layered volume the synthetic anatomy is painted into.

A subject's anatomy is an ordered list of layers (tissue, voxels, partial-volume weight); a
sequence is rendered by compositing the layers with that sequence's tissue intensities, so the
anatomy is built once per session and every sequence of the session sees the same brain.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    BACKGROUND = 0
    CSF = 1  # subarachnoid and sulcal
    GREY_MATTER = 2
    WHITE_MATTER = 3
    DEEP_GREY = 4  # thalamus, caudate, putamen
    VENTRICLE = 5
    IRON = 6  # globus pallidus, substantia nigra, dentate: dark on SWI / T2*
    WMH = 7  # white-matter hyperintensity
    VEIN = 8
    INFARCT = 9  # acute / subacute: restricted diffusion
    CHRONIC_INFARCT = 10  # cavitated lacune: CSF-like
    MENINGIOMA = 11
    EDEMA = 12
    MICROBLEED = 13
    DEMYELINATION = 14  # demyelinating plaque (multiple sclerosis)


PARENCHYMA = (Tissue.GREY_MATTER, Tissue.WHITE_MATTER, Tissue.DEEP_GREY, Tissue.IRON, Tissue.WMH, Tissue.VEIN,
              Tissue.EDEMA, Tissue.MICROBLEED, Tissue.DEMYELINATION)


@dataclass(frozen=True)
class AnatomyGrid:
    """Isotropic RAS grid centred on the head: physical (0, 0, 0) mm is the grid centre."""

    shape: tuple[int, int, int]
    voxel_mm: float

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([self.voxel_mm] * 3 + [1.0])
        affine[:3, 3] = -self.voxel_mm * (np.asarray(self.shape) - 1) / 2
        return affine

    def axis_mm(self, axis: int) -> np.ndarray:
        n = self.shape[axis]
        return ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * self.voxel_mm).astype(np.float32)

    def coordinates(self) -> list[np.ndarray]:
        """Three full float32 arrays with the physical x, y, z (mm) of every voxel."""
        x, y, z = (self.axis_mm(a) for a in range(3))
        return [np.broadcast_to(v, self.shape).astype(np.float32)
                for v in (x[:, None, None], y[None, :, None], z[None, None, :])]

    def to_voxel(self, points_mm) -> np.ndarray:
        """Continuous voxel indices of physical points (last axis = x, y, z)."""
        return np.asarray(points_mm, dtype=np.float32) / self.voxel_mm + (np.asarray(self.shape) - 1) / 2

    def box_around(self, center_mm, radius_mm: float) -> tuple[slice, slice, slice]:
        """Voxel slices covering a sphere (clipped to the grid); keeps small structures cheap."""
        center = self.to_voxel(center_mm)
        reach = radius_mm / self.voxel_mm + 1
        return tuple(slice(int(max(0, np.floor(c - reach))), int(min(n, np.ceil(c + reach) + 1)))
                     for c, n in zip(center, self.shape))


@dataclass
class Layer:
    """One painted structure: flat voxel indices and the share of each voxel it occupies.

    A layer with `contrast` is a lesion whose signal is a ratio to the tissue it replaces, per sequence
    (`base`: that tissue per voxel): an infarct's look depends on its stage, not on a fixed table entry.
    """

    tissue: int
    index: np.ndarray
    weight: np.ndarray
    contrast: dict | None = None  # sequence -> intensity ratio to the tissue underneath (missing: 1)
    base: np.ndarray | None = None  # uint8 tissue underneath each voxel (layers with `contrast` only)

    def volume_mm3(self, voxel_mm: float) -> float:
        return float(self.weight.sum(dtype=np.float64)) * voxel_mm ** 3

    def fraction_map(self, shape) -> np.ndarray:
        fraction = np.zeros(int(np.prod(shape)), dtype=np.float32)
        fraction[self.index] = self.weight
        return fraction.reshape(shape)


class LayeredVolume:
    """Paints tissues in order; later layers cover earlier ones in proportion to their weight."""

    def __init__(self, grid: AnatomyGrid):
        self.grid = grid
        self.labels = np.zeros(grid.shape, dtype=np.uint8)  # majority tissue after each layer
        self.layers: list[Layer] = []

    def paint(self, tissue: Tissue, fraction: np.ndarray, box=None, only=None, min_weight: float = 0.02,
              contrast: dict | None = None):
        """Add a layer; `box` says which sub-block `fraction` covers, `only` restricts it to tissues.

        With `contrast` ({sequence: ratio}) the layer keeps the tissue it covers and scales its signal.
        """
        box = box if box is not None else (slice(0, None),) * 3
        fraction = np.asarray(fraction, dtype=np.float32)
        if only is not None:
            fraction = fraction * np.isin(self.labels[box], np.asarray(only, dtype=np.uint8))
        local = np.nonzero(fraction > min_weight)
        if local[0].size == 0:
            return None
        weight = fraction[local]
        offsets = [s.start or 0 for s in box]
        index = np.ravel_multi_index(tuple(axis + offset for axis, offset in zip(local, offsets)), self.grid.shape)
        base = self.labels.flat[index].copy() if contrast is not None else None
        self.labels.flat[index[weight >= 0.5]] = int(tissue)
        layer = Layer(int(tissue), index.astype(np.int64), weight.astype(np.float32),
                      dict(contrast) if contrast is not None else None, base)
        self.layers.append(layer)
        return layer
