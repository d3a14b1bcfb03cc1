"""Five-fold cross-validation splits: seeded, grouped by subject, stratified by class, written once.

Why not plain KFold: FOMO-style datasets are tiny (21 cases, 8 negative) and some have several
sessions per subject. A fold whose validation set holds one class has no AUROC, and a subject in
both training and validation leaks. So every subject's cases go to one fold together, and for
classification each class's subjects are dealt across folds as evenly as possible (every fold gets
both classes whenever each class has at least one subject per fold; this is checked).

The splits are saved as ``splits_final.json`` (nnU-Net's format: a list of {"train": [...], "val":
[...]}) next to plans.json and reused by every later run, so folds never change under a user.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from fomo_nn.utils.errors import BadInputError
from fomo_nn.tasks import task_kind
from fomo_nn.utils.files import read_json, write_json_atomic

SPLITS_FILE = "splits_final.json"
NUM_FOLDS = 5
SPLIT_SEED = 12345
ALL_FOLD = "all"


def _subject_groups(case_ids: list[str], subjects: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for case_id, subject in zip(case_ids, subjects):
        groups[subject or case_id].append(case_id)
    return dict(groups)


def _group_class(cases: list[str], labels: dict[str, object]) -> object:
    """A subject's stratum: the most common class among its cases (ties: the smallest class value)."""
    values = [labels[c] for c in cases]
    counts = {v: values.count(v) for v in sorted(set(values))}
    return max(counts, key=lambda v: counts[v])


def _deal_groups(groups: list[list[str]], num_folds: int, folds: list[list[str]], per_stratum: list[int]) -> None:
    """Give each group to the fold with the fewest groups of this stratum (then fewest cases)."""
    for group in groups:
        target = min(range(num_folds), key=lambda f: (per_stratum[f], len(folds[f]), f))
        folds[target].extend(group)
        per_stratum[target] += 1


def make_splits(case_ids: list[str], subjects: list[str] | None = None, labels: list | None = None,
                num_folds: int = NUM_FOLDS, seed: int = SPLIT_SEED) -> list[dict[str, list[str]]]:
    """Seeded grouped (and, with `labels`, stratified) k-fold splits of `case_ids`.

    `subjects[i]` is the subject of `case_ids[i]` (None/empty: the case is its own subject);
    `labels[i]` its class for stratification (None: no stratification).
    """
    if len(set(case_ids)) != len(case_ids):
        raise ValueError("case ids are not unique")
    subjects = list(subjects) if subjects is not None else [None] * len(case_ids)
    groups = _subject_groups(case_ids, subjects)
    if len(groups) < num_folds:
        raise ValueError(f"{num_folds}-fold cross-validation needs at least {num_folds} subjects, "
                         f"found {len(groups)} ({len(case_ids)} cases); train fold 'all' instead")
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    label_of = dict(zip(case_ids, labels)) if labels is not None else None
    strata: dict[object, list[list[str]]] = defaultdict(list)
    for name in order:
        stratum = _group_class(groups[name], label_of) if label_of is not None else 0
        strata[stratum].append(sorted(groups[name]))
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for stratum in sorted(strata, key=lambda s: (len(strata[s]), str(s))):  # rarest class first
        # larger groups first so sizes even out; the stable sort keeps the seeded order among equals
        ordered = sorted(strata[stratum], key=len, reverse=True)
        _deal_groups(ordered, num_folds, folds, [0] * num_folds)
    splits = [{"train": sorted(c for f, fold in enumerate(folds) if f != k for c in fold), "val": sorted(folds[k])}
              for k in range(num_folds)]
    if label_of is not None:
        check_every_fold_has_every_class(splits, label_of, strata)
    return splits


def check_every_fold_has_every_class(splits: list[dict], label_of: dict, strata: dict) -> None:
    """Every class with >= one subject per fold must be in every fold's validation set."""
    enough = {c for c, groups in strata.items() if len(groups) >= len(splits)}
    for index, split in enumerate(splits):
        present = {label_of[c] for c in split["val"]}
        absent = enough - present
        if absent:
            raise AssertionError(f"fold {index} validation lacks class(es) {sorted(map(str, absent))} although each "
                                 "has a subject for every fold (splitting bug)")


def _case_strata(cases, task_type: str) -> list | None:
    """Each case's class where the task kind stratifies its folds (None: it does not)."""
    if not task_kind(task_type).stratified_splits:
        return None
    labels = []
    for case in cases:
        if case.target is None:
            raise BadInputError(Path(case.folder) / f"{case.case_id}.json", "classification case has no target class")
        labels.append(int(round(case.target)))
    return labels


def splits_for_cases(cases, task_type: str, num_folds: int = NUM_FOLDS, seed: int = SPLIT_SEED) -> list[dict]:
    """Splits for PreprocessedCase-like objects (case_id, subject, target)."""
    return make_splits([c.case_id for c in cases], [c.subject for c in cases], _case_strata(cases, task_type),
                       num_folds, seed)


def load_or_create_splits(preprocessed_dir: str | Path, cases, task_type: str, write: bool = True) -> list[dict]:
    """The dataset's splits_final.json, created (seeded) on first use and checked against the cases."""
    path = Path(preprocessed_dir) / SPLITS_FILE
    case_ids = {c.case_id for c in cases}
    if path.is_file():
        splits = _read_splits(path)
        listed = {c for split in splits for c in split["train"] + split["val"]}
        if listed != case_ids:
            unknown, unlisted = sorted(listed - case_ids), sorted(case_ids - listed)
            raise BadInputError(path, f"does not match the preprocessed cases (listed but absent: {unknown[:5]}; "
                                      f"present but unlisted: {unlisted[:5]}); delete it to split again")
        return splits
    splits = splits_for_cases(cases, task_type)
    if write:
        write_json_atomic(path, splits)
        print(f"[fomo_nn] wrote {len(splits)}-fold splits (seed {SPLIT_SEED}, grouped by subject"
              f"{', stratified by class' if task_kind(task_type).stratified_splits else ''}) to {path}",
              file=sys.stderr)
    return splits


def _read_splits(path: Path) -> list[dict]:
    try:
        splits = read_json(path)
    except (OSError, ValueError) as error:
        raise BadInputError(path, f"cannot read splits ({error})") from None
    if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "val"} <= set(s) for s in splits):
        raise BadInputError(path, 'expected a list of {"train": [...], "val": [...]} folds')
    return splits


def fold_cases(cases, splits: list[dict], fold: str, path_for_errors: str | Path = SPLITS_FILE):
    """(training cases, validation cases) of `fold`; fold 'all' validates on the training cases."""
    if str(fold) == ALL_FOLD:
        return list(cases), list(cases)
    index = int(fold)
    if not 0 <= index < len(splits):
        raise BadInputError(path_for_errors, f"has {len(splits)} folds; fold {fold} does not exist")
    by_id = {c.case_id: c for c in cases}
    return [by_id[c] for c in splits[index]["train"]], [by_id[c] for c in splits[index]["val"]]
