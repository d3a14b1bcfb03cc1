#!/usr/bin/env python3
"""Pack what a container answers with: a trained model folder and/or the encoder FOMO26 tasks 6/7 embed with.

Model: training checkpoints also carry optimizer state, RNG state and options (about 3x the weights); a
container needs only what inference reads (network, plans, trainer, fold, extra). The chosen checkpoint
(final or best) is stored as `fold_K/checkpoint_final.pth`, the name the challenge mode loads by default,
with `packed_from` saying where it came from.
Encoder (`--encoder`, FOMO26 tasks 6 and 7): the checkpoint file is copied unchanged into `OUT/encoder/`
(any format fomo_nn_embed reads; keep it the pretrained checkpoint the task models were finetuned from,
as FOMO26 requires one pretrained checkpoint behind every task), with `--encoder-plans` as
`encoder/plans.json` when the checkpoint does not record its preprocessing.
The packed folder is loaded once at the end as a check (the container's first call must not be the first
time it loads).

    python container/pack_model.py fomo_nn_results/Dataset002_X/segmentation__fomo_nnPlans__3d_fullres \
        -o container/model [-f 0 1 2 3 4] [--checkpoint best] [--encoder pretrain/checkpoint_final.pth]
    python container/pack_model.py --encoder pretrain/checkpoint_final.pth -o container/model   # tasks 6/7 only
    python container/pack_model.py --task-model 1 MODEL_1 --task-model 4 MODEL_4 --encoder CKPT -o container/model
        # one image serving several tasks: OUT/task<N>/ each (predict.py tells the task from the call's arguments)
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

INFERENCE_KEYS = ("network", "plans", "trainer", "fold", "extra")
ENCODER_FOLDER = "encoder"  # predict.py reads OUT/encoder/


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
    make_readable(output)
    load_ensemble(output)
    return written


def pack_encoder(encoder: Path, output: Path, plans_file: Path | None = None) -> int:
    """Copy the encoder (and its plans) into OUT/encoder/; the embedding length it gives."""
    from fomo_nn.plans import load_plans
    from fomo_nn.probing.embedding import load_embedder

    folder = output / ENCODER_FOLDER
    folder.mkdir(parents=True)
    if encoder.name == "plans.json":
        raise SystemExit("pack_model.py: error: --encoder is the checkpoint; its plans go to --encoder-plans")
    shutil.copyfile(encoder, folder / encoder.name)
    if plans_file is not None:
        shutil.copyfile(plans_file, folder / "plans.json")
    make_readable(output)
    embedder = load_embedder(str(folder / encoder.name), load_plans(folder / "plans.json") if plans_file else None)
    return embedder.recipe.length


def make_readable(output: Path) -> None:
    for path in [output, *output.rglob("*")]:  # atomic writes are 0600; apptainer runs as the host user
        path.chmod(0o755 if path.is_dir() else 0o644)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?", help="<trainer>__<plans>__<configuration> folder")
    parser.add_argument("-o", "--output", default="container/model", help="packed folder (default container/model)")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to pack (default: all present)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final")
    parser.add_argument("--task-model", nargs=2, action="append", metavar=("N", "MODEL_DIR"), default=[],
                        help="one of several tasks the image serves: packed into OUT/task<N>/ (repeat per task)")
    parser.add_argument("--encoder", help="FOMO26 tasks 6/7: the encoder checkpoint the container embeds with")
    parser.add_argument("--encoder-plans", help="plans.json for an encoder that does not record its preprocessing")
    args = parser.parse_args(argv)
    if not args.model_dir and not args.encoder and not args.task_model:
        parser.error("give a model folder (or --task-model N MODEL_DIR ...), --encoder, or both")
    if args.model_dir and args.task_model:
        parser.error("give one model folder, or --task-model per task, not both")
    if any(not number.isdigit() for number, _ in args.task_model):
        parser.error("--task-model N MODEL_DIR: N is a task number")
    if args.encoder_plans and not args.encoder:
        parser.error("--encoder-plans goes with --encoder")
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        parser.error(f"{output} is not empty; remove it first")
    output.mkdir(parents=True, exist_ok=True)
    if args.model_dir:
        written = pack(Path(args.model_dir), output, args.folds, args.checkpoint)
        size = sum(p.stat().st_size for p in written) / 2 ** 20
        print(f"packed {len(written)} fold(s) into {output} ({size:.1f} MiB)")
    for number, model_dir in args.task_model:
        written = pack(Path(model_dir), output / f"task{int(number)}", args.folds, args.checkpoint)
        print(f"packed {len(written)} fold(s) of task {int(number)} into {output / f'task{int(number)}'}")
    if args.encoder:
        length = pack_encoder(Path(args.encoder), output, Path(args.encoder_plans) if args.encoder_plans else None)
        print(f"packed the encoder {Path(args.encoder).name} into {output / ENCODER_FOLDER} "
              f"(embeddings of length {length})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
