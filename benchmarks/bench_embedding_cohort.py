"""fomo_nn_embed's pooling on the sample world's FOMO26 probing cohort (3 classes a T1 shows; age and sex
drawn independently of the class): the organisers' centre crop vs whole-brain windows, bottleneck vs every
stage vs every stage's average and maximum; random encoders; scored by the FOMO26 protocol (fomo_nn_probe
--protocol fomo26 with the split scaled to the cohort) and by fomo_nn's own linear probe (cross-validated
AUROC of control vs the two diseases).

    python benchmarks/bench_embedding_cohort.py --world /tmp/embed_cohort --subjects 90 --seeds 0 1
"""
import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_embedding_pooling import pooled_variants  # noqa: E402
from builders import simple_plans  # noqa: E402

from dataset_conversion.sample_data.config import config_for_size  # noqa: E402
from dataset_conversion.sample_data.probing_cohort import plan_cohort, run_cohort_subject, write_subjects_csv  # noqa
from dataset_conversion.sample_data.sites import build_sites  # noqa: E402
from dataset_conversion.sample_data.tissues import AnatomyGrid  # noqa: E402
from fomo_nn.evaluation.metrics import auroc  # noqa: E402
from fomo_nn.inference.case_loading import read_case  # noqa: E402
from fomo_nn.plans.records import NetworkPlan  # noqa: E402
from fomo_nn.preprocessing.case_preprocessing import preprocess_loaded  # noqa: E402
from fomo_nn.probing.embedding import load_embedder  # noqa: E402
from fomo_nn.probing.embedding_run import save_vector  # noqa: E402
from fomo_nn.probing.fomo26.fairness import parse_bins  # noqa: E402
from fomo_nn.probing.fomo26.protocol import Fomo26ProbeRequest, run_fomo26_probe  # noqa: E402
from fomo_nn.probing.linear_probes import cross_validated_scores  # noqa: E402

NETWORK = NetworkPlan(features_per_stage=[8, 16, 32, 64], kernel_sizes=[[3, 3, 3]] * 4,
                      strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, n_conv_per_stage=[2] * 4, n_conv_per_stage_decoder=[1] * 3)


def cohort(world: Path, subjects: int, seed: int = 0) -> Path:
    csv_path = world / "fomo26" / "probing" / "subjects.csv"
    if csv_path.is_file():
        return csv_path
    config = config_for_size("small")
    grid = AnatomyGrid(tuple(config.grid_shape), float(config.voxel_mm))
    sites = build_sites(seed)
    plans = plan_cohort(subjects, seed, sites["finetune"] + sites["test"])
    records = [run_cohort_subject(plan, grid, seed, world) for plan in plans]
    return write_subjects_csv(world, records)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="/tmp/embed_cohort")
    parser.add_argument("--subjects", type=int, default=90)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--patch", type=int, default=32)
    args = parser.parse_args()
    start = time.time()
    csv_path = cohort(Path(args.world), args.subjects)
    rows = list(csv.DictReader(open(csv_path)))
    print(f"cohort: {len(rows)} subjects in {time.time() - start:.0f} s")
    plans = simple_plans(task_type="pretraining", labels=None, target_spacing=(args.spacing,) * 3)
    plans.network, plans.patch_size = NETWORK, [args.patch] * 3
    embedder = load_embedder("random:0", plans)
    volumes = [preprocess_loaded(read_case([r["nifti_path"]]).loaded, embedder.preprocessing)[0] for r in rows]
    print(f"preprocessed shape e.g. {volumes[0].shape}")
    per_class = len(rows) // 3
    counts = (round(per_class * 0.4), round(per_class * 0.1), per_class - round(per_class * 0.4) - round(per_class * 0.1))
    control = np.array([r["selected_cohort"] == "control" for r in rows], dtype=int)
    results = {}
    for seed in args.seeds:
        embedder = load_embedder(f"random:{seed}", plans)
        per_subject = [pooled_variants(embedder, v, embedder.frozen.stage_channels) for v in volumes]
        for key in per_subject[0]:
            features = np.stack([s[key] for s in per_subject])
            cv = auroc(control, cross_validated_scores("classification", "linear", features, control, seed=0))
            with tempfile.TemporaryDirectory() as folder:
                for r, s in zip(rows, per_subject):
                    save_vector(Path(folder) / f"{r['ptid']}.npy", s[key])
                report = run_fomo26_probe(Fomo26ProbeRequest(
                    embeddings=folder, subjects_csv=str(csv_path), output=str(Path(folder) / "report"),
                    feature1_bins=parse_bins("55:0,70:1,1000:2"), counts=counts))
            results.setdefault(key, []).append((report["overall"]["ovr_auroc"], report["overall"]["ovr_f1"],
                                                report["fairness_score"]["ovr_auroc"]["score"], cv))
    print(f"split per class {counts}; random encoders {args.seeds}; spacing {args.spacing} mm, patch {args.patch}")
    print("| windows | stages | fomo26 test OvR AUROC | OvR F1 | fairness (AUROC) | fomo_nn CV AUROC control vs rest |")
    print("|---|---|---|---|---|---|")
    for (windows, stages), values in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        mean = np.mean(np.array(values, dtype=float), axis=0)
        print(f"| {windows} | {stages} | " + " | ".join(f"{m:.3f}" for m in mean) + " |")
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
