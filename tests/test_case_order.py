"""The dealt case stream: ranks read disjoint cases that cover the corpus every pass, balanced, deterministic."""
from __future__ import annotations

import numpy as np
import pytest

from fomo_nn.training.data.batch_sources import PatchSource, SubjectPairSource
from fomo_nn.training.data.case_order import pass_order, rank_case_order, rank_sample_cases
from fomo_nn.training.data.loader import StepDraw, make_loader
from fomo_nn.training.finetuning.classification import ClassBalancedPatchSource
from preprocessed_builders import build_preprocessed, cases_of

SIZES = [(12, 1), (12, 2), (12, 4), (10, 3), (7, 4), (2, 4), (1, 3)]


@pytest.mark.parametrize("num_cases,world_size", SIZES)
def test_each_pass_is_split_into_disjoint_covering_balanced_rank_slices(num_cases, world_size):
    for epoch in range(2 * world_size + 1):
        slices = [rank_case_order(num_cases, world_size, rank, 5, epoch).tolist() for rank in range(world_size)]
        read = [case for part in slices for case in part]
        assert sorted(read) == list(range(num_cases))  # every case once: disjoint and covering
        # the remainder: some ranks read one case more this pass (never two), none repeats or drops one
        assert {len(part) for part in slices} <= {num_cases // world_size, -(-num_cases // world_size)}


def test_the_extra_cases_of_an_uneven_split_rotate_over_the_ranks():
    # 10 cases on 3 ranks: each pass one rank reads 4; over 3 passes every rank read 10 cases
    totals = [sum(len(rank_case_order(10, 3, rank, 0, epoch)) for epoch in range(3)) for rank in range(3)]
    assert totals == [10, 10, 10]


@pytest.mark.parametrize("num_cases,world_size", SIZES)
def test_a_ranks_samples_run_through_its_slices_pass_after_pass(num_cases, world_size):
    passes = 3
    for rank in range(world_size):
        slices = np.concatenate([rank_case_order(num_cases, world_size, rank, 1, e) for e in range(passes)])
        direct = rank_sample_cases(num_cases, world_size, rank, 1, np.arange(len(slices)))
        assert direct.tolist() == slices.tolist()
        # random access: any sample alone is what the sequential read gives (workers, resume)
        assert rank_sample_cases(num_cases, world_size, rank, 1, [len(slices) - 1])[0] == slices[-1]


def test_the_stream_does_not_depend_on_how_it_is_dealt():
    # 4 ranks x batch 2 read, step by step, the cases of one process with batch 8
    single = rank_sample_cases(13, 1, 0, 9, np.arange(40)).reshape(5, 8)
    for step in range(5):
        dealt = [rank_sample_cases(13, 4, rank, 9, [2 * step, 2 * step + 1]) for rank in range(4)]
        assert sorted(np.concatenate(dealt).tolist()) == sorted(single[step].tolist())


def test_orders_are_deterministic_and_differ_by_seed_and_pass():
    assert pass_order(50, 3, 0).tolist() == pass_order(50, 3, 0).tolist()
    assert pass_order(50, 3, 0).tolist() != pass_order(50, 4, 0).tolist()
    assert pass_order(50, 3, 0).tolist() != pass_order(50, 3, 1).tolist()
    assert pass_order(50, (3, 1), 0).tolist() != pass_order(50, (3, 0), 0).tolist()  # streams apart
    assert not pass_order(50, 3, 0).flags.writeable  # cached: nobody may shuffle it in place


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="no cases"):
        rank_case_order(0, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="rank 2 of world size 2"):
        rank_sample_cases(8, 2, 2, 0, [0])


# ------------------------------------------------------------------ the sources read the stream
@pytest.fixture(scope="module")
def classification_cases(tmp_path_factory):
    return cases_of(build_preprocessed(tmp_path_factory.mktemp("cls"), "classification", num_cases=12))


def _case_ids_per_rank(source, world_size, steps, stream=0):
    return [[case for batch in make_loader(source, 0, rank, 0, steps, 0, stream=stream, world_size=world_size)
             for case in batch["case_id"]] for rank in range(world_size)]


def test_patch_source_ranks_read_disjoint_cases_covering_each_pass(classification_cases):
    cases = classification_cases
    source = PatchSource(cases, (16, 16, 16), 2)
    per_rank = _case_ids_per_rank(source, 2, steps=6)  # 2 ranks x 2 x 3 steps = 12 cases = one pass
    for first in (0, 6):
        epoch = [per_rank[0][first:first + 6], per_rank[1][first:first + 6]]
        assert not set(epoch[0]) & set(epoch[1])
        assert sorted(epoch[0] + epoch[1]) == sorted(c.case_id for c in cases)
    assert per_rank[0][:6] != per_rank[0][6:]  # a new order every pass


def test_class_balanced_batches_alternate_classes_and_deal_each_class(classification_cases):
    cases = classification_cases
    labels = [int(c.target) for c in cases]
    label_of = {c.case_id: label for c, label in zip(cases, labels)}
    source = ClassBalancedPatchSource(cases, labels, (16, 16, 16), 4)
    per_rank = _case_ids_per_rank(source, 2, steps=2)
    for ids in per_rank:
        for start in range(0, len(ids), 4):
            assert sorted(label_of[c] for c in ids[start:start + 4]) == [0, 0, 1, 1]
    negatives = [c for ids in per_rank for c in ids[:4] if label_of[c] == 0]  # step 0: 2 ranks x 2 of 4 negatives
    assert sorted(negatives) == sorted(c.case_id for c in cases if not c.target)


def test_subject_pairs_deal_subjects(tmp_path):
    cases = cases_of(build_preprocessed(tmp_path, "pretraining", num_cases=16))  # 4 subjects of 4 scans
    source = SubjectPairSource(cases, (16, 16, 16), 1)
    subjects = [[source(StepDraw(0, step, rank, 2))["subject"][0] for step in range(2)] for rank in range(2)]
    assert sorted(subjects[0] + subjects[1]) == ["sub_0", "sub_1", "sub_2", "sub_3"]


def test_case_log_lists_each_epochs_scans_per_rank_when_asked(tmp_path, monkeypatch):
    from fomo_nn.plans import load_plans
    from fomo_nn.training.base_trainer import TrainerOptions
    from toy_trainer import ToyRegressionTrainer

    data = build_preprocessed(tmp_path / "pre", "regression", num_cases=10)
    options = TrainerOptions(epochs=2, iterations_per_epoch=4, num_workers=0)  # 4 steps x batch 2 = the 8 scans
    monkeypatch.setenv("FOMO_NN_LOG_CASES", "1")
    trainer = ToyRegressionTrainer(load_plans(data), data, tmp_path / "logged", "0", options)
    trainer.run()
    training = sorted(c.case_id for c in trainer.train_cases)
    for record in trainer.log.records:
        (read,) = record["case_ids"]  # one rank
        assert sorted(read) == training
    monkeypatch.delenv("FOMO_NN_LOG_CASES")
    quiet = ToyRegressionTrainer(load_plans(data), data, tmp_path / "quiet", "0", options)
    quiet.run()
    assert all("case_ids" not in record for record in quiet.log.records)
