"""Lesions with a learnable appearance: acute infarcts, chronic lacunes and meningiomas.

Infarcts sit in vascular-territory-like regions of the parenchyma. A meningioma is an extra-axial
mass on the inner skull surface: the brain is pushed away from it (a volume-preserving radial
displacement of the anatomy coordinates) while the skull, and so the skull-stripping mask, stays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from dataset_conversion.sample_data.brain import Morphology, SubjectFields, intracranial_level
from dataset_conversion.sample_data.fields import ellipsoid_distance, inside_fraction, rotation_matrix
from dataset_conversion.sample_data.tissues import PARENCHYMA, AnatomyGrid, Layer, LayeredVolume, Tissue

# territory: (centre in cerebrum semi-axes for the right hemisphere, typical semi-axes in mm, draw weight)
TERRITORIES = {
    "MCA": ((0.6, 0.05, 0.12), (9.0, 16.0, 14.0), 0.5),
    "ACA": ((0.12, 0.35, 0.45), (7.0, 18.0, 10.0), 0.15),
    "PCA": ((0.26, -0.72, 0.02), (10.0, 12.0, 10.0), 0.2),
    "lacunar": ((0.24, 0.02, 0.08), (4.0, 5.0, 4.0), 0.15),
}
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


@dataclass(frozen=True)
class LacuneSpec:
    center_norm: tuple[float, float, float]
    radius_mm: float


@dataclass(frozen=True)
class MeningiomaSpec:
    site: str
    direction_norm: tuple[float, float, float]
    radius_mm: float
    edema_mm: float


@dataclass(frozen=True)
class Pathology:
    infarcts: tuple[InfarctSpec, ...] = ()
    lacunes: tuple[LacuneSpec, ...] = ()
    meningioma: MeningiomaSpec | None = None


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


def draw_infarcts(rng: np.random.Generator, count: int, voxel_mm: float) -> tuple[InfarctSpec, ...]:
    """`count` acute infarcts, each at least ~2 voxels across so it survives the coarsest grid."""
    specs = []
    for _ in range(count):
        territory = _weighted_choice(rng, TERRITORIES)
        center, semi, _ = TERRITORIES[territory]
        center = np.asarray(center) + rng.normal(0, 0.06, 3)
        scale = np.exp(rng.normal(0, 0.3))
        semi = tuple(float(max(v * scale * np.exp(rng.normal(0, 0.15)), 1.8 * voxel_mm)) for v in semi)
        specs.append(InfarctSpec(territory, 1 if rng.random() < 0.5 else -1, tuple(float(v) for v in center), semi,
                                 tuple(float(v) for v in rng.uniform(-30, 30, 3)), int(rng.integers(2 ** 31))))
    return tuple(specs)


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


def paint_infarcts(volume: LayeredVolume, coords, morph: Morphology, fields: SubjectFields,
                   specs) -> list[Lesion]:
    lesions = []
    voxel = volume.grid.voxel_mm
    for spec in specs:
        rng = np.random.default_rng(spec.seed)
        rotation = rotation_matrix(spec.rotation_deg)
        expected = 4 / 3 * np.pi * np.prod(spec.semi_mm) / voxel ** 3
        best = None
        for attempt in range(12):  # move the centre until it lands in enough parenchyma
            center_norm = np.asarray(spec.center_norm) + (rng.normal(0, 0.08, 3) if attempt else 0)
            center = morph.norm_to_mm(center_norm, spec.hemisphere)
            box = volume.grid.box_around(center, max(spec.semi_mm) + 40)
            local = [v[box] for v in coords]
            distance = ellipsoid_distance(local, center, spec.semi_mm, rotation) + np.float32(1.5) * fields.texture[box]
            fraction = inside_fraction(distance, voxel) * np.isin(volume.labels[box], np.asarray(PARENCHYMA, np.uint8))
            hard = int((fraction >= 0.5).sum())
            if best is None or hard > best[0]:
                best = (hard, fraction, box, center)
            if hard >= max(3, 0.35 * expected):
                break
        _, fraction, box, center = best
        layer = volume.paint(Tissue.INFARCT, fraction, box=box)
        if layer is not None:
            lesions.append(Lesion("infarct", {"territory": spec.territory,
                                         "hemisphere": "right" if spec.hemisphere > 0 else "left",
                                         "center_anatomy_mm": [round(float(v), 2) for v in center]}, layer))
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
            lesions.append(Lesion("chronic_infarct", details, layer))
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
