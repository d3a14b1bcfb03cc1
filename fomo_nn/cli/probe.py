"""fomo_nn_probe -d DATASET -e ENCODER [-e ...]: frozen-feature probes of any encoder on a labelled dataset.

Each encoder (a pretraining checkpoint, an exported encoder, a finetuned model, or random[:SEED]) is
frozen; pooled features of the dataset's training cases fit a logistic / ridge (``linear``) or kNN
probe, scored by in-domain cross-validation and on the test split (the held-out sites) when the raw
dataset has one, overall and per group (``--groups case_id,group`` CSV, e.g. the site).
"""
from __future__ import annotations

import argparse
import sys

from fomo_nn.io.errors import BadInputError


def parse_encoder(text: str) -> tuple[str, str]:
    """NAME=SOURCE or SOURCE (named after itself)."""
    name, _, source = text.partition("=")
    return (name, source) if source else (text, text)


def build_parser() -> argparse.ArgumentParser:
    from fomo_nn.probing import FEATURE_MODES, POOLINGS, PROBE_MODELS

    parser = argparse.ArgumentParser(prog="fomo_nn_probe", description=__doc__)
    parser.add_argument("-d", "--dataset", required=True, help="labelled dataset id or name (preprocessed)")
    parser.add_argument("-e", "--encoder", action="append", type=parse_encoder, required=True,
                        metavar="[NAME=]SOURCE", help="checkpoint, exported encoder, finetuned model or random[:SEED] "
                                                      "(repeatable)")
    parser.add_argument("--modes", nargs="+", choices=FEATURE_MODES[:3], default=["per_sequence"],
                        help="how a single-channel encoder meets several sequences (default per_sequence)")
    parser.add_argument("--pooling", choices=POOLINGS, default="all_stages")
    parser.add_argument("--models", nargs="+", choices=PROBE_MODELS, default=["linear"])
    parser.add_argument("--groups", help="CSV case_id,group naming each test case's group (e.g. its site)")
    parser.add_argument("--no-test", action="store_true", help="in-domain cross-validation only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", help="write every row as JSON here")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fomo_nn.probing.runner import ProbeRequest, format_table, run_probes
    from fomo_nn.utils.files import write_json_atomic

    request = ProbeRequest(dataset=args.dataset, encoders=dict(args.encoder), modes=args.modes, pooling=args.pooling,
                           models=args.models, groups=args.groups, test=not args.no_test, seed=args.seed,
                           device=args.device, progress=not args.quiet and sys.stderr.isatty())
    try:
        result = run_probes(request)
    except (BadInputError, FileNotFoundError, ValueError) as error:
        print(f"fomo_nn_probe: error: {error}", file=sys.stderr)
        return 2
    if args.output:
        write_json_atomic(args.output, result)
    if not args.quiet:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
