"""Simulated acquisition sites: how each scanner/protocol/export pipeline writes its images.

Three pools mirror FOMO25: heterogeneous pretraining sources, the finetuning hospitals (images
already "preprocessed": RAS), and other hospitals for the out-of-domain test split. Each pool has
fixed templates (so every size and seed contains e.g. a sagittal thick-slice int16 source) and
seeded continuous parameters.

Diffusion imaging differs between hospitals as it does in reality: clinical DWI is 2D single-shot EPI
with 3-6 mm slices, and EPI is sensitive to the susceptibility jumps at air-bone interfaces, which
pile signal up at the inferior frontal lobes (frontal sinus) and the temporal lobes (petrous bone and
mastoid air cells). Every site has that artifact at some strength; it grows with field strength
(susceptibility effects scale with B0: 3 T worse than 1.5 T) and with the EPI protocol.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dataset_conversion.sample_data.contrast import SEQUENCES

DTYPES = ("float32", "uint16", "int16", "int16_scaled", "int16_offset")
POOLS = ("pretraining", "finetune", "test")


@dataclass(frozen=True)
class Site:
    site_id: str
    pool: str
    axcodes: str  # direction each array axis points to, e.g. "PIR"
    spacing_factors: tuple[float, float, float]  # per array axis, times the anatomy voxel size
    oblique_deg: tuple[float, float, float]
    fov_factors: tuple[float, float, float]  # per RAS axis, times the anatomy grid extent
    dtype: str  # one of DTYPES; int16_scaled / int16_offset store scl_slope (and scl_inter)
    intensity_scale: float
    adc_scale: float  # stored ADC = ADC[10^-3 mm^2/s] * adc_scale
    noise_fraction: float
    bias_strength: float
    contrast_jitter_sd: float
    contrast_gain_sd: float
    pose_deg: float
    pose_mm: float
    origin_mm: tuple[float, float, float]
    seed: int
    field_strength_t: float = 1.5
    epi_artifact: float = 0.5  # DWI b1000 susceptibility pile-up at peak, as a fraction above the true signal
    dwi_slice_mm: float = 5.0  # DWI / ADC acquisition slice thickness (2D EPI), before co-registration

    def sequence_scale(self, sequence: str) -> float:
        """Each protocol has its own arbitrary intensity scale per sequence."""
        rng = np.random.default_rng([self.seed, 1, SEQUENCES.index(sequence)])
        return float(np.exp(rng.normal(0, 0.25)))

    def contrast_rng(self, sequence: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, 2, SEQUENCES.index(sequence)])

    def to_dict(self) -> dict:
        return asdict(self)


# (axcodes, spacing factors per array axis, dtype, oblique degrees, field strength in tesla)
_TEMPLATES = {
    "pretraining": (
        ("RAS", (1.0, 1.0, 1.0), "float32", (0, 0, 0), 3.0),
        ("LPS", (1.0, 1.0, 1.0), "int16_scaled", (0, 0, 0), 1.5),
        ("LAS", (1.0, 1.0, 2.5), "uint16", (0, 0, 0), 1.5),  # axial 2D, thick slices
        ("PIR", (1.0, 1.0, 2.2), "int16_offset", (0, 0, 0), 3.0),  # sagittal 2D
        ("RAS", (1.0, 1.0, 1.0), "float32", (9, 0, 4), 3.0),  # oblique
        ("LIP", (1.0, 1.0, 2.0), "uint16", (0, 0, 0), 1.5),  # coronal 2D
        ("LPS", (0.8, 0.8, 0.8), "int16", (0, 6, -3), 3.0),
        ("RPI", (1.2, 1.2, 1.2), "float32", (0, 0, 0), 1.5),
    ),
    "finetune": (  # clinical hospitals too: already RAS and skull-stripped, but one scans 2D axial stacks
        ("RAS", (1.0, 1.0, 1.0), "float32", (0, 0, 0), 3.0),
        ("RAS", (1.0, 1.0, 1.0), "uint16", (0, 0, 0), 1.5),
        ("RAS", (1.1, 1.1, 1.6), "float32", (0, 0, 0), 1.5),
    ),
    "test": (
        ("LPS", (1.0, 1.0, 1.0), "int16_scaled", (5, 0, 0), 1.5),
        ("PIR", (1.0, 1.0, 1.8), "uint16", (0, 0, 0), 3.0),
        ("LAS", (0.9, 0.9, 2.4), "float32", (0, 0, 0), 1.5),
        ("RAS", (1.0, 1.0, 1.0), "int16", (0, 0, 0), 3.0),  # a newer 3 T scanner, plain int16 PACS export
    ),
}
# per pool: noise fraction range, bias strength range, contrast jitter sd, gain sd, pose deg, pose mm.
# FOMO60K pools 16 public sources of many vendors, field strengths and protocols: its sites span at
# least the variation of any one hospital, so the pretraining pool is the widest. Finetuning and test
# sites are both clinical hospitals (FOMO25: India and Denmark), noisier and more shaded than research
# scans; the test hospitals are drawn a little harsher and never equal a finetuning site.
_POOL_RANGES = {
    "pretraining": ((0.01, 0.07), (0.0, 0.4), 0.08, 0.12, 4.0, 6.0),
    "finetune": ((0.02, 0.045), (0.05, 0.3), 0.05, 0.06, 0.0, 0.0),
    "test": ((0.025, 0.06), (0.1, 0.35), 0.06, 0.09, 3.0, 5.0),
}
# per pool: EPI pile-up strength at 1.5 T (scaled by (B0 / 1.5 T) ** 0.8), DWI slice thickness range (mm)
_DIFFUSION_RANGES = {
    "pretraining": ((0.2, 0.6), (3.0, 6.0)),
    "finetune": ((0.25, 0.5), (4.0, 5.0)),
    "test": ((0.25, 0.65), (4.0, 6.0)),
}


def _intensity_scale(rng: np.random.Generator, dtype: str) -> tuple[float, float]:
    """(intensity scale, ADC scale) that fit the storage type."""
    if dtype == "float32":
        return float(rng.choice([1.0, 1.0, 600.0]) * rng.uniform(0.7, 1.4)), float(rng.choice([1.0, 0.001]))
    low, high = {"uint16": (800, 4000), "int16": (300, 1500), "int16_scaled": (500, 20000),
                 "int16_offset": (1000, 6000)}[dtype]
    return float(rng.uniform(low, high)), 1000.0


def build_sites(seed: int) -> dict[str, list[Site]]:
    """All sites of all pools for a generator seed."""
    sites = {}
    for pool_index, pool in enumerate(POOLS):
        noise, bias, jitter, gain, pose_deg, pose_mm = _POOL_RANGES[pool]
        pool_sites = []
        (artifact_low, artifact_high), slice_range = _DIFFUSION_RANGES[pool]
        for index, (axcodes, spacing, dtype, oblique, tesla) in enumerate(_TEMPLATES[pool]):
            rng = np.random.default_rng([seed, 3, pool_index, index])
            in_plane = rng.uniform(0.92, 1.08)
            thick = spacing[2] != spacing[0]
            factors = (spacing[0] * in_plane, spacing[1] * in_plane,
                       spacing[2] * (rng.uniform(0.95, 1.05) if thick else in_plane))
            scale, adc_scale = _intensity_scale(rng, dtype)
            registered = pool == "finetune"
            pool_sites.append(Site(
                site_id=f"{pool}_{index + 1}", pool=pool, axcodes=axcodes,
                spacing_factors=tuple(round(float(f), 4) for f in factors),
                oblique_deg=tuple(float(v) for v in oblique),
                fov_factors=tuple(round(float(v), 4) for v in rng.uniform(1.0, 1.2, 3)), dtype=dtype,
                intensity_scale=round(scale, 4), adc_scale=adc_scale,
                noise_fraction=round(float(rng.uniform(*noise)), 4), bias_strength=round(float(rng.uniform(*bias)), 4),
                contrast_jitter_sd=jitter, contrast_gain_sd=gain, pose_deg=pose_deg, pose_mm=pose_mm,
                origin_mm=(0.0, 0.0, 0.0) if registered else tuple(round(float(v), 2) for v in rng.normal(0, 20, 3)),
                seed=int(rng.integers(2 ** 31)), field_strength_t=float(tesla),
                epi_artifact=round(float(rng.uniform(artifact_low, artifact_high) * (tesla / 1.5) ** 0.8), 4),
                dwi_slice_mm=round(float(rng.uniform(*slice_range)), 2)))
        sites[pool] = pool_sites
    return sites
