"""fomo_nn_probe -d DATASET -e ENCODER [-e ...]: frozen-feature probes of any encoder on a labelled dataset.

Each encoder (a pretraining checkpoint, an exported encoder, a finetuned model, or random[:SEED]) is
frozen; pooled features of the dataset's training cases fit a logistic / ridge (``linear``) or kNN
probe, scored by in-domain cross-validation and on the test split (the held-out sites) when the raw
dataset has one, overall and per group (``--groups case_id,group`` CSV, e.g. the site).

fomo_nn_probe --protocol fomo26 --embeddings DIR --subjects-csv CSV -o OUT: the FOMO26 organisers' probe
(fomo-lp @ f915d5a) on `<ptid>.npy` embeddings (fomo_nn_embed writes them): their stratified split, 13
learning rates for 20 epochs at batch 64 chosen by validation AUROC, one-vs-rest AUROC and F1 on the test
split, and their fairness score; OUT gets predictions.json and eval_report.json.
"""
from __future__ import annotations

import argparse
import sys

from fomo_nn.utils.errors import BadInputError

PROTOCOLS = ("fomo_nn", "fomo26")


def parse_encoder(text: str) -> tuple[str, str]:
    """NAME=SOURCE or SOURCE (named after itself)."""
    name, _, source = text.partition("=")
    return (name, source) if source else (text, text)


def build_parser() -> argparse.ArgumentParser:
    from fomo_nn.probing import FEATURE_MODES, POOLINGS, PROBE_MODELS

    parser = argparse.ArgumentParser(prog="fomo_nn_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=PROTOCOLS, default=PROTOCOLS[0],
                        help="fomo_nn: probes of encoders on a dataset (default); fomo26: the organisers' probe and "
                             "fairness score on embeddings")
    parser.add_argument("-d", "--dataset", help="labelled dataset id or name (preprocessed)")
    parser.add_argument("-e", "--encoder", action="append", type=parse_encoder,
                        metavar="[NAME=]SOURCE", help="checkpoint, exported encoder, finetuned model or random[:SEED] "
                                                      "(repeatable)")
    parser.add_argument("--modes", nargs="+", choices=FEATURE_MODES[:3], default=["per_sequence"],
                        help="how a single-channel encoder meets several sequences (default per_sequence)")
    parser.add_argument("--pooling", choices=POOLINGS, default="all_stages")
    parser.add_argument("--models", nargs="+", choices=PROBE_MODELS, default=["linear"])
    parser.add_argument("--groups", help="CSV case_id,group naming each test case's group (e.g. its site)")
    parser.add_argument("--no-test", action="store_true", help="in-domain cross-validation only")
    parser.add_argument("--seed", type=int, help="seed of the cross-validation folds (default 0); fomo26: of the "
                                                 "split, heads and shuffling (default 42)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", help="write every row as JSON here (fomo26: the report folder)")
    parser.add_argument("--quiet", action="store_true")
    fomo26 = parser.add_argument_group("--protocol fomo26")
    fomo26.add_argument("--embeddings", help="folder of <ptid>.npy embeddings")
    fomo26.add_argument("--subjects-csv", help="CSV with ptid, selected_cohort and the two demographic columns")
    fomo26.add_argument("--label-column", default="selected_cohort")
    fomo26.add_argument("--feature1-column", default="age", help="continuous variable, binned (default age)")
    fomo26.add_argument("--feature2-column", default="sex", help="categorical variable (default sex)")
    fomo26.add_argument("--feature1-bins", default="25:0,50:1,75:2,1000:3",
                        help="UPPER:LABEL pairs, upper bounds inclusive and ascending")
    fomo26.add_argument("--split-counts", nargs=3, type=int, default=[80, 20, 100], metavar=("TRAIN", "VAL", "TEST"),
                        help="subjects per class (fomo-lp --n-train/--n-val/--n-test; 40/10/50)")
    fomo26.add_argument("--epochs", type=int, default=20)
    fomo26.add_argument("--batch-size", type=int, default=64)
    return parser


def main_fomo26(args) -> int:
    from fomo_nn.probing.fomo26.fairness import parse_bins
    from fomo_nn.probing.fomo26.protocol import Fomo26ProbeRequest, format_report, run_fomo26_probe

    missing = [flag for flag, value in (("--embeddings", args.embeddings), ("--subjects-csv", args.subjects_csv),
                                        ("-o/--output", args.output)) if not value]
    if missing:
        print(f"fomo_nn_probe: error: --protocol fomo26 needs {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        request = Fomo26ProbeRequest(
            embeddings=args.embeddings, subjects_csv=args.subjects_csv, output=args.output,
            label_column=args.label_column, feature1_column=args.feature1_column,
            feature2_column=args.feature2_column, feature1_bins=parse_bins(args.feature1_bins),
            counts=tuple(args.split_counts), epochs=args.epochs, batch_size=args.batch_size,
            seed=42 if args.seed is None else args.seed)
        report = run_fomo26_probe(request)
    except (BadInputError, ValueError) as error:
        print(f"fomo_nn_probe: error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_report(report))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.protocol == "fomo26":
        return main_fomo26(args)
    if not args.dataset or not args.encoder:
        print("fomo_nn_probe: error: the fomo_nn protocol needs -d/--dataset and -e/--encoder", file=sys.stderr)
        return 2
    from fomo_nn.probing.runner import ProbeRequest, format_table, run_probes
    from fomo_nn.utils.files import write_json_atomic

    request = ProbeRequest(dataset=args.dataset, encoders=dict(args.encoder), modes=args.modes, pooling=args.pooling,
                           models=args.models, groups=args.groups, test=not args.no_test, seed=args.seed or 0,
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
