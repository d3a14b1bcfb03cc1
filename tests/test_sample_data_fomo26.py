"""The FOMO26 part of the sample world: released layout and file names, labels, site split, balance, thin
elongated task-4 structures with their neurovascular contact, and a probing cohort whose class the
demographics do not predict while the images do. FOMO25's files stay exactly as they were.

Layout and names: asparagus_preprocessing @ fce45b3 (CLS002, SEG009, REGR002, SEG010, CLS003);
cohort CSV: fomo26/fomo-lp @ f915d5a.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from dataset_conversion.sample_data.config import config_for_size
from dataset_conversion.sample_data.fomo26_world import FOMO26_PRESETS
from dataset_conversion.sample_data.generate import generate_sample_data
from dataset_conversion.sample_data.probing_cohort import CLASSES
from fomo_nn.cli.generate_sample_data import build_parser

FILES = {1: ({"flair", "adc", "dwi_b1000"}, "label.txt"), 2: ({"flair", "dwi_b1000"}, "seg.nii.gz"),
         3: ({"t1w"}, "labels.txt"), 4: ({"t2w"}, "seg.nii.gz"), 5: ({"t1"}, "labels.txt")}
CONFIG = replace(FOMO26_PRESETS["tiny"], probing_subjects=45)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("fomo26") / "data"
    metadata = generate_sample_data(out, seed=0, size="tiny", num_workers=2, progress=False, edition="fomo26",
                                    config=config_for_size("tiny", pretraining_subjects=5), fomo26_config=CONFIG)
    return out, metadata


def _load(path: Path):
    image = nib.load(str(path))
    return np.asanyarray(image.dataobj), image.affine


def test_released_layout_counts_labels_and_sites(world):
    out, metadata = world
    assert not (out / "finetune").exists() and not (out / "test").exists()  # no FOMO25 tasks in this edition
    fomo26 = metadata["fomo26"]
    for split in ("finetune", "test"):
        for task, (channels, label_name) in FILES.items():
            cases = sorted((out / "fomo26" / split / f"Task_{task}" / "preprocessed").iterdir())
            assert len(cases) == CONFIG.count(split, task)
            for case in cases:
                names = {p.name[: -len(".nii.gz")] for p in (case / "ses-01").iterdir()}
                assert channels <= names and names - channels <= {"swi", "t2s"}, (case, names)
                assert (out / "fomo26" / split / f"Task_{task}" / "labels" / case.name / "ses-01" / label_name).is_file()
            assert all(c.name.startswith("sub-") for c in cases)
    records = {split: {f"Task_{t}": fomo26[split][f"Task_{t}"] for t in FILES} for split in ("finetune", "test")}
    t5 = records["finetune"]["Task_5"]
    assert sum(r["target"] for r in t5) * 2 == len(t5)  # balanced, as the real 24 / 24
    for r in t5:
        text = (out / r["label_file"]).read_text().strip()
        assert text == str(r["target"]) and text in ("0", "1")
        assert any(lesion["kind"] == "polymicrogyria" for lesion in r["lesions"]) == (r["target"] == 1)
    for r in records["finetune"]["Task_3"]:
        assert abs(float((out / r["label_file"]).read_text()) - r["age"]) < 0.01
    finetune_sites = {r["site"] for rows in records["finetune"].values() for r in rows}
    test_sites = {r["site"] for rows in records["test"].values() for r in rows}
    assert finetune_sites and test_sites and not finetune_sites & test_sites
    assert {r["axcodes"] for rows in records["finetune"].values() for r in rows} == {"RAS"}  # "preprocessed"


def _components(mask: np.ndarray, spacing: np.ndarray):
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    for k in range(1, count + 1):
        component = labelled == k
        if component.sum() < 4:
            continue
        points = np.argwhere(component) * spacing
        centred = points - points.mean(0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        length = float(np.ptp(centred @ axis))
        thickness = 2 * float(ndimage.distance_transform_edt(np.pad(component, 1), sampling=spacing).max())
        yield length, thickness


def test_task4_nerve_and_vessel_are_thin_elongated_and_touch_when_in_conflict(world):
    out, metadata = world
    for split in ("finetune", "test"):
        for record in metadata["fomo26"][split]["Task_4"]:
            seg, affine = _load(out / record["label_file"])
            image, image_affine = _load(out / record["images"]["t2w"])
            assert seg.shape == image.shape and np.allclose(affine, image_affine)
            assert set(np.unique(seg)) == {0, 1, 2}
            spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
            for label in (1, 2):
                shapes = list(_components(seg == label, spacing))
                assert shapes, (record["case_id"], label)
                for length, thickness in shapes:
                    assert thickness <= 5.5 and length >= 2.5 * thickness, (record["case_id"], label, length, thickness)
            touching = (ndimage.binary_dilation(seg == 1, structure=np.ones((3, 3, 3))) & (seg == 2)).any()
            assert touching == record["fossa"]["neurovascular_contact"], record["case_id"]
            # dark cords on bright CSF, as on a CISS / FIESTA scan
            values = np.asanyarray(nib.load(str(out / record["images"]["t2w"])).get_fdata())
            assert np.median(values[seg == 1]) < 0.6 * np.percentile(values, 90)


def _cohort_features(rows):
    features = []
    for row in rows:
        image = nib.as_closest_canonical(nib.load(row["nifti_path"])).get_fdata()
        reference = np.percentile(image[image > 0], 90)
        n = np.array(image.shape)
        lo, hi = (n * 0.3).astype(int), (n * 0.7).astype(int)
        centre = image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        values = centre[centre > 0] / reference
        features.append([(values < 0.45).mean(), ((values > 0.5) & (values < 0.8)).mean()])
    return np.asarray(features)


def _cv_accuracy(features, labels) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(model, features, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean())


def test_probing_cohort_class_is_in_the_images_not_in_the_demographics(world):
    out, _ = world
    with open(out / "fomo26" / "probing" / "subjects.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames[:4] == ["ptid", "selected_cohort", "age", "sex"] and "nifti_path" in reader.fieldnames
    assert len(rows) == CONFIG.probing_subjects and all(Path(r["nifti_path"]).is_absolute() for r in rows)
    counts = [sum(r["selected_cohort"] == c for r in rows) for c in CLASSES]
    assert max(counts) - min(counts) <= 1
    for site in {r["site"] for r in rows}:  # classes dealt evenly within every site too
        per_site = [sum(r["selected_cohort"] == c and r["site"] == site for r in rows) for c in CLASSES]
        assert max(per_site) - min(per_site) <= 1
    labels = np.array([r["selected_cohort"] for r in rows])
    sites = sorted({r["site"] for r in rows})
    demographics = np.array([[float(r["age"]), r["sex"] == "M"] + [r["site"] == s for s in sites] for r in rows],
                            dtype=float)
    demographic_accuracy = _cv_accuracy(demographics, labels)
    image_accuracy = _cv_accuracy(_cohort_features(rows), labels)
    # chance is 1/3; seeds 0-2 measured: demographics 0.13-0.22, two image features 0.67-0.89 (5-fold)
    assert demographic_accuracy <= 0.45, demographic_accuracy
    assert image_accuracy >= 0.6 and image_accuracy - demographic_accuracy >= 0.3, (image_accuracy, demographic_accuracy)


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def test_adding_fomo26_changes_no_fomo25_file(tmp_path):
    small = config_for_size("tiny", pretraining_subjects=2, task1_finetune=2, task1_test=0, task2_finetune=1,
                            task2_test=0, task3_finetune=1, task3_test=1)
    few = replace(FOMO26_PRESETS["tiny"], finetune=(2, 1, 1, 1, 2), test=(0, 0, 0, 1, 0), probing_subjects=3)
    generate_sample_data(tmp_path / "a", seed=3, num_workers=1, progress=False, config=small)
    generate_sample_data(tmp_path / "b", seed=3, num_workers=1, progress=False, config=small, edition="all",
                         fomo26_config=few)
    before, after = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    fomo25 = {k: v for k, v in before.items() if k != "sample_data.json"}
    assert fomo25 and all(after[k] == v for k, v in fomo25.items())
    old, new = (json.loads((tmp_path / x / "sample_data.json").read_text()) for x in "ab")
    assert new["finetune"] == old["finetune"] and new["test"] == old["test"] and new["pretraining"] == old["pretraining"]
    assert any(k.startswith("fomo26/finetune/Task_4/") for k in after)


def test_corpus_in_fomo300k_layout_converts_with_its_metadata(world, tmp_path, monkeypatch):
    from dataset_conversion.fomo300k import convert_fomo300k
    from fomo_nn.datasets.manifest import load_manifest

    out, metadata = world
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    sessions = [(r, s) for r in metadata["pretraining"] for s in r["sessions"]]
    counts = metadata["fomo26"]["counts"]["fomo300k"]
    assert counts["zipped"] == len(sessions) // 4 and counts["images"] == metadata["counts"]["pretraining"]["images"]
    assert len(list((out / "fomo300k").rglob("*.zip"))) == counts["zipped"] > 0
    report = convert_fomo300k(out / "fomo300k", 3, progress=False)
    assert report.bad == [] and report.converted == counts["images"]
    images = load_manifest(tmp_path / "raw" / "Dataset003_FOMO300K").images
    by_site = {site_id: site for site_id, site in metadata["sites"].items()}
    assert {im.source for im in images} == {f"PT9{int(s['site'].rsplit('_', 1)[1]):02d}_Synth"
                                            f"{s['site'].replace('_', '').capitalize()}" for _, s in sessions}
    assert all(im.age is not None and im.sex in ("M", "F") and im.vendor in ("Siemens", "GE", "Philips")
               for im in images)
    strengths = {by_site[s["site"]]["field_strength_t"] for _, s in sessions}
    assert {im.field_strength for im in images} == strengths
    assert {im.modality for im in images} <= {"anat", "dwi", "undefined"}


def test_cli_takes_the_edition():
    assert build_parser().parse_args(["out", "--edition", "fomo26"]).edition == "fomo26"
    assert build_parser().parse_args(["out"]).edition == "fomo25"


def test_polymicrogyria_thickens_the_cortex_of_its_patch_only():
    from dataset_conversion.sample_data.anatomy import build_anatomy
    from dataset_conversion.sample_data.brain import draw_morphology
    from dataset_conversion.sample_data.malformation import draw_polymicrogyria
    from dataset_conversion.sample_data.pathology import Pathology
    from dataset_conversion.sample_data.tissues import AnatomyGrid, Tissue

    grid = AnatomyGrid((54, 64, 54), 3.0)
    for seed in (1, 2):
        morph = draw_morphology(np.random.default_rng(seed))
        spec = replace(draw_polymicrogyria(np.random.default_rng(seed + 10)), bilateral=False)
        plain = build_anatomy(morph, 15.0, grid)
        malformed = build_anatomy(morph, 15.0, grid, Pathology(polymicrogyria=spec))
        centre = np.asarray(malformed.lesions[0].details["center_anatomy_mm"])
        distance = np.sqrt(sum((c - c0) ** 2 for c, c0 in zip(grid.coordinates(), centre)))
        inside, far = distance < spec.radius_mm, distance > spec.radius_mm + 2 * grid.voxel_mm
        grey = [(a.labels == Tissue.GREY_MATTER) for a in (plain, malformed)]
        white = [((a.labels == Tissue.WHITE_MATTER) & inside).sum() for a in (plain, malformed)]
        # at 3 mm most of a surface patch is cortex already; the thick cortex takes a fifth or more of its white
        # matter (seeds 1-6 measured: 22-45 %) and grows by the same voxels
        assert white[1] <= 0.8 * white[0], (seed, white)
        assert (grey[1] & inside).sum() - (grey[0] & inside).sum() == white[0] - white[1]
        assert ((grey[1] != grey[0]) & far).sum() == 0  # nothing changes away from the patch
