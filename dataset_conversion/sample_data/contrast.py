"""Tissue intensities per MRI sequence, their per-site and per-case variation, and rendering.

Relative intensities follow textbook contrast: T1 WM > GM > CSF; T2 CSF bright; FLAIR CSF dark and
lesions bright; DWI b1000 CSF dark and acute infarct very bright, with a low ADC; SWI / T2* veins,
iron and microbleeds dark; PD flat. ADC is in 10^-3 mm^2/s; the others are arbitrary units.
Infarcts and mimics are layers with their own per-sequence ratios to the tissue they replace
(lesion_contrast.py); their table entries below are only a fallback.
"""
from __future__ import annotations

import numpy as np

from dataset_conversion.sample_data.tissues import Tissue

SEQUENCES = ("t1", "t2", "flair", "dwi_b1000", "adc", "swi", "t2s", "pd")

T = Tissue
#               CSF   GM    WM    deep  vent  iron  WMH   vein  inf   chron menin edema bleed demy
_TABLE = {
    "t1":        (0.22, 0.55, 0.85, 0.63, 0.22, 0.68, 0.62, 0.50, 0.45, 0.25, 0.52, 0.55, 0.45, 0.55),
    "t2":        (1.00, 0.56, 0.38, 0.50, 1.00, 0.30, 0.80, 0.40, 0.78, 0.95, 0.62, 0.82, 0.25, 0.80),
    "flair":     (0.07, 0.60, 0.45, 0.55, 0.06, 0.42, 1.00, 0.45, 0.92, 0.18, 0.78, 0.95, 0.30, 0.95),
    "dwi_b1000": (0.10, 0.58, 0.46, 0.52, 0.09, 0.45, 0.58, 0.45, 1.35, 0.14, 0.66, 0.52, 0.30, 0.62),
    "adc":       (3.00, 0.85, 0.74, 0.78, 3.00, 0.72, 1.15, 0.80, 0.42, 2.40, 0.82, 1.35, 0.75, 1.05),
    "swi":       (0.78, 0.62, 0.55, 0.55, 0.78, 0.24, 0.62, 0.10, 0.60, 0.75, 0.58, 0.62, 0.04, 0.62),
    "t2s":       (0.92, 0.62, 0.50, 0.52, 0.92, 0.30, 0.70, 0.18, 0.70, 0.88, 0.62, 0.70, 0.05, 0.70),
    "pd":        (0.90, 0.76, 0.62, 0.72, 0.90, 0.66, 0.80, 0.62, 0.82, 0.88, 0.72, 0.80, 0.30, 0.80),
}
_ORDER = (T.CSF, T.GREY_MATTER, T.WHITE_MATTER, T.DEEP_GREY, T.VENTRICLE, T.IRON, T.WMH, T.VEIN, T.INFARCT,
          T.CHRONIC_INFARCT, T.MENINGIOMA, T.EDEMA, T.MICROBLEED, T.DEMYELINATION)
LESIONS = (T.INFARCT, T.CHRONIC_INFARCT, T.MENINGIOMA, T.EDEMA, T.WMH, T.DEMYELINATION)


def base_intensities(sequence: str) -> np.ndarray:
    """Intensity per Tissue value (index = tissue; background 0)."""
    if sequence not in _TABLE:
        raise ValueError(f"unknown sequence {sequence!r}; known: {', '.join(SEQUENCES)}")
    values = np.zeros(len(Tissue), dtype=np.float64)
    for tissue, value in zip(_ORDER, _TABLE[sequence]):
        values[tissue] = value
    return values


def site_intensities(sequence: str, rng: np.random.Generator, jitter_sd: float, gain_sd: float) -> np.ndarray:
    """A site's version of the table: per-tissue jitter and a contrast gain around the GM/WM mean.

    Small jitter keeps the textbook ordering; test sites use larger values (scanner / protocol shift).
    """
    values = base_intensities(sequence) * np.exp(rng.normal(0, jitter_sd, len(Tissue)))
    gain = float(np.exp(rng.normal(0, gain_sd)))
    mean = (values[T.GREY_MATTER] + values[T.WHITE_MATTER]) / 2
    values = mean + gain * (values - mean)
    values[T.VENTRICLE] = values[T.CSF]
    values[T.BACKGROUND] = 0.0
    return np.maximum(values, 0.01 * mean) * (np.arange(len(Tissue)) > 0)


def case_intensities(site_values: np.ndarray, sequence: str, rng: np.random.Generator, atrophy: float) -> np.ndarray:
    """Per-case variation: small tissue jitter, more for lesions (stage, size), and ageing of contrast."""
    values = site_values * np.exp(rng.normal(0, 0.025, len(Tissue)))
    for tissue in LESIONS:
        values[tissue] *= np.exp(rng.normal(0, 0.07))
    if sequence == "t1":  # grey / white contrast fades with age
        values[T.WHITE_MATTER] *= 1 - 0.06 * atrophy
    elif sequence in ("flair", "t2"):
        values[T.WHITE_MATTER] *= 1 + 0.05 * atrophy
    values[T.VENTRICLE] = values[T.CSF]
    return values


def render(layers, shape, values: np.ndarray, texture: np.ndarray, sequence: str | None = None) -> np.ndarray:
    """Composite the anatomy layers with per-tissue `values`: a noise-free image on the anatomy grid.

    A layer with its own contrast takes `ratio * values[tissue underneath]` for `sequence`.
    """
    image = np.zeros(int(np.prod(shape)), dtype=np.float32)
    values = values.astype(np.float32)
    for layer in layers:
        current = image[layer.index]
        if layer.contrast is None:
            target = values[layer.tissue]
        else:
            target = values[layer.base] * np.float32(layer.contrast.get(sequence, 1.0))
        image[layer.index] = current + layer.weight * (target - current)
    image *= texture.ravel()
    return image.reshape(shape)
