"""fomo_nn_generate_sample_data: write the synthetic FOMO-like sample used by the demo and the tests.

    fomo_nn_generate_sample_data OUT [--seed S] [--size tiny|small|medium|full] [--edition fomo25|fomo26|all]
                                 [--test-size preset|fomo] [-np WORKERS]

OUT receives fomo60k/ (pretraining corpus), finetune/ and test/ (FOMO25 tasks 1-3 in the FOMO25 task
layout; --edition fomo25, the default), fomo26/ (--edition fomo26: FOMO26 tasks 1-5 as
fomo26/<split>/Task_N/{preprocessed,labels}/sub-XX/ses-01/..., and the probing cohort of tasks 6/7 with
fomo26/probing/subjects.csv in fomo-lp's format; --edition all: both) and sample_data.json (seed,
counts and per-case ground truth). Same seed -> identical files; FOMO26 never changes a FOMO25 file.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from fomo_nn.utils.errors import BadInputError
from fomo_nn.preprocessing.parallel import default_num_processes


def build_parser() -> argparse.ArgumentParser:
    from dataset_conversion.sample_data.config import SIZE_PRESETS, TEST_SIZES  # the generator is not in the library

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
    parser.add_argument("--edition", choices=("fomo25", "fomo26", "all"), default="fomo25",
                        help="which challenge's finetuning tasks to write (default: fomo25); the corpus is always "
                             "written")
    parser.add_argument("--test-size", choices=list(TEST_SIZES), default="preset",
                        help="preset (default): the size preset's test-set counts; fomo: FOMO25's test-set sizes "
                             "(task 1: 320, task 2: 107, task 3: 800 cases; same test sites), for benchmarks whose "
                             "margins must be resolved (benchmarks/compute_ladder.py)")
    parser.add_argument("-np", "--num-processes", type=int, default=default_num_processes(4),
                        help=f"worker processes (default: {default_num_processes(4)}); does not change the output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    from dataset_conversion.sample_data.config import config_for_size, with_test_size
    from dataset_conversion.sample_data.generate import METADATA_FILE, generate_sample_data

    args = build_parser().parse_args(argv)
    if args.num_processes < 1:
        print("error: -np must be at least 1", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        metadata = generate_sample_data(args.out, seed=args.seed, size=args.size, num_workers=args.num_processes,
                                        progress=not args.quiet, edition=args.edition,
                                        config=with_test_size(config_for_size(args.size), args.test_size))
    except (BadInputError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = metadata["counts"]
    pretraining = counts["pretraining"]
    print(f"wrote {args.out} (size {args.size}, seed {args.seed}) in {time.perf_counter() - start:.1f} s")
    print(f"  fomo60k: {pretraining['subjects']} subjects, {pretraining['sessions']} sessions, "
          f"{pretraining['images']} images")
    for split in ("finetune", "test"):
        if args.edition == "fomo26":
            break
        parts = []
        for task, entry in counts[split].items():
            extra = f" ({entry['positive']} pos / {entry['negative']} neg)" if "positive" in entry else ""
            parts.append(f"{task} {entry['cases']}{extra}")
        print(f"  {split}: " + ", ".join(parts))
    if "fomo26" in metadata:
        fomo26 = metadata["fomo26"]["counts"]
        for split in ("finetune", "test"):
            print(f"  fomo26 {split}: " + ", ".join(
                f"{task} {entry['cases']}" + (f" ({entry['positive']} pos)" if "positive" in entry else "")
                for task, entry in fomo26[split].items()))
        probing = fomo26["probing"]
        print(f"  fomo26 probing: {probing['subjects']} subjects ("
              + ", ".join(f"{k} {v}" for k, v in probing.items() if k != "subjects") + ")")
    print(f"  ground truth: {os.path.join(args.out, METADATA_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
