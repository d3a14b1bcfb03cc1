"""Stale data is impossible: training reads only cases written for the plans it trains with.

A replanned spacing or a hand-edited normalization leaves the old arrays on disk; training must refuse
them (naming the command that preprocesses again) instead of training on them and recording plans that
prediction would preprocess differently. A plans file naming an unknown normalization scheme fails when
it is read.
"""
import json

import pytest
from builders import make_classification_dataset

from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess_main
from fomo_nn.cli.plan_and_preprocess import main_plan, main_preprocess
from fomo_nn.cli.train import main as train_main
from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans import load_plans, save_plans
from fomo_nn.preprocessing.case_files import case_paths
from fomo_nn.preprocessing.case_store import list_cases
from fomo_nn.probing.online import ProbeDataset
from fomo_nn.training.base_trainer import TrainerOptions
from preprocessed_builders import build_preprocessed, cases_of
from toy_trainer import ToyRegressionTrainer

TINY_PLANNER = ["--base-features", "8", "--max-features", "32", "--max-patch", "32"]
TINY_RUN = ["--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
            "--batch-size", "2"]


@pytest.fixture
def planned(tmp_path, monkeypatch):
    """Dataset002_Cls (6 small cases) fingerprinted, planned and preprocessed by the real commands."""
    for variable, folder in (("fomo_nn_raw", "raw"), ("fomo_nn_preprocessed", "pre"), ("fomo_nn_results", "res")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    make_classification_dataset(tmp_path / "raw", num_cases=6)
    assert plan_and_preprocess_main(["-d", "2", "-np", "1", "--no-progress", *TINY_PLANNER]) == 0
    return tmp_path / "pre" / "Dataset002_Cls"


def _files(folder):
    """What a run left under `folder` (an empty folder, e.g. from a run lock, is not training)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_replanned_spacing_refuses_training_until_preprocessed_again(planned, tmp_path, capsys):
    assert main_plan(["-d", "2", "--target-spacing", "1.5", "1.5", "1.5", *TINY_PLANNER]) == 0
    capsys.readouterr()
    assert train_main(["2", "all", *TINY_RUN]) == 2
    error = capsys.readouterr().err
    assert str(planned / "3d_fullres") in error and "6 of 6 preprocessed case(s) were written for other plans" in error
    assert error.rstrip().endswith("preprocess again: fomo_nn_preprocess -d Dataset002_Cls")
    assert _files(tmp_path / "res") == []  # nothing trained, no plans recorded

    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 0  # the command named above
    assert train_main(["2", "all", *TINY_RUN]) == 0  # the normal path trains
    assert {"checkpoint_final.pth", "plans.json"} <= set(_files(tmp_path / "res"))
    recorded = json.loads(next((tmp_path / "res").rglob("plans.json")).read_text())
    assert recorded["target_spacing"] == [1.5, 1.5, 1.5]


def test_hand_edited_normalization_refuses_training_and_probing(planned, capsys):
    plans = load_plans(planned)
    edited = [n.__class__(scheme="volume_wise_znorm", clip_percentiles=[0.0, 99.0]) for n in plans.normalization]
    save_plans(plans.replace(normalization=edited), planned / "plans.json")
    assert train_main(["2", "all", *TINY_RUN]) == 2
    assert "fomo_nn_preprocess -d Dataset002_Cls" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="written for other plans"):
        ProbeDataset.load(planned)  # the probe reads through the same check


def test_plans_from_elsewhere_name_where_to_save_them(planned):
    other = load_plans(planned).replace(target_spacing=[2.0, 2.0, 2.0])
    with pytest.raises(BadInputError) as error:
        list_cases(planned / "3d_fullres", other)
    assert error.value.problem.endswith(f"save these plans as {planned / 'plans.json'}, then run "
                                        "fomo_nn_preprocess -d Dataset002_Cls")


def test_a_case_with_a_tampered_or_missing_signature_is_named(tmp_path):
    folder = build_preprocessed(tmp_path, "regression", num_cases=4, shape=(32, 32, 32))
    assert len(cases_of(folder)) == 4
    properties = case_paths(folder / "3d_fullres", "case_002")["properties"]
    record = json.loads(properties.read_text())
    properties.write_text(json.dumps({**record, "preprocessing_signature": "0123456789abcdef"}))
    with pytest.raises(BadInputError) as error:
        cases_of(folder)
    assert error.value.path == str(folder / "3d_fullres")
    assert "1 of 4 preprocessed case(s)" in error.value.problem and "case_002" in error.value.problem
    assert "case_001" not in error.value.problem and "fomo_nn_preprocess -d Dataset900_Tiny" in error.value.problem

    del record["preprocessing_signature"]  # hand-written arrays without one are refused too
    properties.write_text(json.dumps(record))
    with pytest.raises(BadInputError, match="case_002"):
        ToyRegressionTrainer(load_plans(folder), folder, tmp_path / "out", "0", TrainerOptions(epochs=1)).run()
    assert _files(tmp_path / "out") == []


def test_a_missing_mask_is_refused_and_unfinished_cases_are_left_out_only_when_allowed(tmp_path):
    folder = build_preprocessed(tmp_path, "segmentation", num_cases=4, shape=(32, 32, 32))
    cases = folder / "3d_fullres"
    case_paths(cases, "case_003")["properties"].unlink()  # a writer killed before CASE.json: a partial dataset
    with pytest.raises(BadInputError, match=r"1 of 4 planned case\(s\) have no finished preprocessed case \(e.g. case_003"):
        cases_of(folder)
    allowed = list_cases(cases, load_plans(folder), allow_incomplete=True)
    assert [c.case_id for c in allowed] == ["case_000", "case_001", "case_002"]

    seg = case_paths(cases, "case_001")["seg"]
    seg.unlink()
    with pytest.raises(BadInputError) as error:
        cases_of(folder)
    assert error.value.path == str(seg) and "1 of 3 preprocessed case(s) lack the CASE_seg.b2nd" in error.value.problem

    for case_id in ("case_000", "case_001", "case_002"):
        case_paths(cases, case_id)["properties"].unlink()
    with pytest.raises(BadInputError, match=r"no finished preprocessed case \(4 unfinished\): preprocess: "
                                            r"fomo_nn_preprocess -d Dataset900_Tiny"):
        cases_of(folder)


def test_an_unknown_normalization_scheme_fails_when_the_plans_are_read(tmp_path, capsys):
    folder = build_preprocessed(tmp_path, "regression", num_cases=2, shape=(32, 32, 32))
    path = folder / "plans.json"
    data = json.loads(path.read_text())
    data["normalization"][0]["scheme"] = "zscore_foregrond"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError) as error:
        load_plans(folder)
    assert error.value.path == str(path)
    assert ("plans normalization[0]: unknown normalization scheme 'zscore_foregrond'; did you mean 'zscore_foreground'? "
            "(known: zscore_foreground, volume_wise_znorm, zscore_volume)") in error.value.problem
    assert train_main(["Dataset900_Tiny", "all", "--plans", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "zscore_foregrond" in capsys.readouterr().err and _files(tmp_path / "out") == []


def _case_files(folder, case_id):
    return sorted(p.name for p in (folder / "3d_fullres").iterdir() if p.name.startswith(f"{case_id}."))


def test_a_whole_run_removes_cases_the_raw_dataset_lost_or_reports_bad(planned, tmp_path, capsys):
    raw = tmp_path / "raw" / "Dataset002_Cls"
    for path in [*raw.glob("imagesTr/cls_005_*"), raw / "labelsTr" / "cls_005.txt"]:
        path.unlink()  # the raw dataset drops a case
    (raw / "imagesTr" / "cls_001_0000.nii.gz").write_bytes(b"not a nifti")  # and one of its scans breaks
    (planned / "3d_fullres" / "cls_005.npy").write_bytes(b"")  # an old-format leftover goes with its case
    assert main_plan(["-d", "2", "--target-spacing", "1.5", "1.5", "1.5", *TINY_PLANNER]) == 0
    for shard in ("0/2", "1/2"):  # shards see only their part: they remove nothing
        main_preprocess(["-d", "2", "-np", "1", "--no-progress", "--shard", shard])
    assert _case_files(planned, "cls_005") == ["cls_005.b2nd", "cls_005.json", "cls_005.npy"]
    assert _case_files(planned, "cls_001") == ["cls_001.b2nd", "cls_001.json"]
    capsys.readouterr()

    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 1  # cls_001 is bad
    error = capsys.readouterr().err
    assert f"{planned / '3d_fullres'}: removed 1 preprocessed case(s) the raw dataset no longer has: cls_005" in error
    assert "of 1 case(s) reported bad below, so that training is not refused for them" in error
    assert error.rstrip().endswith(": cls_001")
    assert _case_files(planned, "cls_005") == [] and _case_files(planned, "cls_001") == []
    index = json.loads((planned / "3d_fullres" / "_cases.index").read_text())
    assert sorted(index["cases"]) == ["cls_000", "cls_002", "cls_003", "cls_004"]
    listed = list_cases(planned / "3d_fullres", load_plans(planned))  # what training reads: no refusal
    assert [case.case_id for case in listed] == ["cls_000", "cls_002", "cls_003", "cls_004"]


def test_finished_cases_missing_from_a_raw_listing_with_problems_are_kept(planned, tmp_path, capsys):
    raw = tmp_path / "raw" / "Dataset002_Cls"
    target = raw / "labelsTr" / "cls_003.txt"
    target.rename(tmp_path / "cls_003.txt")  # a listing problem: cls_003 is bad, its finished files kept
    for path in raw.glob("imagesTr/cls_005_*"):
        path.unlink()
    (raw / "labelsTr" / "cls_005.txt").unlink()
    capsys.readouterr()
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 1
    assert "kept 2 finished case(s) the raw dataset does not list as usable, since its listing reports problems " \
           "(below): cls_003, cls_005" in capsys.readouterr().err
    assert _case_files(planned, "cls_003") == ["cls_003.b2nd", "cls_003.json"]

    (tmp_path / "cls_003.txt").rename(target)  # fixed: the run removes only the case the raw dataset lacks
    assert main_preprocess(["-d", "2", "-np", "1", "--no-progress"]) == 0
    assert "removed 1 preprocessed case(s) the raw dataset no longer has: cls_005" in capsys.readouterr().err
    assert _case_files(planned, "cls_005") == [] and len(cases_of(planned)) == 5
