"""Two 'nodes' on localhost under torchrun (c10d rendezvous, gloo, CPU), running fomo_nn_train as a
multi-node job does: the ranks read disjoint scans that cover the corpus every epoch, and a run
killed after a checkpoint and resumed with --continue ends where an uninterrupted one does.

Each launch is two `torchrun --nnodes 2 --nproc-per-node 1` agents (node ranks assigned by the
rendezvous), i.e. world size 2: 12 s per launch on 2 idle CPU cores (three launches), mostly start-up.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from preprocessed_builders import build_preprocessed

TESTS = Path(__file__).parent
# 12 training scans (16, one of 4 subjects held out) = 3 steps x batch 2 x 2 ranks: one epoch is one pass
TRAIN = ["900", "all", "-tr", "mae", "--epochs", "3", "--iters-per-epoch", "3", "--val-iters", "1",
         "--batch-size", "2", "--num-workers", "0", "--checkpoint-every", "1", "--device", "cpu",
         "--set", "token_size=4"]
KILL_AFTER_STEP = 7  # mid third epoch: the last checkpoint is the one after epoch 2
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def two_nodes(entry: list[str], env: dict, logs: Path) -> list[int]:
    """Run `torchrun --nnodes 2 ... entry` as two agents (the job's two nodes); their exit codes."""
    logs.mkdir(parents=True, exist_ok=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{_free_port()}",
                "--rdzv-id", uuid.uuid4().hex[:8], "--max-restarts", "0"]
    nodes = []
    for node in range(2):
        with open(logs / f"node{node}.log", "w") as log:
            nodes.append(subprocess.Popen(launcher + entry, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    try:
        return [node.wait(timeout=TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "training_log.jsonl").read_text().splitlines()]


def _tail(logs: Path) -> str:
    return "\n".join((logs / f"node{n}.log").read_text()[-2000:] for n in range(2))


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("multinode")
    build_preprocessed(root / "preprocessed", "pretraining", num_cases=16, shape=(32, 32, 32))
    env = {**os.environ, "fomo_nn_preprocessed": str(root / "preprocessed"), "fomo_nn_raw": str(root / "raw"),
           "fomo_nn_results": str(root / "results"), "OMP_NUM_THREADS": "1", "FOMO_NN_LOG_CASES": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    reference = root / "uninterrupted"
    codes = two_nodes(["-m", "fomo_nn.cli.train", *TRAIN, "--output", str(reference)], env, root / "logs_a")
    assert codes == [0, 0], _tail(root / "logs_a")
    return root, env, reference


def test_ranks_read_disjoint_scans_that_cover_the_corpus_every_epoch(job):
    root, _, reference = job
    held_out = set(json.loads((reference / "pretraining_split.json").read_text())["validation_subjects"])
    training = {f"img_{i:03d}" for i in range(16) if f"sub_{i // 4}" not in held_out}
    log = _log(reference)
    assert [r["epoch"] for r in log] == [0, 1, 2]
    for record in log:
        rank0, rank1 = record["case_ids"]
        assert len(rank0) == len(rank1) == 6  # 3 steps x batch 2 on each rank
        assert not set(rank0) & set(rank1)
        assert set(rank0) | set(rank1) == training
    assert log[0]["case_ids"] != log[1]["case_ids"]  # a new shuffle every pass


def test_killed_and_resumed_job_equals_the_uninterrupted_one(job):
    root, env, reference = job
    resumed = root / "killed"
    codes = two_nodes([str(TESTS / "killed_train.py"), str(KILL_AFTER_STEP), *TRAIN, "--output", str(resumed)],
                      env, root / "logs_b")
    assert codes != [0, 0], _tail(root / "logs_b")
    assert not (resumed / "checkpoint_final.pth").exists()
    assert torch.load(resumed / "checkpoint_latest.pth", weights_only=True)["epoch"] == 2

    codes = two_nodes(["-m", "fomo_nn.cli.train", *TRAIN, "--output", str(resumed), "--continue"], env,
                      root / "logs_c")
    assert codes == [0, 0], _tail(root / "logs_c")
    assert "resumed from" in (root / "logs_c" / "node0.log").read_text() + (root / "logs_c" / "node1.log").read_text()
    expected = torch.load(reference / "checkpoint_final.pth", weights_only=True)["network"]
    final = torch.load(resumed / "checkpoint_final.pth", weights_only=True)["network"]
    assert expected.keys() == final.keys()
    assert all(torch.equal(expected[key], final[key]) for key in expected)
    keys = ("epoch", "train_loss", "case_ids", "val_loss")
    assert [{k: r[k] for k in keys} for r in _log(resumed)] == [{k: r[k] for k in keys} for r in _log(reference)]
