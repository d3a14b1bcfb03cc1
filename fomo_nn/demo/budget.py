"""Compute budgets of the demo: how big the data, networks and schedules are.

Finetuning recipes are chosen per side and task family (TrainingPlan fields: learning rate,
optimizer, schedule): the from-scratch baseline has its own, chosen by a sweep, and pretrained
encoders theirs (benchmarks/RESULTS.md holds the measurements); both get the same steps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from fomo_nn.tasks import task_names


@dataclass(frozen=True)
class Budget:
    name: str
    sample_size: str | None  # generator preset; None = real data paths
    family_methods: dict  # task family -> the pretraining method its finetuning starts from by default
    planner_args: tuple[str, ...]  # passed to fomo_nn_plan_and_preprocess for the pretraining corpus
    pretrain_epochs: int
    pretrain_iterations: int
    pretrain_lr: float | None  # None: as planned
    probe_every: int  # epochs between online-probe measurements during pretraining (0: none)
    finetune_epochs: dict  # per task family
    finetune_iterations: int
    scratch_recipe: dict  # task family -> TrainingPlan fields of the from-scratch baseline ({}: as planned)
    pretrained_recipe: dict  # task family -> TrainingPlan fields for finetuning a pretrained encoder
    fusion: str  # how task datasets with several sequences meet the single-channel encoder
    scratch_fusion: str  # the from-scratch baseline's input handling (its own best)
    batch_size: int | None
    num_workers: int
    bootstrap: int
    tta: bool
    random_probe_seeds: int  # random encoders the probes are read against

    def to_json(self) -> dict:
        return asdict(self)


def _each(**recipe) -> dict:
    """The same recipe for every supervised task family."""
    return {family: dict(recipe) for family in task_names(lambda kind: kind.supervised)}


BUDGETS = {
    # minutes on 2 CPU cores: for the end-to-end test
    "tiny": Budget("tiny", "tiny", {"classification": "mae", "segmentation": "mae", "regression": "mae"}, ("--base-features", "8", "--max-features", "32", "--max-patch", "32",
                                              "--max-batch-size", "2"),
                   pretrain_epochs=2, pretrain_iterations=4, pretrain_lr=2e-3, probe_every=1,
                   finetune_epochs={"classification": 2, "segmentation": 2, "regression": 2},
                   finetune_iterations=4, scratch_recipe=_each(learning_rate=1e-3),
                   pretrained_recipe=_each(learning_rate=1e-3), fusion="shared_encoder",
                   scratch_fusion="stem_expansion", batch_size=2, num_workers=0, bootstrap=200, tta=False,
                   random_probe_seeds=2),
    # the README's first command: at most 15 minutes on a 2-core CPU
    "small": Budget("small", "small",
                    {"classification": "contrastive", "segmentation": "mae", "regression": "contrastive"},
                    ("--base-features", "8", "--max-features", "64", "--max-patch", "48", "--max-batch-size", "4"),
                    pretrain_epochs=9, pretrain_iterations=30, pretrain_lr=2e-3, probe_every=3,
                    finetune_epochs={"classification": 12, "segmentation": 10, "regression": 12},
                    finetune_iterations=16,
                    scratch_recipe={"classification": {"learning_rate": 3e-3}, "segmentation": {"learning_rate": 3e-3},
                                    "regression": {"learning_rate": 1e-3}},
                    pretrained_recipe={"classification": {"learning_rate": 1e-3}, "segmentation": {"learning_rate": 3e-3},
                                       "regression": {"learning_rate": 1e-3}}, fusion="shared_encoder",
                    scratch_fusion="stem_expansion", batch_size=None, num_workers=2, bootstrap=2000, tta=False,
                    random_probe_seeds=3),
    # what one would run on GPUs with the real FOMO data
    "full": Budget("full", None, {"classification": "hybrid", "segmentation": "mae", "regression": "hybrid"}, (),
                   pretrain_epochs=100, pretrain_iterations=250, pretrain_lr=None, probe_every=10,
                   finetune_epochs={"classification": 100, "segmentation": 200, "regression": 100},
                   finetune_iterations=250, scratch_recipe=_each(), pretrained_recipe=_each(), fusion="shared_encoder",
                   scratch_fusion="stem_expansion", batch_size=None, num_workers=12, bootstrap=10000, tta=True,
                   random_probe_seeds=3),
}
