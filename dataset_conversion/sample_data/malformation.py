"""FOMO26 task 5: polymicrogyria, a malformation of cortical development, painted into a T1 brain.

Facts about the real finding and what is built from each:
- Polymicrogyria is an excessively folded cortex: many small, shallow gyri, often fused at their
  surface, so on MRI the cortex of the affected region looks thickened (typically 5-8 mm against
  2.5-3.5 mm) with an irregular, bumpy grey-white junction and a shallow, stippled surface.
- It is focal or multifocal, most often perisylvian (around the lateral fissure: frontal operculum,
  posterior perisylvian), frequently bilateral; T1 at ~1 mm shows it best (FOMO26 task 5 gives a T1).
- Patients are mostly children and young adults (epilepsy, developmental delay); FOMO26 task 5 has
  48 training cases, balanced. Negatives here are brains of the same age range without the patch.
A patch is a smooth ball of 14-24 mm radius centred on the lateral cortex near the sylvian region;
inside it the cortex extends to `thickness_mm` below the brain surface, its inner edge modulated by a
fine random field (the bumpy junction), normal sulci are filled (fused microgyri), and shallow
microsulci (period ~4 mm) notch the surface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.brain import Morphology, SubjectFields, intracranial_level
from dataset_conversion.sample_data.fields import distance_to_zero_set, inside_fraction, slab_fraction, smooth_noise
from dataset_conversion.sample_data.pathology import Lesion
from dataset_conversion.sample_data.tissues import LayeredVolume, Tissue

# patch centres in cerebrum semi-axes (right hemisphere; mirrored for the left): perisylvian sites first
PMG_SITES = (((0.93, 0.12, -0.05), 0.4), ((0.92, -0.25, 0.02), 0.3), ((0.80, 0.45, 0.25), 0.15),
             ((0.78, -0.50, 0.35), 0.15))


@dataclass(frozen=True)
class PolymicrogyriaSpec:
    center_norm: tuple[float, float, float]
    radius_mm: float
    thickness_mm: float  # cortex depth inside the patch
    bilateral: bool
    seed: int

    def to_dict(self) -> dict:
        return {"center_norm": list(self.center_norm), "radius_mm": self.radius_mm,
                "thickness_mm": self.thickness_mm, "bilateral": self.bilateral}


def draw_polymicrogyria(rng: np.random.Generator) -> PolymicrogyriaSpec:
    sites, weights = zip(*PMG_SITES)
    base = np.asarray(sites[int(rng.choice(len(sites), p=np.asarray(weights) / sum(weights)))])
    center = base + rng.normal(0, 0.03, 3)
    center[0] *= 1 if rng.random() < 0.5 else -1
    return PolymicrogyriaSpec(tuple(round(float(v), 4) for v in center), round(float(rng.uniform(14, 24)), 2),
                              round(float(rng.uniform(5.5, 8.0)), 2), bool(rng.random() < 0.3),
                              int(rng.integers(2 ** 31)))


def paint_polymicrogyria(volume: LayeredVolume, coords, morph: Morphology, fields: SubjectFields,
                         spec: PolymicrogyriaSpec, atrophy: float) -> list[Lesion]:
    """Thicken and over-fold the cortex inside the patch (both hemispheres when bilateral)."""
    voxel = volume.grid.voxel_mm
    tissue_icv = intracranial_level(coords, morph, fields.surface) < 1
    depth = ndimage.distance_transform_edt(tissue_icv, sampling=voxel).astype(np.float32)
    brain_depth = depth - np.float32((1.0 + 3.5 * atrophy) * morph.csf_factor)
    rng = np.random.default_rng(spec.seed)
    bumps = smooth_noise(rng, volume.grid.shape, max(1.5 / voxel, 0.6))
    folds = smooth_noise(rng, volume.grid.shape, max(1.6 / voxel, 0.6))
    lesions = []
    for side in ((1, -1) if spec.bilateral else (1,)):
        center = morph.norm_to_mm((spec.center_norm[0] * side,) + tuple(spec.center_norm[1:]))
        distance = np.sqrt(sum((c - np.float32(c0)) ** 2 for c, c0 in zip(coords, center)))
        patch = inside_fraction(np.float32(spec.radius_mm) - distance, voxel)
        inner = np.float32(spec.thickness_mm) + np.float32(1.5) * bumps
        cortex = inside_fraction(inner - brain_depth, voxel) * inside_fraction(brain_depth + 0.5, voxel) * patch
        layer = volume.paint(Tissue.GREY_MATTER, cortex, only=(Tissue.WHITE_MATTER, Tissue.GREY_MATTER, Tissue.CSF))
        microsulci = (slab_fraction(distance_to_zero_set(folds, voxel), 0.8, voxel)
                      * inside_fraction(np.float32(2.5) - brain_depth, voxel) * patch)
        volume.paint(Tissue.CSF, microsulci, only=(Tissue.GREY_MATTER,))
        if layer is not None:
            lesions.append(Lesion("polymicrogyria", {"center_anatomy_mm": [round(float(v), 2) for v in center],
                                                     **spec.to_dict()}, layer))
    return lesions
