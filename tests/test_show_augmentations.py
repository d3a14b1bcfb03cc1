from fomo_nn.cli.show_augmentations import main as show_augmentations
from fomo_nn.augmentation import default_augmentation_plan
from fomo_nn.plans import load_plans, save_plans
from preprocessed_builders import build_preprocessed


def test_preview_png_for_a_preprocessed_dataset(tmp_path, monkeypatch):
    folder = build_preprocessed(tmp_path, "segmentation", num_cases=2)
    plans = load_plans(folder)
    save_plans(plans.replace(augmentation=default_augmentation_plan("segmentation")), folder / "plans.json")
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path))
    out = tmp_path / "preview.png"
    assert show_augmentations(["-d", "900", "-o", str(out), "--samples", "2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_unknown_case_is_a_clear_error(tmp_path, monkeypatch, capsys):
    build_preprocessed(tmp_path, "classification", num_cases=2)
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path))
    assert show_augmentations(["-d", "900", "--case", "nope"]) == 1
    assert "no preprocessed case nope" in capsys.readouterr().err
