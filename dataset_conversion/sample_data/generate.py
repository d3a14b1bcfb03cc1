"""Generate the whole synthetic FOMO-like sample: pretraining corpus, task folders, ground truth.

Every subject/case draws from its own seeded generator, so the files are bit-identical whatever
the number of workers. `sample_data.json` is written last: its presence marks a finished run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from dataset_conversion.sample_data.config import SPLITS, TASKS, SampleDataConfig, config_for_size
from dataset_conversion.sample_data.output import write_file, write_json
from dataset_conversion.sample_data.pretraining_corpus import plan_pretraining_subjects, run_pretraining_subject
from dataset_conversion.sample_data.sites import build_sites
from dataset_conversion.sample_data.task_cases import plan_task_cases, run_task_case
from dataset_conversion.sample_data.tissues import AnatomyGrid
from fomo_nn.io.errors import BadInputError
from fomo_nn.preprocessing.parallel import run_parallel

METADATA_FILE = "sample_data.json"
MARKER_FILE = ".fomo_nn_sample_data"
OWNED_FOLDERS = ("fomo60k", "finetune", "test")
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
    kind, plan, grid, seed, out_dir = job
    if kind == "pretraining":
        return run_pretraining_subject(plan, grid, seed, out_dir)
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
    return f"fomo60k/{plan.subject_id}" if kind == "pretraining" else f"{plan.split}/task{plan.task}/{plan.case_id}"


def _map_jobs(jobs, num_workers: int, progress: bool):
    """Every job's record, in job order; a worker that dies is named (run_parallel), never a hang."""
    keys = [_job_key(job) for job in jobs]
    done = dict(run_parallel(_run_job, jobs, keys, min(num_workers, len(jobs)), "sample data", progress))
    return [done[key] for key in keys]


def generate_sample_data(out_dir: str | os.PathLike, seed: int = 0, size: str = "small", num_workers: int = 1,
                         config: SampleDataConfig | None = None, progress: bool = True) -> dict:
    """Write the synthetic FOMO-like sample to `out_dir` and return its ground-truth metadata.

    `config` overrides the `size` preset (e.g. `config_for_size("tiny", task3_finetune=30)`).
    """
    config = config or config_for_size(size)
    out_dir = Path(out_dir)
    prepare_output(out_dir)
    grid = AnatomyGrid(tuple(config.grid_shape), float(config.voxel_mm))
    sites = build_sites(seed)
    subjects = plan_pretraining_subjects(config, seed, sites["pretraining"])
    cases = plan_task_cases(config, seed, sites)
    jobs = [("pretraining", plan, grid, seed, str(out_dir)) for plan in subjects]
    jobs += [("task", plan, grid, seed, str(out_dir)) for plan in cases]
    records = _map_jobs(jobs, max(1, int(num_workers)), progress)
    subject_records, case_records = records[: len(subjects)], records[len(subjects):]
    metadata = assemble_metadata(config, seed, sites, subject_records, case_records)
    write_json(out_dir / METADATA_FILE, metadata)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)
    return metadata


def assemble_metadata(config: SampleDataConfig, seed: int, sites, subject_records, case_records) -> dict:
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
        "seed": int(seed), "size": config.size, "config": config.to_dict(), "counts": counts, "notes": NOTES,
        "sites": {site.site_id: site.to_dict() for pool in sites.values() for site in pool},
        "pretraining": subject_records, "finetune": tasks["finetune"], "test": tasks["test"],
    }
