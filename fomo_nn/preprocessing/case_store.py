"""The preprocessed case files and the rule that makes a case 'finished'.

Per case: `CASE.npy` (float32 (C, X, Y, Z)), `CASE_seg.npy` (int8 (1, X, Y, Z): the voxel labels
of the case, i.e. the segmentation target, or the auxiliary mask of a classification/regression
dataset with plans `auxiliary_labels` such as task 1's infarcts; absent otherwise) and `CASE.json`
(properties). Arrays go to hidden temporary names first and are renamed into place; CASE.json is
written last, so its presence, with the arrays beside it and the current preprocessing signature
inside it, means the case is complete. Anything else is redone; a rewrite without a mask removes
an older `CASE_seg.npy`, so no stale mask is ever read as this case's.
"""
from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fomo_nn.utils.files import write_atomically, write_json_atomic

SIGNATURE_VERSION = 1


def case_paths(folder: str | Path, case_id: str) -> dict[str, Path]:
    folder = Path(folder)
    return {"data": folder / f"{case_id}.npy", "seg": folder / f"{case_id}_seg.npy",
            "properties": folder / f"{case_id}.json"}


def preprocessing_signature(plans) -> str:
    """A short hash of every plans field that changes the preprocessed arrays."""
    relevant = {"version": SIGNATURE_VERSION, "task_type": plans.task_type, "channels": list(plans.channel_names),
                "target_spacing": [round(float(s), 6) for s in plans.target_spacing],
                "normalization": [asdict(n) for n in plans.normalization], "labels": plans.labels,
                "configuration": plans.configuration}
    if plans.auxiliary_labels:  # only when set, so datasets without masks keep their signatures
        relevant["auxiliary_labels"] = plans.auxiliary_labels
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    def save(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    write_atomically(path, save, ".npy")


def write_case(folder: str | Path, case_id: str, data: np.ndarray, seg: np.ndarray | None, properties: dict,
               signature: str) -> None:
    paths = case_paths(folder, case_id)
    paths["properties"].unlink(missing_ok=True)  # a rewrite is unfinished until the new CASE.json lands
    save_array_atomic(paths["data"], np.ascontiguousarray(data, dtype=np.float32))
    if seg is not None:
        save_array_atomic(paths["seg"], np.ascontiguousarray(seg, dtype=np.int8))
    else:
        paths["seg"].unlink(missing_ok=True)
    write_json_atomic(paths["properties"], {**properties, "preprocessing_signature": signature}, indent=None)


def expects_seg(plans) -> bool:
    """Whether every finished case of these plans has a CASE_seg.npy."""
    return plans.voxel_labels is not None


def is_case_finished(folder: str | Path, case_id: str, signature: str, needs_seg: bool) -> bool:
    paths = case_paths(folder, case_id)
    if not (paths["properties"].is_file() and paths["data"].is_file()):
        return False
    if needs_seg and not paths["seg"].is_file():
        return False
    try:
        properties = json.loads(paths["properties"].read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return properties.get("preprocessing_signature") == signature


def remove_stale_temporaries(folder: str | Path, case_id: str) -> None:
    """Temporary files a killed writer left for this case (never touches other cases' files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for name in (f"{case_id}.npy", f"{case_id}_seg.npy", f"{case_id}.json"):
        for temp in folder.glob(f".{glob.escape(name)}.*"):
            temp.unlink(missing_ok=True)
