"""Atomic file output with ordinary permissions (a temporary sibling, then os.replace).

fomo_nn.utils.files creates its temporary files with mkstemp, which are private (0600); a shared
sample dataset should be readable like any file the user writes, so the umask decides here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fomo_nn.utils.files import write_atomically


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def write_file(path: str | Path, payload: bytes | str) -> Path:
    """Write `payload` to `path` so that readers only ever see a complete file."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload

    def write(temp: Path) -> None:
        temp.write_bytes(data)
        os.chmod(temp, FILE_MODE)

    return write_atomically(path, write)


def write_json(path: str | Path, data) -> Path:
    return write_file(path, json.dumps(data, indent=2, default=_builtin) + "\n")


def _builtin(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
