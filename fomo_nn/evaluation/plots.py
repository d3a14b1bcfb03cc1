"""Leaderboard figures as PNG. Figures are built without pyplot, so no GUI backend is ever touched."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fomo_nn.evaluation.metrics import roc_curve
from fomo_nn.evaluation.results import TaskTable

DPI = 120


def _colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def plot_roc_curves(table: TaskTable, names: list[str], auroc: np.ndarray, path: Path) -> Path:
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    for index, colour in zip(np.flatnonzero(table.present), _colours(len(names))):
        fpr, tpr = roc_curve(table.reference, table.columns["probability"][:, index])
        axes.plot(fpr, tpr, color=colour, label=f"{names[index]} (AUROC {auroc[index]:.3f})")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
             title=f"ROC curves, classification ({table.num_cases} cases)")
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def plot_age_scatter(table: TaskTable, names: list[str], mae: np.ndarray, pearson: np.ndarray, path: Path) -> Path:
    present = np.flatnonzero(table.present)
    columns = min(4, present.size)
    rows = int(np.ceil(present.size / columns))
    figure = Figure(figsize=(4 * columns, 4 * rows))
    low = min(table.reference.min(), np.nanmin(table.columns["prediction"][:, present]))
    high = max(table.reference.max(), np.nanmax(table.columns["prediction"][:, present]))
    margin = 0.05 * (high - low or 1.0)
    for slot, (index, colour) in enumerate(zip(present, _colours(len(names)))):
        axes = figure.add_subplot(rows, columns, slot + 1)
        axes.plot([low - margin, high + margin], [low - margin, high + margin], color="grey", linestyle="--",
                  linewidth=1)
        axes.scatter(table.reference, table.columns["prediction"][:, index], s=10, alpha=0.7, color=colour,
                     label=f"MAE {mae[index]:.2f}, r {pearson[index]:.3f}")
        axes.set(title=names[index], xlabel="true", ylabel="predicted", xlim=(low - margin, high + margin),
                 ylim=(low - margin, high + margin), aspect="equal")
        axes.legend(loc="upper left", fontsize="small")
    figure.suptitle(f"Predicted vs true age, regression ({table.num_cases} cases)")
    return _save(figure, path)


def plot_dice_per_case(table: TaskTable, names: list[str], path: Path, seed: int = 0) -> Path:
    present = np.flatnonzero(table.present)
    figure = Figure(figsize=(max(6, 1.2 * present.size + 2), 8))
    jitter = np.random.default_rng(seed).uniform(-0.15, 0.15, size=table.num_cases)
    for row, key in enumerate(("dice", "nsd")):
        axes = figure.add_subplot(2, 1, row + 1)
        values = [table.columns[key][:, index] for index in present]
        scored = [column[~np.isnan(column)] for column in values]  # NaN: an empty pair left unscored ("exclude")
        axes.boxplot(scored, positions=np.arange(present.size), widths=0.5, showfliers=False)
        for slot, (column, colour) in enumerate(zip(values, _colours(len(names)))):
            axes.scatter(slot + jitter, column, s=10, alpha=0.6, color=colour)
        axes.set_xticks(np.arange(present.size), [names[i] for i in present], rotation=30, ha="right")
        axes.set(ylabel=f"{key.upper() if key == 'nsd' else 'Dice'} per case", ylim=(-0.03, 1.03))
    figure.suptitle(f"Segmentation per case ({table.num_cases} cases)")
    return _save(figure, path)


def plot_bootstrap_places(places: np.ndarray, names: list[str], order: list[int], tiers: dict[str, int],
                          path: Path) -> Path:
    """Stacked bars: for each model (leaderboard order), the share of resamples at each place."""
    from matplotlib import colormaps

    num_models = len(names)
    shares = np.stack([np.bincount(places[:, m] - 1, minlength=num_models) / places.shape[0] for m in order])
    figure = Figure(figsize=(8, 0.45 * num_models + 1.8))
    axes = figure.add_subplot()
    palette = colormaps["viridis"]
    left = np.zeros(num_models)
    for place in range(num_models):
        colour = palette(place / max(num_models - 1, 1))
        axes.barh(np.arange(num_models), shares[:, place], left=left, color=colour, label=f"place {place + 1}")
        left += shares[:, place]
    axes.set_yticks(np.arange(num_models), [f"{names[m]} (tier {tiers[names[m]]})" for m in order])
    axes.invert_yaxis()
    axes.set(xlabel=f"share of {places.shape[0]} bootstrap resamples", xlim=(0, 1),
             title="Bootstrap rank distribution (place per resample)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", ncols=1 if num_models <= 12 else 2)
    return _save(figure, path)
