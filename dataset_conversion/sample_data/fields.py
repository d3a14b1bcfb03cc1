"""Smooth random fields and partial-volume helpers on the anatomy grid (vectorized numpy).

Boundaries are described by signed distances in mm (positive inside); a voxel's share of a
tissue is then computed from that distance and the voxel size, so thin structures (sulci, the
cortical ribbon) keep a realistic partial-volume appearance at coarse resolution.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def standardize(field: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (float32)."""
    field = field.astype(np.float32, copy=False)
    std = float(field.std())
    return ((field - float(field.mean())) / (std if std > 0 else 1.0)).astype(np.float32, copy=False)


def smooth_noise(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    """Gaussian random field with correlation length `sigma_vox` voxels, unit variance."""
    white = rng.standard_normal(tuple(shape), dtype=np.float32)
    return standardize(ndimage.gaussian_filter(white, sigma_vox, mode="wrap"))


def low_frequency_noise(rng: np.random.Generator, shape, voxel_mm: float, correlation_mm: float) -> np.ndarray:
    """Slowly varying random field: smoothed white noise on coarse nodes, interpolated axis by axis.

    Separable linear interpolation costs a few operations per voxel at any resolution (and, unlike
    matrix products, never wakes up multithreaded BLAS, which is slow on a busy machine).
    """
    shape = tuple(int(n) for n in shape)
    node_spacing = correlation_mm / 2
    counts = [int(np.ceil(n * voxel_mm / node_spacing)) + 3 for n in shape]
    field = ndimage.gaussian_filter(rng.standard_normal(counts), 1.0, mode="wrap").astype(np.float32)
    for axis, (n, count) in enumerate(zip(shape, counts)):
        positions = (np.arange(n) - (n - 1) / 2) * voxel_mm / node_spacing + (count - 1) / 2
        field = _interpolate_axis(field, axis, positions)
    return standardize(field)


def _interpolate_axis(array: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of `array` along `axis` at fractional node `positions`."""
    lower = np.clip(np.floor(positions).astype(int), 0, array.shape[axis] - 2)
    fraction = (positions - lower).astype(np.float32)
    view = [1] * array.ndim
    view[axis] = len(positions)
    fraction = fraction.reshape(view)
    return np.take(array, lower, axis=axis) * (1 - fraction) + np.take(array, lower + 1, axis=axis) * fraction


def distance_to_zero_set(field: np.ndarray, voxel_mm: float) -> np.ndarray:
    """First-order signed distance (mm) to the surface where `field` crosses zero.

    Zero sets of smooth random fields are random sheets: a cheap way to draw sulci or veins.
    """
    gradients = np.gradient(field, voxel_mm)
    magnitude = np.sqrt(sum(g.astype(np.float32) ** 2 for g in gradients))
    return (field / np.maximum(magnitude, 1e-3)).astype(np.float32)


def inside_fraction(signed_distance_mm: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Share of a voxel that lies inside a boundary whose signed distance at the voxel centre is given."""
    return np.clip(signed_distance_mm / voxel_mm + 0.5, 0.0, 1.0).astype(np.float32)


def slab_fraction(distance_mm: np.ndarray, width_mm, voxel_mm: float) -> np.ndarray:
    """Share of a voxel covered by a slab `width_mm` thick whose mid-surface is `distance_mm` away.

    Unlike `inside_fraction`, a slab thinner than a voxel never fills more than width/voxel of it.
    """
    distance = np.abs(distance_mm)
    half_width = np.asarray(width_mm, dtype=np.float32) / 2
    upper = np.minimum(distance + half_width, voxel_mm / 2)
    lower = np.maximum(distance - half_width, -voxel_mm / 2)
    return np.clip((upper - lower) / voxel_mm, 0.0, 1.0).astype(np.float32)


def ellipsoid_distance(coords, center, semi_axes, rotation: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm, positive inside) to an ellipsoid surface.

    `coords` are three arrays of physical positions; `rotation` (3x3) turns the ellipsoid's own axes
    into physical axes. First order in the distance, exact on the surface.
    """
    offsets = [c - np.float32(c0) for c, c0 in zip(coords, center)]
    if rotation is not None:
        rotation = np.asarray(rotation, dtype=np.float32)
        offsets = [sum(rotation[j, i] * offsets[j] for j in range(3)) for i in range(3)]
    semi = [np.float32(a) for a in semi_axes]
    q = np.sqrt(sum((u / a) ** 2 for u, a in zip(offsets, semi)))
    gradient = np.sqrt(sum((u / (a * a)) ** 2 for u, a in zip(offsets, semi)))
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(gradient > 1e-9, q * (1 - q) / gradient, min(semi))
    return distance.astype(np.float32)


def rotation_matrix(degrees_xyz) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(np.asarray(degrees_xyz, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def polynomial_field(rng: np.random.Generator, shape) -> np.ndarray:
    """Smooth second-order polynomial over the grid, unit std: the shape of a receive-coil bias."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    basis = [x, y, z, x * x, y * y, z * z, x * y, x * z, y * z]
    coefficients = rng.normal(size=len(basis))
    field = np.zeros(tuple(shape), dtype=np.float32)
    for coefficient, term in zip(coefficients, basis):
        field += np.float32(coefficient) * term
    return standardize(field)
