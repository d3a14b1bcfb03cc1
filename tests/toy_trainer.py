"""A minimal concrete trainer for testing the shared loop (resume, DDP, clipping) in isolation."""
from __future__ import annotations

import sys

import torch
from torch import nn

from fomo_nn.training.base_trainer import BaseTrainer, TrainerOptions


class ToyRegressionTrainer(BaseTrainer):
    name = "toy_regression"
    description = "test-only: conv + pooled linear regression"
    task_types = ("regression",)
    crash_at_step: int | None = None

    def build_network(self) -> nn.Module:
        return nn.Sequential(nn.Conv3d(1, 4, 3, stride=4), nn.Dropout(0.3), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                             nn.Linear(4, 1))

    def compute_loss(self, batch, generator):
        prediction = self.model(batch["image"])[:, 0]
        return ((prediction - (batch["label"] - 55) / 20) ** 2).mean(), {}

    def split_cases(self, cases):
        return cases[:8], cases[8:]

    def after_optimizer_step(self, step: int) -> None:
        if step == self.crash_at_step:
            raise KeyboardInterrupt(f"simulated kill at step {step}")


def main() -> None:
    """Entry for torchrun: python -m torch.distributed.run ... toy_trainer.py PREPROCESSED OUT"""
    from fomo_nn.plans import load_plans

    preprocessed, out = sys.argv[1], sys.argv[2]
    trainer = ToyRegressionTrainer(load_plans(preprocessed), preprocessed, out, "0",
                                   TrainerOptions(epochs=2, num_workers=0))
    trainer.run()
    weights = torch.cat([p.detach().flatten() for p in trainer.network.parameters()])
    torch.save(weights, f"{out}/weights_rank{trainer.dist.rank}.pt")


if __name__ == "__main__":
    main()
