"""Build one small FOMO world for transfer experiments: the demo's data stages, without training.

Generates `--size small` sample data for a seed, converts the corpus and the three tasks (finetuning
and test splits), plans and preprocesses them as the demo does (tasks planned like the corpus, with
the given fusion) and writes `sites.csv` (case_id,group of every test case) for per-site probes.

    python benchmarks/transfer_world.py ROOT --seed 0 [--fusion shared_encoder]

Then e.g. `fomo_nn_probe -d 13 -e random:0 -e CKPT --groups ROOT/sites.csv` with
fomo_nn_raw/_preprocessed pointing at ROOT/raw and ROOT/pre, or benchmarks/transfer_finetune.py.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

TASKS = ((1, "Task1Infarct"), (2, "Task2Meningioma"), (3, "Task3BrainAge"))
PLANNER = ["--base-features", "8", "--max-features", "64", "--max-patch", "48", "--max-batch-size", "4", "--no-progress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fusion", default="shared_encoder")
    args = parser.parse_args()
    root = args.root
    os.environ.update(fomo_nn_raw=str(root / "raw"), fomo_nn_preprocessed=str(root / "pre"),
                      fomo_nn_results=str(root / "res"))
    from dataset_conversion.sample_data.generate import generate_sample_data
    from fomo_nn.cli.convert import main as convert
    from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess

    started = time.time()
    sample = root / "sample_data"
    if not (sample / "sample_data.json").is_file():
        generate_sample_data(sample, seed=args.seed, size="small", num_workers=2, progress=False)
    print(f"generate {time.time() - started:.0f} s", flush=True)
    convert(["fomo60k", str(sample / "fomo60k"), "-d", "1", "--name", "FOMO60K"])
    for number, name in TASKS:
        for split, folder in (("train", "finetune"), ("test", "test")):
            convert(["fomo-task", str(sample / folder / f"task{number}"), "--task", str(number), "-d",
                     str(10 + number), "--name", name, "--split", split])
    started = time.time()
    plan_and_preprocess(["-d", "1", "-np", "2", *PLANNER])
    for number, _ in TASKS:
        plan_and_preprocess(["-d", str(10 + number), "-np", "2", *PLANNER, "--fusion", args.fusion,
                             "--plans-like", str(root / "pre" / "Dataset001_FOMO60K" / "plans.json")])
    print(f"plan and preprocess {time.time() - started:.0f} s", flush=True)
    metadata = json.loads((sample / "sample_data.json").read_text())
    rows = [f"{case['case_id']},{case['site']}" for number, _ in TASKS for case in metadata["test"][f"task{number}"]]
    (root / "sites.csv").write_text("case_id,group\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
