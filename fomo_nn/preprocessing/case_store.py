"""The preprocessed case format, written and read here only: which files make a case, the finished-case
rule, the signature, and the refusal of cases training cannot use.

Per case, in the configuration folder (e.g. `3d_fullres/`; names in case_files):
- `CASE.b2nd`: the image, a blosc2 NDArray (C, X, Y, Z) in C order, stored as plans `storage` says and
  read back as float32 (array_store: dtype, codec, chunks and blocks of one array);
- `CASE_seg.b2nd`: int8 (1, X, Y, Z), the voxel labels of the case (the segmentation target, or the
  auxiliary mask of a classification/regression dataset with plans `auxiliary_labels`, such as task 1's
  infarcts); absent otherwise;
- `CASE.json`: properties, with the preprocessing signature and `arrays`: each array's record (shape,
  dtype, bytes, CRC-32 of the file; array_store.array_record).
Arrays are renamed into place when complete; CASE.json is written last, so its presence, with the arrays
beside it and the current signature inside it, means the case is complete. A rewrite first removes
CASE.json (and, without a mask, an older CASE_seg.b2nd), so no stale mask is ever read as this case's.

The old format (before the compressed store): CASE.npy float32 and CASE_seg.npy. Its signature (no
`storage`) differs from every current one, so `list_cases` refuses such a folder with one message naming
the format and the command that rewrites it; a rewrite removes the case's .npy files.

Start-up and resume read every CASE.json through the case index (case_index: `_cases.index` and the
shards' parts, rebuilt from the files whenever it disagrees with them). Both compare each array file's
size with its record (one stat per array, in the folder listing): a truncated, emptied or swapped
array makes its case DAMAGED, rewritten by the next preprocessing run and refusing training until then.
Every array read checks its shape against CASE.json and names a file it cannot decode
(array_store.StoredArray); `fomo_nn_preprocess --verify` checks every byte (`verify_cases`).

A dataset is complete when every case its preprocessing runs planned (planned_cases) is finished or was
reported bad: `list_cases` refuses a partial one (a killed run, a deleted CASE.json), naming how many
are missing and the command, unless told `allow_incomplete` (then logged).

API: `write_case` (-> CaseEntry), `remove_case`, `verify_case`, `survey(folder, plans, case_ids)` (one look at a folder:
state and entry of every written case), and `list_cases(folder, plans)`, through which training reads:
it refuses a folder holding cases of other plans (a changed spacing, normalization or storage dtype) or
of the old format, since the model would record plans that prediction then preprocesses differently from
what it was trained on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans.records import PLANS_FILE, load_plans
from fomo_nn.preprocessing.array_store import StoredArray, check_array_file, save_array_atomic, stored_image
from fomo_nn.preprocessing.case_files import (CASE_SUFFIXES, DATA_SUFFIX, OLD_DATA_SUFFIX, SEG_SUFFIX,
                                              SIGNATURE_KEY, case_paths)
from fomo_nn.preprocessing.case_index import CaseEntry, FolderListing, case_index, file_stamp
from fomo_nn.preprocessing.planned_cases import incomplete_cases, read_plan
from fomo_nn.utils.files import write_json_atomic

logger = logging.getLogger(__name__)
NAMED = 5  # case ids a message names before it counts the rest

SIGNATURE_VERSION = 2  # 2: the storage format and dtype enter the signature (compressed store)
# where one case stands against the plans it is read or written for
FINISHED, UNFINISHED, STALE, MISSING_SEG, OLD_FORMAT = "finished", "unfinished", "stale", "missing_seg", "old_format"
DAMAGED = "damaged"  # an array file whose size differs from its CASE.json record
STATES = (FINISHED, UNFINISHED, STALE, MISSING_SEG, OLD_FORMAT, DAMAGED)


# ------------------------------------------------------------------------------------------------ writing
def preprocessing_signature(plans) -> str:
    """A short hash of every plans field that changes the preprocessed arrays' values."""
    relevant = {"version": SIGNATURE_VERSION, "task_type": plans.task_type, "channels": list(plans.channel_names),
                "target_spacing": [round(float(s), 6) for s in plans.target_spacing],
                "normalization": [asdict(n) for n in plans.normalization], "labels": plans.labels,
                "configuration": plans.configuration,
                "storage": {"format": plans.storage.format, "dtype": plans.storage.dtype}}
    if plans.auxiliary_labels:  # only when set, so datasets without masks keep their signatures
        relevant["auxiliary_labels"] = plans.auxiliary_labels
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def write_case(folder: str | Path, case_id: str, data: np.ndarray, seg: np.ndarray | None, properties: dict,
               plans) -> "CaseEntry":
    """Write one case for `plans` (its storage and signature); returns the case's index entry."""
    paths = case_paths(folder, case_id)
    paths["properties"].unlink(missing_ok=True)  # a rewrite is unfinished until the new CASE.json lands
    for old in (paths["old_data"], paths["old_seg"]):
        old.unlink(missing_ok=True)
    image = stored_image(data, plans.storage, case_id)
    arrays = {"data": save_array_atomic(paths["data"], image, plans.storage)}
    if seg is not None:
        arrays["seg"] = save_array_atomic(paths["seg"], np.ascontiguousarray(seg, dtype=np.int8), plans.storage)
    else:
        paths["seg"].unlink(missing_ok=True)
    record = {**properties, "shape": [int(s) for s in image.shape], "arrays": arrays,
              SIGNATURE_KEY: preprocessing_signature(plans)}
    write_json_atomic(paths["properties"], record, indent=None)
    return CaseEntry.of(case_id, record, file_stamp(os.stat(paths["properties"])))


def expects_seg(plans) -> bool:
    """Whether every finished case of these plans has a CASE_seg.b2nd."""
    return plans.voxel_labels is not None


def remove_stale_temporaries(folder: str | Path, case_ids, listing: "FolderListing | None" = None) -> None:
    """Temporary files killed writers left for these cases (never other cases'), from one listing."""
    listing = listing or FolderListing.scan(folder)
    if not listing.hidden:
        return
    owners = {f"{case_id}{suffix}" for case_id in case_ids for suffix in CASE_SUFFIXES}
    for name in listing.hidden:
        rest = name[1:]
        if any(rest[:cut] in owners for cut in range(len(rest)) if rest[cut] == "."):
            (Path(folder) / name).unlink(missing_ok=True)


def remove_case(folder: str | Path, case_id: str) -> bool:
    """Remove every file of one case, CASE.json first (so a removal cut short leaves an unfinished case,
    never a finished one without its arrays); whether there was any."""
    paths, removed = case_paths(folder, case_id), False
    for key in ("properties", "data", "seg", "old_data", "old_seg"):
        try:
            paths[key].unlink()
            removed = True
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class PreprocessedCase:
    """One finished case: arrays opened per use (patch reads decompress only what they touch), properties
    read once, on first use; subject, session and target come from the index entry when there is one."""

    folder: str
    case_id: str
    entry: CaseEntry | None = field(default=None, compare=False, repr=False)

    @property
    def data_path(self) -> Path:
        return case_paths(self.folder, self.case_id)["data"]

    @property
    def seg_path(self) -> Path:
        return case_paths(self.folder, self.case_id)["seg"]

    @cached_property
    def properties(self) -> dict:
        return json.loads(case_paths(self.folder, self.case_id)["properties"].read_text())

    def __getstate__(self) -> dict:  # workers get the case, not the properties one process read
        return {k: v for k, v in self.__dict__.items() if k != "properties"}

    def data(self) -> StoredArray:
        """(C, X, Y, Z) float32, read lazily: slicing decompresses only the patch's blocks; its shape is checked
        against CASE.json's (through the index entry, which matches it)."""
        return StoredArray(self.data_path, self._shape())

    def seg(self) -> StoredArray | None:
        if not self.seg_path.is_file():
            return None
        shape = self._shape()
        return StoredArray(self.seg_path, None if shape is None else (1, *shape[1:]))

    def _shape(self):
        return self.entry.shape if self.entry is not None and self.entry.shape else self.properties.get("shape")

    @property
    def target(self) -> float | None:
        return self.entry.target if self.entry else self.properties.get("target")

    @property
    def subject(self) -> str:
        return (self.entry.subject if self.entry else self.properties.get("subject")) or self.case_id

    @property
    def session(self) -> str | None:
        return self.entry.session if self.entry else self.properties.get("session")

    def foreground_locations(self) -> np.ndarray:
        """All sampled foreground voxels (any label > 0) as an (N, 3) int array (CASE.json is not read when
        the index says there are none)."""
        if self.entry is not None and self.entry.foreground == 0:
            return np.zeros((0, 3), dtype=np.int64)
        locations = self.properties.get("foreground_locations") or {}
        arrays = [np.asarray(v, dtype=np.int64).reshape(-1, 3) for v in locations.values() if len(v)]
        return np.concatenate(arrays) if arrays else np.zeros((0, 3), dtype=np.int64)


# ------------------------------------------------------------------------------------------------- survey
@dataclass
class FolderSurvey:
    """One look at a configuration folder for some plans: the state and index entry of every written case."""

    folder: Path
    listing: FolderListing
    states: dict[str, str]
    entries: dict[str, CaseEntry]

    def ids(self, state: str) -> list[str]:
        return [case_id for case_id, s in self.states.items() if s == state]


def survey(folder: str | Path, plans, case_ids=None, progress: bool = True) -> FolderSurvey:
    """Where every written case of `folder` (of `case_ids`, when given) stands against `plans`, from one
    listing and the index (see case_index)."""
    folder = Path(folder)
    listing = FolderListing.scan(folder)
    entries = case_index(folder, case_ids, progress, listing)
    signature, needs_seg = preprocessing_signature(plans), expects_seg(plans)
    written = listing.written_case_ids() if case_ids is None else \
        sorted(set(case_ids) & set(listing.written_case_ids()))
    states = {c: _state(listing, entries.get(c), c, signature, needs_seg) for c in written}
    return FolderSurvey(folder, listing, states, entries)


def _state(listing: FolderListing, entry: CaseEntry | None, case_id: str, signature: str, needs_seg: bool) -> str:
    """FINISHED, UNFINISHED (CASE.json or CASE.b2nd absent: its writer never got to the end), OLD_FORMAT
    (CASE.json beside a CASE.npy), STALE (CASE.json without this signature: other plans, or unreadable),
    MISSING_SEG, or DAMAGED (an array file of another size than CASE.json records)."""
    if entry is None:
        return UNFINISHED
    if not listing.has(case_id, DATA_SUFFIX):
        return OLD_FORMAT if listing.has(case_id, OLD_DATA_SUFFIX) else UNFINISHED
    if entry.signature != signature:
        return STALE
    if needs_seg and not listing.has(case_id, SEG_SUFFIX):
        return MISSING_SEG
    for key, suffix in (("data", DATA_SUFFIX), ("seg", SEG_SUFFIX)):
        recorded = entry.array_bytes(key)
        if recorded is not None and listing.sizes.get(f"{case_id}{suffix}") != recorded:
            return DAMAGED
    return FINISHED


def preprocess_command(folder: str | Path, plans) -> str:
    """What rewrites `folder`'s cases for `plans`: fomo_nn_preprocess follows the dataset's own plans.json,
    so plans from elsewhere (fomo_nn_train -p) must be saved there first."""
    dataset_dir = Path(folder).parent
    command = f"fomo_nn_preprocess -d {dataset_dir.name}"
    try:
        same = preprocessing_signature(load_plans(dataset_dir / PLANS_FILE)) == preprocessing_signature(plans)
    except BadInputError:
        same = False
    return command if same else f"save these plans as {dataset_dir / PLANS_FILE}, then run {command}"


def list_cases(folder: str | Path, plans, progress: bool = True, allow_incomplete: bool = False) -> list[PreprocessedCase]:
    """The finished cases of `folder` for `plans`. One case of other plans or of the old format, without the
    mask the plans expect, or with a damaged array refuses the whole folder, naming the command that
    preprocesses it again; so does a partial dataset (cases planned but not finished), unless
    `allow_incomplete` (then the missing cases are logged)."""
    found = survey(folder, plans, progress=progress)
    by_state = {state: found.ids(state) for state in STATES}
    _refuse_unusable(found.folder, plans, by_state)
    plan = read_plan(found.folder, preprocessing_signature(plans))
    missing = incomplete_cases(plan, by_state[FINISHED], by_state[UNFINISHED])
    if missing or plan.missing_shards:
        message = _incomplete_message(found.folder, plans, missing, len(by_state[FINISHED]), plan.missing_shards)
        if not allow_incomplete:
            raise BadInputError(found.folder, message + " (or train on what exists with --allow-incomplete-dataset)")
        logger.warning("%s: %s; training on the %d finished case(s) anyway (--allow-incomplete-dataset)",
                       found.folder, message, len(by_state[FINISHED]))
    folder_name = str(found.folder)
    return [PreprocessedCase(folder_name, case_id, found.entries[case_id]) for case_id in found.ids(FINISHED)]


def _incomplete_message(folder: Path, plans, missing: list[str], finished: int, missing_shards=()) -> str:
    command = preprocess_command(folder, plans)
    parts = []
    if missing:
        more = f" and {len(missing) - NAMED} more" if len(missing) > NAMED else ""
        parts.append(f"{len(missing)} of {len(missing) + finished} planned case(s) have no finished preprocessed case "
                     f"(e.g. {', '.join(missing[:NAMED])}{more}; a killed run or a deleted CASE.json)")
    if missing_shards:
        more = f" and {len(missing_shards) - NAMED} more" if len(missing_shards) > NAMED else ""
        parts.append(f"shard(s) {', '.join(missing_shards[:NAMED])}{more} never ran (their cases are not counted above)")
    shards = " (or run the missing shards: --shard I/N)" if missing_shards else ""
    return f"the preprocessing did not finish: {'; '.join(parts)}; finish it: {command}{shards}"


def _refuse_unusable(folder: Path, plans, by_state: dict[str, list[str]]) -> None:
    """One BadInputError for the first problem: old format, stale cases, missing masks, damaged arrays, or no
    finished case."""
    stale, no_seg, unfinished, old = by_state[STALE], by_state[MISSING_SEG], by_state[UNFINISHED], by_state[OLD_FORMAT]
    damaged = by_state[DAMAGED]
    if by_state[FINISHED] and not stale and not no_seg and not old and not damaged:
        return
    written = sum(len(by_state[state]) for state in (FINISHED, STALE, MISSING_SEG, OLD_FORMAT, DAMAGED))
    command = preprocess_command(folder, plans)
    if old:
        raise BadInputError(folder, f"{len(old)} of {written} preprocessed case(s) are in the old .npy format "
                                    f"(float32 CASE.npy, from before the compressed store; e.g. "
                                    f"{', '.join(old[:3])}): preprocess again, which writes CASE.b2nd "
                                    f"(about a quarter of the bytes) and removes the .npy files: {command}")
    if stale:
        raise BadInputError(folder, f"{len(stale)} of {written} preprocessed case(s) were written for other plans "
                                    f"than these ({SIGNATURE_KEY} other than {preprocessing_signature(plans)} or "
                                    f"none; e.g. {', '.join(stale[:3])}): training on them would record plans that "
                                    f"prediction preprocesses differently; preprocess again: {command}")
    if no_seg:
        raise BadInputError(case_paths(folder, no_seg[0])["seg"],
                            f"{len(no_seg)} of {written} preprocessed case(s) lack the CASE{SEG_SUFFIX} the plans "
                            f"expect (voxel labels {plans.voxel_labels}; e.g. {', '.join(no_seg[:3])}): preprocess "
                            f"again: {command}")
    if damaged:
        raise BadInputError(case_paths(folder, damaged[0])["data"],
                            f"{len(damaged)} of {written} preprocessed case(s) have array files of another size than "
                            f"their CASE.json records (truncated, emptied, or another case's array copied over; e.g. "
                            f"{', '.join(damaged[:3])}): rewrite them: {command}")
    count = f" ({len(unfinished)} unfinished)" if unfinished else ""
    raise BadInputError(folder, f"no finished preprocessed case{count}: preprocess: {command}")


# ------------------------------------------------------------------------------------------------- verify
def verify_case(folder: str | Path, case_id: str) -> str | None:
    """The problem of one finished case's arrays against its CASE.json records, every byte read (None: as
    recorded); what `fomo_nn_preprocess --verify` runs before it rewrites the damaged cases."""
    paths = case_paths(folder, case_id)
    try:
        properties = json.loads(paths["properties"].read_text())
    except (OSError, ValueError) as error:
        return f"{paths['properties']}: cannot be read ({error})"
    records = properties.get("arrays") or {}
    shape = properties.get("shape")
    for key in ("data", "seg"):
        if not paths[key].is_file():
            continue
        record = records.get(key)
        if record is None and shape is not None:  # written before records: decode it whole
            record_shape = shape if key == "data" else [1, *shape[1:]]
            problem = check_array_file(paths[key], None)
            if problem is None:
                array = StoredArray(paths[key])
                problem = None if list(array.shape) == list(record_shape) else \
                    f"holds shape {list(array.shape)}, CASE.json records {record_shape}"
        else:
            problem = check_array_file(paths[key], record)
        if problem:
            return f"{paths[key]}: {problem}"
    return None
