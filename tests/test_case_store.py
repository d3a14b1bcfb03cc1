"""The preprocessed case store (issue 15): compressed blosc2 arrays with patch-sized chunks and blocks,
float16 images within float16's bound, the plans storage record, the old .npy format refused with the
command that rewrites it, and the case index that start-up and resume read instead of every CASE.json."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import make_segmentation_dataset, simple_plans
from preprocessed_builders import build_preprocessed, cases_of, tiny_plans

from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans.records import Plans, load_plans, save_plans
from fomo_nn.preprocessing import case_store, runner
from fomo_nn.preprocessing.array_store import (BLOCK_BYTES, CHUNK_BYTES, StoredArray, case_geometry, default_storage,
                                               storage_geometry)
from fomo_nn.preprocessing.case_files import case_paths
from fomo_nn.preprocessing.case_index import INDEX_NAME, case_index
from fomo_nn.preprocessing.case_store import (PreprocessedCase, list_cases, preprocessing_signature, remove_case,
                                              remove_stale_temporaries, write_case)
from fomo_nn.preprocessing.sharding import Shard
from fomo_nn.training.data.batch_sources import PatchSource
from fomo_nn.training.data.loader import make_loader
from fomo_nn.training.data.patches import crop_with_padding

FLOAT16_RELATIVE = 2.0 ** -11  # float16 rounds to 11 significant bits


# ------------------------------------------------------------------------------------------ opened files
_OPENED: list[str] | None = None


def _audit(event, args):
    if event != "open" or _OPENED is None or not isinstance(args[0], (str, Path)):
        return
    path, mode, flags = args
    reading = ("r" in mode and "+" not in mode) if mode else not flags & (os.O_WRONLY | os.O_RDWR)
    if reading:
        _OPENED.append(str(path))


sys.addaudithook(_audit)


class opened_files:
    """Every file opened for reading inside the block (Python's audit 'open' event: io.open, np.load, ...)."""

    def __enter__(self) -> list[str]:
        global _OPENED
        _OPENED = []
        return _OPENED

    def __exit__(self, *exc_info) -> None:
        global _OPENED
        _OPENED = None


def _case_jsons(paths: list[str]) -> list[str]:
    return sorted(Path(p).name for p in paths if Path(p).match("3d_fullres/*.json"))


# -------------------------------------------------------------------------------------------- the arrays
def _volume(shape=(2, 30, 34, 26), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 1.0, shape).astype(np.float32) * 3.0
    data[:, :4] = 0.0  # background, stored exactly
    return data


def test_a_case_reads_back_within_the_float16_bound_and_exactly_in_float32(tmp_path):
    data, seg = _volume(), (np.random.default_rng(1).random((1, 30, 34, 26)) > 0.8).astype(np.int8)
    plans = tiny_plans("segmentation", ["t1", "t2"])
    assert plans.storage.dtype == "float16" and plans.storage.format == "blosc2"
    entry = write_case(tmp_path, "case_1", data, seg, {"subject": "s1", "foreground_locations": {"1": [[1, 2, 3]]}},
                       plans)
    case = PreprocessedCase(str(tmp_path), "case_1", entry)
    image = case.data()
    assert isinstance(image, StoredArray) and image.dtype == np.float32 and image.shape == data.shape
    assert case.data_path.name == "case_1.b2nd" and np.asarray(image).dtype == np.float32
    np.testing.assert_allclose(np.asarray(image), data, rtol=FLOAT16_RELATIVE, atol=0)
    assert np.all(np.asarray(image)[:, :4] == 0)
    np.testing.assert_array_equal(np.asarray(case.seg()), seg)
    assert case.seg().dtype == np.int8

    exact = plans.replace(storage=dataclasses.replace(plans.storage, dtype="float32"))
    write_case(tmp_path, "case_2", data, None, {}, exact)
    np.testing.assert_array_equal(np.asarray(PreprocessedCase(str(tmp_path), "case_2").data()), data)
    assert PreprocessedCase(str(tmp_path), "case_2").seg() is None


def test_a_patch_slice_equals_the_slice_of_the_whole_array(tmp_path):
    data = _volume((1, 41, 37, 29), seed=2)
    plans = tiny_plans("pretraining", ["t1"], patch=(16, 16, 16))
    write_case(tmp_path, "scan", data, None, {}, plans)
    stored = PreprocessedCase(str(tmp_path), "scan").data()
    whole = np.asarray(stored)
    rng = np.random.default_rng(3)
    for _ in range(20):
        lower = rng.integers(-8, [41, 37, 29])
        size = rng.integers(1, 24, size=3)
        np.testing.assert_array_equal(crop_with_padding(stored, lower, size), crop_with_padding(whole, lower, size))
    assert stored[0, 5].shape == (37, 29) and np.array_equal(stored[0, 5], whole[0, 5])


def test_float16_storage_refuses_intensities_beyond_its_range(tmp_path):
    data = _volume()
    data[0, 10, 10, 10] = 1e6
    with pytest.raises(ValueError, match=r"case big: preprocessed intensities reach 1e\+06, beyond float16"):
        write_case(tmp_path, "big", data, None, {}, tiny_plans("segmentation", ["t1", "t2"]))
    assert not list(tmp_path.iterdir())


def test_cases_pickle_without_their_properties_and_stored_arrays_do_not_pickle(tmp_path):
    write_case(tmp_path, "case_1", _volume(), None, {"foreground_locations": {"1": [[1, 1, 1]] * 500}},
               tiny_plans("segmentation", ["t1", "t2"]))
    case = PreprocessedCase(str(tmp_path), "case_1")
    small = len(pickle.dumps(case))
    assert len(case.foreground_locations()) == 500  # reads and caches the properties
    assert len(pickle.dumps(case)) == small and pickle.loads(pickle.dumps(case)) == case
    with pytest.raises(TypeError, match="is not pickled"):
        pickle.dumps(case.data())


# -------------------------------------------------------------------------------------- chunks and blocks
@pytest.mark.parametrize("patch,channels,itemsize", [((96, 96, 96), 1, 2), ((128, 128, 128), 1, 2),
                                                     ((160, 192, 160), 1, 2), ((128, 128, 128), 4, 2),
                                                     ((128, 128, 128), 1, 4), ((32, 24, 8), 2, 2)])
def test_chunks_and_blocks_follow_the_patch_within_their_cache_budgets(patch, channels, itemsize):
    chunks, blocks = storage_geometry(patch, channels, itemsize)
    assert chunks[0] == blocks[0] == channels
    assert channels * np.prod(blocks[1:]) * itemsize <= BLOCK_BYTES
    assert channels * np.prod(chunks[1:]) * itemsize <= CHUNK_BYTES
    for block, chunk, edge in zip(blocks[1:], chunks[1:], patch):
        assert block & (block - 1) == 0 and block <= max(1, edge // 4)  # power of two, >= 4 blocks per patch edge
        assert chunk % block == 0 and chunk <= edge


def test_the_geometry_of_the_measured_default():
    assert storage_geometry((96, 96, 96), 1, 2) == ([1, 64, 64, 64], [1, 16, 16, 16])
    assert storage_geometry((128, 128, 128), 1, 2) == ([1, 128, 64, 64], [1, 16, 32, 32])
    storage = default_storage([128, 128, 128], 1)
    assert (storage.format, storage.dtype, storage.codec, storage.clevel, storage.filter) == \
        ("blosc2", "float16", "lz4hc", 5, "nofilter")
    assert case_geometry((1, 100, 50, 30), storage) == ((1, 100, 50, 30), (1, 16, 32, 30))
    assert case_geometry((1, 200, 50, 300), storage) == ((1, 128, 50, 64), (1, 16, 32, 32))


# -------------------------------------------------------------------------------------------------- plans
def test_plans_record_the_storage_and_only_format_and_dtype_enter_the_signature(tmp_path):
    plans = tiny_plans("pretraining", ["t1"], patch=(128, 128, 128))
    assert plans.storage == default_storage([128, 128, 128], 1)
    save_plans(plans, tmp_path / "plans.json")
    record = json.loads((tmp_path / "plans.json").read_text())["storage"]
    assert record == {"format": "blosc2", "dtype": "float16", "codec": "lz4hc", "clevel": 5, "filter": "nofilter",
                      "chunks": [1, 128, 64, 64], "blocks": [1, 16, 32, 32]}
    assert load_plans(tmp_path / "plans.json") == plans
    signature = preprocessing_signature(plans)
    faster = dataclasses.replace(plans.storage, codec="zstd", clevel=1, chunks=[1, 64, 64, 64])
    assert preprocessing_signature(plans.replace(storage=faster)) == signature
    exact = dataclasses.replace(plans.storage, dtype="float32")
    assert preprocessing_signature(plans.replace(storage=exact)) != signature
    smaller = plans.replace(patch_size=[96, 96, 96])  # chunks and blocks follow a new patch; the dtype stays
    assert smaller.storage.blocks == [1, 16, 16, 16] and preprocessing_signature(smaller) == signature
    assert plans.replace(storage=exact).replace(patch_size=[96, 96, 96]).storage.dtype == "float32"


def test_plans_without_a_storage_record_get_the_default_and_a_bad_record_is_refused(tmp_path):
    plans = tiny_plans("segmentation", ["t1", "t2"])
    data = plans.to_json()
    del data["storage"]  # plans.json from before the record
    assert Plans.from_json(data).storage == plans.storage
    for change, message in (({"codce": "zstd"}, "unknown key 'codce'; did you mean 'codec'"),
                            ({"dtype": "float64"}, "storage dtype 'float64' is not one of float16, float32"),
                            ({"clevel": 12}, "storage clevel 12 must be an integer 0-9"),
                            ({"blocks": [2, 64, 8, 8]}, "blocks [2, 64, 8, 8] must not exceed chunks")):
        broken = {**plans.to_json(), "storage": {**plans.to_json()["storage"], **change}}
        (tmp_path / "plans.json").write_text(json.dumps(broken))
        with pytest.raises(BadInputError, match="malformed plans") as error:
            load_plans(tmp_path / "plans.json")
        assert message in str(error.value)


def test_new_plans_carry_the_storage_record_with_the_reason():
    from builders import synthetic_fingerprint

    from fomo_nn.datasets.dataset_json import DatasetSpec
    from fomo_nn.planning.planner import plan_from_fingerprint

    spec = DatasetSpec(name="Corpus", task_type="pretraining", channel_names={"0": "t1"})
    plans = plan_from_fingerprint(synthetic_fingerprint([[1.0, 1.0, 1.0]] * 4, [[150, 180, 150]] * 4), spec)
    assert plans.storage == default_storage(plans.patch_size, 1)
    assert any(note.startswith("storage: blosc2 float16") for note in plans.notes)


# ------------------------------------------------------------------------------------------- old format
def _old_signature(plans) -> str:
    """What the .npy writer stored: signature version 1, no storage."""
    relevant = {"version": 1, "task_type": plans.task_type, "channels": list(plans.channel_names),
                "target_spacing": [round(float(s), 6) for s in plans.target_spacing],
                "normalization": [dataclasses.asdict(n) for n in plans.normalization], "labels": plans.labels,
                "configuration": plans.configuration}
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _to_old_format(folder: Path, plans) -> None:
    """Rewrite a preprocessed folder as the .npy writer left it."""
    for properties in sorted(folder.glob("case_*.json")):
        case_id = properties.stem
        case = PreprocessedCase(str(folder), case_id)
        np.save(folder / f"{case_id}.npy", np.asarray(case.data()))
        np.save(folder / f"{case_id}_seg.npy", np.asarray(case.seg()))
        record = {k: v for k, v in case.properties.items() if k != "shape"}
        properties.write_text(json.dumps({**record, "preprocessing_signature": _old_signature(plans)}))
        case.data_path.unlink()
        case.seg_path.unlink()


def test_an_old_format_dataset_is_refused_with_the_command_and_preprocessing_rewrites_it(tmp_path):
    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=3, shapes=((24, 26, 20),))
    preprocessed = tmp_path / "pre" / raw.name
    plans = simple_plans(channels=("t1", "flair"))
    save_plans(plans, preprocessed / "plans.json")
    assert runner.preprocess_dataset(raw, preprocessed, progress=False).ok
    folder = preprocessed / "3d_fullres"
    _to_old_format(folder, plans)
    with pytest.raises(BadInputError) as error:
        list_cases(folder, plans)
    assert error.value.path == str(folder)
    assert error.value.problem.startswith("3 of 3 preprocessed case(s) are in the old .npy format")
    assert error.value.problem.endswith(f"removes the .npy files: fomo_nn_preprocess -d {raw.name}")

    report = runner.preprocess_dataset(raw, preprocessed, progress=False)
    assert report.ok and len(report.processed) == 3 and not report.skipped
    assert not list(folder.glob("*.npy")) and len(list_cases(folder, plans)) == 3


# ------------------------------------------------------------------------------------------------- index
def test_start_up_reads_the_index_and_no_case_json(tmp_path, monkeypatch):
    folder = build_preprocessed(tmp_path, "classification", num_cases=6, lesion_masks=True)
    cases_dir = folder / "3d_fullres"
    plans = load_plans(folder)
    assert not (cases_dir / INDEX_NAME).exists()  # written by hand: no index yet
    first = list_cases(cases_dir, plans)  # builds it from the CASE.json files, once
    assert (cases_dir / INDEX_NAME).is_file()

    monkeypatch.setattr(PreprocessedCase, "properties",
                        property(lambda self: pytest.fail(f"{self.case_id}: CASE.json read at start-up")))
    with opened_files() as opened:
        cases = list_cases(cases_dir, plans)
        summary = [(c.case_id, c.subject, c.session, c.target) for c in cases]
        negatives = [c.foreground_locations() for c in cases if c.target == 0.0]  # none sampled: no read
    assert [Path(p).name for p in opened] == [INDEX_NAME]
    assert summary == [(c.case_id, c.case_id, None, float(i % 3 != 0)) for i, c in enumerate(first)]
    assert negatives and all(len(n) == 0 for n in negatives)
    assert [c.entry.shape for c in cases] == [(2, 40, 40, 40)] * 6


def test_the_index_is_a_cache_rebuilt_where_case_json_files_changed_or_went(tmp_path, capsys):
    folder = build_preprocessed(tmp_path, "regression", num_cases=4)
    cases_dir, plans = folder / "3d_fullres", load_plans(folder)
    list_cases(cases_dir, plans)
    assert "4 of 4 case(s) read from their CASE.json" in capsys.readouterr().err

    data = np.asarray(PreprocessedCase(str(cases_dir), "case_001").data())
    write_case(cases_dir, "case_001", data, None, {"target": 99.0}, plans)  # rewritten after the index
    remove_case(cases_dir, "case_002")  # and one case gone
    with opened_files() as opened:
        cases = {c.case_id: c for c in list_cases(cases_dir, plans)}
    assert _case_jsons(opened) == ["case_001.json"] and "1 of 3 case(s)" in capsys.readouterr().err
    assert sorted(cases) == ["case_000", "case_001", "case_003"] and cases["case_001"].target == 99.0
    assert sorted(json.loads((cases_dir / INDEX_NAME).read_text())["cases"]) == ["case_000", "case_001", "case_003"]

    other = plans.replace(normalization=[dataclasses.replace(plans.normalization[0], clip_percentiles=[1.0, 99.0])])
    write_case(cases_dir, "case_003", data, None, {}, other)  # another plans' case: the index must not hide it
    with pytest.raises(BadInputError, match="1 of 3 preprocessed case.s. were written for other plans"):
        list_cases(cases_dir, plans)

    (cases_dir / INDEX_NAME).write_text("{not json")  # a damaged index is only a slower start
    assert len(case_index(cases_dir)) == 3 and json.loads((cases_dir / INDEX_NAME).read_text())["version"] == 2


def _planned(tmp_path, num_cases=4):
    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=num_cases, shapes=((24, 26, 20),))
    preprocessed = tmp_path / "pre" / raw.name
    plans = simple_plans(channels=("t1", "flair"))
    save_plans(plans, preprocessed / "plans.json")
    return raw, preprocessed, plans, preprocessed / "3d_fullres"


def test_shards_write_their_own_index_part_and_the_first_reader_merges_them(tmp_path):
    raw, preprocessed, plans, folder = _planned(tmp_path)
    for index in (0, 1):
        assert runner.preprocess_dataset(raw, preprocessed, shard=Shard(index, 2), progress=False).ok
    parts = sorted(p.name for p in folder.glob("_cases.*"))
    assert parts == ["_cases.shard_0_of_2.index", "_cases.shard_1_of_2.index"]
    assert sorted(json.loads((folder / parts[1]).read_text())["cases"]) == ["case_001", "case_003"]

    with opened_files() as opened:
        assert len(list_cases(folder, plans)) == 4  # merges the parts into the index
    plan_files = ["_planned.shard_0_of_2.plan", "_planned.shard_1_of_2.plan"]  # which cases the runs set out to write
    assert _case_jsons(opened) == [] and sorted(Path(p).name for p in opened) == parts + plan_files
    merged = json.loads((folder / INDEX_NAME).read_text())
    assert sorted(merged["cases"]) == ["case_000", "case_001", "case_002", "case_003"]
    assert sorted(merged["parts"]) == parts
    with opened_files() as opened:
        list_cases(folder, plans)
    assert sorted(Path(p).name for p in opened) == [INDEX_NAME] + plan_files  # merged parts are not read again

    case_paths(folder, "case_001")["properties"].unlink()  # shard 1 redoes a case: its part changes
    assert runner.preprocess_dataset(raw, preprocessed, shard=Shard(1, 2), progress=False).processed == ["case_001"]
    with opened_files() as opened:
        assert len(list_cases(folder, plans)) == 4
    assert _case_jsons(opened) == [] and sorted(Path(p).name for p in opened) == [INDEX_NAME, parts[1]] + plan_files

    assert runner.preprocess_dataset(raw, preprocessed, progress=False).skipped  # a whole run: one index left
    assert [p.name for p in folder.glob("_cases.*")] == [INDEX_NAME]


def test_resuming_a_half_done_run_skips_finished_cases_from_the_index(tmp_path, monkeypatch, capsys):
    raw, preprocessed, plans, folder = _planned(tmp_path, num_cases=5)
    real_write, calls = runner.write_case, []

    def dying_write(*args):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(*args)

    monkeypatch.setattr(runner, "write_case", dying_write)
    with pytest.raises(KeyboardInterrupt):
        runner.preprocess_dataset(raw, preprocessed, progress=False)
    monkeypatch.setattr(runner, "write_case", real_write)
    finished = calls[:2]
    assert sorted(json.loads((folder / INDEX_NAME).read_text())["cases"]) == finished  # saved on the way out

    with opened_files() as opened:
        report = runner.preprocess_dataset(raw, preprocessed, progress=False)
    assert sorted(report.skipped) == finished and len(report.processed) == 3
    assert not set(_case_jsons(opened)) & {f"{c}.json" for c in finished}

    (folder / INDEX_NAME).unlink()  # killed -9, index never saved: rebuilt once from the CASE.json files
    capsys.readouterr()
    with opened_files() as opened:
        report = runner.preprocess_dataset(raw, preprocessed, progress=False)
    assert len(report.skipped) == 5 and len(_case_jsons(opened)) == 5
    assert "5 of 5 case(s) read from their CASE.json" in capsys.readouterr().err
    with opened_files() as opened:
        runner.preprocess_dataset(raw, preprocessed, progress=False)
    assert _case_jsons(opened) == []


def test_only_the_temporaries_of_the_given_cases_are_removed(tmp_path):
    names = [".case.1.b2nd.x1y2.part", ".case.1.json.ab.part", ".case.10.b2nd.q.part", ".case.1_seg.b2nd.z.part"]
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    remove_stale_temporaries(tmp_path, ["case.1"])
    assert [p.name for p in tmp_path.iterdir()] == [".case.10.b2nd.q.part"]


# ---------------------------------------------------------------------------------------- loader workers
def test_loader_workers_open_the_store_themselves_and_read_what_one_process_reads(tmp_path):
    folder = build_preprocessed(tmp_path, "segmentation", num_cases=4, shape=(36, 36, 36))
    source = PatchSource(cases_of(folder), (24, 24, 24), 2, foreground_oversampling=0.5)
    batches = {workers: list(make_loader(source, seed=3, rank=0, first_step=0, last_step=4, num_workers=workers))
               for workers in (0, 2)}
    for alone, shared in zip(batches[0], batches[2]):
        assert alone["case_id"] == shared["case_id"]
        assert np.array_equal(alone["image"].numpy(), shared["image"].numpy())
        assert np.array_equal(alone["segmentation"].numpy(), shared["segmentation"].numpy())
