"""Probe curves of several pretraining runs side by side: quality against pretraining steps."""
from __future__ import annotations

import json
from pathlib import Path

PROBE_PREFIX = "probe_"


def read_probe_curve(path: str | Path) -> list[dict]:
    """The rows of one run's online_probe.jsonl ([] if the run had no online probe)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_probe_curves(curves: dict[str, list[dict]], path: str | Path, references: dict[str, float] | None = None
                      ) -> Path | None:
    """One panel per probe metric, one line per run (x: pretraining step); `references` draws
    horizontal lines (e.g. the mean of random encoders) under the same metric keys. None if no rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for rows in curves.values() for row in rows for k in row if k.startswith(PROBE_PREFIX)})
    if not keys:
        return None
    figure, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys):
        for name, rows in curves.items():
            points = [(row["step"], row[key]) for row in rows if key in row]
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        if references and key in references:
            axis.axhline(references[key], color="gray", linestyle="--", label="random encoders")
        axis.set_title(key[len(PROBE_PREFIX):], fontsize=9)
        axis.set_xlabel("pretraining step")
        axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
