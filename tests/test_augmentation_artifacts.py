"""MRI artifact transforms change the image the way the artifact does, and nothing else."""
import math

import numpy as np
import pytest
import torch

from fomo_nn.augmentation.bias_field import BiasFieldTransform
from fomo_nn.augmentation.gibbs_ringing import GibbsRingingTransform
from fomo_nn.augmentation.kspace_spikes import KSpaceSpikeTransform
from fomo_nn.augmentation.motion_ghosting import MotionGhostingTransform
from fomo_nn.augmentation.thick_slices import ThickSliceTransform, thick_slice_profile




N = 48


def _grid(n=N):
    return torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32)] * 3, indexing="ij"))


def _textured(n=N, seed=0):
    """Positive everywhere (no background), smooth texture plus a bright cube with sharp edges."""
    g = _grid(n)
    image = 1.0 + 0.3 * torch.sin(g[0] / 4 + seed) * torch.cos(g[1] / 6) + 0.2 * torch.cos(g[2] / 5 - seed)
    image[n // 4:n // 2, n // 3:n // 3 + 6, n // 2:n // 2 + 10] += 2.0
    return image[None].clone()


def _run(transform, seed, **sample):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return transform(**{k: v.clone() for k, v in sample.items()})


def _high_frequency_fraction(volume, cutoff=0.125):
    """Share of the (mean-free, Hann-windowed) spectral energy above `cutoff` cycles per voxel on any axis.

    The window keeps the jump between opposite faces (the FFT wraps around) from counting as detail.
    """
    windows = [torch.hann_window(n, periodic=False) for n in volume.shape]
    window = windows[0][:, None, None] * windows[1][None, :, None] * windows[2][None, None, :]
    spectrum = torch.fft.fftn((volume - volume.mean()) * window).abs() ** 2
    f = torch.stack(torch.meshgrid(*[torch.fft.fftfreq(n).abs() for n in volume.shape], indexing="ij"))
    return float(spectrum[f.amax(0) > cutoff].sum() / spectrum.sum())


# ---------------------------------------------------------------- bias field

def test_bias_field_is_smooth_positive_and_multiplicative():
    transform = BiasFieldTransform(strength=(0.3, 0.3), order=3)
    a, b = _textured(seed=0), _textured(seed=1.5)
    ratio_a = _run(transform, 7, image=a)["image"] / a
    ratio_b = _run(transform, 7, image=b)["image"] / b
    # the same field whatever the content: multiplicative
    assert torch.allclose(ratio_a, ratio_b, atol=1e-5)
    assert float(ratio_a.min()) >= math.exp(-0.3) - 1e-5 and float(ratio_a.max()) <= math.exp(0.3) + 1e-5
    assert float(ratio_a.max() / ratio_a.min()) > 1.2  # it does vary
    # smooth: the log field has (almost) no energy above 1/8 cycle per voxel, unlike the image itself
    assert _high_frequency_fraction(torch.log(ratio_a[0])) < 1e-3
    assert _high_frequency_fraction(a[0]) > 0.05


def test_bias_field_on_zscored_image_scales_from_the_lowest_value_and_keeps_background():
    image = _textured()
    image = (image - image.mean()) / image.std()  # negative values inside the head
    image[:, :6] = 0.0  # background slab
    transform = BiasFieldTransform(strength=(0.3, 0.3))
    out = _run(transform, 7, image=image)["image"]
    assert torch.all(out[:, :6] == 0)
    zero_level = float(image[:, 6:].min())
    field = (out[:, 6:] - zero_level) / (image[:, 6:] - zero_level).clamp_min(1e-6)
    plain = _run(transform, 7, image=_textured())["image"] / _textured()
    keep = (image[:, 6:] - zero_level) > 0.05  # away from the division by ~0
    assert torch.allclose(field[keep], plain[:, 6:][keep], atol=1e-3)


# ---------------------------------------------------------------- motion ghosting

def test_ghosting_adds_periodic_replicas_along_the_phase_axis_only():
    image = _textured()
    out = _run(MotionGhostingTransform(num_ghosts=(4, 4), intensity=(0.6, 0.6), axes=(1,)), 0, image=image)["image"]
    change = out - image
    shift = N // 4
    # exactly the model: x' = x - (intensity / n) sum_j roll(x, j N / n) along axis 1
    replicas = sum(torch.roll(image, j * shift, dims=2) for j in range(4))
    assert torch.allclose(change, -0.15 * replicas, atol=1e-4)
    # periodic with the ghost spacing along the phase axis, not along the others
    assert torch.allclose(change, torch.roll(change, shift, dims=2), atol=1e-4)
    for other in (1, 3):
        assert (change - torch.roll(change, shift, dims=other)).abs().max() > 0.1
    # in k-space along the phase axis only every 4th line changed
    spectrum = torch.fft.fft(change[0], dim=1).abs().pow(2).sum(dim=(0, 2))
    comb = torch.arange(N) % 4 == 0
    assert float(spectrum[~comb].sum() / spectrum.sum()) < 1e-6


def test_ghosting_axis_is_drawn_from_the_allowed_axes():
    image = _textured()
    transform = MotionGhostingTransform(num_ghosts=(3, 3), intensity=(0.5, 0.5), axes=(0, 2))
    for seed in range(6):
        change = _run(transform, seed, image=image)["image"] - image
        periodic = [bool(torch.allclose(change, torch.roll(change, N // 3, dims=d + 1), atol=1e-4)) for d in range(3)]
        assert sum(periodic) == 1 and not periodic[1]


# ---------------------------------------------------------------- Gibbs ringing

def _step_profile_image():
    """Constant along y and z; along x a step from 1 to 3 at N / 2."""
    image = torch.ones(1, N, 16, 16)
    image[:, N // 2:] = 3.0
    return image


def test_gibbs_ringing_oscillates_next_to_edges_only():
    image = _step_profile_image()
    out = _run(GibbsRingingTransform(keep_fraction=(0.5, 0.5), axes=(0,)), 0, image=image)["image"]
    change = out - image
    assert float(change.std(dim=(2, 3)).max()) < 1e-5  # nothing happens across the other axes
    profile = change[0, :, 0, 0]
    near = profile[N // 2 - 4:N // 2 + 4].abs().max()
    far = torch.cat([profile[10:15], profile[34:39]]).abs().max()
    assert near > 0.1  # overshoot of the jump of 2
    assert far < 0.3 * near
    left = profile[N // 2 - 9:N // 2]
    sign_changes = int((torch.sign(left[1:]) != torch.sign(left[:-1])).sum())
    assert sign_changes >= 2  # ringing, not a monotone blur


def test_gibbs_ringing_leaves_smooth_content_alone():
    x = torch.arange(N, dtype=torch.float32)
    smooth = (2 + torch.cos(2 * math.pi * 3 * x / N))[None, :, None, None].expand(1, N, 8, 8).clone()
    out = _run(GibbsRingingTransform(keep_fraction=(0.5, 0.5), axes=(0,)), 0, image=smooth)["image"]
    assert torch.allclose(out, smooth, atol=1e-4)


# ---------------------------------------------------------------- k-space spikes

def test_spikes_add_energy_at_a_few_kspace_locations_away_from_the_centre():
    image = _textured(32)
    out = _run(KSpaceSpikeTransform(num_spikes=(2, 2), intensity=(0.2, 0.2)), 3, image=image)["image"]
    spectrum = torch.fft.fftn(out[0] - image[0]).abs().pow(2).flatten()
    top = torch.topk(spectrum, 4)
    assert float(top.values.sum() / spectrum.sum()) > 0.999  # two spikes = two conjugate pairs of bins
    for flat in top.indices.tolist():
        index = np.unravel_index(flat, (32, 32, 32))
        frequency = [min(i, 32 - i) for i in index]
        assert max(frequency) >= 4  # at least N / 8 from the centre: stripes, not shading
    stripe = (out - image).abs().max()
    assert 0.1 * image.abs().mean() < stripe <= 2 * 0.2 * image.abs().mean() + 1e-4


def test_thick_slices_smear_one_axis_only():
    g = _grid(40)
    along_x = torch.sin(g[0] * 1.3)  # detail along axis 0 only
    smeared = thick_slice_profile(along_x, axis=0, thickness=4.0)
    assert (smeared - along_x).abs().mean() > 0.3  # the 4-voxel slab average removes a 5-voxel period
    torch.testing.assert_close(thick_slice_profile(along_x, axis=1, thickness=4.0), along_x)  # constant along 1
    smooth = 1.0 + g[0] / 40  # a linear ramp survives slab averaging and linear interpolation inside
    torch.testing.assert_close(thick_slice_profile(smooth, 0, 4.0)[4:-4], smooth[4:-4], atol=1e-4, rtol=0)
    assert torch.equal(thick_slice_profile(along_x, 0, 1.0), along_x)
    image = _textured(40)
    out = _run(ThickSliceTransform(thickness=(3.0, 3.0), axes=(2,)), 0, image=image)["image"]
    assert _high_frequency_fraction(out) < 0.85 * _high_frequency_fraction(image)
    torch.testing.assert_close(out.mean(), image.mean(), atol=0.02, rtol=0)  # blur, not a brightness change


# ---------------------------------------------------------------- shared behaviour

ALL_ARTIFACTS = {
    "bias_field": BiasFieldTransform(),
    "motion_ghosting": MotionGhostingTransform(),
    "gibbs_ringing": GibbsRingingTransform(),
    "kspace_spikes": KSpaceSpikeTransform(),
    "thick_slices": ThickSliceTransform(),
}


@pytest.mark.parametrize("name", sorted(ALL_ARTIFACTS))
def test_artifacts_keep_background_and_leave_segmentation_and_target_alone(name):
    g = _grid(32)
    head = (((g - 15.5) / torch.tensor([13.0, 14.0, 12.0])[:, None, None, None]) ** 2).sum(0) < 1
    image = (_textured(32) * head)  # zero outside the head
    image = (image - image[head[None]].mean()) * head  # z-scored-like: negatives inside, zeros outside
    seg = (g[0] > 16).to(torch.int16)[None]
    target = image.clone()
    out = _run(ALL_ARTIFACTS[name], 1, image=image, segmentation=seg, target=target)
    assert torch.all(out["image"][~head[None]] == 0)
    assert (out["image"] - image).abs().max() > 1e-3
    assert torch.equal(out["segmentation"], seg) and torch.equal(out["target"], target)


@pytest.mark.parametrize("name", sorted(ALL_ARTIFACTS))
def test_channels_get_independent_draws(name):
    image = _textured(24).repeat(2, 1, 1, 1)
    out = _run(ALL_ARTIFACTS[name], 2, image=image)["image"]
    assert not torch.allclose(out[0], out[1])


def test_empty_channel_stays_empty():
    image = torch.stack([_textured(24)[0], torch.zeros(24, 24, 24)])
    for transform in ALL_ARTIFACTS.values():
        assert torch.all(_run(transform, 0, image=image)["image"][1] == 0)
