"""Named NetworkPlans of the published foundation models' encoders (what their checkpoints need).

- resenc_l: nnssl's ResEnc-L (MIC-DKFZ/nnssl, OpenMind/SSL3D checkpoints), DNA ResidualEncoder.
- resenc_b: asparagus' resenc_unet_b (Sllambias/asparagus 338450b; AMAES on FOMO300K), gardening-tools
  ResidualUNetEncoder. Same topology as resenc_l, other blocks (see residual_unet_encoder.py).
- unet_b / unet_xl: the FOMO25 baseline's max-pool U-Nets (fomo25/baseline-codebase d2df6d4,
  models/networks/unet.py: starting_filters 32 / 64), also asparagus' unet_b / unet_m.
"""
from __future__ import annotations

import dataclasses

from fomo_nn.plans.records import NetworkPlan

_RESENC = dict(features_per_stage=[32, 64, 128, 256, 320, 320], kernel_sizes=[[3, 3, 3]] * 6,
               strides=[[1, 1, 1]] + [[2, 2, 2]] * 5, n_conv_per_stage=[1, 3, 4, 6, 6, 6],
               n_conv_per_stage_decoder=[1] * 5)


def _unet(base: int) -> dict:
    return dict(encoder="maxpool_unet", features_per_stage=[base * 2 ** i for i in range(5)],
                kernel_sizes=[[3, 3, 3]] * 5, strides=[[1, 1, 1]] + [[2, 2, 2]] * 4, n_conv_per_stage=[2] * 5,
                n_conv_per_stage_decoder=[2] * 4)


PRESETS: dict[str, dict] = {
    "resenc_l": dict(encoder="residual", **_RESENC),
    "resenc_b": dict(encoder="residual_unet_encoder", **_RESENC),
    "unet_b": _unet(32),
    "unet_xl": _unet(64),
}
PRESET_NAMES = tuple(PRESETS)


def network_preset(name: str, input_channels: int = 1, **changes) -> NetworkPlan:
    """The NetworkPlan of preset `name` (e.g. changes: features_per_stage for a tiny test network)."""
    if name not in PRESETS:
        raise ValueError(f"unknown network preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    plan = NetworkPlan(input_channels=input_channels, **PRESETS[name])
    return dataclasses.replace(plan, **changes) if changes else plan
