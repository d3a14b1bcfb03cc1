"""fomo_nn_rank's work: summaries of several models -> leaderboard, bootstrap ranks, tests, tiers, plots.

The models' summaries name one challenge edition (results.results_edition); its Ranking rules
(fomo_nn.challenges) rank them: FOMO25's plain means, or FOMO26's rank of the mean metric rank, worst
rank for a missing task and weighted tasks."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from fomo_nn.evaluation.bootstrap import BootstrapResult, bootstrap_ranks
from fomo_nn.evaluation.leaderboard import (LeaderboardRow, ReportSettings, bootstrap_json, build_rows,
                                            leaderboard_csv, leaderboard_markdown)
from fomo_nn.evaluation.permutation import DEFAULT_PERMUTATIONS, PairwiseTest, pairwise_permutation_tests
from fomo_nn.evaluation.plots import plot_age_scatter, plot_bootstrap_places, plot_dice_per_case, plot_roc_curves
from fomo_nn.evaluation.policies import EMPTY_PAIR_POLICIES
from fomo_nn.evaluation.ranking import Ranks, aggregate_ranks
from fomo_nn.challenges.registry import edition
from fomo_nn.evaluation.results import ModelResults, TaskTable, build_task_tables, load_model_results, results_edition
from fomo_nn.evaluation.task_metrics import key_challenge, key_evaluation
from fomo_nn.evaluation.tiers import TierDecision, assign_tiers, leaderboard_order
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import write_json_atomic, write_text_atomic


@dataclass
class Report:
    names: list[str]
    rows: list[LeaderboardRow]
    point_ranks: Ranks
    bootstrap: BootstrapResult
    tests: list[PairwiseTest]
    tiers: dict[str, int]
    decisions: list[TierDecision]
    files: list[Path]


def _named(task: str) -> str:
    """A task's name in notes and plot files where the type does not name it: "" for FOMO25's (one task per
    type, files as they always were), the key for FOMO26's (`fomo26_task4`)."""
    challenge = key_challenge(task)
    return "" if challenge is None or challenge.key_by_type else task


def _mask_tasks(models: list[ModelResults]) -> list[str]:
    keys = dict.fromkeys(key for m in models for key in m.summaries if key_evaluation(key).masks)
    return list(keys)


def _check_same_scoring(models: list[ModelResults]) -> None:
    """Mask scores compare only when scored alike: one NSD tolerance, one empty-pair policy per task."""
    for task in _mask_tasks(models):
        scored = [(m.summaries[task], m.sources[task]) for m in models if task in m.summaries]
        for field, option in (("nsd_tolerance_mm", "--nsd-tolerance"), ("empty_pair", "--empty-pair")):
            if len({getattr(summary, field) for summary, _ in scored}) > 1:
                listing = "; ".join(f"{getattr(summary, field)} in {source}" for summary, source in scored)
                raise BadInputError(scored[0][1], f"{task} {field} differs between models ({listing}); "
                                                  f"re-evaluate with one {option} so Dice and NSD are comparable")


def _notes(models: list[ModelResults], tasks: list[str]) -> list[str]:
    notes = []
    for model in models:
        absent = [task for task in tasks if task not in model.summaries]
        if absent:
            notes.append(f"{model.name} has no {', '.join(absent)} result: ranked last on it.")
        for task, summary in model.summaries.items():
            if summary.missing_cases:
                notes.append(f"{model.name}, {task}: {len(summary.missing_cases)} of {len(summary.per_case)} cases "
                             f"had no prediction and were scored as failures ({summary.missing_policy}).")
    for task in _mask_tasks(models):
        summary = next(m.summaries[task] for m in models if task in m.summaries)
        where = f"{_named(task)}: " if _named(task) else ""
        notes.append(f"{where}NSD tolerance: {summary.nsd_tolerance_mm} mm.")
        notes.append(f"{where}Empty mask pairs ({summary.empty_pair}): {EMPTY_PAIR_POLICIES[summary.empty_pair]}.")
    return notes


def _ranking_rules(edition_name: str, tasks: list[str]) -> list[str] | None:
    """The leaderboard's words for a non-default edition's ranking (None: FOMO25's, the default text)."""
    table = edition(edition_name)
    if edition_name == "fomo25":
        return None
    weights = ", ".join(f"task {key_challenge(t).number} {key_challenge(t).weight:.0%}" for t in tasks)
    return [f"- {table.name.upper()} ({table.ranking.source}): task rank = the models' rank on the mean of the "
            "task's metric ranks; a model without a task gets the worst rank (the number of models); overall "
            f"rank = mean of task ranks weighted {weights} (renormalised over the tasks ranked here)."]


def _pairwise_csv(tests: list[PairwiseTest]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "metric", "model_a", "model_b", "value_a", "value_b", "better", "p_value", "significant"])
    for t in tests:
        writer.writerow([t.task, t.metric, t.model_a, t.model_b, f"{t.value_a:.6g}", f"{t.value_b:.6g}", t.better,
                         f"{t.p_value:.6g}", int(t.significant)])
    return buffer.getvalue()


def _plots(tables: dict[str, TaskTable], names, point_values, bootstrap, order, tiers, output_dir: Path) -> list[Path]:
    """One plot per task (FOMO25: roc_curves.png, dice_per_case.png, age_scatter.png; challenge tasks add
    their key, e.g. dice_per_case_fomo26_task4.png) and the bootstrap places."""
    files = []
    for task, table in tables.items():
        suffix = f"_{_named(task)}" if _named(task) else ""
        metric_keys = [spec.key for spec in table.evaluation.metrics]
        if "auroc" in metric_keys:
            files.append(plot_roc_curves(table, names, point_values[task]["auroc"],
                                         output_dir / f"roc_curves{suffix}.png"))
        elif "dice" in metric_keys:
            files.append(plot_dice_per_case(table, names, output_dir / f"dice_per_case{suffix}.png"))
        elif "mae" in metric_keys:
            values = point_values[task]
            files.append(plot_age_scatter(table, names, values["mae"], values["pearson_r"],
                                          output_dir / f"age_scatter{suffix}.png"))
    files.append(plot_bootstrap_places(bootstrap.places, names, order, tiers, output_dir / "bootstrap_ranks.png"))
    return files


def make_report(result_dirs, output_dir, num_resamples: int = 10_000, seed: int | None = 0, alpha: float = 0.05,
                num_permutations: int = DEFAULT_PERMUTATIONS, progress: bool = True) -> Report:
    """Rank the models in `result_dirs` (one folder per model) and write the report into `output_dir`."""
    models = [load_model_results(path) for path in result_dirs]
    _check_same_scoring(models)
    tables = build_task_tables(models)
    edition_name = results_edition(models)
    ranking = edition(edition_name).ranking
    names = [model.name for model in models]
    point_values = {task: table.point_metrics() for task, table in tables.items()}
    point_ranks = aggregate_ranks(point_values, ranking)
    bootstrap = bootstrap_ranks(tables, num_resamples, seed, progress, ranking)
    tests = pairwise_permutation_tests(tables, names, num_permutations, seed, alpha)
    order = leaderboard_order(point_ranks.overall, bootstrap.ranks.overall, names)
    tiers, decisions = assign_tiers(order, bootstrap.ranks.overall, names, alpha)
    rows = build_rows(names, point_values, point_ranks, bootstrap, order, tiers)
    settings = ReportSettings(num_resamples, seed, alpha, num_permutations)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = _plots(tables, names, point_values, bootstrap, order, tiers, output_dir)
    markdown = leaderboard_markdown(rows, list(tables), settings, decisions, tests, _notes(models, list(tables)),
                                    [path.name for path in files], _ranking_rules(edition_name, list(tables)))
    files += [write_text_atomic(output_dir / "leaderboard.md", markdown),
              write_text_atomic(output_dir / "leaderboard.csv", leaderboard_csv(rows, list(tables))),
              write_text_atomic(output_dir / "pairwise_tests.csv", _pairwise_csv(tests)),
              write_json_atomic(output_dir / "ranks_bootstrap.json",
                                bootstrap_json(names, point_values, point_ranks, bootstrap, tiers, decisions, settings))]
    return Report(names, rows, point_ranks, bootstrap, tests, tiers, decisions, files)
