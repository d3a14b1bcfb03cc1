"""The compute-ladder harness (benchmarks/compute_ladder.py) and the margins it reports.

End to end at a tiny size (tiny budget, a few steps, rungs 1 and 2, one method, task 3, no finetuning):
a run stopped after some units and continued gives the same results file as an uninterrupted run
(timings aside), and a rerun redoes nothing.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fomo_nn.evaluation.margins import paired_margin
from fomo_nn.evaluation.metrics import auroc

ROOT = Path(__file__).resolve().parents[1]


def _ladder():
    spec = importlib.util.spec_from_file_location("compute_ladder", ROOT / "benchmarks" / "compute_ladder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ margins
def test_auroc_margin_is_the_difference_of_seed_mean_aurocs():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(60), np.zeros(40)]
    a = labels[:, None] * 0.8 + rng.normal(size=(100, 3))
    b = labels[:, None] * 0.2 + rng.normal(size=(100, 2))
    margin = paired_margin("auroc", a, b, labels, num_resamples=500, num_permutations=2000, seed=0)
    expected_a = np.mean([auroc(labels.astype(int), a[:, s]) for s in range(3)])
    expected_b = np.mean([auroc(labels.astype(int), b[:, s]) for s in range(2)])
    assert margin.pretrained == pytest.approx(expected_a, abs=1e-12)
    assert margin.scratch == pytest.approx(expected_b, abs=1e-12)
    assert margin.margin == pytest.approx(expected_a - expected_b, abs=1e-12)
    assert 0 < margin.low < margin.margin < margin.high
    assert margin.p_value < 0.01
    assert margin.num_seeds == (3, 2)


def test_identical_sides_have_no_margin():
    rng = np.random.default_rng(2)
    targets = rng.uniform(20, 80, 50)
    predictions = targets[:, None] + rng.normal(0, 5, (50, 3))
    margin = paired_margin("mae", predictions, predictions.copy(), targets, num_resamples=300, num_permutations=500)
    assert margin.margin == 0.0 and margin.low == 0.0 and margin.high == 0.0
    assert margin.p_value == 1.0


def test_mae_margin_is_positive_when_pretraining_errs_less():
    rng = np.random.default_rng(3)
    targets = rng.uniform(20, 80, 200)
    good = targets[:, None] + rng.normal(0, 3, (200, 3))
    bad = targets[:, None] + rng.normal(0, 9, (200, 3))
    margin = paired_margin("mae", good, bad, targets, num_resamples=500, num_permutations=2000)
    assert margin.pretrained < margin.scratch
    assert margin.margin == pytest.approx(margin.scratch - margin.pretrained)
    assert margin.low > 0 and margin.p_value < 0.01
    worse = paired_margin("mae", bad, good, targets, num_resamples=500, num_permutations=2000)
    assert worse.margin == pytest.approx(-margin.margin) and worse.high < 0


def test_dice_margin_without_a_difference_is_not_significant():
    rng = np.random.default_rng(4)
    dice_a, dice_b = rng.uniform(0, 1, (80, 3)), rng.uniform(0, 1, (80, 3))
    margin = paired_margin("dice", dice_a, dice_b, num_resamples=500, num_permutations=2000)
    assert margin.low < 0 < margin.high
    assert margin.p_value > 0.05
    assert margin.margin == pytest.approx(dice_a.mean() - dice_b.mean())


def test_margin_refuses_mismatched_cases():
    with pytest.raises(ValueError, match="cases"):
        paired_margin("dice", np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="reference"):
        paired_margin("mae", np.ones(5), np.ones(5))


# ------------------------------------------------------------------ results file
def test_results_file_skips_a_torn_last_line(tmp_path):
    ladder = _ladder()
    path = tmp_path / "ladder.jsonl"
    path.write_text(json.dumps({"key": "a", "kind": "x"}) + "\n" + '{"key": "b", "ki')
    results = ladder.ResultsFile(path)
    assert "a" in results and "b" not in results
    results.add({"key": "b", "kind": "x"})
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_a_rung_left_only_in_the_latest_checkpoint_is_recovered(tmp_path):
    import torch

    ladder = _ladder()
    torch.save({"epoch": 4, "network": {}}, tmp_path / "checkpoint_latest.pth")
    epochs_of = {1: 2, 2: 4}
    assert ladder.recover_rung(tmp_path, epochs_of) == 2
    assert ladder.rung_path(tmp_path, 2).read_bytes() == (tmp_path / "checkpoint_latest.pth").read_bytes()
    assert not ladder.rung_path(tmp_path, 1).exists()
    assert ladder.recover_rung(tmp_path, epochs_of) is None  # already there


# ------------------------------------------------------------------ end to end
TIMINGS = {"wall_s", "seconds", "train_seconds"}
TINY = ["--budget", "tiny", "--methods", "mae", "--rungs", "1", "2", "--random-encoders", "2", "--tasks", "3",
        "--test-size", "preset", "--bootstrap", "200", "--skip-finetune"]


def _rows(path: Path) -> dict:
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows[row["key"]] = {k: v for k, v in row.items() if k not in TIMINGS and not k.endswith("file")
                            and k != "checkpoint"}
    return rows


def _close(a, b) -> bool:
    """Equal up to float round-off (BLAS threads may sum in another order between two processes)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-9)
    return a == b


@pytest.fixture
def ladder_env(tmp_path, monkeypatch):
    for name in ("fomo_nn_raw", "fomo_nn_preprocessed", "fomo_nn_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    return tmp_path


def test_a_stopped_ladder_continues_to_the_same_results(ladder_env):
    ladder = _ladder()
    whole, stopped = ladder_env / "whole", ladder_env / "stopped"
    assert ladder.main([str(whole), *TINY]) == 0
    rows = _rows(whole / "ladder.jsonl")
    assert set(rows) == {"probe/task3/random:0", "probe/task3/random:1", "pretrain/mae/rung1", "pretrain/mae/rung2",
                         "probe/task3/mae@1", "probe/task3/mae@2", "rung/mae"}
    assert rows["pretrain/mae/rung2"]["steps"] == 2 * rows["pretrain/mae/rung1"]["steps"]
    probe = rows["probe/task3/mae@2"]
    assert probe["test"]["low"] <= probe["test"]["value"] <= probe["test"]["high"]
    assert set(probe["vs_random"]) == {"all", *probe["sites"]}
    assert (whole / "ladder.png").stat().st_size > 0 and "mae@2" in (whole / "ladder.md").read_text()

    # the same run, stopped after the first pretraining rung's row, then continued: data stages copied
    for name in ("sample_data", "fomo_nn_raw", "fomo_nn_preprocessed", "plans", ".stages"):
        shutil.copytree(whole / name, stopped / name)
    assert ladder.main([str(stopped), *TINY, "--stop-after", "3"]) == 3
    assert len(_rows(stopped / "ladder.jsonl")) == 3
    assert ladder.main([str(stopped), *TINY]) == 2  # a second start without --continue is refused
    assert ladder.main([str(stopped), *TINY, "--continue"]) == 0
    assert _close(_rows(stopped / "ladder.jsonl"), rows)

    # a rerun finds everything done: no row is added, no training runs
    before = (stopped / "ladder.jsonl").read_text()
    assert ladder.main([str(stopped), *TINY, "--continue"]) == 0
    assert (stopped / "ladder.jsonl").read_text() == before
