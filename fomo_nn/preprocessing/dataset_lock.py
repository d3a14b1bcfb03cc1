"""The lock of a preprocessed dataset folder: preprocessing writes it, trainings read it, never both at once.

A whole preprocessing run (fingerprint, plan, preprocess) holds it alone; the shards of one array job
(one N, one preprocessing signature) share it as writers of one group; trainings share it as readers
(one group, a label per process, so every torchrun rank holds its own share while it reads). A writer
is refused while any reader lives and a reader while any writer lives, each refusal naming the holder
(host, pid, since when, command): a re-plan or rerun of the preprocessing can no longer change the
arrays and plans.json under a running training (the model would record plans other than the ones
its later epochs read).
"""
from __future__ import annotations

import logging
import os
import socket
from contextlib import nullcontext
from pathlib import Path

from fomo_nn.preprocessing.sharding import Shard
from fomo_nn.utils.run_lock import RunLock

logger = logging.getLogger(__name__)
LOCK_NAME = "preprocess"
READERS = "trainings reading the dataset"
REASON = "preprocessing rewrites the arrays and plans.json that trainings read"


def dataset_lock(preprocessed_dir: str | Path, shard: Shard | None = None, signature: str | None = None) -> RunLock:
    """The writer's side: a whole run alone, the shards of one array job side by side; refused while
    another writer, shards of other settings, or any training holds the dataset."""
    if shard is None:
        return RunLock(preprocessed_dir, LOCK_NAME, "fomo_nn preprocessing", reason=REASON,
                       advice="training and preprocessing of one dataset exclude each other")
    return RunLock(preprocessed_dir, LOCK_NAME, "fomo_nn preprocessing", label=f"shard {shard}",
                   shared=f"{shard.count} shards, preprocessing signature {signature}", reason=REASON,
                   advice="the shards of one array job must share N and plans.json")


def dataset_read_lock(preprocessed_dir: str | Path) -> RunLock | nullcontext:
    """The reader's side, taken by every training process (each torchrun rank) for its whole run:
    trainings share it; refused while a preprocessing (whole run or shard) writes the dataset. A dataset
    folder this user cannot write (a read-only copy) cannot be preprocessed under it either: no lock."""
    folder = Path(preprocessed_dir)
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        logger.info("%s is read-only here: no preprocessing can rewrite it, so training takes no lock on it", folder)
        return nullcontext()
    return RunLock(preprocessed_dir, LOCK_NAME, "fomo_nn training", shared=READERS,
                   label=f"training pid {os.getpid()} on {socket.gethostname()}", reason=REASON,
                   advice="preprocess the dataset before training it, not while")
