"""fomo_nn_generate_sample_data: write the synthetic FOMO-like sample used by the demo and the tests.

    fomo_nn_generate_sample_data OUT [--seed S] [--size tiny|small|medium|full] [-np WORKERS]

OUT receives fomo60k/ (pretraining corpus), finetune/ and test/ (task1-3 in the FOMO task layout)
and sample_data.json (seed, counts and per-case ground truth). Same seed -> identical files.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from fomo_nn.io.errors import BadInputError
from fomo_nn.preprocessing.parallel import default_num_processes


def build_parser() -> argparse.ArgumentParser:
    from dataset_conversion.sample_data.config import SIZE_PRESETS  # the generator is not part of the library

    parser = argparse.ArgumentParser(
        prog="fomo_nn_generate_sample_data",
        description="Generate synthetic FOMO-like brain MRI: a FOMO60K-style pretraining corpus and the three "
                    "FOMO25 finetuning/test tasks (infarct, meningioma, brain age), with ground truth.")
    parser.add_argument("out", help="output folder (created; an earlier sample written there is replaced)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files "
                                                            "(default: 0)")
    parser.add_argument("--size", choices=list(SIZE_PRESETS), default="small",
                        help="tiny: unit tests, ~5 mm voxels; small (default): the demo, ~3 mm voxels; "
                             "medium: ~2 mm; full: 1 mm brains with FOMO25 case counts (hours of CPU, ~20 GB)")
    parser.add_argument("-np", "--num-processes", type=int, default=default_num_processes(4),
                        help=f"worker processes (default: {default_num_processes(4)}); does not change the output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    from dataset_conversion.sample_data.generate import METADATA_FILE, generate_sample_data

    args = build_parser().parse_args(argv)
    if args.num_processes < 1:
        print("error: -np must be at least 1", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        metadata = generate_sample_data(args.out, seed=args.seed, size=args.size, num_workers=args.num_processes,
                                        progress=not args.quiet)
    except (BadInputError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = metadata["counts"]
    pretraining = counts["pretraining"]
    print(f"wrote {args.out} (size {args.size}, seed {args.seed}) in {time.perf_counter() - start:.1f} s")
    print(f"  fomo60k: {pretraining['subjects']} subjects, {pretraining['sessions']} sessions, "
          f"{pretraining['images']} images")
    for split in ("finetune", "test"):
        parts = []
        for task, entry in counts[split].items():
            extra = f" ({entry['positive']} pos / {entry['negative']} neg)" if "positive" in entry else ""
            parts.append(f"{task} {entry['cases']}{extra}")
        print(f"  {split}: " + ", ".join(parts))
    print(f"  ground truth: {os.path.join(args.out, METADATA_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
