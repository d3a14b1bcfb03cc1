"""Resumable stages: each finished stage leaves a marker, a rerun starts at the first unfinished one."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fomo_nn.utils.files import write_json_atomic


@dataclass
class Stage:
    name: str
    title: str
    run: Callable[[], dict | None]


class StageRunner:
    def __init__(self, workdir: Path, stages: list[Stage], config: dict):
        self.markers = Path(workdir) / ".stages"
        self.stages = stages
        self.config = json.loads(json.dumps(config))  # as it will read back from disk

    def marker(self, stage: Stage) -> Path:
        return self.markers / f"{stage.name}.json"

    def done(self, stage: Stage) -> bool:
        return self.marker(stage).is_file()

    def check_config(self) -> None:
        """Outputs of one configuration must not be resumed under another (budget, methods, seed)."""
        path = self.markers / "config.json"
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous != self.config:
                raise ValueError(f"{path.parent.parent} holds a run with another configuration ({previous}); "
                                 "use another --workdir or delete this one")
        else:
            write_json_atomic(path, self.config)

    def run(self) -> dict[str, dict]:
        self.check_config()
        results = {}
        for index, stage in enumerate(self.stages, start=1):
            prefix = f"[fomo_nn_demo] stage {index}/{len(self.stages)} {stage.title}"
            if self.done(stage):
                print(f"{prefix}: already done, skipped", file=sys.stderr, flush=True)
                results[stage.name] = json.loads(self.marker(stage).read_text()).get("result") or {}
                continue
            print(f"{prefix} ...", file=sys.stderr, flush=True)
            started = time.time()
            result = stage.run() or {}
            seconds = time.time() - started
            write_json_atomic(self.marker(stage), {"config": self.config, "seconds": seconds, "result": result})
            print(f"{prefix}: done in {seconds:.0f} s", file=sys.stderr, flush=True)
            results[stage.name] = result
        return results
