"""Atomic file writes: a reader never sees a half-written file under its final name.

A full disk is reported as `NoSpaceLeftError` ("no space left on <path>"), so callers can stop a
run with one message instead of failing file after file.
"""
from __future__ import annotations

import errno
import json
import os
import re
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


class NoSpaceLeftError(OSError):
    """The disk holding `path` is full: every further write there fails too, so the run should stop."""

    def __init__(self, path):
        super().__init__(errno.ENOSPC, f"no space left on {path}")
        self.path = str(path)

    def __str__(self) -> str:
        return f"no space left on {self.path}"

    def __reduce__(self):  # survives the trip from a worker process (OSError's own reduce passes 2 args)
        return type(self), (self.path,)


# numpy's tofile/np.save cut short by a full disk: an OSError without errno, e.g. "59334 requested and 3040 written"
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def is_no_space(error: BaseException) -> bool:
    if not isinstance(error, OSError):
        return False
    return error.errno == errno.ENOSPC or (error.errno is None and bool(_SHORT_WRITE.match(str(error))))


def no_space_error(error: OSError, fallback_path) -> NoSpaceLeftError:
    """`error` (ENOSPC) as a NoSpaceLeftError naming the file it hit, else `fallback_path`."""
    if isinstance(error, NoSpaceLeftError):
        return error
    return NoSpaceLeftError(error.filename or fallback_path)


def write_atomically(path: str | Path, writer, suffix: str = ".part") -> Path:
    """Call `writer(temporary_path)`, then move the result to `path` in one step (or leave nothing)."""
    path = Path(path)
    temp = None
    try:
        temp = atomic_path(path, suffix)
        writer(temp)
        os.replace(temp, path)
    except OSError as error:
        if is_no_space(error):
            raise NoSpaceLeftError(path) from None
        raise
    finally:
        if temp is not None and temp.exists():
            temp.unlink()
    return path


def ensure_writable_folder(path: str | Path) -> Path:
    """Create `path` if needed and prove it takes files (write and remove a probe), before any work is done.

    Every reason (it is a file, a parent is a file, read-only, disk full) is one ValueError naming the folder,
    not a traceback after hours of predictions.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: the output folder is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{path}: cannot create the output folder: a part of the path is a file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot create the output folder ({error.strerror or error})") from None
    try:
        handle, probe = tempfile.mkstemp(prefix=".fomo_nn_write_probe.", dir=path)
        try:
            os.write(handle, b"probe")
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        if is_no_space(error):
            raise ValueError(f"no space left on {path}") from None
        raise ValueError(f"{path}: the output folder is not writable ({error.strerror or error})") from None
    return path


def is_inside(path: str | Path, tree: str | Path) -> bool:
    """Whether `path` is `tree` or lies below it, symlinks resolved (the folders need not exist yet)."""
    resolved, root = Path(path).resolve(), Path(tree).resolve()
    return resolved == root or root in resolved.parents


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
