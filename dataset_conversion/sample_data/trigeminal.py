"""FOMO26 task 4: the cerebellopontine angle on a heavily T2-weighted 3D scan, with nerve and vessel labels.

What the real data look like, and what is built here from each fact:
- Trigeminal neuralgia is imaged with a 3D heavily T2-weighted steady-state sequence (CISS / FIESTA /
  DRIVE / SPACE) at sub-millimetre isotropic resolution over the posterior fossa: bright cerebrospinal
  fluid, against which nerves and vessels stand out dark. The volume here is a posterior-fossa block
  (pons, cerebellar hemispheres with their folia, the fourth ventricle, petrous bone and clivus dark),
  not a whole head, on a voxel of 0.45-1.25 mm per size preset.
- The cisternal trigeminal nerve (CN V) is a cord of about 2-3 mm diameter and ~1 cm length running
  from the lateral pons (root entry zone) forward and outward to Meckel's cave: label 1, both sides.
- The offending vessel in classical trigeminal neuralgia is most often the superior cerebellar artery
  (SCA) looping down onto the nerve near its root entry zone; arteries show as flow voids of 1-2 mm,
  the basilar artery in front of the pons of 3-4 mm: label 2 (basilar trunk and both SCAs).
  Affected cases (`conflict`) have an SCA loop touching the nerve on the symptomatic side; in others
  the loop passes a few millimetres above it (neurovascular contact is also seen on asymptomatic sides).
- The training set is small (~40 cases; FOMO26 task 4), labels {0, 1, 2} (SEG010_FOMO26_TrigeminalNeuralgia).
Structures are painted with partial-volume weights (signed distance per voxel), so a 2.5 mm nerve on a
1.2 mm grid is two voxels thick, not a staircase; the label is the structure covering most of a voxel.
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from dataset_conversion.sample_data.acquisition import StoredImage, add_noise, bias_field, encode
from dataset_conversion.sample_data.fields import inside_fraction

NERVE, VESSEL = 1, 2
# heavily T2-weighted steady state: CSF brightest; parenchyma dark grey; nerves darker; arteries flow voids
INTENSITY = {"csf": 1.0, "pons": 0.30, "cerebellum": 0.36, "folia": 0.27, "bone": 0.03, "nerve": 0.17, "vessel": 0.04}


@dataclass(frozen=True)
class FossaGrid:
    """A RAS block centred on the pons: (0, 0, 0) mm is the pons centre."""

    shape: tuple[int, int, int]
    voxel_mm: float

    def coordinates(self) -> list[np.ndarray]:
        axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * np.float32(self.voxel_mm) for n in self.shape]
        return list(np.meshgrid(*axes, indexing="ij"))

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([self.voxel_mm] * 3 + [1.0])
        affine[:3, 3] = -self.voxel_mm * (np.asarray(self.shape) - 1) / 2
        return affine


@dataclass(frozen=True)
class Tube:
    """A cord through `points` (mm) of `radius_mm`."""

    name: str
    label: int
    points: tuple[tuple[float, float, float], ...]
    radius_mm: float


def _ellipsoid(coords, center, semi) -> np.ndarray:
    """Approximate signed distance (mm, positive inside) to an ellipsoid surface."""
    r = np.sqrt(sum(((c - c0) / s) ** 2 for c, c0, s in zip(coords, center, semi)))
    return (1 - r) * np.float32(min(semi))


def distance_to_polyline(coords, points) -> np.ndarray:
    """Distance (mm) of every voxel to a polyline."""
    best = np.full(coords[0].shape, np.inf, dtype=np.float32)
    points = np.asarray(points, dtype=np.float32)
    for a, b in zip(points[:-1], points[1:]):
        segment = b - a
        length2 = float(segment @ segment) or 1e-6
        t = sum((c - a0) * s for c, a0, s in zip(coords, a, segment)) / np.float32(length2)
        t = np.clip(t, 0, 1)
        distance2 = sum((c - (a0 + t * s)) ** 2 for c, a0, s in zip(coords, a, segment))
        best = np.minimum(best, np.sqrt(distance2))
    return best


def _curve(rng, start, end, bend_mm: float, count: int = 8) -> tuple:
    """A gently bent path from start to end (a quadratic through a displaced midpoint)."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    middle = (start + end) / 2 + rng.normal(0, bend_mm, 3)
    t = np.linspace(0, 1, count)[:, None]
    path = (1 - t) ** 2 * start + 2 * (1 - t) * t * middle + t ** 2 * end
    return tuple(tuple(round(float(v), 3) for v in p) for p in path)


@dataclass(frozen=True)
class FossaCase:
    """One subject's cerebellopontine angles: nerve and vessel cords, and which side (if any) has contact."""

    pons_semi_mm: tuple[float, float, float]
    tubes: tuple[Tube, ...]
    symptomatic_side: int  # +1 right, -1 left
    conflict: bool  # an SCA loop touches the symptomatic nerve

    def to_dict(self) -> dict:
        return {"pons_semi_mm": list(self.pons_semi_mm), "symptomatic_side": "right" if self.symptomatic_side > 0
                else "left", "neurovascular_contact": self.conflict,
                "structures": [{"name": t.name, "label": t.label, "radius_mm": t.radius_mm} for t in self.tubes]}


def draw_fossa_case(rng: np.random.Generator, conflict: bool) -> FossaCase:
    size = float(np.exp(rng.normal(0, 0.05)))
    pons = (12.5 * size, 11.0 * size, 13.0 * size)
    side = 1 if rng.random() < 0.5 else -1
    tubes = []
    nerve_paths = {}
    for s in (1, -1):
        entry = (s * pons[0] * 0.92, 3.0 + rng.normal(0, 0.8), 2.0 + rng.normal(0, 1.0))
        cave = (s * (21.0 + rng.normal(0, 1.2)), 17.0 + rng.normal(0, 1.2), 5.0 + rng.normal(0, 1.2))
        path = _curve(rng, entry, cave, 1.0)
        nerve_paths[s] = path
        tubes.append(Tube(f"trigeminal_nerve_{'right' if s > 0 else 'left'}", NERVE, path,
                          round(float(rng.uniform(1.1, 1.5)), 3)))
    basilar_x = float(rng.normal(0, 1.5))
    basilar = ((basilar_x, pons[1] + 3.0, -16.0), (basilar_x + rng.normal(0, 1.0), pons[1] + 3.5, 0.0),
               (basilar_x, pons[1] + 2.5, 12.0))
    tubes.append(Tube("basilar_artery", VESSEL, tuple(tuple(float(v) for v in p) for p in basilar),
                      round(float(rng.uniform(1.5, 2.0)), 3)))
    for s in (1, -1):
        radius = round(float(rng.uniform(0.8, 1.1)), 3)
        root = np.asarray(nerve_paths[s][1], dtype=np.float64)  # near the root entry zone, where compression is typical
        nerve_radius = next(t.radius_mm for t in tubes if t.points == nerve_paths[s])
        # the loop dips onto the nerve (its wall touching the nerve's) or passes 3-6 mm above it
        above = 0.8 * (nerve_radius + radius) if conflict and s == side else \
            nerve_radius + radius + float(rng.uniform(3.0, 6.0))
        dip = root + np.array([0.0, 0.0, above])
        points = [basilar[-1], (s * 7.0, pons[1] - 0.5, 10.0), tuple(dip), (s * (pons[0] + 4.0), -6.0, 8.0),
                  (s * (pons[0] + 10.0), -16.0, 9.0)]
        tubes.append(Tube(f"superior_cerebellar_artery_{'right' if s > 0 else 'left'}", VESSEL,
                          tuple(tuple(round(float(v), 3) for v in p) for p in points), radius))
    return FossaCase(pons, tuple(tubes), side, conflict)


@dataclass
class FossaScan:
    image: StoredImage
    labels: np.ndarray  # uint8 {0, 1, 2}, on the image grid
    affine: np.ndarray


def render_fossa(case: FossaCase, grid: FossaGrid, rng: np.random.Generator, noise_fraction: float,
                 bias_strength: float, intensity_scale: float, dtype: str, axcodes: str = "RAS") -> FossaScan:
    """Paint, add coil shading and Rician noise, store as the site does (orientation and data type)."""
    coords = grid.coordinates()
    voxel = grid.voxel_mm
    z, y, x = coords[2], coords[1], coords[0]
    layers = []  # (fraction, intensity), painted in order over CSF
    pons = inside_fraction(_ellipsoid(coords, (0, 0, 0), case.pons_semi_mm), voxel)
    medulla = inside_fraction(_ellipsoid(coords, (0, -1.0, -16), (8.5, 8.0, 12.0)), voxel)
    layers.append((np.maximum(pons, medulla), INTENSITY["pons"]))
    for s in (1, -1):
        hemisphere = inside_fraction(_ellipsoid(coords, (s * 24.0, -30.0, -4.0), (22.0, 19.0, 17.0)), voxel)
        folia = 0.5 + 0.5 * np.sin(2 * np.pi * np.sqrt((x - s * 24.0) ** 2 + (y + 30.0) ** 2 + (z + 4.0) ** 2) / 3.2)
        layers.append((hemisphere, INTENSITY["cerebellum"] * (1 - 0.25 * folia.astype(np.float32))))
    ventricle = inside_fraction(_ellipsoid(coords, (0, -case.pons_semi_mm[1] - 3.0, 1.0), (5.0, 2.5, 8.0)), voxel)
    layers.append((ventricle, INTENSITY["csf"]))
    clivus = inside_fraction(np.minimum(y - (case.pons_semi_mm[1] + 7.0), 14.0 - np.abs(x)), voxel)
    petrous = inside_fraction(np.minimum.reduce([y - 12.0 + 0.35 * (np.abs(x) - 18.0), np.abs(x) - 17.0,
                                                 1.0 - z + 0.2 * y]), voxel)
    layers.append((np.maximum(clivus, petrous), INTENSITY["bone"]))
    image = np.full(grid.shape, INTENSITY["csf"], dtype=np.float32)
    for fraction, value in layers:
        image += fraction * (np.float32(value) - image)
    coverage = np.zeros((3,) + grid.shape, dtype=np.float32)  # background, nerve, vessel shares
    for tube in case.tubes:
        fraction = inside_fraction(np.float32(tube.radius_mm) - distance_to_polyline(coords, tube.points), voxel)
        value = INTENSITY["nerve" if tube.label == NERVE else "vessel"]
        image += fraction * (np.float32(value) - image)
        coverage[tube.label] = np.maximum(coverage[tube.label], fraction)
    labels = np.where(coverage.max(axis=0) >= 0.5, coverage.argmax(axis=0), 0).astype(np.uint8)
    image *= bias_field(rng, grid.shape, bias_strength)
    noisy = add_noise(image, noise_fraction * INTENSITY["csf"], rng, magnitude=True)
    stored = noisy * np.float32(intensity_scale)
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))
    oriented = nib.orientations.apply_orientation(stored, ornt)
    labels = nib.orientations.apply_orientation(labels, ornt).astype(np.uint8)
    affine = grid.affine @ nib.orientations.inv_ornt_aff(ornt, grid.shape)
    return FossaScan(encode(np.ascontiguousarray(oriented), dtype), np.ascontiguousarray(labels), affine)
