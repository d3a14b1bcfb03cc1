"""The three data roots and dataset id <-> name resolution.

Environment variables `fomo_nn_raw`, `fomo_nn_preprocessed` and `fomo_nn_results` win; when one is
unset we fall back to a folder under `$FOMO_NN_HOME` (default `~/fomo_nn_data`) and say so once, so a
first-time user never has to export anything (a frequent nnU-Net complaint).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_ROOT_VARS = ("fomo_nn_raw", "fomo_nn_preprocessed", "fomo_nn_results")
_announced: set[str] = set()
DATASET_PATTERN = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")


def default_home() -> Path:
    return Path(os.environ.get("FOMO_NN_HOME", Path.home() / "fomo_nn_data")).expanduser()


def _root(var: str) -> Path:
    value = os.environ.get(var)
    if value:
        return Path(value).expanduser()
    path = default_home() / var.replace("fomo_nn_", "")
    if var not in _announced:
        _announced.add(var)
        print(f"[fomo_nn] ${var} is not set: using {path}", file=sys.stderr)
    return path


def raw_root() -> Path:
    return _root("fomo_nn_raw")


def preprocessed_root() -> Path:
    return _root("fomo_nn_preprocessed")


def results_root() -> Path:
    return _root("fomo_nn_results")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 0 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be within 0..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ValueError(f"dataset name may hold only letters, digits, '_' and '-': {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def parse_dataset_id(folder_name: str) -> int:
    match = DATASET_PATTERN.match(folder_name)
    if not match:
        raise ValueError(f"not a dataset folder name (DatasetNNN_Name): {folder_name!r}")
    return int(match.group(1))


def resolve_dataset_name(dataset: str | int, search_roots: list[Path] | None = None) -> str:
    """Accept `2`, `'2'`, `'002'` or `'Dataset002_Name'` and return the full folder name.

    The name is looked up in the raw, preprocessed and results roots, in that order.
    """
    text = str(dataset)
    if DATASET_PATTERN.match(text):
        return text
    if not text.isdigit():
        raise ValueError(f"-d takes a dataset id (e.g. 2) or a folder name (Dataset002_Name), got {text!r}")
    prefix = f"Dataset{int(text):03d}_"
    roots = search_roots if search_roots is not None else [raw_root(), preprocessed_root(), results_root()]
    found: set[str] = set()
    for root in roots:
        if root.is_dir():
            found.update(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
    if not found:
        where = ", ".join(str(r) for r in roots)
        raise FileNotFoundError(f"no dataset with id {int(text)} ({prefix}*) in {where}")
    if len(found) > 1:
        raise ValueError(f"dataset id {int(text)} is ambiguous: {sorted(found)}")
    return found.pop()


def raw_dataset_dir(dataset: str | int) -> Path:
    return raw_root() / resolve_dataset_name(dataset)


def preprocessed_dataset_dir(dataset: str | int) -> Path:
    return preprocessed_root() / resolve_dataset_name(dataset)


def results_dataset_dir(dataset: str | int) -> Path:
    return results_root() / resolve_dataset_name(dataset)
