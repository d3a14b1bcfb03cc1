"""Per-epoch metrics: a JSON-lines log and a progress.png a person can glance at.

Pretraining with an online probe also keeps ``online_probe.jsonl`` (one row per measurement, the
first before any step) and plots its curves beside the loss. A full disk is NoSpaceLeftError naming
the file; rewrites (a truncated log, the plot) are atomic, so the old file stays whole.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import is_no_space, no_space_error, write_atomically, write_text_atomic


class ProgressLog:
    """The logs of one fold folder. `resume_epoch` None: a fresh run, whose log starts empty (an
    earlier run's lines are not its own); an epoch: a resumed run, which keeps what came before it."""

    def __init__(self, output_dir: str | Path, resume_epoch: int | None = None):
        self.path = Path(output_dir) / "training_log.jsonl"
        self.probe_path = Path(output_dir) / "online_probe.jsonl"
        self.plot_path = Path(output_dir) / "progress.png"
        self.records = _read_jsonl(self.path) if resume_epoch is not None else []
        self.probe_records = _read_jsonl(self.probe_path) if resume_epoch is not None else []
        self.truncate_after(resume_epoch or 0)

    def truncate_after(self, epoch: int) -> None:
        """Forget epochs a resumed run will redo (they were logged after the checkpoint)."""
        self.records = [r for r in self.records if r["epoch"] < epoch]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        # probe row k was measured after k finished epochs: rows up to `epoch` stay
        self.probe_records = [r for r in self.probe_records if r["epochs_done"] <= epoch]
        if self.probe_path.is_file():
            write_text_atomic(self.probe_path, "".join(json.dumps(r) + "\n" for r in self.probe_records))

    def append(self, record: dict) -> None:
        self.records.append(record)
        _append_line(self.path, record)

    def append_probe(self, record: dict) -> None:
        """One online-probe measurement: {'epochs_done', 'step', 'probe_<dataset>_<metric>': value, ...}."""
        self.probe_records.append(record)
        _append_line(self.probe_path, record)

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.records:
            return
        epochs = [r["epoch"] for r in self.records]
        panels = 4 if self.probe_records else 3
        fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
        axes[0].plot(epochs, [r.get("train_loss") for r in self.records], label="train loss")
        if any("val_loss" in r for r in self.records):
            axes[0].plot(epochs, [r.get("val_loss") for r in self.records], label="validation loss")
        axes[0].set_xlabel("epoch")
        axes[0].legend()
        metric = next((k for k in ("val_metric",) if any(k in r for r in self.records)), None)
        if metric:
            name = self.records[-1].get("val_metric_name", metric)
            axes[1].plot(epochs, [r.get(metric) for r in self.records], color="tab:green", label=name)
            axes[1].legend()
        axes[1].set_xlabel("epoch")
        lr_axis = axes[2]
        lr_axis.plot(epochs, [r.get("lr") for r in self.records], color="tab:orange", label="learning rate")
        time_axis = lr_axis.twinx()
        time_axis.plot(epochs, [r.get("epoch_time") for r in self.records], color="tab:gray", label="epoch time (s)")
        lr_axis.set_xlabel("epoch")
        lr_axis.legend(loc="upper left")
        time_axis.legend(loc="upper right")
        if self.probe_records:
            self._plot_probe(axes[3])
        fig.tight_layout()
        try:
            write_atomically(self.plot_path, lambda temp: fig.savefig(temp, dpi=80, format="png"), ".png.part")
        finally:
            plt.close(fig)

    def _plot_probe(self, axis) -> None:
        """Online-probe curves against finished epochs (0 = the encoder before any step)."""
        keys = sorted({k for r in self.probe_records for k in r if k.startswith("probe_")})
        done = [r["epochs_done"] for r in self.probe_records]
        for key in keys:
            axis.plot(done, [r.get(key, float("nan")) for r in self.probe_records], marker="o", label=key[6:])
        axis.set_xlabel("epochs done (0 = before training)")
        axis.set_title("online probe (in-domain CV)")
        axis.legend(fontsize=7)


def _append_line(path: Path, record: dict) -> None:
    """One JSON line at the end of `path` (a write cut short by a full disk or a kill is a torn last line,
    which `_read_jsonl` drops on resume)."""
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as error:
        if is_no_space(error):
            raise no_space_error(error, path) from None
        raise


def _read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines log. A torn last line (a kill mid-write: unparsable, no newline after
    it) is dropped with a warning; any other bad line is not a kill's doing, so it is refused with the
    file and line named."""
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    torn_possible = not text.endswith("\n")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as error:
            if index == len(lines) - 1 and torn_possible:
                print(f"[fomo_nn] warning: {path}: dropping torn last line {number} (an interrupted write)",
                      file=sys.stderr)
                break
            raise BadInputError(path, f"line {number} is not a log record ({error}); fix or delete that line, "
                                      "or start afresh with --overwrite") from None
        records.append(record)
    return records
