"""A pretraining method's batch within the plan's memory budget.

Plans are written before the method is known: the planner sizes the batch for one sample through the plan's
U-Net (planning/memory.py). A method's step costs more or less than that per sample: two views (contrastive,
hybrid), an extra decoder pass (the VAE's cross-reconstruction), a teacher and local crops (DINO). Each
trainer states that ratio as its `memory_multiplier` (measured on CPU: benchmarks/RESULTS.md, "pretraining
memory per method"); the trainer divides the plan's batch by it, so the method fits the budget the plan was
sized for, and says so. An explicit --batch-size is the user's and is kept.
"""
from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)


def method_batch_size(planned: int, multiplier: float, minimum: int = 1, memory_batch: int | None = None) -> int:
    """The largest batch whose cost (batch x multiplier samples of the plan) stays within the memory budget;
    never below `minimum` (what the method's loss needs) and never above the plan's batch.

    `memory_batch` is the batch the plan's budget alone allows (Plans.memory_batch_size): a plan whose batch was
    capped by the dataset's size or --max-batch-size has headroom, and the method keeps the plan's batch while it
    fits. Without it (plans from before the field) the plan's batch is taken as the budget, which can only err
    towards a smaller batch.
    """
    if multiplier <= 0:
        raise ValueError(f"memory multiplier must be > 0, got {multiplier}")
    budget = planned if memory_batch is None else max(int(memory_batch), 1)
    fitted = math.floor(budget / multiplier + 1e-9)
    return max(int(minimum), min(int(planned), fitted))


def fit_batch(planned: int, multiplier: float, minimum: int, method: str, explicit: bool,
              memory_batch: int | None = None) -> int:
    """The batch the method trains with, logged when it differs from the plan's (or exceeds its budget)."""
    if explicit:
        return planned
    batch = method_batch_size(planned, multiplier, minimum, memory_batch)
    budget = planned if memory_batch is None else memory_batch
    if batch < planned:
        logger.warning("%s: batch size %d instead of the plan's %d: one sample of this method takes %.1fx the memory "
                       "of one the plan sized its batch for, and the budget allows %d of those%s (set --batch-size "
                       "to override)", method, batch, planned, multiplier, budget,
                       "" if memory_batch is not None else " (plans without memory_batch_size: re-plan for an exact "
                                                           "fit)")
    elif batch * multiplier > budget + 1e-9:
        logger.warning("%s: batch size %d (the method's minimum) needs %.1fx the memory budget of the plan",
                       method, batch, batch * multiplier / budget)
    return batch
