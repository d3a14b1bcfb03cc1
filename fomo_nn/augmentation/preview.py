"""A PNG grid that shows a person what each augmentation pipeline does to one of their volumes.

Rows: original (centre crop), spatial only, intensity only, artifacts only, full pipeline.
Columns: random draws (sample k uses seed + k, the same seed in every row). Each cell shows the mid
axial and mid coronal slice of the first channel side by side, on the original's grey scale, and is
titled with the transforms that actually fired in that draw; the segmentation, when given, is drawn
as a red contour.
"""
from __future__ import annotations

import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform  # noqa: E402
from batchgeneratorsv2.transforms.utils.random import RandomTransform  # noqa: E402

from fomo_nn.augmentation.composition import CopyImageToTarget, SpatialStage  # noqa: E402
from fomo_nn.augmentation.patch_size import initial_patch_size  # noqa: E402
from fomo_nn.augmentation.pipeline import build_augmentation_stages, build_validation_pipeline  # noqa: E402
from fomo_nn.augmentation.plan import resolve_augmentation_plan  # noqa: E402
from fomo_nn.augmentation.spatial import AxisMirrorTransform, describe_spatial_draw  # noqa: E402

ROWS = ("original", "spatial", "intensity", "artifacts", "full")
_AXIS_NAMES = "xyz"


def render_augmentation_preview(volume: np.ndarray, aug_plan: dict, patch_size, out_png: str, seed: int = 0,
                                n_samples: int = 4, segmentation=None) -> str:
    """Write the preview grid to `out_png` (parent folders created) and return its path."""
    image = _as_channels(np.asarray(volume), "volume")
    seg = None if segmentation is None else _as_channels(np.asarray(segmentation), "segmentation")
    if seg is not None and seg.shape[1:] != image.shape[1:]:
        raise ValueError(f"segmentation shape {seg.shape[1:]} differs from volume shape {image.shape[1:]}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    plan = resolve_augmentation_plan(aug_plan)
    patch_size = tuple(int(p) for p in patch_size)
    stages = build_augmentation_stages(plan, patch_size, is_segmentation=seg is not None)
    read_size = initial_patch_size(patch_size, plan)
    read = _sample(image, seg, read_size)
    original = build_validation_pipeline(patch_size)(**_copy(read))

    row_transforms = {
        "spatial": (read, list(stages.spatial.transforms)),
        "intensity": (original, stages.intensity),
        "artifacts": (original, stages.artifacts),
        "full": (read, list(stages.spatial.transforms) + stages.artifacts + stages.intensity),
    }
    low, high = np.percentile(original["image"][0].numpy(), [0.5, 99.5])
    fig, axes = plt.subplots(len(ROWS), n_samples, figsize=(3.4 * n_samples, 2.3 * len(ROWS)), squeeze=False)
    for row, name in enumerate(ROWS):
        for k in range(n_samples):
            if name == "original":
                result, fired = original, ["centre crop"]
            else:
                start, transforms = row_transforms[name]
                _seed_everything(seed + k)
                result, fired = run_and_describe(transforms, _copy(start))
            _draw_cell(axes[row][k], result, low, high, ", ".join(fired) or "nothing drawn")
        axes[row][0].set_ylabel(f"{name}\n{_row_label(name, plan)}", fontsize=7)
    fig.suptitle(f"augmentation preview: patch {patch_size}, read {read_size}, seed {seed} "
                 "(left: mid axial, right: mid coronal; channel 0)", fontsize=9)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def run_and_describe(transforms, sample: dict) -> tuple[dict, list[str]]:
    """Apply transforms in order (same draws as the composed pipeline) and name what each one did."""
    fired = []
    for transform in transforms:
        if isinstance(transform, SpatialStage):
            sample, names = run_and_describe(transform.transforms, sample)
            fired += names
            continue
        params = transform.get_parameters(**sample)
        sample = transform.apply(sample, **params)
        fired += _describe(transform, params)
    return sample, fired


def _describe(transform, params: dict) -> list[str]:
    if isinstance(transform, RandomTransform):
        return [getattr(transform, "name", type(transform.transform).__name__)] if params["apply_transform"] else []
    if isinstance(transform, SpatialTransform):
        return describe_spatial_draw(params)
    if isinstance(transform, AxisMirrorTransform):
        return [f"mirror {''.join(_AXIS_NAMES[a] for a in params['axes'])}"] if params["axes"] else []
    if isinstance(transform, CopyImageToTarget):
        return []
    return [getattr(transform, "name", type(transform).__name__)]


def _row_label(name: str, plan: dict) -> str:
    """The row's enabled transforms with their probabilities, two per line."""
    if name == "original":
        return "centre crop"
    if name == "full":
        target = "\nclean target kept" if plan["keep_clean_target"] else ""
        return f"spatial -> artifacts\n-> intensity{target}"
    enabled = [f"{key} {cfg['p']:g}" for key, cfg in plan[name].items() if isinstance(cfg, dict) and cfg["p"] > 0]
    if not enabled:
        return "(none enabled)"
    return "\n".join(", ".join(enabled[i:i + 2]) for i in range(0, len(enabled), 2))


def _draw_cell(ax, sample: dict, low: float, high: float, title: str) -> None:
    ax.imshow(_panel(sample["image"][0].numpy()), cmap="gray", vmin=low, vmax=high, origin="lower")
    if sample.get("segmentation") is not None:
        labels = (sample["segmentation"][0].numpy() > 0).astype(float)
        if labels.any():
            ax.contour(_panel(labels), levels=[0.5], colors="r", linewidths=0.6, origin="lower")
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _panel(volume: np.ndarray) -> np.ndarray:
    """Mid axial (x across, y up) and mid coronal (x across, z up) slices side by side."""
    axial = volume[:, :, volume.shape[2] // 2].T
    coronal = volume[:, volume.shape[1] // 2, :].T
    height = max(axial.shape[0], coronal.shape[0])
    axial, coronal = (np.pad(a.astype(float), ((0, height - a.shape[0]), (0, 0)), constant_values=np.nan)
                      for a in (axial, coronal))
    return np.concatenate([axial, np.full((height, 2), np.nan), coronal], axis=1)


def _as_channels(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 3:
        return array[None]
    if array.ndim == 4:
        return array
    raise ValueError(f"{what} must be (X, Y, Z) or (C, X, Y, Z), got shape {array.shape}")


def _sample(image: np.ndarray, seg, size) -> dict:
    sample = {"image": torch.from_numpy(_centre_crop(image.astype(np.float32), size))}
    if seg is not None:
        sample["segmentation"] = torch.from_numpy(_centre_crop(seg.astype(np.int16), size))
    return sample


def _centre_crop(array: np.ndarray, size) -> np.ndarray:
    """Centre crop of the spatial axes to `size`, zero padded where the volume is smaller."""
    out = np.zeros(array.shape[:1] + tuple(size), dtype=array.dtype)
    src, dst = [], []
    for have, want in zip(array.shape[1:], size):
        lo = (have - want) // 2
        src.append(slice(max(lo, 0), max(lo, 0) + min(have, want)))
        dst.append(slice(max(-lo, 0), max(-lo, 0) + min(have, want)))
    out[(slice(None), *dst)] = array[(slice(None), *src)]
    return out


def _copy(sample: dict) -> dict:
    return {key: value.clone() for key, value in sample.items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
