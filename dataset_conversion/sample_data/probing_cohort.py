"""FOMO26 tasks 6 and 7: a cohort for linear probing and for its fairness across demographic groups.

What the organisers' probe reads (fomo26/fomo-lp @ f915d5a, README and pipeline/lp_fomo.py): one scan
per subject, one embedding per subject, a subjects CSV with `ptid`, `selected_cohort` (the class),
two demographic columns (one continuous, binned by FEATURE1_BINS; one categorical) and, for embedding,
`nifti_path`. Its probe splits subjects 40/10/50 stratified by class and scores one-vs-rest AUROC and
F1, overall and per demographic group. So the cohort here is:
- three balanced classes a T1 shows: `control`; `small_vessel_disease` (white-matter hyperintensities
  far beyond the age-expected load, plus lacunes: the commonest incidental finding of brain MRI
  cohorts, T1-hypointense); `ventriculomegaly` (ventricles ~1.9x the expected size, as in normal-pressure
  hydrocephalus, Evans index > 0.3);
- age (continuous, 40-85 years, uniform and drawn independently of the class) and sex (categorical,
  drawn independently) as the fairness variables, plus the acquisition site;
- classes dealt evenly within every site, so neither the demographics nor the site predict the class
  (a logistic regression on them stays near chance) while the images do. Age still changes the images
  (atrophy, age-related WMH, larger ventricles): a probe must tell disease from ageing, which is what
  makes the per-age-group fairness report informative.
Each subject draws from its own streams (`[seed, 26, 6, subject, purpose]`).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dataset_conversion.sample_data.acquisition import nifti_gz_bytes
from dataset_conversion.sample_data.anatomy import build_anatomy
from dataset_conversion.sample_data.brain import FocalSeed, draw_morphology
from dataset_conversion.sample_data.output import write_file
from dataset_conversion.sample_data.pathology import Pathology, draw_lacunes
from dataset_conversion.sample_data.session import scan_session
from dataset_conversion.sample_data.sites import Site
from dataset_conversion.sample_data.tissues import AnatomyGrid

COHORT_STREAM = (26, 6)
CLASSES = ("control", "small_vessel_disease", "ventriculomegaly")
AGE_RANGE = (40.0, 85.0)
VENTRICLE_ENLARGEMENT = 1.9
CSV_COLUMNS = ("ptid", "selected_cohort", "age", "sex", "site", "nifti_path")
SUBJECTS_CSV = "subjects.csv"
# where confluent white-matter disease gathers (cerebrum semi-axes): frontal and occipital caps, bands along
# the lateral ventricles, centrum semiovale (Fazekas grade 3 is periventricular and confluent)
PERIVENTRICULAR_BANDS = ((0.15, 0.33, 0.27), (0.17, -0.42, 0.2), (0.23, 0.0, 0.36), (0.2, 0.18, 0.33),
                         (0.22, -0.2, 0.33), (0.3, 0.05, 0.45))


def _side(rng: np.random.Generator, center: np.ndarray) -> np.ndarray:
    center[0] = abs(center[0]) * (1 if rng.random() < 0.5 else -1)
    return center


@dataclass(frozen=True)
class CohortPlan:
    index: int
    ptid: str
    cohort: str
    site: Site


def plan_cohort(count: int, seed: int, sites: list[Site]) -> list[CohortPlan]:
    """Sites in turn; within each site the classes in equal shares (a seeded order per site)."""
    rng = np.random.default_rng([seed, *COHORT_STREAM, 0])
    site_of = rng.permutation(np.arange(count) % len(sites))
    plans, per_site = [], {}
    for index in range(count):
        site = int(site_of[index])
        per_site.setdefault(site, []).append(index)
    cohort_of, dealt = {}, 0
    for site in sorted(per_site):  # dealt on from site to site: balanced within each site and overall (+-1)
        members = per_site[site]
        classes = rng.permutation((dealt + np.arange(len(members))) % len(CLASSES))
        cohort_of.update({m: CLASSES[int(c)] for m, c in zip(members, classes)})
        dealt += len(members)
    for index in range(count):
        plans.append(CohortPlan(index, f"sub-{index + 1:04d}", cohort_of[index], sites[int(site_of[index])]))
    return plans


def _rng(seed: int, plan: CohortPlan, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, *COHORT_STREAM, plan.index + 1, purpose])


def run_cohort_subject(plan: CohortPlan, grid: AnatomyGrid, seed: int, out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    morph = draw_morphology(_rng(seed, plan, 0))
    rng = _rng(seed, plan, 1)
    age = round(float(rng.uniform(*AGE_RANGE)), 1)
    pathology = Pathology()
    if plan.cohort == "small_vessel_disease":  # every seed active well before this age, larger, and confluent
        extra = tuple(FocalSeed(tuple(float(v) for v in _side(rng, np.asarray(base) + rng.normal(0, 0.05, 3))),
                                float(rng.uniform(4.0, 7.0)), age - 30.0)
                      for base in PERIVENTRICULAR_BANDS for _ in range(3))
        morph = replace(morph, wmh_seeds=tuple(replace(s, onset_age=min(s.onset_age, age - 30.0),
                                                       radius_mm=s.radius_mm * 2.2) for s in morph.wmh_seeds) + extra)
        pathology = Pathology(lacunes=draw_lacunes(rng, int(rng.integers(3, 7)), grid.voxel_mm))
    elif plan.cohort == "ventriculomegaly":
        morph = replace(morph, ventricle_factor=morph.ventricle_factor * VENTRICLE_ENLARGEMENT)
    anatomy = build_anatomy(morph, age, grid, pathology)
    session = scan_session(anatomy, plan.site, {"t1w": "t1"}, _rng(seed, plan, 2))
    path = out_dir / "fomo26" / "probing" / plan.ptid / "ses-01" / "t1w.nii.gz"
    write_file(path, nifti_gz_bytes(session.images["t1w"], session.geometry.affine))
    volumes = anatomy.volumes_mm3()
    return {"ptid": plan.ptid, "selected_cohort": plan.cohort, "age": age, "sex": morph.sex, "site": plan.site.site_id,
            "image": path.relative_to(out_dir).as_posix(), "image_shape": list(session.geometry.shape),
            "ventricle_volume_mm3": round(volumes["ventricle"], 1), "wmh_volume_mm3": round(volumes["wmh"], 1),
            "intracranial_volume_mm3": round(volumes["intracranial"], 1)}


def write_subjects_csv(out_dir: str | Path, records: list[dict]) -> Path:
    """The fomo-lp subjects CSV; `nifti_path` is absolute, as its embed_all.py expects."""
    out_dir = Path(out_dir)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r["ptid"], r["selected_cohort"], r["age"], r["sex"], r["site"],
                         str((out_dir / r["image"]).resolve())])
    return write_file(out_dir / "fomo26" / "probing" / SUBJECTS_CSV, text.getvalue())


def generate_probing_cohort(sample_dir: str | Path, seed: int, size: str) -> Path:
    """The probing cohort of the sample world at `size` beside the sample data (kept when it is there);
    returns its subjects CSV. The demo calls this for sample worlds generated before the cohort existed."""
    from dataset_conversion.sample_data.config import config_for_size
    from dataset_conversion.sample_data.fomo26_world import FOMO26_PRESETS  # imports this module's siblings
    from dataset_conversion.sample_data.sites import build_sites

    sample_dir = Path(sample_dir)
    path = sample_dir / "fomo26" / "probing" / SUBJECTS_CSV
    if path.is_file():
        return path
    config = config_for_size(size)
    grid = AnatomyGrid(tuple(config.grid_shape), float(config.voxel_mm))
    sites = build_sites(seed)
    count = FOMO26_PRESETS[size if size in FOMO26_PRESETS else "small"].probing_subjects
    records = [run_cohort_subject(plan, grid, seed, sample_dir)
               for plan in plan_cohort(count, seed, sites["finetune"] + sites["test"])]
    return write_subjects_csv(sample_dir, records)
