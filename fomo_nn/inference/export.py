"""Write predictions where and how users (and the FOMO25 validator) expect them. Every file is atomic.

- segmentation: `CASE<ending>`, a label map in the input's exact grid and header (values = the
  plans' label values); with --save-probabilities also `CASE.npz` ("probabilities" (K, ...) in the
  input's voxel order, "labels") and, for NIfTI inputs, `CASE_probabilities.nii.gz` (X, Y, Z, K float32).
- classification: `CASE.txt` with one float: the probability of the positive class (binary tasks),
  or the predicted class value when there are more than two classes.
- regression: `CASE.txt` with the value in the target's unit, full float precision (never truncated).
- classification/regression runs also keep `predictions.csv` (one row per case, rewritten atomically
  after each case so a crash never leaves it half-written).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomo_nn.io import ImageProperties, write_image
from fomo_nn.io.image_io import NIFTI_ENDINGS, ras_to_original
from fomo_nn.plans import Plans
from fomo_nn.preprocessing.case_preprocessing import restore_to_original
from fomo_nn.tasks import CASE_CLASS, VOXELS, task_kind
from fomo_nn.utils.files import write_atomically, write_text_atomic

CSV_NAME = "predictions.csv"


def format_value(value: float) -> str:
    """Shortest text that reads back as exactly the same float (no rounding, no int truncation)."""
    return repr(float(value))


def label_values(plans: Plans) -> list[int]:
    """Label value of each network output channel: channel i is the i-th smallest label value."""
    return sorted(int(v) for v in plans.labels.values())


def class_values(plans: Plans) -> list[int]:
    return sorted(int(k) for k in plans.classes)


def class_columns(plans: Plans) -> list[str]:
    return [f"prob_{plans.classes[str(v)]}" for v in class_values(plans)]


@dataclass
class CaseOutputs:
    """Where one case's results go; `primary` decides whether a rerun can skip the case."""

    primary: Path
    probabilities: Path | None = None  # .npz, segmentation with --save-probabilities

    def done(self) -> bool:
        return self.primary.is_file() and (self.probabilities is None or self.probabilities.is_file())


def case_outputs(output_dir: Path, case_id: str, task_type: str, ending: str, save_probabilities: bool) -> CaseOutputs:
    if task_kind(task_type).target == VOXELS:
        return CaseOutputs(output_dir / f"{case_id}{ending}",
                           output_dir / f"{case_id}.npz" if save_probabilities else None)
    return CaseOutputs(output_dir / f"{case_id}.txt")


def export_case(prediction, case_id: str, properties: dict, plans: Plans, outputs: CaseOutputs) -> dict | None:
    """Write one case's prediction as its task kind says (fomo_nn.tasks: the ``export`` hook); the
    predictions.csv row for case targets, else None."""
    return task_kind(plans.task_type).hook("export")(prediction, case_id, properties, plans, outputs)


def writes_csv(plans: Plans) -> bool:
    """Case targets are also listed in predictions.csv, one row per case."""
    return task_kind(plans.task_type).case_target


# ----------------------------------------------------------------------------------------- segmentation
def probabilities_on_input_grid(probabilities: np.ndarray, properties: dict) -> np.ndarray:
    """(K, preprocessed grid) class probabilities -> (K, RAS grid of the input), background 1 outside the crop."""
    return restore_to_original(probabilities, properties, is_label=False, probabilities=True)


def most_probable_class(probabilities: np.ndarray) -> np.ndarray:
    """argmax over the class axis (ties -> the lower class, as np.argmax), by running comparisons:
    several times faster than np.argmax(axis=0), which walks the array with a large stride."""
    best = probabilities[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8 if len(probabilities) <= 256 else np.int32)
    for k in range(1, len(probabilities)):
        better = probabilities[k] > best
        index[better] = k
        np.maximum(best, probabilities[k], out=best)
    return index


def mask_from_probabilities(probabilities: np.ndarray, values: list[int]) -> np.ndarray:
    """Most probable label per voxel, as label values (uint8 when they fit, else int16)."""
    if probabilities.shape[0] != len(values):
        raise ValueError(f"{probabilities.shape[0]} probability channels for {len(values)} labels {values}")
    dtype = np.uint8 if 0 <= min(values) and max(values) <= 255 else np.int16
    index = most_probable_class(probabilities)
    if list(values) == list(range(len(values))) and index.dtype == dtype:
        return index  # labels 0..K-1: the class index is the label value
    return np.asarray(values, dtype=dtype)[index]


def write_npz_atomic(path: Path, **arrays) -> None:
    write_atomically(path, lambda temp: np.savez_compressed(temp, **arrays), ".npz")


def export_segmentation_case(probabilities, case_id: str, properties: dict, plans: Plans, outputs: CaseOutputs) -> None:
    export_segmentation(probabilities, properties, plans, outputs)


def export_segmentation(probabilities: np.ndarray, properties: dict, plans: Plans, outputs: CaseOutputs) -> None:
    values = label_values(plans)
    restored = probabilities_on_input_grid(probabilities, properties)
    image_properties = ImageProperties.from_dict(properties["image_properties"])
    mask = mask_from_probabilities(restored, values)
    if outputs.probabilities is not None:
        in_input_order = ras_to_original(np.moveaxis(restored, 0, -1), image_properties)
        write_npz_atomic(outputs.probabilities, probabilities=np.moveaxis(in_input_order, -1, 0).astype(np.float32),
                         labels=np.asarray(values))
        if any(str(outputs.primary).endswith(e) for e in NIFTI_ENDINGS):
            write_image(np.moveaxis(restored, 0, -1), image_properties,
                        outputs.primary.parent / f"{_stem(outputs.primary)}_probabilities.nii.gz", dtype=np.float32)
    write_image(mask, image_properties, outputs.primary, dtype=mask.dtype)


def _stem(path: Path) -> str:
    name = path.name
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return path.stem


# ------------------------------------------------------------------------------- classification/regression
def classification_row(case_id: str, probabilities, plans: Plans) -> dict:
    values = class_values(plans)
    probabilities = [float(p) for p in probabilities]
    row = {"case_id": case_id, "value": format_value(values[int(np.argmax(probabilities))])}
    row.update({column: format_value(p) for column, p in zip(class_columns(plans), probabilities)})
    return row


def classification_txt_value(probabilities, plans: Plans) -> float:
    """Binary: probability of the positive (larger-valued) class; otherwise the predicted class value."""
    if len(probabilities) == 2:
        return float(probabilities[1])
    return float(class_values(plans)[int(np.argmax(probabilities))])


def export_classification(probabilities, case_id: str, plans: Plans, outputs: CaseOutputs) -> dict:
    write_text_atomic(outputs.primary, format_value(classification_txt_value(probabilities, plans)) + "\n")
    return classification_row(case_id, probabilities, plans)


def export_classification_case(probabilities, case_id: str, properties: dict, plans: Plans,
                               outputs: CaseOutputs) -> dict:
    return export_classification(probabilities, case_id, plans, outputs)


def export_regression_case(value: float, case_id: str, properties: dict, plans: Plans, outputs: CaseOutputs) -> dict:
    return export_regression(value, case_id, outputs)


def export_regression(value: float, case_id: str, outputs: CaseOutputs) -> dict:
    write_text_atomic(outputs.primary, format_value(value) + "\n")
    return {"case_id": case_id, "value": format_value(value)}


def csv_header(plans: Plans) -> list[str]:
    """case_id, value and, for class targets, one probability column per class."""
    if task_kind(plans.task_type).target == CASE_CLASS:
        return ["case_id", "value", *class_columns(plans)]
    return ["case_id", "value"]


def read_predictions_csv(path: Path, header: list[str]) -> dict[str, dict]:
    """Rows of an earlier run (kept for the cases a rerun skips); none when the columns differ."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != header:
            return {}
        return {row["case_id"]: row for row in reader}


def write_predictions_csv(path: Path, rows: dict[str, dict], header: list[str], order: list[str]) -> None:
    """All rows, cases in `order` first (this run's order), then any others from earlier runs."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    ordered = [c for c in order if c in rows] + sorted(c for c in rows if c not in set(order))
    for case_id in ordered:
        writer.writerow(rows[case_id])
    write_text_atomic(path, buffer.getvalue())
