"""Acquisition artifacts tied to anatomy: EPI susceptibility pile-up on DWI, GRE signal loss, thick DWI slices.

Facts used:
- Single-shot EPI (every clinical DWI) is distorted along the phase-encoding (anterior-posterior)
  axis where air meets bone: signal piles up into a bright band, next to a band of signal loss, over
  the frontal sinus / orbital roof (inferior frontal lobes) and the petrous bone and mastoid air
  cells (inferior temporal lobes). On b1000 images the band can be as bright as an infarct.
- The ADC map is computed from b0 and b1000 images that are distorted alike, so the pile-up
  largely cancels there: the artifact is "DWI bright, ADC normal", unlike an infarct.
- Gradient-echo images (SWI, T2*) lose signal near the same air-bone interfaces.
- Susceptibility effects grow with field strength (3 T worse than 1.5 T): the site sets the strength.
- Clinical DWI is 2D with 3-6 mm slices, so after co-registration it is blurrier across slices than
  the 3D sequences of the same session, and a small lesion loses conspicuity on DWI first.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.acquisition import FWHM_PER_SIGMA
from dataset_conversion.sample_data.tissues import AnatomyGrid

# air cavities (cerebrum semi-axes from the cerebrum centre; left/right mirrored), pile-up weight
_AIR_CAVITIES = (((0.0, 0.9, -0.5), 1.0),  # frontal sinus / orbital roofs under the gyrus recti
                 ((0.58, -0.12, -0.78), 0.85),  # right petrous bone / mastoid
                 ((-0.58, -0.12, -0.78), 0.85))  # left
PILE_UP_MM, PILE_UP_WIDTH_MM = 19.0, 6.5  # distance of the bright band from the cavity centre, its width
DROPOUT_MM = 13.0  # signal loss closer to the air
PHASE_STRETCH = 1.7  # the band is drawn out along the phase-encoding (y) axis


def air_interfaces(morph) -> tuple[tuple[tuple[float, float, float], float], ...]:
    """Air-cavity centres (anatomy mm) of a subject and their pile-up weight."""
    return tuple((tuple(float(v) for v in morph.norm_to_mm(center)), weight) for center, weight in _AIR_CAVITIES)


def _distances(grid: AnatomyGrid, center):
    """Distance (mm) from `center` with the y axis compressed: separable, broadcast 1D axes."""
    x, y, z = (grid.axis_mm(a) - np.float32(c) for a, c in enumerate(center))
    return np.sqrt(x[:, None, None] ** 2 + (y[None, :, None] / PHASE_STRETCH) ** 2 + z[None, None, :] ** 2)


def susceptibility_fields(grid: AnatomyGrid, interfaces, epi_strength: float, gre_strength: float,
                          rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Multiplicative fields on the anatomy grid for one session: {'dwi_b1000': ..., 'swi': ..., 't2s': ...}.

    The pile-up amplitude varies per session and per cavity (head position, shimming); the ADC map
    gets none (see the module docstring).
    """
    session_gain = float(rng.uniform(0.8, 1.2))
    cavity_gain = rng.uniform(0.7, 1.3, len(interfaces))
    shift = rng.normal(0, 2.0, (len(interfaces), 3))
    pile = np.zeros(grid.shape, dtype=np.float32)
    drop = np.zeros(grid.shape, dtype=np.float32)
    wide = np.zeros(grid.shape, dtype=np.float32)
    for (center, weight), gain, offset in zip(interfaces, cavity_gain, shift):
        distance = _distances(grid, np.asarray(center) + offset)
        pile += np.float32(weight * gain) * np.exp(-((distance - PILE_UP_MM) / PILE_UP_WIDTH_MM) ** 2)
        drop = np.maximum(drop, np.exp(-(distance / DROPOUT_MM) ** 2).astype(np.float32))
        wide = np.maximum(wide, np.exp(-(distance / (DROPOUT_MM + 8.0)) ** 2).astype(np.float32))
    amplitude = np.float32(epi_strength * session_gain)
    dwi = 1.0 + amplitude * pile - np.float32(min(0.8, 0.7 * amplitude)) * drop
    gre = 1.0 - np.float32(min(0.8, gre_strength * session_gain)) * wide
    return {"dwi_b1000": np.maximum(dwi, 0.15).astype(np.float32), "swi": gre.astype(np.float32),
            "t2s": gre.astype(np.float32)}


def gre_strength(field_strength_t: float) -> float:
    return 0.3 * (field_strength_t / 1.5) ** 0.8


def thick_slice_blur(image: np.ndarray, grid: AnatomyGrid, slice_mm: float, in_plane_mm: float = 1.8) -> np.ndarray:
    """Blur an anatomy-grid image to a 2D axial acquisition of `slice_mm` slices (z is the slice axis)."""
    def sigma(mm):
        return float(np.sqrt(max(mm ** 2 - grid.voxel_mm ** 2, 0.0))) / (FWHM_PER_SIGMA * grid.voxel_mm)
    sigmas = (sigma(in_plane_mm), sigma(in_plane_mm), sigma(slice_mm))
    if max(sigmas) < 0.05:
        return image
    return ndimage.gaussian_filter(image, sigmas, mode="constant", truncate=3.0)
