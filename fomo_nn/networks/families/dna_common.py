"""The constructor arguments both DNA encoder families share (nnU-Net's 3D conventions)."""
from __future__ import annotations

from torch import nn

from fomo_nn.plans.records import NetworkPlan

# nnU-Net's 3D defaults: conv bias, affine instance norm, LeakyReLU(0.01).
CONV_OP = nn.Conv3d
NORM_OP = nn.InstanceNorm3d
NORM_KWARGS = {"eps": 1e-5, "affine": True}
NONLIN = nn.LeakyReLU
NONLIN_KWARGS = {"negative_slope": 1e-2, "inplace": True}
CONV_BIAS = True


def nnunet_layer_ops() -> dict:
    """The conv, norm, dropout and nonlinearity arguments of nnU-Net's 3D layers (fresh dicts: DNA stores them)."""
    return dict(conv_op=CONV_OP, conv_bias=CONV_BIAS, norm_op=NORM_OP, norm_op_kwargs=dict(NORM_KWARGS),
                dropout_op=None, dropout_op_kwargs=None, nonlin=NONLIN, nonlin_kwargs=dict(NONLIN_KWARGS))


def dna_encoder_kwargs(plan: NetworkPlan, in_channels: int) -> dict:
    return dict(
        input_channels=in_channels,
        n_stages=plan.num_stages,
        features_per_stage=list(plan.features_per_stage),
        kernel_sizes=[list(k) for k in plan.kernel_sizes],
        strides=[list(s) for s in plan.strides],
        return_skips=True,
        **nnunet_layer_ops(),
    )
