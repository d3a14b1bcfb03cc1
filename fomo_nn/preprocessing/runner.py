"""Preprocess a whole dataset: parallel, resumable, shardable, bad cases reported at the end.

Cluster workflow (60K scans): plan once, then one array job per shard, e.g.
    fomo_nn_plan_and_preprocess -d 1 --no-preprocess
    fomo_nn_preprocess -d 1 --shard $SLURM_ARRAY_TASK_ID/64 -np 8     # array=0-63
Shards never touch each other's cases; a rerun of any shard skips its finished cases, found from the
case index and one directory listing (case_index), not by reading every finished case's CASE.json.
Each run keeps its part of the index up to date as cases finish (shard I of N its own file).

A whole run (no --shard) removes what no run can rewrite: the preprocessed cases whose ids the raw
dataset no longer lists as usable (finished ones are kept while the raw listing reports problems: a
case listed as bad may be among them) and the files of the cases reported bad in the run (never
finished for these plans: finished cases are not retried), each removal named in one note. So training
is never refused for a case that preprocessing cannot fix. Shards see only their part and remove nothing.

Every run first records the cases it sets out to write (planned_cases), so training can refuse a
dataset whose preprocessing did not finish. A case whose array files differ in size from their
CASE.json records (truncated, swapped) is rewritten like an unfinished one; with `verify` (fomo_nn_preprocess
--verify) every finished case's arrays are read in full and checked against their CRC-32 records first,
and the damaged ones rewritten, each named in a note.

One writer per dataset (`dataset_lock`, in dataset_lock): a whole run writes alone, the shards of one
array job (one N, one plans.json) side by side; anything else, a running training included, is refused
with the running holder named. A full
disk stops the run ("no space left on <path>"), every finished case kept for the rerun.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.datasets.cases import Case
from fomo_nn.plans.records import load_plans
from fomo_nn.preprocessing.case_index import CaseEntry, IndexWriter
from fomo_nn.preprocessing.case_preprocessing import label_values_of, preprocess_loaded, voxel_label_file
from fomo_nn.preprocessing.case_reading import read_case_images
from fomo_nn.preprocessing.case_store import (DAMAGED, FINISHED, FolderSurvey, preprocessing_signature, remove_case,
                                              remove_stale_temporaries, survey, verify_case, write_case)
from fomo_nn.preprocessing.planned_cases import write_plan
from fomo_nn.preprocessing.dataset_lock import dataset_lock
from fomo_nn.preprocessing.dataset_cases import CaseProblem, dataset_cases, format_problems
from fomo_nn.preprocessing.parallel import run_parallel
from fomo_nn.preprocessing.sharding import Shard, select_shard
from fomo_nn.utils.files import is_no_space, no_space_error, write_bytes_atomic

logger = logging.getLogger(__name__)
NAMED_IN_NOTES = 5  # case ids a removal note names before it counts the rest


@dataclass
class PreprocessReport:
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run
    problems: list[CaseProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        text = (f"preprocessed {len(self.processed)} case(s), skipped {len(self.skipped)} already finished, "
                f"{len(self.problems)} bad, in {self.seconds:.1f} s")
        if self.problems:
            text += "\n" + format_problems(self.problems, "bad cases (not preprocessed)")
        return text


@dataclass
class _Job:
    case: Case
    plans: object
    folder: str


def copy_dataset_json(raw_dir: Path, preprocessed_dir: Path) -> None:
    write_bytes_atomic(preprocessed_dir / "dataset.json", (raw_dir / "dataset.json").read_bytes())


def case_properties(case: Case, properties: dict) -> dict:
    """Fill the per-case identity the arrays alone do not carry."""
    return {**properties, "case_id": case.case_id, "target": case.target, "subject": case.subject,
            "session": case.session, "sequence": case.sequence}


def preprocess_one(job: _Job) -> CaseProblem | CaseEntry:
    """Worker entry: preprocess and write one case (its index entry back); a bad case is returned, only a
    full disk raised."""
    case = job.case
    try:
        label_file = voxel_label_file(case, job.plans)
        loaded = read_case_images(case.image_files, label_file, label_values_of(job.plans) if label_file else None)
        data, seg, properties = preprocess_loaded(loaded, job.plans)
        del loaded
        return write_case(job.folder, case.case_id, data, seg, case_properties(case, properties), job.plans)
    except Exception as error:  # reported per case; one bad scan must not stop 60K others
        if is_no_space(error):  # but a full disk fails every case after it: stop the run
            raise no_space_error(error, job.folder) from None
        return CaseProblem.from_error(case.case_id, error)


def preprocess_dataset(raw_dir: str | Path, preprocessed_dir: str | Path, num_workers: int = 1,
                       shard: Shard | None = None, progress: bool = True, verify: bool = False) -> PreprocessReport:
    """Preprocess every (shard's) case that is not finished yet, per preprocessed_dir/plans.json, as the
    dataset's writer (RunLockedError while another run writes or a training reads it); `verify` first reads
    every finished case in full and rewrites the damaged ones."""
    raw_dir, preprocessed_dir = Path(raw_dir), Path(preprocessed_dir)
    signature = preprocessing_signature(load_plans(preprocessed_dir))
    with dataset_lock(preprocessed_dir, shard, signature):
        return _preprocess_locked(raw_dir, preprocessed_dir, num_workers, shard, progress, signature, verify)


def _preprocess_locked(raw_dir: Path, preprocessed_dir: Path, num_workers: int, shard: Shard | None, progress: bool,
                       signature: str, verify: bool = False) -> PreprocessReport:
    started = time.perf_counter()
    plans = load_plans(preprocessed_dir)
    if preprocessing_signature(plans) != signature:  # re-planned between our read and our lock
        raise ValueError(f"{preprocessed_dir / 'plans.json'} changed while this run started (another run planned "
                         "again); rerun")
    spec, cases, listing_problems = dataset_cases(raw_dir)
    copy_dataset_json(raw_dir, preprocessed_dir)
    folder = preprocessed_dir / plans.configuration
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {case.case_id: case for case in cases}
    report = PreprocessReport(problems=listing_problems if shard is None or shard.index == 0 else [])
    ids = select_shard(by_id, shard)
    write_plan(folder, shard, signature, ids)  # before any case: a run killed from here on is partial
    found = survey(folder, plans, None if shard is None else ids, progress)  # a whole run indexes every case
    finished = set(found.ids(FINISHED))
    damaged = [c for c in found.ids(DAMAGED) if c in by_id]
    if verify:
        damaged += _verify_finished(folder, sorted(finished & set(ids)), num_workers, progress)
        finished -= set(damaged)
    if damaged:
        logger.warning("%s: rewriting %d case(s) whose stored arrays differ from their CASE.json records: %s", folder,
                       len(damaged), _few(sorted(damaged)))
    report.skipped = [case_id for case_id in ids if case_id in finished]
    todo = [_Job(by_id[case_id], plans, str(folder)) for case_id in ids if case_id not in finished]
    orphans = [] if shard is not None else _remove_orphans(found, by_id, bool(listing_problems))
    remove_stale_temporaries(folder, [job.case.case_id for job in todo] + orphans, found.listing)
    label = "preprocessing" + (f" shard {shard}" if shard else "")
    removed, failed = set(orphans), []
    with IndexWriter(folder, shard, {c: e for c, e in found.entries.items() if c not in removed}) as index:
        for case_id, result in run_parallel(preprocess_one, todo, [job.case.case_id for job in todo], num_workers,
                                            label, progress):
            if isinstance(result, CaseProblem):
                report.problems.append(result)
                failed.append(case_id)
            else:
                index.add(result)
                report.processed.append(case_id)
        if shard is None:
            _remove_bad_cases(folder, failed, index)
    write_plan(folder, shard, signature, ids, {p.case_id: p.problem for p in report.problems if p.case_id})
    report.seconds = time.perf_counter() - started
    return report


def _verify_finished(folder: Path, case_ids: list[str], num_workers: int, progress: bool) -> list[str]:
    """The finished cases whose arrays differ from their CASE.json records, every byte read (each named)."""
    jobs = [(str(folder), case_id) for case_id in case_ids]
    damaged = []
    for case_id, problem in run_parallel(_verify_one, jobs, case_ids, num_workers, "verify", progress):
        if problem:
            logger.warning("damaged: %s", problem)
            damaged.append(case_id)
    return damaged


def _verify_one(job: tuple[str, str]) -> str | None:
    return verify_case(*job)


def _remove_orphans(found: FolderSurvey, raw_ids, raw_listing_has_problems: bool) -> list[str]:
    """A whole run's removal of the written cases whose ids the raw dataset does not list as usable (no
    run can rewrite them, and one of other plans refuses training): returns the removed ids. Finished ones
    are kept while the raw listing reports problems (a case listed as bad may still be in the raw dataset)."""
    kept, removed = [], []
    for case_id, state in found.states.items():
        if case_id in raw_ids:
            continue
        if raw_listing_has_problems and state == FINISHED:
            kept.append(case_id)
        elif remove_case(found.folder, case_id):
            removed.append(case_id)
    if removed:
        _note(f"{found.folder}: removed {len(removed)} preprocessed case(s) the raw dataset no longer has: "
              f"{_few(removed)}")
    if kept:
        _note(f"{found.folder}: kept {len(kept)} finished case(s) the raw dataset does not list as usable, since "
              f"its listing reports problems (below): {_few(kept)}; a run without them removes the cases it lacks")
    return removed


def _remove_bad_cases(folder: Path, case_ids: list[str], index: IndexWriter) -> None:
    """Remove the files of cases reported bad in a whole run: never finished for these plans (finished cases
    are not retried), so they could only leave training refused for a case this run refused to rewrite."""
    removed = [case_id for case_id in case_ids if remove_case(folder, case_id)]
    for case_id in removed:
        index.discard(case_id)
    if removed:
        _note(f"{folder}: removed the old, unusable files of {len(removed)} case(s) reported bad below, so that "
              f"training is not refused for them (preprocessed again once fixed): {_few(removed)}")


def _few(case_ids: list[str]) -> str:
    """The first few ids, and how many more."""
    more = f" and {len(case_ids) - NAMED_IN_NOTES} more" if len(case_ids) > NAMED_IN_NOTES else ""
    return ", ".join(case_ids[:NAMED_IN_NOTES]) + more


def _note(text: str) -> None:
    print(f"[fomo_nn] {text}", file=sys.stderr)
