"""The online probe: how good the encoder being pretrained is, every few epochs, on labelled datasets.

Each probe dataset is a preprocessed classification or regression dataset planned like the
pretraining corpus (same spacing and normalisation); its training cases are probed by
cross-validation in domain only: the test sites stay unseen, so the curve can be watched (and used to
stop early) without peeking at them. The first measurement is taken before the first step: that is
the random encoder the curve must rise above. The methods of FOMO25 saturated early; this shows when.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from fomo_nn.inference.case_prediction import evaluation_mode
from fomo_nn.plans import load_plans
from fomo_nn.plans.records import NetworkPlan
from fomo_nn.probing.encoders import FrozenEncoder
from fomo_nn.probing.probe import LabelledCases, metrics_of, preprocessed_cases
from fomo_nn.probing.features import pooled_features
from fomo_nn.probing.linear_probes import cross_validated_scores, probed_task_types

PROBE_PREFIX = "probe"


@dataclass
class ProbeDataset:
    name: str
    task_type: str
    cases: LabelledCases
    volumes: list[np.ndarray]

    @classmethod
    def load(cls, preprocessed_dataset: str | Path) -> "ProbeDataset":
        folder = Path(preprocessed_dataset)
        plans = load_plans(folder)
        if plans.task_type not in probed_task_types():
            raise ValueError(f"online probe dataset {folder.name} is {plans.task_type}; use a "
                             f"{' or '.join(probed_task_types())} dataset")
        cases = preprocessed_cases(folder / plans.configuration, plans)
        return cls(folder.name, plans.task_type, cases, [cases.load(i) for i in range(len(cases))])


class OnlineProbe:
    """Linear (and kNN) probes of a live encoder; returns flat log entries probe_<dataset>_<metric>."""

    def __init__(self, datasets: list[ProbeDataset], models=("linear",), seed: int = 0, mode: str = "per_sequence"):
        self.datasets = datasets
        self.models = tuple(models)
        self.seed = seed
        self.mode = mode

    def measure(self, encoder: nn.Module, network: NetworkPlan, device="cpu") -> dict[str, float]:
        frozen = FrozenEncoder(encoder, network, "online")
        record = {}
        with evaluation_mode(encoder):
            for dataset in self.datasets:
                mode = None if dataset.volumes[0].shape[0] == 1 else self.mode
                features = np.stack([pooled_features(frozen, v, mode, device=device) for v in dataset.volumes])
                for model in self.models:
                    scores = cross_validated_scores(dataset.task_type, model, features, dataset.cases.targets, self.seed)
                    suffix = "" if model == "linear" else f"_{model}"
                    for metric, value in metrics_of(dataset.task_type, dataset.cases.targets, scores).items():
                        if metric != "bias":
                            record[f"{PROBE_PREFIX}_{dataset.name}_{metric}{suffix}"] = float(value)
        return record
