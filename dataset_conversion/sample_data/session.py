"""Scan one session: every sequence of it on one shared (co-registered) scan grid.

Diffusion images are acquired as thick-slice EPI (blurrier, with susceptibility pile-up) and
gradient-echo images lose signal near air: see artifacts.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.acquisition import (MaskedSampler, ScanGeometry, StoredImage, add_noise, bias_field,
                                                        encode, mask_to_scan, plan_scan_geometry)
from dataset_conversion.sample_data.anatomy import Anatomy
from dataset_conversion.sample_data.artifacts import gre_strength, susceptibility_fields, thick_slice_blur
from dataset_conversion.sample_data.contrast import case_intensities, render, site_intensities
from dataset_conversion.sample_data.sites import Site

# Relative noise per sequence: diffusion is the noisiest, susceptibility images a bit noisier.
NOISE_WEIGHT = {"dwi_b1000": 1.8, "adc": 1.5, "swi": 1.3, "t2s": 1.2}


@dataclass
class ScannedSession:
    geometry: ScanGeometry
    mask: np.ndarray  # skull-stripping mask on the scan grid
    images: dict[str, StoredImage]  # file stem -> stored image
    sequences: dict[str, str]  # file stem -> sequence
    lesion_masks: list[np.ndarray] = field(default_factory=list)  # one per anatomy lesion, scan grid


def scan_session(anatomy: Anatomy, site: Site, files: dict[str, str], rng: np.random.Generator) -> ScannedSession:
    """Render and acquire `files` ({file stem: sequence}) of one session at `site`."""
    geometry = plan_scan_geometry(site, anatomy.grid, rng)
    mask = mask_to_scan(anatomy.icv.astype(np.float32), geometry, low_pass=False)
    sampler = MaskedSampler(geometry, anatomy.grid.shape, mask)
    coil = bias_field(rng, geometry.shape, site.bias_strength * rng.uniform(0.5, 1.0))
    artifact_rng = np.random.default_rng(rng.integers(2 ** 63))
    artifacts = None
    images = {}
    for stem, sequence in files.items():
        values = case_intensities(site_intensities(sequence, site.contrast_rng(sequence), site.contrast_jitter_sd,
                                                   site.contrast_gain_sd), sequence, rng, anatomy.atrophy)
        image = render(anatomy.layers, anatomy.grid.shape, values, anatomy.texture, sequence)
        if sequence in ("dwi_b1000", "adc"):
            image = thick_slice_blur(image, anatomy.grid, site.dwi_slice_mm)
        if sequence in ("dwi_b1000", "swi", "t2s"):
            if artifacts is None:  # one distortion per session, whichever sequences it has
                artifacts = susceptibility_fields(anatomy.grid, anatomy.air_interfaces, site.epi_artifact,
                                                  gre_strength(site.field_strength_t), artifact_rng)
            image *= artifacts[sequence]
        clean = sampler.sample(image)
        is_adc = sequence == "adc"
        if not is_adc:  # ADC is a ratio of two acquisitions: the coil field cancels
            clean *= coil ** np.float32(rng.uniform(0.6, 1.2))
        reference = float(np.median(clean[mask])) if mask.any() else 1.0
        sigma = site.noise_fraction * NOISE_WEIGHT.get(sequence, 1.0) * reference
        noisy = add_noise(clean, sigma, rng, magnitude=not is_adc, mask=mask)
        scale = site.adc_scale if is_adc else site.intensity_scale * site.sequence_scale(sequence)
        images[stem] = encode(noisy * np.float32(scale), site.dtype)
    lesion_masks = [sampler.mask_of(lesion.layer.fraction_map(anatomy.grid.shape)) for lesion in anatomy.lesions]
    return ScannedSession(geometry, mask, images, dict(files), lesion_masks)


def deepest_point_world(mask: np.ndarray, affine: np.ndarray) -> list[float] | None:
    """World position (mm) of the mask voxel farthest from the mask border: surely inside the lesion."""
    if not mask.any():
        return None
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    depth = ndimage.distance_transform_edt(np.pad(mask[box], 1))[1:-1, 1:-1, 1:-1]
    voxel = np.add(np.unravel_index(int(np.argmax(depth)), depth.shape), [s.start for s in box])
    return [round(float(v), 3) for v in (affine @ np.array([*voxel, 1.0]))[:3]]
