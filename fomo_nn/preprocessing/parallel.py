"""Run one function over many items in worker processes, and notice when a worker dies.

A worker killed by the out-of-memory killer makes `ProcessPoolExecutor` raise BrokenProcessPool
on every pending future; we turn that into WorkerDiedError listing the items that were in flight
(one of them is the culprit) instead of hanging. Only a few items per worker are in flight at a
time, so that list stays short and a 60K-item run does not queue 60K futures.

The other way round, workers outlive a parent killed with `kill -9` (their queues never close, so
they would wait forever): each worker exits as soon as its parent is gone, by PR_SET_PDEATHSIG on
Linux (immediate, even inside a long C call) and a watchdog thread everywhere (polls the parent).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from tqdm import tqdm

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
IN_FLIGHT_PER_WORKER = 2
PARENT_POLL_SECONDS = 0.5


def default_num_processes(cap: int = 8) -> int:
    """The `-np` default of every command: the cores this process may use (a SLURM or taskset
    allocation, not the host's count), at most `cap`."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, min(cap, available))
_PR_SET_PDEATHSIG = 1


class WorkerDiedError(RuntimeError):
    """A worker process exited abruptly (killed for memory, segfault) while these items were running."""

    def __init__(self, in_flight: list[str]):
        self.in_flight = sorted(in_flight)
        super().__init__("a worker process died (most often killed for lack of memory) while processing: "
                         f"{', '.join(self.in_flight)}. Finished work is kept; rerun to resume, with fewer "
                         "workers (-np) if memory is short.")


@contextmanager
def single_threaded_children():
    """Workers inherit one BLAS/OpenMP thread each: N workers, N cores, no oversubscription."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_parallel(function: Callable, items: Sequence, keys: Sequence[str], num_workers: int,
                 description: str = "", progress: bool = True) -> Iterator[tuple[str, object]]:
    """Yield (key, function(item)) as items finish; in this process when num_workers <= 1.

    `function` must be importable by name (workers are spawned, not forked: no inherited locks
    or thread pools from the parent). Exceptions raised by `function` propagate.
    """
    if len(items) != len(keys):
        raise ValueError("items and keys must have the same length")
    bar = tqdm(total=len(items), desc=description, disable=not progress or not items, unit="case")
    try:
        if num_workers <= 1:
            for key, item in zip(keys, items):
                yield key, function(item)
                bar.update()
            return
        yield from _run_in_pool(function, items, keys, num_workers, bar)
    finally:
        bar.close()


def exit_with_parent(parent_pid: int, death_signal: bool) -> None:
    """Worker initializer: end this worker when `parent_pid` dies.

    `death_signal` only when the pool was made in the parent's main thread: Linux sends the signal
    when the *thread* that started the worker ends, which for the main thread means the process.
    """
    if death_signal and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl here: the watchdog below still ends the worker
    if os.getppid() != parent_pid:  # the parent died before this worker got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # orphaned: nobody will read our results


def _run_in_pool(function, items, keys, num_workers, bar):
    pending_items = iter(zip(keys, items))
    in_flight = {}
    death_signal = threading.current_thread() is threading.main_thread()
    with single_threaded_children(), ProcessPoolExecutor(
            max_workers=num_workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent, initargs=(os.getpid(), death_signal)) as pool:
        try:
            _top_up(pool, function, pending_items, in_flight, num_workers * IN_FLIGHT_PER_WORKER)
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    key = in_flight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise WorkerDiedError([key, *in_flight.values()]) from None
                    yield key, result
                    bar.update()
                _top_up(pool, function, pending_items, in_flight, num_workers * IN_FLIGHT_PER_WORKER)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _top_up(pool, function, pending_items, in_flight, limit):
    while len(in_flight) < limit:
        try:
            key, item = next(pending_items)
        except StopIteration:
            return
        try:
            in_flight[pool.submit(function, item)] = key
        except BrokenProcessPool:
            raise WorkerDiedError([key, *in_flight.values()]) from None
