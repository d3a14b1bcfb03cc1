"""fomo_nn.checkpoints: one safe reader for every checkpoint format, and the refusals that name the file.

Covers: the guard that no module but checkpoints/loading.py calls torch.load; weights_only reading (a
pickled object is refused with the globals it needs and the opt-in flag; --trust-checkpoint reads it and
warns); truncated and unknown files; fomo_nn's own formats as records; the safetensors export read back;
and fomo_nn_train / fomo_nn_export_encoder refusing each bad input with one message naming the file,
writing nothing.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import logging
from pathlib import Path

import pytest
import torch

from fomo_nn.checkpoints.loading import load_checkpoint_file
from fomo_nn.checkpoints.registry import CHECKPOINT_FORMATS, read_checkpoint
from fomo_nn.cli.export_encoder import main as export_main
from fomo_nn.cli.train import main as train_main
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import adaptation_record, build_pretraining_network, encoder_state_dict
from preprocessed_builders import build_preprocessed, tiny_plans

ROOT = Path(__file__).resolve().parents[1]
LOADING = ROOT / "fomo_nn" / "checkpoints" / "loading.py"


# ------------------------------------------------------------------ the guard: one torch.load
def _torch_load_calls(path: Path) -> list[int]:
    """Lines of `torch.load(...)`, `from torch import load` and `torch.serialization.load` in a module."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "load":
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "torch") or \
                    (isinstance(base, ast.Attribute) and base.attr == "serialization"):
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization") \
                and any(alias.name == "load" for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_no_module_but_checkpoints_loading_calls_torch_load(tmp_path):
    offenders = {}
    for folder in ("fomo_nn", "container"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != LOADING and _torch_load_calls(path):
                offenders[str(path.relative_to(ROOT))] = _torch_load_calls(path)
    assert offenders == {}, f"torch.load outside fomo_nn/checkpoints/loading.py: {offenders}"
    assert _torch_load_calls(LOADING), "the guard must see the one torch.load it allows"
    planted = tmp_path / "sneaky.py"  # the guard itself catches both spellings
    planted.write_text("import torch\nfrom torch import load as l\nx = torch.load('a', weights_only=False)\n")
    assert _torch_load_calls(planted) == [2, 3]


def _fomo_nn_imports(folder: Path) -> dict[str, set[str]]:
    """{module path: the fomo_nn subpackages it imports (module level and function level)}."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names |= {m.split(".")[1] for m in modules if m.startswith("fomo_nn.") and m.count(".") >= 1}
        found[str(path.relative_to(ROOT))] = names
    return found


def test_checkpoint_knowledge_sits_low():
    """checkpoints reads only io/utils/plans/networks (and itself); inference and probing read checkpoints
    without importing training."""
    allowed = {"io", "utils", "plans", "networks", "checkpoints"}
    above = {path: sorted(names - allowed) for path, names in _fomo_nn_imports(ROOT / "fomo_nn" / "checkpoints").items()
             if names - allowed}
    assert above == {}
    for layer in ("inference", "probing"):
        training = [path for path, names in _fomo_nn_imports(ROOT / "fomo_nn" / layer).items() if "training" in names]
        assert training == [], f"{layer} imports fomo_nn.training: {training}"


# ------------------------------------------------------------------ loading: safe, loud
def test_a_file_that_needs_unpickling_is_refused_naming_the_globals_and_the_flag(tmp_path, caplog):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"model.w": torch.ones(2)}, "hyper_parameters": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(BadInputError) as error:
        load_checkpoint_file(path)
    message = str(error.value)
    assert str(path) in message and "argparse.Namespace" in message and "--trust-checkpoint" in message
    with caplog.at_level(logging.WARNING, logger="fomo_nn.checkpoints.loading"):
        state = load_checkpoint_file(path, trust_pickle=True)
    assert state["hyper_parameters"].lr == 0.1 and torch.equal(state["state_dict"]["model.w"], torch.ones(2))
    assert any("full unpickling" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_truncated_missing_unknown_and_non_dict_files_name_the_file(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save({"network_weights": {"w": torch.randn(64, 64)}}, whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BadInputError, match="truncated or not a torch file") as error:
        load_checkpoint_file(truncated)
    assert str(truncated) in str(error.value)
    with pytest.raises(BadInputError, match="does not exist"):
        load_checkpoint_file(tmp_path / "absent.pth")
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(BadInputError, match="holds a list, not a dict"):
        load_checkpoint_file(listed)
    unknown = tmp_path / "unknown.pth"
    torch.save({"weights": {"a.b": torch.zeros(1)}, "config": {"x": 1}}, unknown)
    with pytest.raises(BadInputError) as error:
        read_checkpoint(unknown)
    message = str(error.value)
    assert str(unknown) in message and "unknown checkpoint format" in message and "['config', 'weights']" in message
    assert all(row.name in message for row in CHECKPOINT_FORMATS)
    bad_safetensors = tmp_path / "model.safetensors"
    bad_safetensors.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": broken")
    with pytest.raises(BadInputError, match="not a readable safetensors file") as error:
        load_checkpoint_file(bad_safetensors)
    assert str(bad_safetensors) in str(error.value)


# ------------------------------------------------------------------ fomo_nn's own formats
def _pretraining_checkpoint(path: Path, features=(8, 16, 32)) -> tuple[Path, dict]:
    plans = tiny_plans("pretraining", ["mri"])
    plans = plans.replace(network=dataclasses.replace(plans.network, features_per_stage=list(features)))
    torch.manual_seed(3)
    model = build_pretraining_network(plans, "mae")
    record = adaptation_record(model, plans, "mae", {}, {"corpora": ["test"], "num_scans": 7})
    torch.save({"network": model.state_dict(), "plans": plans.to_json(), "adaptation": record, "epoch": 4,
                "trainer": "mae"}, path)
    return path, encoder_state_dict(model)


def test_fomo_nn_training_checkpoint_and_its_exports_read_as_the_same_record(tmp_path):
    path, encoder = _pretraining_checkpoint(tmp_path / "checkpoint_final.pth")
    record = read_checkpoint(path)
    assert record.format == "fomo_nn_training" and record.network.encoder == "plain_conv"
    assert record.network.features_per_stage == [8, 16, 32] and record.preprocessing.channels == 1
    assert record.preprocessing.spacing == [1.0, 1.0, 1.0] and record.preprocessing.patch_size == [32, 32, 32]
    assert [n.scheme for n in record.preprocessing.normalization] == ["zscore_foreground"]
    assert record.provenance["method"] == "mae" and record.provenance["epoch"] == 4
    assert sorted(record.encoder) == sorted(encoder) and all(torch.equal(record.encoder[k], v) for k, v in encoder.items())
    assert record.weights is not None and any(k.startswith("decoder") or k.startswith("mask") for k in record.weights)

    for output_format, out in (("fomo_nn", tmp_path / "encoder.pth"), ("safetensors", tmp_path / "hf" / "model.safetensors")):
        assert export_main([str(path), str(out), "--format", output_format]) == 0
        exported = read_checkpoint(out)
        assert exported.network == record.network and exported.preprocessing == record.preprocessing
        assert sorted(exported.encoder) == sorted(encoder)
        assert all(torch.equal(exported.encoder[k], v) for k, v in encoder.items())
        assert exported.adaptation.method == "mae" and exported.weights is None
    assert exported.format == "safetensors_config" and exported.provenance["layout"] == "fomo_nn_encoder"
    assert (tmp_path / "hf" / "config.json").is_file()


def test_a_safetensors_file_without_its_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"encoder.w": torch.zeros(2)}, str(path))
    with pytest.raises(BadInputError, match="needs the config.json beside it") as error:
        read_checkpoint(path)
    assert str(path) in str(error.value)
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    with pytest.raises(BadInputError, match="names no architecture fomo_nn reads"):
        read_checkpoint(path)


# ------------------------------------------------------------------ bad --pretrained: one message, nothing written
def _nnssl_file(path: Path, channels: int, arch_class_name: str = "ResidualEncoderUNet") -> Path:
    """An nnssl-layout checkpoint (test_nnssl_interop.py writes it as nnssl does)."""
    from test_nnssl_interop import nnssl_checkpoint_file

    return nnssl_checkpoint_file(path, channels=channels, arch_class_name=arch_class_name)[0]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return build_preprocessed(tmp_path_factory.mktemp("pre"), "segmentation", num_cases=6, shape=(32, 32, 32),
                              channels=1)


def test_bad_pretrained_files_are_refused_by_fomo_nn_train_before_anything_is_written(tiny_dataset, tmp_path,
                                                                                       monkeypatch, capsys):
    monkeypatch.setenv("fomo_nn_preprocessed", str(tiny_dataset.parent))
    monkeypatch.setenv("fomo_nn_results", str(tmp_path / "results"))
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    whole = _nnssl_file(tmp_path / "resenc.pth", channels=1)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[:4096])
    unknown = tmp_path / "unknown.pth"
    torch.save({"weights": {"w": torch.zeros(1)}}, unknown)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1)}, pickled)
    cases = {
        "resenc_into_plain_conv": (whole, "holds a 'residual' encoder"),
        "four_channel_stem": (_nnssl_file(tmp_path / "four.pth", 4, "PlainConvUNet"), "stem takes 4 input channels"),
        "truncated": (truncated, "truncated or not a torch file"),
        "unknown": (unknown, "unknown checkpoint format"),
        "needs_unpickling": (pickled, "--trust-checkpoint"),
    }
    for name, (path, problem) in cases.items():
        out = tmp_path / "runs" / name
        code = train_main(["900", "0", "--pretrained", str(path), "--epochs", "1", "--iters-per-epoch", "1",
                           "--output", str(out)])
        error = capsys.readouterr().err
        assert code == 2, name
        assert str(path) in error and problem in error, (name, error)
        assert not out.exists(), f"{name}: {sorted(p.name for p in out.iterdir())} written"


def test_bad_plans_like_files_are_refused_and_no_plans_are_written(tmp_path, monkeypatch, capsys):
    from builders import make_segmentation_dataset
    from test_nnssl_interop import nnssl_checkpoint_file

    from fomo_nn.cli.plan_and_preprocess import main as plan_main

    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    make_segmentation_dataset(tmp_path / "raw", dataset_id=7, num_cases=3, channels=("t1",))
    pickled = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1)}, pickled)
    primus, _ = nnssl_checkpoint_file(tmp_path / "primus.pth")
    state = torch.load(primus, weights_only=True)
    state["nnssl_adaptation_plan"]["architecture_plans"] = {"arch_class_name": "PrimusM", "arch_kwargs": None,
                                                            "arch_kwargs_requiring_import": None}
    torch.save(state, primus)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(primus.read_bytes()[:2000])
    for path, problem in ((pickled, "argparse.Namespace"), (primus, "not supported yet"),
                          (truncated, "truncated or not a torch file")):
        assert plan_main(["-d", "7", "--plans-like", str(path), "-np", "1", "--no-progress"]) != 0
        captured = capsys.readouterr()
        message = captured.err + captured.out
        assert str(path) in message and problem in message, message
        assert not (tmp_path / "pre" / "Dataset007_Seg" / "plans.json").exists()
