"""The task-kind table (fomo_nn.tasks): complete, strict about names, and what code really reads."""
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import synthetic_fingerprint

from fomo_nn.datasets.dataset_json import TASK_TYPES, DatasetSpec
from fomo_nn.evaluation.task_metrics import TASKS
from fomo_nn.inference import export
from fomo_nn.inference.case_prediction import predict_preprocessed
from fomo_nn.networks import RegressionNet, build_finetuning_network
from fomo_nn.planning.planner import PlannerOptions, plan_from_fingerprint
from fomo_nn.planning.sizing import SizingOptions
from fomo_nn.tasks import TASK_KINDS, resolve, task_kind
from fomo_nn.tasks.regression import REGRESSION
from fomo_nn.training.finetuning.splits import splits_for_cases

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ("network", "predict", "export")
EVALUATION_HOOKS = ("score", "resampled_metrics", "permutation_pvalues")
# modules whose task branches read the table; no task name may be compared there again
CONVERTED = ["fomo_nn", "container"]  # the library (but the table itself) and the container
NAMES = "classification|segmentation|regression|pretraining"
COMPARISON = re.compile(rf"""[=!]= *["']({NAMES})["']|["']({NAMES})["'] *[=!]=|in *\(["']({NAMES})""")


def test_table_covers_every_task_type_dataset_json_accepts():
    assert set(TASK_KINDS) == set(TASK_TYPES)
    assert all(name == kind.name for name, kind in TASK_KINDS.items())


def test_unknown_task_type_names_the_nearest():
    with pytest.raises(ValueError, match="unknown task type 'segmentaton'; did you mean 'segmentation'"):
        task_kind("segmentaton")
    with pytest.raises(ValueError, match="unknown task type 'xyz' \\(valid: classification, pretraining"):
        task_kind("xyz")


def test_every_hook_names_a_function():
    for kind in TASK_KINDS.values():
        for hook in HOOKS:
            if getattr(kind, hook) is not None:
                assert callable(resolve(getattr(kind, hook))), (kind.name, hook)
        if kind.evaluation is not None:
            for hook in EVALUATION_HOOKS:
                assert callable(kind.evaluation.hook(hook)), (kind.name, hook)
    assert task_kind("pretraining").network is None and task_kind("pretraining").predict is None


def test_evaluated_tasks_keep_their_order():
    """The order seeds each task's bootstrap and permutation stream: it must not move."""
    assert TASKS == ("classification", "segmentation", "regression")


def test_tasks_package_imports_only_the_standard_library():
    code = "import sys, fomo_nn.tasks; print(sorted(m for m in ('torch', 'numpy', 'scipy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_converted_modules_compare_no_task_names():
    found = []
    for entry in CONVERTED:
        path = ROOT / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            if file.is_relative_to(ROOT / "fomo_nn" / "tasks"):
                continue
            for number, line in enumerate(file.read_text().splitlines(), 1):
                if COMPARISON.search(line):
                    found.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.fixture
def fifth_kind(monkeypatch):
    """A toy task type: regression's behaviour under another name, with its own planning defaults."""
    kind = dataclasses.replace(REGRESSION, name="regression2", foreground_oversampling=0.5,
                               training={**REGRESSION.training, "epochs": 7})
    monkeypatch.setitem(TASK_KINDS, kind.name, kind)
    return kind


def test_a_fifth_kind_plans_builds_predicts_and_exports_through_the_table(fifth_kind, tmp_path):
    spec = DatasetSpec(name="Age2", task_type="regression2", channel_names={"0": "t1", "1": "t2"},
                       target={"name": "age", "unit": "years"}, auxiliary_labels={"background": 0, "lesion": 1})
    fingerprint = synthetic_fingerprint([[1.0, 1.0, 1.0]] * 4, [[32, 32, 32]] * 4)
    options = PlannerOptions(SizingOptions(base_features=4, max_features=16, max_patch_edge=32, max_batch_size=2))
    plans = plan_from_fingerprint(fingerprint, spec, options)
    assert plans.task_type == "regression2"
    assert plans.training.epochs == 7 and plans.training.optimizer == "adamw"
    assert plans.foreground_oversampling == 0.5
    assert plans.augmentation_family == "regression" and plans.auxiliary_labels == spec.auxiliary_labels

    torch.manual_seed(0)
    network = build_finetuning_network(plans)
    assert isinstance(network, RegressionNet)
    data = np.random.default_rng(0).normal(size=(2, 32, 32, 32)).astype(np.float32)
    value = predict_preprocessed(network, data, plans, target_normalization={"mean": 60.0, "std": 5.0})
    assert isinstance(value, float) and np.isfinite(value)

    outputs = export.case_outputs(tmp_path, "case_1", plans.task_type, ".nii.gz", save_probabilities=True)
    row = export.export_case(value, "case_1", {}, plans, outputs)
    assert outputs.primary == tmp_path / "case_1.txt" and float(outputs.primary.read_text()) == value
    assert export.writes_csv(plans) and list(row) == export.csv_header(plans) == ["case_id", "value"]


def test_a_fifth_kind_splits_like_its_target(fifth_kind):
    cases = [type("Case", (), {"case_id": f"c{i}", "subject": f"s{i}", "target": float(i)})() for i in range(10)]
    splits = splits_for_cases(cases, "regression2")
    assert sorted(c for split in splits for c in split["val"]) == sorted(c.case_id for c in cases)
