"""A fold folder across runs: refusing to replace finished work, resuming after kills, wrong resumes, names."""
from __future__ import annotations

import json

import pytest
import torch

from fomo_nn.cli.train import main as train_main
from fomo_nn.inference.model_folder import ModelFolderName
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_finetuning_network
from fomo_nn.plans import load_plans
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.checkpoints.training_state import save_checkpoint
from fomo_nn.training.finetuning.pretrained import describe_report, load_pretrained_encoder
from fomo_nn.training.progress_log import ProgressLog
from preprocessed_builders import build_preprocessed, tiny_plans
from toy_trainer import ToyRegressionTrainer

FAST = dict(epochs=1, num_workers=0, checkpoint_every=1)


@pytest.fixture(scope="module")
def regression_data(tmp_path_factory):
    return build_preprocessed(tmp_path_factory.mktemp("pre"), "regression")


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr(ProgressLog, "plot", lambda self: None)


def toy(data, out, crash_at_step=None, cls=ToyRegressionTrainer, **options):
    trainer = cls(load_plans(data), data, out, "0", TrainerOptions(**{**FAST, **options}))
    trainer.crash_at_step = crash_at_step
    return trainer


def log_epochs(folder):
    return [json.loads(line)["epoch"] for line in (folder / "training_log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ a finished fold is not replaced silently
def test_retraining_a_finished_fold_needs_continue_or_overwrite(regression_data, tmp_path):
    toy(regression_data, tmp_path).run()
    final = (tmp_path / "checkpoint_final.pth").read_bytes()
    log = (tmp_path / "training_log.jsonl").read_text()
    with pytest.raises(BadInputError) as error:
        toy(regression_data, tmp_path).run()
    message = str(error.value)
    assert str(tmp_path) in message and "finished" in message and "--continue" in message and "--overwrite" in message
    assert (tmp_path / "checkpoint_final.pth").read_bytes() == final  # nothing lost
    assert (tmp_path / "training_log.jsonl").read_text() == log

    toy(regression_data, tmp_path, epochs=2, overwrite=True).run()
    assert torch.load(tmp_path / "checkpoint_final.pth", weights_only=True)["epoch"] == 2
    assert log_epochs(tmp_path) == [0, 1]  # a fresh log, not appended to the old one


def test_an_unfinished_run_is_not_replaced_either(regression_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()
    with pytest.raises(BadInputError, match="unfinished training.*checkpoint_latest.pth"):
        toy(regression_data, tmp_path, epochs=3).run()


def test_continue_and_overwrite_contradict():
    with pytest.raises(ValueError, match="--continue and --overwrite"):
        TrainerOptions(continue_training=True, overwrite=True)


# ------------------------------------------------------------------ kills
def test_kill_before_the_first_resumable_checkpoint_restarts_a_fresh_log(regression_data, tmp_path):
    for resume in (False, True):
        out = tmp_path / str(resume)
        # checkpoint_latest every 2 epochs: killed in epoch 2, only epoch 1 is logged (and checkpoint_best)
        with pytest.raises(KeyboardInterrupt):
            toy(regression_data, out, epochs=3, checkpoint_every=2, crash_at_step=5).run()
        assert log_epochs(out) == [0] and not (out / "checkpoint_latest.pth").exists()
        toy(regression_data, out, epochs=3, checkpoint_every=2, continue_training=resume).run()
        assert log_epochs(out) == [0, 1, 2]


def test_a_torn_last_log_line_is_dropped_on_continue(regression_data, tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()  # latest checkpoint after epoch 2
    with open(tmp_path / "training_log.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "train_lo')  # killed mid-write
    toy(regression_data, tmp_path, epochs=3, continue_training=True).run()
    assert log_epochs(tmp_path) == [0, 1, 2]
    err = capsys.readouterr().err
    assert err.count("torn last line") == 1 and "training_log.jsonl" in err


def test_a_corrupt_line_inside_the_log_is_refused_with_file_and_line(regression_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()
    path = tmp_path / "training_log.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    before = path.read_text()
    with pytest.raises(BadInputError, match=r"training_log.jsonl: line 2 is not a log record"):
        toy(regression_data, tmp_path, epochs=3, continue_training=True).run()
    assert path.read_text() == before


def test_only_an_unterminated_last_line_counts_as_torn(tmp_path):
    path = tmp_path / "training_log.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1}\nnot json\n')  # complete line: corruption, not a kill
    with pytest.raises(BadInputError, match="line 3 is not a log record"):
        ProgressLog(tmp_path, resume_epoch=2)
    path.write_text('{"epoch": 0}\n{"epoch": 1}\n[1, 2')
    assert [r["epoch"] for r in ProgressLog(tmp_path, resume_epoch=2).records] == [0, 1]
    assert path.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'  # rewritten without the torn line
    path.write_text("{not json\n")
    assert ProgressLog(tmp_path).records == [] and path.read_text() == ""  # a fresh run does not read it


def test_partial_saves_of_a_killed_run_are_removed_at_the_next_start(regression_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()
    leftover = tmp_path / ".checkpoint_latest.pth.k1ll3d.pth.part"  # as atomic_path names them
    leftover.write_bytes(b"half a checkpoint")
    toy(regression_data, tmp_path, epochs=3, continue_training=True).run()
    assert not leftover.exists()
    assert not list(tmp_path.glob(".*.part"))


# ------------------------------------------------------------------ resuming with another trainer
class OtherToyTrainer(ToyRegressionTrainer):
    name = "other_toy"


def test_continue_with_another_trainers_checkpoint_names_both(regression_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()
    with pytest.raises(BadInputError) as error:
        toy(regression_data, tmp_path, epochs=3, continue_training=True, cls=OtherToyTrainer).run()
    message = str(error.value)
    assert "checkpoint_latest.pth" in message and "'toy_regression'" in message and "'other_toy'" in message


@pytest.fixture
def pretraining_env(tmp_path, monkeypatch):
    build_preprocessed(tmp_path / "pre", "pretraining", num_cases=8, shape=(32, 32, 32))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("fomo_nn_results", str(tmp_path / "results"))
    return tmp_path


CLI_FAST = ["--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
            "--batch-size", "2"]
SMALL_HEADS = ["--set", "token_size=4", "--set", "projection_hidden=16", "--set", "projection_dim=8"]


def test_cli_continue_with_a_contrastive_checkpoint_as_mae_is_one_message(pretraining_env, capsys):
    out = pretraining_env / "run"
    assert train_main(["900", "all", "-tr", "contrastive", "--output", str(out), *CLI_FAST, *SMALL_HEADS[2:]]) == 0
    capsys.readouterr()
    assert train_main(["900", "all", "-tr", "mae", "--output", str(out), "--continue", *CLI_FAST,
                       *SMALL_HEADS[:2]]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{out / 'checkpoint_latest.pth'}: was written by trainer 'contrastive'" in err and "'mae'" in err
    # and retraining it without a choice is refused, naming both ways out
    assert train_main(["900", "all", "-tr", "contrastive", "--output", str(out), *CLI_FAST, *SMALL_HEADS[2:]]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--continue" in err and "--overwrite" in err
    assert train_main(["900", "all", "-tr", "contrastive", "--output", str(out), "--overwrite", *CLI_FAST,
                       *SMALL_HEADS[2:]]) == 0


@pytest.mark.parametrize("change,expected", [
    (lambda state: state.pop("optimizer"), r"lacks the key\(s\) \['optimizer'\]"),
    (lambda state: state.update(best_metirc=None), "unknown key 'best_metirc'; did you mean 'best_metric'"),
    (lambda state: state.update(epoch="2"), "'epoch' should hold a int, got str")])
def test_continue_from_a_malformed_checkpoint_names_the_file_and_the_key(regression_data, tmp_path, change, expected):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()
    path = tmp_path / "checkpoint_latest.pth"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    with pytest.raises(BadInputError, match=f"checkpoint_latest.pth: .*{expected}"):
        toy(regression_data, tmp_path, epochs=3, continue_training=True).run()


def test_cli_unknown_set_key_is_one_message_with_the_suggestion(pretraining_env, capsys):
    out = pretraining_env / "run"
    assert train_main(["900", "all", "-tr", "mae", "--output", str(out), *CLI_FAST, *SMALL_HEADS[:2],
                       "--set", "mask_ratoi=0.5"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "trainer 'mae' (--set): unknown setting 'mask_ratoi'; did you mean 'mask_ratio'?" in err


class WiderToyTrainer(ToyRegressionTrainer):
    def build_network(self):
        return torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, stride=4), torch.nn.AdaptiveAvgPool3d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(8, 1))


def test_continue_with_a_checkpoint_of_another_network_is_one_message(regression_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy(regression_data, tmp_path, epochs=3, crash_at_step=9).run()
    with pytest.raises(BadInputError, match="checkpoint_latest.pth: does not fit the network"):
        toy(regression_data, tmp_path, epochs=3, continue_training=True, cls=WiderToyTrainer).run()


# ------------------------------------------------------------------ model folder names and tags
def test_model_folder_name_round_trip():
    name = ModelFolderName("classification", "fomo_nnPlans", "3d_fullres", "mae-v2.1")
    assert str(name) == "classification__fomo_nnPlans__3d_fullres__mae-v2.1"
    assert ModelFolderName.parse(str(name)) == name
    assert ModelFolderName.parse("segmentation__fomo_nnPlans__3d_fullres") == ModelFolderName(
        "segmentation", "fomo_nnPlans", "3d_fullres")
    assert ModelFolderName.parse("notes") is None and ModelFolderName.parse("a__b__c__d__e") is None
    with pytest.raises(ValueError, match="plans name 'my__plans' cannot be part of a model folder name"):
        ModelFolderName("mae", "my__plans", "3d_fullres")


@pytest.mark.parametrize("tag", ["x/../../..", "..", ".", "a b", "a__b", "", "/abs"])
def test_a_tag_that_is_not_a_name_is_refused_before_anything_is_written(pretraining_env, tag, capsys):
    assert train_main(["900", "all", "-tr", "mae", "--tag", tag, *CLI_FAST, *SMALL_HEADS[:2]]) == 2
    err = capsys.readouterr().err
    assert "not a valid model-folder tag" in err and "Traceback" not in err
    assert not (pretraining_env / "results").exists()
    assert not list(pretraining_env.glob("**/checkpoint_*.pth"))


def test_a_tagged_run_lands_in_the_tagged_folder(pretraining_env):
    assert train_main(["900", "all", "-tr", "mae", "--tag", "v1.0", *CLI_FAST, *SMALL_HEADS[:2]]) == 0
    plans = load_plans(pretraining_env / "pre" / "Dataset900_Tiny")
    folder = pretraining_env / "results" / "Dataset900_Tiny" / str(
        ModelFolderName("mae", plans.plans_name, plans.configuration, "v1.0"))
    assert (folder / "fold_all" / "checkpoint_final.pth").is_file()


# ------------------------------------------------------------------ a supervised checkpoint as --pretrained
def test_a_supervised_checkpoint_is_accepted_as_an_encoder_and_said_so(tmp_path):
    channels = ["flair", "dwi_b1000"]
    segmentation = tiny_plans("segmentation", channels)
    source = build_finetuning_network(segmentation)
    path = save_checkpoint({"network": source.state_dict(), "plans": segmentation.to_json(),
                            "trainer": "segmentation", "epoch": 3}, tmp_path / "checkpoint_final.pth")
    classification = tiny_plans("classification", channels)
    target = build_finetuning_network(classification)
    report = load_pretrained_encoder(target, path, classification.network, allow_partial=False)
    assert report["supervised_source"] == {"task": "segmentation", "trainer": "segmentation"}
    assert report["counts"]["missing"] == 0
    encoder = {k: v for k, v in source.state_dict().items() if k.startswith("encoder.")}
    for key, value in encoder.items():
        torch.testing.assert_close(target.state_dict()[key], value)
    text = describe_report(report)
    assert f"{path} is a supervised segmentation checkpoint" in text and "its decoder is not" in text

    pretraining = tiny_plans("pretraining", ["mri"])
    path = save_checkpoint({"network": source.state_dict(), "plans": pretraining.to_json(), "trainer": "mae"},
                           tmp_path / "pretrained.pth")
    report = load_pretrained_encoder(build_finetuning_network(classification), path, classification.network, True)
    assert report["supervised_source"] is None and "is a supervised" not in describe_report(report)
