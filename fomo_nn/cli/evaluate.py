"""fomo_nn_evaluate: score one model's predictions against a reference and write summary.json."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fomo_nn.challenges.registry import DEFAULT_EDITION, EDITIONS, challenge_task
from fomo_nn.evaluation.policies import DEFAULT_EMPTY_PAIR, EMPTY_PAIR_POLICIES
from fomo_nn.evaluation.scoring import DEFAULT_NSD_TOLERANCE_MM, evaluate
from fomo_nn.evaluation.task_metrics import TASK_METRICS, TASKS

LAYOUTS = """layouts (REF and PRED; case ids must match):
  CASE.nii.gz / CASE.txt files in one folder (what fomo_nn_predict writes)
  sub_X/ses_1/seg.nii.gz or sub_X/label.txt (FOMO labels; FOMO26: sub-XX/ses-01/seg.nii.gz or
    labels.txt; a task folder holding labels/ also works)
  a raw dataset folder holding labelsTr/ (or labelsTs/)
  for classification and regression: a CSV with columns case_id,value (e.g. predictions.csv)
cases without a prediction are scored as failures (see missing_policy in summary.json).

--empty-pair (segmentation), for a case whose reference and prediction masks are both empty:
  score    Dice 1 and NSD 1, the case counts (default; FOMO25 tasks)
  exclude  no Dice or NSD, left out of the mean (nnU-Net and Yucca)
  fomo26   Dice 1 and NSD 0, and an unscorable prediction gets 0 and 0 (fomo26/fomo-metrics @ 5a71db2;
           default of FOMO26 tasks, whose masks are scored per class without the background and
           averaged over the task's classes per case)"""


def default_output(prediction: Path) -> Path:
    """summary.json next to the predictions: inside a PRED folder, beside a PRED csv."""
    return prediction / "summary.json" if prediction.is_dir() else prediction.with_name(f"{prediction.stem}_summary.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_evaluate", description=__doc__, epilog=LAYOUTS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # --task is the edition's task number, as in fomo_nn_convert fomo-task and fomo_nn_predict
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task-type", choices=TASKS, help="the task type scored")
    which.add_argument("--task", type=int,
                       help="task number in --edition: " + "; ".join(
                           f"{e.name} " + ", ".join(f"{n} = {t.task_type}" for n, t in e.finetuned_tasks().items())
                           for e in EDITIONS.values()))
    parser.add_argument("--edition", choices=tuple(EDITIONS), default=None,
                        help=f"challenge edition of --task (default {DEFAULT_EDITION})")
    parser.add_argument("-r", "--reference", required=True, type=Path, help="reference folder or CSV")
    parser.add_argument("-p", "--prediction", required=True, type=Path, help="prediction folder or CSV")
    parser.add_argument("-o", "--output", type=Path, help="summary JSON (default: PRED/summary.json)")
    parser.add_argument("--nsd-tolerance", type=float, default=DEFAULT_NSD_TOLERANCE_MM, metavar="MM",
                        help=f"NSD tolerance in mm (default {DEFAULT_NSD_TOLERANCE_MM})")
    parser.add_argument("--empty-pair", choices=tuple(EMPTY_PAIR_POLICIES), default=None,
                        help=f"segmentation: how two empty masks score (default: the task's, {DEFAULT_EMPTY_PAIR} "
                             "for FOMO25 and --task-type, fomo26 for FOMO26; see below)")
    parser.add_argument("--positive-class", type=float, default=None,
                        help="classification: the class whose probability PRED holds (default: the larger class)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _listing(cases: list[str], limit: int = 10) -> str:
    shown = ", ".join(cases[:limit])
    return shown + (f", ... ({len(cases)} in all)" if len(cases) > limit else "")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.nsd_tolerance < 0:
        parser.error(f"--nsd-tolerance must be >= 0, got {args.nsd_tolerance}")
    challenge = None
    if args.task is not None:
        try:
            challenge = challenge_task(args.edition, args.task)
        except ValueError as error:
            parser.error(str(error))
        if not challenge.finetuned:
            parser.error(f"{challenge.name} ({challenge.title}) is scored by its linear probe (fomo_nn_probe), "
                         "not from predictions")
    elif args.edition is not None:
        parser.error("--edition names the edition of --task; give --task N")
    task_type = args.task_type or challenge.task_type
    try:
        summary = evaluate(task_type, args.reference, args.prediction, args.nsd_tolerance, args.positive_class,
                           progress=not args.quiet, empty_pair=args.empty_pair, challenge=challenge)
        output = summary.save(args.output or default_output(args.prediction))
    except (ValueError, OSError) as error:  # BadInputError is a ValueError naming the file
        print(f"fomo_nn_evaluate: error: {error}", file=sys.stderr)
        return 1
    labels = {spec.key: spec.label for spec in TASK_METRICS[task_type]}
    name = f"{challenge.name} ({task_type})" if challenge is not None else task_type
    print(f"{name}: {len(summary.per_case)} cases, "
          + ", ".join(f"{labels[key]} " + ("none scored" if value is None else f"{value:.4f}")
                      for key, value in summary.metrics.items()))
    for class_name, values in (summary.class_metrics or {}).items():
        print(f"  {class_name}: " + ", ".join(f"{labels[key]} " + ("none scored" if value is None else f"{value:.4f}")
                                             for key, value in values.items()))
    excluded = summary.to_dict().get("num_excluded")
    if excluded:
        print(f"{excluded} cases with both masks empty were left out of Dice and NSD (--empty-pair exclude)")
    if summary.missing_cases:
        print(f"missing predictions, scored as failures ({summary.missing_policy}): {_listing(summary.missing_cases)}")
    if summary.extra_cases:
        print(f"predictions without a reference case, ignored: {_listing(summary.extra_cases)}")
    print(f"summary written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
