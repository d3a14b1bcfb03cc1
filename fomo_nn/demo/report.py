"""REPORT.md: the leaderboard in FOMO25's columns and an honest answer per task."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fomo_nn.demo.representation import representation_section
from fomo_nn.evaluation.task_metrics import TASK_METRICS, task_evaluation
from fomo_nn.tasks import task_kind
from fomo_nn.utils.files import write_text_atomic

COLUMNS = [(spec.key, spec.label, spec.higher_is_better) for specs in TASK_METRICS.values() for spec in specs]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _value(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def task_verdict(rows: list[dict], family: str, scratch: str, tests: list[dict]) -> str:
    """One line: did the best pretrained model beat the from-scratch baseline on this task's metrics?"""
    by_model = {row["model"]: row for row in rows}
    baseline = by_model.get(scratch)
    pretrained = [row for row in rows if row["model"] != scratch]
    if baseline is None or not pretrained:
        return "no comparison possible"
    parts = []
    for spec in TASK_METRICS[family]:
        key, higher = spec.key, spec.higher_is_better
        values = [(float(r[key]), r["model"]) for r in pretrained if r[key] != ""]
        if not values or baseline[key] == "":
            continue
        best_value, best_model = max(values) if higher else min(values)
        base_value = float(baseline[key])
        won = best_value > base_value if higher else best_value < base_value
        p_value = next((float(t["p_value"]) for t in tests if t["metric"] == key and
                        {t["model_a"], t["model_b"]} == {best_model, scratch}), None)
        significance = "" if p_value is None else f", permutation p = {p_value:.3g}"
        parts.append(f"{key} {best_value:.3f} ({best_model}) vs {base_value:.3f} (scratch): "
                     f"{'pretraining better' if won else 'pretraining NOT better'}{significance}")
    return "; ".join(parts) or "no comparison possible"


def write_report(pipeline) -> Path:
    report_dir = pipeline.report_dir
    rows = _read_csv(report_dir / "leaderboard.csv")
    tests = _read_csv(report_dir / "pairwise_tests.csv") if (report_dir / "pairwise_tests.csv").is_file() else []
    lines = ["# fomo_nn demo: does self-supervised pretraining beat supervised training out of domain?", "",
             f"Budget `{pipeline.budget.name}`, pretraining methods {', '.join(pipeline.methods)}"
             + (" (`pretrained`: " + ", ".join(f"{t.key} from {pipeline.method_of(t, 'pretrained')}" for t in _tasks(pipeline))
                + ")" if pipeline.family_defaults else "") + f", seed {pipeline.seed}. "
             "Every model was finetuned on the finetuning split and evaluated on test sites the finetuning data "
             "never came from (other scanners, orientations, spacings, intensity scales).", "",
             "## Leaderboard (FOMO25 columns)", "",
             "| place | model | overall rank | tier | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append(f"| {row['place']} | {row['model']} | {float(row['overall_rank']):.2f} | {row['tier']} | "
                     + " | ".join(_fmt(_value(row[key])) for key, _, _ in COLUMNS) + " |")
    lines += ["", "Ranks: per metric, averaged within a task, then across tasks (FOMO25). Tiers from the bootstrap "
              "distribution of ranks (see report/leaderboard.md for the rule and report/pairwise_tests.csv for "
              "permutation tests).", "", "## Did pretraining beat the from-scratch baseline?", ""]
    for task in _tasks(pipeline):
        lines.append(f"- **{task.key} ({task.family})**: {task_verdict(rows, task.family, pipeline.model_names[0], tests)}")
    lines += probe_section(pipeline)
    lines += representation_section(pipeline)
    lines += ["", "These numbers come from synthetic sample data and a small compute budget: they show the "
              "pipeline answering the question, not the answer for real clinical data. Run with "
              "`--budget full` on FOMO60K and the FOMO task folders for that.", "", "## Plots", ""]
    for name, title in (("roc_curves.png", "ROC curves (task 1)"), ("dice_per_case.png", "Dice per case (task 2)"),
                        ("age_scatter.png", "Predicted vs true age (task 3)"),
                        ("bootstrap_ranks.png", "Bootstrap rank distributions")):
        if (report_dir / name).is_file():
            lines += [f"### {title}", "", f"![{title}](report/{name})", ""]
    lines += ["## Stage times", "", "| stage | seconds |", "|---|---|"]
    markers = [p for p in (pipeline.workdir / ".stages").glob("*.json") if p.name != "config.json"]
    for marker in sorted(markers, key=lambda p: p.stat().st_mtime):
        lines.append(f"| {marker.stem} | {json.loads(marker.read_text())['seconds']:.0f} |")
    return write_text_atomic(pipeline.workdir / "REPORT.md", "\n".join(lines) + "\n")


def probe_metric(task_type: str) -> tuple[str, bool]:
    """(the headline probe metric of a task type, whether higher is better): its kind's first probe metric."""
    metric = task_kind(task_type).probe_metrics[0]
    return metric, task_evaluation(task_type).metric(metric).higher_is_better


def _probe_cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def probe_table(result: dict) -> list[str]:
    """Markdown rows: random encoders (mean ± SD over seeds) and each pretrained encoder, per split."""
    metric, _ = probe_metric(result["task_type"])
    rows = [r for r in result["rows"] if r["model"] == "linear"]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault("random encoders" if row["encoder"].startswith("random:") else row["encoder"], []).append(row)
    header = ["encoder", *(f"{split} {metric}" for split in splits)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, members in groups.items():
        cells = [_probe_cell([r[metric] for r in members if r["split"] == split and metric in r]) for split in splits]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines


def probe_references(results: list[dict]) -> dict[str, float]:
    """The random encoders' mean in-domain probe value under the online probe's log keys."""
    references = {}
    for result in results:
        for metric in ("auroc", "mae", "pearson_r"):
            values = [r[metric] for r in result["rows"] if r["encoder"].startswith("random:") and r["split"] == "cv"
                      and r["model"] == "linear" and metric in r]
            if values:
                references[f"probe_{result['dataset']}_{metric}"] = float(np.mean(values))
    return references


def probe_section(pipeline) -> list[str]:
    """Frozen-feature probes (tables) and the online probe curves of every pretraining run (a plot)."""
    from fomo_nn.probing.plots import plot_probe_curves, read_probe_curve

    results = [json.loads(pipeline.probe_path(t).read_text()) for t in pipeline.probed_tasks
               if pipeline.probe_path(t).is_file()]
    if not results:
        return []
    lines = ["", "## Frozen-feature probes", "",
             "Linear probes (logistic / ridge, penalty chosen inside the training cases) on the pooled features of "
             "frozen encoders, fitted on the finetuning cases: `cv` is 5-fold cross-validation in domain, `test` the "
             "held-out sites (overall and per site). Random encoders are the planned network untrained, "
             f"{pipeline.budget.random_probe_seeds} seeds (mean ± SD)."]
    for task, result in zip(pipeline.probed_tasks, results):
        metric, higher = probe_metric(result["task_type"])
        lines += ["", f"### {task.key} ({task.family}, {metric}, {'higher' if higher else 'lower'} is better)", "",
                  *probe_table(result)]
    curves = {m: read_probe_curve(pipeline.pretraining_checkpoint(m).parent / "online_probe.jsonl")
              for m in pipeline.methods}
    figure = plot_probe_curves(curves, pipeline.report_dir / "probe_curves.png", probe_references(results))
    if figure is not None:
        lines += ["", "### Online probe during pretraining (in-domain cross-validation; dashed: random encoders)", "",
                  "![probe curves](report/probe_curves.png)"]
    return lines


def _tasks(pipeline):
    from fomo_nn.demo.pipeline import TASKS

    return TASKS
