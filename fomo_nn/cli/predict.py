"""fomo_nn_predict: apply a trained model to new scans (folder mode) or to one case (challenge mode).

Folder mode:    fomo_nn_predict -i IN -o OUT (-d DATASET [-tr TRAINER] [-p PLANS] [--tag TAG] | -m MODEL_DIR) [-f 0 1 ...]
Challenge mode: fomo_nn_predict [--edition fomo25|fomo26] --task N -m MODEL_DIR --flair F ... --output OUT
                (the edition's container flags: FOMO25 --dwi_b1000, FOMO26 --dwi, --t1, --t2; fomo_nn.challenges)
"""
from __future__ import annotations

import argparse
import sys

from fomo_nn.utils.errors import BadInputError

PROG = "fomo_nn_predict"
EPILOG = """\
inputs: IN is either the raw layout (CASE_0000.nii.gz, CASE_0001.nii.gz, ... one file per model channel)
or the FOMO layout (sub_X/ses_1/<sequence>.nii.gz; channels found by sequence name, swi_or_t2s takes swi
else t2s). Channels on different voxel grids are resampled onto the first channel's grid with a warning
naming the files (--misaligned resample, the default) or the case is refused (--misaligned error).

outputs: segmentation CASE.nii.gz in the input's exact grid (+ CASE.npz and CASE_probabilities.nii.gz with
--save-probabilities); classification CASE.txt (probability of the positive class) and predictions.csv
(case_id,value,prob_<class>...); regression CASE.txt (the value in the target's unit) and predictions.csv
(case_id,value). Cases whose outputs exist are skipped unless --overwrite. A bad case is reported and the
others are still predicted; the exit status is 1 when any case failed. OUT is created and test-written before
any model or case is read, and must lie outside IN (a rerun would read the outputs as a new case). A full disk
stops the run ("no space left on <path>"); rerun after freeing space to predict the rest. One run writes OUT at a
time: a second run into it is refused, naming the first.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", required=True, help="input folder (raw or FOMO layout)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-d", "--dataset", help="dataset id or name; the model folder is found in fomo_nn_results")
    model.add_argument("-m", "--model", dest="model_dir",
                       help="model folder <trainer>__<plans>__<configuration>[__<tag>]")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to ensemble (default: all present)")
    parser.add_argument("-tr", "--trainer", help="trainer name (with -d; default: the task's default trainer)")
    parser.add_argument("-p", "--plans", dest="plans_name", help="plans name (with -d)")
    parser.add_argument("-c", "--configuration", default=None, help="configuration (with -d; default 3d_fullres)")
    parser.add_argument("--tag", help="the model folder's tag, as given to fomo_nn_train --tag (with -d; default: "
                                      "the untagged folder, else the only tagged one)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirroring test-time augmentation (default: on for segmentation, off otherwise)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step, fraction of the patch (0-1]")
    parser.add_argument("--save-probabilities", action="store_true", help="also write segmentation probabilities")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="run the network in bfloat16 on CPU as well (CUDA always does): ~1.5-2x faster on CPUs "
                             "with avx512_bf16/AMX, outputs differ slightly from float32")
    parser.add_argument("--misaligned", choices=("resample", "error"), default="resample",
                        help="channels on different grids: resample onto the first channel's grid or refuse")
    parser.add_argument("--overwrite", action="store_true", help="predict cases whose outputs already exist")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads that preprocess the next and export the previous case (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def print_summary(report) -> None:
    parts = [f"{len(report.predicted)} predicted", f"{len(report.skipped)} skipped (outputs exist)"]
    if report.failed:
        parts.append(f"{len(report.failed)} FAILED")
    if report.stopped:
        parts.append(f"{len(report.unfinished)} left for a rerun (stopped early, see above)")
    print(f"[{PROG}] " + ", ".join(parts), file=sys.stderr)
    for message in report.failed.values():
        print(f"[{PROG}]   failed {message}", file=sys.stderr)


def output_folder_problem(input_dir: str, output_dir: str) -> str | None:
    """Why OUT cannot take predictions (checked before any model or case is read), else None.

    OUT inside IN is refused: a rerun would read the predictions as a case of the input.
    """
    from fomo_nn.utils.files import ensure_writable_folder, is_inside

    if is_inside(output_dir, input_dir):
        return (f"{output_dir}: the output folder lies inside the input folder {input_dir} (symlinks resolved); "
                "a rerun would read the predictions as input: choose an output folder outside it")
    try:
        ensure_writable_folder(output_dir)
    except ValueError as error:
        return str(error)
    return None


def run_folder_mode(args, parser) -> int:
    from fomo_nn.inference.predictor import output_folder_lock
    from fomo_nn.utils.run_lock import RunLockedError

    if not 0 < args.step <= 1:
        parser.error(f"--step must be in (0, 1], got {args.step}")
    if args.model_dir and (args.trainer or args.plans_name or args.configuration or args.tag):
        parser.error("-tr/-p/-c/--tag choose a model folder with -d; with -m the folder is given")
    problem = output_folder_problem(args.input, args.output)
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        with output_folder_lock(args.output):  # before any model is read: a busy OUT is refused at once
            return predict_folder(args)
    except (RunLockedError, BadInputError) as error:  # BadInputError: an OUT that cannot be made (read-only, ...)
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


def predict_folder(args) -> int:
    """Folder mode once OUT is checked and held: load the model, find the cases, predict."""
    from fomo_nn.inference.inputs import discover_cases
    from fomo_nn.inference.model_folder import load_ensemble, model_folder_from_dataset
    from fomo_nn.inference.predictor import EnsemblePredictor, PredictionSettings
    from fomo_nn.utils.device import choose_device

    try:
        model_dir = args.model_dir or model_folder_from_dataset(args.dataset, args.trainer, args.plans_name,
                                                                args.configuration, tag=args.tag)
        ensemble = load_ensemble(model_dir, args.folds, args.checkpoint, choose_device(args.device))
        cases = discover_cases(args.input, ensemble.plans.channel_names)
    except (BadInputError, FileNotFoundError, RuntimeError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(f"[{PROG}] {ensemble.task_type} model {model_dir}, folds {', '.join(ensemble.fold_names)}, "
          f"{len(cases)} case(s)", file=sys.stderr)
    settings = PredictionSettings(tta=args.tta, step=args.step, save_probabilities=args.save_probabilities,
                                  overwrite=args.overwrite, misaligned=args.misaligned, num_threads=args.threads,
                                  progress=not args.no_progress, cpu_bf16=args.cpu_bf16)
    report = EnsemblePredictor(ensemble, settings).predict_folder_cases(cases, args.output)
    print_summary(report)
    return 0 if report.ok else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--task" or a.startswith("--task=") for a in argv):
        from fomo_nn.inference.challenge import main as challenge_main

        return challenge_main(argv, prog=PROG)
    parser = build_parser()
    return run_folder_mode(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
