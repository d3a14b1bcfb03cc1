"""How a lesion looks on each sequence: the infarct clock, chronic scars and DWI-bright mimics.

A lesion's signal is a ratio to the tissue it replaces, per sequence (`Layer.contrast`). Diffusion
follows the physics, so DWI and ADC never disagree by accident: the b1000 image is the b0 image
(T2-weighted) times exp(-b * ADC), hence a lesion's DWI ratio is its T2 ratio times
exp(-ADC_normal * (ADC ratio - 1)) with b = 1000 s/mm^2 and ADC in 10^-3 mm^2/s. A bright DWI spot is
therefore either restricted diffusion (low ADC: infarct) or "T2 shine-through" (high T2, normal or high
ADC: demyelination, vasogenic oedema, a subacute infarct), which is what radiologists check the ADC for.

Facts used (textbook stroke / neuroradiology):
- ADC falls by 35-60 % within minutes of ischaemia, is lowest at 1-4 days and pseudo-normalises at
  about 7-10 days, then rises above normal as the infarct becomes chronic.
- FLAIR / T2 are still near normal in the first ~4.5 h (the "DWI-FLAIR mismatch" used to date a
  stroke), become clearly bright within a day and stay bright; T1 turns mildly dark.
- DWI stays bright for 1-3 weeks, late on by T2 shine-through rather than by restriction.
- Chronic demyelinating plaques and vasogenic oedema have long T2 and raised ADC (1.2-1.9x normal):
  bright on FLAIR, iso- to bright on DWI, never dark on ADC.
- Post-ictal (seizure) cortical changes are the commonest true-restriction mimic: mildly bright DWI,
  mildly low ADC, confined to the cortex, reversible.
"""
from __future__ import annotations

import numpy as np

ADC_NORMAL = 0.8  # 10^-3 mm^2/s, mean of normal grey and white matter
STAGES = ("hyperacute", "acute", "subacute")
# Stage windows in hours since onset (hyperacute < 6 h, acute 6 h - 7 d, subacute 8 - 21 d); the onset-to-MRI
# delay of clinical cohorts is skewed to the first day, hence log-uniform draws inside a window.
STAGE_HOURS = {"hyperacute": (1.0, 6.0), "acute": (6.0, 7 * 24.0), "subacute": (8 * 24.0, 21 * 24.0)}

# ADC ratio nodes (days, 1 - depth * k, or an absolute ratio where k is None) and T2 edema nodes (days, share)
_ADC_NODES = ((0.0, 0.0), (1 / 24, 0.7), (0.25, 0.9), (1.0, 1.0), (4.0, 1.0), (7.0, 0.5), (9.0, 0.0))
_ADC_LATE = ((9.0, 1.0), (21.0, 1.15))  # after pseudo-normalisation ADC keeps rising
_T2_NODES = ((0.0, 0.0), (1 / 24, 0.0), (3 / 24, 0.04), (0.25, 0.18), (1.0, 0.6), (4.0, 0.9), (7.0, 1.0), (21.0, 1.0))


def dwi_ratio(t2_ratio: float, adc_ratio: float) -> float:
    """b1000 signal ratio of a lesion: T2 (b0) ratio times the diffusion attenuation difference."""
    return float(t2_ratio * np.exp(-ADC_NORMAL * (adc_ratio - 1.0)))


def _interpolate(nodes, x: float) -> float:
    xs, ys = zip(*nodes)
    return float(np.interp(x, xs, ys))


def infarct_adc_ratio(hours: float, depth: float) -> float:
    """ADC relative to normal tissue `hours` after onset, for a core whose nadir is 1 - depth."""
    days = hours / 24.0
    if days >= _ADC_LATE[0][0]:
        return _interpolate(_ADC_LATE, days)
    return 1.0 - depth * _interpolate(_ADC_NODES, days)


def infarct_t2_ratio(hours: float, edema: float) -> float:
    """T2 / FLAIR signal ratio: oedema builds over the first days (`edema`: the plateau excess)."""
    return 1.0 + edema * _interpolate(_T2_NODES, hours / 24.0)


def draw_stage(rng: np.random.Generator, probabilities=(0.2, 0.65, 0.15)) -> tuple[str, float]:
    """(stage, hours since onset); most stroke MRIs are done within the first days."""
    stage = STAGES[int(rng.choice(len(STAGES), p=probabilities))]
    low, high = STAGE_HOURS[stage]
    return stage, float(np.exp(rng.uniform(np.log(low), np.log(high))))


def weighted_contrast(t2: float, adc: float, t1_slope: float = 0.25) -> dict[str, float]:
    """Ratios for every sequence from a lesion's T2 and ADC ratios (FLAIR follows T2 for these lesions)."""
    excess = t2 - 1.0
    return {"t2": t2, "flair": 1.0 + 0.95 * excess, "pd": 1.0 + 0.55 * excess, "t1": max(0.5, 1.0 - t1_slope * excess),
            "swi": 1.0 + 0.15 * excess, "t2s": 1.0 + 0.2 * excess, "adc": adc, "dwi_b1000": dwi_ratio(t2, adc)}


def infarct_contrast(hours: float, depth: float, edema: float) -> dict[str, float]:
    """Per-sequence ratios of an ischaemic lesion `hours` after onset."""
    return weighted_contrast(infarct_t2_ratio(hours, edema), infarct_adc_ratio(hours, depth))


def draw_infarct_severity(rng: np.random.Generator) -> tuple[float, float]:
    """(ADC nadir depth, T2 oedema plateau excess) of one lesion: conspicuity varies between lesions."""
    return float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.45, 1.0))


# mimic kind -> (T2 ratio range, ADC ratio range, T1 slope)
MIMICS = {
    "demyelination": ((1.6, 2.3), (1.15, 1.6), 0.35),
    "vasogenic_edema": ((1.7, 2.5), (1.3, 1.9), 0.2),
    "postictal": ((1.1, 1.35), (0.72, 0.9), 0.1),
}


def mimic_contrast(kind: str, rng: np.random.Generator) -> dict[str, float]:
    (t2_low, t2_high), (adc_low, adc_high), t1_slope = MIMICS[kind]
    return weighted_contrast(float(rng.uniform(t2_low, t2_high)), float(rng.uniform(adc_low, adc_high)), t1_slope)


def rounded(contrast: dict[str, float]) -> dict[str, float]:
    return {name: round(float(value), 3) for name, value in sorted(contrast.items())}
