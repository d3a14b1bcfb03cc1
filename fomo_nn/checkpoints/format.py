"""A checkpoint format: a row of the registry (detect from the loaded keys, then convert to a record)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fomo_nn.checkpoints.record import CheckpointRecord


@dataclass(frozen=True)
class CheckpointFormat:
    name: str
    description: str  # one line: which framework writes it, what it holds
    detect: Callable[[dict, Path], bool]  # (loaded top-level dict, path) -> is it this format? (cheap, no errors)
    convert: Callable[[dict, Path], CheckpointRecord]  # BadInputError naming the file when it cannot be used
