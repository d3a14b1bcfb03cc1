"""FOMO300K's metadata tables, read into lookups the converter joins onto every scan.

Column names as the organisers' code writes them (asparagus_preprocessing @ fce45b3,
`utils/bids/bids.py` and `utils/bids/config.py`), with a `dataset` column (e.g. `PT021_IXI`,
`PT030_OpenNeuro/ds000117`) in the collection-level tables (as their users read them):

- participants.tsv: dataset, participant_id, session_id, age, sex (+ group, handedness, ...); a row
  without session_id holds for every session of the subject.
- mri_info.tsv: dataset, participant_id, session_id, filename (`sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz`),
  then DICOM/BIDS sidecar fields: Manufacturer, MagneticFieldStrength, ManufacturersModelName, ...
- mapping.tsv: dataset, old_path, new_path, old_filename, new_filename, participant_id, session_id, modality.

A table inside a source folder has no `dataset` column: its folder says which source it describes.
Values are messy in the real tables (free-text vendors, field strength 15000 meaning 15000 gauss = 1.5 T,
ages such as "25Y" or "20-25"): each is normalized by one small rule below, and a value no rule reads
is left unknown rather than guessed. A table that cannot be read, or lacks participant_id, is one bad
input naming it; the conversion goes on without it.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from dataset_conversion.fomo300k_layout import sequence_stem, source_key
from fomo_nn.utils.errors import BadInputError

_MISSING = {"", "n/a", "na", "nan", "none", "null", "unknown", "-", "?"}
_VENDORS = (("siemens", "Siemens"), ("ge ", "GE"), ("general electric", "GE"), ("philips", "Philips"),
            ("toshiba", "Toshiba"), ("canon", "Canon"), ("hitachi", "Hitachi"), ("bruker", "Bruker"),
            ("brucker", "Bruker"), ("ningbo", "Ningbo Xingaoyi"))
_SEX = {"m": "M", "male": "M", "man": "M", "boy": "M", "f": "F", "female": "F", "woman": "F", "girl": "F",
        "w": "F"}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:y|yr|yrs|years?)?\s*(?:(?:-|to)\s*(\d+(?:\.\d+)?)\s*(?:y|years?)?)?"
                  r"\s*\+?\s*$", re.IGNORECASE)

ScanKey = tuple  # (PT number, ds or None, participant, session, sequence lower-case)


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _MISSING else text


def normalize_vendor(value) -> str | None:
    """`SIEMENS`, `Siemens Healthineers` -> Siemens; `GE MEDICAL SYSTEMS` -> GE; unknown names as given."""
    text = _text(value)
    if text is None:
        return None
    lower = text.lower() + " "
    for key, name in _VENDORS:
        if lower.startswith(key) or (len(key) > 3 and key in lower):
            return name
    return text


def normalize_field_strength(value) -> float | None:
    """Tesla; values above 100 are gauss (15000 -> 1.5); outside (0, 12] T is unknown."""
    text = _text(value)
    try:
        tesla = float(text) if text is not None else None
    except ValueError:
        return None
    if tesla is None or tesla != tesla:
        return None
    if tesla > 100:
        tesla /= 10000.0
    return round(tesla, 2) if 0 < tesla <= 12 else None


def normalize_age(value) -> float | None:
    """Years: `25`, `25Y`, `89+` -> 89, a range `20-25` -> its middle; anything else unknown."""
    text = _text(value)
    match = _AGE.match(text) if text is not None else None
    if match is None:
        return None
    low = float(match.group(1))
    age = (low + float(match.group(2))) / 2 if match.group(2) else low
    return round(age, 2) if 0 <= age <= 120 else None


def normalize_sex(value) -> str | None:
    text = _text(value)
    return _SEX.get(text.lower()) if text is not None else None


@dataclass
class ScanMetadata:
    vendor: str | None = None
    field_strength: float | None = None
    modality: str | None = None


@dataclass
class CorpusMetadata:
    scans: dict[ScanKey, ScanMetadata] = field(default_factory=dict)
    sessions: dict[tuple, tuple[float | None, str | None]] = field(default_factory=dict)  # (pt, ds, sub, ses)
    subjects: dict[tuple, tuple[float | None, str | None]] = field(default_factory=dict)  # (pt, ds, sub)
    rows_read: dict[str, int] = field(default_factory=dict)  # table name -> rows used

    def scan(self, source: str, subject: str, session: str, sequence: str) -> ScanMetadata:
        return self.scans.get((*source_key(source), subject, session, sequence.lower()), ScanMetadata())

    def demographics(self, source: str, subject: str, session: str) -> tuple[float | None, str | None]:
        key = source_key(source)
        found = self.sessions.get((*key, subject, session))
        if found is not None and (found[0] is not None or found[1] is not None):
            return found
        return self.subjects.get((*key, subject), (None, None))


def read_tables(tables: list[tuple[str | None, Path]]) -> tuple[CorpusMetadata, list[BadInputError]]:
    """All tables found; collection-level rows first, a source folder's own rows fill what is missing.

    Rows are streamed and only the columns used are kept: mri_info.tsv has ~20 columns and 306K rows.
    A table that breaks part-way is reported; the rows before the break are used.
    """
    metadata, problems = CorpusMetadata(), []
    for source, path in sorted(tables, key=lambda item: item[0] is not None):
        reader, columns = _READERS[path.name]
        try:
            used = reader(metadata, _rows(path, columns), source)
        except BadInputError as error:
            problems.append(error)
            continue
        metadata.rows_read[path.name] = metadata.rows_read.get(path.name, 0) + used
    return metadata, problems


def _rows(path: Path, wanted: tuple[str, ...]):
    """Each row of a tab-separated table as {column: value} for the `wanted` columns present."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, [])
            if "participant_id" not in header:
                raise BadInputError(path, f"has no participant_id column (columns: {', '.join(header) or 'none'})")
            where = [(name, header.index(name)) for name in wanted if name in header]
            for row in reader:
                yield {name: row[i] for name, i in where if i < len(row)}
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadInputError(path, f"cannot be read as a tab-separated table ({error})") from None


def _row_source(row: dict, source: str | None) -> tuple[str, str | None] | None:
    dataset = _text(row.get("dataset")) or source
    return source_key(dataset) if dataset else None


def _read_participants(metadata: CorpusMetadata, rows, source: str | None) -> int:
    used = 0
    for row in rows:
        key, subject = _row_source(row, source), _text(row.get("participant_id"))
        if key is None or subject is None:
            continue
        value = (normalize_age(row.get("age")), normalize_sex(row.get("sex")))
        session = _text(row.get("session_id"))
        if session is None:
            metadata.subjects.setdefault((*key, subject), value)
        else:
            metadata.sessions.setdefault((*key, subject, session), value)
            metadata.subjects.setdefault((*key, subject), value)
        used += 1
    return used


def _scan_key(key, subject: str, session: str | None, filename: str | None):
    if session is None or filename is None:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    for ending in (".nii.gz", ".nii", ".pt"):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    return (*key, subject, session, sequence_stem(name, subject, session).lower())


def _read_mri_info(metadata: CorpusMetadata, rows, source: str | None) -> int:
    used = 0
    for row in rows:
        key = _row_source(row, source)
        subject = _text(row.get("participant_id"))
        scan = _scan_key(key, subject, _text(row.get("session_id")), _text(row.get("filename"))) \
            if key and subject else None
        if scan is None:
            continue
        entry = metadata.scans.setdefault(scan, ScanMetadata())
        entry.vendor = entry.vendor or normalize_vendor(row.get("Manufacturer"))
        entry.field_strength = entry.field_strength or normalize_field_strength(row.get("MagneticFieldStrength"))
        used += 1
    return used


def _read_mapping(metadata: CorpusMetadata, rows, source: str | None) -> int:
    used = 0
    for row in rows:
        key = _row_source(row, source)
        subject = _text(row.get("participant_id"))
        filename = _text(row.get("new_filename")) or _text(row.get("new_path"))
        scan = _scan_key(key, subject, _text(row.get("session_id")), filename) if key and subject else None
        if scan is None:
            continue
        entry = metadata.scans.setdefault(scan, ScanMetadata())
        entry.modality = entry.modality or _text(row.get("modality"))
        used += 1
    return used


_READERS = {  # table -> (reader, the columns it uses)
    "participants.tsv": (_read_participants, ("dataset", "participant_id", "session_id", "age", "sex")),
    "mri_info.tsv": (_read_mri_info, ("dataset", "participant_id", "session_id", "filename", "Manufacturer",
                                      "MagneticFieldStrength")),
    "mapping.tsv": (_read_mapping, ("dataset", "participant_id", "session_id", "new_filename", "new_path",
                                    "modality")),
}
