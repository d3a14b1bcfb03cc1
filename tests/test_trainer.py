import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fomo_nn.plans import load_plans
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.checkpoints.training_state import REQUIRED_KEYS, TrainingCheckpoint
from fomo_nn.training.data.loader import make_loader
from fomo_nn.training.schedules import lr_multiplier
from preprocessed_builders import build_preprocessed
from toy_trainer import ToyRegressionTrainer

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def regression_data(tmp_path_factory):
    return build_preprocessed(tmp_path_factory.mktemp("pre"), "regression")


def _weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.network.parameters()])


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_kill_equals_uninterrupted(regression_data, tmp_path, workers):
    plans = load_plans(regression_data)
    options = dict(epochs=3, num_workers=workers, checkpoint_every=1)
    reference = ToyRegressionTrainer(plans, regression_data, tmp_path / "a", "0", TrainerOptions(**options))
    reference.run()

    killed = ToyRegressionTrainer(plans, regression_data, tmp_path / "b", "0", TrainerOptions(**options))
    killed.crash_at_step = 9  # mid-epoch 3 (4 steps per epoch): last checkpoint is after epoch 2
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    assert not (tmp_path / "b" / "checkpoint_final.pth").exists()
    assert torch.load(tmp_path / "b" / "checkpoint_latest.pth", weights_only=True)["epoch"] == 2

    resumed = ToyRegressionTrainer(plans, regression_data, tmp_path / "b", "0",
                                   TrainerOptions(**options, continue_training=True))
    resumed.run()
    assert resumed.start_epoch == 2
    assert torch.equal(_weights(reference), _weights(resumed))
    log = [json.loads(line) for line in (tmp_path / "b" / "training_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert (tmp_path / "b" / "progress.png").stat().st_size > 1000


def test_checkpoint_holds_what_resume_needs(regression_data, tmp_path):
    trainer = ToyRegressionTrainer(load_plans(regression_data), regression_data, tmp_path, "0",
                                   TrainerOptions(epochs=1))
    trainer.run()
    state = torch.load(tmp_path / "checkpoint_final.pth", weights_only=True)
    for key in ("network", "optimizer", "scheduler", "rng", "epoch", "plans", "trainer"):  # the on-disk layout
        assert key in state
    assert set(REQUIRED_KEYS) <= set(state)
    assert state["trainer"] == "toy_regression" and state["epoch"] == 1
    assert state["plans"]["dataset_name"] == "Dataset900_Tiny"
    typed = TrainingCheckpoint.from_dict(state, tmp_path / "checkpoint_final.pth")  # what resume reads
    assert typed.epoch == 1 and typed.fold == "0" and set(typed.to_dict()) == set(state)


def test_gradient_clipping_is_applied(regression_data, tmp_path):
    plans = load_plans(regression_data)
    trainer = ToyRegressionTrainer(plans, regression_data, tmp_path, "0",
                                   TrainerOptions(epochs=1, training={"grad_clip": 1e-3}, learning_rate=1.0))
    trainer.setup()
    batch = next(iter(make_loader(trainer.make_training_source(trainer.train_cases), 0, 0, 0, 1, 0)))
    before = _weights(trainer).clone()
    trainer.optimizer = torch.optim.SGD(trainer.network.parameters(), lr=1.0)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda step: 1.0)
    trainer.train_step(batch, 0)
    # with SGD at lr 1 the update norm equals the clipped gradient norm
    assert torch.linalg.norm(_weights(trainer) - before) <= 1e-3 * 1.01


def test_same_batches_regardless_of_worker_count(regression_data, tmp_path):
    trainer = ToyRegressionTrainer(load_plans(regression_data), regression_data, tmp_path, "0", TrainerOptions())
    trainer.setup()
    source = trainer.make_training_source(trainer.train_cases)
    serial = [b["image"] for b in make_loader(source, 7, 0, 3, 6, num_workers=0, world_size=2)]
    parallel = [b["image"] for b in make_loader(source, 7, 0, 3, 6, num_workers=2, world_size=2)]
    other_rank = [b["image"] for b in make_loader(source, 7, 1, 3, 6, num_workers=0, world_size=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
    assert not torch.equal(serial[0], other_rank[0])


def test_schedules():
    assert lr_multiplier("warmup_cosine", 0, 100, 10) == pytest.approx(0.1)
    assert lr_multiplier("warmup_cosine", 10, 100, 10) == pytest.approx(1.0)
    assert lr_multiplier("warmup_cosine", 55, 100, 10) == pytest.approx(0.5)
    assert lr_multiplier("poly", 100, 100, 0) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        lr_multiplier("step", 1, 10, 0)


def test_unknown_training_override_is_rejected(regression_data, tmp_path):
    with pytest.raises(ValueError, match="unknown training setting"):
        ToyRegressionTrainer(load_plans(regression_data), regression_data, tmp_path, "0",
                             TrainerOptions(training={"learningrate": 1}))


def test_ddp_two_processes_gloo_agree(regression_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(TESTS / "toy_trainer.py"), str(regression_data), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "weights_rank0.pt")
    rank1 = torch.load(tmp_path / "weights_rank1.pt")
    assert torch.equal(rank0, rank1)  # DDP all-reduces gradients: both replicas stay identical
    assert (tmp_path / "checkpoint_final.pth").exists()
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert len(log) == 2  # only rank 0 logs
