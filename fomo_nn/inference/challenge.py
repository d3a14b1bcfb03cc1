"""FOMO25 challenge mode: the container interface, one case per call.

`fomo_nn_predict --task {1,2,3} -m MODEL_DIR --<sequence> FILE ... --output OUT` takes exactly the
arguments the FOMO25 validator passed to `/app/predict.py` and writes exactly what it expected:
- task 1 (infarct, classification): `--flair --adc --dwi_b1000` and one of `--swi`/`--t2s`;
  OUT is a .txt holding one float, the probability of infarct;
- task 2 (meningioma, segmentation): `--flair --dwi_b1000` and one of `--swi`/`--t2s`; OUT is a
  NIfTI mask in the FLAIR's geometry (shape, affine, header), values exactly {0, 1};
- task 3 (brain age, regression): `--t1 --t2`; OUT is a .txt holding one float, the age in years.
It runs the same code as `fomo_nn_predict -i`: the same reading, preprocessing, fold ensemble and export.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fomo_nn.inference.export import CaseOutputs
from fomo_nn.inference.inputs import InferenceCase, channel_candidates
from fomo_nn.inference.model_folder import CHECKPOINT_CHOICES, choose_device, load_ensemble
from fomo_nn.inference.predictor import EnsemblePredictor, PredictionSettings
from fomo_nn.io import BadInputError
from fomo_nn.plans import load_plans

SEQUENCES = ("flair", "adc", "dwi_b1000", "swi", "t2s", "t1", "t2")
EITHER_SWI_OR_T2S = ("swi", "t2s")
TASKS = {
    1: {"required": ("flair", "adc", "dwi_b1000"), "one_of": EITHER_SWI_OR_T2S, "task_type": "classification",
        "endings": (".txt",), "output": "a .txt with the probability of infarct"},
    2: {"required": ("flair", "dwi_b1000"), "one_of": EITHER_SWI_OR_T2S, "task_type": "segmentation",
        "endings": (".nii.gz", ".nii"), "output": "a NIfTI mask (.nii.gz) in the FLAIR's geometry"},
    3: {"required": ("t1", "t2"), "one_of": (), "task_type": "regression",
        "endings": (".txt",), "output": "a .txt with the predicted age"},
}


def build_parser(prog: str = "fomo_nn_predict", model_required: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="FOMO25 challenge mode: predict one case with the container interface "
                               "(task 1: --flair --adc --dwi_b1000 --swi|--t2s; task 2: --flair --dwi_b1000 "
                               "--swi|--t2s; task 3: --t1 --t2).")
    parser.add_argument("--task", type=int, choices=sorted(TASKS), required=True, help="FOMO25 task number")
    parser.add_argument("-m", "--model", dest="model_dir", required=model_required,
                        help="model folder <trainer>__<plans>__<configuration> (all its folds are ensembled)")
    for sequence in SEQUENCES:
        parser.add_argument(f"--{sequence}", metavar="FILE", help=f"{sequence} image (NIfTI)")
    parser.add_argument("--output", required=True, help="output file: .txt (tasks 1, 3) or .nii.gz (task 2)")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to ensemble (default: all present)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_CHOICES, default="final")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirroring test-time augmentation (default: on for task 2 only)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    return parser


def check_task_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The task's sequence files, or an argparse error naming what is missing or does not belong."""
    task = TASKS[args.task]
    given = {s: getattr(args, s) for s in SEQUENCES if getattr(args, s) is not None}
    allowed = set(task["required"]) | set(task["one_of"])
    missing = [f"--{s}" for s in task["required"] if s not in given]
    if task["one_of"] and not any(s in given for s in task["one_of"]):
        missing.append(" or ".join(f"--{s}" for s in task["one_of"]))
    if missing:
        parser.error(f"task {args.task} requires {', '.join(missing)}")
    if task["one_of"] and all(s in given for s in task["one_of"]):
        parser.error(f"task {args.task} takes one of {', '.join('--' + s for s in task['one_of'])}, not both")
    unexpected = [f"--{s}" for s in given if s not in allowed]
    if unexpected:
        parser.error(f"task {args.task} does not take {', '.join(unexpected)} (it takes "
                     f"{', '.join('--' + s for s in task['required'])}"
                     + (f" and one of {'/'.join('--' + s for s in task['one_of'])})" if task["one_of"] else ")"))
    if not any(args.output.lower().endswith(e) for e in task["endings"]):
        parser.error(f"task {args.task} writes {task['output']}; --output {args.output} has another ending")
    return given


def challenge_case(channel_names: list[str], files: dict[str, str], case_id: str) -> tuple[InferenceCase, int]:
    """The case in the model's channel order and the channel whose grid the output uses (the FLAIR's if any)."""
    ordered, used = [], {}
    for name in channel_names:
        sequence = next((s for s in channel_candidates(name) if s in files), None)
        if sequence is None:
            wanted = " or ".join(f"--{s}" for s in channel_candidates(name))
            raise BadInputError(f"model channel {name!r}", f"needs {wanted}, which this task's arguments do not give "
                                                           f"(the model takes {', '.join(channel_names)})")
        ordered.append(files[sequence])
        used[name] = sequence
    reference = next((i for i, name in enumerate(channel_names) if used[name] == "flair"), 0)
    return InferenceCase(case_id, ordered, None, used), reference


def run_challenge(task: int, model_dir: str | Path, files: dict[str, str], output: str | Path, folds=None,
                  checkpoint: str = "final", tta: bool | None = None, step: float = 0.5,
                  device: str = "auto") -> int:
    """Predict one case into `output`; 0 on success, 1 (with the reason on stderr) otherwise."""
    try:
        ensemble = load_ensemble(model_dir, folds, checkpoint, choose_device(device))
    except (BadInputError, RuntimeError) as error:
        print(f"fomo_nn_predict: error: {error}", file=sys.stderr)
        return 1
    expected = TASKS[task]["task_type"]
    if ensemble.task_type != expected:
        print(f"fomo_nn_predict: error: task {task} needs a {expected} model but {model_dir} holds a "
              f"{ensemble.task_type} model", file=sys.stderr)
        return 1
    output = Path(output)
    try:
        case, reference = challenge_case(ensemble.plans.channel_names, files, output.name.split(".")[0])
    except BadInputError as error:
        print(f"fomo_nn_predict: error: {error}", file=sys.stderr)
        return 1
    settings = PredictionSettings(tta=tta, step=step, overwrite=True, progress=False, num_threads=1)
    report = EnsemblePredictor(ensemble, settings).run([case], lambda _: CaseOutputs(output),
                                                        reference_index=reference)
    return 0 if report.ok else 1


def task_of_model(model_dir: str | Path) -> int:
    """The FOMO25 task a model folder answers, from its plans' task type (a container holds one model)."""
    plans = load_plans(Path(model_dir))
    for number, task in TASKS.items():
        if task["task_type"] == plans.task_type:
            return number
    raise BadInputError(Path(model_dir) / "plans.json", f"a {plans.task_type} model answers no FOMO25 task")


def main(argv=None, default_model_dir: str | None = None, prog: str = "fomo_nn_predict") -> int:
    parser = build_parser(prog, model_required=default_model_dir is None)
    args = parser.parse_args(argv)
    files = check_task_arguments(parser, args)
    return run_challenge(args.task, args.model_dir or default_model_dir, files, args.output, args.folds,
                         args.checkpoint, args.tta, args.step, args.device)
