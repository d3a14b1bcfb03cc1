"""Corpus-scale dry run: does any step cost more than linearly in the number of scans?

Per corpus size, a FOMO60K-layout tree of tiny but valid files (bench_fomo60k_convert's builder;
about 5.4 scans per subject, like FOMO60K's 60,529 scans of 11,187 subjects) goes through every step
whose cost depends on the corpus size, each step in a fresh process:

- convert (listing only), fingerprint (the planner's default sample of 1,000 read cases; the counts
  cover the whole manifest), plan;
- preprocess shard 1 of N (N = scans / --shard-size, so a shard is ~1,000 cases);
- resume of a half-done preprocessing: the time a whole run takes to decide what is left (the work
  itself is not run) when half of the shards are finished;
- the merge of the shards' case-index parts (what the first reader after an array job does), and one
  shard of an array job started when the folder already holds the whole corpus (each of the N shards
  pays it: what it costs per shard should not grow with the corpus);
- training start-up: the finished-case listing (files opened counted: it must not be one per case),
  the subject split + subject-aware pair sampler over every subject (one pick per subject, no
  voxel read; the source's pickled size is what a spawned loader worker receives), and the per-rank
  partition of one pass under 8 ranks (disjoint, covering).

Only shard 1 is preprocessed for real; the other shards are synthesised cheaply, as their runs would
leave them (copies of one real case's array files, its CASE.json with the ids changed, and each shard's
own index part written by the store's IndexWriter), so the steps after it see a corpus of that size.

Per step: wall and CPU seconds (the step's process and its workers; the slope is fitted on CPU time,
which other jobs on a shared machine disturb far less), peak RSS of the step's process and its growth
during the step, peak RSS of its largest worker process (steps that use workers; polled VmHWM), files
opened (Python `open` audit events under the work folder) and directory listings. Then the slope of
log(CPU time) and log(memory growth) against log(scans) per step; above 1.15 is flagged super-linear.
All of it runs from the page cache: on a network file system every listing, stat and open costs more.

With `--layout fomo300k` the corpus is a FOMO300K-layout tree instead (fomo300k_tree.py: 36 sources in
FOMO300K's proportions, OpenNeuro `ds*` folders, BIDS names, one session in 8 zipped, the three metadata
tables) and convert is `fomo_nn_convert fomo300k` (zips extracted with -np workers, tables joined).

    python benchmarks/bench_corpus_scale.py                       # 6000 20000 60529 scans, -np 2
    python benchmarks/bench_corpus_scale.py --sizes 2000 6000 -np 2 --json out.json
    python benchmarks/bench_corpus_scale.py --layout fomo300k --sizes 20000 60529 306207 --json scale300k.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import pickle
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fomo60k_convert import build_tree  # noqa: E402
from fomo300k_tree import build_fomo300k_tree  # noqa: E402

RANKS = 8
SLOPE_LIMIT = 1.15
WORKER_STEPS = ("fingerprint", "preprocess_shard")  # the steps that run worker processes (-np)
DATASETS = {"fomo60k": "Dataset001_FOMO60K", "fomo300k": "Dataset001_FOMO300K"}


# ------------------------------------------------------------------ measuring one step in its own process

def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _WorkerWatch(threading.Thread):
    """The peak RSS (VmHWM) of this process's children, polled: a worker's own peak, whereas
    getrusage(RUSAGE_CHILDREN) keeps the RSS a child had when it was forked from this process."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval, self.peaks, self.done = interval, {}, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.poll()
            self.done.wait(self.interval)

    def poll(self) -> None:
        me = str(os.getpid())
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), int(fields["VmHWM"].split()[0]) / 1024)

    def stop(self) -> float | None:
        self.done.set()
        self.join()
        return max(self.peaks.values()) if self.peaks else None


class _FileCounter:
    """Python-level file opens and directory listings under `root` (sys audit events)."""

    def __init__(self, root: str):
        self.root, self.opens, self.listings, self.active = root, 0, 0, False

    def __call__(self, event: str, args) -> None:
        if not self.active:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            self.opens += os.fsdecode(args[0]).startswith(self.root)
        elif event in ("os.scandir", "os.listdir") and args and args[0] is not None:
            self.listings += os.fsdecode(args[0]).startswith(self.root)


def _import_everything() -> None:
    """Every module a step uses, imported before its clock starts (torch alone is ~200 MB of RSS), so
    a step's time and memory growth are its own work."""
    import dataset_conversion.fomo60k  # noqa: F401
    import dataset_conversion.fomo300k  # noqa: F401
    import fomo_nn.planning.steps  # noqa: F401
    import fomo_nn.preprocessing.runner  # noqa: F401
    import fomo_nn.training.data.loader  # noqa: F401
    from fomo_nn.training.registry import all_trainers

    all_trainers()


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers, once their pool is closed):
    what the step costs, much less disturbed than wall time by other jobs on a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _step_process(name: str, context: dict, connection) -> None:
    """Entry of a step's process: run STEPS[name], send back time, memory and file counts."""
    os.environ["fomo_nn_raw"] = context["raw_root"]
    os.environ["fomo_nn_preprocessed"] = context["preprocessed_root"]
    os.environ["fomo_nn_results"] = context["results_root"]
    _import_everything()
    step = STEPS[name]
    prepared = step.prepare(context) if hasattr(step, "prepare") else None
    counter = _FileCounter(context["workdir"])
    sys.addaudithook(counter)
    baseline = _rss_mb()
    watch = _WorkerWatch() if name in WORKER_STEPS else None  # polling /proc costs CPU: only where needed
    if watch:
        watch.start()
    counter.active = True
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    try:
        details = step(context, prepared) or {}
        error = None
    except Exception as exc:  # reported in the table, the other steps go on
        details, error = {}, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    counter.active = False
    workers = watch.stop() if watch else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    connection.send({"step": name, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak,
                     "growth_mb": max(peak - baseline, 0.0), "worker_peak_mb": workers, "opens": counter.opens,
                     "listings": counter.listings, "error": error, **details})
    connection.close()


def run_step(name: str, context: dict) -> dict:
    parent, child = multiprocessing.get_context("spawn").Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(target=_step_process, args=(name, context, child))
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = {"step": name, "error": f"step process died (exit code {process.exitcode})"}
    process.join()
    return result


# ------------------------------------------------------------------ the steps

def _folders(context: dict) -> tuple[Path, Path]:
    dataset = DATASETS[context["layout"]]
    return Path(context["raw_root"]) / dataset, Path(context["preprocessed_root"]) / dataset


def _plans(context: dict):
    from fomo_nn.plans.records import load_plans

    return load_plans(_folders(context)[1])


def step_convert(context: dict, _prepared) -> dict:
    if context["layout"] == "fomo300k":
        from dataset_conversion.fomo300k import convert_fomo300k

        report = convert_fomo300k(context["corpus"], dataset=1, num_processes=context["workers"], progress=False)
        assert report.converted == context["scans"] and not report.bad, report.summary()
        return {"note": f"{context['zipped']} zipped sessions extracted (-np {context['workers']}), 3 tables joined, "
                        "no image opened"}
    from dataset_conversion.fomo60k import convert_fomo60k

    report = convert_fomo60k(context["corpus"], dataset=1, progress=False)
    assert report.converted == context["scans"] and not report.bad, report.summary()
    return {"note": "listing only (no image opened)"}


def step_fingerprint(context: dict, _prepared) -> dict:
    from fomo_nn.planning.steps import fingerprint_step

    raw_dir, preprocessed_dir = _folders(context)
    fingerprint, problems, _ = fingerprint_step(raw_dir, preprocessed_dir, context["workers"], progress=False)
    assert not problems, problems[:3]
    return {"note": f"{fingerprint['num_cases_read']} of {fingerprint['num_cases']} cases read, "
                    f"-np {context['workers']}"}


def step_plan(context: dict, _prepared) -> dict:
    from fomo_nn.planning.steps import plan_step

    plans = plan_step(*_folders(context))
    return {"note": f"spacing {plans.target_spacing}, patch {plans.patch_size}"}


def step_preprocess_shard(context: dict, _prepared) -> dict:
    from fomo_nn.preprocessing.runner import preprocess_dataset
    from fomo_nn.preprocessing.sharding import Shard

    shard = Shard(1, context["shards"])
    report = preprocess_dataset(*_folders(context), context["workers"], shard, progress=False)
    assert report.ok and report.processed, report.summary()
    return {"note": f"shard {shard}: {len(report.processed)} cases, -np {context['workers']}"}


def _decide_only(context: dict, shard) -> tuple[object, list[str]]:
    """A preprocessing run up to its parallel work, which is replaced by 'nothing to do': (report, the case
    ids it would have preprocessed)."""
    from fomo_nn.preprocessing import runner

    left = []

    def record_only(function, items, keys, *args, **kwargs):
        left.extend(keys)
        return iter(())

    runner.run_parallel = record_only
    return runner.preprocess_dataset(*_folders(context), context["workers"], shard, progress=False), left


def step_resume_decide(context: dict, _prepared) -> dict:
    """A whole run restarted on a half-done corpus: what it takes to find the cases left."""
    report, left = _decide_only(context, None)
    expected_left = context["scans"] - context["finished"]
    assert len(left) == expected_left and len(report.skipped) == context["finished"], (len(left), expected_left)
    return {"note": f"{len(report.skipped)} finished skipped, {len(left)} left"}


def step_shard_rerun(context: dict, _prepared) -> dict:
    """One shard of an array job started (or rerun) when the folder holds the whole corpus: its cost is
    paid by each of the N shards."""
    from fomo_nn.preprocessing.sharding import Shard

    shard = Shard(1, context["shards"])
    report, left = _decide_only(context, shard)
    assert not left and len(report.skipped) == len(_shard_ids(context, 1)), (len(left), len(report.skipped))
    return {"note": f"shard {shard}: {len(report.skipped)} finished skipped, {context['scans']} in the folder"}


def _listing(context: dict):
    from fomo_nn.preprocessing.case_store import list_cases

    plans = _plans(context)
    return plans, list_cases(_folders(context)[1] / plans.configuration, plans)


def step_merge_index(context: dict, _prepared) -> dict:
    """The first reader after the shards: one listing, the shards' index parts merged into one index."""
    from fomo_nn.preprocessing.case_index import case_index

    preprocessed_dir = _folders(context)[1]
    folder = preprocessed_dir / _plans(context).configuration
    parts = sum(name.endswith(".index") for name in os.listdir(folder))
    entries = case_index(folder, progress=False)
    assert len(entries) == context["scans"], len(entries)
    return {"note": f"{parts} index files merged, {len(entries)} entries"}


def step_startup_listing(context: dict, _prepared) -> dict:
    _, cases = _listing(context)
    assert len(cases) == context["scans"], len(cases)
    return {"note": f"{len(cases)} finished cases"}


class _PairSampler:
    """The subject split, the pair source over every subject and one pick per subject."""

    @staticmethod
    def prepare(context: dict):
        return _listing(context)

    def __call__(self, context: dict, prepared) -> dict:
        from fomo_nn.training.base_trainer import TrainerOptions
        from fomo_nn.training.registry import get_trainer

        plans, cases = prepared
        trainer = get_trainer("contrastive")(plans, _folders(context)[1], Path(context["results_root"]) / "pairs",
                                             "all", TrainerOptions(device="cpu"))
        train, _ = trainer.split_cases(cases)
        source = trainer.pair_source(train, plans.patch_size, None)
        rng = np.random.default_rng(0)
        same = sum(first.session == second.session
                   for first, second in (source.pick_pair(subject, rng) for subject in source.subjects))
        pickled = len(pickle.dumps(source))
        return {"note": f"{len(source.subjects)} subjects with pairs, {same} same-session picks; "
                        f"source pickles to {pickled / 1e6:.1f} MB"}


def step_partition(context: dict, _prepared) -> dict:
    """One pass dealt to 8 ranks, for scans (i.i.d.) and for subjects (pairs): disjoint and covering."""
    from fomo_nn.training.data.case_order import rank_case_order
    from fomo_nn.training.data.loader import StepDraw

    scans, subjects = context["scans"], context["subjects"]
    for count in (scans, subjects):
        parts = [rank_case_order(count, RANKS, rank, (0, 0), 3) for rank in range(RANKS)]
        joined = np.concatenate(parts)
        assert len(joined) == count and len(np.unique(joined)) == count
    for step in range(100):  # what every loader worker computes per step
        for rank in range(RANKS):
            draw = StepDraw(0, step, rank, RANKS)
            draw.cases(scans, draw.samples(4))
    return {"note": f"{RANKS} ranks x (scans, subjects) + 100 steps x {RANKS} ranks of draws"}


STEPS = {"convert": step_convert, "fingerprint": step_fingerprint, "plan": step_plan,
         "preprocess_shard": step_preprocess_shard, "resume_decide": step_resume_decide,
         "merge_index": step_merge_index, "startup_listing": step_startup_listing, "pair_sampler": _PairSampler(),
         "shard_rerun": step_shard_rerun, "partition": step_partition}


# ------------------------------------------------------------------ synthesised finished shards

def _template_files(folder: Path, case_id: str) -> tuple[list[Path], Path]:
    """(array files, CASE.json) of one finished case, whatever the store's array format."""
    files = [p for p in folder.iterdir() if p.name.startswith((f"{case_id}.", f"{case_id}_seg."))]
    properties = [p for p in files if p.suffix == ".json"]
    assert len(properties) == 1, files
    return [p for p in files if p.suffix != ".json"], properties[0]


def synthesise_shards(context: dict, shard_indices: list[int]) -> int:
    """Finish these shards the cheap way, as their runs would leave them: every case a copy of one real case's
    array files and its CASE.json re-labelled, and the shard's own part of the case index. Returns the
    number of cases written."""
    from fomo_nn.datasets.manifest import load_manifest
    from fomo_nn.preprocessing.case_index import IndexWriter, case_index
    from fomo_nn.preprocessing.sharding import Shard, select_shard

    raw_dir, preprocessed_dir = _folders(context)
    folder = preprocessed_dir / _plans(context).configuration
    manifest = load_manifest(raw_dir)
    by_id = {image.image_id: image for image in manifest.images}
    template = context["template_case"]
    arrays, properties_path = _template_files(folder, template)
    payloads = {array.name[len(template):]: array.read_bytes() for array in arrays}  # a few KB: tiny volumes
    properties = json.loads(properties_path.read_text())
    shards = {index: select_shard(by_id, Shard(index, context["shards"])) for index in shard_indices}
    for ids in shards.values():
        for case_id in ids:
            image = by_id[case_id]
            for suffix, payload in payloads.items():
                (folder / (case_id + suffix)).write_bytes(payload)
            (folder / f"{case_id}.json").write_text(json.dumps(
                {**properties, "case_id": case_id, "subject": image.subject, "session": image.session,
                 "sequence": image.sequence, "image_files": [manifest.absolute_path(image)]}))
    written = [case_id for ids in shards.values() for case_id in ids]
    with contextlib.redirect_stderr(io.StringIO()):  # the store's note that it read these CASE.json
        entries = case_index(folder, written, progress=False)  # one listing for all these shards
    for index, ids in shards.items():
        with IndexWriter(folder, Shard(index, context["shards"]), {c: entries[c] for c in ids}):
            pass
    return len(written)


def _shard_ids(context: dict, index: int) -> list[str]:
    from fomo_nn.datasets.manifest import load_manifest
    from fomo_nn.preprocessing.sharding import Shard, select_shard

    images = load_manifest(_folders(context)[0]).images
    return select_shard([image.image_id for image in images], Shard(index, context["shards"]))


# ------------------------------------------------------------------ one corpus size

def bench_size(scans: int, args, workdir: Path) -> list[dict]:
    root = workdir / f"scans_{scans}"
    context = {"workdir": str(workdir), "corpus": str(root / "corpus"), "raw_root": str(root / "raw"),
               "preprocessed_root": str(root / "preprocessed"), "results_root": str(root / "results"),
               "scans": scans, "workers": args.num_workers, "shards": max(2, round(scans / args.shard_size)),
               "layout": args.layout}
    started = time.perf_counter()
    if args.layout == "fomo300k":
        written, subjects, sessions, context["zipped"] = build_fomo300k_tree(Path(context["corpus"]), scans)
    else:
        written, subjects, sessions = build_tree(Path(context["corpus"]), scans)
    context["subjects"] = subjects
    print(f"\n{scans} scans ({args.layout} layout): {subjects} subjects, {sessions} sessions, tree built in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    results = []

    def run(name: str) -> None:
        result = {**run_step(name, context), "scans": scans}
        results.append(result)
        print(_row(result), flush=True)

    for name in ("convert", "fingerprint", "plan", "preprocess_shard"):
        run(name)
    context["template_case"] = _shard_ids(context, 1)[0]
    others = [k for k in range(context["shards"]) if k != 1]
    first_half = others[: context["shards"] // 2 - 1]
    started = time.perf_counter()
    context["finished"] = len(_shard_ids(context, 1)) + synthesise_shards(context, first_half)
    print(f"  (synthesised {len(first_half)} shards in {time.perf_counter() - started:.1f} s: "
          f"{context['finished']} of {scans} cases finished)", flush=True)
    run("resume_decide")
    started = time.perf_counter()
    context["finished"] += synthesise_shards(context, others[len(first_half):])
    print(f"  (synthesised the other {len(others) - len(first_half)} shards, each with its index part, in "
          f"{time.perf_counter() - started:.1f} s: the corpus is finished)", flush=True)
    for name in ("merge_index", "startup_listing", "pair_sampler", "shard_rerun", "partition"):
        run(name)
    if not args.keep:
        started = time.perf_counter()
        shutil.rmtree(root, ignore_errors=True)
        print(f"  (work folder removed in {time.perf_counter() - started:.1f} s)", flush=True)
    return results


# ------------------------------------------------------------------ report

def _row(r: dict) -> str:
    if r.get("error"):
        return f"  {r['step']:<18} ERROR {r['error']}"
    workers = f"{r['worker_peak_mb']:7.0f}" if r.get("worker_peak_mb") else "      -"
    return (f"  {r['step']:<18} {r['seconds']:7.2f} s ({r['cpu_seconds']:6.2f} CPU s)  peak {r['peak_mb']:5.0f} MB "
            f"+{r['growth_mb']:5.0f} MB  worker {workers} MB  opens {r['opens']:6d}  listings {r['listings']:4d}  "
            f"{r.get('note', '')}")


def slope(sizes, values, floor: float) -> float | None:
    """Least-squares slope of log(value) on log(size); values below `floor` are measurement noise."""
    pairs = [(s, max(v, floor)) for s, v in zip(sizes, values) if v is not None]
    if len(pairs) < 2 or len({s for s, _ in pairs}) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def _flag(value: float | None) -> str:
    if value is None:
        return "-"
    return f"**{value:.2f} super-linear**" if value > SLOPE_LIMIT else f"{value:.2f}"


def markdown(results: list[dict]) -> str:
    """Two tables: time (wall / CPU seconds, slope of the CPU time) and memory + files opened."""
    sizes = sorted({r["scans"] for r in results})
    by_step = {step: {r["scans"]: r for r in results if r["step"] == step and not r.get("error")} for step in STEPS}
    header = " | ".join(f"{s:,} scans" for s in sizes)
    time_lines = [f"| step | {header} | slope (CPU) |", "|---|" + "---:|" * (len(sizes) + 1)]
    memory_lines = [f"| step | {header} | slope (growth) |", "|---|" + "---:|" * (len(sizes) + 1)]
    for step, rows in by_step.items():
        if not rows:
            continue
        known = [s for s in sizes if s in rows]
        times = [f"{rows[s]['seconds']:.2f} / {rows[s]['cpu_seconds']:.2f}" if s in rows else "-" for s in sizes]
        memory = [(f"{rows[s]['peak_mb']:.0f} (+{rows[s]['growth_mb']:.0f}) / "
                   f"{rows[s]['worker_peak_mb'] or 0:.0f} / {rows[s]['opens']:,}") if s in rows else "-" for s in sizes]
        cpu_slope = slope(known, [rows[s]["cpu_seconds"] for s in known], 0.02)
        memory_slope = slope(known, [rows[s]["growth_mb"] for s in known], 5.0)
        time_lines.append(f"| {step} | " + " | ".join(times) + f" | {_flag(cpu_slope)} |")
        memory_lines.append(f"| {step} | " + " | ".join(memory) + f" | {_flag(memory_slope)} |")
    return ("wall s / CPU s (the step's process and its workers):\n\n" + "\n".join(time_lines)
            + "\n\npeak RSS MB (+ growth during the step) / largest worker's peak RSS MB (0: no workers) / "
              "files opened:\n\n" + "\n".join(memory_lines))


def default_workdir() -> str:
    """tmpfs when there is one with room for the 60K corpus (~1 GB), else the system temp folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4e9:
        return str(shm)
    return tempfile.gettempdir()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[6000, 20000, 60529], help="scans per corpus")
    parser.add_argument("--layout", choices=tuple(DATASETS), default="fomo60k",
                        help="corpus layout and converter: fomo60k (default) or fomo300k (zips, tables)")
    parser.add_argument("-np", "--num-workers", type=int, default=2, help="worker processes of the parallel steps")
    parser.add_argument("--shard-size", type=int, default=1000, help="cases per preprocessing shard")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (printed)")
    parser.add_argument("--workdir", default=default_workdir(),
                        help="where the work folders go (default: /dev/shm when it has room, else the system temp "
                             "folder: deleting 60K fresh files from a busy disk took minutes here)")
    parser.add_argument("--json", help="write every step's measurements here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench_corpus_scale_", dir=args.workdir))
    started = time.perf_counter()
    results = []
    try:
        for scans in sorted(args.sizes):
            results += bench_size(scans, args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work folders kept in {workdir}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s\n")
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    failed = [r for r in results if r.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
