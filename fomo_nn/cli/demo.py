"""fomo_nn_demo: sample data -> pretrain -> finetune vs scratch -> predict OOD -> evaluate -> rank -> REPORT.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    from fomo_nn.demo.budget import BUDGETS

    parser = argparse.ArgumentParser(prog="fomo_nn_demo", description=__doc__)
    parser.add_argument("--workdir", default="fomo_nn_demo", help="where every stage's output stays (default ./fomo_nn_demo)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small",
                        help="tiny: minutes (tests); small: <= 15 min on 2 CPU cores (default); full: GPUs, real data")
    parser.add_argument("--methods", help="comma-separated pretraining methods (mae, contrastive, hybrid, vae, dino), "
                                          "each finetuned on every task; default: each task family's method of the "
                                          "budget (one model 'pretrained')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    real = parser.add_argument_group("real data (required with --budget full)")
    real.add_argument("--fomo60k", type=Path, help="FOMO60K folder (sub_*/ses_*/*.nii.gz)")
    for number in (1, 2, 3):
        real.add_argument(f"--task{number}", type=Path, help=f"FOMO task {number} finetuning folder")
        real.add_argument(f"--test-task{number}", type=Path, help=f"FOMO task {number} test/validation folder")
    args = parser.parse_args(argv)

    from fomo_nn.demo.pipeline import DataSources, DemoPipeline
    from fomo_nn.demo.stages import StageRunner

    budget = BUDGETS[args.budget]
    methods = tuple(m.strip().lower() for m in args.methods.split(",")) if args.methods else None
    sources = None
    if budget.sample_size is None:
        needed = ["fomo60k"] + [f"task{n}" for n in (1, 2, 3)] + [f"test_task{n}" for n in (1, 2, 3)]
        missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
        if missing:
            parser.error(f"--budget full runs on real data: give {' '.join(missing)}")
        sources = DataSources(args.fomo60k, {f"task{n}": getattr(args, f"task{n}") for n in (1, 2, 3)},
                              {f"task{n}": getattr(args, f"test_task{n}") for n in (1, 2, 3)})
    pipeline = DemoPipeline(Path(args.workdir), budget, methods, seed=args.seed, sources=sources, device=args.device)
    config = {"budget": budget.to_json(), "methods": list(pipeline.methods) if methods else "family defaults",
              "seed": args.seed}
    try:
        StageRunner(pipeline.workdir, pipeline.stages(), config).run()
    except (RuntimeError, ValueError, FileNotFoundError) as error:
        print(f"fomo_nn_demo: error: {error}\n(rerun the same command to resume from the failed stage)",
              file=sys.stderr)
        return 1
    print(pipeline.workdir / "REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
