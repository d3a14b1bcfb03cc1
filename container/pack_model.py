#!/usr/bin/env python3
"""Pack a trained model folder for a container: plans + one network-only checkpoint per fold.

Training checkpoints also carry optimizer state, RNG state and options (about 3x the weights);
a container needs only what inference reads (network, plans, trainer, fold, extra). The chosen
checkpoint (final or best) is stored as `fold_K/checkpoint_final.pth`, the name the challenge mode
loads by default, with `packed_from` saying where it came from. The packed folder is loaded once
at the end as a check.

    python container/pack_model.py fomo_nn_results/Dataset002_X/segmentation__fomo_nnPlans__3d_fullres \
        -o container/model [-f 0 1 2 3 4] [--checkpoint best]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

INFERENCE_KEYS = ("network", "plans", "trainer", "fold", "extra")


def pack(model_dir: Path, output: Path, folds=None, checkpoint: str = "final") -> list[Path]:
    from fomo_nn.inference.model_folder import find_checkpoints, load_ensemble
    from fomo_nn.plans import Plans, save_plans
    from fomo_nn.checkpoints.training_state import load_checkpoint, save_checkpoint

    written = []
    for fold, path in find_checkpoints(model_dir, folds, checkpoint):
        state = load_checkpoint(path)
        packed = {key: state[key] for key in INFERENCE_KEYS if key in state}
        packed["packed_from"] = f"fold_{fold}/{path.name}"
        written.append(save_checkpoint(packed, output / f"fold_{fold}" / "checkpoint_final.pth"))
    if (model_dir / "plans.json").is_file():
        shutil.copyfile(model_dir / "plans.json", output / "plans.json")
    else:
        save_plans(Plans.from_json(load_checkpoint(written[0])["plans"]), output / "plans.json")
    for path in [output, *output.rglob("*")]:  # atomic writes are 0600; apptainer runs as the host user
        path.chmod(0o755 if path.is_dir() else 0o644)
    load_ensemble(output)  # the container's first call must not be the first time this folder loads
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="<trainer>__<plans>__<configuration> folder")
    parser.add_argument("-o", "--output", default="container/model", help="packed folder (default container/model)")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to pack (default: all present)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        parser.error(f"{output} is not empty; remove it first")
    written = pack(Path(args.model_dir), output, args.folds, args.checkpoint)
    size = sum(p.stat().st_size for p in written) / 2 ** 20
    print(f"packed {len(written)} fold(s) into {output} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
