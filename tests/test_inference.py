"""fomo_nn_predict: geometry of the outputs, fold ensembling, input layouts, bad input, reruns."""
from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from fomo_nn.cli.predict import main as predict_main
from fomo_nn.inference.case_prediction import TargetNormalization
from fomo_nn.inference.inputs import discover_cases
from fomo_nn.inference.model_folder import ModelFolderName, load_ensemble, model_folder_from_dataset
from fomo_nn.inference.predictor import EnsemblePredictor, PredictionSettings
from fomo_nn.io import BadInputError
from fomo_nn.networks import build_finetuning_network
from fomo_nn.plans import save_plans
from fomo_nn.checkpoints.training_state import save_checkpoint
from preprocessed_builders import tiny_plans

REGRESSION_NORMALIZATION = TargetNormalization(mean=55.0, std=12.5)
TASK_CHANNELS = {"classification": ["dwi_b1000", "flair", "adc", "swi_or_t2s"],
                 "segmentation": ["dwi_b1000", "flair", "swi_or_t2s"], "regression": ["t1", "t2"]}


# ------------------------------------------------------------------------------------------------ builders
def write_model(root: Path, task_type: str, channel_names=None, folds=(0, 1), patch=(32, 32, 32),
                trainer: str | None = None, tag: str | None = None) -> Path:
    """A model folder as the finetuning trainers write it (random weights, a different seed per fold)."""
    channel_names = channel_names or TASK_CHANNELS[task_type]
    plans = tiny_plans(task_type, list(channel_names), patch=patch)
    trainer = trainer or task_type
    folder = Path(root) / "Dataset900_Tiny" / str(ModelFolderName(trainer, plans.plans_name, plans.configuration, tag))
    for fold in folds:
        torch.manual_seed(100 + fold)
        network = build_finetuning_network(plans)
        with torch.no_grad():  # spread the head's outputs so folds disagree clearly
            for name, parameter in network.named_parameters():
                if "head" in name:
                    parameter.mul_(20.0)
        extra = {"target_normalization": REGRESSION_NORMALIZATION.to_dict()} if task_type == "regression" else {}
        save_checkpoint({"network": network.state_dict(), "plans": plans.to_json(), "trainer": trainer,
                         "fold": str(fold), "extra": extra}, folder / f"fold_{fold}" / "checkpoint_final.pth")
    save_plans(plans, folder / "plans.json")
    return folder


def rotation(degrees_z: float, degrees_x: float = 0.0) -> np.ndarray:
    a, b = math.radians(degrees_z), math.radians(degrees_x)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


def make_affine(spacing, flips=(1, 1, 1), degrees_z=0.0, degrees_x=0.0, origin=(40.0, -20.0, 10.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation(degrees_z, degrees_x) @ np.diag(flips) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


GRIDS = {  # name: (shape, affine)
    "lps": ((40, 44, 36), make_affine((1.0, 1.0, 1.0), flips=(-1, -1, 1))),
    "oblique": ((40, 44, 36), make_affine((1.0, 1.0, 1.0), degrees_z=25.0, degrees_x=10.0)),
    "anisotropic": ((44, 40, 12), make_affine((0.9, 1.1, 3.5), flips=(-1, -1, 1), degrees_z=12.0)),
}


def head_and_blob(shape, seed: int = 0, blob_centre=(0.3, -0.2, 0.1)):
    """(int16 image, bool blob mask): an ellipsoidal 'brain' with a bright blob, in voxel space."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = np.sqrt(((grid / np.array([0.85, 0.9, 0.8])[:, None, None, None]) ** 2).sum(0)) < 1
    blob = ((grid - np.array(blob_centre)[:, None, None, None]) ** 2).sum(0) < 0.1
    image = brain * (400 + 30 * rng.standard_normal(shape) + 600 * blob)
    return np.clip(image, 0, None).astype(np.int16), blob & brain


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


def write_raw_case(folder: Path, case_id: str, channels: int, shape, affine, seed=0) -> np.ndarray:
    image, blob = head_and_blob(shape, seed)
    for channel in range(channels):
        write_nifti(folder / f"{case_id}_{channel:04d}.nii.gz", image, affine)
    return blob


def write_fomo_subject(folder: Path, subject: str, sequences, shape=(40, 44, 36), affine=None, seed=0) -> Path:
    image, _ = head_and_blob(shape, seed)
    affine = GRIDS["lps"][1] if affine is None else affine
    for sequence in sequences:
        write_nifti(folder / subject / "ses_1" / f"{sequence}.nii.gz", image, affine)
    return folder / subject / "ses_1"


class ThresholdNet(nn.Module):
    """A segmentation 'network' whose foreground is (normalized channel 0 > threshold): exact and local,
    so the predicted mask must land on the bright blob wherever the pipeline resamples and reorients."""

    def __init__(self, threshold: float = 2.0):
        super().__init__()
        self.threshold = threshold
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the predictor a device

    def forward(self, x):
        foreground = (x[:, :1] - self.threshold) * 10.0 + self.anchor
        return torch.cat([torch.zeros_like(foreground), foreground], dim=1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# ------------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_mask_lands_in_input_geometry(tmp_path, grid):
    shape, affine = GRIDS[grid]
    model = write_model(tmp_path / "results", "segmentation", ["flair"], folds=(0,))
    blob = write_raw_case(tmp_path / "in", "case_1", 1, shape, affine)
    ensemble = load_ensemble(model)
    ensemble.folds[0].network = ThresholdNet()
    predictor = EnsemblePredictor(ensemble, PredictionSettings(tta=True, progress=False))
    report = predictor.predict_folder_cases(discover_cases(tmp_path / "in", ["flair"]), tmp_path / "out")
    assert report.ok and report.predicted == ["case_1"]
    source = nib.load(str(tmp_path / "in" / "case_1_0000.nii.gz"))
    mask = nib.load(str(tmp_path / "out" / "case_1.nii.gz"))
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-6)
    np.testing.assert_allclose(mask.get_qform(), source.get_qform(), atol=1e-6)
    assert nib.aff2axcodes(mask.affine) == nib.aff2axcodes(source.affine)
    values = np.asanyarray(mask.dataobj)
    assert mask.get_data_dtype() == np.uint8 and set(np.unique(values)) == {0, 1}
    assert dice(values == 1, blob) > 0.85  # in the input's own voxel order, not RAS


def test_cli_raw_layout_probabilities_rerun_and_overwrite(tmp_path, capsys):
    shape, affine = GRIDS["anisotropic"]
    model = write_model(tmp_path / "results", "segmentation", ["flair", "t1"], folds=(0,))
    write_raw_case(tmp_path / "in", "case_1", 2, shape, affine)
    arguments = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model), "--no-tta",
                 "--save-probabilities", "--device", "cpu", "--no-progress"]
    assert predict_main(arguments) == 0
    mask_path = tmp_path / "out" / "case_1.nii.gz"
    mask = nib.load(str(mask_path))
    assert mask.shape == shape and np.allclose(mask.affine, affine)
    probabilities = np.load(tmp_path / "out" / "case_1.npz")["probabilities"]
    assert probabilities.shape == (2, *shape)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(probabilities, 0), np.asanyarray(mask.dataobj))
    float_map = nib.load(str(tmp_path / "out" / "case_1_probabilities.nii.gz"))
    assert float_map.shape == (*shape, 2) and np.allclose(float_map.affine, affine)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_1.nii.gz", "case_1.npz",
                                                                     "case_1_probabilities.nii.gz"]
    stamp = mask_path.stat().st_mtime_ns
    capsys.readouterr()
    assert predict_main(arguments) == 0
    assert mask_path.stat().st_mtime_ns == stamp and "1 skipped" in capsys.readouterr().err
    assert predict_main(arguments + ["--overwrite"]) == 0
    assert mask_path.stat().st_mtime_ns != stamp


# ------------------------------------------------------------------------------------------------ ensembles
def run_folds(model: Path, folds, input_dir: Path, output: Path, **settings):
    ensemble = load_ensemble(model, folds)
    predictor = EnsemblePredictor(ensemble, PredictionSettings(progress=False, **settings))
    report = predictor.predict_folder_cases(discover_cases(input_dir, ensemble.plans.channel_names), output)
    assert report.ok, report.failed
    return report


@pytest.mark.parametrize("task_type", ["classification", "regression"])
def test_fold_ensemble_is_the_mean_of_single_folds(tmp_path, task_type):
    model = write_model(tmp_path / "results", task_type)
    for index in range(2):
        write_fomo_subject(tmp_path / "in", f"sub_{index}", ["flair", "adc", "dwi_b1000", "t2s", "t1", "t2"],
                           seed=index)
    rows = {}
    for folds in ([0, 1], [0], [1]):
        out = tmp_path / f"out_{'_'.join(map(str, folds))}"
        rows[tuple(folds)] = run_folds(model, folds, tmp_path / "in", out).values
        lines = (out / "predictions.csv").read_text().splitlines()
        assert lines[0] == ("case_id,value,prob_negative,prob_positive" if task_type == "classification"
                            else "case_id,value")
        assert [line.split(",")[0] for line in lines[1:]] == ["sub_0", "sub_1"]
    columns = ["prob_negative", "prob_positive"] if task_type == "classification" else ["value"]
    for case in ("sub_0", "sub_1"):
        for column in columns:
            single = [float(rows[(f,)][case][column]) for f in (0, 1)]
            assert abs(single[0] - single[1]) > 1e-4  # the folds really disagree
            assert float(rows[(0, 1)][case][column]) == pytest.approx(np.mean(single), abs=1e-6)
        text = (tmp_path / "out_0_1" / f"{case}.txt").read_text().strip()
        expected = rows[(0, 1)][case]["prob_positive" if task_type == "classification" else "value"]
        assert float(text) == float(expected)
        if task_type == "regression":  # in years (de-normalized), not truncated to an integer
            assert abs(float(text) - REGRESSION_NORMALIZATION.mean) < 10 * REGRESSION_NORMALIZATION.std
            assert float(text) != int(float(text))
        else:
            assert 0.0 <= float(text) <= 1.0


def test_segmentation_ensemble_probabilities_are_the_mean(tmp_path):
    model = write_model(tmp_path / "results", "segmentation", ["flair"])
    shape, affine = GRIDS["oblique"]
    write_raw_case(tmp_path / "in", "case_1", 1, shape, affine)
    maps = {}
    for folds in ([0, 1], [0], [1]):
        out = tmp_path / f"out_{len(folds)}_{folds[0]}"
        run_folds(model, folds, tmp_path / "in", out, tta=False, save_probabilities=True)
        maps[tuple(folds)] = np.load(out / "case_1.npz")["probabilities"]
    assert np.abs(maps[(0,)] - maps[(1,)]).max() > 1e-3
    np.testing.assert_allclose(maps[(0, 1)], (maps[(0,)] + maps[(1,)]) / 2, atol=1e-5)


# ------------------------------------------------------------------------------------------------ inputs
def test_fomo_layout_maps_sequences_to_model_channels(tmp_path):
    write_fomo_subject(tmp_path / "a", "sub_1", ["flair", "dwi_b1000", "t2s"])
    write_fomo_subject(tmp_path / "a", "sub_2", ["flair", "dwi_b1000", "swi", "t2s"])
    cases = discover_cases(tmp_path / "a", TASK_CHANNELS["segmentation"])
    assert [c.case_id for c in cases] == ["sub_1", "sub_2"]
    assert [Path(f).name for f in cases[0].image_files] == ["dwi_b1000.nii.gz", "flair.nii.gz", "t2s.nii.gz"]
    assert cases[1].sequences["swi_or_t2s"] == "swi"  # swi wins when both exist, as in the FOMO task rule
    # the converter's layout with a `preprocessed/` level works as well
    write_fomo_subject(tmp_path / "b" / "preprocessed", "sub_7", ["t1", "t2"])
    assert [c.case_id for c in discover_cases(tmp_path / "b", ["t1", "t2"])] == ["sub_7"]


def test_raw_layout_reports_missing_channel(tmp_path):
    shape, affine = GRIDS["lps"]
    write_raw_case(tmp_path, "good", 2, shape, affine)
    write_raw_case(tmp_path, "half", 1, shape, affine)
    cases = {c.case_id: c for c in discover_cases(tmp_path, ["flair", "t1"])}
    assert cases["good"].problem is None and len(cases["good"].image_files) == 2
    assert "lacks channel file(s) 0001 (t1)" in str(cases["half"].problem)


def test_bad_cases_are_named_and_the_others_predicted(tmp_path, capsys):
    model = write_model(tmp_path / "results", "regression", folds=(0,))
    write_fomo_subject(tmp_path / "in", "sub_1", ["t1", "t2"])
    write_fomo_subject(tmp_path / "in", "sub_2", ["t1"])  # missing t2
    nan_dir = write_fomo_subject(tmp_path / "in", "sub_3", ["t1", "t2"])
    image, _ = head_and_blob((40, 44, 36))
    poisoned = image.astype(np.float32)
    poisoned[3, 3, 3] = np.nan
    write_nifti(nan_dir / "t2.nii.gz", poisoned, GRIDS["lps"][1])
    empty_dir = write_fomo_subject(tmp_path / "in", "sub_4", ["t1", "t2"])
    write_nifti(empty_dir / "t1.nii.gz", np.zeros((40, 44, 36), np.int16), GRIDS["lps"][1])
    (empty_dir.parent.parent / "sub_5" / "ses_1").mkdir(parents=True)
    (empty_dir.parent.parent / "sub_5" / "ses_1" / "t1.nii.gz").write_bytes(b"not a nifti at all" * 4)
    write_nifti(empty_dir.parent.parent / "sub_5" / "ses_1" / "t2.nii.gz", image, GRIDS["lps"][1])
    out = tmp_path / "out"
    code = predict_main(["-i", str(tmp_path / "in"), "-o", str(out), "-m", str(model), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "4 FAILED" in err and "1 predicted" in err
    assert "case sub_2" in err and "missing sequence t2" in err
    assert "case sub_3" in err and "t2.nii.gz" in err and "NaN" in err
    assert "case sub_4" in err and "empty" in err
    assert "case sub_5" in err and "unreadable" in err
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "sub_1.txt"]  # nothing half-written
    assert (out / "predictions.csv").read_text().splitlines()[1].startswith("sub_1,")


def test_misaligned_channels_resampled_with_warning_or_refused(tmp_path, capsys):
    model = write_model(tmp_path / "results", "regression", folds=(0,))
    image, _ = head_and_blob((40, 44, 36))
    session = tmp_path / "in" / "sub_1" / "ses_1"
    write_nifti(session / "t1.nii.gz", image, GRIDS["lps"][1])
    shifted = GRIDS["lps"][1].copy()
    shifted[:3, 3] += [2.0, 0.0, 0.0]
    write_nifti(session / "t2.nii.gz", image, shifted)
    arguments = ["-i", str(tmp_path / "in"), "-m", str(model), "--no-progress"]
    assert predict_main(arguments + ["-o", str(tmp_path / "out_resample")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "t2.nii.gz" in err and "resampled onto the grid of" in err and "t1.nii.gz" in err
    assert predict_main(arguments + ["-o", str(tmp_path / "out_error"), "--misaligned", "error"]) == 1
    err = capsys.readouterr().err
    assert "case sub_1" in err and "t2.nii.gz" in err and "grid differs" in err
    assert not (tmp_path / "out_error" / "sub_1.txt").exists()


# ------------------------------------------------------------------------------------------------ model folders
def test_model_folder_from_dataset_prefers_default_trainer(tmp_path):
    root = tmp_path / "results"
    default = write_model(root, "classification", folds=(0,))
    other = write_model(root, "classification", folds=(0,), trainer="classification_linear")
    assert model_folder_from_dataset(900, results_root=root) == default
    assert model_folder_from_dataset("Dataset900_Tiny", trainer="classification_linear", results_root=root) == other
    with pytest.raises(BadInputError, match="no model folder matches"):
        model_folder_from_dataset(900, plans_name="otherPlans", results_root=root)


def test_a_tagged_model_is_found_by_its_tag(tmp_path):
    root = tmp_path / "results"
    tagged = write_model(root, "classification", folds=(0,), tag="mae")
    assert tagged.name == "classification__fomo_nnPlans__3d_fullres__mae"
    assert model_folder_from_dataset(900, results_root=root) == tagged  # the only model: found without --tag
    untagged = write_model(root, "classification", folds=(0,))
    assert model_folder_from_dataset(900, results_root=root) == untagged  # no --tag: the untagged one
    assert model_folder_from_dataset(900, tag="mae", results_root=root) == tagged
    write_model(root, "classification", folds=(0,), tag="scratch")
    assert model_folder_from_dataset(900, tag="scratch", results_root=root).name.endswith("__scratch")
    with pytest.raises(BadInputError, match="no model folder matches.*tag=dino"):
        model_folder_from_dataset(900, tag="dino", results_root=root)
    with pytest.raises(ValueError, match="not a valid model-folder tag"):
        model_folder_from_dataset(900, tag="../x", results_root=root)


def test_predict_with_dataset_and_tag(tmp_path, monkeypatch, capsys):
    root = tmp_path / "results"
    tagged = write_model(root, "regression", folds=(0,), tag="mae")
    monkeypatch.setenv("fomo_nn_results", str(root))
    write_fomo_subject(tmp_path / "in", "sub_1", ["t1", "t2"])
    arguments = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "900", "--no-progress"]
    assert predict_main(arguments + ["--tag", "mae"]) == 0
    assert f"model {tagged}" in capsys.readouterr().err and (tmp_path / "out" / "sub_1.txt").is_file()
    assert predict_main(arguments + ["--tag", "other"]) == 2
    assert "tag=other" in capsys.readouterr().err


def test_missing_fold_and_mismatched_folds_are_refused(tmp_path):
    model = write_model(tmp_path / "results", "classification", folds=(0,))
    with pytest.raises(BadInputError, match="fold 3 has no checkpoint_final.pth"):
        load_ensemble(model, folds=["3"])
    other = tiny_plans("classification", ["t1", "t2", "flair", "adc"])
    state = {"network": build_finetuning_network(other).state_dict(), "plans": other.to_json(),
             "trainer": "classification", "extra": {}}
    save_checkpoint(state, model / "fold_1" / "checkpoint_final.pth")
    with pytest.raises(BadInputError, match="channel_names differ"):
        load_ensemble(model)


def test_cpu_bf16_option_stays_close_to_float32(tmp_path):
    from fomo_nn.inference.predictor import cpu_supports_bf16

    model = write_model(tmp_path / "results", "classification", folds=(0,))
    write_fomo_subject(tmp_path / "in", "sub_0", ["flair", "adc", "dwi_b1000", "swi"])
    ensemble = load_ensemble(model)
    case = discover_cases(tmp_path / "in", ensemble.plans.channel_names)[0]
    outputs = {}
    for bf16 in (False, True):
        predictor = EnsemblePredictor(ensemble, PredictionSettings(progress=False, cpu_bf16=bf16))
        assert predictor.cpu_bf16 == (bf16 and cpu_supports_bf16())
        outputs[bf16] = predictor.predict(predictor.prepare(case).data)
    np.testing.assert_allclose(outputs[True], outputs[False], atol=0.05)
    assert outputs[True].sum() == pytest.approx(1.0, abs=1e-5)
