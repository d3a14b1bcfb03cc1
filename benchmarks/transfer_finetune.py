"""Finetune one variant on a transfer world, predict its test sites, score them: one JSON line.

    python benchmarks/transfer_finetune.py ROOT DATASET NAME [--pretrained CKPT] [--lr 1e-3] [--epochs 12]
        [--iters 16] [--plans PLANS.json | --fusion stem_expansion] [--set KEY=VALUE ...] [--train FIELD=VALUE ...]
        [--seed 0]

ROOT is a folder made by benchmarks/transfer_world.py. The line holds the test metrics (overall and, for
classification and regression, per test site from ROOT/sites.csv), the fit on the training cases
(fold all validates on them) and the training-loss curve. `--fusion` trains on the dataset's plans with
another input handling (the demo's from-scratch baseline uses stem_expansion), written to
ROOT/plans/DATASET_FUSION.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("dataset")
    parser.add_argument("name")
    parser.add_argument("--pretrained")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iters", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plans", help="plans.json variant (e.g. another fusion); default the dataset's")
    parser.add_argument("--fusion", help="the dataset's plans with this fusion (written under ROOT/plans)")
    parser.add_argument("--set", action="append", default=[], help="method setting KEY=VALUE")
    parser.add_argument("--train", action="append", default=[], help="TrainingPlan field KEY=VALUE")
    args = parser.parse_args()
    root = args.root
    os.environ.update(fomo_nn_raw=str(root / "raw"), fomo_nn_preprocessed=str(root / "pre"),
                      fomo_nn_results=str(root / "res"))
    from fomo_nn import paths
    from fomo_nn.cli.evaluate import main as evaluate
    from fomo_nn.cli.predict import main as predict
    from fomo_nn.training.run import train

    name = paths.resolve_dataset_name(args.dataset)
    family = json.loads((root / "pre" / name / "plans.json").read_text())["task_type"]
    model = root / "res" / name / args.name
    plans_path = args.plans
    if args.fusion:
        from fomo_nn.planning.planner import with_fusion
        from fomo_nn.plans import load_plans, save_plans

        plans_path = str(root / "plans" / f"{name}_{args.fusion}.json")
        (root / "plans").mkdir(exist_ok=True)
        save_plans(with_fusion(load_plans(root / "pre" / name), args.fusion), plans_path)
    started = time.time()
    train(args.dataset, "all", plans_path=plans_path, output=str(model / "fold_all"), epochs=args.epochs,
          iterations_per_epoch=args.iters, learning_rate=args.lr, seed=args.seed, num_workers=args.workers,
          pretrained=args.pretrained, method={k: _value(v) for k, v in (s.split("=", 1) for s in args.set)},
          training={k: _value(v) for k, v in (s.split("=", 1) for s in args.train)}, progress_bar=False)
    seconds = time.time() - started
    predictions = root / "pred" / name / args.name
    predict(["-i", str(root / "raw" / name / "imagesTs"), "-o", str(predictions), "-m", str(model), "--no-tta",
             "--no-progress", "--overwrite"])
    evaluate(["--task-type", family, "-r", str(root / "raw" / name / "labelsTs"), "-p", str(predictions),
              "-o", str(predictions / "summary.json"), "--quiet"])
    scored = json.loads((predictions / "summary.json").read_text())
    test = scored["metrics"]
    fit = json.loads((model / "fold_all" / "validation" / "summary.json").read_text())["metrics"]
    log = [json.loads(line) for line in (model / "fold_all" / "training_log.jsonl").read_text().splitlines()]
    print("RESULT", json.dumps({"name": args.name, "dataset": name, "train_s": round(seconds),
                                "test": {k: round(v, 4) for k, v in test.items() if isinstance(v, float)},
                                "test_per_site": per_site(scored, root / "sites.csv"),
                                "fit": {k: round(v, 4) for k, v in fit.items() if isinstance(v, float)},
                                "loss": [round(r["train_loss"], 3) for r in log]}))


def per_site(scored: dict, sites_csv: Path) -> dict:
    """AUROC (classification) or MAE (regression) of the test cases of each site; {} for segmentation."""
    import numpy as np

    from fomo_nn.evaluation.metrics import auroc

    if scored["task"] not in ("classification", "regression") or not sites_csv.is_file():
        return {}
    site_of = dict(line.split(",") for line in sites_csv.read_text().split()[1:])
    by_site: dict[str, list[dict]] = {}
    for record in scored["per_case"]:
        if not record.get("missing") and record["case_id"] in site_of:
            by_site.setdefault(site_of[record["case_id"]], []).append(record)
    result = {}
    for site, records in sorted(by_site.items()):
        if scored["task"] == "classification":
            labels = np.array([r["label"] for r in records]) == 1
            both = 0 < labels.sum() < len(labels)
            value = auroc(labels, np.array([r["probability"] for r in records])) if both else None
        else:
            value = float(np.mean([abs(r["prediction"] - r["target"]) for r in records]))
        result[site] = None if value is None else round(float(value), 4)
    return result


if __name__ == "__main__":
    main()
