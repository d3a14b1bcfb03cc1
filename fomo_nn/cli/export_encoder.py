"""fomo_nn_export_encoder CHECKPOINT OUT: keep only what finetuning needs from a pretraining checkpoint.

The output holds the encoder weights (`encoder`, keys `encoder.*`), the adaptation record
(`adaptation`: architecture, plans, encoder/stem keys, method, data provenance) and the plans,
without decoder, heads, optimizer or teacher. It loads with torch.load(..., weights_only=True) and
is accepted by `fomo_nn_train ... --pretrained OUT`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fomo_nn.io.errors import BadInputError
from fomo_nn.networks.encoders import ENCODER_PREFIX
from fomo_nn.networks.weights import strip_wrapper_prefixes
from fomo_nn.networks.adaptation import AdaptationRecord
from fomo_nn.checkpoints.training_state import (ADAPTATION, ENCODER, EPOCH, FORMAT, FORMAT_VERSION, NETWORK, PLANS,
                                         SOURCE_CHECKPOINT, TRAINER, load_checkpoint, save_checkpoint)

EXPORT_FORMAT = "fomo_nn_encoder"
EXPORT_VERSION = 1


def exported_encoder(state: dict, source: str | Path) -> dict:
    """The export dict built from a loaded pretraining checkpoint dict."""
    entry = state.get(ADAPTATION)
    if not isinstance(entry, dict):
        raise BadInputError(source, f"has no adaptation record ({ADAPTATION!r}): not a fomo_nn "
                                    "pretraining checkpoint (finetuning checkpoints are not exported)")
    try:
        record = AdaptationRecord.from_dict(entry).to_dict()
    except ValueError as error:
        raise BadInputError(source, str(error)) from None
    network = state.get(NETWORK)
    if not isinstance(network, dict):
        raise BadInputError(source, f"has no {NETWORK!r} state dict")
    encoder = {k: v for k, v in strip_wrapper_prefixes(network).items() if k.startswith(ENCODER_PREFIX)}
    expected = record["encoder_keys"] or []
    if not encoder or sorted(encoder) != sorted(expected):
        missing = sorted(set(expected) - set(encoder))[:5]
        extra = sorted(set(encoder) - set(expected))[:5]
        raise BadInputError(source, f"encoder weights do not match its adaptation record (missing {missing}, "
                                    f"not in the record {extra})")
    return {FORMAT: EXPORT_FORMAT, FORMAT_VERSION: EXPORT_VERSION, ENCODER: encoder,
            ADAPTATION: record, PLANS: state.get(PLANS, record["plans"]),
            TRAINER: state.get(TRAINER), EPOCH: state.get(EPOCH), SOURCE_CHECKPOINT: str(source)}


def export_encoder(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the encoder-only file for `checkpoint` to `out` (atomically); returns `out`."""
    state = load_checkpoint(checkpoint)
    return save_checkpoint(exported_encoder(state, checkpoint), out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_export_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="pretraining checkpoint (e.g. checkpoint_final.pth)")
    parser.add_argument("out", help="output file (e.g. encoder.pth)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export_encoder(args.checkpoint, args.out)
    except BadInputError as error:
        print(f"fomo_nn_export_encoder: error: {error}", file=sys.stderr)
        return 2
    state = load_checkpoint(out)
    record = AdaptationRecord.from_dict(state[ADAPTATION], str(out))
    provenance = record.data_provenance
    print(f"{out}: {len(state[ENCODER])} encoder tensors, method {record.method}, "
          f"{provenance.get('num_scans', '?')} scans of {provenance.get('num_subjects', '?')} subjects, "
          f"track {provenance.get('track', 'unknown')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
