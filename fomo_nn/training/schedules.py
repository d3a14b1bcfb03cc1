"""Learning-rate schedules as multipliers of the base LR, per optimizer step."""
from __future__ import annotations

import math


def lr_multiplier(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "warmup_cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return (1.0 - progress) ** 0.9
    raise ValueError(f"unknown schedule {schedule!r}: use warmup_cosine, poly or constant")
