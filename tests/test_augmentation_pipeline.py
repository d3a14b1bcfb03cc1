"""Whole pipelines: each transform fires with its plan probability, runs reproducibly (also pickled into a
worker process), and the preview grid gets written."""
import multiprocessing
import pickle

import matplotlib.image
import numpy as np
import pytest
import torch

from fomo_nn.augmentation import build_augmentation_pipeline, default_augmentation_plan, initial_patch_size
from fomo_nn.augmentation.preview import render_augmentation_preview




PATCH = (24, 24, 24)

# inner probabilities at 1 and ranges that never give the identity, so "fired" == "image changed"
ALWAYS_VISIBLE = {
    "intensity": {
        "gaussian_noise": {"variance": [0.05, 0.1]},
        "gaussian_blur": {"sigma": [0.5, 1.0], "p_per_channel": 1.0},
        "multiplicative_noise": {"sigma": [0.05, 0.1]},
        "brightness": {"range": [0.75, 1.25]},
        "contrast": {"range": [0.75, 1.25]},
        "low_resolution": {"scale": [0.5, 0.7], "p_per_channel": 1.0},
        "gamma": {"range": [0.7, 1.5]},
    },
    "artifacts": {
        "bias_field": {}, "motion_ghosting": {}, "gibbs_ringing": {"keep_fraction": [0.3, 0.6]}, "kspace_spikes": {},
    },
}
TRANSFORMS = [(section, name) for section, names in ALWAYS_VISIBLE.items() for name in names]


def _seed(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def _volume(shape=PATCH, channels=1):
    g = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij"))
    head = (g ** 2).sum(0) < 0.8
    image = (torch.sin(3 * g[0]) + torch.cos(4 * g[1] * g[2]) + 0.5 * (g[0] > 0.2)) * head
    return image[None].repeat(channels, 1, 1, 1).float()


def _fraction_changed(section, name, p, calls):
    plan = {section: {name: dict(ALWAYS_VISIBLE[section][name], p=p)}}
    pipeline = build_augmentation_pipeline(plan, PATCH)
    image = _volume()
    _seed(11)
    return float(np.mean([not torch.equal(pipeline(image=image.clone())["image"], image) for _ in range(calls)]))


@pytest.mark.parametrize("section, name", TRANSFORMS)
def test_probability_is_respected(section, name):
    assert _fraction_changed(section, name, 0.0, 20) == 0.0
    assert _fraction_changed(section, name, 1.0, 40) == 1.0
    assert abs(_fraction_changed(section, name, 0.3, 500) - 0.3) < 0.07


@pytest.mark.parametrize("section, name", TRANSFORMS)
def test_image_only_transforms_leave_segmentation_and_target(section, name):
    plan = {section: {name: dict(ALWAYS_VISIBLE[section][name], p=1.0)}}
    image = _volume()
    seg = (image > 0.3).to(torch.int16)
    out = build_augmentation_pipeline(plan, PATCH)(image=image.clone(), segmentation=seg.clone(),
                                                   target=image.clone())
    assert torch.equal(out["segmentation"], seg) and torch.equal(out["target"], image)
    assert not torch.equal(out["image"], image)


def _full_plan():
    plan = default_augmentation_plan("pretraining_reconstruction")
    for section in ("intensity", "artifacts"):
        for cfg in plan[section].values():
            cfg["p"] = max(cfg["p"], 0.5)
    return plan


def _augment_with_seed(pipeline, image, seed):
    torch.set_num_threads(1)
    _seed(seed)
    out = pipeline(image=image.clone())
    return out["image"], out["target"]


def test_same_seed_same_sample_also_after_pickling_and_in_a_worker_process():
    plan = _full_plan()
    pipeline = build_augmentation_pipeline(plan, PATCH)
    image = _volume(initial_patch_size(PATCH, plan), channels=2)
    first = [_augment_with_seed(pipeline, image, seed) for seed in range(4)]
    again = [_augment_with_seed(pipeline, image, seed) for seed in range(4)]
    for (a_img, a_tgt), (b_img, b_tgt) in zip(first, again):
        assert torch.equal(a_img, b_img) and torch.equal(a_tgt, b_tgt)
    assert not torch.equal(first[0][0], first[1][0])  # different seeds, different samples

    unpickled = pickle.loads(pickle.dumps(pipeline))
    assert torch.equal(_augment_with_seed(unpickled, image, 2)[0], first[2][0])

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        remote = pool.starmap(_augment_with_seed, [(pipeline, image, seed) for seed in range(4)])
    for (r_img, r_tgt), (a_img, a_tgt) in zip(remote, first):
        assert torch.equal(r_img, a_img) and torch.equal(r_tgt, a_tgt)


def test_preview_png_has_a_row_per_pipeline_and_a_column_per_sample(tmp_path):
    volume = _volume((40, 44, 36))[0].numpy()
    seg = (volume > 1.0).astype(np.int16)
    out = render_augmentation_preview(volume, default_augmentation_plan("segmentation"), (32, 32, 32),
                                      str(tmp_path / "sub" / "preview.png"), seed=1, n_samples=3, segmentation=seg)
    picture = matplotlib.image.imread(out)
    height, width = picture.shape[:2]
    assert abs(width / height - (3 * 3.4) / (5 * 2.3)) < 0.05
    assert picture[..., :3].std() > 0.1  # not blank


def test_preview_refuses_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        render_augmentation_preview(np.zeros((4, 4)), {}, (4, 4, 4), str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="segmentation shape"):
        render_augmentation_preview(np.zeros((8, 8, 8)), {}, (4, 4, 4), str(tmp_path / "x.png"),
                                    segmentation=np.zeros((8, 8, 7)))
