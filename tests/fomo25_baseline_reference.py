"""The FOMO25 baseline's encoder, transcribed from its source (it is not a package: it cannot be installed).

fomo25/baseline-codebase @ d2df6d40f0baab0a07445944e1a64703acd966fa: src/models/conv_blocks/blocks.py
(ConvDropoutNormNonlin, MultiLayerConvDropoutNormNonlin; the same blocks as Yucca 2.3.7's
modules/networks/blocks_and_layers/conv_layers.py) and src/models/networks/unet.py (UNetEncoder; UNet keeps it at
`self.encoder`; unet_b = starting_filters 32, unet_xl = 64). FOMO2JOMO (jbanusco/fomo25 @ de35782) uses the very
same files for its MultiModalUNetVAE's encoder. Kept line for line where it computes; the tests compare fomo_nn's
gardening-tools-built max-pool family against it.
"""
from __future__ import annotations

from torch import nn

CONV_KWARGS = {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1, "bias": True}
NORM_KWARGS = {"eps": 1e-5, "affine": True, "momentum": 0.1}
DROPOUT_KWARGS = {"p": 0.0, "inplace": True}
NONLIN_KWARGS = {"negative_slope": 1e-2, "inplace": True}


class ConvDropoutNormNonlin(nn.Module):
    def __init__(self, input_channels, output_channels, conv_op=nn.Conv3d, conv_kwargs=CONV_KWARGS,
                 norm_op=nn.InstanceNorm3d, norm_op_kwargs=NORM_KWARGS, dropout_op=nn.Dropout3d,
                 dropout_op_kwargs=DROPOUT_KWARGS, nonlin=nn.LeakyReLU, nonlin_kwargs=NONLIN_KWARGS):
        super().__init__()
        self.conv = conv_op(input_channels, output_channels, **conv_kwargs)
        if dropout_op is not None and dropout_op_kwargs["p"] is not None and dropout_op_kwargs["p"] > 0:
            self.dropout = dropout_op(**dropout_op_kwargs)
        else:
            self.dropout = None
        self.norm = norm_op(output_channels, **norm_op_kwargs)
        self.activation = nonlin(**nonlin_kwargs)

    def forward(self, x):
        x = self.conv(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.activation(self.norm(x))


class MultiLayerConvDropoutNormNonlin(nn.Module):
    def __init__(self, input_channels, output_channels, num_layers=2, **kwargs):
        super().__init__()
        self.num_layers = num_layers
        self.conv1 = ConvDropoutNormNonlin(input_channels, output_channels, **kwargs)
        for layer in range(2, num_layers + 1):
            setattr(self, f"conv{layer}", ConvDropoutNormNonlin(output_channels, output_channels, **kwargs))

    def forward(self, x):
        x = self.conv1(x)
        for layer in range(2, self.num_layers + 1):
            x = getattr(self, f"conv{layer}")(x)
        return x


class UNetEncoder(nn.Module):
    def __init__(self, input_channels: int, starting_filters: int = 64, num_layers: int = 2):
        super().__init__()
        f = starting_filters
        self.in_conv = MultiLayerConvDropoutNormNonlin(input_channels, f, num_layers)
        self.pool1 = nn.MaxPool3d(2)
        self.encoder_conv1 = MultiLayerConvDropoutNormNonlin(f, f * 2, num_layers)
        self.pool2 = nn.MaxPool3d(2)
        self.encoder_conv2 = MultiLayerConvDropoutNormNonlin(f * 2, f * 4, num_layers)
        self.pool3 = nn.MaxPool3d(2)
        self.encoder_conv3 = MultiLayerConvDropoutNormNonlin(f * 4, f * 8, num_layers)
        self.pool4 = nn.MaxPool3d(2)
        self.encoder_conv4 = MultiLayerConvDropoutNormNonlin(f * 8, f * 16, num_layers)

    def forward(self, x):
        x0 = self.in_conv(x)
        x1 = self.encoder_conv1(self.pool1(x0))
        x2 = self.encoder_conv2(self.pool2(x1))
        x3 = self.encoder_conv3(self.pool3(x2))
        x4 = self.encoder_conv4(self.pool4(x3))
        return [x0, x1, x2, x3, x4]


class BaselineUNet(nn.Module):
    """The encoder part of the baseline's UNet (its decoder/head does not matter for an encoder import); the
    Lightning module keeps it at `self.model`, so checkpoints hold 'model.encoder.*'."""

    def __init__(self, input_channels: int = 1, starting_filters: int = 32, head_outputs: int = 2):
        super().__init__()
        self.encoder = UNetEncoder(input_channels, starting_filters)
        self.decoder = nn.Linear(starting_filters * 16, head_outputs)  # stands for the baseline's ClsRegHead

    def forward(self, x):
        return self.decoder(self.encoder(x)[-1].mean(dim=(2, 3, 4)))
