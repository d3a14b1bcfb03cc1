"""The organisers' learning-rate sweep: 13 linear heads trained side by side, one chosen by validation AUROC.

Re-expressed from asparagus' `LinearProbeModule` (Sllambias/asparagus @ 338450b) as fomo-lp @ f915d5a runs it
(`lp_fomo.py`: Lightning Trainer, 20 epochs, batch 64, validation every 5 epochs, seed 42), so that the same
embeddings give the same chosen learning rate and the same test scores:
- heads: after ``seed_everything(seed)``, one ``nn.Linear(D, C)`` per learning rate in sweep order (its own
  init draws from the global generator first), then weight ~ N(0, 0.01), bias 0;
- order: the training DataLoader shuffles with its own ``torch.Generator`` seeded `seed`; each epoch's
  iterator draws its base seed from that generator, then the permutation, and (torch's RandomSampler,
  run to its end) a second, empty-sliced permutation for the remainder of ``num_samples % n``;
- step: the summed cross-entropy of all heads on the batch (each head gets its own gradient), SGD with
  momentum 0.9, no weight decay, one parameter group per head at its learning rate, cosine annealing to 0
  over all steps (``T_max`` = epochs x batches per epoch), stepped after every batch;
- selection: every `validate_every` epochs (and once before training) the heads' macro AUROC on the
  validation split (`selection_auroc`); the learning rate of the largest value at the last validation
  wins (the first in sweep order on a tie). The test uses that head's final weights, one subject at a time.
Everything runs on the CPU in float32; the global torch generator is left as it was.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fomo_nn.probing.fomo26.selection_auroc import macro_auroc

DEFAULT_LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)
HEAD_INIT_STD = 0.01
MOMENTUM = 0.9


@dataclass(frozen=True)
class Sweep:
    """The protocol's training settings (fomo-lp's defaults)."""

    learning_rates: tuple[float, ...] = DEFAULT_LEARNING_RATES
    epochs: int = 20
    batch_size: int = 64
    seed: int = 42
    validate_every: int = 5  # Lightning's check_val_every_n_epoch in lp_fomo.py


@dataclass
class FittedProbe:
    heads: list[nn.Linear]
    learning_rates: tuple[float, ...]
    validation_auroc: dict[float, float]  # per learning rate, at the deciding validation
    best_lr: float
    history: list[dict] = field(default_factory=list)  # {"epoch", "auroc": {lr: value}} per validation

    @property
    def best_head(self) -> nn.Linear:
        return self.heads[self.learning_rates.index(self.best_lr)]

    @torch.no_grad()
    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, C) softmax scores of the chosen head, one subject per forward pass as the organisers' test loop."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        rows = [torch.softmax(self.best_head(x[i:i + 1]).float(), dim=1)[0] for i in range(x.shape[0])]
        return torch.stack(rows).numpy() if rows else np.zeros((0, self.best_head.out_features), np.float32)


def initial_heads(dim: int, classes: int, learning_rates, seed: int) -> list[nn.Linear]:
    """The heads as `LinearProbeModule.make_head` creates them right after ``seed_everything(seed)``."""
    heads = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for _ in learning_rates:
            head = nn.Linear(dim, classes)
            nn.init.normal_(head.weight, mean=0.0, std=HEAD_INIT_STD)
            nn.init.zeros_(head.bias)
            heads.append(head)
    return heads


def epoch_order(size: int, generator: torch.Generator) -> list[int]:
    """One epoch of a shuffling DataLoader with `generator`: the iterator's base seed, the permutation, and the
    remainder permutation RandomSampler draws (and slices to nothing) when the epoch runs out."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(size, generator=generator).tolist()
    torch.randperm(size, generator=generator)
    return order


@torch.no_grad()
def validation_auroc(heads: list[nn.Linear], learning_rates, features: torch.Tensor, labels: torch.Tensor,
                     classes: int, batch_size: int) -> dict[float, float]:
    starts = range(0, features.shape[0], batch_size)
    return {lr: macro_auroc([(head(features[s:s + batch_size]), labels[s:s + batch_size]) for s in starts], classes)
            for lr, head in zip(learning_rates, heads)}


def fit_sweep(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int,
              sweep: Sweep = Sweep()) -> FittedProbe:
    """Train every head of the sweep on (N, D) float32 features and int labels; choose one on validation."""
    x = torch.as_tensor(np.asarray(train_x, dtype=np.float32))
    y = torch.as_tensor(np.asarray(train_y, dtype=np.int64))
    vx = torch.as_tensor(np.asarray(val_x, dtype=np.float32))
    vy = torch.as_tensor(np.asarray(val_y, dtype=np.int64))
    if x.shape[0] == 0 or vx.shape[0] == 0:
        raise ValueError(f"the probe needs training and validation subjects (got {x.shape[0]} and {vx.shape[0]})")
    rates = tuple(float(lr) for lr in sweep.learning_rates)
    heads = initial_heads(int(x.shape[1]), classes, rates, sweep.seed)
    optimizer = torch.optim.SGD([{"params": head.parameters(), "lr": lr} for head, lr in zip(heads, rates)],
                                momentum=MOMENTUM, weight_decay=0)
    steps = sweep.epochs * math.ceil(x.shape[0] / sweep.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    auroc = validation_auroc(heads, rates, vx, vy, classes, sweep.batch_size)
    history = [{"epoch": 0, "auroc": auroc}]
    generator = torch.Generator()
    generator.manual_seed(int(sweep.seed))
    for epoch in range(1, sweep.epochs + 1):
        order = epoch_order(int(x.shape[0]), generator)
        for start in range(0, len(order), sweep.batch_size):
            chosen = order[start:start + sweep.batch_size]
            batch, target = x[chosen], y[chosen]
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for head in heads:
                total = total + loss_fn(head(batch), target)
            total.backward()
            optimizer.step()
            scheduler.step()
        if epoch % sweep.validate_every == 0:
            auroc = validation_auroc(heads, rates, vx, vy, classes, sweep.batch_size)
            history.append({"epoch": epoch, "auroc": auroc})
    best = max(auroc.items(), key=lambda item: item[1])[0]
    return FittedProbe(heads, rates, auroc, best, history)
