"""Resolve dataset, plans and trainer, then run one training job (what fomo_nn_train does)."""
from __future__ import annotations

from pathlib import Path

from fomo_nn import paths
from fomo_nn.inference.model_folder import ModelFolderName
from fomo_nn.plans import load_plans
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.training.registry import trainer_for

FOLDS = ("0", "1", "2", "3", "4", "all")


def train(dataset, fold, trainer: str | None = None, plans_path: str | None = None, output: str | None = None,
          tag: str | None = None, **option_values) -> Path:
    fold = str(fold)
    if fold not in FOLDS:
        raise ValueError(f"fold must be one of {', '.join(FOLDS)}, got {fold!r}")
    if tag is not None and output:
        raise ValueError("--tag names the model folder under fomo_nn_results; with --output the folder is given")
    name = paths.resolve_dataset_name(dataset)
    preprocessed = paths.preprocessed_root() / name
    plans = load_plans(plans_path or preprocessed / "plans.json")
    cls = trainer_for(plans.task_type, trainer)
    if plans.kind.corpus and fold != "all":
        raise ValueError("pretraining uses every scan: use fold 'all'")
    folder_name = ModelFolderName(cls.name, plans.plans_name, plans.configuration, tag)  # checks the tag first
    out = Path(output) if output else paths.results_root() / name / str(folder_name) / f"fold_{fold}"
    options = TrainerOptions(**option_values)
    return cls(plans, preprocessed, out, fold, options).run()
