"""Preprocessing: geometry round trip, label safety, bad input, resume, shards, dead workers, CLI."""
import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import (affine_for, brain_image, classification_lesion, ellipsoid, exit_on_marker, lesion_label,
                      make_classification_dataset, make_segmentation_dataset, simple_plans, write_nifti)

from fomo_nn.io import BadInputError, read_image
from fomo_nn.plans.records import save_plans
from fomo_nn.preprocessing import preprocess_case, restore_to_original
from fomo_nn.preprocessing import runner
from fomo_nn.preprocessing.array_store import save_array_atomic
from fomo_nn.preprocessing.case_store import PreprocessedCase
from fomo_nn.preprocessing.normalization import default_normalization, volume_wise_znorm, zscore_foreground
from fomo_nn.preprocessing.parallel import WorkerDiedError, run_parallel
from fomo_nn.preprocessing.resampling import axis_taps, resample_labels, resample_volume
from fomo_nn.preprocessing.sharding import Shard, parse_shard, select_shard
from fomo_nn.preprocessing.verify import verify_dataset


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _lps_anisotropic_case(tmp_path, spacing=(0.9, 0.9, 4.0), shape=(40, 44, 12)):
    affine = affine_for(spacing, "LPS")
    image = write_nifti(tmp_path / "img_0000.nii.gz", brain_image(shape, seed=3, smooth=True), affine)
    label = write_nifti(tmp_path / "seg.nii.gz", lesion_label(shape, radii=(0.2, 0.2, 0.3)), affine, np.uint8)
    return image, label


def test_round_trip_lps_anisotropic_image_and_label(tmp_path):
    image_file, label_file = _lps_anisotropic_case(tmp_path)
    plans = simple_plans(target_spacing=(1.0, 1.0, 2.0))
    data, seg, props = preprocess_case([image_file], plans, label_file)

    original, original_props = read_image(image_file)  # RAS order: the grid restore must return
    assert props["separate_z_axis"] == 2  # 4 mm vs 0.9 mm: nearest along the slice axis
    np.testing.assert_allclose(props["spacing_original"], [0.9, 0.9, 4.0], rtol=1e-6)
    ratio = np.array(props["spacing_original"]) / np.array(props["spacing_target"])
    expected_shape = np.round(np.array(props["shape_after_crop"]) * ratio).astype(int)
    assert data.shape == (1, *expected_shape) and seg.shape == data.shape and seg.dtype == np.int8
    assert data.dtype == np.float32 and props["shape_before_crop"] == list(original.shape)

    restored = restore_to_original(data, props, is_label=False)
    assert restored.shape == (1, *original.shape)
    mask = original != 0
    expected, _ = zscore_foreground(original, mask)
    interior = ellipsoid(original.shape, radii_fraction=(0.3, 0.32, 0.2))
    error = np.abs(restored[0] - expected)
    assert error[interior].mean() < 0.02 and error[interior].max() < 0.15
    outside = np.ones(original.shape, bool)
    outside[tuple(slice(lo, hi) for lo, hi in props["crop_bbox"])] = False
    assert np.all(restored[0][outside] == 0)

    labels, _ = read_image(label_file)
    restored_labels = restore_to_original(seg, props, is_label=True)
    assert restored_labels.shape == (1, *labels.shape)
    assert set(np.unique(restored_labels)) <= {0, 1, 2}
    for value in (1, 2):
        assert _dice(restored_labels[0] == value, labels == value) > 0.9
    assert (restored_labels[0] == labels).mean() > 0.98
    assert sum(len(v) for v in props["foreground_locations"].values()) == int((seg > 0).sum())
    locations = np.array(props["foreground_locations"]["1"])
    assert np.all(seg[0][tuple(locations.T)] == 1)


def test_restore_probabilities_fills_background_class(tmp_path):
    image_file, label_file = _lps_anisotropic_case(tmp_path)
    data, seg, props = preprocess_case([image_file], simple_plans(target_spacing=(1.0, 1.0, 2.0)), label_file)
    probabilities = np.stack([(seg[0] == k).astype(np.float32) for k in range(3)])
    restored = restore_to_original(probabilities, props, is_label=False, probabilities=True)
    assert restored.shape[0] == 3 and restored.min() >= 0 and restored.max() <= 1
    np.testing.assert_allclose(restored.sum(axis=0), 1.0, atol=1e-5)
    assert restored[0, 0, 0, 0] == 1.0


def test_resampling_kernels():
    for kind in ("nearest", "linear", "cubic"):
        for sizes in ((10, 17), (17, 10), (8, 8)):
            _, weights = axis_taps(*sizes, kind)
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], (20, 4, 4))
    up = resample_volume(ramp, (40, 4, 4), "linear")
    np.testing.assert_allclose(up[2:-2, 0, 0], (np.arange(2, 38) + 0.5) / 2 - 0.5, atol=1e-5)
    labels = np.zeros((20, 20, 20), np.int16)
    labels[5:15, 5:15, 5:15] = 5
    labels[9:11, 9:11, 2:18] = 2
    for shape in ((31, 27, 20), (12, 13, 9)):
        out = resample_labels(labels, shape)
        assert set(np.unique(out)) == {0, 2, 5}  # nothing invented, thin label kept


def test_bad_input_names_the_file(tmp_path):
    plans = simple_plans(channels=("t1", "flair"))
    shape = (24, 26, 20)
    good = write_nifti(tmp_path / "a_0000.nii.gz", brain_image(shape), affine_for())
    shifted = write_nifti(tmp_path / "a_0001.nii.gz", brain_image(shape), affine_for(origin=(0, 0, 5)))
    with pytest.raises(BadInputError, match="grid differs") as error:
        preprocess_case([good, shifted], plans)
    assert error.value.path == str(shifted)
    other_shape = write_nifti(tmp_path / "b_0001.nii.gz", brain_image((24, 26, 21)), affine_for())
    with pytest.raises(BadInputError, match="shape") as error:
        preprocess_case([good, other_shape], plans)
    assert error.value.path == str(other_shape)
    label = write_nifti(tmp_path / "label.nii.gz", lesion_label((24, 26, 21)), affine_for(), np.uint8)
    flair = write_nifti(tmp_path / "c_0001.nii.gz", brain_image(shape), affine_for())
    with pytest.raises(BadInputError) as error:
        preprocess_case([good, flair], plans, label)
    assert error.value.path == str(label)
    with_nan = brain_image(shape)
    with_nan[3, 4, 5] = np.nan
    nan_file = write_nifti(tmp_path / "d_0001.nii.gz", with_nan, affine_for())
    with pytest.raises(BadInputError, match="NaN") as error:
        preprocess_case([good, nan_file], plans)
    assert error.value.path == str(nan_file)
    empty = write_nifti(tmp_path / "e_0001.nii.gz", np.zeros(shape), affine_for())
    with pytest.raises(BadInputError, match="empty") as error:
        preprocess_case([good, empty], plans)
    assert error.value.path == str(empty)
    wrong_labels = write_nifti(tmp_path / "wrong.nii.gz", lesion_label(shape) * 3, affine_for(), np.uint8)
    with pytest.raises(BadInputError, match=r"\[3, 6\] are not declared") as error:
        preprocess_case([good, flair], plans, wrong_labels)
    assert error.value.path == str(wrong_labels)


def _planned_dataset(tmp_path, num_cases=5):
    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=num_cases, shapes=((28, 30, 24), (26, 28, 12)),
                                    spacings=((1.0, 1.0, 1.0), (1.0, 1.0, 2.0)), orientations=("RAS", "LPS"))
    preprocessed = tmp_path / "pre" / raw.name
    save_plans(simple_plans(channels=("t1", "flair")), preprocessed / "plans.json")
    return raw, preprocessed


def test_dataset_run_writes_contract_files(tmp_path):
    raw, preprocessed = _planned_dataset(tmp_path, num_cases=3)
    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert report.ok and sorted(report.processed) == ["case_000", "case_001", "case_002"]
    assert (preprocessed / "dataset.json").read_bytes() == (raw / "dataset.json").read_bytes()
    folder = preprocessed / "3d_fullres"
    props = json.loads((folder / "case_001.json").read_text())
    for key in ("case_id", "image_properties", "shape_before_crop", "crop_bbox", "shape_after_crop",
                "spacing_original", "spacing_target", "shape_after_resampling", "target", "subject", "session",
                "sequence", "foreground_locations"):
        assert key in props
    assert props["case_id"] == "case_001" and props["spacing_original"] == [1.0, 1.0, 2.0]
    data, seg = PreprocessedCase(str(folder), "case_001").data(), PreprocessedCase(str(folder), "case_001").seg()
    assert data.dtype == np.float32 and data.shape == (2, *props["shape_after_resampling"])
    assert seg.dtype == np.int8 and seg.shape == (1, *props["shape_after_resampling"])
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_interrupted_run_resumes_without_redoing_finished_cases(tmp_path, monkeypatch):
    raw, preprocessed = _planned_dataset(tmp_path)
    folder = preprocessed / "3d_fullres"
    real_write = runner.write_case
    calls = []

    def dying_write(folder_, case_id, data, seg, properties, plans):
        calls.append(case_id)
        if len(calls) == 3:  # killed after the arrays, before CASE.json: a partial case
            save_array_atomic(folder / f"{case_id}.b2nd", data.astype(np.float16), plans.storage)
            raise KeyboardInterrupt
        return real_write(folder_, case_id, data, seg, properties, plans)

    monkeypatch.setattr(runner, "write_case", dying_write)
    with pytest.raises(KeyboardInterrupt):
        runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    monkeypatch.setattr(runner, "write_case", real_write)
    finished = calls[:2]
    stamps = {c: (folder / f"{c}.b2nd").stat().st_mtime_ns for c in finished}
    assert not (folder / f"{calls[2]}.json").exists()
    time.sleep(0.02)

    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert sorted(report.skipped) == sorted(finished)
    assert calls[2] in report.processed and len(report.processed) == 3
    assert {c: (folder / f"{c}.b2nd").stat().st_mtime_ns for c in finished} == stamps
    assert len(list(folder.glob("*.json"))) == 5

    again = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert len(again.skipped) == 5 and not again.processed
    save_plans(simple_plans(channels=("t1", "flair"), target_spacing=(1.5, 1.5, 1.5)), preprocessed / "plans.json")
    replanned = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert len(replanned.processed) == 5  # a new target spacing makes every stored case stale


def test_shards_cover_every_case_exactly_once(tmp_path):
    ids = [f"c{i:03d}" for i in range(23)]
    shards = [select_shard(reversed(ids), Shard(i, 4)) for i in range(4)]
    assert sorted(sum(shards, [])) == ids and max(map(len, shards)) - min(map(len, shards)) <= 1
    assert parse_shard("2/4") == Shard(2, 4)
    for text in ("4/4", "-1/3", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(text)

    raw, preprocessed = _planned_dataset(tmp_path)
    processed = []
    for index in range(3):
        report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, shard=Shard(index, 3), progress=False)
        assert report.ok and not report.skipped
        processed += report.processed
    assert sorted(processed) == [f"case_{i:03d}" for i in range(5)]


def test_bad_case_is_reported_and_others_finish(tmp_path):
    raw, preprocessed = _planned_dataset(tmp_path, num_cases=3)
    write_nifti(raw / "imagesTr" / "case_001_0001.nii.gz", brain_image((28, 30, 24)), affine_for(origin=(1, 2, 3)))
    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert sorted(report.processed) == ["case_000", "case_002"] and not report.ok
    assert report.problems[0].file.endswith("case_001_0001.nii.gz") and "grid differs" in report.problems[0].problem
    assert "case_001_0001.nii.gz" in report.summary()


def test_dead_worker_is_detected_not_hung():
    started = time.perf_counter()
    items = [1, 2, "die", 3, 4, 5, 6]
    with pytest.raises(WorkerDiedError) as error:
        list(run_parallel(exit_on_marker, items, [str(i) for i in items], num_workers=2, progress=False))
    assert "die" in error.value.in_flight and "die" in str(error.value)
    assert time.perf_counter() - started < 60
    results = dict(run_parallel(exit_on_marker, [1, 2, 3], ["a", "b", "c"], num_workers=2, progress=False))
    assert results == {"a": 2, "b": 4, "c": 6}


def test_verify_lists_every_problem_and_writes_nothing(tmp_path, monkeypatch):
    from fomo_nn.cli.plan_and_preprocess import main

    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=4, shapes=((24, 26, 20),))
    write_nifti(raw / "imagesTr" / "case_001_0001.nii.gz", brain_image((24, 26, 21)), affine_for())
    nan_image = brain_image((24, 26, 20))
    nan_image[1, 1, 1] = np.nan
    write_nifti(raw / "imagesTr" / "case_002_0000.nii.gz", nan_image, affine_for())
    (raw / "labelsTr" / "case_003.nii.gz").unlink()
    write_nifti(raw / "labelsTr" / "orphan.nii.gz", lesion_label((24, 26, 20)), affine_for(), np.uint8)
    before = sorted(p for p in tmp_path.rglob("*"))

    problems = verify_dataset(raw, num_workers=1, progress=False)
    text = "\n".join(map(str, problems))
    assert "case_001_0001.nii.gz" in text and "grid differs" in text
    assert "case_002_0000.nii.gz" in text and "NaN" in text
    # numTraining counts the cases of imagesTr (still 4): the missing label is reported once, as itself
    assert "case_003.nii.gz" in text and "orphan.nii.gz" in text and "numTraining" not in text
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    assert main(["-d", "1", "--verify", "-np", "1", "--no-progress"]) == 1
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_cli_tiny_run_in_parallel_with_targets(tmp_path, monkeypatch):
    from fomo_nn.cli.plan_and_preprocess import main, main_preprocess

    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    make_classification_dataset(tmp_path / "raw", num_cases=4)
    args = ["-d", "2", "-np", "2", "--no-progress", "--base-features", "8", "--max-features", "32",
            "--max-patch", "32"]
    assert main(args) == 0
    out = tmp_path / "pre" / "Dataset002_Cls"
    for name in ("dataset.json", "dataset_fingerprint.json", "plans.json"):
        assert (out / name).is_file()
    targets = {json.loads(p.read_text())["case_id"]: json.loads(p.read_text())["target"]
               for p in (out / "3d_fullres").glob("*.json")}
    assert targets == {"cls_000": 0.0, "cls_001": 1.0, "cls_002": 0.0, "cls_003": 1.0}
    data = np.asarray(PreprocessedCase(str(out / "3d_fullres"), "cls_000").data())
    assert data.shape[0] == 2 and abs(float(data[data != 0].mean())) < 0.2
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress", "--shard", "1/2"]) == 0
    os.remove(out / "3d_fullres" / "cls_003.json")
    bad = tmp_path / "raw" / "Dataset002_Cls" / "imagesTr" / "cls_002_0001.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((30, 34, 26), np.float32), affine_for((1.0, 1.0, 1.2))), str(bad))
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 0  # cls_002 finished before: skipped
    os.remove(out / "3d_fullres" / "cls_002.json")
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 1
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress", "--skip-bad"]) == 0


# ------------------------------------------------------------------------------ auxiliary lesion masks
def _plan_classification(raw, preprocessed, target_spacing=(1.5, 1.5, 1.5)):
    from fomo_nn.planning.planner import PlannerOptions
    from fomo_nn.planning.sizing import SizingOptions
    from fomo_nn.planning.steps import fingerprint_step, plan_step

    fingerprint_step(raw, preprocessed, progress=False)
    options = PlannerOptions(sizing=SizingOptions(base_features=8, max_features=32, max_patch_edge=32),
                             target_spacing=list(target_spacing))
    return plan_step(raw, preprocessed, options)


def test_lesion_masks_are_preprocessed_label_safely_beside_classification_cases(tmp_path):
    raw = make_classification_dataset(tmp_path / "raw", num_cases=4, lesion_masks=True)
    preprocessed = tmp_path / "pre" / raw.name
    plans = _plan_classification(raw, preprocessed)
    assert plans.auxiliary_labels == {"background": 0, "infarct": 1} and plans.voxel_labels == plans.auxiliary_labels
    assert any("auxiliary labels" in note for note in plans.notes)
    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert report.ok and len(report.processed) == 4
    folder = preprocessed / "3d_fullres"
    for index in range(4):
        case = f"cls_{index:03d}"
        props = json.loads((folder / f"{case}.json").read_text())
        seg = np.asarray(PreprocessedCase(str(folder), case).seg())
        assert props["target"] == float(index % 2)
        assert seg.dtype == np.int8 and seg.shape == (1, *props["shape_after_resampling"])
        assert set(np.unique(seg)) <= {0, 1}  # nearest / label-safe: no interpolated values
        assert props["shape_after_resampling"] != props["shape_after_crop"]  # 1 x 1 x 1.2 mm -> 1.5 mm: resampled
        original = classification_lesion((30, 34, 26), index)
        if index % 2 == 0:
            assert not seg.any() and props["foreground_locations"] == {}
            continue
        restored = restore_to_original(seg, props, is_label=True)[0]
        assert _dice(restored == 1, original == 1) > 0.85
        # the physical volume survives: lesion voxels x voxel volume, before and after
        assert abs(seg.sum() * 1.5 ** 3 - original.sum() * 1.2) / (original.sum() * 1.2) < 0.2  # a ~230 mm3 blob
        locations = np.array(props["foreground_locations"]["1"])
        assert len(locations) == int(seg.sum()) and np.all(seg[0][tuple(locations.T)] == 1)

    # plans without auxiliary labels (dataset.json no longer declares them): redone, and no stale mask remains
    data = json.loads((raw / "dataset.json").read_text())
    del data["auxiliary_labels"]
    (raw / "dataset.json").write_text(json.dumps(data))
    plans = _plan_classification(raw, preprocessed)
    assert plans.auxiliary_labels is None
    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert report.ok and len(report.processed) == 4 and not list(folder.glob("*_seg.b2nd"))


def test_verify_checks_the_auxiliary_masks(tmp_path):
    raw = make_classification_dataset(tmp_path / "raw", num_cases=4, lesion_masks=True)
    assert verify_dataset(raw, num_workers=1, progress=False) == []
    write_nifti(raw / "labelsTr" / "cls_001.nii.gz", classification_lesion((30, 34, 26), 1) * 3,
                affine_for((1.0, 1.0, 1.2)), np.uint8)
    write_nifti(raw / "labelsTr" / "cls_003.nii.gz", classification_lesion((30, 34, 26), 3), affine_for(), np.uint8)
    write_nifti(raw / "labelsTr" / "orphan.nii.gz", classification_lesion((30, 34, 26), 3), affine_for(), np.uint8)
    (raw / "labelsTr" / "cls_002.nii.gz").unlink()
    problems = {Path(p.file).name: p.problem for p in verify_dataset(raw, num_workers=1, progress=False)}
    assert "label values [3] are not declared" in problems["cls_001.nii.gz"]
    assert "grid differs" in problems["cls_003.nii.gz"]
    assert "auxiliary mask of case cls_002 is missing" in problems["cls_002.nii.gz"]
    assert "no images" in problems["orphan.nii.gz"]


def test_plans_that_expect_masks_refuse_a_case_without_one(tmp_path):
    raw = make_classification_dataset(tmp_path / "raw", num_cases=2)
    preprocessed = tmp_path / "pre" / raw.name
    plans = simple_plans(channels=("flair", "adc"), task_type="classification", labels=None)
    plans = plans.replace(classes={"0": "healthy", "1": "infarct"}, auxiliary_labels={"background": 0, "infarct": 1})
    save_plans(plans, preprocessed / "plans.json")
    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert not report.ok and len(report.problems) == 2
    assert all("expects an auxiliary mask" in p.problem and p.file.endswith("_0000.nii.gz") for p in report.problems)


# ------------------------------------------------------------------------------------ normalization
def test_volume_wise_znorm_by_hand():
    """The FOMO25 baseline rule on numbers one can check: background -50 (the minimum, not 0), foreground
    1..101, so p99 = 100 (numpy's linear interpolation at rank 0.99 x 100) and x -> (min(x, 100) + 50) / 150."""
    image = np.concatenate([np.full(19, -50.0), np.arange(1.0, 102.0)]).reshape(4, 5, 6)
    out, stats = volume_wise_znorm(image)
    assert stats["minimum"] == -50.0 and stats["clip_upper"] == 100.0 and stats["clip_lower"] is None
    flat = out.reshape(-1)
    np.testing.assert_allclose(flat[:19], 0.0)
    np.testing.assert_allclose(flat[19], 51 / 150, rtol=1e-6)  # x = 1
    np.testing.assert_allclose(flat[19 + 49], 100 / 150, rtol=1e-6)  # x = 50
    np.testing.assert_allclose(flat[-2:], 1.0)  # x = 100 and the clipped 101
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    # our default differs: foreground = nonzero (the -50 background counts as foreground), mean 0 / std 1
    z, _ = zscore_foreground(image, image != 0)
    assert abs(float(z[image != 0].mean())) < 1e-5 and z.min() < 0


def test_volume_wise_znorm_equals_the_baselines_clip_zscore_rescale_steps():
    """Yucca's steps written out (clip above at the foreground's 0.99 quantile, z-score with the foreground
    statistics, min-max rescale of the whole image to [0, 1]) give the closed form used here."""
    rng = np.random.default_rng(4)
    image = np.where(ellipsoid((20, 22, 18)), rng.gamma(3.0, 100.0, size=(20, 22, 18)), 0.0)
    image[3, 3, 3] = 5e4  # a hot voxel
    foreground = image != image.min()
    steps = np.clip(image, None, np.quantile(image[foreground], 0.99))
    steps = (steps - steps[foreground].mean()) / steps[foreground].std()
    steps = (steps - steps.min()) / (steps.max() - steps.min())
    out, _ = volume_wise_znorm(image)
    np.testing.assert_allclose(out, steps, atol=1e-6)


def test_volume_wise_znorm_scheme_through_preprocessing_stays_in_unit_range(tmp_path):
    shape = (30, 32, 12)
    image = brain_image(shape, seed=2, scale=500.0)
    image[15, 16, 6] = 1e5  # an outlier the p99 clip removes
    file = write_nifti(tmp_path / "img_0000.nii.gz", image, affine_for((1.0, 1.0, 2.5)))
    plans = simple_plans(target_spacing=(1.4, 1.4, 1.4), task_type="classification", labels=None)
    plans = plans.replace(normalization=[default_normalization("volume_wise_znorm")])
    assert plans.normalization[0].clip_percentiles == [0.0, 99.0]
    data, _, props = preprocess_case([file], plans)
    assert data.min() >= 0.0 and data.max() == 1.0  # cubic overshoot clipped back, as Yucca's resize does
    assert props["normalization"][0]["scheme"] == "volume_wise_znorm"
    expected, _ = volume_wise_znorm(image[tuple(slice(lo, hi) for lo, hi in props["crop_bbox"])])
    assert abs(float(data.mean()) - float(expected.mean())) < 0.02  # resampling keeps the intensity level
    default, _, _ = preprocess_case([file], plans.replace(normalization=[default_normalization()]))
    assert default.min() < 0 and abs(float(default[default != 0].mean())) < 0.2  # z-scored, not [0, 1]
    with pytest.raises(ValueError, match=r"unknown normalization scheme 'minmax' \(known: zscore_foreground, "
                                         r"volume_wise_znorm, zscore_volume\)"):
        preprocess_case([file], plans.replace(normalization=[default_normalization().__class__(scheme="minmax")]))


def test_cli_normalization_flag_plans_and_applies_the_baseline_scheme(tmp_path, monkeypatch):
    from fomo_nn.cli.plan_and_preprocess import main
    from fomo_nn.plans import load_plans

    make_classification_dataset(tmp_path / "raw", num_cases=4)
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    assert main(["-d", "2", "--normalization", "volume_wise_znorm", "--max-patch", "16", "-np", "1",
                 "--no-progress"]) == 0
    preprocessed = tmp_path / "pre" / "Dataset002_Cls"
    plans = load_plans(preprocessed)
    assert {n.scheme for n in plans.normalization} == {"volume_wise_znorm"}
    folder = preprocessed / plans.configuration
    arrays = [np.asarray(PreprocessedCase(str(folder), p.stem).data()) for p in sorted(folder.glob("cls_*.json"))]
    assert arrays and all(a.min() >= 0.0 and a.max() <= 1.0 and a.max() > 0.5 for a in arrays)
