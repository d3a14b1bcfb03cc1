"""fomo_nn_train DATASET FOLD [-tr TRAINER] ...: pretraining (fold all) or finetuning (0-4, all)."""
from __future__ import annotations

import argparse
import json
import sys

from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import NoSpaceLeftError
from fomo_nn.utils.run_lock import RunLockedError


def parse_setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_train", description=__doc__)
    parser.add_argument("dataset", nargs="?", help="dataset id (e.g. 2) or name (Dataset002_Name)")
    parser.add_argument("fold", nargs="?", help="0-4 or all (pretraining always trains on all)")
    parser.add_argument("-tr", "--trainer", help="trainer or pretraining method (see --list-trainers); "
                                                 "default: from the dataset's task type")
    parser.add_argument("--list-trainers", action="store_true", help="list registered trainers and exit")
    parser.add_argument("--pretrained", help="pretraining checkpoint (or exported encoder) to finetune from")
    parser.add_argument("--allow-partial", action="store_true",
                        help="load a pretrained encoder even if some keys/shapes do not match (reported)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read a --pretrained file that needs unpickling (it can run code: only for a file from "
                             "a source you trust); without it checkpoints are read with weights_only")
    parser.add_argument("--allow-incomplete-dataset", action="store_true",
                        help="train on the finished cases of a dataset whose preprocessing did not finish (killed, "
                             "or CASE.json files deleted); without it such a dataset is refused (logged when used)")
    parser.add_argument("--continue", dest="continue_training", action="store_true",
                        help="resume from checkpoint_latest.pth")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a fold folder that holds checkpoints (they are deleted); without it "
                             "or --continue such a folder is refused")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--iters-per-epoch", type=int, dest="iterations_per_epoch")
    parser.add_argument("--val-iters", type=int, dest="validation_iterations")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, dest="learning_rate")
    parser.add_argument("--num-workers", type=int, help="background augmentation processes")
    parser.add_argument("--checkpoint-every", type=int, help="epochs between checkpoint_latest.pth writes")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--encoder-lr-scale", type=float, help="encoder LR = head LR x this (finetuning)")
    parser.add_argument("--layer-lr-decay", type=float,
                        help="encoder stage s of S learns at encoder LR x this^(S-1-s) (finetuning; 1 = off)")
    parser.add_argument("--freeze-encoder-epochs", type=int, help="keep the encoder frozen for N epochs")
    parser.add_argument("--linear-probe", action="store_true", help="train only the head (frozen encoder)")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[], metavar="KEY=VALUE",
                        help="method/head setting, e.g. --set mask_ratio=0.75 (repeatable)")
    parser.add_argument("--probe-dataset", dest="probe_datasets", action="append", default=[], metavar="DATASET",
                        help="pretraining: labelled dataset (planned like the corpus) whose frozen-feature probe is "
                             "logged every --probe-every epochs and before the first step (repeatable)")
    parser.add_argument("--probe-every", type=int, default=1, help="epochs between online-probe measurements")
    parser.add_argument("-p", "--plans", help="path to a plans.json other than the preprocessed dataset's")
    parser.add_argument("--tag", help="suffix of the model folder, to keep variants apart (letters, digits, . _ -; "
                                      "e.g. --tag mae -> classification__fomo_nnPlans__3d_fullres__mae)")
    parser.add_argument("--output", help="fold folder (default: fomo_nn_results/<dataset>/"
                                         "<trainer>__<plans>__<configuration>[__<tag>]/fold_X)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fomo_nn.training.registry import all_trainers

    if args.list_trainers:
        for name, cls in all_trainers().items():
            print(f"{name:16s} [{', '.join(cls.task_types)}] {cls.description}")
        return 0
    if args.dataset is None or args.fold is None:
        build_parser().error("DATASET and FOLD are required (or --list-trainers)")
    from fomo_nn.training.run import train

    training = {k: getattr(args, k) for k in ("encoder_lr_scale", "layer_lr_decay", "freeze_encoder_epochs") if getattr(args, k) is not None}
    if args.linear_probe:
        training["linear_probe"] = True
    try:
        output = train(args.dataset, args.fold, trainer=args.trainer, plans_path=args.plans, output=args.output, tag=args.tag,
                       device=args.device, epochs=args.epochs, iterations_per_epoch=args.iterations_per_epoch,
                       validation_iterations=args.validation_iterations, batch_size=args.batch_size,
                       learning_rate=args.learning_rate, num_workers=args.num_workers,
                       checkpoint_every=args.checkpoint_every, seed=args.seed, compile=args.compile,
                       continue_training=args.continue_training, overwrite=args.overwrite, pretrained=args.pretrained,
                       trust_checkpoint=args.trust_checkpoint,
                       allow_partial=args.allow_partial, allow_incomplete_dataset=args.allow_incomplete_dataset,
                       method=dict(args.settings), training=training,
                       probe_datasets=args.probe_datasets, probe_every=args.probe_every)
    except (BadInputError, FileNotFoundError, KeyError, ValueError, RunLockedError) as error:
        print(f"fomo_nn_train: error: {error}", file=sys.stderr)
        return 2
    except NoSpaceLeftError as error:
        print(f"fomo_nn_train: error: {error}; the last checkpoint written is intact: free space and resume with "
              "--continue", file=sys.stderr)
        return 2
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
