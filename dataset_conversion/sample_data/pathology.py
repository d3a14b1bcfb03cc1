"""Lesions with a learnable, realistic appearance: infarcts of every stage, lacunes, DWI-bright mimics and
meningiomas.

Infarcts sit in vascular-territory-like regions of the parenchyma and span the real size range: lacunar
infarcts are 4-20 mm across (mostly under 1 mL) while territorial infarcts reach 100 mL and more, so
lesion volumes cover three to four orders of magnitude (median of a few mL in unselected stroke
cohorts). Their signal depends on the time since onset (lesion_contrast.py); an old infarct is a
shrunken CSF-like cavity with a gliotic rim (encephalomalacia). Mimics are painted where they occur:
demyelinating plaques as periventricular / juxtacortical ovoids in white matter, vasogenic oedema in
white matter sparing the cortex, post-ictal change in the cortical ribbon. A meningioma is an
extra-axial mass on the inner skull surface: the brain is pushed away from it (a volume-preserving
radial displacement of the anatomy coordinates) while the skull, and so the skull-stripping mask, stays.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.brain import Morphology, SubjectFields, intracranial_level
from dataset_conversion.sample_data.fields import ellipsoid_distance, inside_fraction, rotation_matrix
from dataset_conversion.sample_data.lesion_contrast import (draw_infarct_severity, draw_stage, infarct_contrast,
                                                            mimic_contrast, rounded)
from dataset_conversion.sample_data.tissues import PARENCHYMA, AnatomyGrid, Layer, LayeredVolume, Tissue

if TYPE_CHECKING:  # malformation.py paints with this module's Lesion
    from dataset_conversion.sample_data.malformation import PolymicrogyriaSpec

# territory: (centre in cerebrum semi-axes for the right hemisphere, relative semi-axes, draw weight)
# Lacunar (small deep perforator) infarcts are about a quarter of ischaemic strokes; the MCA territory is
# the most often affected, posterior-circulation (PCA, cerebellar, pontine) strokes about a fifth.
TERRITORIES = {
    "MCA": ((0.6, 0.05, 0.12), (0.55, 1.0, 0.85), 0.42),
    "ACA": ((0.12, 0.35, 0.45), (0.4, 1.0, 0.6), 0.07),
    "PCA": ((0.26, -0.72, 0.02), (0.8, 1.0, 0.7), 0.13),
    "cerebellar": ((0.25, -0.58, -0.66), (0.9, 0.7, 0.75), 0.07),
    "lacunar": ((0.24, 0.02, 0.08), (0.8, 1.0, 0.9), 0.25),
    "pontine": ((0.04, -0.2, -0.5), (0.8, 1.0, 1.0), 0.06),
}
SMALL_VESSEL = ("lacunar", "pontine")
LACUNAR_DIAMETER_MM = (4.0, 20.0)  # small deep infarcts: < 20 mm on acute DWI, < 15 mm once chronic
TERRITORIAL_MEDIAN_ML, TERRITORIAL_LOG_SD, TERRITORIAL_ML = 8.0, 1.2, (0.4, 160.0)
# meningioma site: (mean direction in cerebrum semi-axes, spread, draw weight)
MENINGIOMA_SITES = {
    "convexity": ((0.7, 0.1, 0.6), 0.35, 0.45),
    "parasagittal": ((0.12, 0.1, 1.0), 0.2, 0.25),
    "sphenoid_wing": ((0.65, 0.55, -0.25), 0.12, 0.2),
    "posterior_fossa": ((0.35, -0.85, -0.5), 0.12, 0.1),
}


@dataclass(frozen=True)
class InfarctSpec:
    territory: str
    hemisphere: int  # +1 right, -1 left
    center_norm: tuple[float, float, float]
    semi_mm: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    seed: int
    stage: str = "acute"  # hyperacute / acute / subacute (restricted diffusion or shine-through) or chronic
    hours: float = 24.0  # since onset (recent stages)
    depth: float = 0.45  # ADC nadir is 1 - depth of normal
    edema: float = 0.8  # T2 / FLAIR plateau excess

    def chronic(self) -> "InfarctSpec":
        """The same infarct months later: a cavity about 60 % of the acute volume (tissue loss, shrinkage)."""
        return replace(self, stage="chronic", semi_mm=tuple(0.85 * v for v in self.semi_mm), hours=0.0)

    def contrast(self) -> dict[str, float]:
        return infarct_contrast(self.hours, self.depth, self.edema)


@dataclass(frozen=True)
class LacuneSpec:
    center_norm: tuple[float, float, float]
    radius_mm: float


@dataclass(frozen=True)
class MimicSpec:
    """A lesion that is bright on DWI or FLAIR but is not a recent infarct (see lesion_contrast.MIMICS)."""

    kind: str
    centers_norm: tuple[tuple[float, float, float], ...]
    semi_mm: tuple[tuple[float, float, float], ...]
    rotation_deg: tuple[float, float, float]
    contrast: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class MeningiomaSpec:
    site: str
    direction_norm: tuple[float, float, float]
    radius_mm: float
    edema_mm: float


@dataclass(frozen=True)
class Pathology:
    infarcts: tuple[InfarctSpec, ...] = ()  # recent ones carry their stage; chronic ones are scars
    lacunes: tuple[LacuneSpec, ...] = ()
    meningioma: MeningiomaSpec | None = None
    mimics: tuple[MimicSpec, ...] = ()
    polymicrogyria: PolymicrogyriaSpec | None = None  # FOMO26 task 5 (malformation.py); painted last

    def at_follow_up(self) -> "Pathology":
        """The pathology of a later session (months to years on): recent infarcts have become scars."""
        return replace(self, infarcts=tuple(spec if spec.stage == "chronic" else spec.chronic()
                                            for spec in self.infarcts))


@dataclass
class Lesion:
    """A painted lesion: what it is, where, and its layer (for masks on any scan grid)."""

    kind: str
    details: dict = field(default_factory=dict)
    layer: Layer | None = None


def _weighted_choice(rng, table: dict) -> str:
    names = list(table)
    weights = np.asarray([table[name][-1] for name in names], dtype=float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def infarct_volume_mm3(rng: np.random.Generator, territory: str) -> float:
    """Lesion volume: lacunar 4-20 mm across; territorial log-normal (median 8 mL, 0.4-160 mL)."""
    if territory in SMALL_VESSEL:
        diameter = float(np.exp(rng.uniform(*np.log(LACUNAR_DIAMETER_MM))))
        return float(np.pi / 6 * diameter ** 3)
    volume_ml = np.exp(rng.normal(np.log(TERRITORIAL_MEDIAN_ML), TERRITORIAL_LOG_SD))
    high = TERRITORIAL_ML[1] / 4 if territory == "cerebellar" else TERRITORIAL_ML[1]
    return float(np.clip(volume_ml, TERRITORIAL_ML[0], high) * 1000.0)


def draw_infarcts(rng: np.random.Generator, count: int, voxel_mm: float, stage: str | None = None,
                  hours: float | None = None) -> tuple[InfarctSpec, ...]:
    """`count` infarcts of one event (same stage and onset; drawn when not given), sizes drawn per lesion.

    Each is at least one voxel in semi-axis so it leaves a (faint, partial-volume) trace on its grid.
    """
    if stage is None:
        stage, hours = draw_stage(rng)
    specs = []
    for _ in range(count):
        territory = _weighted_choice(rng, TERRITORIES)
        center, aspect, _ = TERRITORIES[territory]
        center = np.asarray(center) + rng.normal(0, 0.06 if territory not in SMALL_VESSEL else 0.04, 3)
        aspect = np.asarray(aspect) * np.exp(rng.normal(0, 0.15, 3))
        volume = infarct_volume_mm3(rng, territory)
        scale = (3 * volume / (4 * np.pi * np.prod(aspect))) ** (1 / 3)
        semi = tuple(float(max(v * scale, voxel_mm)) for v in aspect)
        depth, edema = draw_infarct_severity(rng)
        specs.append(InfarctSpec(territory, 1 if rng.random() < 0.5 else -1, tuple(float(v) for v in center), semi,
                                 tuple(float(v) for v in rng.uniform(-30, 30, 3)), int(rng.integers(2 ** 31)),
                                 stage, round(float(hours if hours is not None else 0.0), 2), depth, edema))
    return tuple(specs)


def draw_chronic_infarcts(rng: np.random.Generator, count: int, voxel_mm: float) -> tuple[InfarctSpec, ...]:
    """Old infarcts (scars of a past stroke), drawn like recent ones and aged."""
    return tuple(spec.chronic() for spec in draw_infarcts(rng, count, voxel_mm, "acute", 48.0))


def draw_lacunes(rng: np.random.Generator, count: int, voxel_mm: float) -> tuple[LacuneSpec, ...]:
    specs = []
    for _ in range(count):
        center = np.array([rng.uniform(0.1, 0.35) * (1 if rng.random() < 0.5 else -1), rng.uniform(-0.3, 0.3),
                           rng.uniform(-0.05, 0.4)])
        specs.append(LacuneSpec(tuple(float(v) for v in center), float(max(rng.uniform(2.5, 6.0), 1.5 * voxel_mm))))
    return tuple(specs)


def draw_meningioma(rng: np.random.Generator, voxel_mm: float, edema_probability: float = 0.35) -> MeningiomaSpec:
    site = _weighted_choice(rng, MENINGIOMA_SITES)
    mean, spread, _ = MENINGIOMA_SITES[site]
    direction = np.asarray(mean) + rng.normal(0, spread, 3)
    direction[0] = abs(direction[0]) * (1 if rng.random() < 0.5 else -1)
    direction /= np.linalg.norm(direction)
    radius = float(np.clip(np.exp(rng.normal(np.log(15.0), 0.35)), max(7.0, 2.2 * voxel_mm), 32.0))
    edema = float(rng.uniform(4, 14)) if rng.random() < edema_probability else 0.0
    return MeningiomaSpec(site, tuple(float(v) for v in direction), radius, edema)


# periventricular plaque sites (cerebrum semi-axes, right hemisphere): frontal / occipital horns, bodies
_PLAQUE_SITES = ((0.15, 0.33, 0.27), (0.17, -0.42, 0.2), (0.23, 0.0, 0.36), (0.2, 0.18, 0.33), (0.2, -0.2, 0.33))


def draw_mimic(rng: np.random.Generator, kind: str, voxel_mm: float) -> MimicSpec:
    """One DWI/FLAIR-bright non-infarct finding of `kind` (a set of plaques for demyelination)."""
    contrast = tuple(sorted(mimic_contrast(kind, rng).items()))
    rotation = tuple(float(v) for v in rng.uniform(-40, 40, 3))
    centers, semis = [], []
    if kind == "demyelination":  # multiple sclerosis: several ovoid plaques, periventricular and juxtacortical
        for _ in range(int(rng.integers(2, 8))):
            if rng.random() < 0.6:
                center = np.asarray(_PLAQUE_SITES[int(rng.integers(len(_PLAQUE_SITES)))])
                center = center + rng.normal(0, 0.04, 3)
            else:
                direction = rng.normal(size=3)
                direction[2] = abs(direction[2]) * 0.8
                center = direction / np.linalg.norm(direction) * rng.uniform(0.45, 0.7)
            center[0] = abs(center[0]) * (1 if rng.random() < 0.5 else -1)
            long = float(rng.uniform(3.0, 9.0))
            semi = (long, 0.55 * long, 0.55 * long) if rng.random() < 0.5 else (0.55 * long, 0.55 * long, long)
            centers.append(center)
            semis.append(tuple(max(v, 0.8 * voxel_mm) for v in semi))
    elif kind == "vasogenic_edema":  # around a tumour or in PRES (parieto-occipital): lobar white matter
        if rng.random() < 0.4:
            center = np.array([rng.uniform(0.3, 0.5), rng.uniform(-0.65, -0.4), rng.uniform(0.05, 0.35)])
        else:
            direction = rng.normal(size=3)
            direction[2] = abs(direction[2]) * 0.7
            center = direction / np.linalg.norm(direction) * rng.uniform(0.35, 0.55)
        center[0] = abs(center[0]) * (1 if rng.random() < 0.5 else -1)
        centers.append(center)
        semis.append(tuple(float(v) for v in rng.uniform(10, 24, 3)))
    elif kind == "postictal":  # seizure: cortical ribbon of one (usually temporal or frontal) region
        center = np.array([rng.uniform(0.65, 0.85), rng.uniform(-0.3, 0.45), rng.uniform(-0.35, 0.35)])
        center[0] *= 1 if rng.random() < 0.5 else -1
        centers.append(center)
        semis.append(tuple(float(v) for v in rng.uniform(10, 20, 3)))
    else:
        raise ValueError(f"unknown mimic {kind!r}")
    return MimicSpec(kind, tuple(tuple(float(v) for v in c) for c in centers), tuple(semis), rotation, contrast)


@dataclass(frozen=True)
class MassPlacement:
    center_mm: np.ndarray
    radius_mm: float
    surface_point_mm: np.ndarray


def place_meningioma(spec: MeningiomaSpec, morph: Morphology, fields: SubjectFields,
                     grid: AnatomyGrid) -> MassPlacement:
    """Centre the mass just outside the inner skull surface along the spec's direction (dura-based)."""
    origin = morph.cerebrum_center.astype(np.float64)
    direction = np.asarray(spec.direction_norm) * np.asarray(morph.semi_axes_mm)
    steps = np.linspace(0.0, 1.5, 301)
    points = origin[None, :] + steps[:, None] * direction[None, :]
    surface = ndimage.map_coordinates(fields.surface, grid.to_voxel(points).T, order=1, mode="nearest")
    level = intracranial_level([points[:, i].astype(np.float32) for i in range(3)], morph, surface)
    outside = np.nonzero(level >= 1)[0]
    surface_point = points[outside[0] if outside.size else -1]
    normal = (surface_point - origin) / np.asarray(morph.semi_axes_mm) ** 2
    normal /= np.linalg.norm(normal)
    center = surface_point + 0.3 * spec.radius_mm * normal
    return MassPlacement(center.astype(np.float32), spec.radius_mm, surface_point.astype(np.float32))


def push_away(coords, placement: MassPlacement):
    """Coordinates at which to sample the unperturbed anatomy so that it makes room for the mass.

    Tissue at distance r0 from the mass centre moves to r = (r0^3 + R^3)^(1/3): volume-preserving,
    strongest next to the mass and fading with distance (midline shift for large masses).
    """
    offsets = [c - np.float32(c0) for c, c0 in zip(coords, placement.center_mm)]
    distance = np.sqrt(sum(o * o for o in offsets))
    source = np.cbrt(np.maximum(distance ** 3 - np.float32(placement.radius_mm) ** 3, 0))
    ratio = np.where(distance > 1e-6, source / np.maximum(distance, 1e-6), 0).astype(np.float32)
    return [np.float32(c0) + o * ratio for o, c0 in zip(offsets, placement.center_mm)]


def _place_infarct(volume: LayeredVolume, coords, morph: Morphology, fields: SubjectFields, spec: InfarctSpec):
    """(fraction, box, centre): the ellipsoid, moved until it lands in enough parenchyma."""
    rng = np.random.default_rng(spec.seed)
    voxel = volume.grid.voxel_mm
    rotation = rotation_matrix(spec.rotation_deg)
    expected = 4 / 3 * np.pi * np.prod(spec.semi_mm) / voxel ** 3
    roughness = np.float32(min(1.5, 0.3 * min(spec.semi_mm)))  # irregular border, never larger than the lesion
    best = None
    for attempt in range(12):
        center_norm = np.asarray(spec.center_norm) + (rng.normal(0, 0.08, 3) if attempt else 0)
        center = morph.norm_to_mm(center_norm, spec.hemisphere)
        box = volume.grid.box_around(center, max(spec.semi_mm) + 40)
        local = [v[box] for v in coords]
        distance = ellipsoid_distance(local, center, spec.semi_mm, rotation) + roughness * fields.texture[box]
        fraction = inside_fraction(distance, voxel) * np.isin(volume.labels[box], np.asarray(PARENCHYMA, np.uint8))
        hard = float(fraction.sum())
        if best is None or hard > best[0]:
            best = (hard, fraction, box, center, distance)
        if hard >= max(0.5, 0.4 * expected):
            break
    return best[1:]


def paint_infarcts(volume: LayeredVolume, coords, morph: Morphology, fields: SubjectFields,
                   specs) -> list[Lesion]:
    """Recent infarcts as stage-dependent signal changes; chronic ones as a cavity with a gliotic rim."""
    lesions = []
    voxel = volume.grid.voxel_mm
    for spec in specs:
        fraction, box, center, distance = _place_infarct(volume, coords, morph, fields, spec)
        details = {"territory": spec.territory, "hemisphere": "right" if spec.hemisphere > 0 else "left",
                   "stage": spec.stage, "center_anatomy_mm": [round(float(v), 2) for v in center]}
        if spec.stage == "chronic":
            rim = np.float32(min(2.5, 0.35 * min(spec.semi_mm)))
            volume.paint(Tissue.WMH, fraction, box=box)  # gliosis
            layer = volume.paint(Tissue.CHRONIC_INFARCT, inside_fraction(distance - rim, voxel) * (fraction > 0),
                                 box=box)
            kind = "chronic_infarct"
        else:
            contrast = spec.contrast()
            layer = volume.paint(Tissue.INFARCT, fraction, box=box, contrast=contrast)
            details.update(hours_since_onset=round(spec.hours, 1), contrast=rounded(contrast))
            kind = "infarct"
        if layer is not None:
            lesions.append(Lesion(kind, details, layer))
    return lesions


def paint_mimics(volume: LayeredVolume, coords, morph: Morphology, fields: SubjectFields, specs) -> list[Lesion]:
    """Demyelination and vasogenic oedema in white matter, post-ictal change in the cortex."""
    lesions = []
    voxel = volume.grid.voxel_mm
    only = {"demyelination": (Tissue.WHITE_MATTER, Tissue.WMH), "vasogenic_edema": (Tissue.WHITE_MATTER, Tissue.WMH),
            "postictal": (Tissue.GREY_MATTER,)}
    tissue = {"demyelination": Tissue.DEMYELINATION, "vasogenic_edema": Tissue.EDEMA, "postictal": Tissue.EDEMA}
    for spec in specs:
        contrast = dict(spec.contrast)
        rotation = rotation_matrix(spec.rotation_deg)
        for center_norm, semi in zip(spec.centers_norm, spec.semi_mm):
            center = morph.norm_to_mm(center_norm)
            box = volume.grid.box_around(center, max(semi) + 30)
            roughness = np.float32(min(2.0, 0.3 * min(semi)))
            distance = ellipsoid_distance([v[box] for v in coords], center, semi, rotation)
            distance += roughness * fields.texture[box]
            layer = volume.paint(tissue[spec.kind], inside_fraction(distance, voxel), box=box, only=only[spec.kind],
                                 contrast=contrast)
            if layer is not None:
                lesions.append(Lesion(spec.kind, {"center_anatomy_mm": [round(float(v), 2) for v in center],
                                                  "contrast": rounded(contrast)}, layer))
    return lesions


def paint_lacunes(volume: LayeredVolume, coords, morph: Morphology, specs) -> list[Lesion]:
    lesions = []
    voxel = volume.grid.voxel_mm
    for spec in specs:
        center = morph.norm_to_mm(spec.center_norm)
        box = volume.grid.box_around(center, spec.radius_mm + 40)
        distance = ellipsoid_distance([v[box] for v in coords], center, (spec.radius_mm,) * 3)
        layer = volume.paint(Tissue.CHRONIC_INFARCT, inside_fraction(distance, voxel), box=box, only=PARENCHYMA)
        if layer is not None:
            details = {"center_anatomy_mm": [round(float(v), 2) for v in center]}
            lesions.append(Lesion("lacune", details, layer))
    return lesions


def paint_meningioma(volume: LayeredVolume, true_coords, icv: np.ndarray, spec: MeningiomaSpec,
                     placement: MassPlacement, fields: SubjectFields) -> list[Lesion]:
    voxel = volume.grid.voxel_mm
    offsets = [c - np.float32(c0) for c, c0 in zip(true_coords, placement.center_mm)]
    distance = np.sqrt(sum(o * o for o in offsets))
    if spec.edema_mm > 0:
        reach = np.float32(placement.radius_mm + spec.edema_mm) + np.float32(2.0) * fields.texture
        volume.paint(Tissue.EDEMA, inside_fraction(reach - distance, voxel), only=(Tissue.WHITE_MATTER, Tissue.WMH))
    lobulated = np.float32(placement.radius_mm) * (1 + np.float32(0.07) * fields.folia)
    layer = volume.paint(Tissue.MENINGIOMA, inside_fraction(lobulated - distance, voxel) * icv)
    if layer is None:
        return []
    return [Lesion("meningioma", {"site": spec.site, "radius_mm": round(spec.radius_mm, 2),
                                  "edema_mm": round(spec.edema_mm, 2),
                                  "center_anatomy_mm": [round(float(v), 2) for v in placement.center_mm]}, layer)]
