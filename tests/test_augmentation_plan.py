"""Augmentation plans: checking, defaults, presets and the read size the loader needs."""
import json
import math

import numpy as np
import pytest
import torch

from fomo_nn.augmentation import (TASK_FAMILIES, build_augmentation_pipeline, default_augmentation_plan,
                                  initial_patch_size, merge_augmentation_plans, resolve_augmentation_plan)
from fomo_nn.utils.errors import BadInputError




def test_empty_plan_resolves_to_everything_off():
    plan = resolve_augmentation_plan({})
    probabilities = [cfg["p"] for section in ("spatial", "intensity", "artifacts")
                     for cfg in plan[section].values() if isinstance(cfg, dict)]
    assert len(probabilities) == 4 + 7 + 5
    assert all(p == 0 for p in probabilities)
    assert plan["keep_clean_target"] is False


def test_partial_transform_keeps_other_defaults():
    plan = resolve_augmentation_plan({"spatial": {"rotation": {"p": 0.4}}})
    assert plan["spatial"]["rotation"] == {"p": 0.4, "max_degrees": 30.0, "p_per_axis": 1.0}


@pytest.mark.parametrize("bad, words", [
    ({"spatial": {"rotaton": {"p": 0.2}}}, "rotaton"),
    ({"intensity": {"gamma": {"p": 0.2, "gama": [1, 2]}}}, "gama"),
    ({"spatial": {"rotation": {"p": 1.5}}}, "spatial.rotation.p"),
    ({"intensity": {"brightness": {"range": [1.2, 0.8]}}}, "intensity.brightness.range"),
    ({"spatial": {"mirror": {"axes": [0, 3]}}}, "spatial.mirror.axes"),
    ({"artifacts": {"motion_ghosting": {"intensity": [0.5, 1.5]}}}, "motion_ghosting.intensity"),
    ({"keep_clean_target": "yes"}, "keep_clean_target"),
    ({"spatial": {"scaling": {"p": True}}}, "spatial.scaling.p"),
])
def test_bad_plans_name_the_key(bad, words):
    with pytest.raises(BadInputError) as error:
        resolve_augmentation_plan(bad, source="/data/plans.json")
    assert words in str(error.value) and "/data/plans.json" in str(error.value)


def test_merge_overrides_one_knob():
    base = default_augmentation_plan("segmentation")
    merged = merge_augmentation_plans(base, {"spatial": {"elastic": {"p": 0.0}}})
    assert merged["spatial"]["elastic"]["p"] == 0.0
    assert merged["spatial"]["elastic"]["magnitude"] == base["spatial"]["elastic"]["magnitude"]
    assert base["spatial"]["elastic"]["p"] == 0.2  # base untouched


@pytest.mark.parametrize("family", TASK_FAMILIES)
def test_presets_are_json_and_build(family):
    plan = default_augmentation_plan(family)
    assert json.loads(json.dumps(plan)) == plan
    assert resolve_augmentation_plan(plan) == plan
    pipeline = build_augmentation_pipeline(plan, (16, 16, 16), is_segmentation=family == "segmentation")
    sample = {"image": torch.randn(1, *initial_patch_size((16, 16, 16), plan))}
    if family == "segmentation":
        sample["segmentation"] = torch.zeros_like(sample["image"], dtype=torch.int16)
    assert pipeline(**sample)["image"].shape == (1, 16, 16, 16)


def _enabled(plan, section):
    return {name for name, cfg in plan[section].items() if isinstance(cfg, dict) and cfg["p"] > 0}


def test_reconstruction_preset_is_the_official_baseline_set():
    plan = default_augmentation_plan("pretraining_reconstruction")
    assert plan["keep_clean_target"] is True
    p = {name: plan[s][name]["p"] for s in ("spatial", "intensity", "artifacts") for name in _enabled(plan, s)}
    assert p == {"elastic": 0.33, "rotation": 0.2, "scaling": 0.2, "gaussian_noise": 0.2, "gaussian_blur": 0.2,
                 "multiplicative_noise": 0.2, "motion_ghosting": 0.2, "gibbs_ringing": 0.2, "low_resolution": 0.2,
                 "bias_field": 0.33, "gamma": 0.2}
    assert plan["spatial"]["rotation"]["max_degrees"] == 30 and plan["spatial"]["scaling"]["range"] == [0.9, 1.1]


def test_classification_and_regression_lighter_than_segmentation():
    seg = default_augmentation_plan("segmentation")
    for family in ("classification", "regression"):
        light = default_augmentation_plan(family)
        assert not light["keep_clean_target"]
        assert light["spatial"]["elastic"]["p"] == 0 < seg["spatial"]["elastic"]["p"]
        assert light["spatial"]["rotation"]["max_degrees"] < seg["spatial"]["rotation"]["max_degrees"]
        assert len(_enabled(light, "intensity")) < len(_enabled(seg, "intensity"))
        assert max(cfg["p"] for cfg in light["artifacts"].values()) <= 0.1
        assert sum(cfg["p"] for cfg in light["intensity"].values()) < sum(cfg["p"] for cfg in seg["intensity"].values())


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown task family"):
        default_augmentation_plan("detection")


def test_initial_patch_size_is_patch_size_without_rotation_or_scaling():
    plan = {"spatial": {"mirror": {"p": 0.5}}, "intensity": {"gamma": {"p": 1.0}}}
    assert initial_patch_size((96, 128, 112), plan) == (96, 128, 112)


def test_initial_patch_size_rotation_scale_and_elastic():
    rot45 = {"spatial": {"rotation": {"p": 0.2, "max_degrees": 45}}}
    assert initial_patch_size((64, 64, 64), rot45) == (91, 91, 91)  # 64 * sqrt(2) = 90.5
    # at least nnU-Net's get_patch_size for +-30 deg (128 -> 174.8 before its scale term)
    assert min(initial_patch_size((128, 128, 128), {"spatial": {"rotation": {"p": 0.2}}})) >= 175
    scaled = {"spatial": {"scaling": {"p": 0.2, "range": [0.8, 1.25]}}}
    assert initial_patch_size((64, 32, 48), scaled) == (80, 40, 60)
    elastic = {"spatial": {"elastic": {"p": 0.2, "magnitude": [1.0, 5.0]}}}
    assert initial_patch_size((32, 32, 32), elastic) == (42, 42, 42)


def test_initial_patch_size_leaves_no_padding_for_the_largest_scale():
    plan = {"spatial": {"scaling": {"p": 1.0, "range": [1.3, 1.3]}}}
    read = initial_patch_size((24, 24, 24), plan)
    out = build_augmentation_pipeline(plan, (24, 24, 24))(image=torch.ones(1, *read))
    assert torch.allclose(out["image"], torch.ones(1, 24, 24, 24))


def test_rotated_read_patch_rarely_pads():
    """Rotations about all axes at once may reach the corners' padding; it stays a small fraction."""
    plan = {"spatial": {"rotation": {"p": 1.0, "max_degrees": 30}}}
    read = initial_patch_size((32, 32, 32), plan)
    pipeline = build_augmentation_pipeline(plan, (32, 32, 32))
    torch.manual_seed(0)
    np.random.seed(0)
    padded = [float((pipeline(image=torch.ones(1, *read))["image"] < 0.999).float().mean()) for _ in range(20)]
    assert np.mean(padded) < 0.01 and max(padded) < 0.05
    assert math.isclose(min(read), 44, abs_tol=1)  # 32 * (cos 30 + sin 30) = 43.7
