"""What classification and regression finetuning share: a pooled-feature head started as a probe.

Linear probe, then finetune (LP-FT; Kumar et al., ICLR 2022): before the first step the head's
feature standardiser and Linear layer are set to the scikit-learn probe (fomo_nn.probing) fitted on
the frozen encoder's pooled features of unaugmented training patches, a pretrained encoder's or a
random one's alike. Finetuning then starts from a head that already fits, so the early gradients
refine the encoder instead of tearing its features apart to serve a random head, which is what
makes LP-FT keep pretrained features and generalise better out of distribution.

Method settings: ``head_init`` ``probe`` (default) or ``random`` (standardiser fitted, Linear layer
at its random init); ``head_fit_patches`` patches per training case (default 4);
``head_fit_augmented`` (default False): draw those patches through the training augmentation, so
the probe weighs features by how they survive it (site-like corruptions) rather than on clean scans.
"""
from __future__ import annotations

import sys
from abc import abstractmethod

import numpy as np
import torch

from fomo_nn.inference.case_prediction import evaluation_mode
from fomo_nn.networks.finetuning import DEFAULT_POOL
from fomo_nn.checkpoints.training_state import capture_rng_state, restore_rng_state
from fomo_nn.training.data.batch_sources import PatchSource, collate
from fomo_nn.training.data.loader import seed_global_generators
from fomo_nn.training.finetuning.base import FinetuningTrainer

HEAD_INITS = ("probe", "random")
HEAD_FIT_STREAM = 7


class PooledHeadTrainer(FinetuningTrainer):
    """Base of the classification and regression trainers (not registered itself)."""

    def default_method_settings(self) -> dict:
        return {**super().default_method_settings(), "pool": DEFAULT_POOL, "head_init": "probe",
                "head_fit_patches": 4, "head_fit_augmented": False}

    def probe_targets(self, targets: np.ndarray) -> np.ndarray:
        """What the probe predicts for these case targets (the Linear layer's own output space)."""
        return targets

    @abstractmethod
    def set_head_from_probe(self, estimator) -> None:
        """Copy a fitted scikit-learn probe model into self.network.head.linear (after its scaler)."""

    @torch.no_grad()
    def training_features(self) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """(N, D) pooled features of `head_fit_patches` patches per training case, their targets and the
        index of the case each patch came from."""
        pipeline, read_size = self.training_pipeline() if self.method["head_fit_augmented"] else (None, None)
        source = PatchSource(self.train_cases, read_size or self.plans.patch_size, 1, pipeline, read_seg=False)
        rng = np.random.default_rng([self.seed, HEAD_FIT_STREAM])
        per_case = max(1, int(self.method["head_fit_patches"]))
        state = capture_rng_state()  # augmentations draw from the global generators: seed, then restore them
        seed_global_generators(int(rng.integers(2 ** 31)))
        try:
            samples = [(source.sample(case, rng), float(case.target), index)
                       for index, case in enumerate(self.train_cases) for _ in range(per_case)]
        finally:
            restore_rng_state(state)
        features = []
        batch = max(1, int(self.plans.batch_size))
        with evaluation_mode(self.network):
            for start in range(0, len(samples), batch):
                images = collate([s[0] for s in samples[start:start + batch]])["image"].to(self.device)
                with self._autocast():
                    features.append(self.network.pooled_features(images).float().cpu())
        return torch.cat(features), np.array([s[1] for s in samples]), np.array([s[2] for s in samples])

    def initialize_weights(self) -> None:
        super().initialize_weights()
        from fomo_nn.probing.linear_probes import fit_probe

        mode = self.method["head_init"]
        if mode not in HEAD_INITS:
            raise ValueError(f"method setting head_init={mode!r}; use one of {HEAD_INITS}")
        features, targets, cases = self.training_features()
        head = self.network.head
        if mode == "random":
            head.standardizer.fit(features)
            return
        estimator = fit_probe(self.plans.task_type, "linear", features.double().numpy(), self.probe_targets(targets),
                              self.seed, groups=cases)
        scaler = estimator[0]
        head.standardizer.set_statistics(scaler.mean_, scaler.scale_)
        self.set_head_from_probe(estimator[-1])
        if self.dist.is_main:
            print(f"[fomo_nn] head initialised as the linear probe of the {'pretrained' if self.options.pretrained else 'random'}"
                  f" encoder's features ({features.shape[0]} patches of {len(self.train_cases)} training cases, "
                  f"{features.shape[1]} features)", file=sys.stderr)
