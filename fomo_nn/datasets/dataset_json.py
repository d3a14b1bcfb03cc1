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

from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.image_io import SUPPORTED_ENDINGS
from fomo_nn.tasks import CASE_CLASS, CASE_VALUE, VOXELS, TaskKind, task_kind, task_names

TASK_TYPES = task_names()
_KNOWN_KEYS = {"name", "task_type", "channel_names", "file_ending", "labels", "classes", "target", "numTraining",
               "case_subjects", "description", "auxiliary_labels"}
AUXILIARY_TASK_TYPES = task_names(lambda kind: kind.auxiliary_masks)
MAX_LABEL_VALUE = 127  # preprocessed masks are int8


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
    def kind(self) -> TaskKind:
        return task_kind(self.task_type)

    @property
    def class_values(self) -> list[int]:
        return sorted(int(k) for k in (self.classes or {}))

    @property
    def voxel_label_values(self) -> list[int] | None:
        """Values a case's mask may hold: the segmentation labels or the auxiliary labels (None: no masks)."""
        labels = self.labels if self.kind.target == VOXELS else self.auxiliary_labels
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
    """Build a DatasetSpec, raising BadInputError that names `source` and the problem (the key, for a wrong type)."""
    if not isinstance(data, dict):
        raise BadInputError(source, "must hold a JSON object")
    _check_types(data, source)
    task_type = data.get("task_type", "segmentation")
    if task_type not in TASK_TYPES:
        raise BadInputError(source, f"task_type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    key = "channel_names" if "channel_names" in data else "modality"
    channels = data.get(key)
    if not isinstance(channels, dict) or not channels:
        raise BadInputError(source, "channel_names must map channel index ('0', '1', ...) to a name")
    _check_index_keys(channels, source, key)
    file_ending = data.get("file_ending", ".nii.gz")
    if file_ending not in SUPPORTED_ENDINGS:
        raise BadInputError(source, f"file_ending {file_ending!r} is not one of {', '.join(SUPPORTED_ENDINGS)}")
    spec = DatasetSpec(
        name=str(data.get("name", Path(source).parent.name)), task_type=task_type,
        channel_names={str(k): str(v) for k, v in channels.items()}, file_ending=file_ending,
        labels=data.get("labels"), classes=data.get("classes"), target=data.get("target"),
        num_training=data.get("numTraining"),
        case_subjects={k: str(v) for k, v in (data.get("case_subjects") or {}).items()},
        description=data.get("description", ""), auxiliary_labels=data.get("auxiliary_labels"),
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS})
    _check_targets(spec, source)
    _check_auxiliary_labels(spec, source)
    return spec


# key -> (JSON types it may hold, what to say); absent keys take their defaults
_KEY_TYPES = {
    "name": ((str,), "a string"), "task_type": ((str,), "a string"), "description": ((str,), "a string"),
    "file_ending": ((str,), "a string such as '.nii.gz'"), "channel_names": ((dict,), "an object"),
    "modality": ((dict,), "an object"), "labels": ((dict,), "an object"), "classes": ((dict,), "an object"),
    "target": ((dict,), "an object"), "auxiliary_labels": ((dict,), "an object"),
    "numTraining": ((int,), "a whole number"), "case_subjects": ((dict,), "an object {case id: subject id}"),
}


def _check_types(data: dict, source) -> None:
    """Wrong JSON types are named here, by key, instead of surfacing as a traceback wherever they are used."""
    for key, (types, what) in _KEY_TYPES.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            raise BadInputError(source, f"{key} must be {what}, got {type(value).__name__} {_shown(value)}")
    if isinstance(data.get("numTraining"), int) and data["numTraining"] < 0:
        raise BadInputError(source, f"numTraining must not be negative, got {data['numTraining']}")
    for key in ("channel_names", "modality", "classes"):
        for name in (data.get(key) or {}).values():
            if not isinstance(name, str) or not name:
                raise BadInputError(source, f"{key} must map to names (strings), got {_shown(name)}")
    for case_id, subject in (data.get("case_subjects") or {}).items():
        if isinstance(subject, bool) or not isinstance(subject, (str, int)):
            raise BadInputError(source, f"case_subjects must map case ids to subject ids, got "
                                        f"{case_id!r}: {_shown(subject)}")


def _check_index_keys(mapping: dict, source, key: str) -> None:
    """Keys '0'..'N-1' written as plain decimals ('00' or 'zero' would never match a file or a class)."""
    bad = [k for k in mapping if not (k.isdigit() and str(int(k)) == k)]
    if bad:
        raise BadInputError(source, f"{key} keys must be the indices '0', '1', ...; {bad[0]!r} is not")
    if sorted(int(k) for k in mapping) != list(range(len(mapping))):
        raise BadInputError(source, f"{key} keys must be 0..{len(mapping) - 1}, got {sorted(mapping, key=int)}")


def _shown(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, str, int, float, bool)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_label_map(labels, source, key: str) -> None:
    """name -> integer value in 0..MAX_LABEL_VALUE, background 0, at least one foreground label."""
    if not isinstance(labels, dict) or "background" not in labels:
        raise BadInputError(source, f"{key} must map label names to values and include 'background'")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in labels.values()):
        raise BadInputError(source, f"{key} must map names to integer values (region labels are not supported)")
    if labels["background"] != 0:
        raise BadInputError(source, f"the background value of {key} must be 0")
    if len(labels) < 2:
        raise BadInputError(source, f"{key} needs at least one label besides background")
    shared = {value: [name for name, v in labels.items() if v == value] for value in set(labels.values())}
    shared = {value: names for value, names in shared.items() if len(names) > 1}
    if shared:
        detail = "; ".join(f"{value}: {', '.join(names)}" for value, names in sorted(shared.items()))
        raise BadInputError(source, f"{key} gives one value two names ({detail}): each value must have one name, "
                                    "or the network's outputs and the masks disagree on what a value means")
    outside = sorted(v for v in labels.values() if not 0 <= v <= MAX_LABEL_VALUE)
    if outside:
        raise BadInputError(source, f"{key} values must lie in 0..{MAX_LABEL_VALUE} (masks are stored as int8), "
                                    f"got {outside}")


def _check_auxiliary_labels(spec: DatasetSpec, source) -> None:
    if spec.auxiliary_labels is None:
        return
    if not spec.kind.auxiliary_masks:
        raise BadInputError(source, f"auxiliary_labels is for {' and '.join(AUXILIARY_TASK_TYPES)} datasets; a "
                                    f"{spec.task_type} dataset declares its voxel labels in 'labels'")
    _check_label_map(spec.auxiliary_labels, source, "auxiliary_labels")


def _check_targets(spec: DatasetSpec, source) -> None:
    target = spec.kind.target
    if target == VOXELS:
        if not isinstance(spec.labels, dict) or "background" not in spec.labels:
            raise BadInputError(source, "a segmentation dataset needs labels with a 'background' entry")
        _check_label_map(spec.labels, source, "labels")
    elif target == CASE_CLASS:
        if not isinstance(spec.classes, dict) or len(spec.classes) < 2:
            raise BadInputError(source, "a classification dataset needs classes with at least two entries")
        _check_index_keys(spec.classes, source, "classes")
    elif target == CASE_VALUE:
        if not isinstance(spec.target, dict) or "name" not in spec.target:
            raise BadInputError(source, "a regression dataset needs target: {'name': ..., 'unit': ...}")
    elif spec.kind.corpus and spec.num_channels != 1:
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
