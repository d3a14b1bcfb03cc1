"""What every finetuning trainer shares: folds, pretrained encoder, few-shot regime, final validation.

- folds: ``splits_final.json`` (seeded, grouped by subject, stratified for classification); fold
  ``all`` trains on every case and validates on those same training cases (the summary says so);
- weights: ``--pretrained CKPT`` loads the encoder with a printed and saved report
  (``pretrained_weights_report.json``); without it the same recipe is the from-scratch baseline;
- few-shot regime from plans.training (CLI flags override): warmup epochs, encoder LR =
  head LR x ``encoder_lr_scale``, encoder frozen for ``freeze_encoder_epochs``, or ``linear_probe``
  (encoder frozen throughout; for segmentation the decoder is the "head");
- after the last epoch every validation case is predicted whole (as fomo_nn_predict would, on the
  preprocessed grid; method settings ``validation_tta`` (False) and ``validation_step`` (0.5)) and
  scored into ``validation/summary.json`` (fields compatible with fomo_nn_evaluate's summary: task,
  per_case, metrics) plus per-case outputs (``predictions.csv``; masks for segmentation).
"""
from __future__ import annotations

import csv
import io
import sys
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from tqdm import tqdm

from fomo_nn.inference.case_prediction import predict_preprocessed
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_finetuning_network
from fomo_nn.networks.encoders import ENCODER_PREFIX
from fomo_nn.networks.families import network_family
from fomo_nn.preprocessing.case_store import PreprocessedCase
from fomo_nn.training.base_trainer import BaseTrainer
from fomo_nn.checkpoints.training_state import PRETRAINED
from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.training.finetuning.pretrained import REPORT_FILE, check_compatible, load_pretrained_encoder, print_report
from fomo_nn.training.finetuning.splits import ALL_FOLD, SPLITS_FILE, fold_cases, load_or_create_splits
from fomo_nn.utils.files import write_text_atomic

VALIDATION_FOLDER = "validation"


class FinetuningTrainer(BaseTrainer):
    """Base of the classification, segmentation and regression trainers (not registered itself)."""

    csv_columns: ClassVar[tuple[str, ...]] = ()  # per-case columns of validation/predictions.csv (none: no CSV)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # checkpoints carry the effective method settings, so prediction rebuilds the same network
        self.plans = self.plans.replace(method=dict(self.method))
        self.pretrained_report: dict | None = None
        self.encoder_frozen: bool | None = None
        # read (and checked against the plans) before anything is written: a wrong file leaves no run behind
        self.pretrained_record = (read_checkpoint(self.options.pretrained, trust_pickle=self.options.trust_checkpoint)
                                  if self.options.pretrained else None)
        if self.pretrained_record is not None:
            check_compatible(self.pretrained_record, self.plans.network, self.options.allow_partial)

    def default_method_settings(self) -> dict:
        return {"validation_tta": False, "validation_step": 0.5}

    def known_method_settings(self) -> tuple[str, ...]:
        """The network options build_finetuning_network reads from plans.method for this task."""
        return self.plans.kind.network_settings

    # ----------------------------------------------------------------- cases and folds
    def split_cases(self, cases: list[PreprocessedCase]):
        splits = load_or_create_splits(self.preprocessed_dir, cases, self.plans.task_type, write=self.dist.is_main)
        train, val = fold_cases(cases, splits, self.fold, self.preprocessed_dir / SPLITS_FILE)
        self.on_cases_split(train, val)
        return train, val

    def on_cases_split(self, train: list[PreprocessedCase], val: list[PreprocessedCase]) -> None:
        """Hook: derive what the training fold defines (class weights, target normalization)."""

    @staticmethod
    def case_targets(cases: list[PreprocessedCase]) -> list[float]:
        """Each case's scalar target; a case without one is bad input (named)."""
        targets = []
        for case in cases:
            if case.target is None:
                raise BadInputError(Path(case.folder) / f"{case.case_id}.json", "case has no target value")
            targets.append(float(case.target))
        return targets

    # ----------------------------------------------------------------- network and weights
    def build_network(self) -> nn.Module:
        return build_finetuning_network(self.plans)

    def initialize_weights(self) -> None:
        if not self.options.pretrained:
            if self.training.linear_probe or self.training.freeze_encoder_epochs:
                print("[fomo_nn] note: freezing a randomly initialized encoder (no --pretrained given)",
                      file=sys.stderr)
            return
        report = load_pretrained_encoder(self.network, self.pretrained_record, self.plans.network,
                                         self.options.allow_partial)
        self.pretrained_report = report
        if self.dist.is_main:
            self.write_json(REPORT_FILE, report)
            print_report(report)

    def checkpoint_record(self) -> dict:
        report = self.pretrained_report
        if report is None:
            return {PRETRAINED: None}
        return {PRETRAINED: {"checkpoint": report["checkpoint"], "counts": report["counts"],
                               "allow_partial": report["allow_partial"], "pretraining": report["pretraining"]}}

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.network.named_parameters() if n.startswith(ENCODER_PREFIX)]

    def parameter_groups(self) -> list[dict]:
        """Head (decoder, fusion, heads) at the base LR first; the encoder at base LR x encoder_lr_scale,
        decayed layer-wise: stage s of S gets x layer_lr_decay^(S-1-s) (the stem one step more), so
        the generic low-level filters of a pretrained encoder move least.

        Frozen parameters stay in the optimizer: their gradients are None, so AdamW/SGD skip them
        (no update, no weight decay) until they are unfrozen.
        """
        encoder = dict((n, p) for n, p in self.network.named_parameters() if n.startswith(ENCODER_PREFIX))
        encoder_ids = {id(p) for p in encoder.values()}
        head = [p for p in self.network.parameters() if id(p) not in encoder_ids]
        groups = [{"params": head, "lr_scale": 1.0, "name": "head"}]
        scale, decay = float(self.training.encoder_lr_scale), float(self.training.layer_lr_decay)
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"layer_lr_decay must lie in (0, 1], got {decay}")
        if not encoder:
            return groups
        if decay == 1.0:
            return groups + [{"params": list(encoder.values()), "lr_scale": scale, "name": "encoder"}]
        by_depth: dict[int, list] = {}
        for name, parameter in encoder.items():
            by_depth.setdefault(self.encoder_depth_of(name), []).append(parameter)
        for steps, parameters in sorted(by_depth.items()):
            groups.append({"params": parameters, "lr_scale": scale * decay ** steps, "name": f"encoder_depth_{steps}"})
        return groups

    def encoder_depth_of(self, name: str) -> int:
        """How many stages below the bottleneck an encoder parameter sits (0 = deepest stage); the family
        says which stage a key belongs to (fomo_nn.networks.families: stage_of_key)."""
        plan = self.network.network_plan
        stage = network_family(plan.encoder).stage_of_key(name[len(ENCODER_PREFIX):])
        return plan.num_stages if stage is None else plan.num_stages - 1 - stage  # None: a stem before stage 0

    def on_epoch_start(self, epoch: int) -> None:
        frozen = bool(self.training.linear_probe) or epoch < self.training.freeze_encoder_epochs
        previous = self.encoder_frozen if self.encoder_frozen is not None else False  # networks start trainable
        self.encoder_frozen = frozen
        if frozen == previous:
            return
        for parameter in self.encoder_parameters():
            parameter.requires_grad_(not frozen)
        state = "frozen (linear probe)" if self.training.linear_probe else ("frozen" if frozen else "unfrozen")
        print(f"[fomo_nn] epoch {epoch + 1}: encoder {state}", file=sys.stderr)
        if self.dist.enabled:
            self._rewrap_distributed()

    def _rewrap_distributed(self) -> None:
        """DDP fixes the set of trainable parameters when it wraps; wrap again after (un)freezing."""
        model = torch.compile(self.network) if self.options.compile else self.network
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    # ----------------------------------------------------------------- final validation
    def prediction_options(self) -> dict:
        """Extra arguments of predict_preprocessed for this task (e.g. the target normalization)."""
        return {}

    @abstractmethod
    def score_case(self, case: PreprocessedCase, prediction, folder: Path) -> dict:
        """One per-case record of validation/summary.json (may write per-case outputs into `folder`)."""

    @abstractmethod
    def summarize_cases(self, records: list[dict]) -> dict:
        """The task metrics over all per-case records."""

    def summary_fields(self) -> dict:
        """Task-specific top-level summary entries (e.g. nsd_tolerance_mm)."""
        return {}

    def on_train_end(self) -> None:
        if not self.dist.is_main or not self.val_cases:
            return
        folder = self.output_dir / VALIDATION_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        show = self.options.progress_bar if self.options.progress_bar is not None else sys.stderr.isatty()
        records = []
        for case in tqdm(self.val_cases, desc="validation cases", leave=False, disable=not show):
            prediction = predict_preprocessed(self.network, case.data(), self.plans, device=self.device,
                                              tta=bool(self.method["validation_tta"]),
                                              step=float(self.method["validation_step"]), **self.prediction_options())
            records.append({"case_id": case.case_id, **self.score_case(case, prediction, folder), "missing": False})
        metrics = self.summarize_cases(records)
        if self.csv_columns:
            write_csv(folder / "predictions.csv", records, list(self.csv_columns))
        summary = {
            "task": self.plans.task_type, "trainer": self.name, "fold": self.fold, "dataset": self.plans.dataset_name,
            "checkpoint": "checkpoint_final.pth", PRETRAINED: self.checkpoint_record()[PRETRAINED],
            "metrics": metrics, "per_case": records, "missing_cases": [], "missing_policy": "none missing",
            "grid": "preprocessed", "validated_on_training_cases": self.fold == ALL_FOLD,
            "test_time_augmentation": bool(self.method["validation_tta"]),
            "notes": self.summary_notes(), **self.summary_fields(),
        }
        self.write_json(f"{VALIDATION_FOLDER}/summary.json", summary)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"[fomo_nn] validation of fold {self.fold} ({len(records)} cases): {shown} -> {folder / 'summary.json'}",
              file=sys.stderr)

    def summary_notes(self) -> list[str]:
        notes = ["predictions and scores are on the preprocessed grid (cropped, resampled to the plans' "
                 "target_spacing); fomo_nn_evaluate on exported predictions scores the original grid"]
        if self.fold == ALL_FOLD:
            notes.append("fold 'all' trains on every case: these validation cases are the training cases, so the "
                         "metrics measure fit, not generalization")
        return notes


def write_csv(path: Path, records: list[dict], columns: list[str]) -> Path:
    """Per-case predictions a person can open in a spreadsheet (written atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return write_text_atomic(path, buffer.getvalue())
