"""The demo's representation track (FOMO26 tasks 6 and 7): the sample world's probing cohort embedded by every
pretrained encoder and by random encoders (fomo_nn_embed's code path), probed with the organisers' protocol
(fomo_nn_probe --protocol fomo26) and scored for fairness across age bins and sex.

The cohort (3 classes a T1 shows, age and sex drawn independently of the class; dataset_conversion's
probing_cohort) is generated beside the sample data when the demo generates its data and has none. Its classes
are far smaller than the 200 subjects per class fomo-lp's counts assume, so the split keeps the protocol's
40/10/50 proportions per class. Random encoders use the pretraining corpus's plans (its topology and
preprocessing), so they differ from the pretrained ones only in their weights.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from fomo_nn.plans import load_plans
from fomo_nn.probing.embedding import load_embedder
from fomo_nn.probing.embedding_run import run_embedding
from fomo_nn.probing.fomo26.fairness import parse_bins
from fomo_nn.probing.fomo26.protocol import Fomo26ProbeRequest, run_fomo26_probe
from fomo_nn.utils.files import write_json_atomic

AGE_BINS = "55:0,70:1,1000:2"  # the cohort's ages lie in 40-85 years: three bins of about equal size


def split_counts(csv_path: Path) -> tuple[int, int, int]:
    """fomo-lp's 40/10/50 per class, for the smallest class of this cohort."""
    with open(csv_path, newline="") as handle:
        smallest = min(Counter(row["selected_cohort"] for row in csv.DictReader(handle)).values())
    train, val = round(0.4 * smallest), max(1, round(0.1 * smallest))
    return train, val, smallest - train - val


def run_representation_track(pipeline) -> dict:
    csv_path = pipeline.generate_probing_cohort()
    if csv_path is None:
        return {"skipped": "no probing cohort: the demo runs on data it did not generate"}
    plans = load_plans(pipeline.preprocessed(pipeline.pretraining_folder))
    encoders = {f"random:{seed}": f"random:{seed}" for seed in range(pipeline.budget.random_probe_seeds)}
    encoders.update({f"pretrained_{m}": str(pipeline.pretraining_checkpoint(m)) for m in pipeline.methods})
    device = "cuda" if pipeline.device == "cuda" else "cpu"
    counts = split_counts(csv_path)
    results = {}
    for name, source in encoders.items():
        folder = pipeline.workdir / "embeddings" / name.replace(":", "_")
        embedder = load_embedder(source, plans if source.startswith("random") else None)
        outcome = run_embedding(embedder, csv_path, folder, device)
        if outcome.failed:
            raise RuntimeError(f"embedding the cohort with {name} failed for {len(outcome.failed)} scan(s): "
                               f"{outcome.failed[0]}")
        report = run_fomo26_probe(Fomo26ProbeRequest(
            embeddings=str(folder), subjects_csv=str(csv_path), output=str(representation_dir(pipeline) / name),
            feature1_bins=parse_bins(AGE_BINS), counts=counts))
        results[name] = {key: report[key] for key in ("feature_dim", "best_lr", "best_val_auroc", "overall",
                                                      "fairness_score", "n_train", "n_val", "n_test")}
    summary = {"cohort": str(csv_path), "split_counts": counts, "age_bins": AGE_BINS, "encoders": results}
    write_json_atomic(representation_dir(pipeline) / "summary.json", summary)
    return {"summary": str(representation_dir(pipeline) / "summary.json")}


def representation_dir(pipeline) -> Path:
    return pipeline.workdir / "results" / "representation"


def representation_section(pipeline) -> list[str]:
    """REPORT.md: one row per encoder, test one-vs-rest AUROC/F1 and the fairness scores."""
    path = representation_dir(pipeline) / "summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    number = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    train, val, test = summary["split_counts"]
    lines = ["", "## Representation track (FOMO26 tasks 6-7)", "",
             f"The probing cohort (control, small-vessel disease, ventriculomegaly; age and sex independent of the "
             f"class) embedded by each encoder (fomo_nn_embed: whole-brain sliding window, every stage's average and maximum), "
             f"then the organisers' linear probe (fomo_nn_probe --protocol fomo26: 13 learning rates, 20 epochs, "
             f"chosen by validation AUROC; {train}/{val}/{test} subjects per class) and their fairness score "
             f"(1 - the largest gap between age bins {summary['age_bins']} and between sexes, averaged).", "",
             "| encoder | dim | best lr | test OvR AUROC | test OvR F1 | fairness (AUROC) | fairness (F1) |",
             "|---|---|---|---|---|---|---|"]
    for name, row in summary["encoders"].items():
        lines.append(f"| {name} | {row['feature_dim']} | {row['best_lr']:g} | {number(row['overall']['ovr_auroc'])} | "
                     f"{number(row['overall']['ovr_f1'])} | {number(row['fairness_score']['ovr_auroc']['score'])} | "
                     f"{number(row['fairness_score']['ovr_f1']['score'])} |")
    return lines
