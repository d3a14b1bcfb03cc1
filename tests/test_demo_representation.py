"""The demo's representation track on the tiny sample world's probing cohort (random encoders only: fast)."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from builders import simple_plans
from dataset_conversion.sample_data.probing_cohort import generate_probing_cohort
from fomo_nn.demo.representation import representation_section, run_representation_track, split_counts
from fomo_nn.plans.records import NetworkPlan, save_plans


def test_representation_track_embeds_probes_and_reports(tmp_path):
    plans = simple_plans(task_type="pretraining", labels=None, target_spacing=(6.0, 6.0, 6.0))
    plans.network = NetworkPlan(features_per_stage=[4, 8, 12], kernel_sizes=[[3, 3, 3]] * 3,
                                strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1],
                                n_conv_per_stage_decoder=[1, 1])
    plans.patch_size = [16, 16, 16]
    preprocessed = tmp_path / "fomo_nn_preprocessed"
    save_plans(plans, preprocessed / "Dataset001_FOMO60K" / "plans.json")
    pipeline = SimpleNamespace(workdir=tmp_path, seed=0, methods=(), device="cpu",
                               budget=SimpleNamespace(sample_size="tiny", random_probe_seeds=2),
                               pretraining_folder="Dataset001_FOMO60K", preprocessed=lambda f: preprocessed / f,
                               pretraining_checkpoint=lambda m: Path("unused"),
                               generate_probing_cohort=lambda: generate_probing_cohort(tmp_path / "sample_data", 0, "tiny"))
    result = run_representation_track(pipeline)
    summary = json.loads(Path(result["summary"]).read_text())
    csv_path = tmp_path / "sample_data" / "fomo26" / "probing" / "subjects.csv"
    assert summary["split_counts"] == list(split_counts(csv_path)) and sum(summary["split_counts"]) == 10
    assert set(summary["encoders"]) == {"random:0", "random:1"}
    for name, row in summary["encoders"].items():
        assert row["feature_dim"] == 48 and row["n_test"] == 15
        assert 0 <= row["overall"]["ovr_auroc"] <= 1 and 0 <= row["fairness_score"]["ovr_auroc"]["score"] <= 1
        vectors = list((tmp_path / "embeddings" / name.replace(":", "_")).glob("sub-*.npy"))
        assert len(vectors) == 30 and all(np.isfinite(np.load(v)).all() for v in vectors)
    lines = representation_section(pipeline)
    assert "## Representation track (FOMO26 tasks 6-7)" in lines and sum(l.startswith("| random:") for l in lines) == 2
    # a rerun reuses the embeddings (fomo_nn_embed resumes) and gives the same numbers
    again = json.loads(Path(run_representation_track(pipeline)["summary"]).read_text())
    assert again == summary
