"""fomo_nn_rank: rank several models FOMO25-style, with bootstrap rank stability, permutation tests and tiers."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fomo_nn.evaluation.permutation import DEFAULT_PERMUTATIONS
from fomo_nn.evaluation.report import make_report

EPILOG = """Each RESULT_DIR is one model (named after the folder) holding the summary JSON files that
fomo_nn_evaluate wrote, one per task (searched recursively). Writes leaderboard.md, leaderboard.csv,
ranks_bootstrap.json, pairwise_tests.csv and PNG plots into REPORT_DIR."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_rank", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result_dirs", nargs="+", type=Path, metavar="RESULT_DIR")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPORT_DIR")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS,
                        help=f"permutations per pairwise test (default {DEFAULT_PERMUTATIONS}, as the FOMO25 paper; "
                             "p = (1 + b) / (1 + m))")
    parser.add_argument("--seed", type=int, default=0, help="seed of resamples and permutations (default 0)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bootstrap < 1 or args.permutations < 1:
        parser.error("--bootstrap and --permutations must be at least 1")
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be in (0, 1), got {args.alpha}")
    try:
        report = make_report(args.result_dirs, args.output, args.bootstrap, args.seed, args.alpha, args.permutations,
                             progress=not args.quiet)
    except (ValueError, OSError) as error:
        print(f"fomo_nn_rank: error: {error}", file=sys.stderr)
        return 1
    for row in report.rows:
        print(f"{row.place:>3}  {row.model:<30} overall rank {row.overall_rank:5.2f}  tier {row.tier}")
    print(f"report written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
