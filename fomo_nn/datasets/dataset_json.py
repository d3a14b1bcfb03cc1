"""`dataset.json`: what a raw dataset is (task type, channels, targets).

An nnU-Net v2 raw dataset has no `task_type`: it is read as segmentation, unchanged.

`auxiliary_labels` (classification and regression only) declares voxel labels a case carries beside
its scalar target, e.g. FOMO25 task 1's infarct masks: `{"background": 0, "infarct": 1}`, one mask
per training case at `labelsTr/CASE<file_ending>` next to `labelsTr/CASE.txt` (all-zero for a case
without a lesion). They are an auxiliary training signal, never a prediction target.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.io.errors import BadInputError

TASK_TYPES = ("pretraining", "classification", "segmentation", "regression")
_KNOWN_KEYS = {"name", "task_type", "channel_names", "file_ending", "labels", "classes", "target", "numTraining",
               "case_subjects", "description", "auxiliary_labels"}
AUXILIARY_TASK_TYPES = ("classification", "regression")


@dataclass
class DatasetSpec:
    name: str
    task_type: str
    channel_names: dict[str, str]
    file_ending: str = ".nii.gz"
    labels: dict[str, int] | None = None  # segmentation: label name -> value (background 0)
    classes: dict[str, str] | None = None  # classification: value ("0", "1") -> class name
    target: dict | None = None  # regression: {"name": "age", "unit": "years"}
    num_training: int | None = None
    case_subjects: dict[str, str] = field(default_factory=dict)  # case -> subject, for grouped folds
    description: str = ""
    # classification/regression: voxel labels beside the target (labelsTr/CASE<file_ending>), name -> value
    auxiliary_labels: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def channels(self) -> list[str]:
        return [self.channel_names[k] for k in sorted(self.channel_names, key=int)]

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def class_values(self) -> list[int]:
        return sorted(int(k) for k in (self.classes or {}))

    @property
    def voxel_label_values(self) -> list[int] | None:
        """Values a case's mask may hold: the segmentation labels or the auxiliary labels (None: no masks)."""
        labels = self.labels if self.task_type == "segmentation" else self.auxiliary_labels
        return sorted(int(v) for v in labels.values()) if labels else None

    def to_json(self) -> dict:
        data = {"name": self.name, "task_type": self.task_type, "channel_names": self.channel_names,
                "file_ending": self.file_ending}
        for key, value in (("labels", self.labels), ("classes", self.classes), ("target", self.target),
                           ("auxiliary_labels", self.auxiliary_labels)):
            if value is not None:
                data[key] = value
        if self.num_training is not None:
            data["numTraining"] = self.num_training
        if self.case_subjects:
            data["case_subjects"] = self.case_subjects
        if self.description:
            data["description"] = self.description
        data.update(self.extra)
        return data


def parse_dataset_json(data: dict, source: str | Path = "dataset.json") -> DatasetSpec:
    """Build a DatasetSpec, raising BadInputError that names `source` and the problem."""
    if not isinstance(data, dict):
        raise BadInputError(source, "must hold a JSON object")
    task_type = data.get("task_type", "segmentation")
    if task_type not in TASK_TYPES:
        raise BadInputError(source, f"task_type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    channels = data.get("channel_names", data.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise BadInputError(source, "channel_names must map channel index ('0', '1', ...) to a name")
    if sorted(int(k) for k in channels) != list(range(len(channels))):
        raise BadInputError(source, f"channel_names keys must be 0..{len(channels) - 1}, got {sorted(channels)}")
    spec = DatasetSpec(
        name=str(data.get("name", Path(source).parent.name)), task_type=task_type,
        channel_names={str(k): str(v) for k, v in channels.items()}, file_ending=data.get("file_ending", ".nii.gz"),
        labels=data.get("labels"), classes=data.get("classes"), target=data.get("target"),
        num_training=data.get("numTraining"), case_subjects=data.get("case_subjects", {}) or {},
        description=data.get("description", ""), auxiliary_labels=data.get("auxiliary_labels"),
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS})
    _check_targets(spec, source)
    _check_auxiliary_labels(spec, source)
    return spec


def _check_label_map(labels, source, key: str) -> None:
    """name -> integer value, background 0, at least one foreground label."""
    if not isinstance(labels, dict) or "background" not in labels:
        raise BadInputError(source, f"{key} must map label names to values and include 'background'")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in labels.values()):
        raise BadInputError(source, f"{key} must map names to integer values (region labels are not supported)")
    if labels["background"] != 0:
        raise BadInputError(source, f"the background value of {key} must be 0")
    if len(labels) < 2:
        raise BadInputError(source, f"{key} needs at least one label besides background")


def _check_auxiliary_labels(spec: DatasetSpec, source) -> None:
    if spec.auxiliary_labels is None:
        return
    if spec.task_type not in AUXILIARY_TASK_TYPES:
        raise BadInputError(source, f"auxiliary_labels is for {' and '.join(AUXILIARY_TASK_TYPES)} datasets; a "
                                    f"{spec.task_type} dataset declares its voxel labels in 'labels'")
    _check_label_map(spec.auxiliary_labels, source, "auxiliary_labels")


def _check_targets(spec: DatasetSpec, source) -> None:
    if spec.task_type == "segmentation":
        if not isinstance(spec.labels, dict) or "background" not in spec.labels:
            raise BadInputError(source, "a segmentation dataset needs labels with a 'background' entry")
        values = spec.labels.values()
        if any(not isinstance(v, int) for v in values):
            raise BadInputError(source, "labels must map names to integer values (region labels are not supported)")
        if spec.labels["background"] != 0:
            raise BadInputError(source, "the background label must be 0")
    elif spec.task_type == "classification":
        if not isinstance(spec.classes, dict) or len(spec.classes) < 2:
            raise BadInputError(source, "a classification dataset needs classes with at least two entries")
        if sorted(int(k) for k in spec.classes) != list(range(len(spec.classes))):
            raise BadInputError(source, f"class values must be 0..{len(spec.classes) - 1}, got {sorted(spec.classes)}")
    elif spec.task_type == "regression":
        if not isinstance(spec.target, dict) or "name" not in spec.target:
            raise BadInputError(source, "a regression dataset needs target: {'name': ..., 'unit': ...}")
    elif spec.task_type == "pretraining" and spec.num_channels != 1:
        raise BadInputError(source, "a pretraining corpus is single-channel per image (channel_names {'0': 'mri'})")


def load_dataset_json(dataset_dir: str | Path) -> DatasetSpec:
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise BadInputError(path, "dataset.json is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadInputError(path, f"not valid JSON ({error})") from None
    return parse_dataset_json(data, path)


def save_dataset_json(spec: DatasetSpec, dataset_dir: str | Path) -> Path:
    from fomo_nn.utils.files import write_json_atomic

    return write_json_atomic(Path(dataset_dir) / "dataset.json", spec.to_json())
