"""The FOMO26 tasks of the sample world, in the layout the organisers release them.

    fomo26/<split>/Task_N/preprocessed/sub-XX/ses-01/<file>.nii.gz
    fomo26/<split>/Task_N/labels/sub-XX/ses-01/<label file>

File names as asparagus_preprocessing @ fce45b3 reads them (CLS002, SEG009, REGR002, SEG010, CLS003):
task 1 flair / adc / dwi_b1000 / swi or t2s + label.txt (and seg.nii.gz), task 2 flair / dwi_b1000 /
swi or t2s + seg.nii.gz, task 3 t1w.nii.gz + labels.txt (age; FOMO26's task 3 is T1 only), task 4
t2w.nii.gz + seg.nii.gz ({0, 1, 2}: trigeminal.py), task 5 t1.nii.gz + labels.txt (0/1:
malformation.py). Finetuning cases come from the finetuning hospitals and test cases from the other
hospitals (sites.py pools), as in FOMO25. Every FOMO26 case draws from its own seeded streams
(`[seed, 26, split, task, case, purpose]`), none shared with FOMO25's: generating FOMO26 never changes
a FOMO25 file. Tasks 1-2 reuse FOMO25's infarct and meningioma cases (task_cases.py), on their own streams.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dataset_conversion.sample_data.acquisition import StoredImage, nifti_gz_bytes
from dataset_conversion.sample_data.anatomy import build_anatomy
from dataset_conversion.sample_data.brain import draw_morphology
from dataset_conversion.sample_data.malformation import draw_polymicrogyria
from dataset_conversion.sample_data.output import write_file
from dataset_conversion.sample_data.pathology import Pathology, draw_lacunes
from dataset_conversion.sample_data.session import scan_session
from dataset_conversion.sample_data.sites import Site
from dataset_conversion.sample_data.task_cases import TaskCasePlan, simulate_task_case
from dataset_conversion.sample_data.tissues import AnatomyGrid
from dataset_conversion.sample_data.trigeminal import FossaGrid, draw_fossa_case, render_fossa

EDITION_STREAM = 26
SPLIT_STREAMS = {"finetune": 1, "test": 2}
TEST_ID_OFFSET = 1000
FOMO26_TASKS = (1, 2, 3, 4, 5)
LABEL_FILES = {1: "label.txt", 2: "seg.nii.gz", 3: "labels.txt", 4: "seg.nii.gz", 5: "labels.txt"}


@dataclass(frozen=True)
class Fomo26Config:
    """Case counts per task and split, the probing cohort's size and the task-4 block's grid."""

    size: str
    finetune: tuple[int, int, int, int, int]  # tasks 1-5
    test: tuple[int, int, int, int, int]
    probing_subjects: int
    fossa_shape: tuple[int, int, int]
    fossa_voxel_mm: float

    def count(self, split: str, task: int) -> int:
        return (self.finetune if split == "finetune" else self.test)[task - 1]

    def to_dict(self) -> dict:
        return asdict(self)


# FOMO26: task 1 21 (13 / 8) and task 2 23 as in FOMO25; task 3 ~500; task 4 ~40; task 5 48 (24 / 24).
FOMO26_PRESETS = {
    "tiny": Fomo26Config("tiny", (4, 4, 8, 8, 8), (4, 4, 6, 6, 6), 30, (44, 52, 32), 1.25),
    "small": Fomo26Config("small", (21, 23, 60, 40, 48), (40, 30, 60, 20, 24), 90, (64, 76, 48), 0.85),
    "medium": Fomo26Config("medium", (21, 23, 200, 40, 48), (80, 60, 120, 40, 48), 300, (96, 112, 72), 0.56),
    "full": Fomo26Config("full", (21, 23, 500, 40, 48), (320, 107, 800, 60, 96), 600, (128, 152, 96), 0.42),
}


def case_id(split: str, index: int) -> str:
    return f"sub-{index + 1 + (TEST_ID_OFFSET if split == 'test' else 0):02d}"


@dataclass(frozen=True)
class Fomo26CasePlan:
    split: str
    task: int
    index: int
    case_id: str
    label: int | None  # tasks 1 and 5: the class; task 4: 1 when the symptomatic nerve has vascular contact
    susceptibility: str | None
    site: Site


def plan_fomo26_cases(config: Fomo26Config, seed: int, sites: dict[str, list[Site]]) -> list[Fomo26CasePlan]:
    plans = []
    for split, stream in SPLIT_STREAMS.items():
        pool = sites["finetune" if split == "finetune" else "test"]
        for task in FOMO26_TASKS:
            count = config.count(split, task)
            rng = np.random.default_rng([seed, EDITION_STREAM, stream, task])
            labels = [None] * count
            if task == 1 and count:  # FOMO's 13:8 infarct ratio, both classes present
                positives = min(count - 1, max(1, round(count * 13 / 21)))
                labels = [int(v) for v in rng.permutation([1] * positives + [0] * (count - positives))]
            elif task == 5:  # balanced (24 / 24 in the real finetuning set)
                labels = [int(v) for v in rng.permutation(np.arange(count) % 2)]
            elif task == 4:  # classical TN: most symptomatic nerves have a vessel on them
                labels = [int(v) for v in rng.random(count) < 0.8]
            site_order = rng.permutation(np.arange(count) % len(pool))
            first = int(rng.integers(2))
            for index in range(count):
                susceptibility = ("swi", "t2s")[(index + first) % 2] if task in (1, 2) else None
                plans.append(Fomo26CasePlan(split, task, index, case_id(split, index), labels[index], susceptibility,
                                            pool[int(site_order[index])]))
    return plans


def _rng(seed: int, plan: Fomo26CasePlan, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, EDITION_STREAM, SPLIT_STREAMS[plan.split], plan.task, plan.index, purpose])


def _folder(out_dir: Path, plan: Fomo26CasePlan, kind: str) -> Path:
    return Path(out_dir) / "fomo26" / plan.split / f"Task_{plan.task}" / kind / plan.case_id / "ses-01"


def _write_nifti(path: Path, image: StoredImage, affine) -> str:
    write_file(path, nifti_gz_bytes(image, affine))
    return path.as_posix()


def run_fomo26_case(plan: Fomo26CasePlan, grid: AnatomyGrid, config: Fomo26Config, seed: int,
                    out_dir: str | Path) -> dict:
    """Simulate and write one case; return its ground-truth record (paths relative to out_dir)."""
    out_dir = Path(out_dir)
    images, record = {}, {"case_id": plan.case_id, "split": plan.split, "task": plan.task, "site": plan.site.site_id}
    labels_dir = _folder(out_dir, plan, "labels")
    images_dir = _folder(out_dir, plan, "preprocessed")
    if plan.task in (1, 2):
        legacy = TaskCasePlan(f"fomo26_{plan.split}", plan.task, plan.index, plan.case_id, plan.label,
                              plan.susceptibility, plan.site)
        case = simulate_task_case(legacy, grid, seed)
        affine = case.session.geometry.affine
        for name in case.channels:
            images[name] = _write_nifti(images_dir / f"{name}.nii.gz", case.session.images[name], affine)
        seg = StoredImage(case.segmentation())
        _write_nifti(labels_dir / "seg.nii.gz", seg, affine)
        if plan.task == 1:
            write_file(labels_dir / "label.txt", f"{plan.label}\n")
        record.update(age=case.age, sex=case.sex, target=case.target(),
                      lesions=[lesion.kind for lesion in case.anatomy.lesions],
                      image_shape=list(case.session.geometry.shape))
    elif plan.task in (3, 5):
        morph = draw_morphology(_rng(seed, plan, 0))
        rng = _rng(seed, plan, 1)
        if plan.task == 3:  # the finetuning cohort spans adulthood; the test hospitals see older patients
            age = rng.uniform(20, 90) if plan.split == "finetune" else 20 + 70 * rng.beta(1.6, 1.2)
            pathology = Pathology(lacunes=draw_lacunes(rng, int(rng.integers(1, 3)), grid.voxel_mm)
                                  if rng.random() < 0.2 else ())
        else:  # polymicrogyria patients are mostly children and young adults; controls of the same ages
            age = rng.uniform(4, 40)
            pathology = Pathology(polymicrogyria=draw_polymicrogyria(rng) if plan.label == 1 else None)
        age = round(float(age), 2)
        anatomy = build_anatomy(morph, age, grid, pathology)
        stem = "t1w" if plan.task == 3 else "t1"
        session = scan_session(anatomy, plan.site, {stem: "t1"}, _rng(seed, plan, 2))
        images[stem] = _write_nifti(images_dir / f"{stem}.nii.gz", session.images[stem], session.geometry.affine)
        target = age if plan.task == 3 else plan.label
        write_file(labels_dir / "labels.txt", f"{target:.2f}\n" if plan.task == 3 else f"{target}\n")
        record.update(age=age, sex=morph.sex, target=target, image_shape=list(session.geometry.shape),
                      lesions=[{"kind": lesion.kind, **lesion.details, "volume_voxels": int(mask.sum())}
                               for lesion, mask in zip(anatomy.lesions, session.lesion_masks)])
    else:
        fossa = draw_fossa_case(_rng(seed, plan, 0), conflict=plan.label == 1)
        site = plan.site
        voxel = config.fossa_voxel_mm * site.spacing_factors[0]
        scan = render_fossa(fossa, FossaGrid(config.fossa_shape, round(float(voxel), 4)), _rng(seed, plan, 1),
                            site.noise_fraction, site.bias_strength, site.intensity_scale, site.dtype, site.axcodes)
        images["t2w"] = _write_nifti(images_dir / "t2w.nii.gz", scan.image, scan.affine)
        _write_nifti(labels_dir / "seg.nii.gz", StoredImage(scan.labels), scan.affine)
        record.update(target=None, fossa=fossa.to_dict(), image_shape=list(scan.labels.shape),
                      label_voxels={"nerve": int((scan.labels == 1).sum()), "vessel": int((scan.labels == 2).sum())})
    record["images"] = {k: Path(v).relative_to(out_dir).as_posix() for k, v in images.items()}
    record["label_file"] = (labels_dir / LABEL_FILES[plan.task]).relative_to(out_dir).as_posix()
    record["axcodes"], record["dtype"] = plan.site.axcodes, plan.site.dtype
    return record
