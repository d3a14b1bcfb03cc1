"""Per-epoch metrics: a JSON-lines log and a progress.png a person can glance at."""
from __future__ import annotations

import json
from pathlib import Path


class ProgressLog:
    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "training_log.jsonl"
        self.plot_path = Path(output_dir) / "progress.png"
        self.records: list[dict] = []
        if self.path.is_file():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """Forget epochs a resumed run will redo (they were logged after the checkpoint)."""
        self.records = [r for r in self.records if r["epoch"] < epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict) -> None:
        self.records.append(record)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.records:
            return
        epochs = [r["epoch"] for r in self.records]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
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
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=80)
        plt.close(fig)
