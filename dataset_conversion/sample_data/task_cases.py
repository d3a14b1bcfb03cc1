"""FOMO25 finetuning / test cases: infarct (task 1), meningioma (task 2) and brain age (task 3).

Layout written (as the FOMO task folders ship it):
    <split>/task<k>/preprocessed/sub_<id>/ses_1/<sequence>.nii.gz
    finetune: <split>/task<k>/labels/sub_<id>/ses_1/{label.txt|seg.nii.gz}
    test:     <split>/task<k>/labels/sub_<id>/{label.txt|seg.nii.gz}   (like the validation layout)
Task 1 has both: label.txt and, as the official data, the infarct mask seg.nii.gz beside it (the
recent infarcts the label is about; all-zero for negatives, whose old infarcts, lacunes and mimics
are not part of it).

Task 1 is a stroke-suspected clinical cohort. Positives carry a recent infarct (hyperacute < 6 h,
acute 6 h - 7 d or subacute 8-21 d: most stroke MRIs are done within the first days) of any size, from
a faint lacune to a large territorial infarct. Negatives are not healthy: stroke mimics are about a
quarter to a third of suspected strokes and old lesions shine through on DWI, so many carry a DWI-
or FLAIR-bright finding that is not an infarct (demyelination, vasogenic oedema, post-ictal change),
and both classes have old infarcts and lacunes (prior stroke and small-vessel disease are common in
stroke patients). Every DWI also has its site's susceptibility pile-up. What still separates the
classes is what a radiologist reads: DWI bright AND ADC low, inside the parenchyma.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_conversion.sample_data.acquisition import StoredImage, nifti_gz_bytes
from dataset_conversion.sample_data.anatomy import Anatomy, build_anatomy
from dataset_conversion.sample_data.brain import draw_morphology
from dataset_conversion.sample_data.config import SPLITS, SampleDataConfig
from dataset_conversion.sample_data.output import write_file
from dataset_conversion.sample_data.pathology import (Pathology, draw_chronic_infarcts, draw_infarcts, draw_lacunes,
                                                      draw_meningioma, draw_mimic)
from dataset_conversion.sample_data.session import ScannedSession, deepest_point_world, scan_session
from dataset_conversion.sample_data.sites import Site
from dataset_conversion.sample_data.tissues import AnatomyGrid
from fomo_nn.challenges.fomo25 import TASK_RULES

SPLIT_STREAM = {"finetune": 1, "test": 2,
                "fomo26_finetune": 261, "fomo26_test": 262}  # FOMO26 tasks 1-2 (fomo26_world.py): own streams
TEST_ID_OFFSET = 1000  # test subjects are sub_1001, ... so they never collide with finetuning ids


def task_channels(task: int, susceptibility: str | None) -> tuple[str, ...]:
    """Input sequences of a task case, one per channel of its FOMO25 rule; swi_or_t2s is `susceptibility`."""
    return tuple(susceptibility if len(c.sequences) > 1 else c.sequences[0] for c in TASK_RULES[task].channels)


@dataclass(frozen=True)
class TaskCasePlan:
    split: str
    task: int
    index: int
    case_id: str
    label: int | None  # task 1 class; None otherwise
    susceptibility: str | None  # "swi" or "t2s" for tasks 1 and 2
    site: Site


def plan_task_cases(config: SampleDataConfig, seed: int, sites: dict[str, list[Site]]) -> list[TaskCasePlan]:
    """Which cases exist, their task-1 class (FOMO's 13:8 ratio), swi/t2s choice and site."""
    plans = []
    for split in SPLITS:
        pool = sites["finetune" if split == "finetune" else "test"]
        for task in (1, 2, 3):
            count = config.case_count(split, task)
            rng = np.random.default_rng([seed, 4, SPLIT_STREAM[split], task])
            labels = [None] * count
            if task == 1:
                positives = config.positives(split)
                labels = [int(v) for v in rng.permutation([1] * positives + [0] * (count - positives))]
            site_order = rng.permutation(np.arange(count) % len(pool))
            first_susceptibility = int(rng.integers(2))
            for index in range(count):
                number = index + 1 + (TEST_ID_OFFSET if split == "test" else 0)
                susceptibility = ("swi", "t2s")[(index + first_susceptibility) % 2] if task in (1, 2) else None
                plans.append(TaskCasePlan(split, task, index, f"sub_{number}", labels[index], susceptibility,
                                          pool[int(site_order[index])]))
    return plans


def _case_rng(seed: int, plan: TaskCasePlan, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_STREAM[plan.split], plan.task, plan.index, purpose])


def draw_case_age(plan: TaskCasePlan, rng: np.random.Generator) -> float:
    if plan.task == 3:  # finetuning cohort spans adulthood; the test hospitals see older patients
        age = rng.uniform(20, 90) if plan.split == "finetune" else 20 + 70 * rng.beta(1.6, 1.2)
    else:
        age = 35 + 52 * rng.beta(2.0, 1.5)
    return round(float(age), 2)


# Task 1 findings besides the label: (probability among negatives, among positives)
# A DWI/FLAIR-bright non-infarct lesion: mimics are 25-30 % of suspected strokes, and a cohort referred for
# MRI adds chronic lesions that shine through; seizures (the commonest mimic) give the post-ictal kind.
TASK1_MIMIC = (0.4, 0.15)
MIMIC_KINDS = (("demyelination", "vasogenic_edema", "postictal"), ((0.45, 0.4, 0.15), (0.5, 0.5, 0.0)))
TASK1_OLD_INFARCT = (0.15, 0.2)  # about a quarter of stroke patients have had a stroke before
TASK1_LACUNES = (0.3, 0.35)  # small-vessel disease: silent lacunes in 20-30 % of people of stroke age


def draw_case_pathology(plan: TaskCasePlan, rng: np.random.Generator, voxel_mm: float) -> Pathology:
    if plan.task == 1:
        positive = int(plan.label == 1)
        count = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])) if positive else 0
        infarcts = draw_infarcts(rng, count, voxel_mm) if count else ()
        if rng.random() < TASK1_OLD_INFARCT[positive]:
            infarcts += draw_chronic_infarcts(rng, 1, voxel_mm)
        lacunes = draw_lacunes(rng, int(rng.integers(1, 3)), voxel_mm) if rng.random() < TASK1_LACUNES[positive] else ()
        mimics = ()
        if rng.random() < TASK1_MIMIC[positive]:
            kinds, probabilities = MIMIC_KINDS[0], MIMIC_KINDS[1][positive]
            mimics = (draw_mimic(rng, kinds[int(rng.choice(len(kinds), p=probabilities))], voxel_mm),)
        return Pathology(infarcts=infarcts, lacunes=lacunes, mimics=mimics)
    lacunes = draw_lacunes(rng, int(rng.integers(1, 3)), voxel_mm) if rng.random() < 0.3 else ()
    if plan.task == 2:
        return Pathology(lacunes=lacunes, meningioma=draw_meningioma(rng, voxel_mm))
    return Pathology(lacunes=lacunes if rng.random() < 0.3 else ())


@dataclass
class SimulatedCase:
    plan: TaskCasePlan
    age: float
    sex: str
    anatomy: Anatomy
    session: ScannedSession
    channels: tuple[str, ...]

    def segmentation(self) -> np.ndarray | None:
        """The task's mask on the image grid (uint8 {0, 1}): task 2 the meningioma, task 1 the recent
        infarcts (the label's lesions; empty for negatives); None for task 3."""
        wanted = {1: "infarct", 2: "meningioma"}.get(self.plan.task)
        if wanted is None:
            return None
        seg = np.zeros(self.session.geometry.shape, dtype=np.uint8)
        for lesion, mask in zip(self.anatomy.lesions, self.session.lesion_masks):
            if lesion.kind == wanted:
                seg[mask] = 1
        return seg

    def target(self) -> float | int | None:
        return self.plan.label if self.plan.task == 1 else (self.age if self.plan.task == 3 else None)

    def label_is_visible(self) -> bool:
        """An infarct-positive case shows an infarct and a task 2 case a meningioma on its scan grid."""
        wanted = {1: "infarct" if self.plan.label == 1 else None, 2: "meningioma"}.get(self.plan.task)
        return wanted is None or any(lesion.kind == wanted and mask.any()
                                     for lesion, mask in zip(self.anatomy.lesions, self.session.lesion_masks))


MAX_PATHOLOGY_DRAWS = 5


def simulate_task_case(plan: TaskCasePlan, grid: AnatomyGrid, seed: int) -> SimulatedCase:
    """Build and scan one case in memory (deterministic in `seed` and the plan).

    If the drawn lesion does not show on the scan grid (too small for very thick slices), the
    pathology is drawn again from the next seeded stream, so a label always has its lesion.
    """
    morph = draw_morphology(_case_rng(seed, plan, 0))
    age = draw_case_age(plan, _case_rng(seed, plan, 1))
    channels = task_channels(plan.task, plan.susceptibility)
    for attempt in range(MAX_PATHOLOGY_DRAWS):
        rng = _case_rng(seed, plan, 2) if attempt == 0 else _case_rng(seed, plan, 10 + attempt)
        anatomy = build_anatomy(morph, age, grid, draw_case_pathology(plan, rng, grid.voxel_mm))
        session = scan_session(anatomy, plan.site, {name: name for name in channels}, _case_rng(seed, plan, 3))
        case = SimulatedCase(plan, age, morph.sex, anatomy, session, channels)
        if case.label_is_visible():
            return case
    raise RuntimeError(f"{plan.split}/task{plan.task}/{plan.case_id}: no visible lesion after "
                       f"{MAX_PATHOLOGY_DRAWS} draws (grid {grid.shape} at {grid.voxel_mm} mm)")


def case_folder(out_dir: Path, plan: TaskCasePlan) -> Path:
    return Path(out_dir) / plan.split / f"task{plan.task}"


def label_path(out_dir: Path, plan: TaskCasePlan, name: str | None = None) -> Path:
    name = name or TASK_RULES[plan.task].label_file
    labels = case_folder(out_dir, plan) / "labels" / plan.case_id
    return (labels / "ses_1" / name) if plan.split == "finetune" else (labels / name)


def write_task_case(case: SimulatedCase, out_dir: Path) -> dict:
    """Write images and label; return the ground-truth record for sample_data.json."""
    out_dir = Path(out_dir)
    plan, session = case.plan, case.session
    affine = session.geometry.affine
    images = {}
    for name in case.channels:
        path = case_folder(out_dir, plan) / "preprocessed" / plan.case_id / "ses_1" / f"{name}.nii.gz"
        write_file(path, nifti_gz_bytes(session.images[name], affine))
        images[name] = path.relative_to(out_dir).as_posix()
    label_file = label_path(out_dir, plan)
    mask_file = None
    if plan.task == 2:
        write_file(label_file, nifti_gz_bytes(StoredImage(case.segmentation()), affine))
    elif plan.task == 1:
        write_file(label_file, f"{plan.label}\n")
        mask_file = label_path(out_dir, plan, "seg.nii.gz")
        write_file(mask_file, nifti_gz_bytes(StoredImage(case.segmentation()), affine))
    else:
        write_file(label_file, f"{case.age:.2f}\n")
    record = case_record(case, images, label_file.relative_to(out_dir).as_posix())
    if mask_file is not None:
        record["mask_file"] = mask_file.relative_to(out_dir).as_posix()
    return record


def case_record(case: SimulatedCase, images: dict, label_file: str) -> dict:
    anatomy, session, plan = case.anatomy, case.session, case.plan
    lesions = []
    for lesion, mask in zip(anatomy.lesions, session.lesion_masks):
        lesions.append({"kind": lesion.kind, **lesion.details,
                        "volume_mm3": round(lesion.layer.volume_mm3(anatomy.grid.voxel_mm), 1),
                        "volume_voxels": int(mask.sum()),
                        "peak_world_mm": deepest_point_world(mask, session.geometry.affine)})
    volumes = anatomy.volumes_mm3()
    return {
        "case_id": plan.case_id, "split": plan.split, "task": plan.task, "site": plan.site.site_id,
        "age": case.age, "sex": case.sex, "target": case.target(), "images": images, "label_file": label_file,
        "image_shape": list(session.geometry.shape), "spacing_mm": [round(v, 4) for v in session.geometry.spacing],
        "axcodes": plan.site.axcodes, "dtype": plan.site.dtype, "lesions": lesions,
        "ventricle_volume_mm3": round(volumes["ventricle"], 1), "brain_volume_mm3": round(volumes["brain"], 1),
        "intracranial_volume_mm3": round(volumes["intracranial"], 1), "wmh_volume_mm3": round(volumes["wmh"], 1),
        "atrophy": round(anatomy.atrophy, 4),
    }


def run_task_case(plan: TaskCasePlan, grid: AnatomyGrid, seed: int, out_dir: str | Path) -> dict:
    return write_task_case(simulate_task_case(plan, grid, seed), Path(out_dir))
