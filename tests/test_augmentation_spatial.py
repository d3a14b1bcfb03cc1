"""Spatial stage: image and mask stay aligned, labels stay labels, probabilities hold, target follows."""
import numpy as np
import pytest
import torch

from fomo_nn.augmentation import (build_augmentation_pipeline, build_augmentation_stages, build_validation_pipeline,
                                  initial_patch_size)




PATCH = (32, 32, 32)


def _seed(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def _phantom(shape, labels=(1,)):
    """Off-centre ellipsoid (label 1) and box (label 2); image = mask + smooth texture in [0, 0.3]."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"))
    centre = np.asarray(shape) * np.array([0.42, 0.55, 0.5])
    radii = np.array([9.0, 6.0, 7.0])
    seg = np.zeros(shape, np.int16)
    seg[(((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1] = labels[0]
    if len(labels) > 1:
        lo = (np.asarray(shape) * 0.55).astype(int)
        seg[lo[0]:lo[0] + 6, lo[1] - 10:lo[1] - 4, lo[2]:lo[2] + 7] = labels[1]
    texture = 0.15 * (1 + np.sin(grid[0] / 5.0) * np.cos(grid[1] / 7.0 + grid[2] / 9.0))
    image = (seg > 0) + texture
    return torch.from_numpy(image[None].astype(np.float32)), torch.from_numpy(seg[None])


def _dice(a, b):
    a, b = a.bool(), b.bool()
    return 2 * (a & b).sum().item() / max(a.sum().item() + b.sum().item(), 1)


SPATIAL_CASES = {
    "rotation": {"rotation": {"p": 1.0, "max_degrees": 30}},
    "scaling": {"scaling": {"p": 1.0, "range": [0.7, 1.4], "synchronize_axes": False}},
    "elastic": {"elastic": {"p": 1.0, "scale": [0.1, 0.2], "magnitude": [2.0, 4.0]}},
    "mirror": {"mirror": {"p": 1.0, "axes": [0, 1, 2]}},
    "everything_random_crop": {"random_crop": True, "rotation": {"p": 1.0}, "scaling": {"p": 1.0},
                               "elastic": {"p": 1.0}, "mirror": {"p": 0.5}},
}


@pytest.mark.parametrize("case", sorted(SPATIAL_CASES))
def test_image_and_mask_stay_aligned(case):
    plan = {"spatial": SPATIAL_CASES[case]}
    read = initial_patch_size(PATCH, plan)
    image, seg = _phantom(read)
    pipeline = build_augmentation_pipeline(plan, PATCH, is_segmentation=True)
    reference = build_validation_pipeline(PATCH)(image=image.clone(), segmentation=seg.clone())
    for seed in range(4):
        _seed(seed)
        out = pipeline(image=image.clone(), segmentation=seg.clone())
        assert out["image"].shape == out["segmentation"].shape == (1, *PATCH)
        assert _dice(out["segmentation"] > 0, out["image"] > 0.65) > 0.95
        assert not torch.equal(out["segmentation"], reference["segmentation"])  # it did move


def test_segmentation_values_stay_in_the_label_set():
    plan = {"spatial": {"rotation": {"p": 1.0}, "scaling": {"p": 1.0}, "elastic": {"p": 1.0}, "mirror": {"p": 0.5}}}
    read = initial_patch_size(PATCH, plan)
    image, seg = _phantom(read, labels=(3, 7))
    pipeline = build_augmentation_pipeline(plan, PATCH, is_segmentation=True)
    for seed in range(5):
        _seed(seed)
        out = pipeline(image=image.clone(), segmentation=seg.clone())
        values = set(torch.unique(out["segmentation"]).tolist())
        assert values <= {0, 3, 7} and {3, 7} <= values
        assert out["segmentation"].dtype == seg.dtype


def test_segmentation_pipeline_refuses_a_sample_without_mask():
    pipeline = build_augmentation_pipeline({}, PATCH, is_segmentation=True)
    with pytest.raises(ValueError, match="segmentation"):
        pipeline(image=torch.zeros(1, *PATCH))


def _fraction_changed(plan, calls, read=None):
    read = read or initial_patch_size(PATCH, plan)
    image, _ = _phantom(read)
    pipeline = build_augmentation_pipeline(plan, PATCH)
    reference = build_validation_pipeline(PATCH)(image=image.clone())["image"]
    _seed(123)
    changed = [not torch.equal(pipeline(image=image.clone())["image"], reference) for _ in range(calls)]
    return float(np.mean(changed))


@pytest.mark.parametrize("name", ["rotation", "scaling", "elastic"])
def test_spatial_probabilities(name):
    assert _fraction_changed({"spatial": {name: {"p": 0.0}}}, 30) == 0.0
    assert _fraction_changed({"spatial": {name: {"p": 1.0}}}, 30) == 1.0
    assert abs(_fraction_changed({"spatial": {name: {"p": 0.3}}}, 500) - 0.3) < 0.07


def test_mirror_probability_is_per_axis():
    assert _fraction_changed({"spatial": {"mirror": {"p": 0.0, "axes": [0]}}}, 30) == 0.0
    assert _fraction_changed({"spatial": {"mirror": {"p": 1.0, "axes": [0]}}}, 30) == 1.0
    assert abs(_fraction_changed({"spatial": {"mirror": {"p": 0.3, "axes": [0]}}}, 500) - 0.3) < 0.07
    # two axes: at least one flipped with probability 1 - 0.7^2 = 0.51
    assert abs(_fraction_changed({"spatial": {"mirror": {"p": 0.3, "axes": [0, 1]}}}, 500) - 0.51) < 0.07


def test_target_is_transformed_with_the_image():
    plan = {"spatial": {"rotation": {"p": 1.0}, "elastic": {"p": 1.0}, "mirror": {"p": 0.5}}}
    read = initial_patch_size(PATCH, plan)
    image, seg = _phantom(read)
    _seed(5)
    out = build_augmentation_pipeline(plan, PATCH)(image=image.clone(), target=2 * image, segmentation=seg)
    assert torch.allclose(out["target"], 2 * out["image"], atol=1e-5)
    assert "regression_target" not in out


def test_keep_clean_target_is_the_spatially_transformed_clean_image():
    everything = {"spatial": {"rotation": {"p": 1.0}, "scaling": {"p": 1.0}, "mirror": {"p": 0.5}},
                  "intensity": {name: {"p": 1.0} for name in ("gaussian_noise", "gaussian_blur", "multiplicative_noise",
                                                            "brightness", "contrast", "low_resolution", "gamma")},
                  "artifacts": {name: {"p": 1.0} for name in ("bias_field", "motion_ghosting", "gibbs_ringing",
                                                            "kspace_spikes")},
                  "keep_clean_target": True}
    read = initial_patch_size(PATCH, everything)
    image, _ = _phantom(read)
    stages = build_augmentation_stages(everything, PATCH)
    for seed in range(3):
        _seed(seed)
        out = stages.compose()(image=image.clone())
        _seed(seed)
        spatial_only = stages.spatial(image=image.clone())["image"]
        assert torch.equal(out["target"], spatial_only)
        assert (out["image"] - out["target"]).abs().mean() > 0.01  # the input was corrupted, the target not


def test_validation_pipeline_centre_crops_and_pads():
    image = torch.arange(40 * 36 * 20, dtype=torch.float32).reshape(1, 40, 36, 20)
    out = build_validation_pipeline((32, 32, 32))(image=image.clone())["image"]
    assert out.shape == (1, 32, 32, 32)
    assert torch.equal(out[0, :, :, 6:26], image[0, 4:36, 2:34, :])
    assert float(out[0, :, :, :6].abs().max()) == 0.0
    same = build_validation_pipeline(None)(image=image.clone())["image"]
    assert torch.equal(same, image)


def test_cropping_to_the_sampled_box_gives_the_library_result():
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from fomo_nn.augmentation.plan import resolve_augmentation_plan
    from fomo_nn.augmentation.spatial import build_spatial_transform

    plan = resolve_augmentation_plan({"spatial": {"rotation": {"p": 1.0, "max_degrees": 20},
                                                  "scaling": {"p": 1.0, "range": [0.8, 1.2]},
                                                  "elastic": {"p": 0.5}, "random_crop": True}})
    read = initial_patch_size(PATCH, plan)
    image, seg = _phantom(tuple(r + 10 for r in read), labels=(1, 2))  # larger than needed: the crop matters
    transform = build_spatial_transform(plan["spatial"], PATCH)
    for seed in range(4):
        _seed(seed)
        params = transform.get_parameters(image=image)
        library = SpatialTransform.apply(transform, {"image": image.clone(), "segmentation": seg.clone()}, **params)
        ours = transform.apply({"image": image.clone(), "segmentation": seg.clone()}, **params)  # rewrites the grid
        assert torch.allclose(ours["image"], library["image"], atol=1e-4)
        assert (ours["segmentation"] != library["segmentation"]).float().mean() < 1e-3


@pytest.mark.parametrize("sigma", [3.0, 9.0])  # 9 takes the coarse-grid path
def test_elastic_field_is_smooth_with_the_requested_peak(sigma):
    from fomo_nn.augmentation.elastic_field import displacement_field

    torch.manual_seed(0)
    field = displacement_field((64, 64, 64), [sigma] * 3, [4.0, 2.0, 1.0])
    assert torch.allclose(field.abs().amax(dim=(1, 2, 3)), torch.tensor([4.0, 2.0, 1.0]))
    for component, peak in zip(field, (4.0, 2.0, 1.0)):
        steepest = max(float(component.diff(dim=d).abs().max()) for d in range(3))
        assert steepest < 2.0 * peak / sigma
        centred = component - component.mean()
        lag = int(sigma)
        correlation = float((centred * torch.roll(centred, lag, 0)).mean() / (centred ** 2).mean())
        assert 0.5 < correlation < 0.95  # Gaussian-smoothed noise: exp(-lag^2 / (4 sigma^2)) ~ 0.78
