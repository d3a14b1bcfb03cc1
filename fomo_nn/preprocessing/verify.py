"""`--verify`: check a raw dataset end to end without writing anything.

dataset.json against the files (channels, counts, labels without images, targets), and every case
read in full (readable, 3D, finite, not empty, all channels and the mask on one grid, declared
label values only). Returns every problem found, not just the first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fomo_nn.datasets.cases import Case
from fomo_nn.datasets.dataset_json import DatasetSpec
from fomo_nn.datasets.validation import label_endings
from fomo_nn.io import BadInputError
from fomo_nn.preprocessing.case_reading import read_case_images
from fomo_nn.preprocessing.dataset_cases import CaseProblem, dataset_cases
from fomo_nn.preprocessing.parallel import run_parallel


@dataclass
class _Check:
    case: Case
    label_values: list[int] | None


def check_case(check: _Check) -> CaseProblem | None:
    case = check.case
    try:
        mask = case.label_file if case.mask_file is None else case.mask_file
        read_case_images(case.image_files, mask if check.label_values is not None else None, check.label_values)
    except Exception as error:
        return CaseProblem.from_error(case.case_id, error)
    return None


def _layout_problems(raw_dir: Path, spec: DatasetSpec, cases: list[Case]) -> list[CaseProblem]:
    """What dataset.json says versus what the folders hold (supervised layout only)."""
    problems = []
    if spec.task_type == "pretraining":
        return problems
    images_dir, labels_dir = raw_dir / "imagesTr", raw_dir / "labelsTr"
    pattern = re.compile(rf"^.+_\d{{4}}{re.escape(spec.file_ending)}$")
    for path in sorted(images_dir.iterdir()):
        if path.is_file() and not path.name.startswith(".") and not pattern.match(path.name):
            problems.append(CaseProblem(None, str(path), f"not named CASE_XXXX{spec.file_ending} (ignored)"))
        match = re.match(rf"^(.+)_(\d{{4}}){re.escape(spec.file_ending)}$", path.name)
        if match and int(match.group(2)) >= spec.num_channels:
            problems.append(CaseProblem(match.group(1), str(path), f"channel {int(match.group(2))} is not in "
                                        f"dataset.json channel_names (0..{spec.num_channels - 1})"))
    known = {case.case_id for case in cases}
    if labels_dir.is_dir():
        for path in sorted(labels_dir.iterdir()):
            ending = next((e for e in label_endings(spec) if path.name.endswith(e)), None)
            if ending is not None and path.name[: -len(ending)] not in known:
                problems.append(CaseProblem(None, str(path), "label has no images in imagesTr"))
    if spec.num_training is not None and spec.num_training != len(cases):
        problems.append(CaseProblem(None, str(raw_dir / "dataset.json"), f"numTraining is {spec.num_training} but "
                                    f"{len(cases)} usable case(s) were found"))
    return problems


def verify_dataset(raw_dir: str | Path, num_workers: int = 1, progress: bool = True) -> list[CaseProblem]:
    """Every problem of the raw dataset (empty list: ready to preprocess). Writes nothing."""
    raw_dir = Path(raw_dir)
    try:
        spec, cases, problems = dataset_cases(raw_dir)
    except BadInputError as error:
        return [CaseProblem.from_error(None, error)]
    problems += _layout_problems(raw_dir, spec, cases)
    label_values = spec.voxel_label_values
    checks = [_Check(case, label_values) for case in cases]
    for _, problem in run_parallel(check_case, checks, [c.case_id for c in cases], num_workers, "verifying",
                                   progress):
        if problem is not None:
            problems.append(problem)
    return problems
