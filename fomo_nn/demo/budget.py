"""Compute budgets of the demo: how big the data, networks and schedules are."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Budget:
    name: str
    sample_size: str | None  # generator preset; None = real data paths
    methods: tuple[str, ...]  # default pretraining methods
    planner_args: tuple[str, ...]  # passed to fomo_nn_plan_and_preprocess for the pretraining corpus
    pretrain_epochs: int
    pretrain_iterations: int
    pretrain_lr: float | None  # None: as planned
    finetune_epochs: dict  # per task family
    finetune_iterations: int
    finetune_lr: float | None
    batch_size: int | None
    num_workers: int
    bootstrap: int
    tta: bool

    def to_json(self) -> dict:
        return asdict(self)


BUDGETS = {
    # minutes on 2 CPU cores: for the end-to-end test
    "tiny": Budget("tiny", "tiny", ("mae",), ("--base-features", "8", "--max-features", "32", "--max-patch", "32",
                                              "--max-batch-size", "2"),
                   pretrain_epochs=2, pretrain_iterations=4, pretrain_lr=2e-3,
                   finetune_epochs={"classification": 2, "segmentation": 2, "regression": 2},
                   finetune_iterations=4, finetune_lr=1e-3, batch_size=2, num_workers=0, bootstrap=200, tta=False),
    # the README's first command: about 10 minutes on a 2-core CPU (9 min 12 s measured)
    "small": Budget("small", "small", ("mae", "hybrid"),
                    ("--base-features", "8", "--max-features", "64", "--max-patch", "48", "--max-batch-size", "4"),
                    pretrain_epochs=10, pretrain_iterations=20, pretrain_lr=2e-3,
                    finetune_epochs={"classification": 12, "segmentation": 10, "regression": 12},
                    finetune_iterations=16, finetune_lr=1e-3, batch_size=None, num_workers=2, bootstrap=2000, tta=False),
    # what one would run on GPUs with the real FOMO data
    "full": Budget("full", None, ("mae", "contrastive", "hybrid", "vae", "dino"), (),
                   pretrain_epochs=100, pretrain_iterations=250, pretrain_lr=None,
                   finetune_epochs={"classification": 100, "segmentation": 200, "regression": 100},
                   finetune_iterations=250, finetune_lr=None, batch_size=None, num_workers=12, bootstrap=10000, tta=True),
}
