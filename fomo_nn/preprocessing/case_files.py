"""The names of a preprocessed case's files and of the signature inside its CASE.json.

One home for the two modules that use them without importing each other: the case format (case_store:
writing, reading, the finished-case rule) and the case index (case_index: listing a folder, caching
every CASE.json). What the files hold is described in case_store.
"""
from __future__ import annotations

from pathlib import Path

SIGNATURE_KEY = "preprocessing_signature"

DATA_SUFFIX, SEG_SUFFIX, PROPERTIES_SUFFIX = ".b2nd", "_seg.b2nd", ".json"
OLD_DATA_SUFFIX, OLD_SEG_SUFFIX = ".npy", "_seg.npy"
CASE_SUFFIXES = (DATA_SUFFIX, SEG_SUFFIX, PROPERTIES_SUFFIX, OLD_DATA_SUFFIX, OLD_SEG_SUFFIX)


def case_paths(folder: str | Path, case_id: str) -> dict[str, Path]:
    folder = Path(folder)
    return {key: folder / f"{case_id}{suffix}"
            for key, suffix in zip(("data", "seg", "properties", "old_data", "old_seg"), CASE_SUFFIXES)}
