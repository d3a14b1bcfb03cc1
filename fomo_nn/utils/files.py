"""Atomic file writes: a reader never sees a half-written file under its final name."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_path(path: str | Path, suffix: str = ".part") -> Path:
    """A temporary sibling of `path` (same folder, so os.replace is atomic).

    `suffix` matters for writers that pick the format from the name (nibabel wants `.nii.gz`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes owner-only files; a final file gets the usual mode
    return Path(temp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, writer, suffix: str = ".part") -> Path:
    """Call `writer(temporary_path)`, then move the result to `path` in one step (or leave nothing)."""
    path = Path(path)
    temp = atomic_path(path, suffix)
    try:
        writer(temp)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path


def write_bytes_atomic(path: str | Path, payload: bytes) -> Path:
    return write_atomically(path, lambda temp: temp.write_bytes(payload))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data, indent: int | None = 2) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent, default=_to_builtin) + "\n")


def _to_builtin(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def read_json(path: str | Path):
    with open(path) as handle:
        return json.load(handle)
