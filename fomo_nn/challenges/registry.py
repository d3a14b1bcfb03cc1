"""The challenge editions fomo_nn knows, and how a task is looked up: (edition, number) or a summary key.

FOMO25 is the default edition: every command without --edition reads FOMO25's table, as before.
Adding an edition: a file beside this one defining its Edition, and its line in EDITIONS.
"""
from __future__ import annotations

from fomo_nn.challenges.edition import ChallengeTask, Edition
from fomo_nn.challenges.fomo25 import FOMO25
from fomo_nn.challenges.fomo26 import FOMO26

EDITIONS: dict[str, Edition] = {e.name: e for e in (FOMO25, FOMO26)}
DEFAULT_EDITION = "fomo25"


def edition(name: str | None = None) -> Edition:
    name = DEFAULT_EDITION if name is None else str(name).lower()
    if name not in EDITIONS:
        raise ValueError(f"unknown challenge edition {name!r}; expected one of {', '.join(EDITIONS)}")
    return EDITIONS[name]


def challenge_task(edition_name: str | None, number: int) -> ChallengeTask:
    return edition(edition_name).task(int(number))


def all_tasks() -> list[ChallengeTask]:
    return [task for e in EDITIONS.values() for task in e.tasks.values()]


def task_by_key(key: str) -> ChallengeTask | None:
    """The challenge task a summary / leaderboard key names, or None (not a challenge task)."""
    return next((task for task in all_tasks() if task.key == key), None)


def default_task_for_type(task_type: str) -> ChallengeTask | None:
    """The default edition's task of a task type: what a summary scored by --task-type stands for."""
    return next((t for t in edition().tasks.values() if t.task_type == task_type), None)


def container_flags() -> tuple[str, ...]:
    """Every sequence argument any edition's container takes (--flair, --dwi_b1000, --dwi, ...), deduplicated."""
    return tuple(dict.fromkeys(t.flag(s) for t in all_tasks() if t.finetuned for s in t.sequences))
