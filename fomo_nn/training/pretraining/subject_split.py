"""Hold out a few subjects for validation: scans of one subject never sit on both sides.

Pretraining has no labels to overfit, but a held-out loss on unseen heads still shows whether the
objective generalizes or the encoder memorizes; scans of one subject are near-duplicates, so the
split is by subject.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from fomo_nn.preprocessing.case_store import PreprocessedCase

VALIDATION_FRACTION = 0.05
MIN_SUBJECTS_FOR_HOLDOUT = 4


def group_by_subject(cases: list[PreprocessedCase]) -> dict[str, list[PreprocessedCase]]:
    groups: dict[str, list[PreprocessedCase]] = defaultdict(list)
    for case in cases:
        groups[case.subject].append(case)
    return dict(groups)


def split_by_subject(cases: list[PreprocessedCase], seed: int, fraction: float = VALIDATION_FRACTION,
                     eligible: Callable[[list[PreprocessedCase]], bool] = lambda scans: True,
                     min_subjects: int = 1) -> tuple[list[PreprocessedCase], list[PreprocessedCase]]:
    """(training, validation) cases; validation = round(fraction x subjects) subjects, at least
    `min_subjects` (a contrastive loss needs a second subject for negatives).

    Only subjects for which `eligible(scans)` holds are held out (pair sampling needs >= 2 scans on
    both sides). With fewer than 4 subjects, or when holding out would leave training without an
    eligible subject, validation uses the training cases themselves (returned as the same list).
    """
    groups = group_by_subject(cases)
    subjects = sorted(groups)
    if len(subjects) < MIN_SUBJECTS_FOR_HOLDOUT:
        return cases, cases
    count = max(min_subjects, 1, int(round(fraction * len(subjects))))
    candidates = [s for s in subjects if eligible(groups[s])]
    if len(candidates) - count < min_subjects:  # training keeps at least as many eligible subjects
        return cases, cases
    held_out = set(np.random.default_rng(seed).choice(candidates, size=count, replace=False).tolist())
    train = [c for c in cases if c.subject not in held_out]
    val = [c for c in cases if c.subject in held_out]
    return train, val
