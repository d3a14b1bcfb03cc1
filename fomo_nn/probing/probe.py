"""Probe encoders on a labelled dataset: in-domain cross-validation on the training cases and, when the
dataset has a test split, a fit on all training cases scored on the test cases (held-out sites),
overall and per group (site). Each case is read once; every encoder and feature mode sees it then.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from fomo_nn.evaluation.metrics import auroc, mean_absolute_error, pearson_r
from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans import Plans
from fomo_nn.probing.encoders import FrozenEncoder
from fomo_nn.probing.features import choose_mode, pooled_features
from fomo_nn.probing.linear_probes import cross_validated_scores, fit_probe, predicts_classes, probe_scores


@dataclass
class LabelledCases:
    """Cases with targets whose volumes are produced on demand (a memory map or a preprocessing run)."""

    case_ids: list[str]
    targets: np.ndarray
    load: Callable[[int], np.ndarray]  # index -> (C, X, Y, Z) on the plans' grid
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.case_ids)


def preprocessed_cases(folder: str | Path, plans: Plans) -> LabelledCases:
    """The training cases of a preprocessed dataset (targets from their properties), written for `plans`."""
    from fomo_nn.preprocessing.case_store import list_cases

    cases = list_cases(folder, plans)
    missing = [c.case_id for c in cases if c.target is None]
    if missing:
        raise BadInputError(Path(folder) / f"{missing[0]}.json", "case has no target: probes need labelled cases")
    return LabelledCases([c.case_id for c in cases], np.array([float(c.target) for c in cases]),
                         lambda i: np.asarray(cases[i].data()))


def raw_test_cases(raw_dataset: str | Path, plans: Plans, split: str = "Ts") -> LabelledCases | None:
    """The labelled `images<split>` cases of a raw dataset, preprocessed as the plans say (None: none there)."""
    from fomo_nn.datasets.cases import list_supervised_cases
    from fomo_nn.inference.case_loading import read_case
    from fomo_nn.preprocessing.case_preprocessing import preprocess_loaded

    raw_dataset = Path(raw_dataset)
    if not (raw_dataset / f"images{split}").is_dir() or not (raw_dataset / f"labels{split}").is_dir():
        return None
    cases, problems = list_supervised_cases(raw_dataset, split=split, strict=False)
    for problem in problems:
        warnings.warn(f"probe: test case left out: {problem}")
    cases = [c for c in cases if c.target is not None]

    def load(index: int) -> np.ndarray:
        return preprocess_loaded(read_case(cases[index].image_files).loaded, plans)[0]

    return LabelledCases([c.case_id for c in cases], np.array([c.target for c in cases], dtype=float), load)


def read_groups(path: str | Path) -> dict[str, str]:
    """{case id: group} from a CSV with columns case_id,group (e.g. the acquisition site)."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise BadInputError(path, f"cannot read ({error.strerror})") from None
    if not rows or not {"case_id", "group"} <= set(rows[0]):
        raise BadInputError(path, "expected a CSV with the columns case_id,group")
    return {row["case_id"].strip(): row["group"].strip() for row in rows}


def feature_modes_for(frozen: FrozenEncoder, channels: int, modes: Iterable[str]) -> list[str]:
    """The requested modes, or the one mode that applies ('native') to a multi-channel stem or 1-channel data."""
    if frozen.in_channels > 1 or channels == 1:
        return [choose_mode(frozen, channels, None)]
    return [choose_mode(frozen, channels, mode) for mode in modes]


def extract_all(encoders: dict[str, FrozenEncoder], modes: dict[str, list[str]], pooling: str, cases: LabelledCases,
                device="cpu", progress: bool = False, description: str = "features") -> dict[tuple[str, str], np.ndarray]:
    """{(encoder name, mode): (N, D)} for the modes of each encoder, reading every case once."""
    rows: dict[tuple[str, str], list[np.ndarray]] = {(name, mode): [] for name in encoders for mode in modes[name]}
    for frozen in encoders.values():
        frozen.encoder.to(device)
    for index in tqdm(range(len(cases)), desc=description, unit="case", leave=False, disable=not progress):
        volume = cases.load(index)
        for name, mode in rows:
            rows[(name, mode)].append(pooled_features(encoders[name], volume, mode, pooling, device))
    return {key: np.stack(value) for key, value in rows.items()}


def metrics_of(task_type: str, targets: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task kind's probe metrics (fomo_nn.tasks probe_metrics): AUROC of classes; MAE, r and bias of values."""
    if predicts_classes(task_type):
        labels = np.asarray(targets).astype(int)
        return {"auroc": auroc(labels, scores)} if len(np.unique(labels)) == 2 else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"mae": mean_absolute_error(targets, scores), "pearson_r": pearson_r(targets, scores),
                "bias": float(np.mean(np.asarray(scores) - np.asarray(targets)))}


def probe_rows(task_type: str, train: LabelledCases, train_features: np.ndarray, test: LabelledCases | None,
               test_features: np.ndarray | None, model: str, seed: int = 0) -> list[dict]:
    """Rows of {split, cases, metric values}: in-domain CV, then test overall and per test group."""
    rows = [{"split": "cv", "cases": len(train),
             **metrics_of(task_type, train.targets,
                          cross_validated_scores(task_type, model, train_features, train.targets, seed))}]
    if test is None or test_features is None or not len(test):
        return rows
    scores = probe_scores(fit_probe(task_type, model, train_features, train.targets, seed), task_type, test_features)
    rows.append({"split": "test", "cases": len(test), **metrics_of(task_type, test.targets, scores)})
    for group in sorted(set(test.groups)):
        chosen = np.array([g == group for g in test.groups])
        rows.append({"split": f"test:{group}", "cases": int(chosen.sum()),
                     **metrics_of(task_type, test.targets[chosen], scores[chosen])})
    return rows
