"""fomo_nn_plan_and_preprocess and its separate steps (argument parsing only; the work is in
fomo_nn.planning and fomo_nn.preprocessing).

    fomo_nn_plan_and_preprocess -d 2 -np 8                  fingerprint, plan, preprocess
    fomo_nn_plan_and_preprocess -d 2 --verify               check the raw dataset, write nothing
    fomo_nn_plan_and_preprocess -d 3 --plans-like PRETRAINED/checkpoint_final.pth
    fomo_nn_plan_and_preprocess -d 1 --no-preprocess        then, per array job:
    fomo_nn_preprocess -d 1 --shard $I/$N -np 8
    fomo_nn_preprocess -d 1 --verify                        check every stored case in full, rewrite damaged ones
    fomo_nn_plan_and_preprocess -d 2 -np 2 --base-features 8 --max-features 32 --max-patch 32   (tiny CPU run)

One run writes a dataset at a time (the shards of one array job side by side); a second is refused
naming the first. A full disk stops the run; rerun after freeing space to resume.
"""
from __future__ import annotations

import argparse
import sys

from fomo_nn.io import BadInputError
from fomo_nn.networks.families import PLANNABLE_FAMILIES
from fomo_nn.paths import preprocessed_root, raw_root, resolve_dataset_name
from fomo_nn.preprocessing.dataset_cases import format_problems
from fomo_nn.preprocessing.normalization import DEFAULT_SCHEME, SCHEMES
from fomo_nn.preprocessing.parallel import WorkerDiedError, default_num_processes
from fomo_nn.preprocessing.sharding import parse_shard
from fomo_nn.utils.files import NoSpaceLeftError
from fomo_nn.utils.run_lock import RunLockedError


def _add_dataset(parser):
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (2) or folder name (Dataset002_Name)")


def _add_processes(parser):
    parser.add_argument("-np", "--num-processes", type=int, default=default_num_processes(),
                        help="worker processes (default: min(8, usable cores)); 1 runs in this process")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_fingerprint(parser):
    parser.add_argument("--fingerprint-cases", type=int, default=None, metavar="N",
                        help="read at most N (randomly chosen, fixed) cases for the fingerprint "
                             "(default: all; pretraining corpora: 1000)")
    parser.add_argument("--clean", action="store_true", help="recompute the fingerprint even if it is up to date")


def _add_planner(parser):
    group = parser.add_argument_group("planner")
    group.add_argument("--gpu-memory", type=float, default=8.0, metavar="GB",
                       help="GPU memory target in GB (default 8, nnU-Net's reference)")
    group.add_argument("--base-features", type=int, default=32, help="features of the first stage (default 32)")
    group.add_argument("--max-features", type=int, default=320, help="feature cap per stage (default 320)")
    group.add_argument("--max-patch", type=int, default=None, metavar="VOXELS",
                       help="cap every patch edge (e.g. 32 for a tiny CPU run)")
    group.add_argument("--max-batch-size", type=int, default=None, help="cap the batch size")
    group.add_argument("--encoder", choices=PLANNABLE_FAMILIES, default="plain_conv",
                       help="encoder family the planner sizes (fomo_nn.networks.families; the max-pool U-Net and "
                            "gardening-tools ResEnc come with --plans-like a checkpoint)")
    group.add_argument("--fusion", choices=("none", "stem_expansion", "shared_encoder"), default="stem_expansion",
                       help="how multi-sequence task inputs meet the encoder (default stem_expansion)")
    group.add_argument("--pretraining-family", choices=("pretraining_reconstruction", "pretraining_contrastive"),
                       default="pretraining_reconstruction", help="augmentation preset of a pretraining corpus")
    group.add_argument("--target-spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                       help="override the target spacing (mm, RAS order)")
    group.add_argument("--plans-like", default=None, metavar="CHECKPOINT_OR_PLANS",
                       help="plan like a pretrained model: any checkpoint fomo_nn reads (fomo_nn, nnssl, "
                            "model.safetensors + config.json, ...) or a plans.json")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="read a --plans-like checkpoint that needs unpickling (it can run code: only for a file "
                            "from a source you trust)")
    group.add_argument("--normalization", choices=SCHEMES, default=DEFAULT_SCHEME,
                       help=f"per-channel intensity scheme (default {DEFAULT_SCHEME}); volume_wise_znorm is the "
                            "FOMO25 baseline's, for weights pretrained with it (a --plans-like model's scheme wins)")


RAW_VERIFY_HELP = "check the raw dataset end to end; write nothing"
STORE_VERIFY_HELP = ("read every finished case's arrays in full, check them against their CASE.json records "
                     "(shape, dtype, CRC-32) and rewrite the damaged ones with the unfinished ones")


def _add_preprocess(parser, verify_help: str = RAW_VERIFY_HELP):
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="preprocess only shard I of N (0 <= I < N; needs plans.json from an earlier run)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="exit 0 even if some cases are bad (they are always skipped and listed)")
    parser.add_argument("--verify", action="store_true", help=verify_help)


def _planner_options(args):
    from fomo_nn.planning.planner import PlannerOptions
    from fomo_nn.planning.sizing import SizingOptions

    sizing = SizingOptions(gpu_memory_gb=args.gpu_memory, base_features=args.base_features,
                           max_features=args.max_features, encoder=args.encoder, max_patch_edge=args.max_patch,
                           max_batch_size=args.max_batch_size)
    return PlannerOptions(sizing=sizing, fusion=args.fusion, pretraining_family=args.pretraining_family,
                          target_spacing=args.target_spacing, normalization=args.normalization)


def _folders(dataset):
    name = resolve_dataset_name(dataset)
    raw_dir = raw_root() / name
    if not raw_dir.is_dir():
        raise BadInputError(raw_dir, "raw dataset folder does not exist")
    return raw_dir, preprocessed_root() / name


def _say(message: str) -> None:
    print(message, flush=True)


def _verify(args) -> int:
    from fomo_nn.preprocessing.verify import verify_dataset

    raw_dir, _ = _folders(args.dataset)
    problems = verify_dataset(raw_dir, args.num_processes, not args.no_progress)
    if problems:
        _say(format_problems(problems, f"verify {raw_dir.name}"))
        return 1
    _say(f"verify {raw_dir.name}: no problem found")
    return 0


def _fingerprint(args) -> int:
    from fomo_nn.planning.steps import fingerprint_step

    raw_dir, preprocessed_dir = _folders(args.dataset)
    fingerprint, problems, reused = fingerprint_step(raw_dir, preprocessed_dir, args.num_processes,
                                                     args.fingerprint_cases, args.clean, not args.no_progress)
    args.fingerprint_done = True
    verb = "reused" if reused else "wrote"
    _say(f"{verb} {preprocessed_dir / 'dataset_fingerprint.json'} ({fingerprint['num_cases_read']} of "
         f"{fingerprint['num_cases']} case(s) read)")
    if problems:
        _say(format_problems(problems, "bad cases (left out of the fingerprint)"))
    return 1 if problems and not getattr(args, "skip_bad", False) else 0


def _plan(args) -> int:
    from fomo_nn.planning.plans_like import differences_report
    from fomo_nn.planning.steps import plan_step

    raw_dir, preprocessed_dir = _folders(args.dataset)
    plans = plan_step(raw_dir, preprocessed_dir, _planner_options(args), args.plans_like,
                      trust_checkpoint=getattr(args, "trust_checkpoint", False))
    _say(f"wrote {preprocessed_dir / 'plans.json'}: spacing {plans.target_spacing}, patch {plans.patch_size}, "
         f"batch {plans.batch_size}, {plans.network.num_stages} stages {plans.network.features_per_stage}")
    for note in plans.notes:
        _say(f"  - {note}")
    if plans.plans_like:
        _say(differences_report(plans))
    return 0


def _preprocess(args) -> int:
    from fomo_nn.preprocessing.runner import preprocess_dataset

    raw_dir, preprocessed_dir = _folders(args.dataset)
    shard = parse_shard(args.shard) if args.shard else None
    report = preprocess_dataset(raw_dir, preprocessed_dir, args.num_processes, shard, not args.no_progress,
                                verify=getattr(args, "verify_store", False))
    _say(report.summary())
    return 0 if report.ok or args.skip_bad else 1


def _as_dataset_writer(step):
    """`step` run holding the dataset's lock (steps nested inside it, e.g. the preprocessing, go on holding it)."""
    def run(args) -> int:
        from fomo_nn.preprocessing.runner import dataset_lock

        with dataset_lock(_folders(args.dataset)[1]):
            return step(args)

    return run


def _fingerprint_plan_preprocess(args) -> int:
    status = _run(_fingerprint, args)
    if not getattr(args, "fingerprint_done", False):
        return status
    plan_status = _run(_plan, args)
    if plan_status or args.no_preprocess:
        return plan_status or status
    return _run(_preprocess, args) or status


def _run(step, args) -> int:
    try:
        return step(args)
    except (BadInputError, WorkerDiedError, FileNotFoundError, ValueError, RunLockedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NoSpaceLeftError as error:
        print(f"error: {error}; free space and rerun: finished cases are kept and skipped", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomo_nn_plan_and_preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_dataset(parser)
    _add_processes(parser)
    _add_fingerprint(parser)
    _add_planner(parser)
    _add_preprocess(parser)
    parser.add_argument("--no-preprocess", action="store_true", help="stop after planning (cluster workflow)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.verify:
        return _run(_verify, args)
    if args.shard:
        _say("--shard: using the existing fingerprint and plans.json, preprocessing this shard only")
        return _run(_preprocess, args)
    return _run(_as_dataset_writer(_fingerprint_plan_preprocess), args)


def main_fingerprint(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fomo_nn_extract_fingerprint",
                                     description="Measure a raw dataset (dataset_fingerprint.json).")
    _add_dataset(parser)
    _add_processes(parser)
    _add_fingerprint(parser)
    parser.add_argument("--skip-bad", action="store_true", help="exit 0 even if some cases are bad")
    return _run(_as_dataset_writer(_fingerprint), parser.parse_args(argv))


def main_plan(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fomo_nn_plan", description="Write plans.json from the fingerprint.")
    _add_dataset(parser)
    _add_planner(parser)
    return _run(_as_dataset_writer(_plan), parser.parse_args(argv))


def main_preprocess(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fomo_nn_preprocess", description="Preprocess the cases per plans.json.")
    _add_dataset(parser)
    _add_processes(parser)
    _add_preprocess(parser, STORE_VERIFY_HELP)
    args = parser.parse_args(argv)
    args.verify_store = args.verify
    return _run(_preprocess, args)


if __name__ == "__main__":
    sys.exit(main())
