"""fomo_nn_embed's run: which scans, where each `<ptid>.npy` goes, the recipe file, resume and bad input.

Inputs: one scan file, a folder of scans (`<ptid>.nii.gz` / `.nii` / `.mha` / `.nrrd` directly in it), or
a CSV with the columns ptid,nifti_path (fomo-lp's `embed_all.py` layout). Output: a folder of `<ptid>.npy`
with `embedding_recipe.json`, or for one scan a `.npy` path (the FOMO26 container's `--output`). Every file
is written atomically; a rerun with the same recipe skips scans already embedded, one with another recipe
is refused (embeddings of two recipes cannot be probed together). A scan that cannot be used is reported
once, naming it, and the others go on.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomo_nn.utils.errors import BadInputError
from fomo_nn.probing.embedding import Embedder, embed_scan
from fomo_nn.utils.files import read_json, write_atomically, write_json_atomic

log = logging.getLogger(__name__)
RECIPE_FILE = "embedding_recipe.json"
SCAN_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd")


@dataclass
class EmbeddingJob:
    ptid: str
    image: Path
    output: Path


@dataclass
class EmbeddingOutcome:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[BadInputError] = field(default_factory=list)


def scan_id(path: Path) -> str | None:
    name = path.name
    ending = next((e for e in SCAN_ENDINGS if name.endswith(e)), None)
    return name[:-len(ending)] if ending else None


def list_scans(source: str | Path) -> list[tuple[str, Path]]:
    """(ptid, scan) pairs of a file, a folder or a ptid,nifti_path CSV."""
    source = Path(source)
    if source.is_dir():
        pairs = [(scan_id(p), p) for p in sorted(source.iterdir()) if scan_id(p) and not p.name.startswith(".")]
        if not pairs:
            raise BadInputError(source, f"holds no scan ({', '.join(SCAN_ENDINGS)})")
        return pairs
    if source.suffix.lower() == ".csv":
        try:
            with open(source, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError) as error:
            raise BadInputError(source, f"cannot read ({error})") from None
        if not rows or not {"ptid", "nifti_path"} <= set(rows[0]):
            raise BadInputError(source, "expected a CSV with the columns ptid,nifti_path")
        ids = [r["ptid"].strip() for r in rows]
        if len(set(ids)) != len(ids) or not all(ids):
            raise BadInputError(source, "every row needs a ptid, each listed once")
        return [(i, Path(r["nifti_path"].strip())) for i, r in zip(ids, rows)]
    if not source.is_file():
        raise BadInputError(source, "input not found")
    return [(scan_id(source) or source.stem, source)]


def plan_jobs(source: str | Path, output: str | Path) -> tuple[list[EmbeddingJob], Path]:
    """The jobs and the recipe file's path: `output` is a folder, or a `.npy` file for a single scan."""
    scans = list_scans(source)
    output = Path(output)
    if output.suffix == ".npy":
        if len(scans) != 1:
            raise BadInputError(output, f"a .npy output takes one scan, the input has {len(scans)}")
        return [EmbeddingJob(scans[0][0], scans[0][1], output)], output.with_suffix(".recipe.json")
    return [EmbeddingJob(p, s, output / f"{p}.npy") for p, s in scans], output / RECIPE_FILE


def check_recipe(path: Path, recipe: dict) -> None:
    """Refuse to add to embeddings made with another recipe."""
    if not path.is_file():
        return
    try:
        existing = read_json(path)
    except (OSError, ValueError) as error:
        raise BadInputError(path, f"unreadable recipe ({error}); remove it with the embeddings it describes") from None
    if existing != recipe:
        changed = sorted(k for k in set(existing) | set(recipe) if existing.get(k) != recipe.get(k))
        raise BadInputError(path, f"the embeddings here were made with another recipe (differs in {changed}); "
                                  "write to another folder")


def is_done(path: Path, length: int) -> bool:
    if not path.is_file():
        return False
    try:
        vector = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return vector.shape == (length,) and vector.dtype == np.float32


def save_vector(path: Path, vector: np.ndarray) -> None:
    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vector, dtype=np.float32))
    write_atomically(path, write, suffix=".npy")


def run_embedding(embedder: Embedder, source: str | Path, output: str | Path, device="cpu",
                  write_recipe: bool = True, report=print) -> EmbeddingOutcome:
    jobs, recipe_path = plan_jobs(source, output)
    recipe = embedder.recipe.to_dict()
    if write_recipe:
        check_recipe(recipe_path, recipe)
        write_json_atomic(recipe_path, recipe)
    outcome = EmbeddingOutcome()
    for job in jobs:
        if is_done(job.output, embedder.recipe.length):
            outcome.skipped.append(job.ptid)
            continue
        try:
            vector = embed_scan(embedder, job.image, device)
        except BadInputError as error:
            report(f"fomo_nn_embed: {error}")
            outcome.failed.append(error)
            continue
        save_vector(job.output, vector)
        outcome.written.append(job.ptid)
    return outcome
