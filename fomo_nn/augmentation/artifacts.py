"""The artifact stage: our MRI artifact transforms, each firing with its plan probability `p`."""
from __future__ import annotations

from fomo_nn.augmentation.bias_field import BiasFieldTransform
from fomo_nn.augmentation.composition import Sometimes
from fomo_nn.augmentation.gibbs_ringing import GibbsRingingTransform
from fomo_nn.augmentation.kspace_spikes import KSpaceSpikeTransform
from fomo_nn.augmentation.motion_ghosting import MotionGhostingTransform
from fomo_nn.augmentation.thick_slices import ThickSliceTransform


def _bias_field(cfg):
    return BiasFieldTransform(strength=cfg["strength"], order=cfg["order"], p_per_channel=cfg["p_per_channel"])


def _motion_ghosting(cfg):
    return MotionGhostingTransform(num_ghosts=cfg["num_ghosts"], intensity=cfg["intensity"], axes=cfg["axes"],
                                   p_per_channel=cfg["p_per_channel"])


def _gibbs_ringing(cfg):
    return GibbsRingingTransform(keep_fraction=cfg["keep_fraction"], axes=cfg["axes"],
                                 p_per_channel=cfg["p_per_channel"])


def _kspace_spikes(cfg):
    return KSpaceSpikeTransform(num_spikes=cfg["num_spikes"], intensity=cfg["intensity"],
                                p_per_channel=cfg["p_per_channel"])


def _thick_slices(cfg):
    return ThickSliceTransform(thickness=cfg["thickness"], axes=cfg["axes"], p_per_channel=cfg["p_per_channel"])


ARTIFACT_BUILDERS = {
    "thick_slices": _thick_slices,
    "bias_field": _bias_field,
    "motion_ghosting": _motion_ghosting,
    "gibbs_ringing": _gibbs_ringing,
    "kspace_spikes": _kspace_spikes,
}


def build_artifact_transforms(artifacts: dict) -> list[Sometimes]:
    return [Sometimes(build(artifacts[name]), artifacts[name]["p"], name)
            for name, build in ARTIFACT_BUILDERS.items() if artifacts[name]["p"] > 0]
