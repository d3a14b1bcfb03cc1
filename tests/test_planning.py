"""Planner decisions (spacing, patch, topology, batch), the fingerprint, and --plans-like."""
import json

import numpy as np
import pytest
import torch
from builders import (make_classification_dataset, make_pretraining_dataset, make_segmentation_dataset,
                      synthetic_fingerprint)

from fomo_nn.datasets.dataset_json import DatasetSpec
from fomo_nn.io import BadInputError
from fomo_nn.planning.fingerprint import extract_fingerprint
from fomo_nn.planning.memory import estimate_feature_map_elements, feature_map_budget
from fomo_nn.planning.planner import PlannerOptions, plan_from_fingerprint
from fomo_nn.networks import adaptation_record, build_pretraining_network
from fomo_nn.planning.plans_like import differences_report, load_source_plans, plan_like
from fomo_nn.planning.sizing import SizingOptions
from fomo_nn.planning.target_spacing import determine_target_spacing
from fomo_nn.plans.records import load_plans

SEG_SPEC = DatasetSpec(name="Seg", task_type="segmentation", channel_names={"0": "t1"},
                       labels={"background": 0, "lesion": 1})
CORPUS_SPEC = DatasetSpec(name="Corpus", task_type="pretraining", channel_names={"0": "mri"})
TASK_SPEC = DatasetSpec(name="Infarct", task_type="classification",
                        channel_names={"0": "flair", "1": "adc", "2": "dwi_b1000"}, classes={"0": "no", "1": "yes"})


def _options(**sizing):
    return PlannerOptions(sizing=SizingOptions(**sizing))


def _check_structure(plans):
    """Invariants every plan must satisfy."""
    net = plans.network
    divisor = net.total_downsampling
    assert all(p % d == 0 for p, d in zip(plans.patch_size, divisor)), (plans.patch_size, divisor)
    assert all(p // d >= 4 for p, d in zip(plans.patch_size, divisor)), "bottleneck edge below 4"
    assert plans.batch_size >= 2
    assert net.num_stages >= 2
    assert len(net.kernel_sizes) == len(net.strides) == len(net.n_conv_per_stage) == net.num_stages
    assert len(net.n_conv_per_stage_decoder) == net.num_stages - 1
    assert net.strides[0] == [1, 1, 1]
    assert len(plans.normalization) == len(plans.channel_names)


def test_isotropic_brains_plan_like_nnunet():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 40, [[160, 192, 160]] * 40)
    plans = plan_from_fingerprint(fingerprint, SEG_SPEC)
    _check_structure(plans)
    assert plans.target_spacing == [1.0, 1.0, 1.0]
    assert plans.median_shape == [160, 192, 160]
    assert all(112 <= p <= 160 for p in plans.patch_size), plans.patch_size
    assert 5 <= plans.network.num_stages <= 6
    assert plans.network.features_per_stage[:3] == [32, 64, 128] and max(plans.network.features_per_stage) == 320
    assert all(k == [3, 3, 3] for k in plans.network.kernel_sizes)
    budget = feature_map_budget(8)
    assert estimate_feature_map_elements(plans.network, plans.patch_size, 2) <= budget
    assert "median spacing" in plans.spacing_reason and plans.notes


def test_anisotropic_axis_uses_tenth_percentile_and_pools_later():
    z_spacings = [3.0, 3.5, 4.0] + [5.0] * 17
    fingerprint = synthetic_fingerprint([[1.0, 1.0, z] for z in z_spacings], [[200, 220, 32]] * 20)
    plans = plan_from_fingerprint(fingerprint, SEG_SPEC)
    _check_structure(plans)
    expected_z = float(np.percentile(z_spacings, 10))
    assert plans.target_spacing[:2] == [1.0, 1.0]
    assert plans.target_spacing[2] == pytest.approx(expected_z) and expected_z < 5.0
    assert "10th percentile" in plans.spacing_reason
    strides = np.array(plans.network.strides)
    pools = (strides == 2).sum(axis=0)  # poolings per axis
    assert pools[2] < pools[0] and pools[2] < pools[1]
    assert strides[1].tolist() == [2, 2, 1], "the thick-slice axis waits until in-plane spacing catches up"
    assert plans.network.kernel_sizes[0] == [3, 3, 1]


def test_coarse_axis_with_many_slices_keeps_median():
    spacing, reason = determine_target_spacing([[1, 1, 4.0]] * 5 + [[1, 1, 3.0]] * 5, [[100, 100, 90]] * 10)
    assert spacing == [1.0, 1.0, 3.5]
    assert "median is kept" in reason


def test_tiny_dataset_is_not_padded_into_huge_patches():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 4, [[20, 24, 18]] * 4)
    plans = plan_from_fingerprint(fingerprint, SEG_SPEC)
    _check_structure(plans)
    assert all(p <= m + 4 for p, m in zip(plans.patch_size, plans.median_shape)), plans.patch_size
    assert plans.batch_size == 2  # 5 % of 4 tiny cases is less than one patch: the minimum wins


def test_smaller_memory_budget_forces_smaller_patch():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 40, [[160, 192, 160]] * 40)
    default = plan_from_fingerprint(fingerprint, SEG_SPEC)
    small = plan_from_fingerprint(fingerprint, SEG_SPEC, _options(gpu_memory_gb=2.0))
    large = plan_from_fingerprint(fingerprint, SEG_SPEC, _options(gpu_memory_gb=40.0))
    for plans in (small, large):
        _check_structure(plans)
    assert np.prod(small.patch_size) < np.prod(default.patch_size)
    assert estimate_feature_map_elements(small.network, small.patch_size, 2) <= feature_map_budget(2.0)
    assert np.prod(large.patch_size) > np.prod(default.patch_size) or large.batch_size > default.batch_size


def test_batch_size_capped_by_dataset_fraction_and_option():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 400, [[64, 64, 64]] * 400)
    plans = plan_from_fingerprint(fingerprint, SEG_SPEC, _options(base_features=8, max_features=32,
                                                                  max_patch_edge=32))
    _check_structure(plans)
    assert plans.patch_size == [32, 32, 32]
    assert plans.network.features_per_stage == [8, 16, 32, 32]
    assert plans.batch_size == round(400 * 64 ** 3 * 0.05 / 32 ** 3)  # memory would allow far more
    capped = plan_from_fingerprint(fingerprint, SEG_SPEC, _options(base_features=8, max_features=32,
                                                                   max_patch_edge=32, max_batch_size=4))
    assert capped.batch_size == 4
    # what memory alone allows is recorded for the methods that cost more per sample (batch_memory.py)
    assert capped.memory_batch_size == plans.memory_batch_size > plans.batch_size


def test_max_patch_edge_never_exceeded_even_when_padding():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 10, [[90, 100, 80]] * 10)
    plans = plan_from_fingerprint(fingerprint, SEG_SPEC, _options(max_patch_edge=30))
    _check_structure(plans)
    assert max(plans.patch_size) <= 30


def test_input_handling_per_task_family():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 10, [[60, 70, 60]] * 10)
    stem = plan_from_fingerprint(fingerprint, TASK_SPEC, _options(max_patch_edge=48))
    assert stem.network.fusion == "stem_expansion" and stem.network.input_channels == 3
    assert stem.channel_names == ["flair", "adc", "dwi_b1000"] and stem.classes == TASK_SPEC.classes
    shared = plan_from_fingerprint(fingerprint, TASK_SPEC, PlannerOptions(SizingOptions(max_patch_edge=48),
                                                                           fusion="shared_encoder"))
    assert shared.network.fusion == "shared_encoder" and shared.network.input_channels == 1
    corpus = plan_from_fingerprint(fingerprint, CORPUS_SPEC, _options(max_patch_edge=48))
    assert corpus.network.input_channels == 1 and corpus.network.fusion == "none" and corpus.channel_names == ["mri"]
    assert corpus.training.optimizer == "adamw" and corpus.training.learning_rate == pytest.approx(1e-4)
    assert stem.training.schedule == "warmup_cosine"
    assert corpus.augmentation and stem.augmentation and corpus.augmentation != stem.augmentation


def _pretraining_plans():
    fingerprint = synthetic_fingerprint([[1.2, 1.2, 1.2]] * 50, [[120, 140, 120]] * 50)
    return plan_from_fingerprint(fingerprint, CORPUS_SPEC, _options(base_features=16, max_features=128,
                                                                    max_patch_edge=64))


def _save_pretraining_checkpoint(plans, path):
    """A checkpoint laid out as fomo_nn pretraining writes it (whole MAE model + plans + adaptation record)."""
    model = build_pretraining_network(plans, "mae")
    record = adaptation_record(model, plans, "mae", {}, {"corpora": ["test"]})
    torch.save({"network": model.state_dict(), "plans": plans.to_json(), "adaptation": record, "epoch": 1}, path)
    return path


def test_plans_like_checkpoint_uses_pretrained_topology(tmp_path):
    source = _pretraining_plans()
    checkpoint = _save_pretraining_checkpoint(source, tmp_path / "checkpoint_final.pth")
    loaded, adaptation = load_source_plans(checkpoint)
    assert loaded.network == source.network and adaptation["pretraining"]["method"] == "mae"

    fingerprint = synthetic_fingerprint([[0.9, 0.9, 1.0]] * 20, [[150, 180, 140]] * 20, channels=TASK_SPEC.channels)
    options = _options(max_patch_edge=48)  # the dataset alone would choose a smaller, different net
    alone = plan_from_fingerprint(fingerprint, TASK_SPEC, options)
    used = plan_like(alone, loaded, checkpoint, TASK_SPEC, fingerprint, PlannerOptions(), adaptation)
    _check_structure(used)
    for field in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage", "n_conv_per_stage_decoder",
                  "encoder"):
        assert getattr(used.network, field) == getattr(source.network, field)
    assert used.target_spacing == source.target_spacing
    assert [n.scheme for n in used.normalization] == [source.normalization[0].scheme] * 3
    assert used.patch_size == source.patch_size
    assert used.network.input_channels == 3 and used.network.fusion == "stem_expansion"
    differences = used.plans_like["differences"]
    assert differences["target_spacing"] == [alone.target_spacing, source.target_spacing]
    assert differences["network.features_per_stage"][1] == source.network.features_per_stage
    assert used.plans_like["source"] == str(checkpoint)
    report = differences_report(used)
    assert "target_spacing" in report and str(checkpoint) in report


def test_plans_like_shrinks_patch_within_family_under_small_memory(tmp_path):
    source = _pretraining_plans()
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 20, [[150, 180, 140]] * 20, channels=TASK_SPEC.channels)
    alone = plan_from_fingerprint(fingerprint, TASK_SPEC)
    used = plan_like(alone, source, "pretrained/plans.json", TASK_SPEC, fingerprint,
                     _options(gpu_memory_gb=0.05))
    divisor = source.network.total_downsampling
    assert np.prod(used.patch_size) < np.prod(source.patch_size)
    assert all(p % d == 0 for p, d in zip(used.patch_size, divisor))


def test_plans_like_rejects_incompatible_channels_and_bad_checkpoints(tmp_path):
    source = _pretraining_plans()
    two_channel = source.replace(network=source.network.__class__(**{**source.network.__dict__, "input_channels": 2}))
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 5, [[60, 60, 60]] * 5, channels=TASK_SPEC.channels)
    alone = plan_from_fingerprint(fingerprint, TASK_SPEC, _options(max_patch_edge=32))
    with pytest.raises(BadInputError, match="2 input channels but the dataset has 3"):
        plan_like(alone, two_channel, tmp_path / "x.pth", TASK_SPEC, fingerprint)
    no_plans = tmp_path / "weights_only.pth"
    torch.save({"network": {"w": torch.zeros(1)}}, no_plans)
    with pytest.raises(BadInputError, match="unknown checkpoint format") as error:
        load_source_plans(no_plans)
    assert str(no_plans) in str(error.value)


def test_baseline_normalization_is_a_selectable_scheme_with_its_difference_in_the_notes():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 8, [[120, 140, 120]] * 8)
    default = plan_from_fingerprint(fingerprint, TASK_SPEC)
    assert [(n.scheme, n.clip_percentiles) for n in default.normalization] == [("zscore_foreground", [0.5, 99.5])] * 3
    plans = plan_from_fingerprint(fingerprint, TASK_SPEC, PlannerOptions(normalization="volume_wise_znorm"))
    assert [(n.scheme, n.clip_percentiles) for n in plans.normalization] == [("volume_wise_znorm", [0.0, 99.0])] * 3
    note = next(n for n in plans.notes if n.startswith("normalization:"))
    assert "FOMO25 baseline" in note and "99th percentile" in note and "[0, 1]" in note and "zscore_foreground" in note
    with pytest.raises(ValueError, match=r"unknown normalization scheme 'minmax' \(known: zscore_foreground, "
                                         r"volume_wise_znorm, zscore_volume\)"):
        PlannerOptions(normalization="minmax")

    # planned like a model pretrained on baseline-normalized inputs: its scheme wins, and the notes say so
    source = _pretraining_plans().replace(normalization=plans.normalization[:1])
    used = plan_like(default, source, "pretrained/plans.json", TASK_SPEC, fingerprint, PlannerOptions())
    assert {n.scheme for n in used.normalization} == {"volume_wise_znorm"}
    assert any("normalization volume_wise_znorm of the pretrained model is used" in n for n in used.notes)


def test_auxiliary_labels_reach_the_plans_of_classification_only():
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 8, [[120, 140, 120]] * 8)
    spec = DatasetSpec(**{**TASK_SPEC.__dict__, "auxiliary_labels": {"background": 0, "infarct": 1}})
    plans = plan_from_fingerprint(fingerprint, spec)
    assert plans.auxiliary_labels == {"background": 0, "infarct": 1} and plans.labels is None
    assert any("auxiliary labels" in n for n in plans.notes)
    assert plan_from_fingerprint(fingerprint, TASK_SPEC).auxiliary_labels is None
    assert plan_from_fingerprint(fingerprint, SEG_SPEC).auxiliary_labels is None


def test_fingerprint_of_segmentation_dataset(tmp_path):
    raw = make_segmentation_dataset(tmp_path, num_cases=3, shapes=((32, 36, 28), (30, 34, 14)),
                                    spacings=((1.0, 1.0, 1.0), (1.0, 1.0, 2.5)), orientations=("RAS", "LPS"))
    fingerprint, problems = extract_fingerprint(raw, num_workers=1, progress=False)
    assert problems == []
    assert fingerprint["num_cases"] == 3 and fingerprint["task_type"] == "segmentation"
    by_id = {c["case_id"]: c for c in fingerprint["cases"]}
    assert by_id["case_001"]["spacing"] == [1.0, 1.0, 2.5]
    assert by_id["case_001"]["shape_before_crop"] == [30, 34, 14]
    for case in by_id.values():
        after, before = np.array(case["shape_after_crop"]), np.array(case["shape_before_crop"])
        assert np.all(after < before) and np.all(after >= 0.6 * before)
        assert case["relative_size_after_crop"] == pytest.approx(np.prod(after) / np.prod(before))
    stats = fingerprint["foreground_intensity_properties_per_channel"]
    assert set(stats) == {"0", "1"}
    assert 250 < stats["0"]["median"] < 400 < stats["1"]["median"] < 500  # channel scales 300 and 400
    assert stats["0"]["percentile_00_5"] < stats["0"]["mean"] < stats["0"]["percentile_99_5"]
    assert fingerprint["labels"]["1"]["num_cases_present"] == 3
    json.dumps(fingerprint)


def test_fingerprint_counts_corpus_and_targets(tmp_path):
    corpus = make_pretraining_dataset(tmp_path, num_subjects=3, sessions=2, sequences=("t1", "flair"))
    fingerprint, _ = extract_fingerprint(corpus, num_workers=1, max_cases=5, progress=False)
    counts = fingerprint["corpus"]
    assert fingerprint["num_cases"] == 12 and fingerprint["num_cases_read"] == 5
    assert counts["images_per_sequence"] == {"flair": 6, "t1": 6}
    assert counts["num_subjects"] == 3 and counts["num_sessions"] == 6
    assert counts["images_per_subject"]["sub_0"] == 4 and counts["images_per_session"]["sub_2/ses_1"] == 2
    cls = make_classification_dataset(tmp_path, num_cases=4)
    fingerprint, _ = extract_fingerprint(cls, num_workers=1, progress=False)
    assert fingerprint["targets"] == {"cases_per_class": {"0": 2, "1": 2}}


def test_cli_plans_like_end_to_end(tmp_path, monkeypatch, capsys):
    from fomo_nn.cli.plan_and_preprocess import main

    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    make_pretraining_dataset(tmp_path / "raw", dataset_id=3, num_subjects=2)
    make_classification_dataset(tmp_path / "raw", dataset_id=2, num_cases=4)
    tiny = ["-np", "1", "--no-progress", "--base-features", "8", "--max-features", "32", "--max-patch", "32"]
    assert main(["-d", "3", "--no-preprocess", *tiny]) == 0
    source = load_plans(tmp_path / "pre" / "Dataset003_Corpus")
    checkpoint = _save_pretraining_checkpoint(source, tmp_path / "pretrained.pth")
    capsys.readouterr()
    assert main(["-d", "2", "--plans-like", str(checkpoint), *tiny[:3], "--max-patch", "32"]) == 0
    output = capsys.readouterr().out
    plans = load_plans(tmp_path / "pre" / "Dataset002_Cls")
    assert plans.network.features_per_stage == source.network.features_per_stage
    assert plans.target_spacing == source.target_spacing and plans.plans_like["source"] == str(checkpoint)
    assert "planned like" in output and "target_spacing" in output
    assert len(list((tmp_path / "pre" / "Dataset002_Cls" / "3d_fullres").glob("*.b2nd"))) == 4


def test_np_means_processes_in_every_command_and_defaults_to_the_usable_cores(monkeypatch):
    """-np is --num-processes in convert, plan_and_preprocess and the sample generator; the default
    follows the cores this process may use (a SLURM allocation), not the host's count."""
    from fomo_nn.cli import convert, generate_sample_data, plan_and_preprocess
    from fomo_nn.preprocessing import parallel

    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert parallel.default_num_processes() == 3 and parallel.default_num_processes(2) == 2
    parsers = [plan_and_preprocess.build_parser(), generate_sample_data.build_parser(), convert.build_parser()]
    argvs = [["-d", "1", "-np", "3"], ["out", "-np", "3"], ["validate", "1", "-np", "3"]]
    for parser, argv in zip(parsers, argvs):
        args = parser.parse_args(argv)
        assert args.num_processes == 3 and not hasattr(args, "num_workers")
