"""What fomo_nn_probe does: resolve the dataset, load encoders and cases, extract once, fit every probe."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fomo_nn import paths
from fomo_nn.plans import load_plans
from fomo_nn.probing.encoders import load_frozen_encoder
from fomo_nn.probing.linear_probes import probed_task_types
from fomo_nn.probing.probe import (extract_all, feature_modes_for, preprocessed_cases, probe_rows, raw_test_cases,
                                   read_groups)
from fomo_nn.tasks import task_kind


@dataclass
class ProbeRequest:
    dataset: str
    encoders: dict[str, str]  # name -> source
    modes: list[str] = field(default_factory=lambda: ["per_sequence"])
    pooling: str = "all_stages"
    models: list[str] = field(default_factory=lambda: ["linear"])
    groups: str | None = None  # CSV case_id,group for the test cases
    test: bool = True
    seed: int = 0
    device: str = "cpu"
    progress: bool = False


def run_probes(request: ProbeRequest) -> dict:
    name = paths.resolve_dataset_name(request.dataset)
    preprocessed = paths.preprocessed_root() / name
    plans = load_plans(preprocessed)
    if plans.task_type not in probed_task_types():
        raise ValueError(f"{name} is a {plans.task_type} dataset; probes score {' and '.join(probed_task_types())}")
    train = preprocessed_cases(preprocessed / plans.configuration, plans)
    test = raw_test_cases(paths.raw_root() / name, plans) if request.test else None
    if test is not None and request.groups:
        groups = read_groups(request.groups)
        test.groups = [groups.get(case_id, "unknown") for case_id in test.case_ids]
    encoders = {label: load_frozen_encoder(source, plans) for label, source in request.encoders.items()}
    modes = {label: feature_modes_for(frozen, plans.num_input_channels, request.modes)
             for label, frozen in encoders.items()}
    options = dict(device=request.device, progress=request.progress)
    train_features = extract_all(encoders, modes, request.pooling, train, description="training cases", **options)
    test_features = (extract_all(encoders, modes, request.pooling, test, description="test cases", **options)
                     if test is not None and len(test) else {})
    rows = []
    for (label, mode), features in train_features.items():
        for model in request.models:
            for row in probe_rows(plans.task_type, train, features, test, test_features.get((label, mode)), model,
                                  request.seed):
                rows.append({"encoder": label, "source": encoders[label].source, "mode": mode,
                             "pooling": request.pooling, "model": model, **row})
    return {"dataset": name, "task_type": plans.task_type, "request": asdict(request),
            "num_training_cases": len(train), "num_test_cases": len(test) if test is not None else 0, "rows": rows}


def format_table(result: dict) -> str:
    """A markdown table: one line per encoder, mode and model; columns per split and metric."""
    metrics = task_kind(result["task_type"]).probe_metrics
    splits = list(dict.fromkeys(row["split"] for row in result["rows"]))
    header = ["encoder", "mode", "model"] + [f"{split} {metric}" for split in splits for metric in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = list(dict.fromkeys((r["encoder"], r["mode"], r["model"]) for r in result["rows"]))
    for key in keys:
        by_split = {r["split"]: r for r in result["rows"] if (r["encoder"], r["mode"], r["model"]) == key}
        cells = [f"{by_split[s][m]:.3f}" if s in by_split and m in by_split[s] else "–" for s in splits for m in metrics]
        lines.append("| " + " | ".join([*key, *cells]) + " |")
    return "\n".join(lines)
