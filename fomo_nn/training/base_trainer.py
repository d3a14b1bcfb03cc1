"""The one training loop every fomo_nn trainer shares.

Subclasses say only what differs: the network, the loss, validation metrics, how batches are
sampled and augmented. Everything else (device and precision, optimizer and schedule, gradient
clipping, background data loading, checkpoints and resume, logging, DDP) lives here once.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from abc import ABC, abstractmethod
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans import Plans
from fomo_nn.preprocessing.case_store import PreprocessedCase, list_cases
from fomo_nn.preprocessing.dataset_lock import dataset_read_lock
from fomo_nn.tasks import VOXELS
from fomo_nn.checkpoints.training_state import (TrainingCheckpoint, capture_rng_state, load_checkpoint, remove_partial_files,
                                         restore_rng_state, save_checkpoint)
from fomo_nn.training.data.batch_sources import PatchSource, batch_case_ids, case_log_requested
from fomo_nn.training.data.loader import make_loader, step_seed
from fomo_nn.training.distributed import init_distributed
from fomo_nn.training.progress_log import ProgressLog
from fomo_nn.training.schedules import lr_multiplier
from fomo_nn.utils.device import choose_device
from fomo_nn.utils.files import is_no_space, no_space_error, write_json_atomic
from fomo_nn.utils.run_lock import RunLock
from fomo_nn.utils.strict_keys import check_known_keys

VALIDATION_STREAM = 1
# a run's checkpoints; the first two (a finished or resumable run) are never replaced without --overwrite
FOLD_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
PROTECTED_CHECKPOINTS = FOLD_CHECKPOINTS[:2]


@dataclass
class TrainerOptions:
    """CLI overrides; None means 'as the plans say'."""

    device: str = "auto"
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    validation_iterations: int | None = None
    num_workers: int | None = None
    checkpoint_every: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    continue_training: bool = False
    overwrite: bool = False  # start afresh in a fold folder that holds checkpoints (they are deleted)
    compile: bool = False
    pretrained: str | None = None
    allow_partial: bool = False
    trust_checkpoint: bool = False  # --trust-checkpoint: read a --pretrained file that needs unpickling
    allow_incomplete_dataset: bool = False  # train on the finished cases of a dataset whose preprocessing did not finish
    progress_bar: bool | None = None  # None: only when attached to a terminal
    probe_datasets: list = field(default_factory=list)  # pretraining: labelled datasets of the online probe
    probe_every: int = 1  # epochs between online-probe measurements
    method: dict = field(default_factory=dict)  # method/head settings overriding plans.method
    training: dict = field(default_factory=dict)  # any other TrainingPlan field, e.g. freeze_encoder_epochs

    def __post_init__(self):
        if self.continue_training and self.overwrite:
            raise ValueError("--continue and --overwrite contradict each other: resume the run in the fold folder "
                             "or start it afresh, not both")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class BaseTrainer(ABC):
    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    task_types: ClassVar[tuple[str, ...]] = ()
    augmentation_family: ClassVar[str] = "classification"
    metric_name: ClassVar[str] = "val_loss"
    higher_is_better: ClassVar[bool] = False

    def __init__(self, plans: Plans, preprocessed_dir: str | Path, output_dir: str | Path, fold: str,
                 options: TrainerOptions | None = None):
        self.options = options or TrainerOptions()
        self.plans = self._own_augmentation_family(self._apply_overrides(plans, self.options))
        self.training = self.plans.training
        self.preprocessed_dir = Path(preprocessed_dir)
        self.output_dir = Path(output_dir)
        self.fold = str(fold)
        self.device = choose_device(self.options.device)
        self.dist = init_distributed(self.device.type)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.method = self._merge_method_settings()
        self.seed = self.training.seed
        self.network: nn.Module | None = None
        self.start_epoch = 0
        self.best_metric: float | None = None
        self.log: ProgressLog | None = None

    def _merge_method_settings(self) -> dict:
        """defaults | plans.method | --set, every key checked against the valid ones (the one strictness rule:
        an unknown key is an error naming it and the nearest valid setting)."""
        defaults = self.default_method_settings()
        valid = set(defaults) | set(self.known_method_settings())
        for origin, given in (("plans.method", self.plans.method), ("--set", self.options.method)):
            check_known_keys(f"trainer {self.name!r} ({origin})", given, valid, what="setting")
        return {**defaults, **self.plans.method, **self.options.method}

    # ----------------------------------------------------------------- what subclasses say
    def default_method_settings(self) -> dict:
        """Every method setting this trainer reads, with its default (the one place defaults live)."""
        return {}

    def known_method_settings(self) -> tuple[str, ...]:
        """Valid settings without a default here (e.g. network options another module reads)."""
        return ()

    @abstractmethod
    def build_network(self) -> nn.Module:
        """The network this trainer optimizes (unwrapped; DDP/compile are added by the loop)."""

    @abstractmethod
    def compute_loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Loss of one batch and any scalar diagnostics to log; randomness only from `generator`."""

    def validation_step(self, batch: dict, generator: torch.Generator) -> dict:
        """Per-batch validation outputs; by default the loss."""
        loss, metrics = self.compute_loss(batch, generator)
        return {"val_loss": float(loss), **{f"val_{k}": v for k, v in metrics.items()}}

    def summarize_validation(self, outputs: list[dict]) -> dict:
        """Combine per-batch validation outputs into the epoch's metrics (must include metric_name)."""
        keys = outputs[0].keys()
        return {k: float(np.mean([o[k] for o in outputs])) for k in keys if np.isscalar(outputs[0][k])}

    @abstractmethod
    def split_cases(self, cases: list[PreprocessedCase]) -> tuple[list[PreprocessedCase], list[PreprocessedCase]]:
        """(training cases, validation cases) for this fold."""

    def training_pipeline(self):
        """(augmentation pipeline or None, size of the patch the loader must read for it)."""
        aug_plan = self.plans.augmentation
        patch = tuple(self.plans.patch_size)
        if not aug_plan:  # plans without augmentation: plain random crops
            return None, patch
        from fomo_nn.augmentation import build_augmentation_pipeline, initial_patch_size

        pipeline = build_augmentation_pipeline(aug_plan, patch, is_segmentation=self.plans.kind.target == VOXELS)
        return pipeline, initial_patch_size(patch, aug_plan)

    def make_training_source(self, cases: list[PreprocessedCase]):
        pipeline, read_size = self.training_pipeline()
        return PatchSource(cases, read_size, self.plans.batch_size, pipeline,
                           foreground_oversampling=self.foreground_oversampling())

    def make_validation_source(self, cases: list[PreprocessedCase]):
        return PatchSource(cases, self.plans.patch_size, self.plans.batch_size, None,
                           foreground_oversampling=self.foreground_oversampling())

    def foreground_oversampling(self) -> float:
        return 0.0

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for p in self.network.parameters() if p.requires_grad]}]

    def initialize_weights(self) -> None:
        """Hook for finetuning trainers: load a pretrained encoder."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook: freeze/unfreeze, ramps (e.g. KL weight)."""

    def after_optimizer_step(self, step: int) -> None:
        """Hook: e.g. the EMA teacher update of self-distillation."""

    def extra_state(self) -> dict:
        """Subclass state to checkpoint (tensors and plain types only)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def checkpoint_record(self) -> dict:
        """Additional entries for every checkpoint (e.g. the adaptation record of pretraining)."""
        return {}

    def on_train_start(self) -> None:
        """Hook, after setup and resume, before the first step (e.g. the online probe's first point)."""

    def after_epoch(self, epoch: int) -> None:
        """Hook, after an epoch is logged and checkpointed (e.g. the online probe)."""

    def on_train_end(self) -> None:
        """Hook: e.g. predict and score the fold's validation cases."""

    # ----------------------------------------------------------------- the shared loop
    @staticmethod
    def _apply_overrides(plans: Plans, options: TrainerOptions) -> Plans:
        training = plans.training
        overrides = {"epochs": options.epochs, "iterations_per_epoch": options.iterations_per_epoch,
                     "validation_iterations": options.validation_iterations, "num_workers": options.num_workers,
                     "checkpoint_every": options.checkpoint_every, "learning_rate": options.learning_rate,
                     "seed": options.seed, **options.training}
        known = {f.name for f in dataclasses.fields(training)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        training = dataclasses.replace(training, **{k: v for k, v in overrides.items() if v is not None})
        changes = {"training": training}
        if options.batch_size is not None:
            changes["batch_size"] = options.batch_size
        return plans.replace(**changes)

    def _own_augmentation_family(self, plans: Plans) -> Plans:
        """Plans whose augmentation preset was made for another family get this trainer's preset.

        A pretraining corpus is planned once, for one family (reconstruction by default), while its
        trainers differ: contrastive views need other corruptions than masked reconstruction. Plans
        without a recorded family (hand-written) and plans of this family are used as they are.
        """
        planned = plans.augmentation_family
        if planned is None or planned == self.augmentation_family:
            return plans
        from fomo_nn.planning.family_defaults import augmentation_preset

        print(f"[fomo_nn] {self.name}: plans carry the {planned!r} augmentation preset; training with the "
              f"{self.augmentation_family!r} preset of this trainer", file=sys.stderr)
        return plans.replace(augmentation=augmentation_preset(self.augmentation_family),
                             augmentation_family=self.augmentation_family)

    @property
    def steps_per_epoch(self) -> int:
        return self.training.iterations_per_epoch

    @property
    def warmup_epochs(self) -> int:
        """The plans' warm-up, but never more than a tenth of a (shortened, e.g. --epochs 6) run."""
        return min(self.training.warmup_epochs, math.ceil(0.1 * self.training.epochs))

    @property
    def total_steps(self) -> int:
        return self.training.epochs * self.steps_per_epoch

    def step_generator(self, step: int, stream: int = 0) -> torch.Generator:
        entropy = step_seed(self.seed, self.dist.rank, step, 100 + stream)
        return torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))

    def _seed_everything(self) -> None:
        torch.manual_seed(self.seed + self.dist.rank)
        np.random.seed(self.seed + self.dist.rank)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def setup(self) -> None:
        cases = list_cases(self.preprocessed_dir / self.plans.configuration, self.plans,  # before any write
                           allow_incomplete=self.options.allow_incomplete_dataset)
        resume_state = self._claim_output_folder()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._seed_everything()
        self.train_cases, self.val_cases = self.split_cases(cases)
        self.network = self.build_network().to(self.device)
        self.initialize_weights()
        self.model = self.network
        if self.options.compile:
            self.model = torch.compile(self.model)
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = self._build_optimizer()
        warmup = self.warmup_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_multiplier(self.training.schedule, s, self.total_steps, warmup))
        if resume_state is not None:
            self._restore(*resume_state)
        if self.dist.is_main:
            # a run without a checkpoint to resume from starts a fresh log (a killed run's epochs are not its own)
            self.log = ProgressLog(self.output_dir, self.start_epoch if resume_state is not None else None)
            # the model folder carries its own plans: inference reads them instead of re-deriving
            write_json_atomic(self.output_dir.parent / "plans.json", self.plans.to_json())

    def _build_optimizer(self) -> torch.optim.Optimizer:
        groups = self.parameter_groups()
        lr, wd = self.training.learning_rate, self.training.weight_decay
        for group in groups:
            group["lr"] = lr * group.pop("lr_scale", 1.0)
        if self.training.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
        if self.training.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, weight_decay=wd, momentum=self.training.momentum, nesterov=True)
        raise ValueError(f"unknown optimizer {self.training.optimizer!r} in plans (adamw or sgd)")

    def state_dict(self, epoch: int) -> dict:
        return TrainingCheckpoint(
            network=self.network.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), epoch=epoch, plans=self.plans.to_json(), trainer=self.name,
            rng=capture_rng_state(), fold=self.fold, options=self.options.to_json(), best_metric=self.best_metric,
            metric_name=self.metric_name, extra=self.extra_state(), records=self.checkpoint_record()).to_dict()

    def _claim_output_folder(self) -> tuple[Path, TrainingCheckpoint] | None:
        """What this run does with its fold folder, decided before any work: the checkpoint to resume
        (--continue), or a fresh start. A finished or resumable earlier run is that run's work: a fresh
        start over it needs --overwrite, never happens silently (a checkpoint_best.pth alone is what a run
        killed before its first resumable checkpoint left; a fresh start replaces it). Returns the
        checkpoint to resume from (path, state), or None."""
        if self.dist.is_main:
            remove_partial_files(self.output_dir)
        if self.options.continue_training:
            return self._resume_state()
        protected = [name for name in PROTECTED_CHECKPOINTS if (self.output_dir / name).is_file()]
        if protected and not self.options.overwrite:
            which = "a finished" if "checkpoint_final.pth" in protected else "an unfinished"
            raise BadInputError(self.output_dir, f"holds {which} training ({', '.join(protected)}); resume it with "
                                                 "--continue, or start afresh with --overwrite (deletes its "
                                                 "checkpoints and log)")
        existing = [name for name in FOLD_CHECKPOINTS if (self.output_dir / name).is_file()]
        if existing and self.dist.is_main:
            for name in existing:
                (self.output_dir / name).unlink(missing_ok=True)
            print(f"[fomo_nn] fresh start: deleted {', '.join(existing)} of an earlier run in {self.output_dir}",
                  file=sys.stderr)
        return None

    def _resume_state(self) -> tuple[Path, TrainingCheckpoint] | None:
        """checkpoint_latest.pth if it was written by this trainer for this task (None: there is none)."""
        path = self.output_dir / "checkpoint_latest.pth"
        if not path.is_file():
            print(f"[fomo_nn] --continue: no {path.name} in {self.output_dir}, starting from scratch", file=sys.stderr)
            return None
        state = TrainingCheckpoint.from_dict(load_checkpoint(path), path)
        written_by = state.trainer
        task = state.plans.get("task_type")
        if written_by != self.name or (task is not None and task != self.plans.task_type):
            raise BadInputError(path, f"was written by trainer {written_by!r} ({task or 'unknown'} task), but "
                                      f"--continue asked for trainer {self.name!r} ({self.plans.task_type} task); "
                                      f"resume with -tr {written_by}, or train {self.name!r} into another folder "
                                      "(or afresh here with --overwrite)")
        return path, state

    def _restore(self, path: Path, state: TrainingCheckpoint) -> None:
        try:
            self.network.load_state_dict(state.network)
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
        except (KeyError, RuntimeError, ValueError) as error:
            detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
            raise BadInputError(path, f"does not fit the network and optimizer these plans and settings build "
                                      f"({type(error).__name__}: {detail}); resume with the settings it was trained "
                                      "with, or start afresh with --overwrite") from None
        restore_rng_state(state.rng)
        self.load_extra_state(state.extra)
        self.start_epoch = int(state.epoch)
        self.best_metric = state.best_metric
        print(f"[fomo_nn] resumed from {path} at epoch {self.start_epoch}", file=sys.stderr)

    def _save(self, name: str, epoch: int) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(epoch), self.output_dir / name)

    def _validation_batches(self) -> list[dict]:
        source = self.make_validation_source(self.val_cases)
        steps = max(1, self.training.validation_iterations)
        loader = make_loader(source, self.seed, self.dist.rank, 0, steps, num_workers=0, stream=VALIDATION_STREAM,
                             world_size=self.dist.world_size)
        rng_state = capture_rng_state()  # in-process loading reseeds the global generators
        batches = list(loader)
        restore_rng_state(rng_state)
        return batches

    def validate(self, batches: list[dict]) -> dict:
        self.network.eval()
        outputs = []
        with torch.no_grad(), self._autocast():
            for index, batch in enumerate(batches):
                outputs.append(self.validation_step(self._to_device(batch), self.step_generator(index, VALIDATION_STREAM)))
        self.network.train()
        summary = self.summarize_validation(outputs)
        return {k: self.dist.mean(v) for k, v in summary.items()}

    def train_step(self, batch: dict, step: int) -> tuple[float, dict]:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, metrics = self.compute_loss(self._to_device(batch), self.step_generator(step))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}: lower the learning rate or check data")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.training.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.after_optimizer_step(step)
        return float(loss.detach()), {**metrics, "grad_norm": float(grad_norm)}

    def run(self) -> Path:
        """Train as the fold folder's one writer (RunLockedError while another training writes it; under DDP
        rank 0 holds the lock for all) and as a reader of the preprocessed dataset (every rank; trainings share
        it, a preprocessing of the dataset is refused meanwhile and refuses this run). A full disk anywhere in
        the run is NoSpaceLeftError: the last checkpoint written stays intact for --continue."""
        lock = (RunLock(self.output_dir, "train", "fomo_nn training", advice="or train into another fold folder "
                        "(--output or --tag)") if self.dist.is_main else nullcontext())
        try:
            with dataset_read_lock(self.preprocessed_dir), lock:  # no preprocessing rewrites what this run reads
                return self._train()
        except OSError as error:
            if is_no_space(error):
                raise no_space_error(error, self.output_dir) from None
            raise

    def _train(self) -> Path:
        self.setup()
        epochs = self.training.epochs
        validation_batches = self._validation_batches() if self.val_cases else []
        first = self.start_epoch * self.steps_per_epoch
        loader = make_loader(self.make_training_source(self.train_cases), self.seed, self.dist.rank, first,
                             self.total_steps, self.training.num_workers, pin_memory=self.device.type == "cuda",
                             world_size=self.dist.world_size)
        case_log = [] if case_log_requested() else None
        batches = iter(loader)
        self.on_train_start()
        show_bar = self.options.progress_bar if self.options.progress_bar is not None else sys.stderr.isatty()
        for epoch in range(self.start_epoch, epochs):
            started = time.time()
            self.on_epoch_start(epoch)
            self.network.train()
            losses, diagnostics = [], {}
            bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not (show_bar and self.dist.is_main))
            for index in bar:
                step = epoch * self.steps_per_epoch + index
                batch = next(batches)
                if case_log is not None:
                    case_log += batch_case_ids(batch)
                loss, metrics = self.train_step(batch, step)
                losses.append(loss)
                for key, value in metrics.items():
                    diagnostics.setdefault(key, []).append(value)
                bar.set_postfix(loss=f"{loss:.4f}")
            record = {"epoch": epoch, "train_loss": self.dist.mean(float(np.mean(losses))),
                      "lr": self.optimizer.param_groups[0]["lr"],
                      **{f"train_{k}": self.dist.mean(float(np.mean(v))) for k, v in diagnostics.items()}}
            if case_log is not None:
                record["case_ids"], case_log = self.dist.gather_objects(case_log), []  # one list per rank
            if validation_batches:
                record.update(self.validate(validation_batches))
                record["val_metric"], record["val_metric_name"] = record.get(self.metric_name), self.metric_name
            record["epoch_time"] = time.time() - started
            self._end_epoch(epoch, record)
            self.after_epoch(epoch)
        self._save("checkpoint_final.pth", epochs)
        self.dist.barrier()
        self.on_train_end()
        return self.output_dir / "checkpoint_final.pth"

    def _end_epoch(self, epoch: int, record: dict) -> None:
        metric = record.get("val_metric")
        if metric is not None and (self.best_metric is None or
                                   (metric > self.best_metric if self.higher_is_better else metric < self.best_metric)):
            self.best_metric = metric
            self._save("checkpoint_best.pth", epoch + 1)
        if self.log is not None:
            self.log.append(record)
            self.log.plot()
            print(_format_record(record), file=sys.stderr)
        last = epoch + 1 == self.training.epochs
        if (epoch + 1) % max(1, self.training.checkpoint_every) == 0 or last:
            self._save("checkpoint_latest.pth", epoch + 1)

    def write_json(self, relative: str, data) -> Path:
        return write_json_atomic(self.output_dir / relative, data)


def _format_record(record: dict) -> str:
    parts = [f"epoch {record['epoch'] + 1}", f"train_loss {record['train_loss']:.4f}"]
    if record.get("val_metric") is not None:
        parts.append(f"{record['val_metric_name']} {record['val_metric']:.4f}")
    parts.append(f"lr {record['lr']:.2e}")
    parts.append(f"{record['epoch_time']:.1f}s")
    return "[fomo_nn] " + "  ".join(parts)
