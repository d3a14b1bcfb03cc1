"""Leaderboard rows and their three renderings: leaderboard.md, leaderboard.csv, ranks_bootstrap.json."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from fomo_nn.evaluation.bootstrap import BootstrapResult
from fomo_nn.evaluation.permutation import PairwiseTest
from fomo_nn.evaluation.ranking import Ranks, places
from fomo_nn.evaluation.task_metrics import TASK_METRICS, TASKS, MetricSpec, key_challenge, key_evaluation
from fomo_nn.evaluation.tiers import TierDecision


@dataclass(frozen=True)
class Column:
    task: str  # task key
    spec: MetricSpec
    name: str  # leaderboard.csv column
    label: str  # leaderboard.md column title


def metric_columns(tasks) -> list[Column]:
    """Task types (FOMO25): the fixed columns auroc, dice, nsd, mae, pearson_r for every type, as always.
    Challenge tasks: each task's metrics, prefixed by its key (`fomo26_task4_dice`, "Dice (task 4)")."""
    if all(task in TASKS for task in tasks):
        return [Column(task, spec, spec.key, spec.label) for task in TASKS for spec in TASK_METRICS[task]]
    return [Column(task, spec, f"{task}_{spec.key}", f"{spec.label} (task {key_challenge(task).number})")
            for task in tasks for spec in key_evaluation(task).metrics]


def rank_columns(tasks) -> list[str]:
    return list(TASKS) if all(task in TASKS for task in tasks) else list(tasks)


@dataclass
class LeaderboardRow:
    place: int
    model: str
    overall_rank: float
    tier: int
    metrics: dict[str, float | None]  # metric column -> value, None when the model lacks the task
    task_ranks: dict[str, float]
    place_interval: tuple[int, int]  # bootstrap 2.5 / 97.5 percentiles of the place


def _interval(samples: np.ndarray) -> list[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def _metric_interval(samples: np.ndarray) -> list[float] | None:
    """Over the resamples where the model has a value (under "exclude" a resample may hold no scored case)."""
    samples = samples[~np.isnan(samples)]
    return _interval(samples) if samples.size else None


def build_rows(names: list[str], point_values: dict[str, dict[str, np.ndarray]], point_ranks: Ranks,
               bootstrap: BootstrapResult, order: list[int], tiers: dict[str, int]) -> list[LeaderboardRow]:
    point_places = places(point_ranks.overall)
    bootstrap_places = bootstrap.places
    rows = []
    columns = metric_columns(list(point_values))
    for m in order:
        values = {c.name: (None if c.task not in point_values or np.isnan(point_values[c.task][c.spec.key][m])
                           else float(point_values[c.task][c.spec.key][m])) for c in columns}
        low, high = _interval(bootstrap_places[:, m])
        rows.append(LeaderboardRow(int(point_places[m]), names[m], float(point_ranks.overall[m]), tiers[names[m]],
                                   values, {task: float(r[m]) for task, r in point_ranks.task_ranks.items()},
                                   (int(round(low)), int(round(high)))))
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def leaderboard_csv(rows: list[LeaderboardRow], tasks: list[str]) -> str:
    """Fixed columns for every task type (FOMO25), or every ranked challenge task's; empty where a model
    (or everybody) lacks the task."""
    columns, ranked = metric_columns(tasks), rank_columns(tasks)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["place", "model", "overall_rank", "tier"] + [c.name for c in columns]
                    + [f"rank_{task}" for task in ranked] + ["place_low95", "place_high95"])
    for row in rows:
        writer.writerow([row.place, row.model, f"{row.overall_rank:.4f}", row.tier]
                        + ["" if row.metrics[c.name] is None else f"{row.metrics[c.name]:.6g}" for c in columns]
                        + ["" if task not in row.task_ranks else f"{row.task_ranks[task]:.4f}" for task in ranked]
                        + list(row.place_interval))
    return buffer.getvalue()


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(line) + " |" for line in lines])


def _permutation_summary(tests: list[PairwiseTest], names: list[str], tasks: list[str]) -> list[str]:
    """Per model and metric: significant wins / losses against the other models."""
    keys = [c for c in metric_columns(tasks) if c.task in tasks]
    score = {(name, c.task, c.spec.key): [0, 0] for name in names for c in keys}
    for test in tests:
        if test.significant and test.better:
            loser = test.model_b if test.better == test.model_a else test.model_a
            score[(test.better, test.task, test.metric)][0] += 1
            score[(loser, test.task, test.metric)][1] += 1
    return _table(["model"] + [c.label for c in keys],
                  [[name] + ["{} / {}".format(*score[(name, c.task, c.spec.key)]) for c in keys] for name in names])


@dataclass
class ReportSettings:
    num_resamples: int
    seed: int | None
    alpha: float
    num_permutations: int


def leaderboard_markdown(rows: list[LeaderboardRow], tasks: list[str], settings: ReportSettings,
                         decisions: list[TierDecision], tests: list[PairwiseTest], notes: list[str],
                         plots: list[str], ranking_rules: list[str] | None = None) -> str:
    columns = [c for c in metric_columns(tasks) if c.task in tasks]
    header = (["place", "model", "overall rank", "tier"] + [c.label for c in columns]
              + [f"rank {task}" for task in tasks] + ["place 95% (bootstrap)"])
    lines = [[str(row.place), row.model, f"{row.overall_rank:.2f}", str(row.tier)]
             + [_fmt(row.metrics[c.name], 2 if c.spec.key == "mae" else 3) for c in columns]
             + [f"{row.task_ranks[task]:.2f}" for task in tasks]
             + [f"{row.place_interval[0]}–{row.place_interval[1]}"] for row in rows]
    text = ["# Leaderboard", "", *_table(header, lines), ""]
    text += ["## How the ranking works", "",
             "- Each metric ranks the models (1 = best; higher AUROC, Dice, NSD, Pearson r and lower MAE are "
             "better); tied values share the average rank.",
             *(ranking_rules or [
                 "- Task rank = mean of the task's metric ranks; overall rank = mean of the task ranks. A model "
                 "without a task ranks below every model with it (models missing the same task tie)."]),
             f"- Bootstrap: {settings.num_resamples} resamples of each task's cases (seed {settings.seed}), the "
             "same resampled cases for every model; classification resamples each class separately.",
             f"- Tiers (α = {settings.alpha}): walking down the leaderboard, a model joins the current tier unless "
             "it is significantly worse than the tier's leader: it ranks overall at least as well as the leader "
             f"in fewer than an α share of the bootstrap resamples (p = (1 + count) / (1 + B) < α). The first "
             "model that is significantly worse leads the next tier, so tiers are contiguous.",
             f"- Pairwise permutation tests ({settings.num_permutations} per-case swaps of the two models' "
             "outputs, two-sided, not corrected for multiple comparisons) are listed per task and metric in "
             "pairwise_tests.csv.", ""]
    if decisions:
        text += ["## Tier decisions", "", *_table(
            ["leader", "model", "p (bootstrap)", "significantly worse"],
            [[d.leader, d.model, f"{d.p_value:.4f}", "yes" if d.significantly_worse else "no"] for d in decisions]), ""]
    if tests:
        text += [f"## Pairwise permutation tests: significant wins / losses at α = {settings.alpha}", "",
                 *_permutation_summary(tests, [row.model for row in rows], tasks), ""]
    if notes:
        text += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    if plots:
        text += ["## Plots", "", *[f"![{name}]({name})" for name in plots], ""]
    return "\n".join(text)


def bootstrap_json(names: list[str], point_values: dict[str, dict[str, np.ndarray]], point_ranks: Ranks,
                   bootstrap: BootstrapResult, tiers: dict[str, int], decisions: list[TierDecision],
                   settings: ReportSettings) -> dict:
    """Per model: point ranks, bootstrap rank summaries, place histogram, metric intervals."""
    bootstrap_places = bootstrap.places
    models = {}
    for m, name in enumerate(names):
        overall = bootstrap.ranks.overall[:, m]
        models[name] = {
            "tier": tiers[name],
            "overall_rank": float(point_ranks.overall[m]),
            "bootstrap_overall_rank": {"mean": float(overall.mean()), "median": float(np.median(overall)),
                                       "ci95": _interval(overall)},
            "place_counts": np.bincount(bootstrap_places[:, m] - 1, minlength=len(names)).tolist(),
            "place_ci95": _interval(bootstrap_places[:, m]),
            "task_ranks": {task: {"point": float(point_ranks.task_ranks[task][m]),
                                  "mean": float(ranks[:, m].mean()), "ci95": _interval(ranks[:, m])}
                           for task, ranks in bootstrap.ranks.task_ranks.items()},
            "metrics": {task: {key: None if np.isnan(values[m]) else
                               {"point": float(values[m]),
                                "ci95": _metric_interval(bootstrap.metric_values[task][key][:, m])}
                               for key, values in by_key.items()} for task, by_key in point_values.items()},
        }
    return {"num_resamples": settings.num_resamples, "seed": settings.seed, "alpha": settings.alpha,
            "resampling": "cases with replacement per task, shared by all models; classification stratified by class",
            "place": "competition ranking of the overall rank within each resample (1, 2, 2, 4)",
            "models": models, "tier_decisions": [vars(d) for d in decisions]}
