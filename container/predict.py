"""/app/predict.py: the FOMO25 / FOMO26 container entry point (one case per call).

The FOMO25 validator (fomo25/container-validator main.py @ f64712b) runs, for example (task 2):
    apptainer exec --nv --bind SUBJECT:/input:ro --bind OUT:/output IMAGE python /app/predict.py \
        --dwi_b1000 /input/ses_1/dwi_b1000.nii.gz --flair /input/ses_1/flair.nii.gz \
        --swi /input/ses_1/swi.nii.gz --output /output/sub_1.nii.gz
The FOMO26 validator (fomo26/container_templates container_validator @ d442af2) starts an instance
(`apptainer instance start --nvccli --bind IN:/input:ro --bind OUT:/output:rw --bind TMP:/tmp:rw`) and
runs `apptainer exec instance://NAME python /app/predict.py --flair /input/flair.nii.gz --dwi ...
--output /output/<subject>.txt`, or for tasks 6 and 7 `--input /input/<scan> --output /output/<subject>.npy`.
Everything this script uses lies beside it, so the host's environment (which Apptainer passes in:
neither validator uses --cleanenv / --containall) cannot redirect it:
- `model/`: the packed model folder (all its folds are ensembled); the task is the one that model
  answers in the edition (`--edition`, default FOMO25: classification -> 1, segmentation -> 2,
  regression -> 3; FOMO26 also by the model's channels) unless `--task` is given; or, for an image
  serving several tasks, `model/task<N>/` folders, the task of a call told by its arguments and output
  ending (tasks whose calls look alike, FOMO26's 3 and 5, cannot share an image: --describe refuses);
- `model/encoder/`: FOMO26 tasks 6 and 7, the encoder checkpoint (one file, plus `plans.json` when the
  checkpoint does not record its preprocessing) that `--input` scans are embedded with, by fomo_nn's
  embedder (fomo_nn.probing.embedding: the whole scan through the sliding window, pooled);
- `predict.args` (optional): options baked in at build time (e.g. `--edition fomo26`), read before the
  validator's arguments.
`--input` selects the embedding; anything else is fomo_nn's challenge mode, the same code path as
`fomo_nn_predict --task ...`. `--describe` loads what the image holds and prints what it answers (the
image build runs it, so an image that cannot answer fails to build).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
MODEL_DIR = APP_DIR / "model"
OPTIONS_FILE = APP_DIR / "predict.args"
ENCODER_FOLDER = "encoder"
ENCODER_SIDE_FILES = ("plans.json",)
TASK_FOLDER = "task"  # model/task<N>/: one of several tasks an image serves


def option_value(argv: list[str], name: str) -> str | None:
    """The last value of `--name V` / `--name=V` in argv (the validator's arguments come after the baked ones)."""
    value = None
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def encoder_file(encoder_dir: Path) -> Path:
    """The one checkpoint in `encoder_dir` (plans.json beside it is its preprocessing, not an encoder)."""
    found = sorted(p for p in encoder_dir.iterdir() if p.is_file() and p.name not in ENCODER_SIDE_FILES) \
        if encoder_dir.is_dir() else []
    if len(found) != 1:
        raise FileNotFoundError(f"{encoder_dir} must hold exactly one encoder checkpoint (and optionally "
                                f"plans.json); it holds {[p.name for p in found] or 'nothing'}")
    return found[0]


def embed_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description="FOMO26 tasks 6 and 7: one embedding per scan")
    parser.add_argument("--input", required=True, help="the scan (NIfTI)")
    parser.add_argument("--output", required=True, help="the .npy embedding to write")
    parser.add_argument("--edition", choices=("fomo26",), default="fomo26")
    parser.add_argument("--task", type=int, choices=(6, 7), default=6)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    return parser


def embed(argv: list[str], encoder_dir: Path) -> int:
    """`--input SCAN --output OUT.npy`: a 1-D float32 embedding, of one length for every scan."""
    args = embed_parser().parse_args(argv)
    from fomo_nn.utils.errors import BadInputError
    from fomo_nn.plans import load_plans
    from fomo_nn.probing.embedding import load_embedder
    from fomo_nn.probing.embedding_run import run_embedding
    from fomo_nn.utils.device import choose_device

    if not args.output.endswith(".npy"):
        print(f"predict.py: error: --output {args.output}: tasks 6 and 7 write a .npy embedding", file=sys.stderr)
        return 2
    try:
        plans_file = encoder_dir / "plans.json"
        plans = load_plans(plans_file) if plans_file.is_file() else None
        embedder = load_embedder(str(encoder_file(encoder_dir)), plans, step=args.step)
        outcome = run_embedding(embedder, args.input, args.output, choose_device(args.device), write_recipe=False,
                                report=lambda line: print(line, file=sys.stderr))
    except (BadInputError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"predict.py: error: {error}", file=sys.stderr)
        return 1
    return 1 if outcome.failed else 0


def task_folders() -> dict[int, Path]:
    """`model/task<N>/` folders holding a model (an image serving several tasks); empty for a single model."""
    if (MODEL_DIR / "plans.json").is_file():
        return {}
    return {int(f.name[len(TASK_FOLDER):]): f for f in sorted(MODEL_DIR.glob(f"{TASK_FOLDER}*"))
            if f.name[len(TASK_FOLDER):].isdigit() and (f / "plans.json").is_file()}


def call_signature(rule) -> tuple[frozenset, tuple[str, ...]]:
    """What the validator's call for a task looks like: its flags and its output endings."""
    return frozenset(rule.flag(s) for s in rule.sequences), rule.output_endings


def task_of_call(folders: dict[int, Path], edition: str | None, flags: set[str], output: str | None) -> int:
    """The one packed task whose arguments and output ending the call has; ValueError naming why not."""
    from fomo_nn.challenges.registry import challenge_task

    fitting = []
    for number in folders:
        rule = challenge_task(edition, number)
        takes, endings = call_signature(rule)
        required = {rule.flag(s) for s in rule.required_sequences}
        one_of = {rule.flag(s) for s in rule.alternative_sequences}
        if (flags <= takes and required <= flags and (not one_of or one_of & flags)
                and output is not None and output.lower().endswith(endings)):
            fitting.append(number)
    if len(fitting) != 1:
        raise ValueError(f"the arguments {sorted('--' + f for f in flags)} and --output {output} fit "
                         f"{'none' if not fitting else 'more than one'} of the packed tasks {sorted(folders)}")
    return fitting[0]


def model_mismatch(plans, rule) -> str | None:
    """Why a model's channels or labels do not fit a task's arguments and output, or None."""
    from fomo_nn.challenges.sequences import channel_candidates
    from fomo_nn.inference.export import label_values

    unserved = [name for name in plans.channel_names if not set(channel_candidates(name)) & set(rule.sequences)]
    if unserved:
        return f"no argument of the task serves its channel(s) {unserved}"
    if rule.label_kind == "mask" and label_values(plans) != [0, *rule.foreground_labels]:
        return f"it predicts the labels {label_values(plans)}, the task's mask holds {[0, *rule.foreground_labels]}"
    return None


def describe(argv: list[str]) -> int:
    """Load what the image holds and say what it answers; non-zero when it answers nothing."""
    from fomo_nn.challenges.registry import challenge_task
    from fomo_nn.inference.challenge import task_of_model
    from fomo_nn.inference.model_folder import load_ensemble
    from fomo_nn.plans import load_plans
    from fomo_nn.probing.embedding import load_embedder

    edition = option_value(argv, "edition")
    answers = []
    models = task_folders()
    if (MODEL_DIR / "plans.json").is_file():
        models = {int(option_value(argv, "task") or task_of_model(MODEL_DIR, edition)): MODEL_DIR}
    seen = {}
    for task, folder in models.items():
        ensemble = load_ensemble(folder)
        rule = challenge_task(edition, task)
        problem = model_mismatch(ensemble.plans, rule)
        if problem:
            print(f"predict.py: error: the model at {folder} cannot answer {rule.name} ({rule.title}): {problem}",
                  file=sys.stderr)
            return 1
        twin = seen.setdefault(call_signature(rule), task)
        if twin != task:
            print(f"predict.py: error: {rule.name} and task {twin} are called with the same arguments and output "
                  f"ending, so one image cannot serve both: build one image for each", file=sys.stderr)
            return 1
        answers.append(f"{rule.name} ({rule.title}): " + " ".join(f"--{rule.flag(s)}" for s in rule.sequences))
    encoder_dir = MODEL_DIR / ENCODER_FOLDER
    if encoder_dir.is_dir():
        plans_file = encoder_dir / "plans.json"
        embedder = load_embedder(str(encoder_file(encoder_dir)), load_plans(plans_file) if plans_file.is_file()
                                 else None)
        answers.append(f"FOMO26 tasks 6 and 7 (embeddings of length {embedder.recipe.length}): --input")
    if not answers:
        print(f"predict.py: error: {MODEL_DIR} holds no model (plans.json, or {TASK_FOLDER}<N>/ folders) and no "
              f"{ENCODER_FOLDER}/ folder",
              file=sys.stderr)
        return 1
    print("\n".join(answers))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        baked = shlex.split(OPTIONS_FILE.read_text()) if OPTIONS_FILE.is_file() else []
    except ValueError as error:
        print(f"predict.py: error: {OPTIONS_FILE} is not a valid option line: {error}", file=sys.stderr)
        return 1
    argv = [*baked, *argv]
    if "--describe" in argv:
        return describe([a for a in argv if a != "--describe"])
    if any(a == "--input" or a.startswith("--input=") for a in argv):
        return embed(argv, MODEL_DIR / ENCODER_FOLDER)
    from fomo_nn.challenges.registry import challenge_task
    from fomo_nn.inference.challenge import FLAGS, main as challenge_main, task_of_model

    folders = task_folders()
    if folders:  # several tasks in one image: the call says which
        edition, task = option_value(argv, "edition"), option_value(argv, "task")
        given = {a[2:].split("=")[0] for a in argv if a.startswith("--") and a[2:].split("=")[0] in FLAGS}
        try:
            task = int(task) if task else task_of_call(folders, edition, given, option_value(argv, "output"))
            if task not in folders:
                raise ValueError(f"task {task} is not packed (packed: {sorted(folders)})")
        except ValueError as error:
            print(f"predict.py: error: this image serves several tasks: {error}", file=sys.stderr)
            return 2
        return challenge_main(["--task", str(task), *argv], default_model_dir=str(folders[task]), prog="predict.py")
    if not any(a == "--task" or a.startswith("--task=") for a in argv):
        edition = option_value(argv, "edition")
        try:
            task = task_of_model(MODEL_DIR, edition)
            rule = challenge_task(edition, task)
        except Exception as error:  # no model baked in, unreadable plans: say so instead of a traceback
            print(f"predict.py: error: cannot tell which task the model at {MODEL_DIR} answers: {error}",
                  file=sys.stderr)
            return 1
        given = [a[2:].split("=")[0] for a in argv if a.startswith("--") and a[2:].split("=")[0] in FLAGS]
        foreign = [f"--{s}" for s in given if s not in {rule.flag(q) for q in rule.sequences}]
        if foreign:
            print(f"predict.py: error: the model at {MODEL_DIR} answers {rule.name} "
                  f"({rule.task_type}), which does not take {', '.join(foreign)}: "
                  f"this image is for task {task}", file=sys.stderr)
            return 2
        argv = ["--task", str(task), *argv]
    return challenge_main(argv, default_model_dir=str(MODEL_DIR), prog="predict.py")


if __name__ == "__main__":
    sys.exit(main())
