"""`fomo_nn_convert`: bring data into fomo_nn_raw, and check a raw dataset.

  fomo_nn_convert fomo60k SRC -d 1 [--name FOMO60K] [--check-headers | --check-images] [-np N] [--skip-bad]
  fomo_nn_convert fomo300k SRC -d 1 [--name FOMO300K] [--unzip-to DIR] [--check-headers | --check-images] [-np N]
  fomo_nn_convert fomo-task SRC [--edition fomo25|fomo26] --task N -d N [--name NAME] [--split train|test] [--copy]
                  [-np N] [--skip-bad]      (FOMO25 tasks 1-3 by default; FOMO26 tasks 1-5)
  fomo_nn_convert nnunet SRC -d N [--name NAME] [--copy] [--skip-bad]
  fomo_nn_convert validate DATASET [--headers-only] [-np N]

Exit status: 0 when everything went in (or bad inputs were skipped with --skip-bad), 1 when bad inputs
were left out (all listed at the end; the rest is converted) or a dataset failed validation, 2 when
the command could not run at all (missing source folder, conflicting dataset id, a worker that died).
A conversion is built beside the dataset and put in place when done: a failed run leaves no half of it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fomo_nn.challenges.registry import DEFAULT_EDITION, EDITIONS
from fomo_nn.preprocessing.parallel import default_num_processes

def _common(parser: argparse.ArgumentParser, default_name: str | None) -> None:
    parser.add_argument("src", help="source folder")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (e.g. 2) or folder name Dataset002_Name")
    parser.add_argument("--name", default=None, help=f"dataset name (default: {default_name})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave bad inputs out, report them, and still exit 0")
    parser.add_argument("-np", "--num-processes", type=int, default=default_num_processes(),
                        help="parallel workers for reading images (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_convert", description="Bring data into fomo_nn_raw, and check a "
                                     "raw dataset.", epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    corpus = commands.add_parser("fomo60k", help="FOMO60K-layout corpus -> pretraining dataset (manifest, no copies)")
    _common(corpus, "FOMO60K")
    depth = corpus.add_mutually_exclusive_group()
    depth.add_argument("--check-headers", action="store_true",
                       help="parse every header: 4D, degenerate or truncated files are left out")
    depth.add_argument("--check-images", action="store_true",
                       help="read every voxel: also NaN/Inf and damaged data (slow for 60K scans)")

    corpus300k = commands.add_parser("fomo300k", help="FOMO300K download -> pretraining dataset (manifest with "
                                     "source, age, sex, vendor, field strength; zipped sessions extracted once)")
    _common(corpus300k, "FOMO300K")
    corpus300k.add_argument("--unzip-to", default=None, metavar="DIR",
                            help="extract zipped sessions under DIR (mirroring SRC) instead of beside each zip")
    depth300k = corpus300k.add_mutually_exclusive_group()
    depth300k.add_argument("--check-headers", action="store_true", help="parse every header (see fomo60k)")
    depth300k.add_argument("--check-images", action="store_true", help="read every voxel (see fomo60k)")

    task = commands.add_parser("fomo-task", help="FOMO finetuning task folder -> raw dataset")
    _common(task, "the task's default_name in fomo_nn/challenges, e.g. FOMOTask2Meningioma")
    task.add_argument("--edition", choices=tuple(EDITIONS), default=DEFAULT_EDITION,
                      help=f"challenge edition whose task table is read (default {DEFAULT_EDITION})")
    task.add_argument("--task", type=int, required=True,
                      help="task number in the edition: " + "; ".join(
                          f"{e.name} " + ", ".join(f"{n} {t.title}" for n, t in e.finetuned_tasks().items())
                          for e in EDITIONS.values()))
    task.add_argument("--split", choices=("train", "test"), default="train",
                      help="train -> imagesTr/labelsTr, test -> imagesTs/labelsTs")
    task.add_argument("--copy", action="store_true", help="always copy scans (default: hard link when possible)")

    nnunet = commands.add_parser("nnunet", help="import an nnU-Net v2 raw dataset as it is")
    _common(nnunet, "the source's name")
    nnunet.add_argument("--copy", action="store_true", help="always copy files (default: hard link when possible)")

    validate = commands.add_parser("validate", help="check a raw dataset against its dataset.json")
    validate.add_argument("dataset", help="dataset id, folder name, or path to the dataset folder")
    validate.add_argument("--headers-only", action="store_true", help="do not read voxel data (fast)")
    validate.add_argument("-np", "--num-processes", type=int, default=default_num_processes())
    validate.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    from fomo_nn.utils.errors import BadInputError
    from fomo_nn.preprocessing.parallel import WorkerDiedError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args)
        report = _convert(args)
    except (BadInputError, ValueError, OSError, WorkerDiedError) as error:
        print(f"fomo_nn_convert {args.command}: error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    bad = report.bad_summary(args.skip_bad)
    if bad:
        print(bad, file=sys.stderr)
    return report.exit_code(args.skip_bad)


def _convert(args):
    progress = not args.no_progress
    if args.command == "fomo60k":
        from dataset_conversion.fomo60k import convert_fomo60k

        check = "full" if args.check_images else "header" if args.check_headers else "none"
        return convert_fomo60k(args.src, args.dataset, args.name, check=check, num_processes=args.num_processes,
                               progress=progress)
    if args.command == "fomo300k":
        from dataset_conversion.fomo300k import convert_fomo300k

        check = "full" if args.check_images else "header" if args.check_headers else "none"
        return convert_fomo300k(args.src, args.dataset, args.name, check=check, unzip_to=args.unzip_to,
                                num_processes=args.num_processes, progress=progress)
    if args.command == "fomo-task":
        from dataset_conversion.fomo_task import convert_fomo_task

        return convert_fomo_task(args.src, args.task, args.dataset, args.name, split=args.split,
                                 link=not args.copy, num_processes=args.num_processes, progress=progress,
                                 edition=args.edition)
    from dataset_conversion.nnunet_dataset import import_nnunet_dataset

    return import_nnunet_dataset(args.src, args.dataset, args.name, link=not args.copy,
                                 num_processes=args.num_processes, progress=progress)


def _validate(args) -> int:
    from fomo_nn.datasets.validation import validate_raw_dataset
    from fomo_nn.paths import raw_dataset_dir

    folder = Path(args.dataset)
    if not (folder / "dataset.json").is_file():
        folder = raw_dataset_dir(args.dataset)
    problems = validate_raw_dataset(folder, check_images=not args.headers_only, num_processes=args.num_processes,
                                    progress=not args.no_progress)
    if not problems:
        print(f"{folder}: no problems found")
        return 0
    print(f"{folder}: {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem.path}: {problem.problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
