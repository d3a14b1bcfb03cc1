"""Read preprocessed cases: arrays memory-mapped (never whole-dataset loads), properties as dicts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PreprocessedCase:
    folder: str
    case_id: str

    @property
    def data_path(self) -> Path:
        return Path(self.folder) / f"{self.case_id}.npy"

    @property
    def seg_path(self) -> Path:
        return Path(self.folder) / f"{self.case_id}_seg.npy"

    @cached_property
    def properties(self) -> dict:
        return json.loads((Path(self.folder) / f"{self.case_id}.json").read_text())

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


def list_preprocessed_cases(folder: str | Path) -> list[PreprocessedCase]:
    """Finished cases only: CASE.json is written last, so a case without it is incomplete."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no preprocessed data (run fomo_nn_plan_and_preprocess first)")
    return [PreprocessedCase(str(folder), p.stem) for p in sorted(folder.glob("*.json"))
            if (folder / f"{p.stem}.npy").is_file()]
