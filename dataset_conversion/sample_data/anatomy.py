"""One session's anatomy: a subject's morphology at a given age, with or without pathology."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataset_conversion.sample_data.artifacts import air_interfaces
from dataset_conversion.sample_data.brain import Morphology, SubjectFields, intracranial_level, paint_healthy_brain
from dataset_conversion.sample_data.malformation import paint_polymicrogyria
from dataset_conversion.sample_data.pathology import (Lesion, Pathology, paint_infarcts, paint_lacunes,
                                                      paint_meningioma, paint_mimics, place_meningioma, push_away)
from dataset_conversion.sample_data.tissues import AnatomyGrid, Layer, LayeredVolume, Tissue


@dataclass
class Anatomy:
    grid: AnatomyGrid
    age: float
    layers: list[Layer]
    labels: np.ndarray  # majority tissue per voxel (uint8, Tissue values)
    icv: np.ndarray  # intracranial mask: what skull stripping keeps
    texture: np.ndarray  # multiplicative tissue texture (about 1)
    lesions: list[Lesion]
    atrophy: float
    air_interfaces: tuple = ()  # air-cavity centres (anatomy mm) and weights, for susceptibility artifacts

    def volumes_mm3(self) -> dict[str, float]:
        """Tissue volumes; ventricles from their partial-volume weights (accurate on coarse grids)."""
        voxel3 = self.grid.voxel_mm ** 3
        counts = np.bincount(self.labels.ravel(), minlength=len(Tissue))
        volumes = {tissue.name.lower(): float(counts[tissue]) * voxel3 for tissue in Tissue if tissue}
        ventricles = [layer for layer in self.layers if layer.tissue == Tissue.VENTRICLE]
        volumes["ventricle"] = sum(layer.volume_mm3(self.grid.voxel_mm) for layer in ventricles)
        volumes["intracranial"] = float(self.icv.sum()) * voxel3
        brain = [Tissue.CSF, Tissue.VENTRICLE, Tissue.BACKGROUND, Tissue.MENINGIOMA]
        volumes["brain"] = float(np.isin(self.labels, brain, invert=True).sum()) * voxel3
        return volumes


def build_anatomy(morph: Morphology, age: float, grid: AnatomyGrid, pathology: Pathology | None = None,
                  fields: SubjectFields | None = None) -> Anatomy:
    """Paint the brain of `morph` at `age`; pass `fields` to reuse them across a subject's sessions."""
    pathology = pathology or Pathology()
    fields = fields or SubjectFields.generate(morph.field_seed, grid)
    true_coords = grid.coordinates()
    icv = intracranial_level(true_coords, morph, fields.surface) < 1
    coords = true_coords
    placement = None
    if pathology.meningioma is not None:
        placement = place_meningioma(pathology.meningioma, morph, fields, grid)
        coords = push_away(true_coords, placement)
    volume = LayeredVolume(grid)
    atrophy = paint_healthy_brain(volume, coords, icv, morph, age, fields)
    lesions = paint_lacunes(volume, coords, morph, pathology.lacunes)
    order = sorted(pathology.infarcts, key=lambda spec: spec.stage != "chronic")  # old scars first
    lesions += paint_infarcts(volume, coords, morph, fields, order)
    lesions += paint_mimics(volume, coords, morph, fields, pathology.mimics)
    if placement is not None:
        lesions += paint_meningioma(volume, true_coords, icv, pathology.meningioma, placement, fields)
    if pathology.polymicrogyria is not None:
        lesions += paint_polymicrogyria(volume, coords, morph, fields, pathology.polymicrogyria, atrophy)
    texture = (1 + np.float32(0.035) * fields.texture).astype(np.float32)
    return Anatomy(grid, float(age), volume.layers, volume.labels, icv, texture, lesions, atrophy,
                   air_interfaces(morph))
