"""What classification and regression finetuning share: a pooled-feature head started as a probe.

Linear probe, then finetune (LP-FT; Kumar et al., ICLR 2022): before the first step the head's
feature standardiser and Linear layer are set to the scikit-learn probe (fomo_nn.probing) fitted on
the frozen encoder's pooled features of unaugmented training patches, a pretrained encoder's or a
random one's alike. Finetuning then starts from a head that already fits, so the early gradients
refine the encoder instead of tearing its features apart to serve a random head, which is what
makes LP-FT keep pretrained features and generalise better out of distribution.

Method settings: ``head_init`` ``probe`` (default) or ``random`` (standardiser fitted, Linear layer
at its random init); ``head_fit_patches`` unaugmented patches per training case (default 4).
"""
from __future__ import annotations

import sys
from abc import abstractmethod

import numpy as np
import torch

from fomo_nn.inference.case_prediction import evaluation_mode
from fomo_nn.training.data.batch_sources import PatchSource, collate
from fomo_nn.training.finetuning.base import FinetuningTrainer

HEAD_INITS = ("probe", "random")
HEAD_FIT_STREAM = 7


class PooledHeadTrainer(FinetuningTrainer):
    """Base of the classification and regression trainers (not registered itself)."""

    def default_method_settings(self) -> dict:
        return {**super().default_method_settings(), "pool": "all_stages", "head_init": "probe",
                "head_fit_patches": 4}

    def probe_targets(self, targets: np.ndarray) -> np.ndarray:
        """What the probe predicts for these case targets (the Linear layer's own output space)."""
        return targets

    @abstractmethod
    def set_head_from_probe(self, estimator) -> None:
        """Copy a fitted scikit-learn probe model into self.network.head.linear (after its scaler)."""

    @torch.no_grad()
    def training_features(self) -> tuple[torch.Tensor, np.ndarray]:
        """(N, D) pooled features of `head_fit_patches` unaugmented patches per training case, and targets."""
        source = PatchSource(self.train_cases, self.plans.patch_size, 1, None)
        rng = np.random.default_rng([self.seed, HEAD_FIT_STREAM])
        per_case = max(1, int(self.method["head_fit_patches"]))
        samples = [(source.sample(case, rng), float(case.target)) for case in self.train_cases for _ in range(per_case)]
        features = []
        batch = max(1, int(self.plans.batch_size))
        with evaluation_mode(self.network):
            for start in range(0, len(samples), batch):
                images = collate([s for s, _ in samples[start:start + batch]])["image"].to(self.device)
                with self._autocast():
                    features.append(self.network.pooled_features(images).float().cpu())
        return torch.cat(features), np.array([t for _, t in samples])

    def initialize_weights(self) -> None:
        super().initialize_weights()
        from fomo_nn.probing.linear_probes import fit_probe

        mode = self.method["head_init"]
        if mode not in HEAD_INITS:
            raise ValueError(f"method setting head_init={mode!r}; use one of {HEAD_INITS}")
        features, targets = self.training_features()
        head = self.network.head
        if mode == "random":
            head.standardizer.fit(features)
            return
        estimator = fit_probe(self.plans.task_type, "linear", features.double().numpy(), self.probe_targets(targets),
                              self.seed)
        scaler = estimator[0]
        head.standardizer.set_statistics(scaler.mean_, scaler.scale_)
        self.set_head_from_probe(estimator[-1])
        if self.dist.is_main:
            print(f"[fomo_nn] head initialised as the linear probe of the {'pretrained' if self.options.pretrained else 'random'}"
                  f" encoder's features ({features.shape[0]} patches of {len(self.train_cases)} training cases, "
                  f"{features.shape[1]} features)", file=sys.stderr)
