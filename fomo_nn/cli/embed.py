"""fomo_nn_embed -e ENCODER -i SCANS -o OUT: one 1-D float32 embedding per scan (FOMO26 tasks 6 and 7).

ENCODER: any checkpoint fomo_nn reads (pretraining, finetuning, exported encoder, foreign formats) or
random[:SEED] with --plans. SCANS: a scan, a folder of scans or a ptid,nifti_path CSV. OUT: a folder of
<ptid>.npy plus embedding_recipe.json, or a .npy path for one scan. The whole scan goes through the
sliding window; tile features are pooled over stages and tiles (see fomo_nn.probing.embedding). A scan
that cannot be read (truncated, 4D, empty) is named and skipped, the rest are embedded, and the command
exits 1; a rerun resumes.
"""
from __future__ import annotations

import argparse
import sys

from fomo_nn.utils.errors import BadInputError


def build_parser() -> argparse.ArgumentParser:
    from fomo_nn.probing.embedding import STAGE_POOLINGS, WINDOW_POOLINGS

    parser = argparse.ArgumentParser(prog="fomo_nn_embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-e", "--encoder", required=True, help="checkpoint file or random[:SEED] (needs --plans)")
    parser.add_argument("-i", "--input", required=True, help="scan file, folder of scans, or ptid,nifti_path CSV")
    parser.add_argument("-o", "--output", required=True, help="output folder, or a .npy file for one scan")
    parser.add_argument("--plans", help="plans.json whose spacing, patch and normalization to use "
                                        "(default: the checkpoint's)")
    parser.add_argument("--stages", choices=STAGE_POOLINGS, default="all_stages_avgmax",
                        help="which stage features each tile gives (default: every stage's average and maximum; "
                             "benchmarks/RESULTS.md, issue 23)")
    parser.add_argument("--windows", choices=WINDOW_POOLINGS, default="brain_weighted",
                        help="how tiles are averaged (default: weighted by their share of brain voxels)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-recipe", action="store_true", help="do not write the recipe JSON (container outputs)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow unpickling a checkpoint that needs it (only for files you trust)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fomo_nn.plans import load_plans
    from fomo_nn.probing.embedding import load_embedder
    from fomo_nn.probing.embedding_run import run_embedding

    try:
        plans = load_plans(args.plans) if args.plans else None
        embedder = load_embedder(args.encoder, plans, args.stages, args.windows, args.step, args.trust_checkpoint)
        outcome = run_embedding(embedder, args.input, args.output, args.device, write_recipe=not args.no_recipe,
                                report=lambda line: print(line, file=sys.stderr))
    except (BadInputError, FileNotFoundError, ValueError) as error:
        print(f"fomo_nn_embed: error: {error}", file=sys.stderr)
        return 2
    print(f"fomo_nn_embed: {len(outcome.written)} written, {len(outcome.skipped)} already there, "
          f"{len(outcome.failed)} failed; length {embedder.recipe.length}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
