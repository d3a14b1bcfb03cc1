"""Which cases a preprocessing run set out to write, so training can tell a finished dataset from a partial one.

A run writes its plan before its first case: `_planned.plan` (a whole run: every case id the raw dataset
lists as usable) or `_planned.shard_I_of_N.plan` (shard I of N: its own cases, and N, so a shard never
started is missed too), holding the preprocessing signature and, rewritten when the run ends, the cases
it reported bad (told to the user then; training goes on without them). A whole run removes the shards'
plans (its own covers them). Names start with '_', so no case is ever called so.

Training compares the plan with the finished cases (`incomplete_cases`): a case planned, not reported bad
and not finished (a killed run, a deleted CASE.json) refuses the dataset (case_store.list_cases) unless
`--allow-incomplete-dataset` says to train on what exists. A folder without a plan (written before plans
were recorded, or by hand) counts only its unfinished cases.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fomo_nn.utils.files import write_json_atomic

PLAN_PREFIX, PLAN_SUFFIX = "_planned", ".plan"
PLAN_VERSION = 1


def plan_name(shard=None) -> str:
    return f"{PLAN_PREFIX}{PLAN_SUFFIX}" if shard is None else \
        f"{PLAN_PREFIX}.shard_{shard.index}_of_{shard.count}{PLAN_SUFFIX}"


def write_plan(folder: str | Path, shard, signature: str, case_ids, bad=None) -> Path:
    """Record what this run (whole, or one shard) sets out to write; a whole run drops the shards' plans."""
    folder = Path(folder)
    path = folder / plan_name(shard)
    write_json_atomic(path, {"version": PLAN_VERSION, "signature": signature, "cases": sorted(case_ids),
                             "shard": None if shard is None else [shard.index, shard.count],
                             "bad": {case_id: str(problem)[:300] for case_id, problem in sorted((bad or {}).items())}},
                      indent=None)
    if shard is None:
        for other in folder.glob(f"{PLAN_PREFIX}.shard_*{PLAN_SUFFIX}"):
            other.unlink(missing_ok=True)
    return path


@dataclass
class DatasetPlan:
    """The union of a folder's run plans for one signature."""

    cases: set[str] = field(default_factory=set)
    bad: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    missing_shards: list[str] = field(default_factory=list)  # "I/N" of shards whose run never started

    @property
    def recorded(self) -> bool:
        return bool(self.files)


def read_plan(folder: str | Path, signature: str) -> DatasetPlan:
    """What the folder's runs for `signature` set out to write (plans of other signatures are other plans'
    cases, refused as stale by the case format anyway; an unreadable plan file is ignored)."""
    plan, shards, whole = DatasetPlan(), {}, False
    for path in sorted(Path(folder).glob(f"{PLAN_PREFIX}*{PLAN_SUFFIX}")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("version") != PLAN_VERSION or data.get("signature") != signature:
            continue
        plan.cases |= {str(c) for c in data.get("cases") or []}
        plan.bad.update({str(c): str(p) for c, p in (data.get("bad") or {}).items()})
        plan.files.append(path)
        if path.name == plan_name():
            whole = True
        elif isinstance(data.get("shard"), list) and len(data["shard"]) == 2:
            shards.setdefault(int(data["shard"][1]), set()).add(int(data["shard"][0]))
    if not whole:
        plan.missing_shards = [f"{i}/{n}" for n, seen in sorted(shards.items()) for i in range(n) if i not in seen]
    return plan


def incomplete_cases(plan: DatasetPlan, finished, unfinished) -> list[str]:
    """Cases planned (or begun) and neither finished nor reported bad, sorted."""
    finished = set(finished)
    missing = (plan.cases | set(unfinished)) - finished - set(plan.bad)
    return sorted(missing)
