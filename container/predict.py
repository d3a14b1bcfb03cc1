"""/app/predict.py: the FOMO25 container entry point (one case per call).

The validator (fomo25/container-validator main.py) runs, for example (task 2):
    apptainer exec --nv --bind SUBJECT:/input:ro --bind OUT:/output IMAGE python /app/predict.py \
        --dwi_b1000 /input/ses_1/dwi_b1000.nii.gz --flair /input/ses_1/flair.nii.gz \
        --swi /input/ses_1/swi.nii.gz --output /output/sub_1.nii.gz
It passes every sequence it finds (a session with SWI and T2* gets `--swi` and `--t2s`).
Everything this script uses lies beside it, so the host's environment (which Apptainer passes in:
the validator uses no --cleanenv / --containall) cannot redirect it:
- `model/`: the packed model folder (all its folds are ensembled); the task is the one that model
  answers in the edition (`--edition`, default FOMO25: classification -> 1, segmentation -> 2,
  regression -> 3; FOMO26 also by the model's channels) unless `--task` is given;
- `predict.args` (optional): options baked in at build time (e.g. `--empty-mask=top-voxel`), read
  before the validator's arguments.
Everything else is fomo_nn's challenge mode, the same code path as `fomo_nn_predict --task ...`.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
MODEL_DIR = APP_DIR / "model"
OPTIONS_FILE = APP_DIR / "predict.args"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        baked = shlex.split(OPTIONS_FILE.read_text()) if OPTIONS_FILE.is_file() else []
    except ValueError as error:
        print(f"predict.py: error: {OPTIONS_FILE} is not a valid option line: {error}", file=sys.stderr)
        return 1
    from fomo_nn.challenges.registry import challenge_task
    from fomo_nn.inference.challenge import FLAGS, main as challenge_main, task_of_model

    argv = [*baked, *argv]
    if not any(a == "--task" or a.startswith("--task=") for a in argv):
        edition = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--edition"), None)
        edition = next((a.split("=", 1)[1] for a in argv if a.startswith("--edition=")), edition)
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
