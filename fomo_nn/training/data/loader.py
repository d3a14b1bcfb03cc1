"""Background loading of batches, indexed by global step.

A source turns one `StepDraw` into a batch: which cases the step reads comes from the dealt case
stream (fomo_nn.training.data.case_order: ranks read disjoint cases, every case once per pass),
and all other randomness (patch location, augmentation) from an RNG seeded by (seed, rank, step).
So the stream is the same with 0, 1 or 16 workers, differs across DDP ranks, and a resumed run
sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fomo_nn.training.data.case_order import rank_sample_cases


def step_seed(seed: int, rank: int, step: int, stream: int = 0) -> list[int]:
    return [int(seed), int(rank), int(step), int(stream)]


@dataclass(frozen=True)
class StepDraw:
    """What one rank may draw from at one step: its RNG, and its place in the dealt case stream."""

    seed: int
    step: int
    rank: int = 0
    world_size: int = 1
    stream: int = 0  # training 0, validation 1, ...: independent case orders and RNGs

    @cached_property
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(step_seed(self.seed, self.rank, self.step, self.stream))

    def samples(self, batch_size: int) -> np.ndarray:
        """This rank's sample numbers of this step (the rank's k-th sample ever is number k)."""
        return self.step * batch_size + np.arange(batch_size)

    def cases(self, num_cases: int, samples, *salt: int) -> np.ndarray:
        """Case indices (of `num_cases`) of these sample numbers; `salt` keeps further streams apart
        (e.g. one per class)."""
        return rank_sample_cases(num_cases, self.world_size, self.rank, (self.seed, self.stream, *salt), samples)


class StepDataset(Dataset):
    def __init__(self, source, seed: int, rank: int, total_steps: int, stream: int = 0, world_size: int = 1):
        self.source = source
        self.seed, self.rank, self.total_steps, self.stream = seed, rank, total_steps, stream
        self.world_size = world_size

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> dict:
        draw = StepDraw(self.seed, step, self.rank, self.world_size, self.stream)
        # augmentation libraries draw from the global generators: pin them to this step too
        entropy = step_seed(self.seed, self.rank, step, self.stream)
        seed_global_generators(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        return self.source(draw)


def seed_global_generators(seed: int) -> None:
    """numpy's, Python's and torch's global generators, which augmentation libraries draw from."""
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def make_loader(source, seed: int, rank: int, first_step: int, last_step: int, num_workers: int,
                pin_memory: bool = False, stream: int = 0, world_size: int = 1) -> DataLoader:
    """Batches for steps first_step..last_step-1 of rank `rank` of `world_size`, prepared by
    `num_workers` background processes."""
    dataset = StepDataset(source, seed, rank, last_step, stream, world_size)
    kwargs = {"prefetch_factor": 4, "persistent_workers": False} if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=None, sampler=range(first_step, last_step), num_workers=num_workers,
                      pin_memory=pin_memory, worker_init_fn=_limit_threads,
                      # its own generator: creating workers must not consume the trainer's global RNG
                      generator=torch.Generator().manual_seed(int(seed)), **kwargs)


def _limit_threads(_worker_id: int) -> None:
    torch.set_num_threads(1)
