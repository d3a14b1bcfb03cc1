"""Which sequence serves a channel: the one resolver for `fomo_nn_predict -i` and challenge mode.

Conversion merges SWI and T2* into the channel `swi_or_t2s`, taking SWI where a session has both
(dataset.json `channel_choices` records which). At prediction time the model's channels decide: a
merged channel takes SWI, else T2* (the rule its training data were converted with); a channel
named `swi` or `t2s` (a model trained on one of them) takes exactly that sequence. A channel's
candidates are every edition's files for it, in edition order: channel `t1` reads FOMO25's `t1` and
FOMO26's `t1w`, channel `t2` FOMO25's `t2` and FOMO26's `t2w`, so one model reads either layout.
Conversion reads only its own task's files (ChannelRule.pick).
"""
from __future__ import annotations

from collections.abc import Container

from fomo_nn.challenges.registry import all_tasks


def channel_candidates(channel_name: str) -> tuple[str, ...]:
    """File stems that can serve a channel: every edition's sequences for it, else the name itself."""
    lower = channel_name.lower()
    found = [s for task in all_tasks() for channel in task.channels if channel.name == lower for s in channel.sequences]
    return tuple(dict.fromkeys(found)) or (lower,)


def pick_sequence(channel_name: str, available: Container[str]) -> str | None:
    """The first candidate of `channel_name` among the `available` stems; None when none is there."""
    return next((s for s in channel_candidates(channel_name) if s in available), None)


def is_merged(channel_name: str) -> bool:
    """A channel that merges sequences within one task (`swi_or_t2s`), not one that editions name differently."""
    lower = channel_name.lower()
    return any(len(c.sequences) > 1 for task in all_tasks() for c in task.channels if c.name == lower)
