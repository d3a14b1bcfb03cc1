"""The dataset fingerprint: what the planner needs to know about the data, measured once.

Per case: spacing (mm, RAS order), shape before and after cropping to the nonzero box, and the
relative size after cropping. Per channel: foreground (nonzero) intensity statistics from up to
10,000 sampled voxels per case. Segmentation: voxels per label; classification / regression: the
targets; pretraining corpora: images per sequence, per subject and per session. For corpora the
images are read from a fixed random sample of cases (default 1,000: the medians are stable long
before 60K scans), while the counts always cover the whole manifest.
"""
from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomo_nn.datasets.cases import Case
from fomo_nn.datasets.dataset_json import DatasetSpec
from fomo_nn.io import BadInputError
from fomo_nn.preprocessing.case_reading import read_case_images
from fomo_nn.preprocessing.crop import bounding_box, box_shape, nonzero_mask
from fomo_nn.preprocessing.dataset_cases import CaseProblem, dataset_cases
from fomo_nn.preprocessing.parallel import run_parallel
from fomo_nn.tasks import CASE_CLASS, CASE_VALUE, VOXELS, task_kind

FINGERPRINT_FILE = "dataset_fingerprint.json"
FINGERPRINT_VERSION = 1
SAMPLES_PER_CASE = 10_000
DEFAULT_CORPUS_CASES_READ = 1_000


@dataclass
class _Job:
    case: Case
    label_values: list[int] | None


def fingerprint_case(job: _Job) -> dict | CaseProblem:
    """Measure one case (worker entry); a bad case comes back as a CaseProblem."""
    case = job.case
    try:
        loaded = read_case_images(case.image_files, case.label_file if job.label_values is not None else None,
                                  job.label_values)
    except Exception as error:
        return CaseProblem.from_error(case.case_id, error)
    mask = nonzero_mask(loaded.data)
    box = bounding_box(mask if loaded.seg is None else mask | (loaded.seg > 0))
    shape_before = [int(s) for s in loaded.properties.ras_shape]
    shape_after = box_shape(box)
    foreground = np.flatnonzero(mask)
    rng = np.random.default_rng(zlib.crc32(case.case_id.encode("utf-8")))
    if foreground.size > SAMPLES_PER_CASE:
        foreground = np.sort(rng.choice(foreground, SAMPLES_PER_CASE, replace=False))
    flat = loaded.data.reshape(loaded.data.shape[0], -1)
    record = {
        "case_id": case.case_id, "spacing": [round(float(s), 6) for s in loaded.properties.spacing],
        "shape_before_crop": shape_before, "shape_after_crop": shape_after,
        "relative_size_after_crop": float(np.prod(shape_after) / np.prod(shape_before)),
        "num_foreground_voxels": int(mask.sum()),
        "samples": [flat[c, foreground].astype(np.float32) for c in range(flat.shape[0])],
    }
    if loaded.seg is not None:
        values, counts = np.unique(loaded.seg, return_counts=True)
        record["label_voxels"] = {str(int(v)): int(n) for v, n in zip(values, counts)}
    return record


def intensity_statistics(samples: np.ndarray) -> dict:
    if samples.size == 0:
        return {}
    low, median, high = np.percentile(samples, [0.5, 50, 99.5])
    return {"mean": float(samples.mean()), "std": float(samples.std()), "median": float(median),
            "min": float(samples.min()), "max": float(samples.max()), "percentile_00_5": float(low),
            "percentile_99_5": float(high), "num_samples": int(samples.size)}


def _summary(values) -> dict:
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return {}
    return {"min": float(values.min()), "median": float(np.median(values)), "mean": float(values.mean()),
            "max": float(values.max())}


def corpus_counts(cases: list[Case]) -> dict:
    """Images per sequence, subject and session: what pair sampling and the notes need."""
    per_sequence = Counter(case.sequence or "unknown" for case in cases)
    per_subject = Counter(case.subject or case.case_id for case in cases)
    per_session = Counter(f"{case.subject or case.case_id}/{case.session or '-'}" for case in cases)
    sessions_per_subject = Counter(key.split("/", 1)[0] for key in per_session)
    return {"num_images": len(cases), "num_subjects": len(per_subject), "num_sessions": len(per_session),
            "images_per_sequence": dict(sorted(per_sequence.items())),
            "images_per_subject": dict(sorted(per_subject.items())),
            "images_per_session": dict(sorted(per_session.items())),
            "images_per_subject_summary": _summary(per_subject.values()),
            "images_per_session_summary": _summary(per_session.values()),
            "sessions_per_subject_summary": _summary(sessions_per_subject.values())}


def target_summary(spec: DatasetSpec, cases: list[Case]) -> dict | None:
    targets = [case.target for case in cases if case.target is not None]
    target = task_kind(spec.task_type).target
    if target == CASE_CLASS:
        counts = Counter(int(t) for t in targets)
        return {"cases_per_class": {str(k): counts.get(int(k), 0) for k in sorted(spec.classes, key=int)}}
    if target == CASE_VALUE:
        return {**_summary(targets), "std": float(np.std(targets)) if targets else 0.0, "count": len(targets)}
    return None


def label_summary(records: list[dict]) -> dict:
    per_label: dict[str, list[int]] = {}
    for record in records:
        for label, count in record.get("label_voxels", {}).items():
            per_label.setdefault(label, []).append(count)
    return {label: {"num_cases_present": len(counts), "median_voxels": float(np.median(counts))}
            for label, counts in sorted(per_label.items(), key=lambda item: int(item[0]))}


def case_list_hash(cases: list[Case]) -> str:
    text = "\n".join(f"{c.case_id}|{'|'.join(c.image_files)}|{c.label_file}" for c in cases)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def cases_to_read(cases: list[Case], max_cases: int | None) -> list[Case]:
    """All cases, or a fixed random subset of `max_cases` (same subset on every run)."""
    if not max_cases or len(cases) <= max_cases:
        return list(cases)
    chosen = np.random.default_rng(0).choice(len(cases), max_cases, replace=False)
    return [cases[i] for i in sorted(chosen)]


def aggregate_fingerprint(spec: DatasetSpec, cases: list[Case], records: list[dict],
                          problems: list[CaseProblem]) -> dict:
    """Combine per-case records into the JSON-able dataset fingerprint."""
    records = sorted(records, key=lambda r: r["case_id"])
    kind = task_kind(spec.task_type)
    channels = ["mri"] if kind.corpus else spec.channels
    intensities = {}
    for channel in range(len(channels)):
        samples = [r["samples"][channel] for r in records]
        intensities[str(channel)] = intensity_statistics(np.concatenate(samples) if samples else np.zeros(0))
    good_ids = {r["case_id"] for r in records}
    fingerprint = {
        "fingerprint_version": FINGERPRINT_VERSION, "dataset_name": spec.name, "task_type": spec.task_type,
        "channel_names": channels, "num_cases": len(cases), "num_cases_read": len(records),
        "case_list_hash": case_list_hash(cases),
        "cases": [{k: v for k, v in r.items() if k not in ("samples", "label_voxels")} for r in records],
        "median_relative_size_after_crop": float(np.median([r["relative_size_after_crop"] for r in records]))
        if records else 1.0,
        "foreground_intensity_properties_per_channel": intensities,
        "labels": label_summary(records) if kind.target == VOXELS else None,
        "targets": target_summary(spec, [c for c in cases if c.case_id in good_ids]),
        "corpus": corpus_counts(cases) if kind.corpus else None,
        "bad_cases": [vars(p) for p in problems],
    }
    return fingerprint


def extract_fingerprint(raw_dir: str | Path, num_workers: int = 1, max_cases: int | None = None,
                        progress: bool = True) -> tuple[dict, list[CaseProblem]]:
    """Fingerprint a raw dataset; bad cases are left out and returned as problems.

    `max_cases`: read at most this many cases (None: all; pretraining corpora default to 1,000).
    """
    spec, cases, problems = dataset_cases(raw_dir)
    kind = task_kind(spec.task_type)
    if max_cases is None and kind.corpus:
        max_cases = DEFAULT_CORPUS_CASES_READ
    label_values = sorted(int(v) for v in spec.labels.values()) if kind.target == VOXELS else None
    jobs = [_Job(case, label_values) for case in cases_to_read(cases, max_cases)]
    records = []
    for _, result in run_parallel(fingerprint_case, jobs, [j.case.case_id for j in jobs], num_workers,
                                  "fingerprint", progress):
        if isinstance(result, CaseProblem):
            problems.append(result)
        else:
            records.append(result)
    if not records:
        details = "".join(f"\n  - {p}" for p in problems)
        raise BadInputError(raw_dir, f"no usable case to fingerprint{details}")
    return aggregate_fingerprint(spec, cases, records, problems), problems
