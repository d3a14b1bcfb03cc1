"""The synthetic FOMO-like sample: layout, determinism, geometry, heterogeneity and learnable signal."""
import dataclasses
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from dataset_conversion.sample_data.acquisition import to_scan
from dataset_conversion.sample_data.anatomy import build_anatomy
from dataset_conversion.sample_data.brain import draw_morphology
from dataset_conversion.sample_data.config import CORPUS_TO_FINETUNE_SUBJECTS, SIZE_PRESETS, config_for_size
from dataset_conversion.sample_data.generate import METADATA_FILE, MARKER_FILE, generate_sample_data
from dataset_conversion.sample_data.lesion_contrast import STAGES
from dataset_conversion.sample_data.output import FILE_MODE
from dataset_conversion.sample_data.pathology import Pathology, draw_infarcts
from dataset_conversion.sample_data.pretraining_corpus import (SEQUENCE_COUNTS, SEQUENCE_PROBABILITIES, SESSION_COUNTS,
                                                               SESSION_PROBABILITIES, draw_session_files,
                                                               draw_subject_pathology)
from dataset_conversion.sample_data.session import scan_session
from dataset_conversion.sample_data.sites import build_sites
from dataset_conversion.sample_data.task_cases import plan_task_cases, simulate_task_case
from dataset_conversion.sample_data.tissues import AnatomyGrid, Tissue
from fomo_nn.cli.generate_sample_data import main as cli_main
from fomo_nn.io import BadInputError, read_image

FOMO60K_NAME = re.compile(r"^(t1|t2|flair|dwi_b1000|adc|swi|t2s|pd)(_\d+)?\.nii\.gz$|^scan_\d+\.nii\.gz$")
TINY = config_for_size("tiny")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "data"
    metadata = generate_sample_data(out, seed=0, size="tiny", num_workers=1, progress=False)
    return out, metadata


def _load(path):
    image = nib.load(str(path))
    return np.asarray(image.dataobj, dtype=np.float64), image


def _cases(metadata, task, splits=("finetune", "test")):
    return [case for split in splits for case in metadata[split][f"task{task}"]]


def _pretraining_files(out):
    return sorted((out / "fomo60k").glob("sub_*/ses_*/*.nii.gz"))


def test_layout_and_counts(sample):
    out, metadata = sample
    assert json.loads((out / METADATA_FILE).read_text()) == json.loads(json.dumps(metadata))
    assert not (out / MARKER_FILE).exists()
    assert {p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()} == {FILE_MODE}  # not mkstemp's 0600
    assert metadata["counts"]["pretraining"]["subjects"] == TINY.pretraining_subjects == 36
    files = _pretraining_files(out)
    assert len(files) == metadata["counts"]["pretraining"]["images"]
    assert all(FOMO60K_NAME.match(f.name) for f in files)
    sessions = {f.parent for f in files}
    assert all(2 <= len(list(s.glob("*.nii.gz"))) <= 7 for s in sessions)
    assert len({s.parent for s in sessions}) == 36 and len(sessions) > 36  # some subjects have several sessions
    # FOMO60K: 1.24 sessions per subject, 4.35 scans per session (a 36-subject sample lands near both)
    assert 1.05 < len(sessions) / 36 < 1.5 and 3.6 < len(files) / len(sessions) < 5.0
    for split, expected in (("finetune", {"task1": 10, "task2": 8, "task3": 16}), ("test", {"task1": 8, "task2": 6,
                                                                                            "task3": 12})):
        for task, count in expected.items():
            assert metadata["counts"][split][task]["cases"] == count
            subjects = sorted((out / split / task / "preprocessed").glob("sub_*"))
            assert len(subjects) == count
            for subject in subjects:
                assert [p.name for p in subject.iterdir()] == ["ses_1"]
                names = {p.name for p in (subject / "ses_1").iterdir()}
                if task == "task1":
                    assert {"dwi_b1000.nii.gz", "flair.nii.gz", "adc.nii.gz"} < names and len(names) == 4
                    assert names & {"swi.nii.gz", "t2s.nii.gz"}
                elif task == "task2":
                    assert {"dwi_b1000.nii.gz", "flair.nii.gz"} < names and len(names) == 3
                else:
                    assert names == {"t1.nii.gz", "t2.nii.gz"}
                labels = out / split / task / "labels" / subject.name
                label_dir = labels / "ses_1" if split == "finetune" else labels  # test: no ses_1 level
                label = label_dir / ("seg.nii.gz" if task == "task2" else "label.txt")
                assert label.is_file(), label
    susceptibility = [set(c["images"]) & {"swi", "t2s"} for c in _cases(metadata, 1) + _cases(metadata, 2)]
    assert {"swi"} in susceptibility and {"t2s"} in susceptibility


def test_task1_ships_infarct_masks_beside_the_labels(sample):
    out, metadata = sample
    for case in _cases(metadata, 1):
        mask_path = out / case["mask_file"]
        assert mask_path.parent == (out / case["label_file"]).parent and mask_path.name == "seg.nii.gz"
        mask, image = _load(mask_path)
        flair, flair_image = _load(out / case["images"]["flair"])
        assert mask.shape == flair.shape and np.allclose(image.affine, flair_image.affine)
        assert set(np.unique(mask)) <= {0, 1}
        infarcts = [lesion for lesion in case["lesions"] if lesion["kind"] == "infarct"]
        if case["target"] == 0:
            assert not mask.any()  # old infarcts, lacunes and mimics are not the label's lesion
            continue
        volumes = [lesion["volume_voxels"] for lesion in infarcts]
        assert max(volumes) <= mask.sum() <= sum(volumes)
        for lesion in infarcts:  # each infarct's deepest point lies inside the mask
            voxel = np.round(np.linalg.solve(image.affine, [*lesion["peak_world_mm"], 1.0])[:3]).astype(int)
            assert mask[tuple(voxel)] == 1


def test_infarct_ratio_follows_fomo(sample):
    _, metadata = sample
    assert metadata["counts"]["finetune"]["task1"] == {"cases": 10, "positive": 6, "negative": 4}
    assert config_for_size("small").positives("finetune") == 13  # FOMO25: 13 of 21
    for case in _cases(metadata, 1):
        label = (Path(sample[0]) / case["label_file"]).read_text().strip()
        assert label == str(case["target"]) and label in ("0", "1")
        infarcts = [lesion for lesion in case["lesions"] if lesion["kind"] == "infarct"]
        assert (1 <= len(infarcts) <= 3) if case["target"] == 1 else not infarcts


def test_same_seed_gives_identical_files_with_any_worker_count(sample, tmp_path, capsys):
    out, metadata = sample
    second = tmp_path / "again"
    assert cli_main([str(second), "--size", "tiny", "--seed", "0", "-np", "2", "--quiet"]) == 0
    assert "task1 10 (6 pos / 4 neg)" in capsys.readouterr().out
    first_files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    second_files = sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert first_files == second_files
    for relative in first_files:
        assert (out / relative).read_bytes() == (second / relative).read_bytes(), relative


def test_different_seed_changes_the_data():
    grid = AnatomyGrid(TINY.grid_shape, TINY.voxel_mm)
    arrays = []
    for seed in (0, 1):
        plan = plan_task_cases(TINY, seed, build_sites(seed))[0]
        arrays.append(simulate_task_case(plan, grid, seed).session.images["flair"].values())
    assert arrays[0].shape != arrays[1].shape or not np.array_equal(arrays[0], arrays[1])
    again = simulate_task_case(plan_task_cases(TINY, 1, build_sites(1))[0], grid, 1).session.images["flair"].values()
    np.testing.assert_array_equal(again, arrays[1])


def test_sequences_of_a_session_share_one_grid(sample):
    out, _ = sample
    by_session = {}
    for path in _pretraining_files(out):
        image = nib.load(str(path))
        by_session.setdefault(path.parent, []).append((image.shape, image.affine))
    for session, grids in by_session.items():
        for shape, affine in grids[1:]:
            assert shape == grids[0][0], session
            np.testing.assert_allclose(affine, grids[0][1], atol=1e-6)


def test_pretraining_sites_are_heterogeneous(sample):
    out, _ = sample
    axcodes, anisotropic, oblique, kinds = set(), 0, 0, set()
    for path in _pretraining_files(out):
        image = nib.load(str(path))
        axcodes.add("".join(nib.aff2axcodes(image.affine)))
        zooms = np.asarray(image.header.get_zooms()[:3])
        anisotropic += zooms.max() / zooms.min() > 1.8
        direction = image.affine[:3, :3] / zooms
        oblique += np.abs(np.abs(direction).max(axis=0) - 1).max() > 0.005
        slope, inter = image.dataobj.slope, image.dataobj.inter
        scaled = image.get_data_dtype() == np.int16 and (slope, inter) != (1.0, 0.0)
        kinds.add("int16_scaled" if scaled else str(image.get_data_dtype()))
    assert "RAS" in axcodes and len(axcodes - {"RAS"}) >= 2
    assert anisotropic >= 1 and oblique >= 1
    assert {"int16_scaled", "float32", "uint16"} <= kinds


def test_background_is_exactly_zero_and_brain_positive(sample):
    out, metadata = sample
    paths = _pretraining_files(out)[:20] + [out / case["images"]["adc"] for case in _cases(metadata, 1)][:4]
    for path in paths:
        data, image = _load(path)
        assert data.min() >= 0, path
        brain = data != 0
        assert 0.1 < brain.mean() < 0.6, path
        corners = [data[i, j, k] for i in (0, -1) for j in (0, -1) for k in (0, -1)]
        assert corners == [0.0] * 8, path
        labels, count = ndimage.label(ndimage.binary_closing(brain, iterations=2))
        assert np.bincount(labels.ravel())[1:].max() > 0.97 * brain.sum(), path  # one skull-stripped brain


def test_any_orientation_reorients_to_the_same_anatomy():
    """Write one case through sites with other axes, flips, spacing and obliquity: same world anatomy."""
    grid = AnatomyGrid(TINY.grid_shape, TINY.voxel_mm)
    sites = build_sites(0)
    reference_site = dataclasses.replace(sites["finetune"][0], noise_fraction=0.0, bias_strength=0.0)
    for plan in (p for p in plan_task_cases(TINY, 0, sites) if p.task == 1 and p.label == 1):
        reference = simulate_task_case(dataclasses.replace(plan, site=reference_site), grid, 0)
        if _infarct_mask(reference).sum() >= 100:  # a territorial infarct: it survives 10 mm slices
            break
    ref_values, ref_affine = reference.session.images["dwi_b1000"].values(), reference.session.geometry.affine
    ref_lesion = _infarct_centroid(reference)
    assert abs(ref_lesion[0]) > 15  # off the midline, so a left-right mix-up would show
    for axcodes, spacing, oblique in (("LPS", (1, 1, 1), (0, 0, 0)), ("PIR", (1, 1, 2), (0, 0, 0)),
                                      ("LAS", (0.9, 1.1, 1), (8, 0, 5))):
        site = dataclasses.replace(reference_site, axcodes=axcodes, spacing_factors=spacing, oblique_deg=oblique)
        case = simulate_task_case(dataclasses.replace(plan, site=site), grid, 0)
        other = case.session
        assert "".join(nib.aff2axcodes(other.geometry.affine)) == axcodes
        # sample the other scan at the world position of every reference voxel
        to_other = np.linalg.inv(other.geometry.affine) @ ref_affine
        resampled = ndimage.affine_transform(other.images["dwi_b1000"].values(), to_other[:3, :3], to_other[:3, 3],
                                             output_shape=ref_values.shape, order=1)
        both = (ref_values > 0) & (resampled > 0)
        assert both.sum() > 0.9 * (ref_values > 0).sum(), axcodes
        # compared at the coarsest scan's resolution (10 mm slices blur the cortex: a flip scores ~0.5)
        smooth_ref, smooth_other = ndimage.gaussian_filter(ref_values, 1.0), ndimage.gaussian_filter(resampled, 1.0)
        assert np.corrcoef(smooth_ref[both], smooth_other[both])[0, 1] > 0.9, axcodes
        assert np.linalg.norm(_infarct_centroid(case) - ref_lesion) < 0.6 * max(other.geometry.spacing), axcodes


def _infarct_mask(case):
    """The case's largest infarct on its scan grid."""
    return max((m for lesion, m in zip(case.anatomy.lesions, case.session.lesion_masks) if lesion.kind == "infarct"),
               key=lambda m: m.sum())


def _infarct_centroid(case):
    """World position (mm) of the centre of the case's largest infarct on its scan grid."""
    mask = _infarct_mask(case)
    return (case.session.geometry.affine @ [*np.argwhere(mask).mean(axis=0), 1.0])[:3]


def test_int16_scaling_round_trips_through_fomo_nn_io(sample):
    out, _ = sample
    checked = 0
    for path in _pretraining_files(out):
        image = nib.load(str(path))
        if image.get_data_dtype() != np.int16 or (image.dataobj.slope, image.dataobj.inter) == (1.0, 0.0):
            continue
        array, props = read_image(path)
        assert props.scaling != [1.0, 0.0]
        assert array.min() == 0.0 and array.max() > 0
        checked += 1
    assert checked >= 1


def _auroc(scores, labels):
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in positives for n in negatives]))


def _core(fraction, geometry, mask, level=0.9):
    """Scan voxels that lie (almost) wholly inside a structure given by its anatomy-grid fraction map."""
    return (to_scan(fraction.astype(np.float32), geometry, low_pass=True) >= level) & mask


def _ratios_to_white_matter(anatomy, session, region):
    """Median signal in `region` over that of pure white matter, per sequence of the session."""
    white = _core(anatomy.labels == Tissue.WHITE_MATTER, session.geometry, session.mask, 0.99)
    white &= ~ndimage.binary_dilation(region, iterations=2)
    return {name: float(np.median(image.values()[region]) / np.median(image.values()[white]))
            for name, image in session.images.items()}


def test_infarct_stages_follow_the_diffusion_clock():
    """Hyperacute/acute: ADC well below white matter; subacute: ADC back near normal, DWI still bright
    (T2 shine-through); FLAIR near normal in the first hours, bright after a day; chronic: a dark scar."""
    grid = AnatomyGrid(TINY.grid_shape, TINY.voxel_mm)
    site = dataclasses.replace(build_sites(0)["finetune"][0], noise_fraction=0.01, bias_strength=0.0, epi_artifact=0.0)
    morph = draw_morphology(np.random.default_rng(7))
    measured = {}
    for stage, hours in (("hyperacute", 3.0), ("acute", 48.0), ("subacute", 14 * 24.0), ("chronic", 0.0)):
        spec = draw_infarcts(np.random.default_rng(3), 1, grid.voxel_mm, "acute" if stage == "chronic" else stage,
                             hours)[0]
        spec = dataclasses.replace(spec, territory="MCA", hemisphere=1, center_norm=(0.45, 0.05, 0.2),
                                   semi_mm=(13.0, 15.0, 13.0), depth=0.45, edema=0.8)
        spec = spec.chronic() if stage == "chronic" else spec
        anatomy = build_anatomy(morph, 60.0, grid, Pathology(infarcts=(spec,)))
        lesion = anatomy.lesions[0]
        assert lesion.details["stage"] == stage
        session = scan_session(anatomy, site, {n: n for n in ("dwi_b1000", "adc", "flair")}, np.random.default_rng(5))
        region = _core(lesion.layer.fraction_map(grid.shape), session.geometry, session.mask)
        assert region.sum() >= 3, stage
        measured[stage] = _ratios_to_white_matter(anatomy, session, region)
    for stage in ("hyperacute", "acute"):
        assert measured[stage]["adc"] < 0.8 and measured[stage]["dwi_b1000"] > 1.3, (stage, measured[stage])
    assert 0.85 < measured["subacute"]["adc"] < 1.4 and measured["subacute"]["dwi_b1000"] > 1.3, measured["subacute"]
    assert measured["acute"]["dwi_b1000"] > measured["hyperacute"]["dwi_b1000"]
    assert measured["hyperacute"]["flair"] < 1.2 < measured["acute"]["flair"] < measured["subacute"]["flair"]
    assert measured["chronic"]["adc"] > 1.5 and measured["chronic"]["dwi_b1000"] < 0.9, measured["chronic"]


def test_recorded_infarcts_carry_stage_and_a_consistent_contrast(sample):
    _, metadata = sample
    infarcts = [lesion for case in _cases(metadata, 1) for lesion in case["lesions"] if lesion["kind"] == "infarct"]
    infarcts += [lesion for subject in metadata["pretraining"] for session in subject["sessions"]
                 for lesion in session["lesions"] if lesion["kind"] == "infarct"]
    assert len({lesion["stage"] for lesion in infarcts}) >= 2
    volumes = [lesion["volume_mm3"] for lesion in infarcts]
    assert max(volumes) > 20 * min(volumes)  # lacunar to territorial
    for lesion in infarcts:
        contrast, stage = lesion["contrast"], lesion["stage"]
        assert stage in STAGES and lesion["hours_since_onset"] > 0
        assert contrast["dwi_b1000"] > 1.2, lesion
        assert contrast["adc"] < 0.85 if stage != "subacute" else 0.85 <= contrast["adc"] <= 1.2, lesion
    for subject in metadata["pretraining"]:  # a recent infarct is an old scar at the follow-up sessions
        for later in subject["sessions"][1:]:
            assert not any(lesion["kind"] == "infarct" for lesion in later["lesions"])


@pytest.fixture(scope="module")
def task1_cohort():
    """48 task-1 cases at the tiny grid (24 at the finetuning sites, 24 at the test sites), in memory."""
    config = config_for_size("tiny", task1_finetune=24, task1_test=24)
    grid = AnatomyGrid(config.grid_shape, config.voxel_mm)
    plans = [plan for plan in plan_task_cases(config, 0, build_sites(0)) if plan.task == 1]
    return [simulate_task_case(plan, grid, 0) for plan in plans]


def test_negatives_carry_dwi_bright_mimics_with_normal_or_high_adc(task1_cohort):
    negatives = [case for case in task1_cohort if case.plan.label == 0]
    shine_through = []
    for case in negatives:
        assert not any(lesion.kind == "infarct" for lesion in case.anatomy.lesions)
        for lesion, mask in zip(case.anatomy.lesions, case.session.lesion_masks):
            if lesion.kind in ("demyelination", "vasogenic_edema") and mask.sum() >= 2:
                assert lesion.details["contrast"]["dwi_b1000"] > 1.0 and lesion.details["contrast"]["adc"] >= 1.15
                shine_through.append(_ratios_to_white_matter(case.anatomy, case.session, mask))
    with_mimic = [case for case in negatives if any(lesion.kind in ("demyelination", "vasogenic_edema", "postictal")
                                                    for lesion in case.anatomy.lesions)]
    assert 0.2 <= len(with_mimic) / len(negatives) <= 0.7, len(with_mimic)
    assert len(shine_through) >= 3
    dwi, adc = np.array([r["dwi_b1000"] for r in shine_through]), np.array([r["adc"] for r in shine_through])
    assert np.median(dwi) > 1.1 and np.mean(dwi > 1.25) >= 0.2  # bright on DWI (partial volume dims small ones) ...
    assert np.median(adc) > 1.15 and adc.min() > 0.9  # ... but never restricted
    assert np.median([r["flair"] for r in shine_through]) > 1.3


def test_one_dwi_percentile_is_not_enough_but_the_dwi_adc_conjunction_is(task1_cohort):
    """The 99.9th DWI percentile (near-perfect on the old sample) is confounded by mimics and EPI pile-up;
    a radiologist's rule, DWI bright AND ADC low inside the parenchyma, still separates most cases."""
    labels, percentile, conjunction = [], [], []
    for case in task1_cohort:
        dwi, adc = case.session.images["dwi_b1000"].values(), case.session.images["adc"].values()
        brain = case.session.mask
        inner = ndimage.binary_erosion(brain)
        percentile.append(np.percentile(dwi[brain], 99.9) / np.median(dwi[brain]))
        bright = dwi > 1.35 * np.median(dwi[inner])
        restricted = adc < 0.85 * np.percentile(adc[inner], 25)  # below normal white matter
        conjunction.append(int((bright & restricted & inner).sum()))
        labels.append(case.plan.label)
    assert _auroc(percentile, labels) < 0.8
    assert _auroc(conjunction, labels) > 0.8
    assert _auroc(conjunction, labels) > _auroc(percentile, labels) + 0.05


def test_epi_pile_up_brightens_dwi_only_and_grows_with_field_strength():
    sites = build_sites(0)
    assert all(site.epi_artifact > 0 for pool in sites.values() for site in pool)  # every site has some
    for pool in sites.values():
        strong = [site.epi_artifact for site in pool if site.field_strength_t == 3.0]
        weak = [site.epi_artifact for site in pool if site.field_strength_t == 1.5]
        assert strong and weak and np.mean(strong) > np.mean(weak)
    grid = AnatomyGrid(TINY.grid_shape, TINY.voxel_mm)
    plan = [p for p in plan_task_cases(TINY, 0, sites) if p.task == 1 and p.label == 0][0]
    images = {}
    for strength in (0.0, 1.0):
        site = dataclasses.replace(plan.site, epi_artifact=strength)
        images[strength] = simulate_task_case(dataclasses.replace(plan, site=site), grid, 0).session.images
    inside = images[0.0]["dwi_b1000"].values() > 0
    gain = images[1.0]["dwi_b1000"].values()[inside] / images[0.0]["dwi_b1000"].values()[inside]
    assert gain.max() > 1.5 and np.median(gain) == pytest.approx(1.0, abs=0.02)  # local, bright pile-up
    np.testing.assert_array_equal(images[1.0]["adc"].values(), images[0.0]["adc"].values())  # cancels in ADC
    np.testing.assert_array_equal(images[1.0]["flair"].values(), images[0.0]["flair"].values())


def test_corpus_is_ten_times_the_largest_finetuning_set_and_shaped_like_fomo60k():
    small = config_for_size("small")
    assert small.task3_finetune == small.largest_finetune_set() == 60
    assert CORPUS_TO_FINETUNE_SUBJECTS >= 10
    for size in ("small", "medium", "full"):
        config = SIZE_PRESETS[size]
        assert config.pretraining_subjects >= CORPUS_TO_FINETUNE_SUBJECTS * config.largest_finetune_set(), size
    sessions = float(np.dot(SESSION_COUNTS, SESSION_PROBABILITIES))
    scans = float(np.dot(SEQUENCE_COUNTS, SEQUENCE_PROBABILITIES))
    assert sessions == pytest.approx(13_900 / 11_187, abs=0.03) and scans == pytest.approx(60_529 / 13_900, abs=0.15)


def test_corpus_is_a_clinical_archive_with_findings():
    rng = np.random.default_rng(0)
    draws = [draw_subject_pathology(rng, 3.0, float(age)) for age in rng.uniform(20, 88, 1500)]
    def share(predicate):
        return np.mean([predicate(p) for p in draws])
    assert 0.05 < share(lambda p: any(spec.stage != "chronic" for spec in p.infarcts)) < 0.11
    assert 0.04 < share(lambda p: any(spec.stage == "chronic" for spec in p.infarcts)) < 0.12
    assert 0.12 < share(lambda p: bool(p.lacunes)) < 0.25
    assert 0.03 < share(lambda p: p.meningioma is not None) < 0.08
    assert 0.02 < share(lambda p: any(m.kind == "demyelination" for m in p.mimics)) < 0.1
    for pathology in draws[:200]:
        assert all(spec.stage == "chronic" for spec in pathology.at_follow_up().infarcts)
    for _ in range(50):  # a suspected-stroke session always has the stroke protocol
        files = draw_session_files(rng, stroke_protocol=True)
        assert {"dwi_b1000", "adc", "flair"} <= set(files.values()) and 4 <= len(files) <= 7


def test_meningioma_masks_sit_on_the_brain_border(sample):
    out, metadata = sample
    brightness = []
    for case in _cases(metadata, 2):
        seg_image = nib.load(str(out / case["label_file"]))
        seg = np.asarray(seg_image.dataobj)
        flair, flair_image = _load(out / case["images"]["flair"])
        assert seg_image.get_data_dtype() == np.uint8 and set(np.unique(seg)) == {0, 1}
        assert seg.shape == flair.shape and np.allclose(seg_image.affine, flair_image.affine)
        brain = flair > 0
        border = brain & ~ndimage.binary_erosion(brain, iterations=2)
        assert (seg.astype(bool) & border).any(), case["case_id"]
        assert (seg.astype(bool) & brain).sum() >= 0.9 * seg.sum()
        brightness.append(flair[seg > 0].mean() / np.median(flair[brain]))
        assert any(lesion["kind"] == "meningioma" and lesion["volume_voxels"] == int(seg.sum())
                   for lesion in case["lesions"])
    # hyperintense-ish on FLAIR; a few small masses on 12 mm test slices are mostly partial volume
    assert np.median(brightness) > 1.2 and min(brightness) > 0.7, brightness


def test_age_drives_atrophy(sample):
    out, metadata = sample
    cases = _cases(metadata, 3)
    ages = np.array([case["age"] for case in cases])
    assert ages.min() >= 20 and ages.max() <= 90
    for case in cases:
        text = (out / case["label_file"]).read_text().strip()
        assert re.fullmatch(r"\d+\.\d\d", text) and float(text) == case["age"]
    ventricles = np.array([case["ventricle_volume_mm3"] for case in cases])
    assert np.corrcoef(ages, ventricles)[0, 1] > 0.6
    # the same signal in the finetuning images: share of T2-bright (CSF) voxels after removing the coil bias
    finetune = _cases(metadata, 3, splits=("finetune",))
    csf_share = []
    for case in finetune:
        t2, _ = _load(out / case["images"]["t2"])
        brain = t2 > 0
        local_mean = ndimage.gaussian_filter(t2, 4) / np.maximum(ndimage.gaussian_filter(brain * 1.0, 4), 1e-3)
        csf_share.append((t2 > 1.3 * local_mean)[brain].mean())
    assert np.corrcoef([case["age"] for case in finetune], csf_share)[0, 1] > 0.45


def test_subject_anatomy_is_stable_across_sessions(sample):
    _, metadata = sample
    repeated = [s for s in metadata["pretraining"] if len(s["sessions"]) > 1]
    assert repeated
    for subject in repeated:
        volumes = [session["ventricle_volume_mm3"] for session in subject["sessions"]]
        ages = [session["age"] for session in subject["sessions"]]
        assert ages == sorted(ages)
        assert max(volumes) / min(volumes) < 1.3  # a few years older: same brain, slightly larger ventricles


def test_refuses_to_overwrite_foreign_folders(tmp_path):
    foreign = tmp_path / "mine" / "fomo60k"
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(BadInputError, match="not written by the sample data generator"):
        generate_sample_data(tmp_path / "mine", size="tiny", progress=False)
    assert (foreign / "keep.txt").read_text() == "precious"
    assert cli_main([str(tmp_path / "mine"), "--size", "tiny", "--quiet"]) == 1


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="unknown sample data size"):
        config_for_size("huge")
    with pytest.raises(ValueError, match="grid"):
        config_for_size("tiny", grid_shape=(10, 40, 32))
