"""FOMO60K-like pretraining corpus: sub_<id>/ses_<n>/<sequence>.nii.gz.

A subject keeps its anatomy across sessions (same morphology and random fields, a little older),
so two scans of one subject are a meaningful positive pair for subject-aware contrastive learning.
Sessions hold 2-5 co-registered sequences; some files carry FOMO's other names (t1_2, scan_3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_conversion.sample_data.acquisition import nifti_gz_bytes
from dataset_conversion.sample_data.anatomy import build_anatomy
from dataset_conversion.sample_data.brain import SubjectFields, draw_morphology
from dataset_conversion.sample_data.config import SampleDataConfig
from dataset_conversion.sample_data.output import write_file
from dataset_conversion.sample_data.pathology import Pathology, draw_infarcts, draw_lacunes, draw_meningioma
from dataset_conversion.sample_data.session import scan_session
from dataset_conversion.sample_data.sites import Site
from dataset_conversion.sample_data.tissues import AnatomyGrid

PRETRAINING_STREAM = 0
SEQUENCE_WEIGHTS = {"t1": 0.9, "t2": 0.6, "flair": 0.6, "dwi_b1000": 0.3, "adc": 0.25, "swi": 0.2, "t2s": 0.2,
                    "pd": 0.15}
SESSION_COUNTS, SESSION_PROBABILITIES = (1, 2, 3), (0.66, 0.25, 0.09)
SEQUENCE_COUNTS, SEQUENCE_PROBABILITIES = (2, 3, 4, 5), (0.45, 0.32, 0.15, 0.08)


@dataclass(frozen=True)
class PretrainingSubjectPlan:
    index: int
    subject_id: str
    home_site: Site
    other_sites: tuple[Site, ...]  # a session is sometimes acquired elsewhere


def plan_pretraining_subjects(config: SampleDataConfig, seed: int, sites: list[Site]) -> list[PretrainingSubjectPlan]:
    """Subjects spread over all sources, each source used at least once when there are enough subjects."""
    order = np.random.default_rng([seed, 4, PRETRAINING_STREAM]).permutation(len(sites))
    plans = []
    for index in range(config.pretraining_subjects):
        home = sites[int(order[index % len(sites)])]
        plans.append(PretrainingSubjectPlan(index, f"sub_{index + 1}", home,
                                            tuple(site for site in sites if site is not home)))
    return plans


def draw_session_files(rng: np.random.Generator) -> dict[str, str]:
    """{file stem: sequence}: 2-5 sequences, sometimes a repeat (`t1_2`) or an unnamed scan (`scan_3`)."""
    names = list(SEQUENCE_WEIGHTS)
    weights = np.asarray([SEQUENCE_WEIGHTS[n] for n in names])
    count = int(rng.choice(SEQUENCE_COUNTS, p=SEQUENCE_PROBABILITIES))
    repeat = count > 2 and rng.random() < 0.2
    chosen = [str(s) for s in rng.choice(names, size=count - int(repeat), replace=False, p=weights / weights.sum())]
    files = [(sequence, sequence) for sequence in chosen]
    if repeat:
        sequence = chosen[int(rng.integers(len(chosen)))]
        files.append((f"{sequence}_2", sequence))
    if rng.random() < 0.2:
        position = int(rng.integers(len(files)))
        files[position] = (f"scan_{position + 1}", files[position][1])
    return dict(files)


def draw_subject_pathology(rng: np.random.Generator, voxel_mm: float) -> Pathology:
    """Mostly healthy; a few infarcts, lacunes and meningiomas, as in a clinical archive."""
    infarcts = draw_infarcts(rng, int(rng.integers(1, 3)), voxel_mm) if rng.random() < 0.08 else ()
    lacunes = draw_lacunes(rng, int(rng.integers(1, 3)), voxel_mm) if rng.random() < 0.15 else ()
    meningioma = draw_meningioma(rng, voxel_mm) if rng.random() < 0.05 else None
    return Pathology(infarcts=infarcts, lacunes=lacunes, meningioma=meningioma)


def run_pretraining_subject(plan: PretrainingSubjectPlan, grid: AnatomyGrid, seed: int, out_dir: str | Path) -> dict:
    """Simulate and write all sessions of one subject; return its record."""
    out_dir = Path(out_dir)
    base = [seed, PRETRAINING_STREAM, 0, plan.index]
    rng = np.random.default_rng(base + [0])
    morph = draw_morphology(rng)
    age = round(float(rng.uniform(20, 88)), 2)
    sessions = int(rng.choice(SESSION_COUNTS, p=SESSION_PROBABILITIES))
    pathology = draw_subject_pathology(np.random.default_rng(base + [1]), grid.voxel_mm)
    fields = SubjectFields.generate(morph.field_seed, grid)
    record = {"subject_id": plan.subject_id, "site": plan.home_site.site_id, "age": age, "sex": morph.sex,
              "pathology": [], "sessions": []}
    years = 0.0
    for number in range(1, sessions + 1):
        session_rng = np.random.default_rng(base + [2, number])
        if number > 1:
            years += float(session_rng.uniform(0.5, 3.0))
        site = plan.home_site
        if number > 1 and plan.other_sites and session_rng.random() < 0.15:
            site = plan.other_sites[int(session_rng.integers(len(plan.other_sites)))]
        files = draw_session_files(session_rng)
        anatomy = build_anatomy(morph, age + years, grid, pathology, fields)
        scanned = scan_session(anatomy, site, files, session_rng)
        folder = out_dir / "fomo60k" / plan.subject_id / f"ses_{number}"
        written = []
        for stem, sequence in files.items():
            path = folder / f"{stem}.nii.gz"
            write_file(path, nifti_gz_bytes(scanned.images[stem], scanned.geometry.affine))
            written.append({"file": path.relative_to(out_dir).as_posix(), "sequence": sequence,
                            "dtype": site.dtype})
        if number == 1:
            record["pathology"] = [{"kind": lesion.kind, **lesion.details,
                                    "volume_mm3": round(lesion.layer.volume_mm3(grid.voxel_mm), 1)}
                                   for lesion in anatomy.lesions]
        record["sessions"].append({
            "session": f"ses_{number}", "age": round(age + years, 2), "site": site.site_id,
            "image_shape": list(scanned.geometry.shape),
            "spacing_mm": [round(v, 4) for v in scanned.geometry.spacing], "axcodes": site.axcodes,
            "ventricle_volume_mm3": round(anatomy.volumes_mm3()["ventricle"], 1), "files": written})
    return record
