"""Background loading of batches, indexed by global step.

Each step's batch comes from an RNG seeded by (seed, rank, step), so the stream is the same with
0, 1 or 16 workers, differs across DDP ranks, and a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def step_seed(seed: int, rank: int, step: int, stream: int = 0) -> list[int]:
    return [int(seed), int(rank), int(step), int(stream)]


class StepDataset(Dataset):
    def __init__(self, source, seed: int, rank: int, total_steps: int, stream: int = 0):
        self.source = source
        self.seed, self.rank, self.total_steps, self.stream = seed, rank, total_steps, stream

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> dict:
        entropy = step_seed(self.seed, self.rank, step, self.stream)
        rng = np.random.default_rng(entropy)
        # augmentation libraries draw from the global generators: pin them to this step too
        seed_global_generators(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        return self.source(rng)


def seed_global_generators(seed: int) -> None:
    """numpy's, Python's and torch's global generators, which augmentation libraries draw from."""
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def make_loader(source, seed: int, rank: int, first_step: int, last_step: int, num_workers: int,
                pin_memory: bool = False, stream: int = 0) -> DataLoader:
    """Batches for steps first_step..last_step-1, prepared by `num_workers` background processes."""
    dataset = StepDataset(source, seed, rank, last_step, stream)
    kwargs = {"prefetch_factor": 4, "persistent_workers": False} if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=None, sampler=range(first_step, last_step), num_workers=num_workers,
                      pin_memory=pin_memory, worker_init_fn=_limit_threads,
                      # its own generator: creating workers must not consume the trainer's global RNG
                      generator=torch.Generator().manual_seed(int(seed)), **kwargs)


def _limit_threads(_worker_id: int) -> None:
    torch.set_num_threads(1)
