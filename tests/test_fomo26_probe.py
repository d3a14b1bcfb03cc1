"""The FOMO26 probe and fairness score equal the organisers' computation.

fomo-lp (github.com/fomo26/fomo-lp @ f915d5a), asparagus' LinearProbeModule (Sllambias/asparagus @ 338450b)
and torchmetrics' MulticlassAUROC cannot run here (fomo-lp and asparagus are not on a registry; Lightning and
torchmetrics import torchvision, which does not load beside this torch), so the references below transcribe
their code path step by step in its own structure: `_stratified_split`, the Lightning fit of a ModuleDict of
heads with a summed loss through a real shuffling DataLoader, torchmetrics' per-update format and ROC, the
batch-1 test loop. fomo-metrics' fairness (README @ c80797b, tests/test_fairness.py @ 505d699) is checked on
its own cases with values worked out by hand.
"""
import json
import math
import random
from collections import defaultdict

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fomo_nn.cli.probe import main as probe_main
from fomo_nn.probing.fomo26.fairness import (bin_continuous, fairness_score, max_disparity, normalize_categorical,
                                             parse_bins)
from fomo_nn.probing.fomo26.linear_probe import DEFAULT_LEARNING_RATES, Sweep, fit_sweep
from fomo_nn.probing.fomo26.scores import ovr_auroc, ovr_f1
from fomo_nn.probing.fomo26.selection_auroc import macro_auroc
from fomo_nn.probing.fomo26.split import split_subjects


# ---------------------------------------------------------------- references (transcriptions of their code)
def reference_stratified_split(items, n_train, n_val, n_test, seed=42):
    """fomo-lp lp_fomo.py `_stratified_split` @ f915d5a."""
    rng = random.Random(seed)
    total = n_train + n_val + n_test
    strata = defaultdict(list)
    for r in items:
        try:
            stratum = min(int(float(r.get("feature1", "")) // 10) * 10, 90)
        except (TypeError, ValueError):
            stratum = -1
        strata[stratum].append(r)
    test_pool, trainval_pool = [], []
    for decade in sorted(strata):
        members = list(strata[decade])
        rng.shuffle(members)
        n_t = round(len(members) * n_test / total)
        test_pool.extend(members[:n_t])
        trainval_pool.extend(members[n_t:])
    rng.shuffle(test_pool)
    rng.shuffle(trainval_pool)
    delta = len(test_pool) - n_test
    if delta > 0:
        trainval_pool.extend(test_pool[n_test:])
        test_pool = test_pool[:n_test]
    elif delta < 0:
        test_pool.extend(trainval_pool[:-delta])
        trainval_pool = trainval_pool[-delta:]
    val = trainval_pool[:n_val]
    train = trainval_pool[n_val:]
    rng.shuffle(train)
    return train, val, test_pool


def reference_split(ptids, cohorts, feature1, counts, seed=42):
    """run_lp_fomo's loop: classes sorted, each split alone, lists concatenated."""
    by_cohort = defaultdict(list)
    for ptid, cohort in zip(ptids, cohorts):
        by_cohort[cohort].append({"ptid": ptid, "feature1": feature1[ptid]})
    train, val, test = [], [], []
    for cohort in sorted(set(cohorts)):
        tr, va, te = reference_stratified_split(by_cohort[cohort], *counts, seed)
        train += [r["ptid"] for r in tr]
        val += [r["ptid"] for r in va]
        test += [r["ptid"] for r in te]
    return train, val, test


class ReferenceMulticlassAUROC:
    """torchmetrics 1.9 MulticlassAUROC(average="macro", thresholds=None): update() formats, compute() integrates."""

    def __init__(self, num_classes):
        self.num_classes, self.preds, self.target = num_classes, [], []

    def update(self, preds, target):
        preds = preds.transpose(0, 1).reshape(self.num_classes, -1).T
        if not torch.all((preds >= 0) * (preds <= 1)):  # normalize_logits_if_needed, CPU branch
            preds = torch.softmax(preds, dim=1)
        self.preds.append(preds)
        self.target.append(target.flatten())

    def compute(self):
        preds, target = torch.cat(self.preds), torch.cat(self.target)
        aucs = []
        for i in range(self.num_classes):  # _multiclass_roc_compute -> _binary_roc_compute(pos_label=i)
            p = preds[:, i]
            idx = torch.argsort(p, descending=True)
            p, t = p[idx], target[idx]
            distinct = torch.where(p[1:] - p[:-1])[0]
            thr = torch.nn.functional.pad(distinct, [0, 1], value=t.size(0) - 1)
            t = (t == i).to(torch.long)
            tps = torch.cumsum(t * 1.0, dim=0)[thr]
            fps = 1 + thr - tps
            tps = torch.cat([torch.zeros(1, dtype=tps.dtype), tps])
            fps = torch.cat([torch.zeros(1, dtype=fps.dtype), fps])
            fpr = torch.zeros_like(tps) if fps[-1] <= 0 else fps / fps[-1]
            tpr = torch.zeros_like(tps) if tps[-1] <= 0 else tps / tps[-1]
            aucs.append(torch.trapz(tpr, fpr, dim=-1) * 1.0)
        res = torch.stack(aucs)
        return res[~torch.isnan(res)].mean()


class EmbeddingDataset(Dataset):
    def __init__(self, ptids, embeddings, labels):
        self.ptids, self.embeddings, self.labels = ptids, embeddings, labels

    def __len__(self):
        return len(self.ptids)

    def __getitem__(self, i):
        p = self.ptids[i]
        return {"image": torch.from_numpy(self.embeddings[p].astype(np.float32)),
                "CLSREG_label": torch.tensor([self.labels[p]], dtype=torch.long), "file_path": p}


def head_name(lr):
    return f"lr_{lr:.0e}".replace(".", "_").replace("+", "").replace("-", "m")


def reference_lp(train_ds, val_ds, test_ds, lrs, num_classes, epochs=20, batch_size=64, seed=42):
    """LinearProbeModule + lp_fomo's Trainer(check_val_every_n_epoch=5, num_sanity_val_steps=0):
    seed_everything, validate, fit, test with the best head (batch 1)."""
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)  # pl.seed_everything(42)
    feature_dim = len(train_ds[0]["image"])
    heads = nn.ModuleDict()  # configure_model, called by trainer.validate
    for lr in lrs:
        head = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(head.weight, mean=0.0, std=0.01)
        nn.init.zeros_(head.bias)
        heads[head_name(lr)] = head
    loss_fn = nn.CrossEntropyLoss(weight=None)
    state = {}

    def validate():
        metrics = {name: ReferenceMulticlassAUROC(num_classes) for name in heads}
        with torch.no_grad():
            for batch in DataLoader(val_ds, batch_size=batch_size, shuffle=False):
                x, y = batch["image"], batch["CLSREG_label"].view(-1).long()
                features = torch.flatten(nn.AdaptiveAvgPool3d((1, 1, 1))(x.view(x.shape[0], feature_dim, 1, 1, 1)), 1)
                for name, head in heads.items():
                    metrics[name].update(head(features).float(), y)
        aurocs = {lr: metrics[head_name(lr)].compute().item() for lr in lrs}
        state["best"] = max(aurocs.items(), key=lambda x: x[1])[0]
        state["aurocs"] = aurocs

    validate()
    g = torch.Generator()
    g.manual_seed(seed)
    train_loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=0, generator=g)
    optimizer = torch.optim.SGD([{"params": h.parameters(), "lr": lr, "name": n}
                                 for lr, (n, h) in zip(lrs, heads.items())], momentum=0.9, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
    for epoch in range(epochs):
        for batch in train_loader:
            x, y = batch["image"], batch["CLSREG_label"].view(-1).long()
            with torch.no_grad():
                features = torch.flatten(x.view(x.shape[0], feature_dim, 1, 1, 1), 1)
            optimizer.zero_grad()
            total_loss = 0.0
            for name, head in heads.items():
                total_loss = total_loss + loss_fn(head(features), y)
            total_loss.backward()
            optimizer.step()
            scheduler.step()
        if (epoch + 1) % 5 == 0:
            validate()
    results = {}
    with torch.no_grad():
        for batch in DataLoader(test_ds, batch_size=1, shuffle=False, num_workers=0):
            logits = heads[head_name(state["best"])](batch["image"])
            results[batch["file_path"][0]] = torch.softmax(logits.float(), dim=1).squeeze(0).tolist()
    return state["best"], state["aurocs"], results


# ---------------------------------------------------------------- shared input
def cohort(seed, sizes=(130, 90, 110), dim=24, signal=0.25):
    """Subjects with ages (some missing, some 90+), sexes, and make_dummy_embeddings-style class signal."""
    rng = np.random.default_rng(seed)
    rows, vectors = [], {}
    classes = ["AD", "CN", "MCI"]
    for c, size in enumerate(sizes):
        for k in range(size):
            ptid = f"S{c}_{k:03d}"
            age = "" if rng.random() < 0.05 else f"{rng.uniform(18, 97):.1f}"
            rows.append({"ptid": ptid, "selected_cohort": classes[c], "age": age,
                         "sex": rng.choice([" F", "m", "M ", "f", ""])})
            vector = rng.standard_normal(dim).astype(np.float32) * 0.5
            chunk = dim // len(classes)
            vector[c * chunk:(c + 1) * chunk] += signal
            vectors[ptid] = vector
    return rows, vectors


@pytest.mark.parametrize("seed,counts", [(0, (80, 20, 100)), (1, (40, 10, 50)), (2, (8, 2, 10))])
def test_split_indices_equal_fomo_lp_for_seed_42(seed, counts):
    rows, _ = cohort(seed)
    ptids = [r["ptid"] for r in rows]
    cohorts = [r["selected_cohort"] for r in rows]
    feature1 = {r["ptid"]: r["age"] for r in rows}
    expected = reference_split(ptids, cohorts, feature1, counts)
    ours = split_subjects(dict(zip(ptids, cohorts)), feature1, counts, 42)
    assert (ours.train, ours.val, ours.test) == expected
    assert sorted(ours.train + ours.val + ours.test) == sorted(ptids)
    for name in ("AD", "CN", "MCI"):  # exactly n_test per class when the class has them, n_val validation
        assert sum(p.startswith(f"S{['AD', 'CN', 'MCI'].index(name)}") for p in ours.test) == min(
            counts[2], sum(c == name for c in cohorts))
    other = split_subjects(dict(zip(ptids, cohorts)), feature1, counts, 43)
    assert other.test != ours.test  # the seed matters


def test_selection_auroc_is_the_macro_one_vs_rest_auroc():
    rng = np.random.default_rng(5)
    logits = torch.tensor(rng.standard_normal((70, 3)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 3, 70))
    batches = [(logits[s:s + 64], labels[s:s + 64]) for s in (0, 64)]
    probabilities = torch.softmax(logits, 1).double().numpy()
    expected = np.mean([roc_auc_score(labels.numpy() == c, probabilities[:, c]) for c in range(3)])
    assert macro_auroc(batches, 3) == pytest.approx(expected, abs=1e-6)
    reference = ReferenceMulticlassAUROC(3)
    for batch in batches:
        reference.update(*batch)
    assert macro_auroc(batches, 3) == reference.compute().item()
    # a class absent from the validation split counts 0 (torchmetrics' zero-filled tpr), not NaN
    absent = [(logits[:20], torch.zeros(20, dtype=torch.long).index_fill_(0, torch.arange(10), 1))]
    two = np.mean([roc_auc_score(absent[0][1].numpy() == c, torch.softmax(absent[0][0], 1)[:, c].numpy())
                   for c in range(2)])
    assert macro_auroc(absent, 3) == pytest.approx(2 * two / 3, abs=1e-6)


@pytest.mark.parametrize("seed,signal,epochs", [(0, 0.25, 20), (3, 0.12, 20), (4, 2.0, 20), (6, 0.25, 7)])
def test_sweep_equals_the_organisers_training_loop(seed, signal, epochs):
    rows, vectors = cohort(seed, signal=signal)
    ptids = [r["ptid"] for r in rows]
    classes = sorted({r["selected_cohort"] for r in rows})
    labels = {r["ptid"]: classes.index(r["selected_cohort"]) for r in rows}
    feature1 = {r["ptid"]: r["age"] for r in rows}
    split = split_subjects({r["ptid"]: r["selected_cohort"] for r in rows}, feature1, (40, 10, 50), 42)
    lrs = list(DEFAULT_LEARNING_RATES)
    torch.manual_seed(1234)
    before = torch.rand(1)
    probe = fit_sweep(np.stack([vectors[p] for p in split.train]), np.array([labels[p] for p in split.train]),
                      np.stack([vectors[p] for p in split.val]), np.array([labels[p] for p in split.val]), 3,
                      Sweep(epochs=epochs))
    torch.manual_seed(1234)
    assert torch.equal(torch.rand(1), before)  # the caller's generator is untouched
    best, aurocs, test_scores = reference_lp(EmbeddingDataset(split.train, vectors, labels),
                                             EmbeddingDataset(split.val, vectors, labels),
                                             EmbeddingDataset(split.test, vectors, labels), lrs, 3, epochs=epochs)
    assert probe.best_lr == best
    assert probe.validation_auroc == pytest.approx(aurocs, abs=1e-6)
    ours = probe.scores(np.stack([vectors[p] for p in split.test]))
    theirs = np.array([test_scores[p] for p in split.test])
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    y = [labels[p] for p in split.test]
    assert ovr_auroc(y, ours.tolist()) == pytest.approx(ovr_auroc(y, theirs.tolist()), abs=1e-6)
    assert ovr_f1(y, ours.tolist()) == pytest.approx(ovr_f1(y, theirs.tolist()), abs=1e-6)
    if signal < 1:  # a hard task: the heads disagree, so the selection is a real choice
        assert len({round(v, 6) for v in aurocs.values()}) > 3


def test_scores_equal_scikit_learn_and_missing_embeddings_score_worst():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 40).tolist()
    scores = rng.dirichlet(np.ones(3), 40)
    assert ovr_auroc(y, scores.tolist()) == pytest.approx(roc_auc_score(y, scores, multi_class="ovr"), abs=1e-12)
    assert ovr_f1(y, scores.tolist()) == pytest.approx(f1_score(y, scores.argmax(1), average="macro"), abs=1e-12)
    with_missing = scores.tolist()
    with_missing[3] = None
    with_missing[7] = [float("nan"), 0.5, 0.5]
    worst = scores.copy()
    for i in (3, 7):
        worst[i] = [0.0 if c == y[i] else 0.5 for c in range(3)]
    assert ovr_auroc(y, with_missing) == pytest.approx(roc_auc_score(y, worst, multi_class="ovr"), abs=1e-12)
    predictions = scores.argmax(1)
    predictions[[3, 7]] = [(y[3] + 1) % 3, (y[7] + 1) % 3]
    assert ovr_f1(y, with_missing) == pytest.approx(f1_score(y, predictions, average="macro"), abs=1e-12)
    assert ovr_auroc(y, with_missing) < ovr_auroc(y, scores.tolist())
    binary = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], None]
    assert ovr_auroc([0, 1, 1, 1], binary) == pytest.approx(roc_auc_score([0, 1, 1, 1], [0.2, 0.7, 0.4, 0.0]))


class Nan:
    def __eq__(self, other):
        return isinstance(other, float) and math.isnan(other)


PERFECT3 = [[0.9, 0.05, 0.05]] * 2 + [[0.05, 0.9, 0.05]] * 2 + [[0.05, 0.05, 0.9]] * 2


@pytest.mark.parametrize("labels,scores,groups,metric,expected", [
    ([0, 0, 1, 1, 2, 2], PERFECT3, ["A", "B"] * 3, ovr_f1, 0.0),  # fomo-metrics: equal groups
    ([0, 1, 0, 1], [[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]], ["A", "A", "B", "B"], ovr_f1, 1.0),
    ([0, 1, 2], PERFECT3[::2], ["A"] * 3, ovr_f1, 0.0),  # one group: 0
    ([0, 1], [[0.9, 0.1], [0.1, 0.9]], [None, None], ovr_f1, float("nan")),  # no known group: NaN
    # group b right on 2 of 4 (one prediction wrong, one missing embedding -> predicts 1 for a 0):
    # predictions [0, 0, 1, 1] for [0, 1, 0, 1]: F1 0.5 per class; group a perfect: gap 0.5
    ([0, 1, 0, 1, 0, 1, 0, 1], [[.9, .1], [.1, .9], [.9, .1], [.1, .9], [.9, .1], [.9, .1], None, [.1, .9]],
     ["a", "a", "a", "a", "b", "b", "b", "b"], ovr_f1, 0.5),
    # AUROC: B ranks one negative above one positive out of 4 pairs: 0.75; unknown group left out
    ([0, 1, 0, 1, 0, 1, 0, 1, 1], [[.9, .1], [.2, .8], [.8, .2], [.1, .9], [.9, .1], [.7, .3], [.4, .6], [.2, .8],
                                   [.9, .1]], ["a"] * 4 + ["b"] * 4 + [None], ovr_auroc, 0.25),
])
def test_max_disparity_table(labels, scores, groups, metric, expected):
    value = max_disparity(labels, scores, groups, metric)
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected, abs=1e-12)


def test_fairness_score_averages_one_minus_gap_over_defined_variables():
    y = [0, 1, 2] * 10 + [0, 1] * 6  # fomo-metrics' regression case: group B lacks class 2
    groups = ["A"] * 30 + ["B"] * 12
    scores = [[0.7, 0.2, 0.1] if c == 0 else [0.2, 0.7, 0.1] if c == 1 else [0.1, 0.2, 0.7] for c in y]
    result = fairness_score(y, scores, {"site": groups}, ovr_auroc)
    assert result["variables_used"] == ["site"] and result["score"] == pytest.approx(1.0)
    binary = [0, 1] * 20
    result = fairness_score(binary, [[0.8, 0.2] if c == 0 else [0.2, 0.8] for c in binary],
                            {"site": ["A"] * 20 + ["B"] * 20}, ovr_auroc)
    assert result["variables_used"] == ["site"] and not math.isnan(result["score"])
    labels = [0, 1, 0, 1]
    scores = [[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]
    result = fairness_score(labels, scores, {"sex": ["f", "f", "m", "m"], "age_bin": [0, 1, 0, 1],
                                             "unknown": [None] * 4}, ovr_f1)
    # sex: f perfect (1), m all wrong (0) -> gap 1; each age bin holds one right, one wrong of one class: F1 1/3
    assert result["disparities"] == {"sex": pytest.approx(1.0), "age_bin": pytest.approx(0.0), "unknown": Nan()}
    assert result["variables_used"] == ["sex", "age_bin"]
    assert result["score"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        fairness_score(labels, scores, {"bad": ["A"]}, ovr_f1)


def test_group_labels_as_fomo_lp():
    bins = parse_bins("25:0,50:1,75:2,1000:3")
    assert [bin_continuous(v, bins) for v in ("25", 25.5, "75", 0, -3, "", None, "x", 2000)] == \
        [0, 1, 2, None, None, None, None, None, None]
    assert [normalize_categorical(v) for v in (" F", "m ", "", None, 3)] == ["f", "m", None, None, "3"]
    with pytest.raises(ValueError, match="ascending"):
        parse_bins("50:0,25:1")


def test_cli_protocol_fomo26_end_to_end(tmp_path):
    rows, vectors = cohort(7, sizes=(60, 50, 55), signal=0.4)
    folder = tmp_path / "embeddings"
    folder.mkdir()
    split = split_subjects({r["ptid"]: r["selected_cohort"] for r in rows}, {r["ptid"]: r["age"] for r in rows},
                           (16, 4, 20), 42)
    missing = split.test[:3]
    for ptid, vector in vectors.items():
        if ptid not in missing:
            np.save(folder / f"{ptid}.npy", vector)
    csv_path = tmp_path / "subjects.csv"
    csv_path.write_text("ptid,selected_cohort,age,sex\n" + "".join(
        f"{r['ptid']},{r['selected_cohort']},{r['age']},{r['sex']}\n" for r in rows))
    out = tmp_path / "report"
    code = probe_main(["--protocol", "fomo26", "--embeddings", str(folder), "--subjects-csv", str(csv_path),
                       "-o", str(out), "--split-counts", "16", "4", "20", "--quiet"])
    assert code == 0
    report = json.loads((out / "eval_report.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert report["n_test"] == len(split.test) and report["n_test_missing"] == 3
    classes = sorted({r["selected_cohort"] for r in rows})
    labels = {r["ptid"]: classes.index(r["selected_cohort"]) for r in rows}
    best, _, scores = reference_lp(EmbeddingDataset(split.train, vectors, labels),
                                   EmbeddingDataset(split.val, vectors, labels),
                                   EmbeddingDataset([p for p in split.test if p not in missing], vectors, labels),
                                   list(DEFAULT_LEARNING_RATES), 3)
    assert report["best_lr"] == best == predictions["best_head_lr"]
    y = [labels[p] for p in split.test]
    full = [scores.get(p) for p in split.test]
    assert report["overall"]["ovr_auroc"] == pytest.approx(ovr_auroc(y, full), abs=1e-6)
    assert report["overall"]["ovr_f1"] == pytest.approx(ovr_f1(y, full), abs=1e-6)
    assert set(report["per_variable"]["feature2"]["groups"]) <= {"f", "m"}
    assert 0 <= report["fairness_score"]["ovr_auroc"]["score"] <= 1
    # a training subject without its embedding is refused, naming the folder
    (folder / f"{split.train[0]}.npy").unlink()
    assert probe_main(["--protocol", "fomo26", "--embeddings", str(folder), "--subjects-csv", str(csv_path),
                       "-o", str(out), "--split-counts", "16", "4", "20", "--quiet"]) == 2
