"""Find a trained model (folds and checkpoints) and rebuild its networks from the checkpoints' plans.

A model folder is `fomo_nn_results/DatasetNNN_X/<trainer>__<plans_name>__<configuration>[__<tag>]/`
(named by `ModelFolderName`, which training uses too) with `plans.json` and
`fold_K/checkpoint_{final,best}.pth`. Each checkpoint carries the plans it was trained with; the
network is rebuilt from those (never re-derived) and the preprocessing of every fold must agree,
because a case is preprocessed once and fed to every fold.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from fomo_nn import paths
from fomo_nn.utils.errors import BadInputError
from fomo_nn.inference.case_prediction import TrainedModel, load_trained_model
from fomo_nn.plans.records import PLANS_FILE, Plans, load_plans
from fomo_nn.tasks import CASE_VALUE, TASK_KINDS, find_task_kind

CHECKPOINT_CHOICES = ("final", "best")
DEFAULT_CONFIGURATION = "3d_fullres"
# Plans fields that decide how a case is preprocessed and how outputs are read: every fold must agree.
PREPROCESSING_FIELDS = ("task_type", "channel_names", "target_spacing", "normalization", "labels", "classes",
                        "target", "configuration")


@dataclass
class ModelEnsemble:
    """The folds of one model folder that predict together (their outputs are averaged)."""

    folder: Path
    plans: Plans  # preprocessing and output definition, shared by all folds
    folds: list[TrainedModel]  # fomo_nn.inference.case_prediction.TrainedModel, one per fold

    @property
    def task_type(self) -> str:
        return self.plans.task_type

    @property
    def fold_names(self) -> list[str]:
        return [f.fold for f in self.folds]


def fold_sort_key(fold: str):
    return (0, int(fold)) if fold.isdigit() else (1, fold)


SEPARATOR = "__"
TAG_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


def _is_name(part: str) -> bool:
    return bool(TAG_PATTERN.fullmatch(part)) and part not in (".", "..") and SEPARATOR not in part


def check_tag(tag: str) -> str:
    """A tag is a name inside the results folder, never a path (`x/../..` would write elsewhere)."""
    if not _is_name(tag):
        raise ValueError(f"--tag {tag!r} is not a valid model-folder tag: use letters, digits, '.', '_' and '-' "
                         f"(not '.', '..' or {SEPARATOR!r}), e.g. --tag mae")
    return tag


@dataclass(frozen=True)
class ModelFolderName:
    """`<trainer>__<plans>__<configuration>[__<tag>]`: the one name training writes and inference finds;
    the tag keeps variants apart (e.g. MAE- and scratch-finetuned)."""

    trainer: str
    plans: str
    configuration: str
    tag: str | None = None

    def __post_init__(self):
        for field_name in ("trainer", "plans", "configuration"):
            value = getattr(self, field_name)
            if not _is_name(value):  # e.g. a plans_name edited in plans.json: the name could not be read back
                raise ValueError(f"{field_name} name {value!r} cannot be part of a model folder name: use letters, "
                                 f"digits, '.', '_' and '-' (not {SEPARATOR!r})")
        if self.tag is not None:
            check_tag(self.tag)

    @classmethod
    def parse(cls, name: str) -> "ModelFolderName | None":
        """The parts of a model folder's name, or None for a folder that is not one."""
        parts = name.split(SEPARATOR)
        if len(parts) not in (3, 4) or not all(parts):
            return None
        try:
            return cls(*parts)
        except ValueError:
            return None

    def __str__(self) -> str:
        name = SEPARATOR.join((self.trainer, self.plans, self.configuration))
        return f"{name}{SEPARATOR}{self.tag}" if self.tag else name


def model_folder_from_dataset(dataset, trainer: str | None = None, plans_name: str | None = None,
                              configuration: str | None = None, results_root: Path | None = None,
                              tag: str | None = None) -> Path:
    """The model folder of a dataset in the results root, chosen by -tr / -p / configuration / --tag.

    When several match and no trainer was named, the task's default trainer (segmentation,
    classification or regression) wins; without --tag the untagged folder wins over tagged variants;
    anything still ambiguous is an error listing the choices.
    """
    if tag is not None:
        check_tag(tag)
    root = Path(results_root) if results_root is not None else paths.results_root()
    name = paths.resolve_dataset_name(dataset, [root] if results_root is not None else None)
    dataset_dir = root / name
    if not dataset_dir.is_dir():
        raise BadInputError(dataset_dir, "no trained models for this dataset (folder is missing)")
    wanted = (trainer, plans_name, configuration or DEFAULT_CONFIGURATION)
    candidates: list[tuple[Path, ModelFolderName]] = []
    for folder in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        parsed = ModelFolderName.parse(folder.name)
        if parsed is None:
            continue
        fields = (parsed.trainer, parsed.plans, parsed.configuration)
        if not all(w is None or w.lower() == f.lower() for w, f in zip(wanted, fields)):
            continue
        if tag is None or (parsed.tag or "").lower() == tag.lower():  # no --tag: any, the untagged preferred below
            candidates.append((folder, parsed))
    if len(candidates) > 1 and trainer is None:
        defaults = {kind.default_trainer for kind in TASK_KINDS.values() if kind.predict}
        candidates = [c for c in candidates if c[1].trainer in defaults] or candidates
    if len(candidates) > 1 and tag is None:
        candidates = [c for c in candidates if c[1].tag is None] or candidates
    if not candidates:
        present = ", ".join(p.name for p in dataset_dir.iterdir() if p.is_dir()) or "none"
        raise BadInputError(dataset_dir, f"no model folder matches trainer={trainer or 'any'}, "
                                         f"plans={plans_name or 'any'}, configuration="
                                         f"{configuration or DEFAULT_CONFIGURATION}, tag={tag or 'any'} "
                                         f"(present: {present})")
    if len(candidates) > 1:
        raise BadInputError(dataset_dir, "several model folders match: "
                                         f"{', '.join(c[0].name for c in candidates)}; choose one with -tr/-p/--tag "
                                         "or -m")
    return candidates[0][0]


def checkpoint_name(checkpoint: str) -> str:
    if checkpoint not in CHECKPOINT_CHOICES:
        raise ValueError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {checkpoint!r}")
    return f"checkpoint_{checkpoint}.pth"


def find_checkpoints(model_dir: str | Path, folds=None, checkpoint: str = "final") -> list[tuple[str, Path]]:
    """(fold, checkpoint path) pairs. folds=None: every fold folder that holds the checkpoint."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BadInputError(model_dir, "model folder does not exist")
    filename = checkpoint_name(checkpoint)
    if folds is not None:
        found = []
        for fold in folds:
            path = model_dir / f"fold_{fold}" / filename
            if not path.is_file():
                raise BadInputError(path, f"fold {fold} has no {filename} (is its training finished? "
                                          "use --checkpoint best or other folds)")
            found.append((str(fold), path))
        return found
    fold_dirs = sorted((p for p in model_dir.glob("fold_*") if p.is_dir()),
                       key=lambda p: fold_sort_key(p.name[len("fold_"):]))
    found = [(p.name[len("fold_"):], p / filename) for p in fold_dirs if (p / filename).is_file()]
    unfinished = [p.name for p in fold_dirs if not (p / filename).is_file()]
    if not found:
        raise BadInputError(model_dir, f"no fold_*/{filename} found (folds present: "
                                       f"{', '.join(p.name for p in fold_dirs) or 'none'})")
    if unfinished:
        print(f"[fomo_nn] skipping {', '.join(unfinished)} of {model_dir}: no {filename}", file=sys.stderr)
    return found


def load_fold(fold: str, path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """One fold's network rebuilt from its checkpoint's plans, in eval mode on `device`."""
    model = load_trained_model(path, device)
    kind = find_task_kind(model.plans.task_type)
    if kind is None or kind.predict is None:
        raise BadInputError(path, f"a {model.plans.task_type} checkpoint cannot predict (pretraining checkpoints "
                                  "are finetuned first with fomo_nn_train)")
    if kind.target == CASE_VALUE and model.target_normalization is None:
        raise BadInputError(path, "regression checkpoint lacks extra['target_normalization'] (mean/std of the "
                                  "training targets), so its outputs cannot be put back into the target's unit")
    model.network.eval()
    model.fold = str(fold)
    return model


def preprocessing_mismatch(reference: Plans, other: Plans) -> list[str]:
    """Names of the plans fields on which two folds would preprocess or read outputs differently."""
    a, b = reference.to_json(), other.to_json()
    return [name for name in PREPROCESSING_FIELDS if a.get(name) != b.get(name)]


def load_ensemble(model_dir: str | Path, folds=None, checkpoint: str = "final",
                  device: torch.device | str = "cpu") -> ModelEnsemble:
    """Every requested fold of a model folder, checked to share one preprocessing."""
    model_dir = Path(model_dir)
    loaded = [load_fold(fold, path, device) for fold, path in find_checkpoints(model_dir, folds, checkpoint)]
    reference = loaded[0]
    for fold in loaded[1:]:
        differing = preprocessing_mismatch(reference.plans, fold.plans)
        if differing:
            raise BadInputError(fold.checkpoint, f"fold {fold.fold} was trained with other plans than fold "
                                                 f"{reference.fold} ({', '.join(differing)} differ); "
                                                 "an ensemble needs one preprocessing")
    folder_plans = model_dir / PLANS_FILE
    if folder_plans.is_file():
        differing = preprocessing_mismatch(reference.plans, load_plans(folder_plans))
        if differing:
            print(f"[fomo_nn] note: {folder_plans} differs from the checkpoints' plans in {', '.join(differing)}; "
                  "using the checkpoints' plans", file=sys.stderr)
    return ModelEnsemble(model_dir, reference.plans, loaded)
