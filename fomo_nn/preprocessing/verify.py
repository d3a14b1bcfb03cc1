"""`--verify`: check a raw dataset end to end without writing anything.

It is the raw-dataset validator (fomo_nn.datasets.validation, also `fomo_nn_convert validate`) at
data level: dataset.json against the files, every case read in full with the rules the case reader
applies. One validator, so the two commands cannot disagree; only the report form is preprocessing's.
"""
from __future__ import annotations

from pathlib import Path

from fomo_nn.datasets.validation import validate_raw_dataset
from fomo_nn.preprocessing.dataset_cases import CaseProblem


def verify_dataset(raw_dir: str | Path, num_workers: int = 1, progress: bool = True) -> list[CaseProblem]:
    """Every problem of the raw dataset (empty list: ready to preprocess). Writes nothing."""
    problems = validate_raw_dataset(raw_dir, check_images=True, num_processes=num_workers, progress=progress)
    return [CaseProblem.from_error(None, problem) for problem in problems]
