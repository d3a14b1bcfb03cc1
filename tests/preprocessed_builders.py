"""Small preprocessed datasets written directly (arrays + properties + plans) for trainer tests.

They bypass conversion and planning so trainer tests stay fast and independent; the end-to-end
tests go through the real commands. Cases go through the real writer (case_store.write_case) for
the plans saved beside them (their storage and plans), so training reads them as finished.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fomo_nn.plans import NetworkPlan, NormalizationPlan, Plans, TrainingPlan, load_plans, save_plans
from fomo_nn.preprocessing.case_store import PreprocessedCase, list_cases, write_case

TINY_NETWORK = dict(features_per_stage=[8, 16, 32], kernel_sizes=[[3, 3, 3]] * 3,
                    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1],
                    n_conv_per_stage_decoder=[1, 1])


def tiny_plans(task_type: str, channel_names: list[str], patch=(32, 32, 32), fusion: str | None = None,
               augmentation: dict | None = None, **training) -> Plans:
    multi = len(channel_names) > 1 and task_type != "pretraining"
    network = NetworkPlan(**TINY_NETWORK, input_channels=1 if task_type == "pretraining" else len(channel_names),
                          fusion=fusion or ("stem_expansion" if multi else "none"))
    defaults = dict(epochs=3, iterations_per_epoch=4, validation_iterations=2, num_workers=0, warmup_epochs=0,
                    learning_rate=1e-3, checkpoint_every=1)
    defaults.update(training)
    extra = {}
    if task_type == "segmentation":
        extra["labels"] = {"background": 0, "lesion": 1}
    elif task_type == "classification":
        extra["classes"] = {"0": "negative", "1": "positive"}
    elif task_type == "regression":
        extra["target"] = {"name": "age", "unit": "years"}
    return Plans(dataset_name="Dataset900_Tiny", task_type=task_type, channel_names=channel_names,
                 target_spacing=[1.0, 1.0, 1.0], spacing_reason="test", median_shape=[40, 40, 40],
                 patch_size=list(patch), batch_size=2,
                 normalization=[NormalizationPlan() for _ in channel_names], network=network,
                 training=TrainingPlan(**defaults), augmentation=augmentation or {}, **extra)


def _brain(shape, rng, scale=1.0):
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.8, 0.9, 0.75])[:, None, None, None]) ** 2).sum(0))
    brain = (radius < 1).astype(np.float32)
    texture = rng.normal(0, 0.2, size=shape).astype(np.float32)
    return brain, radius, grid, brain * (scale + texture)


def _properties(case_id, shape, target=None, subject=None, session=None, sequence=None, fg=None):
    return {"case_id": case_id, "image_properties": {"ras_affine": np.eye(4).tolist(), "spacing": [1.0, 1.0, 1.0]},
            "shape_before_crop": list(shape), "crop_bbox": [[0, s] for s in shape], "shape_after_crop": list(shape),
            "spacing_original": [1.0, 1.0, 1.0], "spacing_target": [1.0, 1.0, 1.0],
            "shape_after_resampling": list(shape), "target": target, "subject": subject, "session": session,
            "sequence": sequence, "foreground_locations": {"1": fg} if fg is not None else {}}


def build_preprocessed(root: str | Path, task_type: str, num_cases: int = 12, shape=(40, 40, 40), seed: int = 0,
                       channels: int | None = None, plans: Plans | None = None, lesion_masks: bool = False,
                       **plan_options) -> Path:
    """A preprocessed dataset folder with a learnable signal for each task type; returns the folder.

    `lesion_masks` (classification): every case also gets CASE_seg.b2nd, the positives' blob (empty for
    negatives), and the plans declare auxiliary_labels, as preprocessing writes task 1 with its masks.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "Dataset900_Tiny"
    cases_dir = folder / "3d_fullres"
    cases_dir.mkdir(parents=True, exist_ok=True)
    channels = channels or (1 if task_type in ("pretraining", "regression") else 2)
    names = ["mri"] if task_type == "pretraining" else [f"seq{c}" for c in range(channels)]
    plans = plans or tiny_plans(task_type, names, **plan_options)
    if lesion_masks:
        plans = plans.replace(auxiliary_labels={"background": 0, "infarct": 1})
    for index in range(num_cases):
        if task_type == "pretraining":
            subject = f"sub_{index // 4}"
            session = f"ses_{(index // 2) % 2 + 1}"
            brain, radius, grid, image = _brain(shape, rng, scale=1.0 + 0.5 * (index % 2))
            image = image * (1 + 0.3 * grid[0])  # structure a model can reconstruct
            write_case(cases_dir, f"img_{index:03d}", image[None], None, _properties(
                f"img_{index:03d}", shape, subject=subject, session=session, sequence=["t1", "t2"][index % 2]),
                plans)
            continue
        brain, radius, grid, _ = _brain(shape, rng)
        stack = np.stack([_brain(shape, rng)[3] for _ in range(channels)])
        case_id = f"case_{index:03d}"
        if task_type == "classification":
            label = index % 3 != 0
            blob = np.zeros(shape, bool)
            if label:
                blob = ((grid - np.array([0.3, 0.2, 0.0])[:, None, None, None]) ** 2).sum(0) < 0.08
                stack[:, blob] += 2.0
            fg = np.argwhere(blob).tolist() if lesion_masks and label else None
            write_case(cases_dir, case_id, stack, blob[None] if lesion_masks else None,
                       _properties(case_id, shape, target=float(label), fg=fg), plans)
        elif task_type == "regression":
            age = float(rng.uniform(20, 90))
            ventricle = radius < 0.15 + 0.5 * (age - 20) / 70
            stack[:, ventricle] = -1.5
            write_case(cases_dir, case_id, stack, None, _properties(case_id, shape, target=age), plans)
        elif task_type == "segmentation":
            centre = rng.uniform(-0.4, 0.4, size=3)
            mask = ((grid - centre[:, None, None, None]) ** 2).sum(0) < 0.06
            stack[:, mask] += 2.5
            fg = np.argwhere(mask)[:200].tolist()
            write_case(cases_dir, case_id, stack, mask[None], _properties(case_id, shape, fg=fg), plans)
    save_plans(plans, folder / "plans.json")
    return folder


def cases_of(folder: str | Path) -> list[PreprocessedCase]:
    """The cases of a built dataset, read as training reads them (checked against its plans.json)."""
    plans = load_plans(folder)
    return list_cases(Path(folder) / plans.configuration, plans)
