"""What every self-supervised pretraining trainer shares on top of the base loop.

- the network comes from `build_pretraining_network(plans, method, **settings)`;
- sampling is stated per method: single scans ("iid": each scan once per shuffled pass, dealt over the
  ranks), or pairs of scans of one subject (SubjectPairSource);
- a few subjects are held out for validation (scans of one subject never on both sides);
- every checkpoint carries the adaptation record (architecture, plans, encoder/stem keys, method
  settings, data provenance), so finetuning rebuilds the same encoder and knows what it was fed;
- method settings = defaults | plans.method | --set, checked against the defaults so a typo fails
  (BaseTrainer: the error names the key and the nearest valid setting);
- optionally an online probe (``--probe-dataset``): every ``--probe-every`` epochs, and before the
  first step, the encoder's frozen features are probed on labelled datasets (fomo_nn.probing.online)
  and logged to online_probe.jsonl and the progress plot.
"""
from __future__ import annotations

import sys
from typing import ClassVar

from torch import nn

from fomo_nn.networks import adaptation_record, build_pretraining_network
from fomo_nn import paths
from fomo_nn.preprocessing.case_store import PreprocessedCase
from fomo_nn.training.base_trainer import BaseTrainer, TrainerOptions
from fomo_nn.checkpoints.training_state import ADAPTATION
from fomo_nn.training.data.batch_sources import PatchSource, SubjectPairSource
from fomo_nn.training.pretraining.batch_memory import fit_batch
from fomo_nn.training.pretraining.provenance import data_provenance
from fomo_nn.training.pretraining.subject_split import VALIDATION_FRACTION, group_by_subject, split_by_subject

SAMPLING_MODES = ("iid", "subject_pairs")
ADAPTATION_RECORD_KEY = ADAPTATION  # the checkpoint key of the record (owned by checkpoints/training_state.py)
SPLIT_FILE = "pretraining_split.json"


class PretrainingTrainer(BaseTrainer):
    """Base of the SSL trainers; subclasses set name/description/sampling and the loss."""

    task_types: ClassVar[tuple[str, ...]] = ("pretraining",)
    augmentation_family: ClassVar[str] = "pretraining_reconstruction"
    sampling: ClassVar[str] = "iid"  # iid | subject_pairs
    validation_fraction: ClassVar[float] = VALIDATION_FRACTION
    min_validation_subjects: ClassVar[int] = 1  # 2 where a loss needs negatives from another subject
    # activation memory of one sample of this method's step / one sample through the plan's U-Net (what the
    # planner's batch is sized for): the batch is divided by it (batch_memory.py; measured in benchmarks/RESULTS.md)
    memory_multiplier: ClassVar[float] = 1.0
    min_batch_size: ClassVar[int] = 1  # the smallest batch the method's loss works with

    def __init__(self, plans, preprocessed_dir, output_dir, fold, options: TrainerOptions | None = None):
        super().__init__(plans, preprocessed_dir, output_dir, fold, options)
        batch = fit_batch(self.plans.batch_size, self.memory_multiplier, self.min_batch_size, self.name,
                          explicit=self.options.batch_size is not None, memory_batch=self.plans.memory_batch_size)
        if batch != self.plans.batch_size:
            self.plans = self.plans.replace(batch_size=batch)
        self.check_settings()
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"{type(self).__name__}.sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        self._record: dict | None = None
        self.all_cases: list[PreprocessedCase] = []
        self.online_probe = None

    # ------------------------------------------------------------------ online probe
    def on_train_start(self) -> None:
        if not self.options.probe_datasets or not self.dist.is_main:
            return
        from fomo_nn.probing.online import OnlineProbe, ProbeDataset

        if int(self.options.probe_every) < 1:
            raise ValueError(f"probe_every must be >= 1 epoch, got {self.options.probe_every}")
        folders = [paths.preprocessed_root() / paths.resolve_dataset_name(d) for d in self.options.probe_datasets]
        self.online_probe = OnlineProbe([ProbeDataset.load(folder) for folder in folders], seed=self.seed)
        if self.start_epoch == 0:
            self._measure_probe(0)

    def after_epoch(self, epoch: int) -> None:
        done = epoch + 1
        if self.online_probe is not None and (done % int(self.options.probe_every) == 0 or done == self.training.epochs):
            self._measure_probe(done)

    def _measure_probe(self, epochs_done: int) -> None:
        record = self.online_probe.measure(self.network.encoder, self.plans.network, self.device)
        self.log.append_probe({"epochs_done": epochs_done, "step": epochs_done * self.steps_per_epoch, **record})
        self.log.plot()
        shown = "  ".join(f"{k[6:]} {v:.3f}" for k, v in record.items())
        print(f"[fomo_nn] online probe after {epochs_done} epoch(s): {shown}", file=sys.stderr)

    # ------------------------------------------------------------------ settings
    def check_settings(self) -> None:
        """Subclasses: raise ValueError naming a setting whose value cannot work."""

    def network_settings(self) -> dict:
        """Keyword arguments for build_pretraining_network (it keeps only its architecture options)."""
        return dict(self.method)

    # ------------------------------------------------------------------ network and record
    def build_network(self) -> nn.Module:
        return build_pretraining_network(self.plans, self.name, **self.network_settings())

    def adaptation_record(self) -> dict:
        if self._record is None:
            settings = {**self.method, **self.network_settings()}
            self._record = adaptation_record(self.network, self.plans, self.name, settings,
                                             data_provenance(self.preprocessed_dir, self.all_cases))
            self._record["pretraining"]["sampling"] = self.sampling
        return self._record

    def checkpoint_record(self) -> dict:
        return {ADAPTATION_RECORD_KEY: self.adaptation_record()}

    # ------------------------------------------------------------------ data
    def split_cases(self, cases: list[PreprocessedCase]) -> tuple[list[PreprocessedCase], list[PreprocessedCase]]:
        pairs = self.sampling == "subject_pairs"
        train, val = split_by_subject(cases, self.seed, self.validation_fraction,
                                      eligible=(lambda scans: len(scans) >= 2) if pairs else (lambda scans: True),
                                      min_subjects=self.min_validation_subjects)
        self.all_cases = list(cases)
        held_out = sorted({c.subject for c in val}) if val is not train else []
        if self.dist.is_main:
            self.write_json(SPLIT_FILE, {"validation_subjects": held_out, "num_training_scans": len(train),
                                         "num_validation_scans": len(val) if held_out else 0,
                                         "validation_on_training_scans": not held_out})
        return train, val

    def pair_source(self, cases, read_size, pipeline):
        return SubjectPairSource(cases, read_size, self.plans.batch_size, pipeline,
                                 prefer_same_session=float(self.method.get("same_session_probability", 0.5)))

    def make_training_source(self, cases: list[PreprocessedCase]):
        if self.sampling == "iid":
            return super().make_training_source(cases)
        pipeline, read_size = self.training_pipeline()
        unpaired = sum(len(scans) for scans in group_by_subject(cases).values() if len(scans) < 2)
        if unpaired and self.dist.is_main:
            print(f"[fomo_nn] {self.name}: {unpaired} of {len(cases)} training scans belong to subjects with a single "
                  "scan and are not used (subject-pair sampling)", file=sys.stderr)
        return self.pair_source(cases, read_size, pipeline)

    def make_validation_source(self, cases: list[PreprocessedCase]):
        if self.sampling == "iid":
            return PatchSource(cases, self.plans.patch_size, self.plans.batch_size, None)
        return self.pair_source(cases, self.plans.patch_size, None)
