import math

import numpy as np
import pytest
import torch
from torch import nn

from fomo_nn.inference.case_prediction import TargetNormalization, predict_preprocessed
from fomo_nn.inference.sliding_window import (
    gaussian_importance,
    mirror_sets,
    sliding_window_dense,
    sliding_window_tiles,
    tile_corners,
    tile_starts,
)
from preprocessed_builders import tiny_plans


def identity_net(channels: int) -> nn.Module:
    """A 3x3x3 conv whose kernel is a centred delta: output == input (with zero padding)."""
    conv = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(channels):
            conv.weight[c, c, 1, 1, 1] = 1.0
    return conv


class CountingNet(nn.Module):
    """Records the batch size of every forward call."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.batch_sizes: list[int] = []

    def forward(self, x):
        self.batch_sizes.append(x.shape[0])
        return self.inner(x)


def test_tile_starts_cover_the_volume_with_bounded_gaps():
    for size, patch in [(100, 32), (64, 32), (33, 32), (32, 32), (20, 32)]:
        starts = tile_starts(size, patch, 0.5)
        assert starts[0] == 0
        assert starts[-1] == max(size - patch, 0)
        assert all(0 < b - a <= 16 for a, b in zip(starts, starts[1:]))
    assert tile_starts(100, 32, 0.5) == [0, 14, 27, 41, 54, 68]
    with pytest.raises(ValueError, match="step"):
        tile_corners((40, 40, 40), (16, 16, 16), 0.0)


def test_gaussian_importance_peaks_in_the_centre_and_is_never_zero():
    weights = gaussian_importance((16, 20, 9))
    assert weights.shape == (16, 20, 9)
    assert float(weights.max()) == pytest.approx(1.0)
    assert float(weights.min()) > 0
    assert torch.allclose(weights, torch.flip(weights, (0, 1, 2)))
    assert float(weights[8, 10, 4]) > float(weights[0, 10, 4]) > 0


def test_gaussian_weighted_identity_network_returns_the_input():
    data = np.random.default_rng(0).normal(size=(2, 40, 37, 45)).astype(np.float32)
    result = sliding_window_dense(identity_net(2), data, (16, 16, 16), num_outputs=2, step=0.5)
    assert result.shape == data.shape
    np.testing.assert_allclose(result.numpy(), data, atol=1e-5)


def test_volume_smaller_than_the_patch_is_padded_and_cropped_back():
    data = np.random.default_rng(1).normal(size=(1, 10, 20, 12)).astype(np.float32)
    net = CountingNet(identity_net(1))
    result = sliding_window_dense(net, data, (16, 16, 16), num_outputs=1)
    assert result.shape == data.shape
    np.testing.assert_allclose(result.numpy(), data, atol=1e-5)
    assert net.batch_sizes == [2]  # one tile along x and z, two along y (20 > 16)


def test_tiles_are_predicted_in_batches():
    data = np.random.default_rng(2).normal(size=(1, 40, 40, 40)).astype(np.float32)
    net = CountingNet(identity_net(1))
    sliding_window_dense(net, data, (16, 16, 16), num_outputs=1, step=0.5, batch_size=5)
    tiles = len(tile_corners((40, 40, 40), (16, 16, 16), 0.5))
    assert tiles == 4 ** 3
    assert net.batch_sizes == [5] * (tiles // 5) + [tiles % 5]
    assert len(net.batch_sizes) == math.ceil(tiles / 5)


def _symmetric_kernel(seed: int) -> torch.Tensor:
    kernel = torch.randn(1, 1, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    return sum(torch.flip(kernel, axes) for axes in mirror_sets(True)) / 8


def test_mirroring_tta_of_a_flip_equivariant_network_equals_no_tta():
    conv = nn.Conv3d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(_symmetric_kernel(3))
    equivariant = nn.Sequential(conv, nn.Tanh())
    data = np.random.default_rng(3).normal(size=(1, 24, 30, 20)).astype(np.float32)
    plain = sliding_window_dense(equivariant, data, (16, 16, 16), 1, mirror=False)
    counting = CountingNet(equivariant)
    mirrored = sliding_window_dense(counting, data, (16, 16, 16), 1, mirror=True)
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=1e-5)
    assert len(tile_corners((24, 30, 20), (16, 16, 16), 0.5)) == 12
    assert counting.batch_sizes == [12] * 8  # one batch of all 12 tiles per flip

    # a network that is not flip-equivariant: mirroring changes the result, so it really happens
    skewed = nn.Conv3d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        skewed.weight.zero_()
        skewed.weight[0, 0, 2, 1, 1] = 1.0  # a shift along x
    assert not torch.allclose(sliding_window_dense(skewed, data, (16, 16, 16), 1, mirror=True),
                              sliding_window_dense(skewed, data, (16, 16, 16), 1, mirror=False), atol=1e-3)


def test_empty_tiles_are_skipped_for_image_level_outputs():
    data = np.zeros((1, 48, 16, 16), dtype=np.float32)
    data[:, :16] = 1.0  # only the first third holds signal
    mean_net = nn.Sequential(nn.Flatten(), nn.Linear(16 ** 3, 1))
    outputs, corners = sliding_window_tiles(mean_net, data, (16, 16, 16), step=0.5)
    assert [c[0] for c in corners] == [0, 8]  # tiles starting at 16, 24, 32 hold only zeros
    assert outputs.shape == (2, 1)
    everything, all_corners = sliding_window_tiles(mean_net, data, (16, 16, 16), step=0.5, skip_empty=False)
    assert len(all_corners) == 5


class ConstantHead(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.values.expand(x.shape[0], -1) * self.scale


def test_case_prediction_per_task():
    data = np.random.default_rng(4).normal(size=(1, 20, 24, 20)).astype(np.float32)
    seg_plans = tiny_plans("segmentation", ["flair"], patch=(16, 16, 16))
    two_class_identity = nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        two_class_identity.weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1))
        two_class_identity.bias.zero_()
    probabilities = predict_preprocessed(two_class_identity, data, seg_plans)
    assert probabilities.shape == (2, 20, 24, 20)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities[1], 1 / (1 + np.exp(-data[0])), atol=1e-5)  # softmax of (0, x)

    cls_plans = tiny_plans("classification", ["flair"], patch=(32, 32, 32))
    probs = predict_preprocessed(ConstantHead([0.0, math.log(3.0)]), data, cls_plans)
    np.testing.assert_allclose(probs, [0.25, 0.75], atol=1e-6)

    reg_plans = tiny_plans("regression", ["t1"], patch=(16, 16, 16))
    age = predict_preprocessed(ConstantHead([0.5]), data, reg_plans,
                               target_normalization=TargetNormalization(mean=50.0, std=20.0))
    assert isinstance(age, float) and age == pytest.approx(60.0)
    with pytest.raises(ValueError, match="normalization"):
        predict_preprocessed(ConstantHead([0.5]), data, reg_plans)
    with pytest.raises(ValueError, match="channels"):
        predict_preprocessed(ConstantHead([0.5]), data[:, None], reg_plans)


def test_whole_volume_pass_when_the_volume_fits_the_patch():
    data = np.random.default_rng(5).normal(size=(1, 20, 24, 20)).astype(np.float32)
    plans = tiny_plans("classification", ["flair"], patch=(32, 32, 32))
    torch.manual_seed(0)
    net = CountingNet(nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten()))
    probs = predict_preprocessed(net, data, plans)
    assert net.batch_sizes == [1]
    padded = torch.nn.functional.pad(torch.from_numpy(data), (6, 6, 4, 4, 6, 6))[None]
    with torch.no_grad():
        expected = torch.softmax(net.inner(padded), 1)[0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)
