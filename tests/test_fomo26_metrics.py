"""FOMO26 segmentation scoring equals the organisers' rules (fomo26/fomo-metrics segmentation.py and tests @ 5a71db2).

fomo-metrics is not on the package registry, so its rules are checked case by case, in our words:
Dice of two empty masks 1, of one empty mask 0; NSD of two empty masks 0, of one empty mask 0,
otherwise DeepMind surface-distance's surface Dice at 1 mm with the voxel spacing (the package it
calls, a test dependency here; our NSD agrees with it within 1e-3, test_evaluation_surfaces.py);
per class `mask == label` for the labels given, background never scored; an unscorable prediction
(another grid) scores the worst value 0 instead of raising. Cases include those of fomo-metrics'
tests/test_segmentation.py (shape 32 x 32 x 16, spacing 1 x 1 x 1.5 mm, its cubes).
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import surface_distance

from fomo_nn.cli.evaluate import main as evaluate_main
from fomo_nn.evaluation.multiclass import class_mean, per_class_scores
from fomo_nn.evaluation.policies import empty_pair_value

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # surface-distance's scipy namespaces
SHAPE = (32, 32, 16)
SPACING = (1.0, 1.0, 1.5)
NSD_AGREEMENT = 1e-3


@pytest.fixture(autouse=True)
def reference_on_numpy2(monkeypatch):
    """surface-distance 0.1 predates NumPy 2: it writes np.Inf where one mask is empty."""
    monkeypatch.setattr(np, "Inf", np.inf, raising=False)


def organisers_scores(reference: np.ndarray, prediction: np.ndarray, spacing, label: int) -> tuple[float, float]:
    """(Dice, NSD) of one class by the FOMO26 rules, NSD from DeepMind's surface-distance itself."""
    ref, pred = reference == label, prediction == label
    if not ref.any() and not pred.any():
        return 1.0, 0.0
    if not ref.any() or not pred.any():
        return 0.0, 0.0
    dice = 2.0 * np.logical_and(ref, pred).sum() / (ref.sum() + pred.sum())
    distances = surface_distance.compute_surface_distances(ref, pred, spacing)
    return float(dice), float(surface_distance.compute_surface_dice_at_tolerance(distances, 1.0))


def _volume(*boxes) -> np.ndarray:
    """Labels painted box by box: (label, x0, x1, y0, y1, z0, z1)."""
    volume = np.zeros(SHAPE, np.int32)
    for label, x0, x1, y0, y1, z0, z1 in boxes:
        volume[x0:x1, y0:y1, z0:z1] = label
    return volume


EMPTY = _volume()
CUBE = _volume((1, 8, 24, 8, 24, 4, 12))  # fomo-metrics' perfect_binary
MULTI = _volume((1, 4, 16, 4, 16, 2, 8), (2, 16, 28, 16, 28, 8, 14))  # its multiclass_masks
# name, reference, prediction, spacing, {label: (Dice, NSD)} the rules give (None: surface-distance decides)
CASES = [
    ("both empty", EMPTY, EMPTY, SPACING, {1: (1.0, 0.0)}),
    ("prediction empty", CUBE, EMPTY, SPACING, {1: (0.0, 0.0)}),
    ("reference empty", EMPTY, CUBE, SPACING, {1: (0.0, 0.0)}),
    ("perfect binary", CUBE, CUBE, SPACING, {1: (1.0, 1.0)}),
    ("disjoint", _volume((1, 24, 32, 24, 32, 12, 16)), _volume((1, 0, 8, 0, 8, 0, 4)), SPACING, {1: (0.0, 0.0)}),
    ("perfect multiclass", MULTI, MULTI, SPACING, {1: (1.0, 1.0), 2: (1.0, 1.0)}),
    ("class 2 absent in both", _volume((1, 4, 16, 4, 16, 2, 8)), _volume((1, 4, 16, 4, 16, 2, 8)), SPACING,
     {1: (1.0, 1.0), 2: (1.0, 0.0)}),
    ("class 2 only predicted", _volume((1, 4, 16, 4, 16, 2, 8)), MULTI, SPACING, {1: (1.0, 1.0), 2: (0.0, 0.0)}),
    # fomo-metrics' test_all_wrong expects NSD 0 here, but the two cubes touch at one corner, so
    # surface-distance (which its function calls) gives 0.0031: the surface library decides, as in theirs
    ("class 1 all wrong", _volume((1, 4, 16, 4, 16, 2, 8)), _volume((1, 16, 28, 16, 28, 8, 14)), SPACING,
     {1: (0.0, None), 2: (1.0, 0.0)}),
    ("partial, anisotropic", MULTI, _volume((1, 5, 16, 4, 14, 2, 9), (2, 17, 28, 15, 27, 9, 14)), SPACING,
     {1: None, 2: None}),
    ("partial, 0.5 x 0.5 x 3 mm", MULTI, _volume((1, 4, 15, 6, 16, 3, 8), (2, 16, 26, 16, 28, 7, 13)),
     (0.5, 0.5, 3.0), {1: None, 2: None}),
]


@pytest.mark.parametrize("name, reference, prediction, spacing, expected", CASES, ids=[c[0] for c in CASES])
def test_per_class_scores_follow_the_fomo26_rules(name, reference, prediction, spacing, expected):
    scores = per_class_scores(reference, prediction, spacing, tuple(expected), 1.0, "fomo26")
    assert set(scores) == set(expected)  # the labels given, background never scored
    for label, want in expected.items():
        oracle = organisers_scores(reference, prediction, spacing, label)
        for stated, value in zip(want or (None, None), oracle):
            if stated is not None:
                assert value == pytest.approx(stated)  # the stated rule and the oracle agree
        dice, nsd = scores[label]
        assert dice == pytest.approx(oracle[0], abs=1e-12)
        assert nsd == pytest.approx(oracle[1], abs=NSD_AGREEMENT)
    if name.startswith("partial"):
        assert all(0.0 < scores[label][1] < 1.0 and 0.0 < scores[label][0] < 1.0 for label in scores)


def test_empty_rules_differ_by_policy_and_background_is_never_scored():
    assert (empty_pair_value("fomo26", "dice"), empty_pair_value("fomo26", "nsd")) == (1.0, 0.0)
    assert (empty_pair_value("score", "dice"), empty_pair_value("score", "nsd")) == (1.0, 1.0)
    assert np.isnan(empty_pair_value("exclude", "nsd"))
    with pytest.raises(ValueError, match="background"):
        per_class_scores(MULTI, MULTI, SPACING, (0, 1), 1.0, "fomo26")
    assert class_mean([1.0, 0.0]) == 0.5 and class_mean([np.nan, 0.25]) == 0.25 and np.isnan(class_mean([np.nan]))


def _save(path, mask, spacing=SPACING):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.diag([*spacing, 1.0])), str(path))


def test_fomo26_task4_summary_averages_classes_per_case_and_scores_a_broken_prediction_worst(tmp_path):
    """Through fomo_nn_evaluate: a case is the mean of its classes, the task the mean of its cases; a
    prediction on another grid scores 0 (FOMO26) where FOMO25's policy stops with the file named."""
    pairs = {"sub-01": (MULTI, MULTI), "sub-02": (_volume((1, 4, 16, 4, 16, 2, 8)), MULTI),
             "sub-03": (EMPTY, EMPTY), "sub-04": (MULTI, _volume((1, 5, 16, 4, 14, 2, 9), (2, 17, 28, 15, 27, 9, 14)))}
    for case, (reference, prediction) in pairs.items():
        _save(tmp_path / "ref" / "labels" / case / "ses-01" / "seg.nii.gz", reference)
        _save(tmp_path / "pred" / f"{case}.nii.gz", prediction)
    _save(tmp_path / "ref" / "labels" / "sub-05" / "ses-01" / "seg.nii.gz", MULTI)
    _save(tmp_path / "pred" / "sub-05.nii.gz", np.zeros((30, 32, 16), np.uint8))  # another grid
    output = tmp_path / "summary.json"
    with pytest.warns(UserWarning, match="could not be scored"):
        code = evaluate_main(["--edition", "fomo26", "--task", "4", "-r", str(tmp_path / "ref"),
                              "-p", str(tmp_path / "pred"), "-o", str(output), "--quiet"])
    assert code == 0
    summary = json.loads(output.read_text())
    records = {r["case_id"]: r for r in summary["per_case"]}
    expected = {}
    for case, (reference, prediction) in pairs.items():
        per_class = [organisers_scores(reference, prediction, SPACING, label) for label in (1, 2)]
        expected[case] = (np.mean([d for d, _ in per_class]), np.mean([n for _, n in per_class]))
    expected["sub-05"] = (0.0, 0.0)
    for case, (dice, nsd) in expected.items():
        assert records[case]["dice"] == pytest.approx(dice, abs=1e-12)
        assert records[case]["nsd"] == pytest.approx(nsd, abs=NSD_AGREEMENT)
    assert records["sub-03"]["dice"] == 1.0 and records["sub-03"]["nsd"] == 0.0  # both empty, both classes
    assert "shape" in records["sub-05"]["failure"] and records["sub-05"]["dice_per_class"] == {"1": 0.0, "2": 0.0}
    assert summary["metrics"]["dice"] == pytest.approx(np.mean([d for d, _ in expected.values()]), abs=1e-12)
    nerve = np.mean([records[c]["dice_per_class"]["1"] for c in records])
    assert summary["class_metrics"]["nerve"]["dice"] == pytest.approx(nerve)
    assert summary["empty_pair"] == "fomo26"
    # FOMO25's rule for the same files: the bad prediction is an error naming the file
    assert evaluate_main(["--task-type", "segmentation", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"),
                          "-o", str(tmp_path / "other.json"), "--quiet"]) == 1


def test_a_missing_classification_case_scores_the_worst_probability_in_fomo26_and_one_half_in_fomo25(tmp_path):
    """fomo-metrics compute_auroc (classification.py @ 505d699) replaces a missing score by the worst for its
    label; FOMO25 scores it 0.5. Labels 0 0 1 1, predictions .2 .4 .9 and none for the last positive."""
    for index, label in enumerate((0, 0, 1, 1)):
        folder = tmp_path / "ref" / "labels" / f"sub-0{index + 1}" / "ses-01"
        folder.mkdir(parents=True)
        (folder / "label.txt").write_text(f"{label}\n")
    (tmp_path / "pred").mkdir()
    for index, probability in enumerate((0.2, 0.4, 0.9)):
        (tmp_path / "pred" / f"sub-0{index + 1}.txt").write_text(f"{probability}\n")
    aurocs = {}
    for edition_name in ("fomo26", "fomo25"):
        output = tmp_path / f"{edition_name}.json"
        assert evaluate_main(["--edition", edition_name, "--task", "1", "-r", str(tmp_path / "ref"),
                              "-p", str(tmp_path / "pred"), "-o", str(output), "--quiet"]) == 0
        summary = json.loads(output.read_text())
        missing = next(r for r in summary["per_case"] if r["case_id"] == "sub-04")
        aurocs[edition_name] = (summary["metrics"]["auroc"], missing["probability"])
    # FOMO26: the missing positive at 0 sits below both negatives: it wins 0 of 2 pairs, the other positive 2 of 2
    assert aurocs["fomo26"] == (pytest.approx(0.5), 0.0)
    # FOMO25: at 0.5 it beats the negative at 0.2 and 0.4: 4 of 4 pairs
    assert aurocs["fomo25"] == (pytest.approx(1.0), 0.5)


def test_a_constant_age_prediction_has_the_fomo26_worst_pearson_r(tmp_path):
    """fomo-metrics compute_correlation (regression.py @ 5a71db2): r of a constant input is -100, so a constant
    predictor ranks below an anti-correlated one; FOMO25 (r = 0) ranks it above."""
    from fomo_nn.evaluation.results import TaskTable

    targets = np.array([20.0, 40.0, 60.0, 80.0])
    predictions = np.stack([np.full(4, 50.0), 100.0 - targets], axis=1)  # constant; r = -1
    values = {}
    for key in ("fomo26_task3", "regression"):
        table = TaskTable(key, [f"c{i}" for i in range(4)], np.ones(2, bool), {"prediction": predictions}, targets)
        values[key] = table.point_metrics()["pearson_r"]
    np.testing.assert_allclose(values["fomo26_task3"], [-100.0, -1.0])
    np.testing.assert_allclose(values["regression"], [0.0, -1.0])
    for index, age in enumerate(targets):
        folder = tmp_path / "ref" / f"sub-0{index + 1}" / "ses-01"
        folder.mkdir(parents=True)
        (folder / "labels.txt").write_text(f"{age}\n")
        (tmp_path / "pred").mkdir(exist_ok=True)
        (tmp_path / "pred" / f"sub-0{index + 1}.txt").write_text("50\n")
    output = tmp_path / "age.json"
    with pytest.warns(UserWarning, match="reporting r = -100"):
        assert evaluate_main(["--edition", "fomo26", "--task", "3", "-r", str(tmp_path / "ref"),
                              "-p", str(tmp_path / "pred"), "-o", str(output), "--quiet"]) == 0
    assert json.loads(output.read_text())["metrics"] == {"mae": 20.0, "pearson_r": -100.0}
