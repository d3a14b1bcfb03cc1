"""fomo_nn's own training checkpoints: written atomically, read through checkpoints.loading (weights_only).

This module owns the checkpoint's keys: every reader and writer names them through the constants
below, and a training checkpoint is built and read through `TrainingCheckpoint` (to_dict/from_dict),
which refuses a missing required key or an unknown one with an error naming the file and the key.
The on-disk layout is a plain dict with these key names (loadable with weights_only=True).
A save that hits a full disk is NoSpaceLeftError naming the checkpoint; the previous file of that
name stays as it was, and no temporary is left behind.
"""
from __future__ import annotations

import dataclasses
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fomo_nn.checkpoints.loading import load_checkpoint_file
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import NoSpaceLeftError, write_atomically
from fomo_nn.utils.strict_keys import UnknownKeyError, check_known_keys

# ---------------------------------------------------------------- the keys of a checkpoint file
NETWORK = "network"  # the state dict of the whole trained model
OPTIMIZER = "optimizer"
SCHEDULER = "scheduler"
GRAD_SCALER = "grad_scaler"
EPOCH = "epoch"
PLANS = "plans"  # Plans.to_json()
TRAINER = "trainer"  # the trainer's registered name
FOLD = "fold"
OPTIONS = "options"  # TrainerOptions.to_json()
RNG = "rng"
BEST_METRIC = "best_metric"
METRIC_NAME = "metric_name"
EXTRA = "extra"  # trainer-specific state (e.g. the DINO teacher)
ADAPTATION = "adaptation"  # pretraining: the adaptation record (fomo_nn.networks.adaptation.AdaptationRecord)
PRETRAINED = "pretrained"  # finetuning: what --pretrained loaded (or None)
# an exported encoder (fomo_nn_export_encoder)
ENCODER = "encoder"
FORMAT = "format"
FORMAT_VERSION = "format_version"
SOURCE_CHECKPOINT = "source_checkpoint"

RECORD_KEYS = (ADAPTATION, PRETRAINED)  # what BaseTrainer.checkpoint_record() may add
REQUIRED_KEYS = (NETWORK, OPTIMIZER, SCHEDULER, EPOCH, PLANS, TRAINER, RNG)
EXPORT_KEYS = (FORMAT, FORMAT_VERSION, ENCODER, ADAPTATION, PLANS, TRAINER, EPOCH, SOURCE_CHECKPOINT)


@dataclass
class TrainingCheckpoint:
    """What BaseTrainer saves every `checkpoint_every` epochs and resumes from (one key per field)."""

    network: dict
    optimizer: dict
    scheduler: dict
    epoch: int
    plans: dict
    trainer: str
    rng: dict
    fold: str = ""
    options: dict = field(default_factory=dict)
    best_metric: float | None = None
    metric_name: str | None = None
    extra: dict = field(default_factory=dict)
    grad_scaler: None = None  # bf16 needs no loss scaling; kept for the file layout
    records: dict = field(default_factory=dict)  # checkpoint_record() entries, keys from RECORD_KEYS

    def to_dict(self) -> dict:
        check_known_keys("checkpoint record", self.records, RECORD_KEYS)
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "records"}
        return {**state, **self.records}

    @classmethod
    def from_dict(cls, state: dict, path: str | Path) -> "TrainingCheckpoint":
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "records"]
        try:
            check_known_keys("training checkpoint", state, fields + list(RECORD_KEYS))
        except UnknownKeyError as error:
            raise BadInputError(path, str(error)) from None
        missing = [key for key in REQUIRED_KEYS if key not in state]
        if missing:
            raise BadInputError(path, f"training checkpoint lacks the key(s) {missing} (it holds {sorted(state)}); "
                                      "it was not written by fomo_nn training, or the save was cut short")
        types = {NETWORK: dict, OPTIMIZER: dict, SCHEDULER: dict, EPOCH: int, PLANS: dict, TRAINER: str, RNG: dict}
        for key, kind in types.items():
            if not isinstance(state[key], kind) or isinstance(state[key], bool):
                raise BadInputError(path, f"checkpoint key {key!r} should hold a {kind.__name__}, "
                                          f"got {type(state[key]).__name__}")
        records = {key: state[key] for key in RECORD_KEYS if key in state}
        return cls(**{key: state[key] for key in fields if key in state}, records=records)


def plans_entry(state: dict) -> dict | None:
    """The plans (as JSON) a checkpoint or export holds, or None."""
    plans = state.get(PLANS)
    return plans if isinstance(plans, dict) else None


def task_type_of(state: dict) -> str | None:
    """The task_type of a checkpoint's plans (None: no plans)."""
    return (plans_entry(state) or {}).get("task_type")


def adaptation_entry(state: dict) -> dict | None:
    """The adaptation record dict a pretraining checkpoint or export holds under ADAPTATION (None if none)."""
    record = state.get(ADAPTATION)
    return record if isinstance(record, dict) else None


def save_checkpoint(state: dict, path: str | Path) -> Path:
    def save(temp: Path) -> None:
        try:
            torch.save(state, temp)
        except RuntimeError as error:
            if is_torch_write_failure(error):
                raise NoSpaceLeftError(path) from None
            raise

    return write_atomically(path, save, ".pth.part")


def is_torch_write_failure(error: RuntimeError) -> bool:
    """torch.save's C++ writer reports a full disk (or quota) as an enforce failure of inline_container.cc,
    e.g. 'unexpected pos 704 vs 598' or 'PytorchStreamWriter failed writing file data/0: file write failed'."""
    text = str(error)
    return "inline_container" in text and ("unexpected pos" in text or "failed writing" in text)


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


def load_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> dict:
    """The top-level dict of a checkpoint file (fomo_nn.checkpoints.loading: weights_only unless trusted)."""
    return load_checkpoint_file(path, trust_pickle=trust_pickle)


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
