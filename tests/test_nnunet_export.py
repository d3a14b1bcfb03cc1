"""fomo_nn_export_nnunet: a trained fomo_nn segmentation model runs in nnunetv2 2.8.1 and predicts what
fomo_nn_predict predicts (same logits, same mask) on a case whose voxel axes are neither RAS nor in RAS order.

The model is a tiny U-Net trained for 2 epochs on cases made by fomo_nn's own preprocessing of raw scans
with a bright learnable blob, so its masks are not empty. nnU-Net runs in-process (nnUNetPredictor, the
code `nnUNetv2_predict` calls; its sequential path, no worker processes); one test also runs the
`nnUNetv2_predict` console script on the export placed in $nnUNet_results.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import apply_orientation, io_orientation

from fomo_nn.cli.export_nnunet import main as export_main
from fomo_nn.export.nnunet_folder import export_nnunet_model
from fomo_nn.inference.case_prediction import evaluation_mode
from fomo_nn.inference.inputs import discover_cases
from fomo_nn.inference.model_folder import load_ensemble
from fomo_nn.inference.predictor import EnsemblePredictor, PredictionSettings
from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans import save_plans
from fomo_nn.preprocessing.case_preprocessing import preprocess_case
from fomo_nn.preprocessing.case_store import write_case
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.checkpoints.training_state import save_checkpoint
from fomo_nn.training.registry import get_trainer
from preprocessed_builders import tiny_plans

pytest.importorskip("nnunetv2")

CHANNEL = "flair"
# voxel axes (i, j, k) point to (S, L, A): flipped and transposed against RAS
SLA = np.array([[0.0, -1.0, 0.0, 30.0], [0.0, 0.0, 1.0, -25.0], [1.0, 0.0, 0.0, -10.0], [0.0, 0.0, 0.0, 1.0]])
TEST_SHAPE = (38, 44, 40)


def head_and_blob(shape, seed: int):
    """(float32 image, bool blob): an ellipsoidal 'brain' (0 outside) with a bright blob at a random place."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = np.sqrt(((grid / np.array([0.85, 0.9, 0.8])[:, None, None, None]) ** 2).sum(0)) < 1
    centre = rng.uniform(-0.35, 0.35, size=3)
    blob = (((grid - centre[:, None, None, None]) ** 2).sum(0) < 0.06) & brain
    image = brain * np.clip(400 + 30 * rng.standard_normal(shape) + 500 * blob, 1, None)
    return image.astype(np.float32), blob


def write_nifti(path: Path, data, affine, dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


def to_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(X, Y, Z[, K]) in a file's voxel order -> RAS voxel order."""
    return apply_orientation(array, io_orientation(affine))


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """fomo_nn_results/Dataset900_Tiny/segmentation__fomo_nnPlans__3d_fullres with fold_0 (2 epochs)."""
    root = tmp_path_factory.mktemp("nnunet_export")
    plans = tiny_plans("segmentation", [CHANNEL], epochs=2, iterations_per_epoch=15, validation_iterations=1,
                       learning_rate=1e-2)
    data = root / "preprocessed" / plans.dataset_name
    for index in range(6):  # raw scans through fomo_nn's preprocessing, in several orientations
        image, blob = head_and_blob((40, 40, 36), seed=index)
        affine = SLA if index % 2 else np.diag([-1.0, -1.0, 1.0, 1.0])
        raw = root / "raw"
        image_file = write_nifti(raw / f"c{index}_0000.nii.gz", image, affine)
        label_file = write_nifti(raw / f"c{index}.nii.gz", blob, affine, np.uint8)
        array, seg, properties = preprocess_case([str(image_file)], plans, str(label_file))
        properties["case_id"] = f"c{index}"
        write_case(data / plans.configuration, f"c{index}", array, seg, properties, plans)
    save_plans(plans, data / "plans.json")
    model = root / "results" / plans.dataset_name / "segmentation__fomo_nnPlans__3d_fullres"
    torch.manual_seed(0)
    get_trainer("segmentation")(plans, data, model / "fold_0", "0", TrainerOptions()).run()
    save_plans(plans, model / "plans.json")
    return model


@pytest.fixture(scope="module")
def test_case(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("case")
    image, blob = head_and_blob(TEST_SHAPE, seed=99)
    write_nifti(folder / "in" / "case_0000.nii.gz", image, SLA)
    np.save(folder / "blob.npy", blob)
    return folder


@pytest.fixture(scope="module")
def fomo_nn_output(trained_model, test_case, tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    return fomo_nn_prediction(trained_model, test_case, tmp_path_factory.mktemp("fomo_nn_out") / "out")


@pytest.fixture()
def nnunet_env(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    return tmp_path


def fomo_nn_prediction(model: Path, case: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mask, probabilities (K, X, Y, Z)) from fomo_nn's predictor (mirroring TTA on), in the input's voxel order."""
    predictor = EnsemblePredictor(load_ensemble(model), PredictionSettings(tta=True, save_probabilities=True,
                                                                           progress=False))
    report = predictor.predict_folder_cases(discover_cases(case / "in", [CHANNEL]), out)
    assert report.ok
    return (np.asarray(nib.load(str(out / "case.nii.gz")).dataobj),
            np.load(out / "case.npz")["probabilities"])


def nnunet_prediction(export: Path, case: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mask, probabilities (K, X, Y, Z)) from nnunetv2's predictor, in the input's voxel order."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(export), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    out.mkdir(parents=True)  # the sequential path writes its argument record before creating the folder
    predictor.predict_from_files_sequential([[str(case / "in" / "case_0000.nii.gz")]], str(out),
                                            save_probabilities=True, overwrite=True)
    mask_image = nib.load(str(out / "case.nii.gz"))
    np.testing.assert_allclose(mask_image.affine, SLA, atol=1e-5)  # written back in the input's geometry
    # nnU-Net's probabilities are in its reader's order: the RAS array transposed to (z, y, x)
    probabilities_ras = np.load(out / "case.npz")["probabilities"].transpose(0, 3, 2, 1)
    inverse = io_orientation(SLA)
    back = np.stack([apply_orientation(p, nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                                                          inverse)) for p in probabilities_ras])
    return np.asarray(mask_image.dataobj), back


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def with_plans(model: Path, out: Path, clip, patch) -> Path:
    """A copy of `model` (same weights) whose plans clip the foreground at `clip` percentiles and predict with
    `patch`-sized tiles (the network is fully convolutional)."""
    ensemble = load_ensemble(model)
    fold = ensemble.folds[0]
    plans = fold.plans.replace(normalization=[dataclasses.replace(n, clip_percentiles=list(clip))
                                              for n in fold.plans.normalization], patch_size=list(patch))
    save_checkpoint({"network": fold.network.state_dict(), "plans": plans.to_json(), "trainer": fold.trainer,
                     "fold": "0", "extra": {}}, out / "fold_0" / "checkpoint_final.pth")
    save_plans(plans, out / "plans.json")
    return out


# ------------------------------------------------------------------------------------------------ tests
def test_exported_folder_is_what_nnunet_reads_and_loads_safely(trained_model, tmp_path):
    export = export_nnunet_model(trained_model, tmp_path / "nnunet")
    assert sorted(p.name for p in (tmp_path / "nnunet").iterdir()) == ["dataset.json", "fold_0", "plans.json"]
    state = torch.load(tmp_path / "nnunet" / "fold_0" / "checkpoint_final.pth", weights_only=True)
    assert state["trainer_name"] == "nnUNetTrainer" and state["init_args"]["fold"] == 0
    assert tuple(state["inference_allowed_mirroring_axes"]) == (0, 1, 2)
    plans = json.loads((tmp_path / "nnunet" / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    assert config["patch_size"] == [32, 32, 32] and config["spacing"] == [1.0, 1.0, 1.0]
    assert config["normalization_schemes"] == ["ZScoreNormalization"] and config["use_mask_for_norm"] == [True]
    assert plans["transpose_forward"] == [2, 1, 0] and plans["image_reader_writer"] == "NibabelIOWithReorient"
    dataset = json.loads((tmp_path / "nnunet" / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "lesion": 1} and dataset["channel_names"] == {"0": CHANNEL}
    assert export.max_logit_difference <= 1e-5 and export.notes  # the 0.5/99.5 clip is reported

    # nnU-Net's own network builder and strict loading, then forward equality with the fomo_nn network
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = config["architecture"]
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, 2, deep_supervision=False)
    network.load_state_dict(state["network_weights"])
    network.eval()
    ours = load_ensemble(trained_model).folds[0].network
    x = torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), evaluation_mode(ours):
        assert float((network(x) - ours(x)).abs().max()) <= 1e-5


def test_nnunet_predicts_the_fomo_nn_mask_on_a_non_ras_case(trained_model, test_case, fomo_nn_output, nnunet_env):
    export_nnunet_model(trained_model, nnunet_env / "nnunet")
    ours_mask, ours_probabilities = fomo_nn_output
    theirs_mask, theirs_probabilities = nnunet_prediction(nnunet_env / "nnunet", test_case, nnunet_env / "nnunet_out")
    assert ours_mask.shape == theirs_mask.shape == TEST_SHAPE
    # the 2-epoch model finds the blob (so the comparison means something, and the SLA geometry is right)
    assert dice(ours_mask > 0, np.load(test_case / "blob.npy")) > 0.8
    assert dice(ours_mask > 0, theirs_mask > 0) >= 0.99  # measured 0.998
    # measured 0.023: fomo_nn's 0.5/99.5 percentile clip before the z-score, and where tiles overlap, the two
    # Gaussians (nnU-Net's is centred at patch // 2, truncated at 4 sigma, float16) and nnU-Net's float16 sums
    assert np.abs(ours_probabilities - theirs_probabilities).max() < 0.05


def test_without_clipping_both_predictors_give_the_same_probabilities(trained_model, test_case, nnunet_env):
    """One tile covers the cropped case (no overlap, so the two Gaussians' shapes do not matter) and nothing
    is clipped: the same input, network and mirroring give the same probabilities (up to float16 sums)."""
    model = with_plans(trained_model, nnunet_env / "results" / trained_model.name, [0.0, 100.0], [48, 48, 48])
    export = export_nnunet_model(model, nnunet_env / "nnunet")
    assert not export.notes  # no clip: ZScoreNormalization is the same rule
    ours_mask, ours_probabilities = fomo_nn_prediction(model, test_case, nnunet_env / "fomo_nn_out")
    theirs_mask, theirs_probabilities = nnunet_prediction(nnunet_env / "nnunet", test_case, nnunet_env / "nnunet_out")
    assert ours_mask.sum() > 100
    # measured 1.4e-4: nnU-Net accumulates the tile logits in float16 (predict_sliding_window_return_logits)
    np.testing.assert_allclose(ours_probabilities, theirs_probabilities, atol=1e-3)
    assert dice(ours_mask > 0, theirs_mask > 0) == 1.0


def test_refusals_name_the_model_folder_and_write_nothing(trained_model, tmp_path, capsys):
    ensemble = load_ensemble(trained_model)
    fold = ensemble.folds[0]
    shared = tiny_plans("segmentation", ["flair", "t2"], fusion="shared_encoder")
    from fomo_nn.networks import build_finetuning_network

    bad = tmp_path / "shared" / "segmentation__fomo_nnPlans__3d_fullres"
    save_checkpoint({"network": build_finetuning_network(shared).state_dict(), "plans": shared.to_json(),
                     "trainer": "segmentation", "fold": "0", "extra": {}}, bad / "fold_0" / "checkpoint_final.pth")
    assert export_main([str(bad), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "shared_encoder" in error
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))

    clipped = fold.plans.replace(normalization=[dataclasses.replace(n, scheme="volume_wise_znorm",
                                                                    clip_percentiles=[0.0, 99.0])
                                                for n in fold.plans.normalization])
    baseline = tmp_path / "baseline" / "segmentation__fomo_nnPlans__3d_fullres"
    save_checkpoint({"network": fold.network.state_dict(), "plans": clipped.to_json(), "trainer": "segmentation",
                     "fold": "0", "extra": {}}, baseline / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(BadInputError, match="volume_wise_znorm .*no nnU-Net normalization"):
        export_nnunet_model(baseline, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    maxpool = tiny_plans("segmentation", ["flair"])
    maxpool = maxpool.replace(network=dataclasses.replace(
        maxpool.network, encoder="maxpool_unet", features_per_stage=[4, 8, 16, 32, 64], kernel_sizes=[[3, 3, 3]] * 5,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * 4, n_conv_per_stage=[2] * 5, n_conv_per_stage_decoder=[1] * 4))
    yucca = tmp_path / "maxpool" / "segmentation__fomo_nnPlans__3d_fullres"
    save_checkpoint({"network": build_finetuning_network(maxpool).state_dict(), "plans": maxpool.to_json(),
                     "trainer": "segmentation", "fold": "0", "extra": {}}, yucca / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(BadInputError, match="family 'maxpool_unet' has no nnU-Net U-Net") as refused:
        export_nnunet_model(yucca, tmp_path / "out")
    assert str(yucca) in str(refused.value) and not (tmp_path / "out").exists()

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    assert export_main([str(trained_model), str(tmp_path / "taken")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "taken" / "keep.txt").is_file()
    assert export_main([str(trained_model), str(tmp_path / "taken"), "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["dataset.json", "fold_0", "plans.json"]


def test_nnunet_v2_predict_runs_the_export_from_nnunet_results(trained_model, fomo_nn_output, test_case, nnunet_env,
                                                                capsys):
    """The user's path: fomo_nn_export_nnunet into $nnUNet_results/<dataset>/<the folder name it prints>, then
    the `nnUNetv2_predict` console script (a subprocess, CPU)."""
    script = Path(sys.executable).parent / "nnUNetv2_predict"
    if not script.is_file():
        pytest.skip("nnunetv2's console scripts are not installed beside this Python")
    target = nnunet_env / "nnUNet_results" / "Dataset900_Tiny" / "nnUNetTrainer__fomo_nnPlans__3d_fullres"
    assert export_main([str(trained_model), str(target)]) == 0
    assert f"Dataset900_Tiny/{target.name}" in capsys.readouterr().out
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(script), "-i", str(test_case / "in"), "-o", str(nnunet_env / "cli_out"), "-d", "900",
                             "-c", "3d_fullres", "-p", "fomo_nnPlans", "-f", "0", "-device", "cpu",
                             "-npp", "1", "-nps", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    mask = nib.load(str(nnunet_env / "cli_out" / "case.nii.gz"))
    np.testing.assert_allclose(mask.affine, SLA, atol=1e-5)
    assert dice(fomo_nn_output[0] > 0, np.asarray(mask.dataobj) > 0) >= 0.99


def test_residual_two_channel_two_fold_model_loads_in_nnunet_with_the_same_logits(tmp_path, nnunet_env):
    """ResidualEncoderUNet family, stem-expanded 2-channel input, deep supervision on, folds 0 and 3 (random
    weights, a different seed per fold): nnU-Net's predictor loads both and each fold gives fomo_nn's logits."""
    from fomo_nn.networks import build_finetuning_network
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    plans = tiny_plans("segmentation", ["flair", "t2"])
    plans = plans.replace(network=dataclasses.replace(plans.network, encoder="residual", n_conv_per_stage=[1, 2, 2]),
                          method={"deep_supervision": True}, labels={"bg": 0, "lesion": 1, "edema": 2})
    model = tmp_path / "results" / plans.dataset_name / "segmentation__fomo_nnPlans__3d_fullres"
    for fold in (0, 3):
        torch.manual_seed(fold)
        network = build_finetuning_network(plans)
        with torch.no_grad():  # nnU-Net's init zeroes the last norm of each residual block: make every weight count
            for parameter in network.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        save_checkpoint({"network": network.state_dict(), "plans": plans.to_json(), "trainer": "segmentation",
                         "fold": str(fold), "extra": {}}, model / f"fold_{fold}" / "checkpoint_final.pth")
    export = export_nnunet_model(model, tmp_path / "nnunet")
    assert export.architecture == "ResidualEncoderUNet" and export.folds == ["0", "3"]
    dataset = json.loads((tmp_path / "nnunet" / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "lesion": 1, "edema": 2}
    assert dataset["channel_names"] == {"0": "flair", "1": "t2"}

    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(tmp_path / "nnunet"), use_folds=(0, 3))
    assert type(predictor.network).__name__ == "ResidualEncoderUNet"
    x = torch.randn(1, 2, 32, 32, 32, generator=torch.Generator().manual_seed(5))
    outputs = []
    for fold, weights in zip(load_ensemble(model).folds, predictor.list_of_parameters):
        predictor.network.load_state_dict(weights)
        predictor.network.eval()
        with torch.no_grad(), evaluation_mode(fold.network):
            ours, theirs = fold.network(x), predictor.network(x)
        assert float((ours - theirs).abs().max()) <= 1e-5 * max(1.0, float(ours.abs().max()))
        outputs.append(theirs)
    assert float((outputs[0] - outputs[1]).abs().max()) > 1e-2  # the folds really are different networks
