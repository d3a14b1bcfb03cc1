"""Does fomo_nn_embed's pooling help a linear probe? Centre crop (the organisers' template) vs whole-brain
windows, bottleneck vs every stage vs every stage's average and maximum, on synthetic scans whose class is
an off-centre bright lesion; random encoders (3 seeds) and fomo_nn's own linear probe (cross-validated AUROC).

    python benchmarks/bench_embedding_pooling.py --cases 48 --seeds 0 1 2
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from builders import brain_image, ellipsoid, simple_plans  # noqa: E402

from fomo_nn.evaluation.metrics import auroc  # noqa: E402
from fomo_nn.plans.records import NetworkPlan  # noqa: E402
from fomo_nn.inference.sliding_window import sliding_window_tiles  # noqa: E402
from fomo_nn.probing.embedding import PooledStages, brain_fractions, load_embedder  # noqa: E402
from fomo_nn.probing.linear_probes import cross_validated_scores  # noqa: E402

NETWORK = NetworkPlan(features_per_stage=[8, 16, 32, 64], kernel_sizes=[[3, 3, 3]] * 4,
                      strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, n_conv_per_stage=[2] * 4, n_conv_per_stage_decoder=[1] * 3)


def volumes(cases: int, shape=(48, 48, 48)):
    rng = np.random.default_rng(0)
    out, labels = [], []
    for index in range(cases):
        image = brain_image(shape, seed=index) / 400.0
        label = index % 2
        if label:  # a small lesion somewhere away from the centre
            centre = (rng.uniform(0.2, 0.3), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7))
            image[ellipsoid(shape, centre, (0.06, 0.06, 0.06)) & (image > 0)] *= 1.6
        out.append(((image - image[image > 0].mean()) / image[image > 0].std() * (image > 0))[None].astype(np.float32))
        labels.append(label)
    return out, np.array(labels)


def pooled_variants(embedder, volume, stage_channels):
    """{(windows, stages): vector} from one pass: per tile the every-stage average and maximum, then sliced."""
    total, last = sum(stage_channels), stage_channels[-1]
    cut = {"bottleneck": slice(total - last, total), "all_stages": slice(0, total),
           "all_stages_avgmax": slice(0, 2 * total)}
    network = PooledStages(embedder.frozen.encoder, "all_stages_avgmax").eval()
    patch = embedder.recipe.patch_size
    outputs, corners = sliding_window_tiles(network, volume, patch, step=0.5, skip_empty=True)
    weights = {"mean": torch.ones(len(corners), dtype=torch.float64),
               "brain_weighted": brain_fractions(torch.as_tensor(volume), corners, patch)}
    lo = [(s - p) // 2 for s, p in zip(volume.shape[1:], patch)]
    crop = volume[:, lo[0]:lo[0] + patch[0], lo[1]:lo[1] + patch[1], lo[2]:lo[2] + patch[2]]
    with torch.no_grad():
        centre = network(torch.as_tensor(crop)[None])[0].double()
    result = {}
    for stages, part in cut.items():
        result[("centre_crop", stages)] = centre[part].numpy()
        for windows, w in weights.items():
            result[(windows, stages)] = ((outputs.double() * w[:, None]).sum(0) / w.sum())[part].numpy()
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    plans = simple_plans(task_type="pretraining", labels=None)
    plans.network, plans.patch_size = NETWORK, [24, 24, 24]
    data, labels = volumes(args.cases)
    rows = {}
    start = time.time()
    for seed in args.seeds:
        embedder = load_embedder(f"random:{seed}", plans)
        per_case = [pooled_variants(embedder, v, embedder.frozen.stage_channels) for v in data]
        for key in per_case[0]:
            features = np.stack([case[key] for case in per_case])
            scores = cross_validated_scores("classification", "linear", features, labels, seed=0)
            rows.setdefault(key, []).append(auroc(labels, scores))
    print(f"| windows | stages | CV AUROC mean over seeds {args.seeds} | per seed |")
    print("|---|---|---|---|")
    for (windows, stages), values in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"| {windows} | {stages} | {np.mean(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
    print(f"{args.cases} cases, {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
