"""Which case each DDP rank reads at each step: shuffled passes over the cases, dealt out in turn.

The cases are read in passes: pass e goes through all N cases in the order of a permutation seeded
by (seed, e), and the passes follow each other in one endless stream. The stream is dealt to the W
ranks like cards: entry g goes to rank g mod W, so rank r's k-th sample is entry k x W + r, and
step s of a per-rank batch B reads the stream's entries s x B x W .. (s + 1) x B x W - 1. Hence:

- within a pass every case is read once, by one rank: the ranks read disjoint cases and together
  cover the corpus, every pass;
- every rank reads B cases per step, so ranks stay in the same pass. When W does not divide N, a
  pass gives some ranks one case more than others (ceil vs floor of N / W); which ranks rotates
  from pass to pass. Nothing is dropped and nothing repeated within a pass; a step that straddles
  two passes may hold a case twice (once at the end of one pass, once early in the next);
- the case of any (rank, sample) is computed directly, without replaying earlier steps: the same
  with any number of loader workers, and a resumed run reads exactly what an uninterrupted one
  would have read;
- the order of the stream does not depend on how it is dealt: W ranks with batch B read, step by
  step, the cases one process with batch W x B reads.

A pass is not a trainer epoch (that is `iterations_per_epoch` steps, whatever the corpus size).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

_ORDER_TAG = 0x0CA5E  # keeps these permutations' seeds apart from the per-step sampling seeds


def _key(seed) -> tuple[int, ...]:
    """An int seed or a sequence of ints (e.g. seed, stream, class) as a hashable tuple."""
    return tuple(int(s) for s in seed) if isinstance(seed, (tuple, list)) else (int(seed),)


def pass_order(num_cases: int, seed, epoch: int) -> np.ndarray:
    """The order of the case indices 0..num_cases-1 in pass `epoch` (read-only)."""
    _check(num_cases)
    return _permutation(int(num_cases), _key(seed), int(epoch))


@lru_cache(maxsize=16)
def _permutation(num_cases: int, key: tuple[int, ...], epoch: int) -> np.ndarray:
    order = np.random.default_rng([_ORDER_TAG, *key, epoch]).permutation(num_cases)
    order.flags.writeable = False
    return order


def _check(num_cases: int, world_size: int = 1, rank: int = 0) -> None:
    if num_cases < 1:
        raise ValueError("no cases to sample from")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of world size {world_size}: need 0 <= rank < world size")


def rank_case_order(num_cases: int, world_size: int, rank: int, seed, epoch: int) -> np.ndarray:
    """The case indices rank `rank` reads in pass `epoch`, in reading order (its slice of the pass)."""
    _check(num_cases, world_size, rank)
    first = (rank - epoch * num_cases) % world_size  # the pass's first entry dealt to this rank
    return pass_order(num_cases, seed, epoch)[first::world_size]


def rank_sample_cases(num_cases: int, world_size: int, rank: int, seed, samples) -> np.ndarray:
    """The case indices of this rank's samples number `samples` (0, 1, 2, ... in reading order)."""
    _check(num_cases, world_size, rank)
    entries = np.asarray(samples, dtype=np.int64) * world_size + rank
    epochs, positions = np.divmod(entries, num_cases)
    cases = np.empty_like(entries)
    for epoch in np.unique(epochs):
        chosen = epochs == epoch
        cases[chosen] = pass_order(num_cases, seed, int(epoch))[positions[chosen]]
    return cases
