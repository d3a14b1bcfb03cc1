"""fomo_nn's exported encoders (`fomo_nn_export_encoder`): `encoder` weights + adaptation record + plans."""
from __future__ import annotations

from pathlib import Path

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.formats.fomo_nn_training import fomo_nn_record
from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.checkpoints.training_state import ADAPTATION, ENCODER, FORMAT as FORMAT_KEY, NETWORK, PLANS

NAME = "fomo_nn_encoder"  # the value fomo_nn_export_encoder writes under the file's "format" key


def detect(contents: dict, path: Path) -> bool:
    if contents.get(FORMAT_KEY) == NAME:
        return True
    return (isinstance(contents.get(ENCODER), dict) and NETWORK not in contents
            and (isinstance(contents.get(ADAPTATION), dict) or isinstance(contents.get(PLANS), dict)))


def convert(contents: dict, path: Path) -> CheckpointRecord:
    return fomo_nn_record(contents, path, contents.get(ENCODER), NAME, whole_network=False)


FORMAT = CheckpointFormat(name=NAME, description="fomo_nn exported encoder (fomo_nn_export_encoder)",
                          detect=detect, convert=convert)
