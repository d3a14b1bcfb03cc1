"""FOMO26 challenge mode: the flags of container_templates container_validator/tasks.py @ d442af2 (`--dwi`,
`--t1` serving t1w, `--t2` serving t2w) and task 4's {0, 1, 2} mask in the T2's grid."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from fomo_nn.checkpoints.training_state import save_checkpoint
from fomo_nn.cli.predict import main as predict_main
from fomo_nn.inference.challenge import task_of_model
from fomo_nn.networks import build_finetuning_network
from fomo_nn.plans import save_plans
from fomo_nn.inference.model_folder import ModelFolderName
from preprocessed_builders import tiny_plans
from test_inference import GRIDS, head_and_blob, make_affine, write_model, write_nifti

REPO = Path(__file__).resolve().parents[1]

NERVE_VESSEL = {"background": 0, "nerve": 1, "vessel": 2}


def write_task4_model(root: Path, winning_label: int | None = None) -> Path:
    """A 3-label segmentation model on channel t2; `winning_label`: its output layers favour that label everywhere."""
    plans = tiny_plans("segmentation", ["t2"], patch=(32, 32, 32)).replace(labels=dict(NERVE_VESSEL))
    folder = root / "Dataset900_Tiny" / str(ModelFolderName("segmentation", plans.plans_name, plans.configuration))
    torch.manual_seed(3)
    network = build_finetuning_network(plans)
    if winning_label is not None:
        with torch.no_grad():
            for name, parameter in network.named_parameters():
                if "seg_layers" in name:
                    parameter.zero_()
                    if name.endswith("bias"):
                        parameter[winning_label] = 5.0
    save_checkpoint({"network": network.state_dict(), "plans": plans.to_json(), "trainer": "segmentation",
                     "fold": "0", "extra": {}}, folder / "fold_0" / "checkpoint_final.pth")
    save_plans(plans, folder / "plans.json")
    return folder


def _t2w(folder: Path) -> tuple[Path, np.ndarray]:
    affine = make_affine((0.6, 0.6, 1.0), flips=(-1, -1, 1), degrees_z=10.0)
    image, _ = head_and_blob((40, 36, 30))
    return write_nifti(folder / "ses-01" / "t2w.nii.gz", image, affine), affine


@pytest.mark.parametrize("winning_label", [2, None])
def test_task4_writes_a_nerve_vessel_mask_in_the_t2_grid(tmp_path, winning_label):
    model = write_task4_model(tmp_path / "results", winning_label)
    t2w, affine = _t2w(tmp_path / "input" / "sub-01")
    output = tmp_path / "output" / "sub-01.nii.gz"
    output.parent.mkdir()
    assert predict_main(["--edition", "fomo26", "--task", "4", "-m", str(model), "--t2", str(t2w),
                         "--output", str(output), "--device", "cpu"]) == 0
    mask_image = nib.load(str(output))
    mask = np.asanyarray(mask_image.dataobj)
    assert mask.shape == (40, 36, 30) and np.allclose(mask_image.affine, affine, atol=1e-5)
    values = set(np.unique(mask).tolist())
    assert values <= {0, 1, 2}
    if winning_label is not None:
        assert values == {0, 2}  # the vessel label itself is written, background outside the brain's crop
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]


def test_task3_reads_t1w_through_the_t1_flag_and_refuses_other_flags(tmp_path, capsys):
    model = write_model(tmp_path / "results", "regression", channel_names=["t1"], folds=(0,))
    image, _ = head_and_blob(GRIDS["lps"][0])
    t1w = write_nifti(tmp_path / "input" / "ses-01" / "t1w.nii.gz", image, GRIDS["lps"][1])
    output = tmp_path / "age.txt"
    assert predict_main(["--edition", "fomo26", "--task", "3", "-m", str(model), "--t1", str(t1w),
                         "--output", str(output), "--device", "cpu"]) == 0
    assert np.isfinite(float(output.read_text()))
    with pytest.raises(SystemExit):
        predict_main(["--edition", "fomo26", "--task", "3", "-m", str(model), "--t1", str(t1w), "--t2", str(t1w),
                      "--output", str(tmp_path / "x.txt")])
    assert "FOMO26 task 3 does not take --t2 (it takes --t1)" in capsys.readouterr().err


def test_task1_takes_dwi_not_dwi_b1000_and_unknown_tasks_name_the_edition(tmp_path, capsys):
    files = {}
    image, _ = head_and_blob(GRIDS["lps"][0])
    for sequence in ("flair", "adc", "dwi_b1000", "swi"):
        files[sequence] = write_nifti(tmp_path / "in" / f"{sequence}.nii.gz", image, GRIDS["lps"][1])
    common = ["--edition", "fomo26", "--task", "1", "-m", str(tmp_path / "model"), "--flair", str(files["flair"]),
              "--adc", str(files["adc"]), "--swi", str(files["swi"]), "--output", str(tmp_path / "p.txt")]
    with pytest.raises(SystemExit):
        predict_main([*common, "--dwi_b1000", str(files["dwi_b1000"])])
    error = capsys.readouterr().err
    assert "FOMO26 task 1 requires --dwi" in error
    with pytest.raises(SystemExit):
        predict_main(["--edition", "fomo26", "--task", "6", "-m", str(tmp_path / "model"), "--output", "e.npy"])
    assert "writes embeddings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_main(["--task", "4", "-m", str(tmp_path / "model"), "--t2", str(files["flair"]), "--output", "m.nii.gz"])
    assert "fomo25 has no task 4" in capsys.readouterr().err


def test_a_container_model_finds_its_fomo26_task(tmp_path):
    assert task_of_model(write_task4_model(tmp_path / "a"), "fomo26") == 4
    meningioma = write_model(tmp_path / "b", "segmentation", channel_names=["dwi_b1000", "flair", "swi_or_t2s"],
                             folds=(0,))
    assert task_of_model(meningioma, "fomo26") == 2 and task_of_model(meningioma) == 2
    age = write_model(tmp_path / "c", "regression", channel_names=["t1"], folds=(0,))
    assert task_of_model(age, "fomo26") == 3
    polymicrogyria = write_model(tmp_path / "d", "classification", channel_names=["t1"], folds=(0,))
    assert task_of_model(polymicrogyria, "fomo26") == 5


def test_container_entry_point_finds_the_fomo26_task_from_a_baked_edition(tmp_path, monkeypatch, capsys):
    """/app/predict.py with `--edition fomo26` baked into predict.args: the 3-label t2 model answers task 4,
    the validator's `--t2` is taken and a FOMO25 flag is refused naming the task."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("container_predict", REPO / "container" / "predict.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    monkeypatch.setattr(entry, "MODEL_DIR", write_task4_model(tmp_path / "results", winning_label=1))
    options = tmp_path / "predict.args"
    options.write_text("--edition fomo26 --device cpu\n")
    monkeypatch.setattr(entry, "OPTIONS_FILE", options)
    t2w, _ = _t2w(tmp_path / "input")
    output = tmp_path / "out" / "case_001.nii.gz"
    output.parent.mkdir()
    assert entry.main(["--t2", str(t2w), "--output", str(output)]) == 0
    assert set(np.unique(np.asanyarray(nib.load(str(output)).dataobj)).tolist()) == {0, 1}
    assert entry.main(["--t1", str(t2w), "--output", str(tmp_path / "out" / "x.nii.gz")]) == 2
    assert "answers FOMO26 task 4 (segmentation), which does not take --t1" in capsys.readouterr().err
