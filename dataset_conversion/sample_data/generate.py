"""Generate the whole synthetic FOMO-like sample: pretraining corpus, task folders, ground truth.

`edition` picks the finetuning world: "fomo25" (default: finetune/ and test/, FOMO25 tasks 1-3),
"fomo26" (fomo26/: tasks 1-5 in FOMO26's released layout and the probing cohort of tasks 6/7,
fomo26_world.py and probing_cohort.py; fomo300k/: the corpus in FOMO300K's layout, fomo300k_view.py)
or "all". The pretraining corpus is written for every edition.
FOMO26 draws only from its own seeded streams, so adding it changes no FOMO25 file.

Every subject/case draws from its own seeded generator, so the files are bit-identical whatever
the number of workers. `sample_data.json` is written last: its presence marks a finished run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from dataset_conversion.sample_data.config import SPLITS, TASKS, SampleDataConfig, config_for_size
from dataset_conversion.sample_data.fomo26_world import (FOMO26_PRESETS, FOMO26_TASKS, Fomo26Config, plan_fomo26_cases,
                                                         run_fomo26_case)
from dataset_conversion.sample_data.fomo300k_view import write_fomo300k_view
from dataset_conversion.sample_data.output import write_file, write_json
from dataset_conversion.sample_data.pretraining_corpus import plan_pretraining_subjects, run_pretraining_subject
from dataset_conversion.sample_data.probing_cohort import plan_cohort, run_cohort_subject, write_subjects_csv
from dataset_conversion.sample_data.sites import build_sites
from dataset_conversion.sample_data.task_cases import plan_task_cases, run_task_case
from dataset_conversion.sample_data.tissues import AnatomyGrid
from fomo_nn.utils.errors import BadInputError
from fomo_nn.preprocessing.parallel import run_parallel

METADATA_FILE = "sample_data.json"
MARKER_FILE = ".fomo_nn_sample_data"
OWNED_FOLDERS = ("fomo60k", "finetune", "test", "fomo26", "fomo300k")
EDITIONS = ("fomo25", "fomo26", "all")
FORMAT_VERSION = 3  # 3: task 1 ships seg.nii.gz infarct masks (mask_file)
NOTES = {
    "peak_world_mm": "scanner RAS+ position (mm) of a lesion's deepest voxel in the written images",
    "center_anatomy_mm": "lesion centre in the subject's anatomy frame (RAS+, head centre at 0, before head pose)",
    "volume_voxels": "lesion voxels on the written image grid (task 2: the seg.nii.gz foreground)",
    "volume_mm3": "lesion or tissue volume (mm^3) from partial-volume weights on the anatomy grid",
    "target": "task 1: 1 infarct / 0 none; task 3: age in years (also in label.txt); task 2: see seg.nii.gz",
    "mask_file": "task 1: the infarct mask seg.nii.gz beside label.txt (recent infarcts only; all-zero for negatives)",
    "kind": "infarct (recent: the task 1 label), chronic_infarct, lacune, demyelination, vasogenic_edema, postictal, "
            "meningioma",
    "stage": "infarcts: hyperacute (< 6 h), acute (6 h - 7 d), subacute (8-21 d) or chronic; hours_since_onset",
    "contrast": "lesion signal as a ratio to the tissue it replaces, per sequence, before partial volume and noise",
}


def _run_job(job):
    kind, plan, grid, seed, out_dir = job[:5]
    if kind == "pretraining":
        return run_pretraining_subject(plan, grid, seed, out_dir)
    if kind == "fomo26":
        return run_fomo26_case(plan, grid, job[5], seed, out_dir)
    if kind == "cohort":
        return run_cohort_subject(plan, grid, seed, out_dir)
    return run_task_case(plan, grid, seed, out_dir)


def prepare_output(out_dir: Path) -> None:
    """Create `out_dir`; clear what an earlier generator run left there, but nothing else.

    Folders named like ours without our marker are someone else's data: refuse rather than delete.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = (out_dir / MARKER_FILE).exists() or (out_dir / METADATA_FILE).exists()
    present = [name for name in OWNED_FOLDERS if (out_dir / name).exists()]
    if present and not ours:
        raise BadInputError(out_dir, f"already contains {', '.join(present)} not written by the sample data "
                                     "generator; choose an empty or new folder")
    for name in present:
        shutil.rmtree(out_dir / name)
    (out_dir / METADATA_FILE).unlink(missing_ok=True)
    write_file(out_dir / MARKER_FILE, "written by fomo_nn_generate_sample_data\n")


def _job_key(job) -> str:
    kind, plan = job[0], job[1]
    if kind == "fomo26":
        return f"fomo26/{plan.split}/Task_{plan.task}/{plan.case_id}"
    if kind == "cohort":
        return f"fomo26/probing/{plan.ptid}"
    return f"fomo60k/{plan.subject_id}" if kind == "pretraining" else f"{plan.split}/task{plan.task}/{plan.case_id}"


def _map_jobs(jobs, num_workers: int, progress: bool):
    """Every job's record, in job order; a worker that dies is named (run_parallel), never a hang."""
    keys = [_job_key(job) for job in jobs]
    done = dict(run_parallel(_run_job, jobs, keys, min(num_workers, len(jobs)), "sample data", progress))
    return [done[key] for key in keys]


def generate_sample_data(out_dir: str | os.PathLike, seed: int = 0, size: str = "small", num_workers: int = 1,
                         config: SampleDataConfig | None = None, progress: bool = True, edition: str = "fomo25",
                         fomo26_config: Fomo26Config | None = None) -> dict:
    """Write the synthetic FOMO-like sample to `out_dir` and return its ground-truth metadata.

    `config` overrides the `size` preset (e.g. `config_for_size("tiny", task3_finetune=30)`);
    `fomo26_config` the FOMO26 counts of the preset (fomo26_world.FOMO26_PRESETS).
    """
    if edition not in EDITIONS:
        raise ValueError(f"unknown edition {edition!r}; choose one of {', '.join(EDITIONS)}")
    config = config or config_for_size(size)
    fomo26_config = fomo26_config or FOMO26_PRESETS[config.size if config.size in FOMO26_PRESETS else "small"]
    out_dir = Path(out_dir)
    prepare_output(out_dir)
    grid = AnatomyGrid(tuple(config.grid_shape), float(config.voxel_mm))
    sites = build_sites(seed)
    subjects = plan_pretraining_subjects(config, seed, sites["pretraining"])
    cases = plan_task_cases(config, seed, sites) if edition in ("fomo25", "all") else []
    fomo26 = edition in ("fomo26", "all")
    fomo26_cases = plan_fomo26_cases(fomo26_config, seed, sites) if fomo26 else []
    cohort = plan_cohort(fomo26_config.probing_subjects, seed, sites["finetune"] + sites["test"]) if fomo26 else []
    jobs = [("pretraining", plan, grid, seed, str(out_dir)) for plan in subjects]
    jobs += [("task", plan, grid, seed, str(out_dir)) for plan in cases]
    jobs += [("fomo26", plan, grid, seed, str(out_dir), fomo26_config) for plan in fomo26_cases]
    jobs += [("cohort", plan, grid, seed, str(out_dir)) for plan in cohort]
    records = _map_jobs(jobs, max(1, int(num_workers)), progress)
    ends = np.cumsum([len(subjects), len(cases), len(fomo26_cases), len(cohort)])
    subject_records, case_records = records[: ends[0]], records[ends[0]: ends[1]]
    metadata = assemble_metadata(config, seed, sites, subject_records, case_records, edition)
    if fomo26:
        cohort_records = records[ends[2]: ends[3]]
        write_subjects_csv(out_dir, cohort_records)
        metadata["fomo26"] = assemble_fomo26(fomo26_config, records[ends[1]: ends[2]], cohort_records)
        by_id = {site.site_id: site for pool in sites.values() for site in pool}
        metadata["fomo26"]["counts"]["fomo300k"] = write_fomo300k_view(out_dir, subject_records, by_id)
    write_json(out_dir / METADATA_FILE, metadata)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)
    return metadata


def assemble_fomo26(config: Fomo26Config, case_records: list[dict], cohort_records: list[dict]) -> dict:
    tasks = {split: {f"Task_{t}": [r for r in case_records if r["split"] == split and r["task"] == t]
                     for t in FOMO26_TASKS} for split in SPLITS}
    counts = {split: {name: {"cases": len(rows), **({"positive": sum(r["target"] == 1 for r in rows)}
                                                   if name in ("Task_1", "Task_5") else {})}
                      for name, rows in tasks[split].items()} for split in SPLITS}
    counts["probing"] = {"subjects": len(cohort_records),
                         **{c: sum(r["selected_cohort"] == c for r in cohort_records)
                            for c in sorted({r["selected_cohort"] for r in cohort_records})}}
    return {"config": config.to_dict(), "counts": counts, "finetune": tasks["finetune"], "test": tasks["test"],
            "probing": cohort_records, "probing_csv": "fomo26/probing/subjects.csv"}


def assemble_metadata(config: SampleDataConfig, seed: int, sites, subject_records, case_records,
                      edition: str = "fomo25") -> dict:
    counts = {"pretraining": {"subjects": len(subject_records),
                              "sessions": sum(len(r["sessions"]) for r in subject_records),
                              "images": sum(len(s["files"]) for r in subject_records for s in r["sessions"])}}
    tasks = {split: {f"task{task}": [] for task in TASKS} for split in SPLITS}
    for record in case_records:
        tasks[record["split"]][f"task{record['task']}"].append(record)
    for split in SPLITS:
        counts[split] = {}
        for task in TASKS:
            records = tasks[split][f"task{task}"]
            entry = {"cases": len(records)}
            if task == 1:
                entry["positive"] = sum(1 for r in records if r["target"] == 1)
                entry["negative"] = sum(1 for r in records if r["target"] == 0)
            counts[split][f"task{task}"] = entry
    return {
        "generator": "fomo_nn synthetic FOMO-like sample data", "format_version": FORMAT_VERSION,
        "seed": int(seed), "size": config.size, **({} if edition == "fomo25" else {"edition": edition}),
        "config": config.to_dict(), "counts": counts, "notes": NOTES,
        "sites": {site.site_id: site.to_dict() for pool in sites.values() for site in pool},
        "pretraining": subject_records, "finetune": tasks["finetune"], "test": tasks["test"],
    }
