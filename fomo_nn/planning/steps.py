"""The fingerprint and plan steps on dataset folders (what the CLI calls)."""
from __future__ import annotations

import json
from pathlib import Path

from fomo_nn.datasets.dataset_json import load_dataset_json
from fomo_nn.io import BadInputError
from fomo_nn.planning.fingerprint import FINGERPRINT_FILE, case_list_hash, extract_fingerprint
from fomo_nn.planning.planner import PlannerOptions, plan_from_fingerprint
from fomo_nn.planning.plans_like import load_source_plans, plan_like
from fomo_nn.plans.records import PLANS_FILE, Plans, save_plans
from fomo_nn.preprocessing.dataset_cases import CaseProblem, dataset_cases
from fomo_nn.preprocessing.runner import copy_dataset_json
from fomo_nn.utils.files import read_json, write_json_atomic


def _reusable(path: Path, raw_dir: Path, max_cases: int | None) -> dict | None:
    """The stored fingerprint if it was made from exactly the current case list with the same sampling."""
    if not path.is_file():
        return None
    try:
        stored = read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
    _, cases, _ = dataset_cases(raw_dir)
    if stored.get("case_list_hash") != case_list_hash(cases) or stored.get("max_cases_read") != max_cases:
        return None
    return stored


def fingerprint_step(raw_dir: str | Path, preprocessed_dir: str | Path, num_workers: int = 1,
                     max_cases: int | None = None, clean: bool = False, progress: bool = True
                     ) -> tuple[dict, list[CaseProblem], bool]:
    """(fingerprint, bad cases, reused?) written to preprocessed_dir/dataset_fingerprint.json.

    A stored fingerprint is reused when the case list has not changed (use `clean` to redo it).
    """
    raw_dir, preprocessed_dir = Path(raw_dir), Path(preprocessed_dir)
    path = preprocessed_dir / FINGERPRINT_FILE
    stored = None if clean else _reusable(path, raw_dir, max_cases)
    if stored is not None:
        problems = [CaseProblem(**p) for p in stored.get("bad_cases", [])]
        return stored, problems, True
    fingerprint, problems = extract_fingerprint(raw_dir, num_workers, max_cases, progress)
    fingerprint["max_cases_read"] = max_cases
    preprocessed_dir.mkdir(parents=True, exist_ok=True)
    copy_dataset_json(raw_dir, preprocessed_dir)
    write_json_atomic(path, fingerprint, indent=1)
    return fingerprint, problems, False


def plan_step(raw_dir: str | Path, preprocessed_dir: str | Path, options: PlannerOptions | None = None,
              plans_like_source: str | Path | None = None, trust_checkpoint: bool = False) -> Plans:
    """Plan from the stored fingerprint (and a pretrained model, if given); writes plans.json."""
    raw_dir, preprocessed_dir = Path(raw_dir), Path(preprocessed_dir)
    path = preprocessed_dir / FINGERPRINT_FILE
    if not path.is_file():
        raise BadInputError(path, "fingerprint is missing (run fomo_nn_extract_fingerprint or "
                                  "fomo_nn_plan_and_preprocess first)")
    fingerprint = read_json(path)
    spec = load_dataset_json(raw_dir)
    options = options or PlannerOptions()
    plans = plan_from_fingerprint(fingerprint, spec, options, dataset_name=raw_dir.name)
    if plans_like_source is not None:
        source, adaptation = load_source_plans(plans_like_source, trust_pickle=trust_checkpoint)
        plans = plan_like(plans, source, plans_like_source, spec, fingerprint, options, adaptation)
    save_plans(plans, preprocessed_dir / PLANS_FILE)
    return plans
