"""fomo_nn_export_encoder CHECKPOINT OUT [--format fomo_nn|nnssl|safetensors]: the encoder only, to share or reuse.

CHECKPOINT is any checkpoint fomo_nn reads (fomo_nn.checkpoints.registry). Formats written:
- fomo_nn (default; a fomo_nn pretraining checkpoint): the encoder weights (`encoder`, keys `encoder.*`),
  the adaptation record (`adaptation`) and the plans, without decoder, heads, optimizer or teacher;
  accepted by `fomo_nn_train ... --pretrained OUT`;
- nnssl (plain_conv / residual encoders): `network_weights` + `nnssl_adaptation_plan` as nnssl's
  checkpoint_final.pth holds them, and `adaptation_plan.json` beside OUT: what nnU-Net master's
  `nnUNetv2_preprocess_like_nnssl -pc OUT` and `PretrainedTrainer` read;
- safetensors: OUT (a .safetensors file: the encoder tensors) and `config.json` beside it (the Hugging
  Face model-repo layout; fomo_nn reads it back with `--pretrained OUT` / `--plans-like OUT`).
Every output loads with torch.load(..., weights_only=True) or the safetensors library.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fomo_nn.checkpoints.formats import fomo_nn_encoder, nnssl, safetensors_config
from fomo_nn.checkpoints.loading import TRUST_FLAG
from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.checkpoints.training_state import (ADAPTATION, ENCODER, EPOCH, FORMAT, FORMAT_VERSION, PLANS,
                                                SOURCE_CHECKPOINT, TRAINER, save_checkpoint)
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import write_json_atomic

EXPORT_FORMAT = fomo_nn_encoder.NAME
EXPORT_VERSION = 1
OUTPUT_FORMATS = ("fomo_nn", "nnssl", "safetensors")
NNSSL_PLAN_FILE = "adaptation_plan.json"


def exported_encoder(record: CheckpointRecord) -> dict:
    """fomo_nn's export dict for a fomo_nn pretraining checkpoint's record."""
    if record.adaptation is None:
        raise BadInputError(record.path, f"has no adaptation record ({ADAPTATION!r}): not a fomo_nn pretraining "
                                         "checkpoint (finetuning and foreign checkpoints are exported with --format "
                                         "nnssl or safetensors)")
    adaptation = record.adaptation.to_dict()
    expected = adaptation["encoder_keys"] or []
    if sorted(record.encoder) != sorted(expected):
        missing = sorted(set(expected) - set(record.encoder))[:5]
        extra = sorted(set(record.encoder) - set(expected))[:5]
        raise BadInputError(record.path, f"encoder weights do not match its adaptation record (missing {missing}, "
                                         f"not in the record {extra})")
    contents = record.contents or {}
    return {FORMAT: EXPORT_FORMAT, FORMAT_VERSION: EXPORT_VERSION, ENCODER: dict(record.encoder),
            ADAPTATION: adaptation, PLANS: contents.get(PLANS, adaptation["plans"]),
            TRAINER: contents.get(TRAINER), EPOCH: contents.get(EPOCH), SOURCE_CHECKPOINT: str(record.path)}


def export_encoder(checkpoint: str | Path, out: str | Path, output_format: str = "fomo_nn",
                   trust_pickle: bool = False) -> Path:
    """Write the encoder of `checkpoint` to `out` (atomically) in `output_format`; returns `out`."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--format {output_format!r} is not one of {OUTPUT_FORMATS}")
    record = read_checkpoint(checkpoint, trust_pickle=trust_pickle)
    out = Path(out)
    if output_format == "safetensors":
        return safetensors_config.write_safetensors(record, out)[0]
    if output_format == "nnssl":
        state = nnssl.nnssl_checkpoint(record)
        save_checkpoint(state, out)
        write_json_atomic(out.with_name(NNSSL_PLAN_FILE), state[nnssl.PLAN])
        return out
    return save_checkpoint(exported_encoder(record), out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_export_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint (e.g. a pretraining run's checkpoint_final.pth)")
    parser.add_argument("out", help="output file (e.g. encoder.pth, checkpoint_final.pth, model.safetensors)")
    parser.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS, default="fomo_nn",
                        help="layout written (default fomo_nn)")
    parser.add_argument(TRUST_FLAG, dest="trust_checkpoint", action="store_true",
                        help="read a CHECKPOINT that needs unpickling (it can run code: only from a trusted source)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export_encoder(args.checkpoint, args.out, args.output_format, args.trust_checkpoint)
        record = read_checkpoint(out)
    except BadInputError as error:
        print(f"fomo_nn_export_encoder: error: {error}", file=sys.stderr)
        return 2
    provenance = (record.adaptation.data_provenance if record.adaptation else None) or {}
    method = record.adaptation.method if record.adaptation else record.provenance.get("trainer")
    print(f"{out}: {len(record.encoder)} encoder tensors ({record.format}, {record.network.encoder} family), method "
          f"{method}, {provenance.get('num_scans', '?')} scans of {provenance.get('num_subjects', '?')} subjects, "
          f"track {provenance.get('track', 'unknown')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
