"""Preprocess a whole dataset: parallel, resumable, shardable, bad cases reported at the end.

Cluster workflow (60K scans): plan once, then one array job per shard, e.g.
    fomo_nn_plan_and_preprocess -d 1 --no-preprocess
    fomo_nn_preprocess -d 1 --shard $SLURM_ARRAY_TASK_ID/64 -np 8     # array=0-63
Shards never touch each other's cases; a rerun of any shard skips its finished cases, found from the
case index and one directory listing (case_store), not by reading every finished case's CASE.json.
Each run keeps its part of the index up to date as cases finish (shard I of N its own file).

One writer per dataset (`dataset_lock`): a whole run writes alone, the shards of one array job (one
N, one plans.json) side by side; anything else is refused with the running holder named. A full
disk stops the run ("no space left on <path>"), every finished case kept for the rerun.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.datasets.cases import Case
from fomo_nn.plans.records import load_plans
from fomo_nn.preprocessing.case_preprocessing import label_values_of, preprocess_loaded, voxel_label_file
from fomo_nn.preprocessing.case_reading import read_case_images
from fomo_nn.preprocessing.case_store import (FINISHED, CaseEntry, IndexWriter, preprocessing_signature,
                                              remove_stale_temporaries, survey, write_case)
from fomo_nn.preprocessing.dataset_cases import CaseProblem, dataset_cases, format_problems
from fomo_nn.preprocessing.parallel import run_parallel
from fomo_nn.preprocessing.sharding import Shard, select_shard
from fomo_nn.utils.files import is_no_space, no_space_error, write_bytes_atomic
from fomo_nn.utils.run_lock import RunLock

LOCK_NAME = "preprocess"


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


def dataset_lock(preprocessed_dir: str | Path, shard: Shard | None = None, signature: str | None = None) -> RunLock:
    """The one-writer rule of a preprocessed dataset: a whole run (fingerprint, plan, preprocess) holds it
    alone; shards share it when their count and preprocessing signature agree (one array job), and two
    runs of one shard, a whole run, or shards of other plans refuse each other."""
    if shard is None:
        return RunLock(preprocessed_dir, LOCK_NAME, "fomo_nn preprocessing")
    return RunLock(preprocessed_dir, LOCK_NAME, "fomo_nn preprocessing", label=f"shard {shard}",
                   shared=f"{shard.count} shards, preprocessing signature {signature}",
                   advice="the shards of one array job must share N and plans.json")


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
                       shard: Shard | None = None, progress: bool = True) -> PreprocessReport:
    """Preprocess every (shard's) case that is not finished yet, per preprocessed_dir/plans.json, as the
    dataset's writer (RunLockedError while another run writes it)."""
    raw_dir, preprocessed_dir = Path(raw_dir), Path(preprocessed_dir)
    signature = preprocessing_signature(load_plans(preprocessed_dir))
    with dataset_lock(preprocessed_dir, shard, signature):
        return _preprocess_locked(raw_dir, preprocessed_dir, num_workers, shard, progress, signature)


def _preprocess_locked(raw_dir: Path, preprocessed_dir: Path, num_workers: int, shard: Shard | None, progress: bool,
                       signature: str) -> PreprocessReport:
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
    found = survey(folder, plans, None if shard is None else ids, progress)  # a whole run indexes every case
    finished = set(found.ids(FINISHED))
    report.skipped = [case_id for case_id in ids if case_id in finished]
    todo = [_Job(by_id[case_id], plans, str(folder)) for case_id in ids if case_id not in finished]
    remove_stale_temporaries(folder, [job.case.case_id for job in todo], found.listing)
    label = "preprocessing" + (f" shard {shard}" if shard else "")
    with IndexWriter(folder, shard, found.entries) as index:
        for case_id, result in run_parallel(preprocess_one, todo, [job.case.case_id for job in todo], num_workers,
                                            label, progress):
            if isinstance(result, CaseProblem):
                report.problems.append(result)
            else:
                index.add(result)
                report.processed.append(case_id)
    report.seconds = time.perf_counter() - started
    return report
