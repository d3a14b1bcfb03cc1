"""The case index of a configuration folder: what start-up and resume need of every CASE.json, without
opening each one.

`_cases.index` (JSON; a name starting with '_' is never a case id, and not ending in .json leaves
`*.json` one file per case) caches every CASE.json: signature, shape, subject, session, target,
sequence, foreground location count, the recorded byte size of each array, and the (inode, size,
mtime) of the CASE.json it was read from. Each index file carries the SHA-1 of its entries: a file
edited by hand (say, its targets) no longer matches and is read as absent, so what training uses
comes from the CASE.json files.
Rule: an entry is used while its CASE.json still has that stamp (one os.scandir and one stat per
CASE.json, no open); a CASE.json without a matching entry is read (only those) and the index saved
again, with a note; entries whose CASE.json is gone are dropped. So the index may be missing, stale or
deleted at any time: it is rebuilt, never trusted over the files. Writers: every case written returns
its `CaseEntry`; the preprocessing runner collects them in an `IndexWriter` (saved every
INDEX_FLUSH_SECONDS and on exit): a whole run writes `_cases.index` (and removes shard parts), shard I
of N its own `_cases.shard_I_of_N.index` (shards never share a file), and the first reader merges the
parts into `_cases.index`.

API: `FolderListing.scan(folder)` (the one directory listing), `case_index(folder)` ({case_id:
CaseEntry}) and `IndexWriter(folder, shard)`. Whether a case is finished for some plans is the case
format's rule (case_store.survey), read from these entries.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from tqdm import tqdm

from fomo_nn.preprocessing.case_files import DATA_SUFFIX, OLD_DATA_SUFFIX, PROPERTIES_SUFFIX, SIGNATURE_KEY, case_paths
from fomo_nn.utils.files import write_json_atomic

logger = logging.getLogger(__name__)
INDEX_NAME, INDEX_PREFIX, INDEX_SUFFIX = "_cases.index", "_cases.", ".index"
INDEX_VERSION = 2  # 2: array sizes in every entry, the digest of the entries
INDEX_FLUSH_SECONDS = 30.0  # a killed writer loses at most this much of its index (rebuilt from CASE.json)


def index_part_name(shard) -> str:
    """The index file one writer owns: the whole index for a whole run, a part for shard I of N."""
    return INDEX_NAME if shard is None else f"{INDEX_PREFIX}shard_{shard.index}_of_{shard.count}{INDEX_SUFFIX}"


def file_stamp(stat: os.stat_result) -> tuple[int, int, int]:
    """What an entry records of its CASE.json: (inode, size, mtime_ns), changed by every rewrite."""
    return int(stat.st_ino), int(stat.st_size), int(stat.st_mtime_ns)


@dataclass(frozen=True)
class CaseEntry:
    """What start-up needs of one case, read from its CASE.json, whose (inode, size, mtime_ns) is `stamp`."""

    case_id: str
    signature: str | None
    shape: tuple[int, ...] | None  # (C, X, Y, Z) as stored; None for the old format
    subject: str | None
    session: str | None
    sequence: str | None
    target: float | None
    foreground: int  # sampled foreground locations (segmentation oversampling)
    stamp: tuple[int, int, int]
    arrays: dict | None = None  # {"data": bytes, "seg": bytes} as CASE.json records them; None: no record

    def array_bytes(self, key: str) -> int | None:
        return (self.arrays or {}).get(key)

    @classmethod
    def of(cls, case_id: str, properties: dict, stamp) -> "CaseEntry":
        locations = properties.get("foreground_locations") or {}
        shape = properties.get("shape")
        return cls(case_id=case_id, signature=properties.get(SIGNATURE_KEY),
                   shape=tuple(int(s) for s in shape) if shape else None, subject=properties.get("subject"),
                   session=properties.get("session"), sequence=properties.get("sequence"),
                   target=properties.get("target"),
                   foreground=int(sum(len(v) for v in locations.values())) if isinstance(locations, dict) else 0,
                   stamp=tuple(int(s) for s in stamp), arrays=_array_sizes(properties.get("arrays")))

    @classmethod
    def unreadable(cls, case_id: str, stamp) -> "CaseEntry":
        """A CASE.json that cannot be read: no signature, so it reads as stale (written for no plans)."""
        return cls(case_id, None, None, None, None, None, None, 0, tuple(stamp))

    def to_json(self) -> dict:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "case_id"}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}

    @classmethod
    def from_json(cls, case_id: str, data: dict) -> "CaseEntry":
        return cls(case_id=case_id, **{**data, "shape": tuple(data["shape"]) if data.get("shape") else None,
                                       "stamp": tuple(data["stamp"])})


def _array_sizes(records) -> dict | None:
    """{"data": bytes, "seg": bytes} of CASE.json's `arrays` record (None: written before records)."""
    if not isinstance(records, dict):
        return None
    return {key: int(record["bytes"]) for key, record in records.items()
            if isinstance(record, dict) and isinstance(record.get("bytes"), int)}


@dataclass
class FolderListing:
    """One os.scandir of a configuration folder: file names, hidden temporaries, CASE.json stamps."""

    names: set[str] = field(default_factory=set)
    hidden: list[str] = field(default_factory=list)
    properties: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # case id -> CASE.json stamp
    index_files: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # array file name -> bytes (the cheap store check)

    @classmethod
    def scan(cls, folder: str | Path) -> "FolderListing":
        listing = cls()
        if not Path(folder).is_dir():
            return listing
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    listing.hidden.append(name)
                    continue
                listing.names.add(name)
                if name.startswith(INDEX_PREFIX) and name.endswith(INDEX_SUFFIX):
                    listing.index_files[name] = file_stamp(entry.stat())
                elif name.endswith(PROPERTIES_SUFFIX) and not name.startswith("_"):
                    listing.properties[name[:-len(PROPERTIES_SUFFIX)]] = file_stamp(entry.stat())
                elif name.endswith(DATA_SUFFIX):
                    listing.sizes[name] = int(entry.stat().st_size)
        return listing

    def written_case_ids(self) -> list[str]:
        """Every case with a CASE.json or an image array (finished or not)."""
        arrays = set()
        for suffix in (DATA_SUFFIX, OLD_DATA_SUFFIX):
            stems = {n[:-len(suffix)] for n in self.names if n.endswith(suffix) and not n.startswith("_")}
            # CASE_seg.b2nd ends in .b2nd too: it names a case of its own only without a CASE.b2nd beside it
            arrays |= {s for s in stems if not (s.endswith("_seg") and s[:-len("_seg")] in stems)}
        return sorted(set(self.properties) | arrays)

    def has(self, case_id: str, suffix: str) -> bool:
        return f"{case_id}{suffix}" in self.names


def _read_index_file(path: Path) -> dict | None:
    """An index file whose entries match its digest (None: absent, of another version, or edited)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return None
    if data.get("digest") != _digest(data.get("cases")):
        logger.warning("%s: its entries do not match their digest (edited?): not used; rebuilt from the CASE.json files",
                       path)
        return None
    return data


def _digest(cases) -> str:
    return hashlib.sha1(json.dumps(cases, sort_keys=True).encode()).hexdigest()


def _entries_of(data: dict | None) -> dict[str, CaseEntry]:
    entries = {}
    for case_id, record in ((data or {}).get("cases") or {}).items():
        try:
            entries[case_id] = CaseEntry.from_json(case_id, record)
        except (TypeError, KeyError, ValueError):
            continue  # a damaged entry: rebuilt from its CASE.json
    return entries


def _entry_from_file(folder: Path, case_id: str, listed_stamp) -> CaseEntry | None:
    """The entry of a CASE.json read now (stamped from the open file); None when it vanished."""
    path = case_paths(folder, case_id)["properties"]
    try:
        with open(path, "rb") as handle:
            stamp = file_stamp(os.fstat(handle.fileno()))
            payload = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return CaseEntry.unreadable(case_id, listed_stamp)
    try:
        properties = json.loads(payload)
        return CaseEntry.of(case_id, properties, stamp) if isinstance(properties, dict) \
            else CaseEntry.unreadable(case_id, stamp)
    except (ValueError, TypeError, AttributeError):
        return CaseEntry.unreadable(case_id, stamp)


def _indexed(folder: Path, listing: FolderListing, case_ids=None, progress: bool = True,
             save: bool = True) -> dict[str, CaseEntry]:
    """The index entries of the folder's CASE.json files (of `case_ids` only, when given), each matching
    its file: from the index files where their stamps agree, read from the CASE.json otherwise."""
    wanted = listing.properties if case_ids is None else \
        {c: listing.properties[c] for c in case_ids if c in listing.properties}
    merged = _read_index_file(folder / INDEX_NAME) if INDEX_NAME in listing.index_files else None
    merged_parts = {name: tuple(stamp) for name, stamp in ((merged or {}).get("parts") or {}).items()}
    sources = [_entries_of(merged)]
    new_parts = {}
    for name, stamp in sorted(listing.index_files.items()):
        if name != INDEX_NAME and merged_parts.get(name) != stamp:
            sources.append(_entries_of(_read_index_file(folder / name)))
            new_parts[name] = stamp
    entries = {}
    for source in sources:
        for case_id, entry in source.items():
            if case_id in wanted and entry.stamp == wanted[case_id]:
                entries[case_id] = entry
    missing = [c for c in wanted if c not in entries]
    if missing:
        _note(f"case index of {folder}: {len(missing)} of {len(wanted)} case(s) read from their CASE.json "
              "(index missing or older than them)")
        for case_id in tqdm(missing, desc="case index", unit="case", disable=not progress or len(missing) < 500,
                            leave=False):
            entry = _entry_from_file(folder, case_id, wanted[case_id])
            if entry is not None:
                entries[case_id] = entry
    outdated = any(entries.get(case_id) != entry for case_id, entry in sources[0].items())
    if save and case_ids is None and (missing or new_parts or outdated):
        parts = {**merged_parts, **new_parts}
        _save_index(folder / INDEX_NAME, entries, {n: s for n, s in parts.items() if n in listing.index_files})
    return entries


def _save_index(path: Path, entries: dict[str, CaseEntry], parts: dict | None = None) -> bool:
    """Best effort (a read-only dataset just rebuilds next time): whether the index was saved."""
    cases = {c: entries[c].to_json() for c in sorted(entries)}
    payload = {"version": INDEX_VERSION, "parts": {n: list(s) for n, s in (parts or {}).items()},
               "digest": _digest(cases), "cases": cases}
    try:
        write_json_atomic(path, payload, indent=None)
    except OSError:
        return False
    return True


def _note(text: str) -> None:
    print(f"[fomo_nn] {text}", file=sys.stderr)


def case_index(folder: str | Path, case_ids=None, progress: bool = True,
               listing: FolderListing | None = None) -> dict[str, CaseEntry]:
    """{case_id: CaseEntry} for every case with a CASE.json (of `case_ids` only, when given), finished or
    not and for any plans: one directory listing (`listing`, when the caller made it), one stat per
    CASE.json, and a read of only the CASE.json files the index does not describe (the whole index is
    then saved again)."""
    folder = Path(folder)
    return _indexed(folder, listing if listing is not None else FolderListing.scan(folder), case_ids, progress)


class IndexWriter:
    """The index file of one writer (`index_part_name(shard)`), saved at most every INDEX_FLUSH_SECONDS and
    on exit; starts from the entries of the cases it keeps (finished by earlier runs)."""

    def __init__(self, folder: str | Path, shard=None, entries: dict[str, CaseEntry] | None = None):
        self.folder, self.shard = Path(folder), shard
        self.path = self.folder / index_part_name(shard)
        self.entries = dict(entries or {})
        self._saved_at = 0.0

    def __enter__(self) -> "IndexWriter":
        for name in FolderListing.scan(self.folder).hidden:  # what a killed run of this writer left
            if name.startswith(f".{self.path.name}."):
                (self.folder / name).unlink(missing_ok=True)
        self.flush()
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()
        if self.shard is None and exc_info[0] is None:  # a whole run holds the dataset alone: parts are merged
            for name in FolderListing.scan(self.folder).index_files:
                if name != INDEX_NAME:
                    (self.folder / name).unlink(missing_ok=True)

    def add(self, entry: CaseEntry) -> None:
        self.entries[entry.case_id] = entry
        if time.monotonic() - self._saved_at >= INDEX_FLUSH_SECONDS:
            self.flush()

    def discard(self, case_id: str) -> None:
        """Forget a case whose files were removed (saved with the next flush)."""
        self.entries.pop(case_id, None)

    def flush(self) -> None:
        _save_index(self.path, self.entries)
        self._saved_at = time.monotonic()
