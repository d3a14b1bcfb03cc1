"""Find the per-case files of one side (reference or prediction) in the layouts people actually have.

Accepted, for a folder ROOT (case ids must match between reference and prediction):
- FOMO task folder: ROOT/labels/... is used when ROOT holds a `labels` folder.
- nnU-Net raw dataset: ROOT/labelsTr (or labelsTs) is used when ROOT holds exactly one of them.
- flat: ROOT/CASE.nii.gz (any mask ending) or ROOT/CASE.txt -> case CASE. This is also what
  fomo_nn_predict and the FOMO25 containers write.
- FOMO labels: ROOT/sub_X/ses_1/seg.nii.gz or ROOT/sub_X/seg.nii.gz (label.txt for scalars; FOMO26:
  sub-XX/ses-01/ and labels.txt, asparagus_preprocessing @ fce45b3) -> case sub_X. A subject with labels in several sessions gives cases sub_X_ses_N.
- scalars only: a CSV file (ROOT itself, or ROOT/predictions.csv, or the one *.csv in ROOT) with
  columns `case_id,value` or two unnamed columns. Classification predictions prefer two prob_<class>
  columns (fomo_nn_predict writes the predicted class in `value` and the probabilities there).
Per-case .txt files win over a CSV in the same folder; CASE_probabilities.nii.gz beside CASE.nii.gz
(fomo_nn_predict --save-probabilities) is not a case.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.number_file import parse_number, read_number_file

MASK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
FOMO_MASK_STEM = "seg"
FOMO_TARGET_NAMES = ("label.txt", "labels.txt")  # FOMO25 and FOMO26 tasks 1; FOMO26 tasks 3 and 5
PREDICTIONS_CSV = "predictions.csv"
PROBABILITY_SUFFIX = "_probabilities"


@dataclass(frozen=True)
class ScalarEntry:
    """One case's number and where it came from (for error messages)."""

    value: float
    source: str


def mask_ending(name: str) -> str | None:
    lowered = name.lower()
    return next((ending for ending in MASK_ENDINGS if lowered.endswith(ending)), None)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def resolve_root(path: str | Path) -> Path:
    """Descend into `labels/` or `labelsTr|labelsTs/` when pointed at the folder above them."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "does not exist")
    if not path.is_dir():
        return path
    if (path / "labels").is_dir():
        return path / "labels"
    split_folders = [path / name for name in ("labelsTr", "labelsTs") if (path / name).is_dir()]
    if len(split_folders) == 2:
        raise BadInputError(path, "holds both labelsTr and labelsTs; point at the one to score")
    return split_folders[0] if split_folders else path


def _add_case(found: dict, case_id: str, item, path: Path) -> None:
    if case_id in found:
        raise BadInputError(path, f"case {case_id} appears twice (also {_source_of(found[case_id])})")
    found[case_id] = item


def _source_of(item) -> str:
    return item.source if isinstance(item, ScalarEntry) else str(item)


def _matching_file(folder: Path, matches) -> list[Path]:
    """The one file of `folder` that `matches` (as a 0- or 1-element list)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and matches(p.name))
    if len(files) > 1:
        raise BadInputError(folder, f"holds several label files: {', '.join(p.name for p in files)}")
    return files


def _nested_files(root: Path, matches) -> dict[str, Path]:
    """sub_X/<file> or sub_X/<session>/<file> -> {case id: file}."""
    found: dict[str, Path] = {}
    for subject in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        hits = [(subject.name, path) for path in _matching_file(subject, matches)]
        for session in sorted(p for p in subject.iterdir() if p.is_dir() and _visible(p)):
            hits += [(f"{subject.name}_{session.name}", path) for path in _matching_file(session, matches)]
        if len(hits) == 1:
            hits = [(subject.name, hits[0][1])]
        for case_id, path in hits:
            _add_case(found, case_id, path, path)
    return found


def _is_probability_map(case_id: str, found: dict) -> bool:
    """CASE_probabilities.nii.gz beside CASE.nii.gz: fomo_nn_predict --save-probabilities, not a case."""
    return case_id.endswith(PROBABILITY_SUFFIX) and case_id[: -len(PROBABILITY_SUFFIX)] in found


def find_masks(path: str | Path) -> dict[str, Path]:
    """{case id: mask file} for a folder in any accepted layout."""
    root = resolve_root(path)
    if not root.is_dir():
        raise BadInputError(root, "segmentation needs a folder of mask files, not a single file")
    flat: dict[str, Path] = {}
    for file in sorted(p for p in root.iterdir() if p.is_file() and _visible(p)):
        ending = mask_ending(file.name)
        if ending:
            _add_case(flat, file.name[: -len(ending)], file, file)
    if flat:
        return {case: path for case, path in flat.items() if not _is_probability_map(case, flat)}
    nested = _nested_files(root, lambda name: mask_ending(name) is not None
                           and name[: -len(mask_ending(name))] == FOMO_MASK_STEM)
    if not nested:
        raise BadInputError(root, "no masks found: expected CASE.nii.gz files or sub_X/[ses_1/]seg.nii.gz")
    return nested


def read_number_txt(path: str | Path) -> float:
    """A per-case .txt holding exactly one finite number (the one strict reader: fomo_nn.io.number_file)."""
    return read_number_file(path)


def _probability_column(path: Path, names: list[str], index: int) -> int:
    """fomo_nn_predict's classification CSV: `value` is the predicted class, prob_<class> columns (in class
    order) hold the probabilities; AUROC needs the positive class's one."""
    columns = [i for i, name in enumerate(names) if name.startswith("prob_")]
    if len(columns) != 2:
        raise BadInputError(path, f"holds {len(columns)} class probability columns; AUROC scores binary tasks")
    return columns[index]


def _csv_columns(path: Path, header: list[str], probability_column: int | None) -> tuple[int, int, bool]:
    """(id column, value column, whether the first row is a header)."""
    names = [name.strip().lower() for name in header]
    if "case_id" in names:
        if probability_column is not None and any(name.startswith("prob_") for name in names):
            return names.index("case_id"), _probability_column(path, names, probability_column), True
        if "value" in names:
            return names.index("case_id"), names.index("value"), True
        if len(names) == 2:
            return names.index("case_id"), 1 - names.index("case_id"), True
        raise BadInputError(path, f"has a case_id column but no 'value' column (columns: {', '.join(header)})")
    if len(header) < 2:
        raise BadInputError(path, "expected columns case_id,value (or two columns: case id, value)")
    has_header = parse_number(header[1]) is None
    if has_header and len(header) != 2:
        raise BadInputError(path, f"cannot tell which column holds the value (columns: {', '.join(header)}); "
                                  "name them case_id and value")
    return 0, 1, has_header


def read_scalar_csv(path: str | Path, probability_column: int | None = None) -> dict[str, ScalarEntry]:
    """{case id: value}; with `probability_column` (0 or 1), prob_<class> columns win over `value`."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadInputError(path, f"cannot read as CSV ({error})") from None
    if not rows:
        raise BadInputError(path, "is empty")
    id_column, value_column, has_header = _csv_columns(path, rows[0], probability_column)
    found: dict[str, ScalarEntry] = {}
    for line_number, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        if len(row) <= max(id_column, value_column):
            raise BadInputError(path, f"line {line_number} has {len(row)} columns")
        value = parse_number(row[value_column])
        if value is None:
            raise BadInputError(path, f"line {line_number}: value {row[value_column]!r} is not a number")
        case_id = row[id_column].strip()
        _add_case(found, case_id, ScalarEntry(value, f"{path}:{line_number}"), path)
    return found


def _csv_in(root: Path) -> Path | None:
    if (root / PREDICTIONS_CSV).is_file():
        return root / PREDICTIONS_CSV
    candidates = sorted(p for p in root.glob("*.csv") if _visible(p))
    if len(candidates) > 1:
        raise BadInputError(root, f"holds several CSV files ({', '.join(p.name for p in candidates)}); "
                                  "point at the one to score")
    return candidates[0] if candidates else None


def find_scalars(path: str | Path, probability_column: int | None = None) -> dict[str, ScalarEntry]:
    """{case id: number} for a CSV file or a folder in any accepted layout.

    `probability_column`: for classification predictions, which of two prob_<class> CSV columns (in class
    order) is the positive class's probability; per-case .txt files hold that probability already.
    """
    root = resolve_root(path)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise BadInputError(root, "expected a folder of per-case .txt files or a .csv file")
        return read_scalar_csv(root, probability_column)
    flat: dict[str, ScalarEntry] = {}
    for file in sorted(p for p in root.glob("*.txt") if p.is_file() and _visible(p)):
        _add_case(flat, file.stem, ScalarEntry(read_number_txt(file), str(file)), file)
    if flat:
        return flat
    nested = _nested_files(root, lambda name: name in FOMO_TARGET_NAMES)
    if nested:
        return {case_id: ScalarEntry(read_number_txt(file), str(file)) for case_id, file in nested.items()}
    csv_file = _csv_in(root)
    if csv_file is None:
        raise BadInputError(root, "no per-case values found: expected CASE.txt files, "
                                  "sub_X/[ses_1/]label.txt (or labels.txt), or a CSV with columns case_id,value")
    return read_scalar_csv(csv_file, probability_column)
