"""torchrun entry for test_multinode: fomo_nn_train whose every rank is SIGKILLed right after step K.

    python -m torch.distributed.run ... killed_train.py K DATASET FOLD [fomo_nn_train options]

A real kill (no exception handler, no cleanup runs); every rank dies after the same optimizer step,
so no rank is left waiting in a collective.
"""
from __future__ import annotations

import os
import signal
import sys

from fomo_nn.cli.train import main
from fomo_nn.training.base_trainer import BaseTrainer


def kill_after(last_step: int) -> None:
    train_step = BaseTrainer.train_step

    def step_then_die(self, batch, step):
        result = train_step(self, batch, step)
        if step == last_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    BaseTrainer.train_step = step_then_die


if __name__ == "__main__":
    kill_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
