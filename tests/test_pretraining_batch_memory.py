"""A pretraining method trains within the plan's memory budget: its batch is the plan's divided by its memory
multiplier (stated by each method, measured in benchmarks/RESULTS.md), and it says so."""
from __future__ import annotations

import logging

import pytest
from preprocessed_builders import build_preprocessed

from fomo_nn.plans.records import load_plans
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.training.pretraining.base import PretrainingTrainer
from fomo_nn.training.pretraining.batch_memory import method_batch_size
from fomo_nn.training.registry import all_trainers, get_trainer

METHODS = ("mae", "contrastive", "hybrid", "vae", "dino")


def test_method_batch_size_divides_rounds_down_and_keeps_the_minimum():
    assert method_batch_size(49, 2.1) == 23  # 23 x 2.1 = 48.3 samples' worth <= 49
    assert method_batch_size(49, 1.6) == 30
    assert method_batch_size(8, 0.6) == 8  # a cheaper method does not grow the plan's batch
    assert method_batch_size(3, 2.1, minimum=2) == 2
    assert method_batch_size(2, 1.0) == 2
    with pytest.raises(ValueError, match="must be > 0"):
        method_batch_size(4, 0.0)


def test_a_plan_capped_below_its_memory_budget_keeps_its_batch_while_the_method_fits():
    # the sample corpus's plans: batch 4 capped by the dataset's size, memory allowing 49
    assert method_batch_size(4, 2.1, memory_batch=49) == 4
    assert method_batch_size(4, 1.6, memory_batch=49) == 4
    assert method_batch_size(49, 2.1, memory_batch=49) == 23  # memory was the limit: scaled as before
    assert method_batch_size(12, 2.1, memory_batch=20) == 9  # scaled from the budget, not from the capped batch
    assert method_batch_size(12, 2.1, minimum=2, memory_batch=3) == 2


def test_every_pretraining_method_states_its_memory_multiplier():
    methods = {name: cls for name, cls in all_trainers().items() if issubclass(cls, PretrainingTrainer)}
    assert set(METHODS) <= set(methods)
    for name, cls in methods.items():
        assert "memory_multiplier" in cls.__dict__, f"{name} does not state its memory multiplier"
        assert cls.memory_multiplier > 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = build_preprocessed(tmp_path_factory.mktemp("pre"), "pretraining", num_cases=8)
    return folder, load_plans(folder).replace(batch_size=12, memory_batch_size=None)


@pytest.mark.parametrize("method", METHODS)
def test_trainer_scales_the_plans_batch_for_its_method_and_logs_it(method, corpus, tmp_path, caplog):
    folder, plans = corpus
    cls = get_trainer(method)
    with caplog.at_level(logging.WARNING, logger="fomo_nn.training.pretraining.batch_memory"):
        trainer = cls(plans, folder, tmp_path / "run", "all", TrainerOptions(epochs=1, device="cpu"))
    expected = method_batch_size(12, cls.memory_multiplier, cls.min_batch_size)
    assert trainer.plans.batch_size == expected
    logged = " ".join(r.getMessage() for r in caplog.records)
    if expected < 12:
        assert f"{method}: batch size {expected} instead of the plan's 12" in logged
    else:
        assert "batch size" not in logged
    explicit = cls(plans, folder, tmp_path / "explicit", "all", TrainerOptions(epochs=1, device="cpu", batch_size=12))
    assert explicit.plans.batch_size == 12  # --batch-size is the user's


def test_hybrid_and_vae_are_the_ones_scaled_at_their_measured_cost(corpus):
    assert get_trainer("vae").memory_multiplier >= 2.0 and get_trainer("hybrid").memory_multiplier >= 1.5
    assert get_trainer("mae").memory_multiplier <= 1.0


@pytest.mark.parametrize("method", ("hybrid", "vae"))
def test_trainer_keeps_a_dataset_capped_batch_that_its_memory_budget_fits(method, corpus, tmp_path, caplog):
    folder, plans = corpus
    capped = plans.replace(batch_size=4, memory_batch_size=49)  # as the planner writes the sample corpus's plans
    with caplog.at_level(logging.WARNING, logger="fomo_nn.training.pretraining.batch_memory"):
        trainer = get_trainer(method)(capped, folder, tmp_path / "run", "all", TrainerOptions(epochs=1, device="cpu"))
    assert trainer.plans.batch_size == 4
    assert "batch size" not in " ".join(r.getMessage() for r in caplog.records)
    tight = plans.replace(batch_size=12, memory_batch_size=12)
    scaled = get_trainer(method)(tight, folder, tmp_path / "tight", "all", TrainerOptions(epochs=1, device="cpu"))
    assert scaled.plans.batch_size == method_batch_size(12, get_trainer(method).memory_multiplier,
                                                        get_trainer(method).min_batch_size)
