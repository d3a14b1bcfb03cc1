"""`plans.json` as data: the single source of configuration, read through small typed views.

The planner writes a Plans; everybody else only reads it. Every field is JSON-able so a plans file
can be edited by hand (e.g. a longer schedule) without touching code.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from fomo_nn.utils.errors import BadInputError
from fomo_nn.tasks import VOXELS, TaskKind, task_kind
from fomo_nn.utils.files import write_json_atomic
from fomo_nn.utils.strict_keys import check_known_keys

PLANS_FILE = "plans.json"
FUSION_MODES = ("none", "stem_expansion", "shared_encoder")


# ------------------------------------------------------------------------------------ field rules
# Each record below lists a rule per field (FIELD_RULES); `_check_fields` applies them when a record is made
# (read from plans.json, built by the planner, or changed by a command-line override), so a wrong type or
# range is refused naming the field before any work, instead of failing deep inside training.
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and value == value


def integer(low: int | None = None):
    return (lambda v: _is_int(v) and (low is None or v >= low),
            "an integer" + (f" >= {low}" if low is not None else ""))


def number(low: float = float("-inf"), high: float = float("inf"), open_low: bool = False):
    above = f"> {low:g}" if open_low else f">= {low:g}"
    text = "a number" + (f" {above}" if low != float("-inf") else "") + (f" and <= {high:g}" if high != float("inf") else "")
    return (lambda v: _is_number(v) and (v > low if open_low else v >= low) and v <= high, text)


def one_of(*choices):
    return (lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def text():
    return (lambda v: isinstance(v, str) and bool(v), "a non-empty string")


def flag():
    return (lambda v: isinstance(v, bool), "true or false")


def of_type(kind: type, what: str):
    return (lambda v: isinstance(v, kind), what)


def triple(item):
    check, what = item
    return (lambda v: isinstance(v, list) and len(v) == 3 and all(check(x) for x in v), f"3 values, each {what}")


def listing(item, min_length: int = 1):
    check, what = item
    return (lambda v: isinstance(v, list) and len(v) >= min_length and all(check(x) for x in v),
            f"a list of at least {min_length}, each {what}")


def optional(rule):
    check, what = rule
    return (lambda v: v is None or check(v), f"null or {what}")


def _check_fields(record, where: str) -> None:
    """ValueError naming the first field of `record` that breaks its class's FIELD_RULES."""
    for name, (check, what) in type(record).FIELD_RULES.items():
        value = getattr(record, name)
        if not check(value):
            raise ValueError(f"{where}.{name} is {json.dumps(value, default=repr)[:80]}: it must be {what}")


@dataclass
class NormalizationPlan:
    """Per-channel intensity normalization, computed per image (sites differ in scale).

    The schemes and their exact rules live in fomo_nn.preprocessing.normalization (one home for
    preprocessing and inference alike):
    - zscore_foreground (default): clip to the foreground's `clip_percentiles`, z-score with the
      foreground mean/std (foreground = nonzero in any channel), background 0;
    - volume_wise_znorm: the FOMO25 baseline's (Yucca) rule, for weights pretrained with it:
      foreground = voxels above the image minimum, clipped above at its 99th percentile, mapped to
      [0, 1] (`clip_percentiles` [0, 99]).
    """

    scheme: str = "zscore_foreground"
    clip_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])

    FIELD_RULES: ClassVar[dict] = {"scheme": text()}

    def __post_init__(self):
        _check_fields(self, "normalization")
        low_high = self.clip_percentiles
        if not (isinstance(low_high, list) and len(low_high) == 2 and all(_is_number(v) for v in low_high)
                and 0 <= low_high[0] < low_high[1] <= 100):
            raise ValueError(f"normalization.clip_percentiles is {low_high!r}: it must be [low, high] with "
                             "0 <= low < high <= 100")


@dataclass
class NetworkPlan:
    """A CNN U-Net encoder/decoder topology for dynamic-network-architectures."""

    encoder: str = "plain_conv"  # plain_conv | residual
    features_per_stage: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 320])
    kernel_sizes: list[list[int]] = field(default_factory=lambda: [[3, 3, 3]] * 5)
    strides: list[list[int]] = field(default_factory=lambda: [[1, 1, 1]] + [[2, 2, 2]] * 4)
    n_conv_per_stage: list[int] = field(default_factory=lambda: [2] * 5)
    n_conv_per_stage_decoder: list[int] = field(default_factory=lambda: [2] * 4)
    input_channels: int = 1  # channels the encoder's stem takes
    fusion: str = "none"  # how 2-4 sequences meet a single-channel encoder: see FUSION_MODES
    head_dropout: float = 0.0

    FIELD_RULES: ClassVar[dict] = {
        "encoder": text(), "features_per_stage": listing(integer(1)),
        "kernel_sizes": listing(triple(integer(1))), "strides": listing(triple(integer(1))),
        "n_conv_per_stage": listing(integer(1)), "n_conv_per_stage_decoder": listing(integer(1), min_length=0),
        "input_channels": integer(1), "fusion": one_of(*FUSION_MODES), "head_dropout": number(0.0, 1.0)}

    def __post_init__(self):
        _check_fields(self, "network")
        stages = self.num_stages
        for name, length in (("kernel_sizes", stages), ("strides", stages), ("n_conv_per_stage", stages),
                             ("n_conv_per_stage_decoder", stages - 1)):
            if len(getattr(self, name)) != length:
                raise ValueError(f"network.{name} has {len(getattr(self, name))} entries: it must have {length} "
                                 f"(features_per_stage has {stages} stages)")

    @property
    def num_stages(self) -> int:
        return len(self.features_per_stage)

    @property
    def total_downsampling(self) -> list[int]:
        total = [1, 1, 1]
        for stride in self.strides:
            total = [t * s for t, s in zip(total, stride)]
        return total


@dataclass
class TrainingPlan:
    optimizer: str = "adamw"  # adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 3e-5
    momentum: float = 0.99
    schedule: str = "warmup_cosine"  # warmup_cosine | poly | constant
    warmup_epochs: int = 1
    epochs: int = 100
    iterations_per_epoch: int = 250
    validation_iterations: int = 25
    grad_clip: float = 12.0
    checkpoint_every: int = 10  # epochs between checkpoint_latest.pth writes
    num_workers: int = 2  # background augmentation processes
    seed: int = 12345
    # finetuning regime (few-shot): encoder LR multiplier, layer-wise decay of it (deepest encoder
    # stage x1, each shallower stage x layer_lr_decay more), frozen encoder epochs, linear probing
    encoder_lr_scale: float = 1.0
    layer_lr_decay: float = 1.0
    freeze_encoder_epochs: int = 0
    linear_probe: bool = False

    FIELD_RULES: ClassVar[dict] = {
        "optimizer": one_of("adamw", "sgd"), "learning_rate": number(0.0, open_low=True),
        "weight_decay": number(0.0), "momentum": number(0.0, 1.0), "schedule": one_of("warmup_cosine", "poly", "constant"),
        "warmup_epochs": integer(0), "epochs": integer(1), "iterations_per_epoch": integer(1),
        "validation_iterations": integer(0), "grad_clip": number(0.0, open_low=True), "checkpoint_every": integer(1),
        "num_workers": integer(0), "seed": integer(0), "encoder_lr_scale": number(0.0),
        "layer_lr_decay": number(0.0, 1.0, open_low=True), "freeze_encoder_epochs": integer(0),
        "linear_probe": flag()}

    def __post_init__(self):
        _check_fields(self, "training")


@dataclass
class StoragePlan:
    """How preprocessed arrays are stored; the format, its rules and the measured defaults
    (`default_storage`) live in fomo_nn.preprocessing.array_store (one home for writer and readers).

    `format` and `dtype` change the values training reads, so they enter the preprocessing signature;
    codec, level, filter, chunks and blocks only change speed and size and do not. `chunks` and
    `blocks` are (C, X, Y, Z) from the patch size (clipped to each case's shape when written).
    """

    format: str  # blosc2
    dtype: str  # of the image arrays: float16 | float32 (masks are int8)
    codec: str  # blosc2 codec name, e.g. lz4hc, zstd
    clevel: int
    filter: str  # shuffle | bitshuffle | nofilter
    chunks: list[int]
    blocks: list[int]

    def __post_init__(self):
        from fomo_nn.preprocessing.array_store import check_storage  # lazy: array_store reads plans

        check_storage(self)


@dataclass
class Plans:
    dataset_name: str
    task_type: str  # pretraining | classification | segmentation | regression
    channel_names: list[str]
    target_spacing: list[float]
    spacing_reason: str
    median_shape: list[int]  # after resampling to target_spacing
    patch_size: list[int]
    batch_size: int
    normalization: list[NormalizationPlan]
    network: NetworkPlan
    training: TrainingPlan = field(default_factory=TrainingPlan)
    augmentation: dict = field(default_factory=dict)  # see fomo_nn.augmentation presets
    # the task family whose preset `augmentation` started from; a trainer of another family (e.g.
    # contrastive on a corpus planned for reconstruction) trains with its own family's preset
    augmentation_family: str | None = None
    method: dict = field(default_factory=dict)  # pretraining method or finetuning head settings
    labels: dict[str, int] | None = None
    classes: dict[str, str] | None = None
    target: dict | None = None
    # classification/regression: voxel labels preprocessed beside each case (dataset.json auxiliary_labels,
    # e.g. task 1 infarct masks) into CASE_seg.b2nd, for auxiliary losses; None: the dataset has none
    auxiliary_labels: dict[str, int] | None = None
    foreground_oversampling: float = 0.33
    configuration: str = "3d_fullres"
    plans_name: str = "fomo_nnPlans"
    plans_like: dict | None = None  # provenance when planned like a pretrained checkpoint
    notes: list[str] = field(default_factory=list)  # why the planner decided what it decided
    storage: StoragePlan | None = None  # None: the default for this patch size (plans from before the field)
    # the batch the memory budget alone allows (before the dataset-size and --max-batch-size caps): pretraining
    # methods whose step costs more memory per sample scale from it (training/pretraining/batch_memory.py);
    # None: plans from before the field
    memory_batch_size: int | None = None

    FIELD_RULES: ClassVar[dict] = {
        "dataset_name": text(), "task_type": text(), "channel_names": listing(text()),
        "target_spacing": triple(number(0.0, open_low=True)), "median_shape": triple(number(0.0, open_low=True)),
        "patch_size": triple(integer(1)), "batch_size": integer(1), "memory_batch_size": optional(integer(1)),
        "labels": optional((lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
                            "an object of integer values")),
        "auxiliary_labels": optional((lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
                                      "an object of integer values")),
        "foreground_oversampling": number(0.0, 1.0), "configuration": text(), "plans_name": text(),
        "spacing_reason": of_type(str, "a string"), "augmentation": of_type(dict, "an object"),
        "augmentation_family": optional(text()), "method": of_type(dict, "an object"),
        "classes": optional(of_type(dict, "an object")), "target": optional(of_type(dict, "an object")),
        "plans_like": optional(of_type(dict, "an object")),
        "notes": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
        "normalization": (lambda v: isinstance(v, list) and all(isinstance(x, NormalizationPlan) for x in v),
                          "a list of normalization records"),
        "network": of_type(NetworkPlan, "a network record"), "training": of_type(TrainingPlan, "a training record")}

    def __post_init__(self):
        _check_fields(self, "plans")
        if len(self.normalization) != len(self.channel_names):
            raise ValueError(f"plans.normalization has {len(self.normalization)} entries: it must have one per "
                             f"channel ({len(self.channel_names)}: {', '.join(self.channel_names)})")
        total = self.network.total_downsampling
        if any(p % t for p, t in zip(self.patch_size, total)):
            raise ValueError(f"plans.patch_size {self.patch_size} must be divisible by the network's total "
                             f"downsampling {total} (the product of network.strides) on every axis")
        if self.storage is None:
            from fomo_nn.preprocessing.array_store import default_storage  # lazy: array_store reads plans

            self.storage = default_storage(self.patch_size, len(self.channel_names))

    @property
    def num_input_channels(self) -> int:
        return len(self.channel_names)

    @property
    def num_segmentation_heads(self) -> int:
        return len(self.labels) if self.labels else 0

    @property
    def voxel_labels(self) -> dict[str, int] | None:
        """The label map preprocessed into CASE_seg.b2nd: segmentation labels or auxiliary labels (None: no mask)."""
        return self.labels if self.kind.target == VOXELS else self.auxiliary_labels

    @property
    def kind(self) -> TaskKind:
        return task_kind(self.task_type)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str = PLANS_FILE) -> "Plans":
        try:
            data = dict(data)
            data["normalization"] = _build_normalization(data["normalization"])
            data["network"] = _build(NetworkPlan, data["network"])
            data["training"] = _build(TrainingPlan, data.get("training", {}))
            if data.get("storage") is not None:
                data["storage"] = _build(StoragePlan, data["storage"])
            return _build(cls, data)
        except (KeyError, TypeError, ValueError) as error:
            raise BadInputError(source, f"malformed plans ({error})") from None

    def replace(self, **changes) -> "Plans":
        if "storage" not in changes and ("patch_size" in changes or "channel_names" in changes):
            from fomo_nn.preprocessing.array_store import default_storage  # chunks and blocks follow the patch

            changes["storage"] = default_storage(changes.get("patch_size", self.patch_size),
                                                 len(changes.get("channel_names", self.channel_names)), self.storage)
        return dataclasses.replace(self, **changes)


def _build(cls, data: dict):
    """Construct a dataclass; an unknown key is refused with the nearest valid name (a typo in a hand
    edit must not be dropped silently)."""
    check_known_keys(f"plans {cls.__name__}", data, [f.name for f in dataclasses.fields(cls)])
    return cls(**data)


def _build_normalization(entries: list[dict]) -> list[NormalizationPlan]:
    """One entry per channel, each naming a scheme preprocessing implements: an unknown one fails when the
    plans are read (planning, training) instead of at every case preprocessed or predicted."""
    from fomo_nn.preprocessing.normalization import check_scheme  # lazy: that module builds NormalizationPlans

    plans = [_build(NormalizationPlan, entry) for entry in entries]
    for channel, plan in enumerate(plans):
        check_scheme(plan.scheme, f"plans normalization[{channel}]")
    return plans


def save_plans(plans: Plans, path: str | Path) -> Path:
    return write_json_atomic(path, plans.to_json())


def load_plans(path: str | Path) -> Plans:
    path = Path(path)
    if path.is_dir():
        path = path / PLANS_FILE
    if not path.is_file():
        raise BadInputError(path, "plans.json is missing (run fomo_nn_plan_and_preprocess first)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadInputError(path, f"not valid JSON ({error})") from None
    return Plans.from_json(data, str(path))
