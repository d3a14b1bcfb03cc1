"""Every checkpoint format fomo_nn reads, in one explicit table, and `read_checkpoint`: load once, detect, convert.

A new format is one file in `formats/` defining `FORMAT` plus one line below. Order matters only where two
layouts could both match: fomo_nn's own formats first, then the foreign ones.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.formats import asparagus, fomo2jomo, fomo25_baseline
from fomo_nn.checkpoints.formats import fomo_nn_encoder, fomo_nn_training, nnssl, safetensors_config
from fomo_nn.checkpoints.loading import METADATA, STATE_DICT, load_checkpoint_file
from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_encoder
from fomo_nn.networks.encoders import ENCODER_PREFIX

CHECKPOINT_FORMATS: tuple[CheckpointFormat, ...] = (
    fomo_nn_training.FORMAT,
    fomo_nn_encoder.FORMAT,
    nnssl.FORMAT,
    safetensors_config.FORMAT,
    asparagus.FORMAT,
    fomo25_baseline.FORMAT,
    fomo2jomo.FORMAT,
)
SHOWN = 5


def format_names() -> list[str]:
    return [row.name for row in CHECKPOINT_FORMATS]


def detect_format(contents: dict, path: str | Path) -> CheckpointFormat | None:
    """The first format whose detect() accepts the loaded dict, None if none does."""
    return next((row for row in CHECKPOINT_FORMATS if row.detect(contents, Path(path))), None)


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> CheckpointRecord:
    """Load `path` once, convert it through its format's row, and check its encoder can be built by fomo_nn."""
    path = Path(path)
    contents = load_checkpoint_file(path, trust_pickle=trust_pickle)
    row = detect_format(contents, path)
    if row is None:
        keys = sorted(contents[STATE_DICT])[:10] if STATE_DICT in contents and METADATA in contents else \
            sorted(map(str, contents))[:15]
        raise BadInputError(path, f"unknown checkpoint format (top-level keys: {keys}); fomo_nn reads "
                                  f"{', '.join(format_names())}")
    record = row.convert(contents, path)
    check_encoder_fits(record)
    return record


def check_encoder_fits(record: CheckpointRecord) -> None:
    """The encoder fomo_nn builds from the record's network must hold exactly the record's keys and shapes.

    Built on the meta device (no memory, no init cost); a mismatch is the converter's or the file's fault
    and is reported naming the file and the first keys.
    """
    channels = int(record.network.input_channels)
    try:
        with torch.device("meta"):
            encoder = build_encoder(record.network, channels)
    except ValueError as error:
        raise BadInputError(record.path, f"its {record.format} network cannot be built by fomo_nn ({error})") from None
    expected = {ENCODER_PREFIX + k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in record.encoder.items()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k}: file {found[k]} vs {record.network.encoder} encoder {expected[k]}"
              for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or shapes:
        parts = [f"{len(items)} {what} ({', '.join(items[:SHOWN])}{' ...' if len(items) > SHOWN else ''})"
                 for what, items in (("missing encoder keys", missing), ("unexpected encoder keys", unexpected),
                                     ("mis-shaped encoder weights", shapes)) if items]
        raise BadInputError(record.path, f"its {record.format} encoder weights do not fit the "
                                         f"{record.network.encoder!r} encoder they declare: {'; '.join(parts)}")
