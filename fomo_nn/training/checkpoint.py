"""Checkpoints: written atomically, loaded safely (weights_only: no arbitrary code from a file)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from fomo_nn.io.errors import BadInputError
from fomo_nn.utils.files import write_atomically


def save_checkpoint(state: dict, path: str | Path) -> Path:
    return write_atomically(path, lambda temp: torch.save(state, temp), ".pth.part")


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Delete the temporaries (`.NAME.XXXX[.pth].part`) a kill during an atomic save left in `folder`.

    Called when a training starts in its fold folder: no save of this run is in flight yet, and a
    leftover is never a usable file (the atomic rename did not happen).
    """
    folder = Path(folder)
    removed = sorted(p for p in folder.glob(".*.part") if p.is_file()) if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        print(f"[fomo_nn] removed {len(removed)} unfinished save(s) of an interrupted run in {folder}: "
              f"{', '.join(p.name for p in removed)}", file=sys.stderr)
    return removed


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "checkpoint does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise BadInputError(path, f"not a loadable fomo_nn checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise BadInputError(path, "checkpoint does not hold a dict")
    return state


def capture_rng_state() -> dict:
    """RNG states as tensors and plain types only, so weights_only loading accepts them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
             "numpy_pos": int(pos), "numpy_gauss": [int(has_gauss), float(cached)],
             "python": _python_state_to_list(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_gauss"][0], state["numpy_gauss"][1]))
    random.setstate(_list_to_python_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_list(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _list_to_python_state(state):
    version, internal, gauss = state
    return version, tuple(internal), gauss
