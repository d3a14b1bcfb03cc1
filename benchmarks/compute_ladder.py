"""The compute ladder (issue 25): where does pretraining start to pay off on the sample world?

    python benchmarks/compute_ladder.py WORKDIR [--continue] [--budget small] [--methods contrastive mae hybrid]
        [--rungs 1 2 4 8 16] [--random-encoders 3] [--finetune-rung auto|R] [--finetune-seeds 3]
        [--lr-grid 3e-4 1e-3 3e-3] [--tasks 1 2 3] [--test-size fomo|preset] [--seed 0]

What it does, every step resumable (rerun with --continue after a kill at any point):
1. data: the demo's world at the budget's size (fomo_nn.demo stages generate/convert/plan), with
   FOMO25-sized test sets (--test-size fomo: 320 / 107 / 800 cases, the same test sites);
2. one pretraining per method to R x the budget's pretraining epochs (R the top rung), one cosine
   schedule; checkpoint_latest.pth is written every rung-1 epochs and copied to rungs/rung_R.pth at each
   rung (1x, 2x, 4x, ...), so every rung is read off the one run (a kill resumes from the last checkpoint);
3. out-of-domain frozen probes (fomo_nn.probing: linear probe on the pooled features of the training
   cases, scored on the test sites, overall and per site) of every rung and of >= 3 random encoders,
   each with a bootstrap 95 % interval and its margin over the random encoders' mean (paired: interval
   and permutation p, fomo_nn.evaluation.margins);
4. finetuning at the chosen rung (auto: the first rung whose probe beats the random encoders with an
   interval above 0 on every probed task, else the top rung), pretrained vs scratch on each task: each
   side's learning rate swept on fold 0's in-domain validation, then >= 3 seeds on all training cases at
   that rate, same steps, predicted and scored on the test sites; the margin with interval and p.
Results: WORKDIR/ladder.jsonl (one JSON row per finished unit of work, keyed; a rerun skips the keys it
holds), ladder.png (probe quality vs pretraining steps and wall time beside the loss) and ladder.md
(the tables). Outside sources: none (fomo_nn's own commands, as the demo runs them).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from fomo_nn import paths
from fomo_nn.demo.budget import BUDGETS, Budget
from fomo_nn.demo.pipeline import PRETRAINING_DATASET, TASKS, DemoPipeline, DemoTask
from fomo_nn.demo.stages import StageRunner
from fomo_nn.evaluation.bootstrap import resample_counts
from fomo_nn.evaluation.margins import paired_margin
from fomo_nn.evaluation.resampled import weighted_auroc, weighted_mean
from fomo_nn.utils.files import write_json_atomic, write_text_atomic

RESULTS_FILE = "ladder.jsonl"
CONFIG_FILE = "ladder_config.json"
DATA_STAGES = ("generate", "convert", "plan_pretraining", "plan_tasks")
PROBE_METRIC = {"classification": "auroc", "regression": "mae"}
FINETUNE_METRIC = {"classification": "auroc", "segmentation": "dice", "regression": "mae"}
FINETUNED_SIDES = ("scratch", "pretrained")


class StopRequested(SystemExit):
    """--stop-after: leave as a kill would, after N units of work (for the resume test)."""


# ---------------------------------------------------------------------------------------------- results file
class ResultsFile:
    """Append-only JSONL of finished units, keyed; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path, stop_after: int | None = None):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        self.stop_after = stop_after
        self.added = 0
        if self.path.is_file():
            text = self.path.read_text()
            lines = text.split("\n")
            complete = lines[:-1]  # the part after the last newline is unfinished
            for line in complete:
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row
            if lines[-1]:  # cut the torn tail so the next append starts a line
                with open(self.path, "w") as handle:
                    handle.write("".join(line + "\n" for line in complete if line.strip()))

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def add(self, row: dict) -> dict:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.rows[row["key"]] = row
        self.added += 1
        print(f"[ladder] {row['key']} done", file=sys.stderr, flush=True)
        if self.stop_after is not None and self.added >= self.stop_after:
            raise StopRequested(3)
        return row

    def of_kind(self, kind: str) -> list[dict]:
        return [row for row in self.rows.values() if row["kind"] == kind]


# ---------------------------------------------------------------------------------------------- data
class LadderWorld(DemoPipeline):
    """The demo's world and task planning, with test sets of `test_size` (sample_data config.TEST_SIZES)."""

    def __init__(self, workdir: Path, budget: Budget, seed: int, test_size: str, device: str):
        super().__init__(workdir, budget, methods=None, seed=seed, device=device)
        self.test_size = test_size

    def generate(self) -> dict:
        from dataset_conversion.sample_data.config import config_for_size, with_test_size
        from dataset_conversion.sample_data.generate import generate_sample_data

        config = with_test_size(config_for_size(self.budget.sample_size), self.test_size)
        meta = generate_sample_data(self.workdir / "sample_data", seed=self.seed, config=config,
                                    num_workers=self.budget.num_workers or 1, progress=False)
        rows = [f"{case['case_id']},{case['site']}" for task in TASKS for case in meta["test"][task.key]]
        write_text_atomic(self.workdir / "sample_data" / "test_sites.csv", "case_id,group\n" + "\n".join(rows) + "\n")
        return {"counts": meta.get("counts")}

    def data_stages(self):
        return [stage for stage in self.stages() if stage.name in DATA_STAGES]


# ---------------------------------------------------------------------------------------------- pretraining
def rung_epochs(budget: Budget, rungs: list[int]) -> dict[int, int]:
    return {rung: rung * budget.pretrain_epochs for rung in rungs}


def rung_path(folder: Path, rung: int) -> Path:
    return folder / "rungs" / f"rung_{rung}.pth"


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def recover_rung(folder: Path, epochs_of: dict[int, int]) -> int | None:
    """A kill between writing checkpoint_latest.pth at a rung and copying it leaves that rung only in the
    latest checkpoint: copy it now (returns the rung recovered, or None)."""
    from fomo_nn.checkpoints.training_state import load_checkpoint

    latest = folder / "checkpoint_latest.pth"
    if not latest.is_file():
        return None
    epoch = int(load_checkpoint(latest)["epoch"])
    for rung, epochs in epochs_of.items():
        if epochs == epoch and not rung_path(folder, rung).is_file():
            _copy_atomic(latest, rung_path(folder, rung))
            return rung
    return None


def pretrain_with_rungs(world: LadderWorld, method: str, folder: Path, epochs_of: dict[int, int],
                        probe_online: bool) -> None:
    """One run to the top rung; checkpoints every rung-1 epochs, rung files copied as they pass."""
    from fomo_nn.plans import load_plans
    from fomo_nn.training.base_trainer import TrainerOptions
    from fomo_nn.training.registry import trainer_for

    budget = world.budget
    name = paths.resolve_dataset_name(str(PRETRAINING_DATASET[0]))
    preprocessed = paths.preprocessed_root() / name
    plans = load_plans(preprocessed / "plans.json")
    cls = trainer_for(plans.task_type, method)
    probes = [str(task.dataset_id) for task in world.probed_tasks] if probe_online else []
    options = TrainerOptions(device=world.device, epochs=max(epochs_of.values()),
                             iterations_per_epoch=budget.pretrain_iterations, num_workers=budget.num_workers,
                             batch_size=budget.batch_size, learning_rate=budget.pretrain_lr, seed=world.seed,
                             checkpoint_every=budget.pretrain_epochs, continue_training=True,
                             probe_datasets=probes, probe_every=budget.pretrain_epochs)
    recover_rung(folder, epochs_of)
    trainer = cls(plans, preprocessed, folder, "all", options)
    after_epoch = trainer.after_epoch
    rung_at = {epochs: rung for rung, epochs in epochs_of.items()}

    def after_epoch_with_rungs(epoch: int) -> None:
        after_epoch(epoch)
        if epoch + 1 in rung_at:  # _end_epoch wrote checkpoint_latest.pth for this epoch just before
            _copy_atomic(folder / "checkpoint_latest.pth", rung_path(folder, rung_at[epoch + 1]))

    trainer.after_epoch = after_epoch_with_rungs
    trainer.run()


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rung_rows(method: str, folder: Path, budget: Budget, epochs_of: dict[int, int]) -> list[dict]:
    """Loss and cumulative wall time of each rung, from the run's training_log.jsonl."""
    log = read_jsonl(folder / "training_log.jsonl")
    rows = []
    for rung, epochs in epochs_of.items():
        upto = [record for record in log if record["epoch"] < epochs]
        last = upto[-1] if upto else {}
        rows.append({"key": f"pretrain/{method}/rung{rung}", "kind": "pretrain", "method": method, "rung": rung,
                     "epochs": epochs, "steps": epochs * budget.pretrain_iterations,
                     "wall_s": float(sum(record.get("epoch_time", 0.0) for record in upto)),
                     "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
                     "checkpoint": str(rung_path(folder, rung))})
    return rows


# ---------------------------------------------------------------------------------------------- probes
def _metric_values(metric: str, counts: np.ndarray, scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    if metric == "auroc":
        return weighted_auroc(counts, targets.astype(bool), scores[:, None])[:, 0]
    return weighted_mean(counts, np.abs(scores - targets)[:, None])[:, 0]


def metric_with_interval(metric: str, scores: np.ndarray, targets: np.ndarray, resamples: int, seed: int) -> dict:
    """The metric on all cases and its bootstrap 95 % interval (stratified by class for AUROC)."""
    rng = np.random.default_rng(seed)
    value = float(_metric_values(metric, np.ones((1, scores.size)), scores, targets)[0])
    if metric == "auroc" and len(np.unique(targets)) < 2:
        return {"value": None, "low": None, "high": None, "cases": int(scores.size)}
    counts = resample_counts(rng, resamples, scores.size, targets.astype(int) if metric == "auroc" else None)
    low, high = np.nanpercentile(_metric_values(metric, counts, scores, targets), [2.5, 97.5])
    return {"value": value, "low": float(low), "high": float(high), "cases": int(scores.size)}


def probe_encoders(world: LadderWorld, task: DemoTask, encoders: dict[str, str], store: Path) -> dict[str, dict]:
    """Linear probes of each encoder: in-domain CV scores of the training cases, test-site scores; the
    per-case scores go to store/<task>/<name>.npz (the rows read them back for paired margins)."""
    from fomo_nn.plans import load_plans
    from fomo_nn.probing.encoders import load_frozen_encoder
    from fomo_nn.probing.linear_probes import cross_validated_scores, fit_probe, probe_scores
    from fomo_nn.probing.probe import (extract_all, feature_modes_for, metrics_of, preprocessed_cases,
                                       raw_test_cases, read_groups)

    name = paths.resolve_dataset_name(str(task.dataset_id))
    plans = load_plans(paths.preprocessed_root() / name)
    train = preprocessed_cases(paths.preprocessed_root() / name / plans.configuration, plans)
    test = raw_test_cases(paths.raw_root() / name, plans)
    groups = read_groups(world.test_sites)
    sites = np.array([groups.get(case_id, "unknown") for case_id in test.case_ids])
    frozen = {label: load_frozen_encoder(source, plans) for label, source in encoders.items()}
    modes = {label: feature_modes_for(f, plans.num_input_channels, ["per_sequence"])[:1] for label, f in frozen.items()}
    device = "cuda" if world.device == "cuda" else "cpu"
    train_features = extract_all(frozen, modes, "all_stages", train, device=device)
    test_features = extract_all(frozen, modes, "all_stages", test, device=device)
    results = {}
    for label in encoders:
        key = (label, modes[label][0])
        cv = cross_validated_scores(plans.task_type, "linear", train_features[key], train.targets, world.seed)
        estimator = fit_probe(plans.task_type, "linear", train_features[key], train.targets, world.seed)
        scores = probe_scores(estimator, plans.task_type, test_features[key])
        path = store / task.key / f"{label.replace(':', '_')}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial.npz")
        np.savez(partial, scores=scores, targets=test.targets, sites=sites, case_ids=np.array(test.case_ids),
                 cv_scores=cv, cv_targets=train.targets)
        os.replace(partial, path)
        results[label] = {"scores_file": str(path), "cv": metrics_of(plans.task_type, train.targets, cv),
                          "test": metrics_of(plans.task_type, test.targets, scores)}
    return results


def probe_row(key: str, base: dict, scores_file: str, metric: str, random_files: list[str], resamples: int,
              seed: int) -> dict:
    """Overall and per-site metric with interval; for trained encoders the margin over the random encoders."""
    data = np.load(scores_file)
    scores, targets, sites = data["scores"], data["targets"], data["sites"]
    randoms = [np.load(f) for f in random_files]
    row = {"key": key, **base, "metric": metric, "scores_file": scores_file,
           "test": metric_with_interval(metric, scores, targets, resamples, seed), "sites": {}}
    selections = {"all": np.ones(scores.size, bool), **{str(s): sites == s for s in sorted(set(sites.tolist()))}}
    for site, chosen in selections.items():
        if site != "all":
            row["sites"][site] = metric_with_interval(metric, scores[chosen], targets[chosen], resamples, seed)
        if randoms and (metric != "auroc" or len(np.unique(targets[chosen])) == 2):
            random_scores = np.stack([r["scores"][chosen] for r in randoms], axis=1)
            margin = paired_margin(metric, scores[chosen], random_scores, targets[chosen], num_resamples=resamples,
                                   num_permutations=resamples, seed=seed).to_json()
            row.setdefault("vs_random", {})[site] = margin
    return row


def random_encoder_names(count: int) -> list[str]:
    return [f"random:{seed}" for seed in range(count)]


def run_probes(world: LadderWorld, results: ResultsFile, encoders: dict[str, tuple[str, dict]], args,
               store: Path) -> None:
    """Probe every encoder (name -> (source, row fields)) on every probed task, skipping finished rows."""
    for task in world.probed_tasks:
        if task.number not in args.tasks:
            continue
        metric = PROBE_METRIC[task.family]
        todo = {name: entry for name, entry in encoders.items() if f"probe/{task.key}/{name}" not in results}
        if not todo:
            continue
        probed = probe_encoders(world, task, {name: source for name, (source, _) in todo.items()}, store)
        random_files = [] if all(name.startswith("random") for name in todo) else [
            results.get(f"probe/{task.key}/{name}")["scores_file"] for name in random_encoder_names(args.random_encoders)]
        for name, (_, base) in todo.items():
            row = probe_row(f"probe/{task.key}/{name}", {"kind": "probe", "task": task.key, "encoder": name, **base,
                                                         "cv": probed[name]["cv"]},
                            probed[name]["scores_file"], metric, random_files, args.bootstrap, args.seed)
            results.add(row)


# ---------------------------------------------------------------------------------------------- rung choice
def choose_rung(results: ResultsFile, method: str, rungs: list[int], tasks: list[str]) -> tuple[int, str]:
    """The first rung whose probe beats the random encoders' mean with an interval above 0 on every probed
    task (overall test sites), else the top rung."""
    for rung in rungs:
        rows = [results.get(f"probe/{task}/{method}@{rung}") for task in tasks]
        if rows and all(row and row.get("vs_random", {}).get("all", {}).get("low", -1) > 0 for row in rows):
            return rung, "first rung whose probe interval over the random encoders excludes 0 on every probed task"
    return rungs[-1], "no rung separated from the random encoders: the top rung"


# ---------------------------------------------------------------------------------------------- finetuning
def finetune_method(budget: Budget, task: DemoTask, choice: str) -> str:
    return budget.family_methods[task.family] if choice == "family" else choice


def train_side(world: LadderWorld, task: DemoTask, side: str, fold: str, seed: int, lr: float, pretrained: str | None,
               output: Path) -> Path:
    from fomo_nn.training.run import train

    budget = world.budget
    scratch = side == "scratch"
    recipe = dict((budget.scratch_recipe if scratch else budget.pretrained_recipe)[task.family])
    recipe["learning_rate"] = lr
    return train(str(task.dataset_id), fold, plans_path=str(world.scratch_plans_path(task)) if scratch else None,
                 output=str(output), device=world.device, epochs=budget.finetune_epochs[task.family],
                 iterations_per_epoch=budget.finetune_iterations, num_workers=budget.num_workers,
                 batch_size=budget.batch_size, seed=seed, continue_training=True, training=recipe,
                 pretrained=None if scratch else pretrained)


def final_validation_metric(folder: Path) -> tuple[float | None, str | None]:
    records = [r for r in read_jsonl(folder / "training_log.jsonl") if r.get("val_metric") is not None]
    return (records[-1]["val_metric"], records[-1]["val_metric_name"]) if records else (None, None)


def sweep_choice(results: ResultsFile, task: DemoTask, side: str, grid: list[float], higher_is_better: bool) -> float:
    scored = [(row["val_metric"], row["lr"]) for lr in grid
              if (row := results.get(f"sweep/{task.key}/{side}/lr{lr:g}")) and row["val_metric"] is not None]
    if not scored:
        return grid[len(grid) // 2]
    best = (max if higher_is_better else min)(scored, key=lambda item: item[0])
    return best[1]


def predict_and_score(world: LadderWorld, task: DemoTask, model_folder: Path, out: Path) -> Path:
    from fomo_nn.cli.evaluate import main as evaluate
    from fomo_nn.cli.predict import main as predict

    predictions = out / "predictions"
    summary = out / "summary.json"
    code = predict(["-i", str(world.raw(task.folder) / "imagesTs"), "-o", str(predictions), "-m", str(model_folder),
                    "--no-tta", "--device", world.device, "--no-progress"])
    if code != 0:
        raise RuntimeError(f"prediction of {task.key} with {model_folder} failed (exit status {code})")
    code = evaluate(["--task-type", task.family, "-r", str(world.raw(task.folder) / "labelsTs"), "-p",
                     str(predictions), "-o", str(summary), "--quiet"])
    if code != 0:
        raise RuntimeError(f"evaluation of {task.key} with {model_folder} failed (exit status {code})")
    return summary


def per_case_outputs(summary: Path, family: str) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    cases = sorted(json.loads(summary.read_text())["per_case"], key=lambda c: c["case_id"])
    ids = [c["case_id"] for c in cases]
    if family == "classification":
        return ids, np.array([c["probability"] for c in cases], float), np.array([c["label"] for c in cases], float)
    if family == "regression":
        return ids, np.array([c["prediction"] for c in cases], float), np.array([c["target"] for c in cases], float)
    return ids, np.array([np.nan if c["dice"] is None else c["dice"] for c in cases], float), None


def run_finetuning(world: LadderWorld, results: ResultsFile, args, pretraining_root: Path) -> None:
    from fomo_nn.plans import load_plans
    from fomo_nn.training.registry import trainer_for

    budget = world.budget
    models = world.workdir / "ladder_models"
    for task in TASKS:
        if task.number not in args.tasks:
            continue
        method = finetune_method(budget, task, args.finetune_method)
        choice = results.get(f"rung/{method}")
        pretrained = str(rung_path(pretraining_root / method, choice["rung"]))
        higher = trainer_for(load_plans(world.preprocessed(task.folder)).task_type, None).higher_is_better
        for side in FINETUNED_SIDES:
            for lr in args.lr_grid:
                key = f"sweep/{task.key}/{side}/lr{lr:g}"
                if key in results:
                    continue
                folder = models / task.key / side / f"sweep_lr{lr:g}" / "fold_0"
                started = time.time()
                train_side(world, task, side, "0", args.seed, lr, pretrained, folder)
                value, name = final_validation_metric(folder)
                results.add({"key": key, "kind": "sweep", "task": task.key, "side": side, "lr": lr,
                             "method": method if side == "pretrained" else None, "val_metric": value,
                             "val_metric_name": name, "seconds": time.time() - started})
            lr = sweep_choice(results, task, side, args.lr_grid, higher)
            for seed in range(args.finetune_seeds):
                key = f"finetune/{task.key}/{side}/seed{seed}"
                if key in results:
                    continue
                model_folder = models / task.key / side / f"seed{seed}"
                started = time.time()
                train_side(world, task, side, "all", seed, lr, pretrained, model_folder / "fold_all")
                trained = time.time() - started
                summary = predict_and_score(world, task, model_folder, world.workdir / "ladder_scores" / task.key /
                                            side / f"seed{seed}")
                results.add({"key": key, "kind": "finetune", "task": task.key, "family": task.family, "side": side,
                             "seed": seed, "lr": lr, "method": method if side == "pretrained" else None,
                             "rung": choice["rung"] if side == "pretrained" else None, "summary": str(summary),
                             "metrics": json.loads(summary.read_text())["metrics"], "train_seconds": trained})
        key = f"margin/{task.key}"
        if key not in results:
            results.add(margin_row(key, task, results, args))


def margin_row(key: str, task: DemoTask, results: ResultsFile, args) -> dict:
    metric = FINETUNE_METRIC[task.family]
    outputs, reference, ids = {}, None, None
    for side in FINETUNED_SIDES:
        columns = []
        for seed in range(args.finetune_seeds):
            case_ids, values, reference = per_case_outputs(Path(results.get(f"finetune/{task.key}/{side}/seed{seed}")
                                                                ["summary"]), task.family)
            if ids is not None and case_ids != ids:
                raise RuntimeError(f"{task.key}: the sides were scored on different cases")
            ids = case_ids
            columns.append(values)
        outputs[side] = np.stack(columns, axis=1)
    row = {"key": key, "kind": "margin", "task": task.key, "metric": metric}
    pretrained, scratch = outputs["pretrained"], outputs["scratch"]
    if metric == "dice":  # a case with no Dice (empty pair excluded) is left out on both sides
        scored = ~np.isnan(pretrained).any(axis=1) & ~np.isnan(scratch).any(axis=1)
        pretrained, scratch = pretrained[scored], scratch[scored]
    row["all"] = paired_margin(metric, pretrained, scratch, reference if metric != "dice" else None,
                               num_resamples=args.bootstrap, num_permutations=args.bootstrap, seed=args.seed).to_json()
    return row


# ---------------------------------------------------------------------------------------------- plot and tables
def write_plot(results: ResultsFile, path: Path, pretraining_root: Path) -> Path | None:
    from matplotlib.figure import Figure

    probes = results.of_kind("probe")
    tasks = sorted({row["task"] for row in probes})
    methods = sorted({row["method"] for row in results.of_kind("pretrain")})
    if not methods:
        return None
    figure = Figure(figsize=(5 * (len(tasks) + 1), 8))
    axes = figure.subplots(2, len(tasks) + 1, squeeze=False)
    pretrain = {(r["method"], r["rung"]): r for r in results.of_kind("pretrain")}
    for column, task in enumerate(tasks):
        rows = [r for r in probes if r["task"] == task]
        for axis_row, x_name in enumerate(("steps", "wall_s")):
            axis = axes[axis_row][column]
            for row in rows:
                if row.get("random"):
                    axis.axhline(row["test"]["value"], color="grey", lw=0.8, ls="--")
            for method in methods:
                points = sorted((pretrain[(method, r["rung"])][x_name], r["test"]) for r in rows
                                if r.get("method") == method and (method, r["rung"]) in pretrain)
                if points:
                    x = [p[0] for p in points]
                    y = np.array([p[1]["value"] for p in points], float)
                    err = np.array([[p[1]["value"] - p[1]["low"], p[1]["high"] - p[1]["value"]] for p in points]).T
                    axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
            metric = rows[0]["metric"] if rows else ""
            axis.set_xscale("log", base=2)
            axis.set_xlabel("pretraining steps" if x_name == "steps" else "pretraining wall time (s)")
            axis.set_ylabel(f"{task} probe test {metric}")
            axis.set_title(f"{task}: test sites (grey: random encoders)")
            axis.legend(fontsize=8)
    for axis_row, loss in enumerate(("train_loss", "val_loss")):
        axis = axes[axis_row][-1]
        for method in methods:
            log = read_jsonl(pretraining_root / method / "training_log.jsonl")
            steps_per_epoch = next(r["steps"] / r["epochs"] for r in results.of_kind("pretrain") if r["method"] == method)
            points = [((r["epoch"] + 1) * steps_per_epoch, r[loss]) for r in log if r.get(loss) is not None]
            if points:
                axis.plot(*zip(*points), label=method)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("pretraining steps")
        axis.set_ylabel(loss)
        axis.set_title(f"pretraining {loss}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.png")
    figure.savefig(partial, dpi=90)
    os.replace(partial, path)
    return path


def _interval(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value", entry.get("margin")) is None:
        return "–"
    value = entry.get("value", entry.get("margin"))
    return f"{value:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def write_tables(results: ResultsFile, path: Path) -> Path:
    lines = ["# Compute ladder results", "", "## Pretraining rungs", "",
             "| method | rung | steps | wall (s) | train loss | val loss |", "|---|---|---|---|---|---|"]
    for row in sorted(results.of_kind("pretrain"), key=lambda r: (r["method"], r["rung"])):
        fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {row['method']} | {row['rung']}x | {row['steps']} | {row['wall_s']:.0f} | "
                     f"{fmt(row['train_loss'])} | {fmt(row['val_loss'])} |")
    lines += ["", "## Out-of-domain probes (test sites; value [95 % interval]; margin over the random encoders' "
                  "mean, interval, permutation p)", ""]
    for task in sorted({row["task"] for row in results.of_kind("probe")}):
        rows = sorted((r for r in results.of_kind("probe") if r["task"] == task),
                      key=lambda r: (not r.get("random"), r.get("method") or "", r.get("rung") or 0, r["encoder"]))
        sites = sorted({site for r in rows for site in r["sites"]})
        lines += [f"### {task} ({rows[0]['metric']})", "",
                  "| encoder | cv | test | margin vs random (p) | " + " | ".join(sites) + " |",
                  "|---" * (4 + len(sites)) + "|"]
        for r in rows:
            cv = r["cv"].get(r["metric"])
            margin = r.get("vs_random", {}).get("all")
            margin_text = "–" if not margin else f"{_interval(margin)} (p {margin['p_value']:.3g})"
            lines.append(f"| {r['encoder']} | {'–' if cv is None else f'{cv:.3f}'} | {_interval(r['test'])} | "
                         f"{margin_text} | " + " | ".join(_interval(r["sites"].get(s)) for s in sites) + " |")
        lines.append("")
    choices = results.of_kind("rung_choice")
    if choices:
        lines += ["## Rung chosen for finetuning", ""] + [f"- {c['method']}: {c['rung']}x ({c['reason']})"
                                                         for c in choices] + [""]
    margins = results.of_kind("margin")
    if margins:
        lines += ["## Finetuning, pretrained vs scratch (test sites; seed means; margin > 0: pretraining better)", "",
                  "| task | metric | scratch | pretrained | margin [95 %] | p | seeds | cases |", "|---" * 8 + "|"]
        for row in sorted(margins, key=lambda r: r["task"]):
            m = row["all"]
            lines.append(f"| {row['task']} | {row['metric']} | {m['scratch']:.3f} | {m['pretrained']:.3f} | "
                         f"{_interval(m)} | {m['p_value']:.3g} | {m['num_seeds']} | {m['num_cases']} |")
        sweeps = sorted(results.of_kind("sweep"), key=lambda r: (r["task"], r["side"], r["lr"]))
        lines += ["", "Learning-rate sweep (fold 0, in-domain validation): " + "; ".join(
            f"{r['task']} {r['side']} {r['lr']:g}: {r['val_metric'] if r['val_metric'] is None else round(r['val_metric'], 4)}"
            for r in sweeps), ""]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="resume a run in WORKDIR (finished units are skipped, trainings resume)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small", help="the demo budget the ladder "
                        "multiplies (rung 1 = its pretraining steps; its finetuning steps and recipes)")
    parser.add_argument("--methods", nargs="+", default=["contrastive", "mae", "hybrid"])
    parser.add_argument("--rungs", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--random-encoders", type=int, default=3)
    parser.add_argument("--finetune-rung", default="auto", help="auto or a rung number")
    parser.add_argument("--finetune-method", default="family",
                        help="family (each task its budget's family method) or one method for every task")
    parser.add_argument("--finetune-seeds", type=int, default=3)
    parser.add_argument("--lr-grid", nargs="+", type=float, default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--skip-finetune", action="store_true", help="pretraining and probes only")
    parser.add_argument("--tasks", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--test-size", choices=("fomo", "preset"), default="fomo")
    parser.add_argument("--online-probe", action="store_true",
                        help="also log the in-domain online probe every rung-1 epochs (training_log plot)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples and permutations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: leave after N units, as a kill
    return parser


def ladder_config(args) -> dict:
    keep = ("budget", "methods", "rungs", "random_encoders", "finetune_rung", "finetune_method", "finetune_seeds",
            "lr_grid", "tasks", "test_size", "online_probe", "bootstrap", "seed")
    return {name: getattr(args, name) for name in keep}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if sorted(set(args.rungs)) != args.rungs or args.rungs[0] < 1:
        print("error: --rungs must be increasing positive multiples of the budget's pretraining", file=sys.stderr)
        return 2
    if args.finetune_rung != "auto" and (not args.finetune_rung.isdigit() or int(args.finetune_rung) not in args.rungs):
        print(f"error: --finetune-rung must be auto or one of --rungs ({args.rungs}), got {args.finetune_rung}",
              file=sys.stderr)
        return 2
    if args.random_encoders < 1 or args.finetune_seeds < 1:
        print("error: --random-encoders and --finetune-seeds must be at least 1", file=sys.stderr)
        return 2
    workdir = Path(args.workdir).resolve()
    config_path = workdir / CONFIG_FILE
    config = json.loads(json.dumps(ladder_config(args)))
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        if not args.resume:
            print(f"error: {workdir} holds a ladder run; resume it with --continue or use another folder",
                  file=sys.stderr)
            return 2
        if previous != config:
            print(f"error: {workdir} holds a ladder run with another configuration ({previous})", file=sys.stderr)
            return 2
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_path, config)
    budget = BUDGETS[args.budget]
    world = LadderWorld(workdir, budget, args.seed, args.test_size, args.device)
    results = ResultsFile(workdir / RESULTS_FILE, args.stop_after)
    try:
        run_ladder(world, results, args)
    except StopRequested:
        print("[ladder] stopped as asked (--stop-after); resume with --continue", file=sys.stderr)
        return 3
    print(workdir / "ladder.md")
    return 0


def run_ladder(world: LadderWorld, results: ResultsFile, args) -> None:
    budget, workdir = world.budget, world.workdir
    StageRunner(workdir, world.data_stages(), {"ladder": ladder_config(args)}).run()
    pretraining_root = workdir / "ladder_pretraining"
    store = workdir / "ladder_probe_scores"
    epochs_of = rung_epochs(budget, args.rungs)
    randoms = {name: (name, {"random": True, "method": None, "rung": None})
               for name in random_encoder_names(args.random_encoders)}
    run_probes(world, results, randoms, args, store)
    for method in args.methods:
        folder = pretraining_root / method
        if not all(f"pretrain/{method}/rung{rung}" in results for rung in args.rungs):
            pretrain_with_rungs(world, method, folder, epochs_of, args.online_probe)
            for row in rung_rows(method, folder, budget, epochs_of):
                if row["key"] not in results:
                    results.add(row)
        encoders = {f"{method}@{rung}": (str(rung_path(folder, rung)), {"random": False, "method": method,
                                                                         "rung": rung}) for rung in args.rungs}
        run_probes(world, results, encoders, args, store)
        write_plot(results, workdir / "ladder.png", pretraining_root)
        write_tables(results, workdir / "ladder.md")
    probed = [task.key for task in world.probed_tasks if task.number in args.tasks]
    for method in args.methods:
        if f"rung/{method}" not in results:
            if args.finetune_rung == "auto":
                rung, reason = choose_rung(results, method, args.rungs, probed)
            else:
                rung, reason = int(args.finetune_rung), "given (--finetune-rung)"
            results.add({"key": f"rung/{method}", "kind": "rung_choice", "method": method, "rung": rung,
                         "reason": reason})
    if not args.skip_finetune:
        needed = {finetune_method(budget, task, args.finetune_method) for task in TASKS if task.number in args.tasks}
        missing = needed - set(args.methods)
        if missing:
            raise SystemExit(f"error: finetuning needs pretraining of {', '.join(sorted(missing))}: add it to "
                             "--methods or pass --finetune-method")
        run_finetuning(world, results, args, pretraining_root)
    write_plot(results, workdir / "ladder.png", pretraining_root)
    write_tables(results, workdir / "ladder.md")


if __name__ == "__main__":
    sys.exit(main())
