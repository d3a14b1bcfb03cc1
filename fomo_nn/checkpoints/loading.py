"""Read a checkpoint file into memory, safely: the only `torch.load` in fomo_nn.

Checkpoints from elsewhere are untrusted files: a pickle can run code while it is read. Every `.pth`/`.pt`/
`.ckpt` is therefore read with `torch.load(weights_only=True)` (tensors, containers and plain types only);
a file that needs more (e.g. a Lightning `hyper_parameters` object) is refused with the file, the globals
it would import and the opt-in flag named. `trust_pickle=True` (the CLIs' `--trust-checkpoint`) reads it
with full unpickling and logs a warning: never a silent fallback. `.safetensors` files hold tensors only
and are read with the safetensors library.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from fomo_nn.utils.errors import BadInputError

logger = logging.getLogger(__name__)

TRUST_FLAG = "--trust-checkpoint"
SAFETENSORS_SUFFIX = ".safetensors"
STATE_DICT = "state_dict"  # where a safetensors file's tensors go in the returned dict
METADATA = "safetensors_metadata"  # its string metadata (header __metadata__), {} when none


def load_checkpoint_file(path: str | Path, *, trust_pickle: bool = False) -> dict:
    """The checkpoint's top-level dict (tensors on the CPU); BadInputError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "checkpoint does not exist" if not path.exists() else "checkpoint is not a file")
    if path.suffix == SAFETENSORS_SUFFIX:
        return _load_safetensors(path)
    if trust_pickle:
        logger.warning("%s: loading with full unpickling (%s): only do this for a file from a source you trust",
                       path, TRUST_FLAG)
        state = _torch_load(path, weights_only=False)
    else:
        state = _torch_load(path, weights_only=True)
    if not isinstance(state, dict):
        raise BadInputError(path, f"checkpoint holds a {type(state).__name__}, not a dict of entries")
    return state


def _torch_load(path: Path, weights_only: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        if weights_only and "weights_only" in str(error):
            raise BadInputError(path, f"needs unpickling of {', '.join(unsafe_globals(path)) or 'Python objects'}, "
                                      "which fomo_nn does not do for a checkpoint file (it could run code); pass "
                                      f"{TRUST_FLAG} only if you trust the file's source") from None
        raise BadInputError(path, f"not a readable checkpoint ({_first_line(error)})") from None
    except Exception as error:  # truncated zip, not a torch file, wrong magic number, ...
        raise BadInputError(path, f"not a readable checkpoint: truncated or not a torch file "
                                  f"({type(error).__name__}: {_first_line(error)})") from None


def unsafe_globals(path: Path) -> list[str]:
    """The globals a torch zip checkpoint would import beyond weights_only's allow-list (best effort)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) format or unreadable: the caller's message still names the file
        return []


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise BadInputError(path, f"not a readable safetensors file: truncated or corrupt ({_first_line(error)})") \
            from None
    return {STATE_DICT: tensors, METADATA: metadata}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
