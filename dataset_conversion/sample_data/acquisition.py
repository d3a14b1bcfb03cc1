"""From a noise-free image on the anatomy grid to the bytes a site's scanner would export.

The scan grid is described by its NIfTI affine (voxel -> world mm, RAS+); each scan voxel is
sampled from the anatomy through that affine, the head pose and the anatomy grid's affine, so
reorienting any written image to RAS gives back the same anatomy. Thick slices are low-pass
filtered first (partial volume across the slice), then coil bias, Rician noise, the skull-stripping
mask and the site's storage type are applied.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.fields import polynomial_field, rotation_matrix
from dataset_conversion.sample_data.sites import Site
from dataset_conversion.sample_data.tissues import AnatomyGrid

_AXIS_DIRECTIONS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
FWHM_PER_SIGMA = 2.3548
DESCRIPTION = b"fomo_nn synthetic sample data"


def direction_matrix(axcodes: str) -> np.ndarray:
    """Columns: the RAS unit vector each array axis points to (e.g. 'PIR' -> -y, -z, +x)."""
    if len(axcodes) != 3 or {_AXIS_DIRECTIONS[c][0] for c in axcodes if c in _AXIS_DIRECTIONS} != {0, 1, 2}:
        raise ValueError(f"axcodes {axcodes!r} must name each of R/L, A/P, S/I once")
    matrix = np.zeros((3, 3))
    for column, code in enumerate(axcodes):
        axis, sign = _AXIS_DIRECTIONS[code]
        matrix[axis, column] = sign
    return matrix


@dataclass(frozen=True)
class ScanGeometry:
    shape: tuple[int, int, int]
    affine: np.ndarray  # scan voxel -> world (mm)
    anatomy_from_scan: np.ndarray  # scan voxel -> anatomy-grid voxel
    smoothing_sigma: tuple[float, float, float]  # anatomy-grid voxels, low-pass before sampling

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))


def plan_scan_geometry(site: Site, grid: AnatomyGrid, rng: np.random.Generator) -> ScanGeometry:
    """The site's scan grid for one session; the head pose is drawn from `rng` (none if pose_deg is 0)."""
    directions = direction_matrix(site.axcodes)
    oblique = rotation_matrix(site.oblique_deg)
    spacing = np.asarray(site.spacing_factors, dtype=float) * grid.voxel_mm
    pose_rotation = rotation_matrix(rng.normal(0, site.pose_deg, 3)) if site.pose_deg > 0 else np.eye(3)
    pose_shift = rng.normal(0, site.pose_mm, 3) if site.pose_mm > 0 else np.zeros(3)
    head_center = np.asarray(site.origin_mm, dtype=float) + pose_shift

    ras_axis = np.abs(directions).argmax(axis=0)
    extent = np.asarray(grid.shape) * grid.voxel_mm * np.asarray(site.fov_factors)
    shape = tuple(int(max(8, round(extent[ras_axis[i]] / spacing[i]))) for i in range(3))
    affine = np.eye(4)
    affine[:3, :3] = oblique @ directions @ np.diag(spacing)
    affine[:3, 3] = head_center - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)

    pose = np.eye(4)  # anatomy mm -> world mm
    pose[:3, :3] = pose_rotation
    pose[:3, 3] = head_center
    anatomy_from_scan = np.linalg.inv(grid.affine) @ np.linalg.inv(pose) @ affine

    in_anatomy = pose_rotation.T @ oblique @ directions
    sigma = [0.0, 0.0, 0.0]
    for i in range(3):
        axis = int(np.abs(in_anatomy[:, i]).argmax())
        excess = max(spacing[i] ** 2 - grid.voxel_mm ** 2, 0.0)
        sigma[axis] = max(sigma[axis], float(np.sqrt(excess)) / (FWHM_PER_SIGMA * grid.voxel_mm))
    return ScanGeometry(shape, affine, anatomy_from_scan, tuple(sigma))


def to_scan(volume: np.ndarray, geometry: ScanGeometry, low_pass: bool = True) -> np.ndarray:
    """Sample an anatomy-grid volume on the scan grid (linear interpolation, zero outside)."""
    volume = np.asarray(volume, dtype=np.float32)
    if low_pass and max(geometry.smoothing_sigma) > 0.05:
        volume = ndimage.gaussian_filter(volume, geometry.smoothing_sigma, mode="constant", truncate=3.0)
    matrix = geometry.anatomy_from_scan
    linear, offset = matrix[:3, :3], matrix[:3, 3]
    source_axes = np.abs(linear).argmax(axis=0)
    axis_aligned = (sorted(source_axes) == [0, 1, 2]
                    and np.allclose(linear[source_axes, [0, 1, 2]], linear.sum(axis=0), atol=1e-9)
                    and np.count_nonzero(np.abs(linear) > 1e-9) == 3)
    if axis_aligned:  # permutation, flips and scaling only: scipy's much faster separable path
        volume = np.ascontiguousarray(volume.transpose(source_axes))
        return ndimage.affine_transform(volume, linear[source_axes, [0, 1, 2]], offset[source_axes],
                                        output_shape=geometry.shape, order=1, mode="constant", cval=0.0,
                                        prefilter=False)
    return ndimage.affine_transform(volume, linear, offset, output_shape=geometry.shape, order=1,
                                    mode="constant", cval=0.0, prefilter=False)


class MaskedSampler:
    """Trilinear sampling on the scan voxels inside `mask` only, with weights computed once per session.

    Every image of a session is skull-stripped to the same mask, so sampling only there (with the
    8 neighbour weights shared by all sequences) gives the same values as `to_scan` inside the mask
    at a fraction of the cost; outside the mask the result is 0.
    """

    def __init__(self, geometry: ScanGeometry, grid_shape, mask: np.ndarray):
        self.geometry, self.mask = geometry, mask
        self.positions = np.flatnonzero(mask)
        voxels = np.stack(np.unravel_index(self.positions, geometry.shape)).astype(np.float64)
        matrix = geometry.anatomy_from_scan
        source = matrix[:3, :3] @ voxels + matrix[:3, 3:4]
        shape = np.asarray(grid_shape)[:, None]
        lower = np.clip(np.floor(source), 0, shape - 2).astype(np.int64)
        fraction = np.clip(source - lower, 0.0, 1.0).astype(np.float32)
        inside = np.all((source >= 0) & (source <= shape - 1), axis=0).astype(np.float32)
        strides = np.asarray([grid_shape[1] * grid_shape[2], grid_shape[2], 1], dtype=np.int64)
        base = (lower * strides[:, None]).sum(axis=0)
        self.indices, self.weights = [], []
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    self.indices.append(base + dx * strides[0] + dy * strides[1] + dz * strides[2])
                    wx = fraction[0] if dx else 1 - fraction[0]
                    wy = fraction[1] if dy else 1 - fraction[1]
                    wz = fraction[2] if dz else 1 - fraction[2]
                    self.weights.append(wx * wy * wz * inside)

    def sample(self, volume: np.ndarray, low_pass: bool = True) -> np.ndarray:
        volume = np.asarray(volume, dtype=np.float32)
        if low_pass and max(self.geometry.smoothing_sigma) > 0.05:
            volume = ndimage.gaussian_filter(volume, self.geometry.smoothing_sigma, mode="constant", truncate=3.0)
        flat = volume.ravel()
        values = self.weights[0] * flat[self.indices[0]]
        for weight, index in zip(self.weights[1:], self.indices[1:]):
            values += weight * flat[index]
        out = np.zeros(self.geometry.shape, dtype=np.float32)
        out.flat[self.positions] = values
        return out

    def mask_of(self, fraction: np.ndarray) -> np.ndarray:
        """Binary mask (inside `mask`) of a structure; a small one keeps its brightest voxels rather than vanish."""
        sampled = self.sample(fraction, low_pass=True)
        peak = float(sampled.max())
        if peak < 0.05:
            return np.zeros(self.geometry.shape, dtype=bool)
        return sampled >= min(0.5, 0.5 * peak)


def mask_to_scan(fraction: np.ndarray, geometry: ScanGeometry, low_pass: bool) -> np.ndarray:
    """Binary mask on the scan grid; a small structure keeps its brightest voxels rather than vanish."""
    sampled = to_scan(fraction, geometry, low_pass=low_pass)
    peak = float(sampled.max())
    if peak < 0.05:
        return np.zeros(geometry.shape, dtype=bool)
    return sampled >= min(0.5, 0.5 * peak)


def bias_field(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
    """Smooth multiplicative receive-coil field, mean about 1."""
    return np.exp(np.float32(strength) * polynomial_field(rng, shape)).astype(np.float32)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator, magnitude: bool,
              mask: np.ndarray | None = None) -> np.ndarray:
    """Rician noise for magnitude images; Gaussian (clipped at 0) for computed maps such as ADC.

    With `mask`, noise is drawn only there (the rest is skull-stripped to 0 anyway).
    """
    inside = image if mask is None else image[mask]
    real = inside + np.float32(sigma) * rng.standard_normal(inside.shape, dtype=np.float32)
    if magnitude:
        imaginary = np.float32(sigma) * rng.standard_normal(inside.shape, dtype=np.float32)
        real = np.sqrt(real * real + imaginary * imaginary)
    else:
        real = np.maximum(real, 0)
    if mask is None:
        return real
    noisy = np.zeros_like(image)
    noisy[mask] = real
    return noisy


@dataclass
class StoredImage:
    """Array exactly as stored on disk, with the NIfTI scaling that turns it into intensities."""

    data: np.ndarray
    slope: float = 1.0
    inter: float = 0.0

    def values(self) -> np.ndarray:
        return self.data.astype(np.float64) * self.slope + self.inter


def encode(values: np.ndarray, dtype: str) -> StoredImage:
    """Cast intensities to a site's storage type; background (0) stays exactly 0 after scaling."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float32":
        return StoredImage(values.astype(np.float32))
    if dtype == "uint16":
        return StoredImage(np.clip(np.rint(values), 0, 65535).astype(np.uint16))
    if dtype == "int16":
        return StoredImage(np.clip(np.rint(values), -32768, 32767).astype(np.int16))
    peak = max(float(values.max()), 1e-6)
    if dtype == "int16_scaled":  # vendor-style slope with four significant digits, no intercept
        slope = float(f"{peak / 30000:.4g}")
        return StoredImage(np.clip(np.rint(values / slope), -32768, 32767).astype(np.int16), slope, 0.0)
    if dtype == "int16_offset":  # power-of-two slope and an intercept that maps stored 64 to exactly 0
        slope = float(2.0 ** np.round(np.log2(peak / 30000)))
        inter = -64 * slope
        return StoredImage(np.clip(np.rint((values - inter) / slope), -32768, 32767).astype(np.int16), slope, inter)
    raise ValueError(f"unknown storage type {dtype!r}")


def nifti_gz_bytes(image: StoredImage, affine: np.ndarray) -> bytes:
    """Gzipped NIfTI-1 bytes; no timestamp or file name in the gzip header, so output is reproducible."""
    nifti = nib.Nifti1Image(image.data, affine)
    header = nifti.header
    header.set_data_dtype(image.data.dtype)
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = DESCRIPTION
    nifti.set_qform(affine, code=1)
    nifti.set_sform(affine, code=1)
    if (image.slope, image.inter) != (1.0, 0.0):
        header.set_slope_inter(image.slope, image.inter)
    return gzip.compress(nifti.to_bytes(), compresslevel=1, mtime=0)
