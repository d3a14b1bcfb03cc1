"""The preprocessed case format, written and read here only: file names, the finished-case rule, the signature.

Per case: `CASE.npy` (float32 (C, X, Y, Z)), `CASE_seg.npy` (int8 (1, X, Y, Z): the voxel labels
of the case, i.e. the segmentation target, or the auxiliary mask of a classification/regression
dataset with plans `auxiliary_labels` such as task 1's infarcts; absent otherwise) and `CASE.json`
(properties). Arrays go to hidden temporary names first and are renamed into place; CASE.json is
written last, so its presence, with the arrays beside it and the current preprocessing signature
inside it, means the case is complete. Anything else is redone; a rewrite without a mask removes
an older `CASE_seg.npy`, so no stale mask is ever read as this case's.

Training reads the cases through `list_cases(folder, plans)`, which refuses a folder holding cases
of other plans (a changed spacing or normalization): the model would record plans that prediction
then preprocesses differently from what it was trained on.
"""
from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from fomo_nn.io.errors import BadInputError
from fomo_nn.plans.records import PLANS_FILE, load_plans
from fomo_nn.utils.files import write_atomically, write_json_atomic

SIGNATURE_VERSION = 1
SIGNATURE_KEY = "preprocessing_signature"
# where one case stands against the plans it is read or written for
FINISHED, UNFINISHED, STALE, MISSING_SEG = "finished", "unfinished", "stale", "missing_seg"


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
    write_json_atomic(paths["properties"], {**properties, SIGNATURE_KEY: signature}, indent=None)


def expects_seg(plans) -> bool:
    """Whether every finished case of these plans has a CASE_seg.npy."""
    return plans.voxel_labels is not None


def _stored_signature(properties_path: Path) -> str | None:
    try:
        return json.loads(properties_path.read_text()).get(SIGNATURE_KEY)
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def case_state(folder: str | Path, case_id: str, signature: str, needs_seg: bool) -> str:
    """FINISHED, UNFINISHED (CASE.json or CASE.npy absent: its writer never got to the end), STALE
    (CASE.json without this signature: written for other plans, or unreadable) or MISSING_SEG."""
    paths = case_paths(folder, case_id)
    if not (paths["properties"].is_file() and paths["data"].is_file()):
        return UNFINISHED
    if _stored_signature(paths["properties"]) != signature:
        return STALE
    if needs_seg and not paths["seg"].is_file():
        return MISSING_SEG
    return FINISHED


def is_case_finished(folder: str | Path, case_id: str, signature: str, needs_seg: bool) -> bool:
    return case_state(folder, case_id, signature, needs_seg) == FINISHED


def remove_stale_temporaries(folder: str | Path, case_id: str) -> None:
    """Temporary files a killed writer left for this case (never touches other cases' files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for name in (f"{case_id}.npy", f"{case_id}_seg.npy", f"{case_id}.json"):
        for temp in folder.glob(f".{glob.escape(name)}.*"):
            temp.unlink(missing_ok=True)


@dataclass(frozen=True)
class PreprocessedCase:
    """One finished case: arrays memory-mapped (never whole-dataset loads), properties read once."""

    folder: str
    case_id: str

    @property
    def data_path(self) -> Path:
        return case_paths(self.folder, self.case_id)["data"]

    @property
    def seg_path(self) -> Path:
        return case_paths(self.folder, self.case_id)["seg"]

    @cached_property
    def properties(self) -> dict:
        return json.loads(case_paths(self.folder, self.case_id)["properties"].read_text())

    def data(self) -> np.ndarray:
        """(C, X, Y, Z) float32, memory-mapped: slicing reads only the patch from disk."""
        return np.load(self.data_path, mmap_mode="r")

    def seg(self) -> np.ndarray | None:
        return np.load(self.seg_path, mmap_mode="r") if self.seg_path.is_file() else None

    @property
    def target(self) -> float | None:
        return self.properties.get("target")

    @property
    def subject(self) -> str:
        return self.properties.get("subject") or self.case_id

    @property
    def session(self) -> str | None:
        return self.properties.get("session")

    def foreground_locations(self) -> np.ndarray:
        """All sampled foreground voxels (any label > 0) as an (N, 3) int array."""
        locations = self.properties.get("foreground_locations") or {}
        arrays = [np.asarray(v, dtype=np.int64).reshape(-1, 3) for v in locations.values() if len(v)]
        return np.concatenate(arrays) if arrays else np.zeros((0, 3), dtype=np.int64)


def _written_case_ids(folder: Path) -> list[str]:
    """Every case with a CASE.json or a CASE.npy (hidden temporaries aside), finished or not."""
    if not folder.is_dir():
        return []
    stems = {suffix: {p.stem for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")}
             for suffix in (".json", ".npy")}
    arrays = {s for s in stems[".npy"] if not (s.endswith("_seg") and s[:-len("_seg")] in stems[".npy"])}
    return sorted(stems[".json"] | arrays)


def preprocess_command(folder: str | Path, plans) -> str:
    """What rewrites `folder`'s cases for `plans`: fomo_nn_preprocess follows the dataset's own plans.json,
    so plans from elsewhere (fomo_nn_train -p) must be saved there first."""
    dataset_dir = Path(folder).parent
    command = f"fomo_nn_preprocess -d {dataset_dir.name}"
    try:
        same = preprocessing_signature(load_plans(dataset_dir / PLANS_FILE)) == preprocessing_signature(plans)
    except BadInputError:
        same = False
    return command if same else f"save these plans as {dataset_dir / PLANS_FILE}, then run {command}"


def list_cases(folder: str | Path, plans) -> list[PreprocessedCase]:
    """The finished cases of `folder` for `plans`; cases without CASE.json (a writer still at work or
    killed) are left out, but one case of other plans, or without the mask the plans expect, refuses
    the whole folder, naming the command that preprocesses it again."""
    folder = Path(folder)
    signature, needs_seg = preprocessing_signature(plans), expects_seg(plans)
    states = {case_id: case_state(folder, case_id, signature, needs_seg) for case_id in _written_case_ids(folder)}
    by_state = {state: [c for c, s in states.items() if s == state]
                for state in (FINISHED, UNFINISHED, STALE, MISSING_SEG)}
    _refuse_unusable(folder, plans, by_state)
    return [PreprocessedCase(str(folder), case_id) for case_id in by_state[FINISHED]]


def _refuse_unusable(folder: Path, plans, by_state: dict[str, list[str]]) -> None:
    """One BadInputError for the first problem: stale cases, missing masks, or no finished case at all."""
    stale, no_seg, unfinished = by_state[STALE], by_state[MISSING_SEG], by_state[UNFINISHED]
    if by_state[FINISHED] and not stale and not no_seg:
        return
    written = sum(len(by_state[state]) for state in (FINISHED, STALE, MISSING_SEG))  # CASE.json and CASE.npy there
    command = preprocess_command(folder, plans)
    if stale:
        raise BadInputError(folder, f"{len(stale)} of {written} preprocessed case(s) were written for other plans "
                                    f"than these ({SIGNATURE_KEY} other than {preprocessing_signature(plans)} or "
                                    f"none; e.g. {', '.join(stale[:3])}): training on them would record plans that "
                                    f"prediction preprocesses differently; preprocess again: {command}")
    if no_seg:
        raise BadInputError(case_paths(folder, no_seg[0])["seg"],
                            f"{len(no_seg)} of {written} preprocessed case(s) lack the CASE_seg.npy the plans expect "
                            f"(voxel labels {plans.voxel_labels}; e.g. {', '.join(no_seg[:3])}): preprocess again: "
                            f"{command}")
    count = f" ({len(unfinished)} unfinished)" if unfinished else ""
    raise BadInputError(folder, f"no finished preprocessed case{count}: preprocess: {command}")
