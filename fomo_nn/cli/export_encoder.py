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
from fomo_nn.training.checkpoint import load_checkpoint, save_checkpoint
from fomo_nn.training.pretraining.base import ADAPTATION_RECORD_KEY

EXPORT_FORMAT = "fomo_nn_encoder"
EXPORT_VERSION = 1


def exported_encoder(state: dict, source: str | Path) -> dict:
    """The export dict built from a loaded pretraining checkpoint dict."""
    record = state.get(ADAPTATION_RECORD_KEY)
    if not isinstance(record, dict):
        raise BadInputError(source, f"has no adaptation record ('{ADAPTATION_RECORD_KEY}'): not a fomo_nn "
                                    "pretraining checkpoint (finetuning checkpoints are not exported)")
    network = state.get("network")
    if not isinstance(network, dict):
        raise BadInputError(source, "has no 'network' state dict")
    encoder = {k: v for k, v in strip_wrapper_prefixes(network).items() if k.startswith(ENCODER_PREFIX)}
    expected = record.get("encoder_keys") or []
    if not encoder or sorted(encoder) != sorted(expected):
        missing = sorted(set(expected) - set(encoder))[:5]
        extra = sorted(set(encoder) - set(expected))[:5]
        raise BadInputError(source, f"encoder weights do not match its adaptation record (missing {missing}, "
                                    f"not in the record {extra})")
    return {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "encoder": encoder,
            ADAPTATION_RECORD_KEY: record, "plans": state.get("plans", record.get("plans")),
            "trainer": state.get("trainer"), "epoch": state.get("epoch"), "source_checkpoint": str(source)}


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
    record = state[ADAPTATION_RECORD_KEY]
    provenance = record.get("data_provenance") or {}
    print(f"{out}: {len(state['encoder'])} encoder tensors, method {record['pretraining']['method']}, "
          f"{provenance.get('num_scans', '?')} scans of {provenance.get('num_subjects', '?')} subjects, "
          f"track {provenance.get('track', 'unknown')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
