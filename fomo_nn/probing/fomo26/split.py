"""fomo-lp's subject split (pipeline/lp_fomo.py `_stratified_split` @ f915d5a), per class.

For each class in sorted order, with a fresh ``random.Random(seed)``: members are bucketed by the decade of
the first demographic variable (age; unparsable -> bucket -1, 90+ -> 90); each bucket is shuffled and its
``round(len * n_test / total)`` first members go to test; both pools are shuffled; test is then trimmed
or topped up from the trainval pool to exactly ``n_test``; the first ``n_val`` of trainval are validation,
all the rest training (shuffled once more). ``n_train`` only enters through ``total`` (the 40/10/50
proportions: 80/20/100 per class by default). Python's `random` makes the indices platform-independent.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

DEFAULT_COUNTS = (80, 20, 100)  # train, val, test per class (fomo-lp's --n-train/--n-val/--n-test)
DEFAULT_SEED = 42
MISSING_DECADE = -1


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]


def age_decade(value) -> int:
    """The stratum of one subject: its decade (0, 10, ..., 90 for 90 and over), -1 when not a number."""
    try:
        return min(int(float(value) // 10) * 10, 90)
    except (TypeError, ValueError, OverflowError):
        return MISSING_DECADE


def split_class(members: list[tuple[str, object]], counts=DEFAULT_COUNTS, seed: int = DEFAULT_SEED
                ) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) ids of one class from its (id, stratification value) pairs, in CSV order."""
    n_train, n_val, n_test = (int(c) for c in counts)
    total = n_train + n_val + n_test
    rng = random.Random(seed)
    strata: dict[int, list[str]] = defaultdict(list)
    for subject, value in members:
        strata[age_decade(value)].append(subject)
    test: list[str] = []
    rest: list[str] = []
    for decade in sorted(strata):
        bucket = list(strata[decade])
        rng.shuffle(bucket)
        taken = round(len(bucket) * n_test / total)
        test += bucket[:taken]
        rest += bucket[taken:]
    rng.shuffle(test)
    rng.shuffle(rest)
    surplus = len(test) - n_test
    if surplus > 0:
        rest += test[n_test:]
        test = test[:n_test]
    elif surplus < 0:
        test += rest[:-surplus]
        rest = rest[-surplus:]
    val, train = rest[:n_val], rest[n_val:]
    rng.shuffle(train)
    return train, val, test


def split_subjects(labels: dict[str, str], strata_values: dict[str, object], counts=DEFAULT_COUNTS,
                   seed: int = DEFAULT_SEED) -> Split:
    """The whole split: classes in sorted order, each split alone, the lists concatenated class by class.

    `labels` and `strata_values` map subject id -> class / first demographic value, in CSV order.
    """
    by_class: dict[str, list[tuple[str, object]]] = defaultdict(list)
    for subject, label in labels.items():
        by_class[label].append((subject, strata_values.get(subject, "")))
    train: list[str] = []
    val: list[str] = []
    test: list[str] = []
    for label in sorted(by_class):
        part = split_class(by_class[label], counts, seed)
        train += part[0]
        val += part[1]
        test += part[2]
    return Split(train, val, test)
