"""`--shard I/N`: a deterministic split of a dataset's cases over N independent jobs.

Cases are sorted by id and case k goes to shard k mod N, so every case is in exactly one shard,
shards are balanced within one case, and the split never depends on which files are finished.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N (I is 0-based)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """'3/10' -> Shard(3, 10)."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/N with 0 <= I < N, e.g. 0/8, got {text!r}") from None
    return Shard(index, count)


def select_shard(case_ids, shard: Shard | None) -> list[str]:
    """The sorted ids of `shard` (all ids when shard is None)."""
    ordered = sorted(case_ids)
    if shard is None:
        return ordered
    return ordered[shard.index::shard.count]
