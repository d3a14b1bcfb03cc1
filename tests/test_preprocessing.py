"""Preprocessing: geometry round trip, label safety, bad input, resume, shards, dead workers, CLI."""
import json
import os
import time

import nibabel as nib
import numpy as np
import pytest
from builders import (affine_for, brain_image, ellipsoid, exit_on_marker, lesion_label, make_classification_dataset,
                      make_segmentation_dataset, simple_plans, write_nifti)

from fomo_nn.io import BadInputError, read_image
from fomo_nn.plans.records import save_plans
from fomo_nn.preprocessing import preprocess_case, restore_to_original
from fomo_nn.preprocessing import runner
from fomo_nn.preprocessing.normalization import zscore_foreground
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
    data = np.load(folder / "case_001.npy", mmap_mode="r")
    seg = np.load(folder / "case_001_seg.npy", mmap_mode="r")
    assert data.dtype == np.float32 and data.shape == (2, *props["shape_after_resampling"])
    assert seg.dtype == np.int8 and seg.shape == (1, *props["shape_after_resampling"])
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_interrupted_run_resumes_without_redoing_finished_cases(tmp_path, monkeypatch):
    raw, preprocessed = _planned_dataset(tmp_path)
    folder = preprocessed / "3d_fullres"
    real_write = runner.write_case
    calls = []

    def dying_write(folder_, case_id, data, seg, properties, signature):
        calls.append(case_id)
        if len(calls) == 3:  # killed after the arrays, before CASE.json: a partial case
            np.save(folder / f"{case_id}.npy", data)
            raise KeyboardInterrupt
        real_write(folder_, case_id, data, seg, properties, signature)

    monkeypatch.setattr(runner, "write_case", dying_write)
    with pytest.raises(KeyboardInterrupt):
        runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    monkeypatch.setattr(runner, "write_case", real_write)
    finished = calls[:2]
    stamps = {c: (folder / f"{c}.npy").stat().st_mtime_ns for c in finished}
    assert not (folder / f"{calls[2]}.json").exists()
    time.sleep(0.02)

    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert sorted(report.skipped) == sorted(finished)
    assert calls[2] in report.processed and len(report.processed) == 3
    assert {c: (folder / f"{c}.npy").stat().st_mtime_ns for c in finished} == stamps
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
    assert "case_003.nii.gz" in text and "orphan.nii.gz" in text and "numTraining" in text
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
    data = np.load(out / "3d_fullres" / "cls_000.npy")
    assert data.shape[0] == 2 and abs(float(data[data != 0].mean())) < 0.2
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress", "--shard", "1/2"]) == 0
    os.remove(out / "3d_fullres" / "cls_003.json")
    bad = tmp_path / "raw" / "Dataset002_Cls" / "imagesTr" / "cls_002_0001.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((30, 34, 26), np.float32), affine_for((1.0, 1.0, 1.2))), str(bad))
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 0  # cls_002 finished before: skipped
    os.remove(out / "3d_fullres" / "cls_002.json")
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 1
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress", "--skip-bad"]) == 0
