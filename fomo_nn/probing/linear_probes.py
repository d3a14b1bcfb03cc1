"""The simple models a probe fits on frozen features, with their hyperparameters chosen inside the
training data only (the test sites never choose anything).

- ``linear``: standardised features, then logistic regression (classification; classes weighted to
  balance, the L2 strength by stratified cross-validated log-loss) or ridge regression (regression; the penalty by efficient
  leave-one-out);
- ``knn``: standardised features, k nearest neighbours (k = 5, or fewer for tiny sets), distance-weighted.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fomo_nn.tasks import CASE_CLASS, task_kind, task_names

PROBE_MODELS = ("linear", "knn")
LOGISTIC_C = np.logspace(-4, 2, 13)
RIDGE_ALPHAS = np.logspace(-2, 5, 22)
MAX_FOLDS = 5


def probed_task_types() -> tuple[str, ...]:
    """The task types with probe metrics (fomo_nn.tasks): those with one class or value per case."""
    return task_names(lambda kind: bool(kind.probe_metrics))


def predicts_classes(task_type: str) -> bool:
    """Whether a probe of `task_type` predicts a class (else a value); ValueError for a task probes do not score."""
    if task_type not in probed_task_types():
        raise ValueError(f"probes score {probed_task_types()} tasks, not {task_type!r}")
    return task_kind(task_type).target == CASE_CLASS


def _check(task_type: str, model: str) -> bool:
    classes = predicts_classes(task_type)
    if model not in PROBE_MODELS:
        raise ValueError(f"probe model {model!r} is not one of {PROBE_MODELS}")
    return classes


def _inner_folds(classes: bool, targets: np.ndarray, groups, seed: int):
    """Folds that choose the penalty: stratified for classes, and grouped when a case gives several rows
    (several patches of one scan must not sit on both sides, or the penalty is chosen to memorise)."""
    if classes:
        minority = int(np.bincount(targets.astype(int)).min())
        count = max(2, min(MAX_FOLDS, minority))
        if groups is None:
            return StratifiedKFold(count, shuffle=True, random_state=seed)
        return list(StratifiedGroupKFold(count, shuffle=True, random_state=seed).split(targets, targets, groups))
    if groups is None:
        return None  # ridge: efficient leave-one-out
    count = max(2, min(MAX_FOLDS, len(np.unique(groups))))
    return list(GroupKFold(count).split(targets, targets, groups))


def make_estimator(task_type: str, model: str, targets: np.ndarray, seed: int = 0, groups=None):
    """An unfitted scikit-learn pipeline for `targets` (its size sets k and the inner folds)."""
    classes = _check(task_type, model)
    n = len(targets)
    if model == "knn":
        k = max(1, min(5, n - 1))
        knn = KNeighborsClassifier if classes else KNeighborsRegressor
        return make_pipeline(StandardScaler(), knn(n_neighbors=k, weights="distance"))
    folds = _inner_folds(classes, np.asarray(targets), groups, seed)
    if not classes:
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, cv=folds))
    return make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=LOGISTIC_C, cv=folds, scoring="neg_log_loss",
                                                                class_weight="balanced", max_iter=5000))


def fit_probe(task_type: str, model: str, features: np.ndarray, targets, seed: int = 0, groups=None):
    """Fit on (N, D) features; `groups` (N,) names the case of each row when a case gives several rows."""
    targets = np.asarray(targets, dtype=float)
    if predicts_classes(task_type):
        classes = np.unique(targets)
        if len(classes) < 2:
            raise ValueError(f"{task_type} probes need two classes in the training cases, found {classes.tolist()}")
        targets = targets.astype(int)
    estimator = make_estimator(task_type, model, targets, seed, None if groups is None else np.asarray(groups))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's announced default changes; ours are set
        return estimator.fit(features, targets)


def probe_scores(estimator, task_type: str, features: np.ndarray) -> np.ndarray:
    """Probability of class 1 (class targets) or the predicted value (value targets)."""
    if predicts_classes(task_type):
        return estimator.predict_proba(features)[:, list(estimator.classes_).index(1)]
    return estimator.predict(features).astype(float)


def cross_validated_scores(task_type: str, model: str, features: np.ndarray, targets, seed: int = 0,
                           folds: int = MAX_FOLDS) -> np.ndarray:
    """Out-of-fold scores for every training case (in-domain quality, e.g. the online probe)."""
    targets = np.asarray(targets, dtype=float)
    if predicts_classes(task_type):
        minority = int(np.bincount(targets.astype(int)).min())
        splitter = StratifiedKFold(max(2, min(folds, minority)), shuffle=True, random_state=seed)
        splits = splitter.split(features, targets.astype(int))
    else:
        splits = KFold(max(2, min(folds, len(targets))), shuffle=True, random_state=seed).split(features)
    scores = np.empty(len(targets))
    for train, test in splits:
        estimator = fit_probe(task_type, model, features[train], targets[train], seed)
        scores[test] = probe_scores(estimator, task_type, features[test])
    return scores
