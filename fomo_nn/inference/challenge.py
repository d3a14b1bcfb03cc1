"""Challenge mode: the container interface, one case per call, for either edition.

`fomo_nn_predict [--edition fomo25|fomo26] --task N -m MODEL_DIR --<flag> FILE ... --output OUT` takes
exactly the arguments the edition's validator passes to `/app/predict.py` and writes what it checks;
the task's row in fomo_nn.challenges says which flags (FOMO26: `--dwi` for the DWI b1000, `--t1`
for task 3's t1w and task 5's t1, `--t2` for task 4's t2w; container_templates tasks.py @ d442af2)
and what is written (FOMO26 task 4: a {0, 1, 2} mask in the T2's grid). FOMO25 (the default):
- task 1 (infarct, classification): `--flair --adc --dwi_b1000` and `--swi` and/or `--t2s`;
  OUT is a .txt holding one float, the probability of infarct;
- task 2 (meningioma, segmentation): `--flair --dwi_b1000` and `--swi` and/or `--t2s`; OUT is a
  NIfTI mask in the FLAIR's geometry (shape, affine, header), values in {0, 1};
- task 3 (brain age, regression): `--t1 --t2`; OUT is a .txt holding one float, the age in years.
The validator passes every sequence it finds, so a session holding both SWI and T2* arrives with
both flags: the model's channels decide which is read (a merged `swi_or_t2s` channel takes SWI,
the rule its training data were converted with) and one log line says which. The task rules (which
flags, what is written) are fomo_nn.challenges'.
It runs the same code as `fomo_nn_predict -i`: the same reading, preprocessing, fold ensemble and export.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from fomo_nn.challenges.edition import ChallengeTask
from fomo_nn.challenges.fomo25 import SWI_OR_T2S
from fomo_nn.challenges.registry import DEFAULT_EDITION, EDITIONS, challenge_task, container_flags, edition
from fomo_nn.challenges.sequences import channel_candidates, is_merged, pick_sequence
from fomo_nn.inference.export import CaseOutputs, label_values
from fomo_nn.inference.inputs import InferenceCase
from fomo_nn.inference.model_folder import CHECKPOINT_CHOICES, load_ensemble
from fomo_nn.inference.predictor import EnsemblePredictor, PredictionSettings
from fomo_nn.io import BadInputError
from fomo_nn.plans import load_plans
from fomo_nn.utils.device import choose_device
from fomo_nn.utils.files import write_atomically

EMPTY_MASK_CHOICES = ("keep", "top-voxel")
FLAGS = container_flags()  # every edition's sequence arguments (--flair, --dwi_b1000, --dwi, --t1, ...)


def build_parser(prog: str = "fomo_nn_predict", model_required: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Challenge mode: predict one case with the container interface. "
                               + " ".join(f"{e.name.upper()}: " + "; ".join(
                                   f"task {n}: " + " ".join(f"--{t.flag(s)}" for s in t.sequences)
                                   for n, t in e.finetuned_tasks().items()) + "." for e in EDITIONS.values()))
    parser.add_argument("--edition", choices=tuple(EDITIONS), default=DEFAULT_EDITION,
                        help=f"challenge edition (default {DEFAULT_EDITION})")
    parser.add_argument("--task", type=int, required=True, help="task number in the edition")
    parser.add_argument("-m", "--model", dest="model_dir", required=model_required,
                        help="model folder <trainer>__<plans>__<configuration> (all its folds are ensembled)")
    for flag in FLAGS:
        parser.add_argument(f"--{flag}", metavar="FILE", help=f"{flag} image (NIfTI)")
    parser.add_argument("--output", required=True, help="output file: .txt (classification, regression) or "
                                                        ".nii.gz (segmentation); never one of the inputs")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to ensemble (default: all present)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_CHOICES, default="final")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirroring test-time augmentation (default: on for segmentation tasks only)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--empty-mask", choices=EMPTY_MASK_CHOICES, default="keep",
                        help="FOMO25 task 2, when no voxel is predicted foreground: keep the empty mask (default; "
                             "logged as a warning, since the FOMO25 validator rejects an all-zero mask) or "
                             "top-voxel: label the one voxel most likely foreground, so the mask passes that "
                             "check (costs a correct empty answer on a case without a lesion)")
    return parser


def output_conflict(files: dict[str, str], output: str | Path) -> str | None:
    """Why `output` must not be written (it is, or resolves to, one of the inputs, or a folder), else None."""
    output = Path(output)
    if output.is_dir():
        return f"--output {output} is a folder; it must name the file to write"
    for sequence, path in files.items():
        same = os.path.realpath(output) == os.path.realpath(path)
        if not same and output.exists() and Path(path).exists():
            same = os.path.samefile(output, path)  # hard links
        if same:
            return (f"--output {output} is the --{sequence} input {path}: writing it would destroy that scan; "
                    f"name another file")
    return None


def task_rule(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ChallengeTask:
    """The (edition, task) row, or an argparse error naming the edition's tasks."""
    try:
        rule = challenge_task(args.edition, args.task)
    except ValueError as error:
        parser.error(str(error))
    if not rule.finetuned:
        parser.error(f"{rule.name} ({rule.title}) writes embeddings, not predictions: use fomo_nn_probe's embedding "
                     "export for it")
    return rule


def check_task_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The task's sequence files (by sequence stem), or an argparse error naming what is missing, absent or
    does not belong. Flags are the edition's (`--dwi` gives FOMO26's dwi_b1000)."""
    rule = task_rule(parser, args)
    flags = {rule.flag(s): s for s in rule.sequences}
    passed = {flag: getattr(args, flag) for flag in FLAGS if getattr(args, flag) is not None}
    required, one_of = rule.required_sequences, rule.alternative_sequences
    given = {flags[flag]: path for flag, path in passed.items() if flag in flags}
    missing = [f"--{rule.flag(s)}" for s in required if s not in given]
    if one_of and not any(s in given for s in one_of):
        missing.append(" or ".join(f"--{rule.flag(s)}" for s in one_of))
    if missing:
        parser.error(f"{rule.name} requires {', '.join(missing)}")
    unexpected = [f"--{flag}" for flag in passed if flag not in flags]
    if unexpected:
        parser.error(f"{rule.name} does not take {', '.join(unexpected)} (it takes "
                     f"{', '.join('--' + rule.flag(s) for s in required)}"
                     + (f" and {' and/or '.join('--' + rule.flag(s) for s in one_of)})" if one_of else ")"))
    if not any(args.output.lower().endswith(e) for e in rule.output_endings):
        parser.error(f"{rule.name} writes {rule.output_text}; --output {args.output} has another ending")
    conflict = output_conflict(given, args.output)
    if conflict:
        parser.error(conflict)
    absent = [f"--{rule.flag(s)} {path}" for s, path in given.items() if not Path(path).is_file()]
    if absent:
        parser.error(f"no such file: {', '.join(absent)}")
    if args.empty_mask != "keep" and (edition(args.edition).exact_mask_values is None or rule.label_kind != "mask"):
        parser.error(f"--empty-mask applies to task 2 of FOMO25 (segmentation, whose validator refuses an all-zero "
                     f"mask), not {rule.name} ({rule.task_type})")
    return given


def challenge_case(channel_names: list[str], files: dict[str, str], case_id: str) -> tuple[InferenceCase, int]:
    """The case in the model's channel order and the channel whose grid the output uses (the FLAIR's if any).

    A channel takes the first of its candidate sequences that was given (`swi_or_t2s`: swi, else t2s).
    """
    ordered, used = [], {}
    for name in channel_names:
        sequence = pick_sequence(name, files)
        if sequence is None:
            wanted = " or ".join(f"--{s}" for s in channel_candidates(name))
            raise BadInputError(f"model channel {name!r}", f"needs {wanted}, which this task's arguments do not give "
                                                           f"(the model takes {', '.join(channel_names)})")
        ordered.append(files[sequence])
        used[name] = sequence
    reference = next((i for i, name in enumerate(channel_names) if used[name] == "flair"), 0)  # else the first
    return InferenceCase(case_id, ordered, None, used), reference


def swi_t2s_choice(case: InferenceCase, files: dict[str, str]) -> str | None:
    """The log line for a session given both --swi and --t2s: which one the model reads, and why."""
    if not all(s in files for s in SWI_OR_T2S.sequences):
        return None
    readers = {s: [name for name, used in case.sequences.items() if used == s] for s in SWI_OR_T2S.sequences}
    parts = []
    for sequence in SWI_OR_T2S.sequences:
        channels = readers[sequence]
        if not channels:
            parts.append(f"--{sequence} not used")
            continue
        merged = [c for c in channels if is_merged(c)]
        why = (" (a merged channel takes swi where a session has both, the rule its training data were "
               "converted with)" if merged else " (the channel the model was trained on)")
        parts.append(f"--{sequence} for model channel {', '.join(repr(c) for c in channels)}{why}")
    return f"[fomo_nn] case {case.case_id}: both --swi and --t2s given: " + "; ".join(parts)


def mask_problem(mask: np.ndarray, allowed=(0, 1)) -> str | None:
    """What the FOMO25 validator's exact [0, 1] check (`allowed`) would say about `mask`, or None when it passes."""
    values = np.unique(mask)
    if values.tolist() == list(allowed):
        return None
    if values.tolist() == [0]:
        return "the predicted mask is empty (no voxel more likely foreground than background)"
    return f"the mask holds the values {values.tolist()[:10]}, not exactly {list(allowed)}"


def fill_top_voxel(mask: np.ndarray, probabilities: np.ndarray, labels) -> tuple[int, ...]:
    """Label the voxel least likely background with its most likely foreground label (in place)."""
    background = probabilities[0]
    voxel = np.unravel_index(int(np.argmin(background)), background.shape)
    foreground = int(np.argmax(probabilities[(slice(1, None),) + voxel])) + 1
    mask[voxel] = labels[foreground]
    return tuple(int(v) for v in voxel)


def finish_mask(staged: Path, probabilities_file: Path | None, output: Path, case_id: str,
                rule: ChallengeTask | None = None) -> None:
    """Move the staged mask to `output`; where the edition's validator wants exact values (FOMO25: [0, 1]) an
    empty mask is kept (warned) or, with probabilities, given its top voxel."""
    import nibabel as nib

    rule = rule or challenge_task(None, 2)
    exact = edition(rule.edition).exact_mask_values
    if exact is None:
        write_atomically(output, lambda temp: shutil.copyfile(staged, temp))
        return
    image = nib.load(str(staged))
    mask = np.asanyarray(image.dataobj)
    problem = mask_problem(mask, exact)
    if problem and probabilities_file is not None and not mask.any():
        with np.load(probabilities_file) as saved:
            probabilities, labels = saved["probabilities"], saved["labels"]
        mask = np.array(mask)
        voxel = fill_top_voxel(mask, probabilities, labels)
        print(f"[fomo_nn] warning: case {case_id}: {problem}; --empty-mask top-voxel: labelled voxel {voxel} "
              f"(background probability {float(probabilities[(0,) + voxel]):.3f}) so that the mask passes the "
              f"validator's check", file=sys.stderr)
        filled = nib.Nifti1Image(mask, image.affine, image.header)
        write_atomically(output, lambda temp: nib.save(filled, str(temp)), "".join(output.suffixes[-2:]))
        return
    if problem:
        print(f"[fomo_nn] warning: case {case_id}: {problem}; kept as predicted, but "
              f"{edition(rule.edition).validator} rejects a mask unless np.unique(mask) is exactly {list(exact)} "
              f"(--empty-mask top-voxel labels the most probable voxel instead)", file=sys.stderr)
    write_atomically(output, lambda temp: shutil.copyfile(staged, temp))


def run_challenge(task: int, model_dir: str | Path, files: dict[str, str], output: str | Path, folds=None,
                  checkpoint: str = "final", tta: bool | None = None, step: float = 0.5,
                  device: str = "auto", empty_mask: str = "keep", edition_name: str | None = None) -> int:
    """Predict one case into `output`; 0 on success, 1 (with the reason on stderr) otherwise.

    Nothing is loaded when `output` would overwrite an input. A mask is staged in a scratch folder and
    moved to `output` only when complete, so `output`'s folder never holds anything but the result.
    """
    output = Path(output)
    conflict = output_conflict(files, output)
    if conflict:
        print(f"fomo_nn_predict: error: {conflict}", file=sys.stderr)
        return 1
    try:
        ensemble = load_ensemble(model_dir, folds, checkpoint, choose_device(device))
    except (BadInputError, RuntimeError) as error:
        print(f"fomo_nn_predict: error: {error}", file=sys.stderr)
        return 1
    rule = challenge_task(edition_name, task)
    if ensemble.task_type != rule.task_type:
        print(f"fomo_nn_predict: error: {rule.name} needs a {rule.task_type} model but {model_dir} holds a "
              f"{ensemble.task_type} model", file=sys.stderr)
        return 1
    segmentation = rule.label_kind == "mask"
    if segmentation and label_values(ensemble.plans) != [0, *rule.foreground_labels]:
        print(f"fomo_nn_predict: error: {rule.name} writes a mask of {[0, *rule.foreground_labels]} but {model_dir} "
              f"predicts the labels {ensemble.plans.labels}", file=sys.stderr)
        return 1
    case_id = output.name.split(".")[0]
    try:
        case, reference = challenge_case(ensemble.plans.channel_names, files, case_id)
    except BadInputError as error:
        print(f"fomo_nn_predict: error: {error}", file=sys.stderr)
        return 1
    choice = swi_t2s_choice(case, files)
    if choice:
        print(choice, file=sys.stderr)
    settings = PredictionSettings(tta=tta, step=step, overwrite=True, progress=False, num_threads=1)
    predictor = EnsemblePredictor(ensemble, settings)
    if not segmentation:
        report = predictor.run([case], lambda _: CaseOutputs(output), reference_index=reference)
        return 0 if report.ok else 1
    with tempfile.TemporaryDirectory(prefix="fomo_nn_challenge_") as scratch:
        staged = Path(scratch) / output.name
        probabilities = Path(scratch) / f"{case_id}.npz" if empty_mask == "top-voxel" else None
        report = predictor.run([case], lambda _: CaseOutputs(staged, probabilities), reference_index=reference)
        if not report.ok:
            return 1
        finish_mask(staged, probabilities, output, case_id, rule)
    return 0


def task_of_model(model_dir: str | Path, edition_name: str | None = None) -> int:
    """The task of `edition_name` (default FOMO25) a model folder answers, from its plans' task type and, for
    segmentation, its labels (a container holds one model). FOMO26 has two tasks of some types: one whose
    channels the model has is chosen, and a model that fits several is refused (pass --task)."""
    plans = load_plans(Path(model_dir))
    table = edition(edition_name)
    fitting = [n for n, rule in table.finetuned_tasks().items() if rule.task_type == plans.task_type]
    if len(fitting) > 1:
        channels = [name.lower() for name in plans.channel_names]
        fitting = [n for n in fitting if [c.name for c in table.tasks[n].channels] == channels] or fitting
    if len(fitting) == 1:
        return fitting[0]
    what = "no" if not fitting else f"more than one ({', '.join(map(str, fitting))})"
    raise BadInputError(Path(model_dir) / "plans.json", f"a {plans.task_type} model answers {what} "
                                                        f"{table.name} task; pass --task")


def main(argv=None, default_model_dir: str | None = None, prog: str = "fomo_nn_predict") -> int:
    parser = build_parser(prog, model_required=default_model_dir is None)
    args = parser.parse_args(argv)
    files = check_task_arguments(parser, args)
    return run_challenge(args.task, args.model_dir or default_model_dir, files, args.output, args.folds,
                         args.checkpoint, args.tta, args.step, args.device, args.empty_mask, args.edition)
