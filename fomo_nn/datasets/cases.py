"""The cases of a raw dataset: which files make one training sample and what its target is.

Supervised datasets use nnU-Net's layout: `imagesTr/CASE_0000<ending>` (one file per channel),
`labelsTr/CASE<ending>` for masks, `labelsTr/CASE.txt` for a class or a regression target. A
classification/regression dataset that declares `auxiliary_labels` also has `labelsTr/CASE<ending>`
(the auxiliary mask, e.g. the infarct of FOMO25 task 1): required for every training case, read
when present in `labelsTs`. Pretraining corpora list their images in `manifest.json` (see manifest.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.datasets.dataset_json import DatasetSpec, load_dataset_json
from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.number_file import read_number_file
from fomo_nn.tasks import CASE_CLASS, CASE_VALUE, VOXELS


@dataclass
class Case:
    case_id: str
    image_files: list[str]  # one per channel, in channel order
    label_file: str | None = None  # segmentation mask or target .txt
    target: float | None = None  # classification class or regression value
    mask_file: str | None = None  # auxiliary mask of a classification/regression case (dataset.json auxiliary_labels)
    subject: str | None = None
    session: str | None = None
    sequence: str | None = None  # pretraining images: the sequence name
    extra: dict = field(default_factory=dict)

    @property
    def group(self) -> str:
        """What must stay together in one fold: the subject if known, else the case."""
        return self.subject or self.case_id


# a regression target beyond this breaks the target normalization at step 0 (1e300 squared overflows)
REGRESSION_TARGET_LIMIT = 1e6
# a case id becomes file names (CASE_0000.nii.gz, CASE.npz) and command-line words: no space, no leading '-'
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def case_id_problem(case_id: str) -> str | None:
    """Why `case_id` cannot name a case, or None: the one rule conversion and preprocessing both apply."""
    if _CASE_ID.fullmatch(case_id):
        return None
    return (f"{case_id!r} is not a usable case id (letters, digits, '_', '-' and '.' only, starting with a "
            "letter or digit)")


def read_target_txt(path: str | Path, valid_range: tuple[float, float] | None = None) -> float:
    """A `label.txt` / `CASE.txt`: exactly one number (class or value). Raises BadInputError otherwise."""
    return read_number_file(path, valid_range, what="target")


def _cases_in(images_dir: Path, spec: DatasetSpec) -> dict[str, dict[int, Path]]:
    ending = re.escape(spec.file_ending)
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){ending}$")
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(images_dir.iterdir()):
        match = pattern.match(path.name)
        if match:
            found.setdefault(match["case"], {})[int(match["channel"])] = path
    return found


def list_supervised_cases(dataset_dir: str | Path, spec: DatasetSpec | None = None, split: str = "Tr",
                          strict: bool = True) -> tuple[list[Case], list[BadInputError]]:
    """All cases of `imagesTr` (or `imagesTs`), with the problems found (missing channel, target...).

    Returns (good cases, problems); with `strict`, the first problem is raised instead.
    """
    dataset_dir = Path(dataset_dir)
    spec = spec or load_dataset_json(dataset_dir)
    images_dir = dataset_dir / f"images{split}"
    if not images_dir.is_dir():
        raise BadInputError(images_dir, "folder is missing")
    labels_dir = dataset_dir / f"labels{split}"
    cases, problems = [], []
    for case_id, channels in _cases_in(images_dir, spec).items():
        try:
            cases.append(_make_case(case_id, channels, labels_dir, spec, split))
        except BadInputError as problem:
            if strict:
                raise
            problems.append(problem)
    if not cases and not problems:
        raise BadInputError(images_dir, f"no images named CASE_0000{spec.file_ending}")
    return cases, problems


def _make_case(case_id: str, channels: dict[int, Path], labels_dir: Path, spec: DatasetSpec, split: str) -> Case:
    missing = [spec.channel_names[str(c)] for c in range(spec.num_channels) if c not in channels]
    if missing:
        raise BadInputError(labels_dir.parent / f"images{split}" / f"{case_id}_XXXX{spec.file_ending}",
                            f"case {case_id} lacks channel(s) {', '.join(missing)}")
    case = Case(case_id=case_id, image_files=[str(channels[c]) for c in range(spec.num_channels)],
                subject=spec.case_subjects.get(case_id))
    if split == "Ts" and not labels_dir.is_dir():
        return case
    target = spec.kind.target
    if target == VOXELS:
        label = labels_dir / f"{case_id}{spec.file_ending}"
        if not label.is_file():
            raise BadInputError(label, f"segmentation of case {case_id} is missing")
        case.label_file = str(label)
    elif spec.kind.case_target:
        label = labels_dir / f"{case_id}.txt"
        if not label.is_file():
            raise BadInputError(label, f"target of case {case_id} is missing")
        case.label_file = str(label)
        case.target = read_target_txt(label, (-REGRESSION_TARGET_LIMIT, REGRESSION_TARGET_LIMIT)
                                      if target == CASE_VALUE else None)
        if target == CASE_CLASS and (case.target not in spec.class_values or case.target % 1):
            raise BadInputError(label, f"class {case.target:g} is not one of {spec.class_values}")
        if spec.auxiliary_labels is not None:
            mask = labels_dir / f"{case_id}{spec.file_ending}"
            if mask.is_file():
                case.mask_file = str(mask)
            elif split == "Tr":
                raise BadInputError(mask, f"auxiliary mask of case {case_id} is missing (dataset.json declares "
                                          "auxiliary_labels: every training case needs one, all-zero without a lesion)")
    return case


def list_cases(dataset_dir: str | Path, spec: DatasetSpec | None = None, strict: bool = True
               ) -> tuple[list[Case], list[BadInputError]]:
    """Cases of any dataset: the manifest for pretraining corpora, imagesTr otherwise."""
    dataset_dir = Path(dataset_dir)
    spec = spec or load_dataset_json(dataset_dir)
    if spec.kind.corpus:
        from fomo_nn.datasets.manifest import load_manifest

        return load_manifest(dataset_dir).cases(), []
    return list_supervised_cases(dataset_dir, spec, strict=strict)
