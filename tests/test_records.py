"""Typed records with one strictness rule: unknown keys name themselves and the nearest valid one."""
import dataclasses
import json

import pytest
import torch

from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_pretraining_network
from fomo_nn.networks.adaptation import AdaptationRecord, adaptation_record, build_from_record
from fomo_nn.checkpoints import training_state as ckpt
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.checkpoints.training_state import TrainingCheckpoint
from fomo_nn.checkpoints.formats.fomo_nn_training import adaptation_of
from fomo_nn.training.finetuning.pretrained import load_pretrained_encoder
from fomo_nn.training.registry import get_trainer
from fomo_nn.utils.strict_keys import UnknownKeyError, check_known_keys, nearest
from preprocessed_builders import tiny_plans


# ------------------------------------------------------------------ the helper
def test_unknown_key_names_it_and_the_nearest_valid_one():
    with pytest.raises(UnknownKeyError) as error:
        check_known_keys("somewhere", {"patch_sise": 1, "batch_size": 2}, ["patch_size", "batch_size"])
    message = str(error.value)
    assert message.startswith("somewhere: unknown key 'patch_sise'; did you mean 'patch_size'?")
    assert error.value.keys == ["patch_sise"]
    check_known_keys("somewhere", {"batch_size": 2}, ["patch_size", "batch_size"])  # all known: no error


def test_no_suggestion_for_a_key_like_none():
    assert nearest("zzzz", ["patch_size", "batch_size"]) is None
    with pytest.raises(UnknownKeyError) as error:
        check_known_keys("x", ["zzzz"], ["patch_size"])
    assert "did you mean" not in str(error.value) and "valid: patch_size" in str(error.value)


# ------------------------------------------------------------------ the adaptation record
@pytest.fixture(scope="module")
def record():
    plans = tiny_plans("pretraining", ["mri"])
    torch.manual_seed(0)
    model = build_pretraining_network(plans, "mae")
    return adaptation_record(model, plans, "mae", {}, {"corpora": ["test"]}), plans


def test_adaptation_record_round_trip(record):
    data, _ = record
    typed = AdaptationRecord.from_dict(json.loads(json.dumps(data)))
    assert typed.to_dict() == json.loads(json.dumps(data))
    assert list(typed.to_dict()) == list(data)  # same layout on disk as before
    assert typed.method == "mae" and typed.data_provenance == {"corpora": ["test"]}
    assert typed.network_plan == data["architecture"]["kwargs"]["network"]
    assert AdaptationRecord.from_dict(typed) is typed
    assert type(build_from_record(typed)).__name__ == data["architecture"]["class_name"]


def test_adaptation_record_refuses_an_unknown_field_with_a_suggestion(record):
    data = {**record[0], "encoder_key": []}
    with pytest.raises(UnknownKeyError, match="unknown adaptation record field 'encoder_key'; did you mean 'encoder_keys'"):
        AdaptationRecord.from_dict(data)


def test_adaptation_record_refuses_a_missing_field_and_a_wrong_type(record):
    data = dict(record[0])
    del data["stem_keys"]
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['stem_keys'\]"):
        AdaptationRecord.from_dict(data)
    with pytest.raises(ValueError, match="'input_channels' should be a int, got str"):
        AdaptationRecord.from_dict({**record[0], "input_channels": "one"})
    with pytest.raises(ValueError, match="'architecture' needs 'class_name'"):
        AdaptationRecord.from_dict({**record[0], "architecture": {"kwargs": {}}})
    with pytest.raises(ValueError, match="a dict, got list"):
        AdaptationRecord.from_dict([])


def test_a_checkpoint_with_a_malformed_record_names_the_file_and_field(record, tmp_path):
    data, plans = record
    path = tmp_path / "bad.pth"
    state = {ckpt.PLANS: plans.to_json(), ckpt.ADAPTATION: {**data, "pretrainng": {}}}
    with pytest.raises(BadInputError) as error:
        adaptation_of(state, path)
    assert str(path) in str(error.value) and "'pretrainng'" in str(error.value) and "'pretraining'" in str(error.value)
    assert adaptation_of({ckpt.PLANS: plans.to_json()}, path) is None


def test_the_record_is_read_under_its_one_key(record, tmp_path):
    data, plans = record
    model = build_pretraining_network(plans, "mae")
    path = tmp_path / "pre.pth"
    ckpt.save_checkpoint({ckpt.NETWORK: model.state_dict(), ckpt.PLANS: plans.to_json(), ckpt.ADAPTATION: data}, path)
    network = build_pretraining_network(plans, "mae")
    report = load_pretrained_encoder(network, path, plans.network, allow_partial=False)
    assert report["pretraining"]["method"] == "mae" and report["data_provenance"] == {"corpora": ["test"]}


# ------------------------------------------------------------------ the training checkpoint
def _state():
    return TrainingCheckpoint(network={"w": torch.zeros(2)}, optimizer={"state": {}}, scheduler={"last_epoch": 1},
                              epoch=3, plans={"task_type": "regression"}, trainer="toy", rng={"torch": torch.zeros(1)},
                              fold="0", records={ckpt.PRETRAINED: None}).to_dict()


def test_training_checkpoint_round_trip(tmp_path):
    state = _state()
    assert {ckpt.NETWORK, ckpt.OPTIMIZER, ckpt.EPOCH, ckpt.PLANS, ckpt.TRAINER, ckpt.PRETRAINED} <= set(state)
    ckpt.save_checkpoint(state, tmp_path / "c.pth")
    loaded = TrainingCheckpoint.from_dict(ckpt.load_checkpoint(tmp_path / "c.pth"), tmp_path / "c.pth")
    assert loaded.epoch == 3 and loaded.trainer == "toy" and loaded.records == {ckpt.PRETRAINED: None}
    assert set(loaded.to_dict()) == set(state)


@pytest.mark.parametrize("key", ckpt.REQUIRED_KEYS)
def test_a_checkpoint_missing_a_key_names_the_file_and_the_key(key):
    state = _state()
    del state[key]
    with pytest.raises(BadInputError) as error:
        TrainingCheckpoint.from_dict(state, "run/checkpoint_latest.pth")
    assert str(error.value).startswith("run/checkpoint_latest.pth: ") and f"[{key!r}]" in str(error.value)


def test_a_checkpoint_with_an_unknown_key_or_a_wrong_type_is_refused():
    with pytest.raises(BadInputError, match="c.pth: .*unknown key 'epcoh'; did you mean 'epoch'"):
        TrainingCheckpoint.from_dict({**_state(), "epcoh": 1}, "c.pth")
    with pytest.raises(BadInputError, match="c.pth: checkpoint key 'epoch' should hold a int, got str"):
        TrainingCheckpoint.from_dict({**_state(), "epoch": "3"}, "c.pth")
    with pytest.raises(UnknownKeyError, match="'adaptatoin'; did you mean 'adaptation'"):
        dataclasses.replace(TrainingCheckpoint.from_dict(_state(), "c.pth"), records={"adaptatoin": {}}).to_dict()


# ------------------------------------------------------------------ method settings (--set / plans.method)
@pytest.mark.parametrize("task,bad,suggestion", [("segmentation", "deep_supervison", "deep_supervision"),
                                                  ("regression", "smooth_l1_bta", "smooth_l1_beta"),
                                                  ("classification", "pol", "pool")])
def test_an_unknown_finetuning_setting_names_trainer_key_and_suggestion(task, bad, suggestion, tmp_path):
    plans = tiny_plans(task, ["mri"])
    with pytest.raises(UnknownKeyError) as error:
        get_trainer(task)(plans, tmp_path, tmp_path / "out", "0", TrainerOptions(device="cpu", method={bad: 1}))
    message = str(error.value)
    assert f"trainer {task!r} (--set)" in message and f"unknown setting {bad!r}" in message
    assert f"did you mean {suggestion!r}" in message


def test_an_unknown_setting_in_plans_method_is_refused_too(tmp_path):
    plans = tiny_plans("segmentation", ["mri"]).replace(method={"validation_stpe": 0.5})
    with pytest.raises(UnknownKeyError, match=r"\(plans.method\): unknown setting 'validation_stpe'; did you mean "
                                              "'validation_step'"):
        get_trainer("segmentation")(plans, tmp_path, tmp_path / "out", "0", TrainerOptions(device="cpu"))


def test_network_settings_are_valid_only_for_the_task_that_reads_them(tmp_path):
    regression = get_trainer("regression")(tiny_plans("regression", ["mri"]), tmp_path, tmp_path / "r", "0",
                                           TrainerOptions(device="cpu", method={"pool": "bottleneck",
                                                                                "head_dropout": 0.1}))
    assert regression.method["pool"] == "bottleneck" and regression.method["head_dropout"] == 0.1
    with pytest.raises(UnknownKeyError, match="unknown setting 'pool'"):  # segmentation has no pooled head
        get_trainer("segmentation")(tiny_plans("segmentation", ["mri"]), tmp_path, tmp_path / "s", "0",
                                    TrainerOptions(device="cpu", method={"pool": "bottleneck"}))


@pytest.mark.parametrize("where", ["top", "network", "training", "normalization"])
def test_plans_refuse_an_unknown_key_with_the_nearest_valid_one(tmp_path, where):
    from builders import simple_plans
    from fomo_nn.plans.records import load_plans, save_plans

    data = simple_plans().to_json()
    target = {"top": data, "network": data["network"], "training": data["training"],
              "normalization": data["normalization"][0]}[where]
    valid = next(iter(target))
    target[valid + "x"] = target[valid]
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=f"unknown key '{valid}x'; did you mean '{valid}'"):
        load_plans(path)
    save_plans(simple_plans(), path)
    assert load_plans(path) == simple_plans()
