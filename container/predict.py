"""/app/predict.py: the FOMO25 container entry point (one case per call).

The validator runs, for example (task 2):
    python /app/predict.py --flair /input/ses_1/flair.nii.gz --dwi_b1000 /input/ses_1/dwi_b1000.nii.gz \
        --swi /input/ses_1/swi.nii.gz --output /output/sub_1.nii.gz
A container holds one trained model folder at /app/model (all its folds are ensembled); the task is
the one that model answers (classification -> 1, segmentation -> 2, regression -> 3) unless `--task`
or $FOMO_NN_TASK says otherwise. $FOMO_NN_MODEL points elsewhere than /app/model (used when the
checker runs this file directly, without an image). Everything else is fomo_nn's challenge mode,
the same code path as `fomo_nn_predict --task ...`.
"""
from __future__ import annotations

import os
import sys

DEFAULT_MODEL_DIR = "/app/model"


def main(argv=None) -> int:
    from fomo_nn.inference.challenge import main as challenge_main, task_of_model

    argv = list(sys.argv[1:] if argv is None else argv)
    model_dir = os.environ.get("FOMO_NN_MODEL", DEFAULT_MODEL_DIR)
    if not any(a == "--task" or a.startswith("--task=") for a in argv):
        try:
            task = os.environ.get("FOMO_NN_TASK") or str(task_of_model(model_dir))
        except Exception as error:  # no model baked in, unreadable plans: say so instead of a traceback
            print(f"predict.py: error: cannot tell which task the model at {model_dir} answers: {error}",
                  file=sys.stderr)
            return 1
        argv = ["--task", task, *argv]
    return challenge_main(argv, default_model_dir=model_dir, prog="predict.py")


if __name__ == "__main__":
    sys.exit(main())
