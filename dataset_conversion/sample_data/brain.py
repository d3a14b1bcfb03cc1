"""A healthy synthetic brain: subject morphology and the age-dependent painting of its tissues.

The shapes are simple on purpose (ellipsoids, zero sets of random fields) but every structure a
brain-MRI model should notice is there: an intracranial envelope with cerebrum, cerebellum and
brainstem; a folded cortical ribbon with sulci, an interhemispheric and Sylvian fissure; deep grey
nuclei; iron-rich nuclei; lateral, third and fourth ventricles; veins; and age-driven atrophy
(wider ventricles and sulci, thinner cortex, more white-matter hyperintensities). White-matter
hyperintensities are the commonest finding of the ageing brain (about half of people in their 50s, nearly
all over 65); the onset ages below give about that: ~50 % at 40-55, all subjects over 65.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.fields import (distance_to_zero_set, ellipsoid_distance, inside_fraction,
                                                   low_frequency_noise, slab_fraction, smooth_noise)
from dataset_conversion.sample_data.tissues import AnatomyGrid, LayeredVolume, Tissue

YOUNGEST, OLDEST = 20.0, 90.0
SULCAL_CORRELATION_MM = 2.5  # sulci about 10-12 mm apart
FOLIA_PERIOD_MM = 6.5
SURFACE_WOBBLE = 0.03  # relative amplitude of the random bumps of the skull's inner surface


@dataclass(frozen=True)
class FocalSeed:
    """A small focal finding that appears at `onset_age` (white-matter hyperintensity, microbleed)."""

    center_norm: tuple[float, float, float]  # in cerebrum semi-axes, from the cerebrum centre
    radius_mm: float
    onset_age: float


@dataclass(frozen=True)
class Morphology:
    """Everything about a subject's brain that does not change with age (same in every session)."""

    sex: str
    size: float
    semi_axes_mm: tuple[float, float, float]  # cerebrum, left-right / anterior-posterior / inferior-superior
    cerebrum_z_mm: float
    midline_mm: float
    age_offset: float  # biological minus chronological age
    ventricle_factor: float
    csf_factor: float
    thickness_factor: float
    wmh_seeds: tuple[FocalSeed, ...]
    microbleed_seeds: tuple[FocalSeed, ...]
    field_seed: int

    @property
    def cerebrum_center(self) -> np.ndarray:
        return np.array([self.midline_mm * 0.3, 0.0, self.cerebrum_z_mm], dtype=np.float32)

    def norm_to_mm(self, point_norm, hemisphere: int = 1) -> np.ndarray:
        point = np.asarray(point_norm, dtype=np.float32) * np.asarray(self.semi_axes_mm, dtype=np.float32)
        point[0] *= hemisphere
        return self.cerebrum_center + point


_PERIVENTRICULAR = ((0.15, 0.33, 0.27), (0.17, -0.42, 0.2), (0.23, 0.0, 0.36), (0.2, 0.18, 0.33))


def draw_morphology(rng: np.random.Generator) -> Morphology:
    sex = "F" if rng.random() < 0.5 else "M"
    # clipped so the largest head (with its surface wobble) still fits a 160 x 192 x 160 mm grid
    size = float(np.clip((0.965 if sex == "F" else 1.035) * np.exp(rng.normal(0, 0.035)), 0.92, 1.05))
    semi = tuple(float(a * size * np.exp(np.clip(rng.normal(0, 0.015), -0.03, 0.03))) for a in (66.0, 80.0, 58.0))
    susceptibility = rng.normal()
    wmh = []
    for k in range(28):
        if k % 5 < 3:
            base = np.asarray(_PERIVENTRICULAR[rng.integers(len(_PERIVENTRICULAR))])
            center = base + rng.normal(0, 0.04, 3)
        else:
            direction = rng.normal(size=3)
            direction[2] = abs(direction[2])
            center = direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.65)
        center[0] = abs(center[0]) * (1 if rng.random() < 0.5 else -1)
        onset = 38 + 62 * rng.beta(2.2, 1.6) - 9 * susceptibility
        wmh.append(FocalSeed(tuple(float(v) for v in center), float(rng.uniform(1.5, 4.5)), float(onset)))
    bleeds = []
    for _ in range(5):
        direction = rng.normal(size=3)
        center = direction / np.linalg.norm(direction) * rng.uniform(0.2, 0.8)
        center[2] = abs(center[2]) * 0.6
        onset = 60 + 45 * rng.beta(2, 2) - 6 * susceptibility
        bleeds.append(FocalSeed(tuple(float(v) for v in center), 1.6, float(onset)))
    return Morphology(
        sex=sex, size=size, semi_axes_mm=semi, cerebrum_z_mm=float(5 * size), midline_mm=float(rng.normal(0, 1.0)),
        age_offset=float(rng.normal(0, 5.0)), ventricle_factor=float(np.exp(rng.normal(0, 0.1))),
        csf_factor=float(np.exp(rng.normal(0, 0.12))), thickness_factor=float(np.exp(rng.normal(0, 0.06))),
        wmh_seeds=tuple(wmh), microbleed_seeds=tuple(bleeds), field_seed=int(rng.integers(2 ** 31)))


def atrophy_level(morph: Morphology, age: float) -> float:
    """0 for a 20-year-old brain, about 1 at 90; driven by the biological age."""
    return float(np.clip((age + morph.age_offset - YOUNGEST) / (OLDEST - YOUNGEST), 0.0, 1.25))


@dataclass
class SubjectFields:
    """Random fields fixed per subject (drawn from `field_seed`), so folds match across sessions."""

    surface: np.ndarray
    sulci: np.ndarray
    sulcal_depth: np.ndarray
    texture: np.ndarray
    vein_a: np.ndarray
    vein_b: np.ndarray
    folia: np.ndarray

    @classmethod
    def generate(cls, field_seed: int, grid: AnatomyGrid) -> "SubjectFields":
        rng = np.random.default_rng(field_seed)
        shape, voxel = grid.shape, grid.voxel_mm
        return cls(
            surface=low_frequency_noise(rng, shape, voxel, 30.0),
            sulci=smooth_noise(rng, shape, SULCAL_CORRELATION_MM / voxel),
            sulcal_depth=low_frequency_noise(rng, shape, voxel, 25.0),
            texture=smooth_noise(rng, shape, 2.5 / voxel),
            vein_a=smooth_noise(rng, shape, 4.5 / voxel),
            vein_b=smooth_noise(rng, shape, 4.5 / voxel),
            folia=low_frequency_noise(rng, shape, voxel, 12.0))


def compartment_radii(coords, morph: Morphology):
    """Normalised radii (1 on the surface) of the cerebrum, cerebellum and brainstem envelopes."""
    x, y, z = coords
    ax, ay, az = morph.semi_axes_mm
    cx, cy, cz = morph.cerebrum_center
    dz = z - cz
    az_local = np.where(dz < 0, np.float32(0.78 * az), np.float32(az))
    cerebrum = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + (dz / az_local) ** 2)
    cerebellum = np.sqrt((x / (0.56 * ax)) ** 2 + ((y + 0.56 * ay) / (0.3 * ay)) ** 2
                         + ((z - cz + 0.64 * az) / (0.3 * az)) ** 2)
    brainstem = np.sqrt((x / (0.16 * ax)) ** 2 + ((y + 0.2 * ay) / (0.14 * ay)) ** 2
                        + ((z - cz + 0.55 * az) / (0.42 * az)) ** 2)
    return cerebrum, cerebellum, brainstem


def intracranial_level(coords, morph: Morphology, surface_values) -> np.ndarray:
    """Below 1 inside the skull's inner surface (a smooth random union of the three envelopes)."""
    cerebrum, cerebellum, brainstem = compartment_radii(coords, morph)
    wobble = np.clip(surface_values, -2.5, 2.5)
    return np.minimum(np.minimum(cerebrum, cerebellum), brainstem) - np.float32(SURFACE_WOBBLE) * wobble


@dataclass
class Compartments:
    """Which envelope each voxel belongs to (float32 0/1 masks) and the envelopes' normalised radii."""

    cerebrum: np.ndarray
    cerebellum: np.ndarray
    brainstem: np.ndarray
    cerebrum_radius: np.ndarray
    cerebellum_radius: np.ndarray

    @classmethod
    def of(cls, coords, morph: Morphology) -> "Compartments":
        cerebrum_r, cerebellum_r, brainstem_r = compartment_radii(coords, morph)
        cerebrum = (cerebrum_r <= np.minimum(cerebellum_r, brainstem_r)).astype(np.float32)
        cerebellum = ((cerebellum_r < cerebrum_r) & (cerebellum_r <= brainstem_r)).astype(np.float32)
        return cls(cerebrum, cerebellum, 1.0 - cerebrum - cerebellum, cerebrum_r, cerebellum_r)


def paint_healthy_brain(volume: LayeredVolume, coords, icv: np.ndarray, morph: Morphology, age: float,
                        fields: SubjectFields) -> float:
    """Paint CSF, white and grey matter, sulci and fissures, deep nuclei, ventricles, WMH, veins and
    microbleeds of `morph` at `age`; return the atrophy level used."""
    a = atrophy_level(morph, age)
    voxel = volume.grid.voxel_mm
    # depth below the brain surface (negative in the CSF around it); the envelope moves when a mass pushes it
    tissue_icv = intracranial_level(coords, morph, fields.surface) < 1
    depth = ndimage.distance_transform_edt(tissue_icv, sampling=voxel).astype(np.float32)
    brain_depth = depth - np.float32((1.0 + 3.5 * a) * morph.csf_factor)
    brain = inside_fraction(brain_depth, voxel) * icv
    volume.paint(Tissue.CSF, icv.astype(np.float32))
    volume.paint(Tissue.WHITE_MATTER, brain)

    parts = Compartments.of(coords, morph)
    thickness = (3.1 - 0.7 * a) * morph.thickness_factor
    cortex = (inside_fraction(thickness - brain_depth, voxel) * parts.cerebrum
              + inside_fraction(7.0 - brain_depth, voxel) * parts.cerebellum)
    volume.paint(Tissue.GREY_MATTER, cortex * brain)
    _paint_sulci(volume, coords, morph, fields, a, thickness, brain_depth, brain, parts)
    _paint_fissures(volume, coords, morph, fields, a, thickness, brain, parts)
    _paint_folia(volume, coords, morph, fields, a, brain_depth, brain, parts)
    cx, cy, cz = (float(v) for v in morph.cerebrum_center)
    _paint_deep_grey(volume, coords, morph, cx, cy, cz)
    _paint_ventricles(volume, coords, morph, fields, a, cx, cy, cz)
    _paint_focal(volume, coords, morph, fields, age, morph.wmh_seeds, Tissue.WMH, (Tissue.WHITE_MATTER,), (1, 1.3, 1))
    veins = (slab_fraction(distance_to_zero_set(fields.vein_a, voxel), 1.4, voxel)
             * slab_fraction(distance_to_zero_set(fields.vein_b, voxel), 1.4, voxel))  # crossings of two sheets
    volume.paint(Tissue.VEIN, veins * inside_fraction(brain_depth - 2.0, voxel) * parts.cerebrum,
                 only=(Tissue.WHITE_MATTER, Tissue.GREY_MATTER))
    _paint_focal(volume, coords, morph, fields, age, morph.microbleed_seeds, Tissue.MICROBLEED,
                 (Tissue.WHITE_MATTER, Tissue.GREY_MATTER, Tissue.DEEP_GREY), (1, 1, 1))
    return a


def _paint_sulci(volume, coords, morph, fields, a, thickness, brain_depth, brain, parts):
    """Sulci (CSF lined with grey matter) on the convexity and along the interhemispheric fissure.

    Sulci are zero sets of a random field sampled on the projection onto an inner ellipsoid, so they
    run radially; they widen with age. The medial surface is folded too: depth counts from either surface.
    """
    grid, voxel = volume.grid, volume.grid.voxel_mm
    midline, above, fissure_width = _interhemispheric_fissure(coords, morph, fields, a, parts.cerebrum, voxel)
    medial_depth = np.where(above > 0.5, np.abs(midline) - np.float32(fissure_width / 2), np.float32(1e3))
    cortical_depth = np.minimum(brain_depth, medial_depth)

    center = morph.cerebrum_center
    projected = [(c0 + (c - c0) * np.float32(0.95) / np.maximum(parts.cerebrum_radius, np.float32(0.05)))
                 / np.float32(voxel) + np.float32((n - 1) / 2) for c, c0, n in zip(coords, center, grid.shape)]
    radial = ndimage.map_coordinates(fields.sulci, projected, order=1, mode="nearest")
    distance = distance_to_zero_set(radial + np.float32(0.5) * fields.sulci, voxel)
    width = (0.4 + 2.6 * a) * morph.csf_factor
    depth_limit = np.clip(12.0 + 4.0 * fields.sulcal_depth, 5.0, 20.0).astype(np.float32)
    region = brain * parts.cerebrum
    volume.paint(Tissue.GREY_MATTER, slab_fraction(distance, width + 2 * thickness, voxel)
                 * inside_fraction(depth_limit + thickness - cortical_depth, voxel) * region)
    volume.paint(Tissue.CSF, slab_fraction(distance, width, voxel)
                 * inside_fraction(depth_limit - cortical_depth, voxel) * region)
    volume.paint(Tissue.GREY_MATTER, slab_fraction(midline, fissure_width + 2 * thickness, voxel) * above * brain)
    volume.paint(Tissue.CSF, slab_fraction(midline, fissure_width, voxel) * above * brain)


def _interhemispheric_fissure(coords, morph, fields, a, cerebrum, voxel):
    """(signed distance to the fissure mid-plane, where it exists, its CSF width in mm).

    It reaches down to the corpus callosum in the middle and deeper at the frontal and occipital poles.
    """
    x, y, z = coords
    ay, az = morph.semi_axes_mm[1:]
    cy, cz = morph.cerebrum_center[1:]
    along = ((y - cy) / np.float32(0.42 * ay)) ** 2
    callosum_top = cz + np.float32(az) * (np.float32(-0.35) + np.float32(0.6) * np.exp(-along * along))
    above = inside_fraction(z - callosum_top, voxel) * cerebrum
    midline = x - np.float32(morph.midline_mm) - np.float32(1.2) * fields.surface
    return midline, above, (0.8 + 2.0 * a) * morph.csf_factor


def _paint_fissures(volume, coords, morph, fields, a, thickness, brain, parts):
    """Sylvian fissures and the tentorium."""
    voxel = volume.grid.voxel_mm
    x, y, z = coords
    ax, ay, az = morph.semi_axes_mm
    cx, cy, cz = morph.cerebrum_center
    # Sylvian fissures: an oblique sheet from the lateral surface in to the insula.
    plane = (z - cz + 0.05 * az - 0.3 * (y - cy)) / np.float32(np.sqrt(1.09)) + np.float32(4.0) * fields.surface
    lateral = (inside_fraction(np.abs(x - cx) - 0.6 * ax, voxel)
               * inside_fraction(0.35 * ay - np.abs(y - cy - 0.05 * ay), voxel)) * brain * parts.cerebrum
    width = (1.0 + 2.5 * a) * morph.csf_factor
    volume.paint(Tissue.GREY_MATTER, slab_fraction(plane, width + 2 * thickness, voxel) * lateral)
    volume.paint(Tissue.CSF, slab_fraction(plane, width, voxel) * lateral)
    # Tentorium: CSF between the occipital lobes and the cerebellum; the brainstem stays white matter.
    tentorium = (parts.cerebrum_radius - parts.cerebellum_radius) * np.float32(0.3 * az)
    near = ((parts.cerebrum_radius < 1.15) & (parts.cerebellum_radius < 1.15)) * (1 - parts.brainstem)
    volume.paint(Tissue.CSF, slab_fraction(tentorium, (1.2 + 1.5 * a) * morph.csf_factor, voxel) * near * brain)


def _paint_folia(volume, coords, morph, fields, a, brain_depth, brain, parts):
    """Cerebellar folia: thin, roughly horizontal CSF sheets in the cerebellar cortex."""
    voxel = volume.grid.voxel_mm
    _, y, z = coords
    ay, az = morph.semi_axes_mm[1:]
    cz = morph.cerebrum_center[2]
    phase = 2 * np.pi * (z - cz + 0.64 * az + 0.35 * (y + 0.56 * ay)) / FOLIA_PERIOD_MM + 2.0 * fields.folia
    distance = np.abs(np.sin(phase)) * np.float32(FOLIA_PERIOD_MM / (2 * np.pi))
    volume.paint(Tissue.CSF, slab_fraction(distance, (0.5 + 1.5 * a) * morph.csf_factor, voxel)
                 * inside_fraction(7.0 - brain_depth, voxel) * brain * parts.cerebellum)


# (centre relative to the cerebrum centre in mm for size 1, semi-axes in mm, tissue); x mirrored per hemisphere
_NUCLEI = (
    ((10, -14, 2), (8, 13, 8), Tissue.DEEP_GREY),  # thalamus
    ((13, 13, 10), (5, 10, 8), Tissue.DEEP_GREY),  # caudate head
    ((24, 3, 0), (5, 14, 9), Tissue.DEEP_GREY),  # putamen
    ((18, 1, -1), (3, 8, 5), Tissue.IRON),  # globus pallidus
    ((5, -21, -15), (2.5, 3.5, 3), Tissue.IRON),  # substantia nigra / red nucleus
)


def _paint_deep_grey(volume, coords, morph, cx, cy, cz):
    voxel = volume.grid.voxel_mm
    s = morph.size
    for hemisphere in (1, -1):
        for center, semi, tissue in _NUCLEI:
            c = (cx + hemisphere * center[0] * s, cy + center[1] * s, cz + center[2] * s)
            semi_mm = tuple(max(v * s, 0.7 * voxel) for v in semi)
            box = volume.grid.box_around(c, max(semi_mm) + 40)
            local = [v[box] for v in coords]
            volume.paint(tissue, inside_fraction(ellipsoid_distance(local, c, semi_mm), voxel), box=box)
        ax, ay, az = morph.semi_axes_mm
        dentate = (hemisphere * 0.2 * ax, -0.52 * ay, cz - 0.62 * az)
        box = volume.grid.box_around(dentate, 45)
        volume.paint(Tissue.IRON, inside_fraction(ellipsoid_distance([v[box] for v in coords], dentate,
                                                                      (max(4 * s, 0.7 * voxel), 6 * s, 4 * s)), voxel),
                     box=box)


def _paint_ventricles(volume, coords, morph, fields, a, cx, cy, cz):
    voxel = volume.grid.voxel_mm
    s = morph.size
    x, y, z = coords
    ay = morph.semi_axes_mm[1]
    scale = morph.ventricle_factor * (0.8 + 0.95 * a ** 1.4)
    wobble = np.float32(0.8) * fields.surface
    fraction = np.zeros(volume.grid.shape, dtype=np.float32)
    for hemisphere in (1, -1):
        # Lateral ventricle: a banana whose floor dips into frontal and occipital horns.
        arch = cz + s * (12.0 - 11.0 * ((y - cy + 4 * s) / (34 * s)) ** 2)
        xv = cx + hemisphere * s * (4.0 + 3.0 * scale)
        body = ellipsoid_distance((x, y, z - arch), (xv, cy - 4 * s, 0.0),
                                  (5.0 * s * scale, 31 * s * (0.92 + 0.08 * scale), 7.0 * s * scale))
        horn = ellipsoid_distance(coords, (cx + hemisphere * 27 * s, cy - 12 * s, cz - 15 * s),
                                  (2.2 * s * scale, 11 * s, 2.8 * s * scale))
        fraction = np.maximum(fraction, inside_fraction(np.maximum(body, horn) + wobble, voxel))
    third = ellipsoid_distance(coords, (cx, cy - 6 * s, cz - 2 * s), (1.3 * s * scale, 11 * s, 6.5 * s))
    fourth = ellipsoid_distance(coords, (cx, -0.42 * ay, cz - 0.58 * morph.semi_axes_mm[2]),
                                (3.5 * s * (0.8 + 0.2 * scale), 3 * s, 5 * s))
    fraction = np.maximum(fraction, inside_fraction(np.maximum(third, fourth), voxel))
    volume.paint(Tissue.VENTRICLE, fraction)


def _paint_focal(volume, coords, morph, fields, age, seeds, tissue, only, stretch):
    voxel = volume.grid.voxel_mm
    bio_age = age + morph.age_offset
    for seed in seeds:
        if bio_age < seed.onset_age:
            continue
        radius = seed.radius_mm * min(1 + (bio_age - seed.onset_age) / 15.0, 2.5)
        semi = tuple(max(radius * k, 0.6 * voxel) for k in stretch)
        center = morph.norm_to_mm(seed.center_norm)
        box = volume.grid.box_around(center, max(semi) + 35)
        local = [v[box] for v in coords]
        distance = ellipsoid_distance(local, center, semi) + np.float32(0.6) * fields.texture[box]
        volume.paint(tissue, inside_fraction(distance, voxel), box=box, only=only)
