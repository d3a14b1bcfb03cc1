"""Lightning checkpoints of asparagus (AMAES ResEnc-B, unet_b), the FOMO25 baseline (unet_b) and FOMO2JOMO, in.

The files are written by Lightning's own ModelCheckpoint (pytorch_lightning 2.6.6, in a subprocess that hides
the broken torchvision: tests/lightning_checkpoints.py) around each framework's network (gardening-tools 0.3.5
classes for asparagus; the baseline's encoder transcribed from fomo25/baseline-codebase d2df6d4). Proof of a
faithful import: the encoder fomo_nn loads gives the reference network's features (max abs diff <= 1e-5, float32).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import make_segmentation_dataset
from foundation_flow import check_finetuned_predicts_and_evaluates
from preprocessed_builders import build_preprocessed
from torch import nn

from fomo_nn.checkpoints.loading import load_checkpoint_file
from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.cli.plan_and_preprocess import main as plan_main
from fomo_nn.cli.train import main as train_main
from fomo_nn.networks import build_encoder, load_encoder_weights
from fomo_nn.plans.records import load_plans

WRITER = Path(__file__).with_name("lightning_checkpoints.py")
RESENC = {"features": [4, 8, 16, 16], "blocks": [1, 2, 2, 2], "pretrain_net": "resenc_unet_b"}  # 4 stages: 32^3
UNET = {"features": [2, 4, 8, 16], "pretrain_net": "unet_b"}  # starting filters 2 (the class takes one number)


def lightning_checkpoints(jobs: dict[str, tuple[str, dict]], folder: Path) -> dict[str, Path]:
    """Lightning writes the checkpoints, all in one subprocess (the test process never imports Lightning)."""
    spec = [{"kind": kind, "out": str(folder / name), "settings": settings} for name, (kind, settings) in jobs.items()]
    done = subprocess.run([sys.executable, str(WRITER), json.dumps(spec)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    paths = [Path(line) for line in done.stdout.strip().splitlines()[-len(jobs):]]
    return dict(zip(jobs, paths))


def reference_with_saved_weights(kind: str, path: Path, settings: dict) -> nn.Module:
    """The framework's network, built by the writer's own code, holding exactly the weights Lightning saved."""
    sys.path.insert(0, str(WRITER.parent))
    from lightning_checkpoints import reference_network

    network = reference_network(kind, settings)
    saved = load_checkpoint_file(path)["state_dict"]
    state = {k.removeprefix("model.").removeprefix("_orig_mod."): v for k, v in saved.items()}
    network.load_state_dict(state, strict=True)
    return network.eval()


class Holder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def fomo_nn_encoder(record) -> nn.Module:
    holder = Holder(build_encoder(record.network, int(record.network.input_channels)))
    report = load_encoder_weights(holder, record.encoder)
    assert not report["missing"] and not report["unexpected"] and not report["shape_mismatch"]
    return holder.encoder.eval()


def max_difference(first, second) -> float:
    assert len(first) == len(second)
    assert all(a.shape == b.shape and a.dtype == torch.float32 for a, b in zip(first, second))
    return max(float((a - b).abs().max()) for a, b in zip(first, second))


BASELINE = {"features": [2], "compile": True}  # written as with the baseline's --compile: 'model._orig_mod.'
CASES = {
    "asparagus_resenc": (RESENC, "asparagus", "residual_unet_encoder", 32),
    "asparagus_unet": (UNET, "asparagus", "maxpool_unet", 32),
    "fomo25_baseline": (BASELINE, "fomo25_baseline", "maxpool_unet", 32),
    "fomo2jomo": (BASELINE, "fomo2jomo", "maxpool_unet", 32),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Every reference checkpoint of this module, written once by Lightning."""
    jobs = {kind: (kind, settings) for kind, (settings, *_rest) in CASES.items()}
    jobs["asparagus_resenc_4ch"] = ("asparagus_resenc", {**RESENC, "channels": 4})
    return lightning_checkpoints(jobs, tmp_path_factory.mktemp("lightning"))


@pytest.mark.parametrize("kind", list(CASES))
def test_lightning_checkpoint_gives_the_reference_encoder_features(kind, checkpoints):
    settings, format_name, family, edge = CASES[kind]
    path = checkpoints[kind]
    contents = load_checkpoint_file(path)  # weights_only=True: Lightning's own layout reads without unpickling
    assert contents["pytorch-lightning_version"] == "2.6.6" and "hyper_parameters" in contents
    compiled = any(k.startswith("model._orig_mod.") for k in contents["state_dict"])
    assert compiled == bool(settings.get("compile"))
    record = read_checkpoint(path)
    assert record.format == format_name and record.network.encoder == family
    assert record.preprocessing.patch_size == [edge] * 3 and record.preprocessing.orientation == "RAS"
    reference = reference_with_saved_weights(kind, path, settings)
    x = torch.randn(2, record.preprocessing.channels, edge, edge, edge, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = fomo_nn_encoder(record)(x), reference.encoder(x)
    assert max_difference(ours, theirs) <= 1e-5
    assert not any("conv_mu" in k or k.startswith("encoder.decoder") for k in record.encoder)


def test_what_each_format_says_the_weights_expect(checkpoints):
    resenc = read_checkpoint(checkpoints["asparagus_resenc"])
    assert resenc.network.features_per_stage == [4, 8, 16, 16] and resenc.network.n_conv_per_stage == [1, 2, 2, 2]
    assert resenc.network.strides == [[1, 1, 1]] + [[2, 2, 2]] * 3
    assert [(n.scheme, n.clip_percentiles) for n in resenc.preprocessing.normalization] == [("zscore_volume",
                                                                                           [0.0, 100.0])]
    assert resenc.preprocessing.spacing is None  # FOMO300K was pretrained at native spacing
    assert resenc.provenance["network"] == "resenc_unet_b" and resenc.provenance["source_dataset"] == "PT900_FOMO300K"
    baseline = read_checkpoint(checkpoints["fomo25_baseline"])
    assert baseline.preprocessing.spacing == [1.0, 1.0, 1.0]
    assert [n.scheme for n in baseline.preprocessing.normalization] == ["volume_wise_znorm"]
    assert baseline.network.features_per_stage == [2, 4, 8, 16, 32]
    assert baseline.provenance["hyper_parameters"]["model_name"] == "unet_b_lw_dec"


def test_a_bare_baseline_state_dict_reads_as_its_lightning_checkpoint(checkpoints, tmp_path):
    """The baseline's finetune.py also loads `torch.save(module.state_dict())` files (no Lightning metadata)."""
    lightning_file = checkpoints["fomo25_baseline"]
    bare = tmp_path / "unet_b_lw_dec.pth"
    torch.save(dict(load_checkpoint_file(lightning_file)["state_dict"]), bare)
    first, second = read_checkpoint(lightning_file), read_checkpoint(bare)
    assert second.format == "fomo25_baseline" and second.network == first.network
    assert second.encoder.keys() == first.encoder.keys()
    assert all(torch.equal(second.encoder[k], first.encoder[k]) for k in first.encoder)
    assert second.preprocessing.patch_size is None and second.provenance["lightning_version"] is None


def test_asparagus_without_its_hydra_config_assumes_stride_2_and_says_so(checkpoints, tmp_path):
    alone = tmp_path / "resenc_unet_b.ckpt"  # the .ckpt downloaded without the hydra folder beside it
    alone.write_bytes(checkpoints["asparagus_resenc"].read_bytes())
    record = read_checkpoint(alone)
    assert record.preprocessing.patch_size is None
    assert record.network.strides[1] == [2, 2, 2] and "stride 2 assumed" in record.provenance["notes"][0]


# ------------------------------------------------------------------ the whole path
def _whole_path(checkpoint: Path, tmp_path, monkeypatch, expected_scheme: str, expected_family: str):
    for folder in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"fomo_nn_{folder}", str(tmp_path / folder))
    raw = make_segmentation_dataset(tmp_path / "raw", dataset_id=7, num_cases=6, channels=("t1", "flair"))
    record = read_checkpoint(checkpoint)
    assert plan_main(["-d", "7", "--plans-like", str(checkpoint), "-np", "1", "--no-progress"]) == 0
    plans = load_plans(tmp_path / "preprocessed" / "Dataset007_Seg")
    assert plans.network.encoder == expected_family
    assert plans.network.features_per_stage == record.network.features_per_stage
    assert plans.network.n_conv_per_stage == record.network.n_conv_per_stage
    assert plans.network.fusion == "stem_expansion" and plans.network.input_channels == 2
    assert [n.scheme for n in plans.normalization] == [expected_scheme] * 2
    assert plans.plans_like["checkpoint"]["format"] == record.format

    assert train_main(["7", "0", "--pretrained", str(checkpoint), "--epochs", "2", "--iters-per-epoch", "2",
                       "--val-iters", "1", "--num-workers", "0", "--device", "cpu"]) == 0
    check_finetuned_predicts_and_evaluates(tmp_path, raw, 7, record)


def test_asparagus_resenc_b_plans_like_finetune_predict_evaluate(checkpoints, tmp_path, monkeypatch):
    _whole_path(checkpoints["asparagus_resenc"], tmp_path, monkeypatch, "zscore_volume", "residual_unet_encoder")


def test_fomo25_baseline_unet_b_plans_like_finetune_predict_evaluate(checkpoints, tmp_path, monkeypatch):
    _whole_path(checkpoints["fomo25_baseline"], tmp_path, monkeypatch, "volume_wise_znorm", "maxpool_unet")


# ------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def plain_conv_dataset(tmp_path_factory):
    return build_preprocessed(tmp_path_factory.mktemp("pre"), "segmentation", num_cases=6, shape=(32, 32, 32),
                              channels=1)


def test_a_resenc_checkpoint_with_a_plain_conv_plan_and_a_four_channel_stem_are_refused(plain_conv_dataset, checkpoints,
                                                                                      tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("fomo_nn_preprocessed", str(plain_conv_dataset.parent))
    monkeypatch.setenv("fomo_nn_results", str(tmp_path / "results"))
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    resenc, four = checkpoints["asparagus_resenc"], checkpoints["asparagus_resenc_4ch"]
    assert read_checkpoint(four).preprocessing.channels == 4
    cases = {"resenc_into_plain_conv": (resenc, "holds a 'residual_unet_encoder' encoder"),
             "four_channel_stem": (four, "holds a 'residual_unet_encoder' encoder")}
    for name, (path, problem) in cases.items():
        out = tmp_path / "runs" / name
        code = train_main(["900", "0", "--pretrained", str(path), "--epochs", "1", "--iters-per-epoch", "1",
                           "--output", str(out)])
        error = capsys.readouterr().err
        assert code == 2 and str(path) in error and problem in error, (name, error)
        assert not out.exists()
    # planned like the 4-channel model, a 1-channel dataset cannot take its stem
    raw = make_segmentation_dataset(tmp_path / "raw", dataset_id=8, num_cases=2, channels=("t1",))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "preprocessed"))
    assert plan_main(["-d", "8", "--plans-like", str(four), "-np", "1", "--no-progress"]) != 0
    error = capsys.readouterr().err
    assert str(four) in error and "takes 4 input channels but the dataset has 1" in error
    assert not (tmp_path / "preprocessed" / "Dataset008_Seg" / "plans.json").exists()
    assert raw.exists()
