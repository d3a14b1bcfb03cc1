"""FOMO60K-like pretraining corpus: sub_<id>/ses_<n>/<sequence>.nii.gz.

Shaped like FOMO60K (60,529 scans, 13,900 sessions, 11,187 subjects): about 1.24 sessions per subject
and 4.3 scans per session; sessions hold 2-7 co-registered files, some with FOMO's other names (t1_2,
scan_3). A subject keeps its anatomy across sessions (same morphology and random fields, a little
older), so two scans of one subject are a meaningful positive pair for subject-aware contrastive
learning. It is a clinical archive, not a healthy cohort: recent and old infarcts, lacunes, white-matter
hyperintensities (with age, in brain.py), demyelination, oedema and meningiomas occur at the
prevalences stated in `draw_subject_pathology`, and an encoder meets each of them during pretraining.
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
from dataset_conversion.sample_data.pathology import (Pathology, draw_chronic_infarcts, draw_infarcts, draw_lacunes,
                                                      draw_meningioma, draw_mimic)
from dataset_conversion.sample_data.session import scan_session
from dataset_conversion.sample_data.sites import Site
from dataset_conversion.sample_data.tissues import AnatomyGrid

PRETRAINING_STREAM = 0
SEQUENCE_WEIGHTS = {"t1": 1.0, "t2": 0.6, "flair": 0.65, "dwi_b1000": 0.3, "adc": 0.25, "swi": 0.2, "t2s": 0.2,
                    "pd": 0.15}
# FOMO60K: 13,900 / 11,187 = 1.24 sessions per subject; 60,529 / 13,900 = 4.35 scans per session
SESSION_COUNTS, SESSION_PROBABILITIES = (1, 2, 3, 4), (0.82, 0.13, 0.04, 0.01)  # mean 1.24
SEQUENCE_COUNTS, SEQUENCE_PROBABILITIES = (2, 3, 4, 5, 6, 7), (0.10, 0.18, 0.27, 0.25, 0.13, 0.07)  # mean 4.34
STROKE_PROTOCOL = ("dwi_b1000", "adc", "flair")  # what an MRI for suspected stroke always contains


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


def draw_session_files(rng: np.random.Generator, stroke_protocol: bool = False) -> dict[str, str]:
    """{file stem: sequence}: 2-7 files, sometimes a repeat (`t1_2`) or an unnamed scan (`scan_3`).

    The ADC map is computed from the DWI acquisition, so the two mostly come together.
    """
    names = list(SEQUENCE_WEIGHTS)
    weights = np.asarray([SEQUENCE_WEIGHTS[n] for n in names])
    count = int(rng.choice(SEQUENCE_COUNTS, p=SEQUENCE_PROBABILITIES))
    if stroke_protocol:
        count = max(count, len(STROKE_PROTOCOL) + 1)
    repeat = count > 2 and rng.random() < 0.2
    distinct = min(count - int(repeat), len(names))
    chosen = [str(s) for s in rng.choice(names, size=distinct, replace=False, p=weights / weights.sum())]
    pair = {"dwi_b1000": "adc", "adc": "dwi_b1000"}
    for sequence, partner in pair.items():
        if sequence in chosen and partner not in chosen and rng.random() < 0.75:
            swappable = [i for i, n in enumerate(chosen) if n not in pair]
            if swappable:
                chosen[swappable[-1]] = partner
    if stroke_protocol:
        others = [n for n in chosen if n not in STROKE_PROTOCOL]
        chosen = list(STROKE_PROTOCOL) + others[: distinct - len(STROKE_PROTOCOL)]
    files = [(sequence, sequence) for sequence in chosen]
    if repeat:
        sequence = chosen[int(rng.integers(len(chosen)))]
        files.append((f"{sequence}_2", sequence))
    if rng.random() < 0.2:
        position = int(rng.integers(len(files)))
        files[position] = (f"scan_{position + 1}", files[position][1])
    return dict(files)


def _rises_with_age(age: float, young: float, old: float) -> float:
    """A prevalence that grows linearly from `young` (40 and under) to `old` (90)."""
    return young + (old - young) * float(np.clip((age - 40.0) / 50.0, 0.0, 1.0))


def draw_subject_pathology(rng: np.random.Generator, voxel_mm: float, age: float) -> Pathology:
    """A clinical archive's findings (per subject; first session).

    Prevalences (rounded, adult archive aged 20-88): a recent infarct in ~8 % of subjects (stroke is a
    leading indication for brain MRI; DWI-positive in about a third of suspected strokes); old
    territorial infarcts 3 % under 40 rising to 15 % at 90 and lacunes 5 % rising to 40 % (silent
    infarcts: about 20 % of 60-90 year olds in population studies, more in patients); meningioma 4-8 %
    (incidental in ~1 % of the general population, rising with age, and the commonest intracranial
    tumour in clinical archives); demyelination 8 % under 55, 2 % above (MS is diagnosed at 20-40);
    vasogenic oedema 2 %; post-ictal change 1 %. White-matter hyperintensities come with age (brain.py).
    """
    infarcts = draw_infarcts(rng, int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])), voxel_mm) \
        if rng.random() < 0.08 else ()
    if rng.random() < _rises_with_age(age, 0.03, 0.15):
        infarcts += draw_chronic_infarcts(rng, int(rng.integers(1, 3)), voxel_mm)
    lacunes = draw_lacunes(rng, int(rng.integers(1, 4)), voxel_mm) if rng.random() < _rises_with_age(age, 0.05, 0.4) \
        else ()
    meningioma = draw_meningioma(rng, voxel_mm) if rng.random() < _rises_with_age(age, 0.04, 0.08) else None
    mimics = []
    for kind, probability in (("demyelination", 0.08 if age < 55 else 0.02), ("vasogenic_edema", 0.02),
                              ("postictal", 0.01)):
        if rng.random() < probability:
            mimics.append(draw_mimic(rng, kind, voxel_mm))
    return Pathology(infarcts=infarcts, lacunes=lacunes, meningioma=meningioma, mimics=tuple(mimics))


def lesion_records(anatomy, grid: AnatomyGrid) -> list[dict]:
    return [{"kind": lesion.kind, **lesion.details, "volume_mm3": round(lesion.layer.volume_mm3(grid.voxel_mm), 1)}
            for lesion in anatomy.lesions]


def run_pretraining_subject(plan: PretrainingSubjectPlan, grid: AnatomyGrid, seed: int, out_dir: str | Path) -> dict:
    """Simulate and write all sessions of one subject; return its record."""
    out_dir = Path(out_dir)
    base = [seed, PRETRAINING_STREAM, 0, plan.index]
    rng = np.random.default_rng(base + [0])
    morph = draw_morphology(rng)
    age = round(float(rng.uniform(20, 88)), 2)
    sessions = int(rng.choice(SESSION_COUNTS, p=SESSION_PROBABILITIES))
    pathology = draw_subject_pathology(np.random.default_rng(base + [1]), grid.voxel_mm, age)
    recent = any(spec.stage != "chronic" for spec in pathology.infarcts)
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
        files = draw_session_files(session_rng, stroke_protocol=recent and number == 1)
        anatomy = build_anatomy(morph, age + years, grid, pathology if number == 1 else pathology.at_follow_up(),
                                fields)
        scanned = scan_session(anatomy, site, files, session_rng)
        folder = out_dir / "fomo60k" / plan.subject_id / f"ses_{number}"
        written = []
        for stem, sequence in files.items():
            path = folder / f"{stem}.nii.gz"
            write_file(path, nifti_gz_bytes(scanned.images[stem], scanned.geometry.affine))
            written.append({"file": path.relative_to(out_dir).as_posix(), "sequence": sequence,
                            "dtype": site.dtype})
        lesions = lesion_records(anatomy, grid)
        if number == 1:
            record["pathology"] = lesions
        record["sessions"].append({
            "session": f"ses_{number}", "age": round(age + years, 2), "site": site.site_id,
            "image_shape": list(scanned.geometry.shape),
            "spacing_mm": [round(v, 4) for v in scanned.geometry.spacing], "axcodes": site.axcodes,
            "ventricle_volume_mm3": round(anatomy.volumes_mm3()["ventricle"], 1), "lesions": lesions,
            "files": written})
    return record
