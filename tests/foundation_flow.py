"""The end of every "foreign checkpoint -> finetune -> predict -> evaluate" test: the encoder loaded whole, the
finetuned model predicts masks in the input grid, and fomo_nn_evaluate scores them."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.cli.evaluate import main as evaluate_main
from fomo_nn.cli.predict import main as predict_main


def check_finetuned_predicts_and_evaluates(tmp_path: Path, raw: Path, dataset_id: int, record, cases: int = 6):
    fold = next((tmp_path / "results").glob(f"Dataset{dataset_id:03d}_*/*/fold_0"))
    report = json.loads((fold / "pretrained_weights_report.json").read_text())
    assert report["format"] == record.format and report["counts"]["loaded"] == len(record.encoder)
    assert report["counts"]["missing"] == report["counts"]["unexpected"] == report["counts"]["shape_mismatch"] == 0
    assert report["stem_expanded"]  # the one-channel stem meets the task's two sequences

    out = tmp_path / "predictions"
    assert predict_main(["-i", str(raw / "imagesTr"), "-o", str(out), "-d", str(dataset_id), "--device", "cpu",
                         "--no-tta", "--no-progress"]) == 0
    masks = sorted(out.glob("case_*.nii.gz"))
    assert len(masks) == cases
    assert nib.load(str(masks[0])).shape == nib.load(str(raw / "labelsTr" / masks[0].name)).shape
    summary_path = tmp_path / "summary.json"
    assert evaluate_main(["--task-type", "segmentation", "-r", str(raw), "-p", str(out), "-o", str(summary_path),
                          "--quiet"]) == 0
    summary = json.loads(summary_path.read_text())
    assert len(summary["per_case"]) == cases and np.isfinite(summary["metrics"]["dice"])
