"""Contrastive pretraining (global objective): two views of one subject attract, other subjects repel.

Embedding = global average pool of the encoder bottleneck, then a projection MLP; NT-Xent (SimCLR)
over the 2B projections. Positives (`positives` setting):
- "subject" (default): two scans of one subject, another sequence and/or session (SubjectPairSource,
  same crop in world coordinates, so both show the same part of the head);
- "crops": two random crops of one scan (i.i.d. sampling).
Each view also gets its own intensity jitter and random flips, so the pair is never identical.
Other samples of the same subject in a batch are left out of the negatives. With
`batch_standardize` (default) the projections are standardized across the batch before the cosine
similarities (see losses.batch_standardize: instance-normalized encoders pool to nearly identical
vectors at initialization).
"""
from __future__ import annotations

import torch

from fomo_nn.training.pretraining.base import PretrainingTrainer
from fomo_nn.training.pretraining.losses import batch_standardize, group_codes, nt_xent, scalar
from fomo_nn.training.pretraining.views import crop_shape, make_view, total_stride
from fomo_nn.training.registry import register_trainer

POSITIVES = ("subject", "crops")


def contrastive_settings() -> dict:
    """Defaults. Temperature 0.5 rather than SimCLR's 0.1: 3D patches allow batches of 2-8, and with
    that few negatives a low temperature made the loss erratic (0.5 is also MONAI's default)."""
    return {"positives": "subject", "temperature": 0.5, "projection_hidden": 512, "projection_dim": 128,
            "projection_layers": 2, "crop_scale": 0.75, "view_jitter": 0.1, "view_flips": True,
            "same_session_probability": 0.5, "batch_standardize": True}


def check_contrastive_settings(settings: dict) -> None:
    if settings["positives"] not in POSITIVES:
        raise ValueError(f"setting positives={settings['positives']!r} is not one of {POSITIVES}")
    if not float(settings["temperature"]) > 0:
        raise ValueError(f"setting temperature must be > 0, got {settings['temperature']}")
    if not 0.0 < float(settings["crop_scale"]) <= 1.0:
        raise ValueError(f"setting crop_scale must lie in (0, 1], got {settings['crop_scale']}")
    if not 0.0 <= float(settings["same_session_probability"]) <= 1.0:
        raise ValueError(f"setting same_session_probability must lie in [0, 1], got "
                         f"{settings['same_session_probability']}")


def contrastive_loss(projections: torch.Tensor, groups: torch.Tensor, settings: dict):
    """NT-Xent between the first and second half of `projections` (views a and b of each sample)."""
    if settings["batch_standardize"]:
        projections = batch_standardize(projections)
    half = projections.shape[0] // 2
    return nt_xent(projections[:half], projections[half:], float(settings["temperature"]), groups)


def positive_views(batch: dict, settings: dict, stride, generator: torch.Generator) -> dict:
    """inputs_a/b (jittered), targets_a/b (clean, same crops and flips) and group codes (B,)."""
    jitter, flips = float(settings["view_jitter"]), bool(settings["view_flips"])
    image, target = batch["image"], batch["target"]
    if settings["positives"] == "subject":
        size = tuple(image.shape[2:])
        pairs = ((image, target), (batch["image_pair"], batch["target_pair"]))
        groups = group_codes(batch["subject"])
    else:
        size = crop_shape(image.shape[2:], float(settings["crop_scale"]), stride)
        pairs = ((image, target), (image, target))
        groups = group_codes(batch["case_id"])
    (inputs_a, targets_a), (inputs_b, targets_b) = (make_view(x, size, generator, jitter, flips, target=t)
                                                    for x, t in pairs)
    return {"inputs_a": inputs_a, "inputs_b": inputs_b, "targets_a": targets_a, "targets_b": targets_b,
            "groups": groups}


class ContrastivePositivesTrainer(PretrainingTrainer):
    """What every NT-Xent trainer shares: positives from subject pairs, or two crops of one scan."""

    sampling = "subject_pairs"  # "iid" with positives=crops
    min_validation_subjects = 2  # NT-Xent needs negatives from another subject
    min_batch_size = 2  # and the batch needs samples of two subjects for them

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.method["positives"] == "crops":
            self.sampling = "iid"


@register_trainer
class ContrastiveTrainer(ContrastivePositivesTrainer):
    name = "contrastive"
    # two views per sample through the encoder only (no decoder): 0.83x (measured, RESULTS.md)
    memory_multiplier = 0.9
    description = "NT-Xent on pooled bottleneck + projection; positives = two scans of a subject or two crops (global)"
    augmentation_family = "pretraining_contrastive"

    def default_method_settings(self) -> dict:
        return contrastive_settings()

    def check_settings(self) -> None:
        check_contrastive_settings(self.method)

    def compute_loss(self, batch: dict, generator: torch.Generator):
        views = positive_views(batch, self.method, total_stride(self.plans.network), generator)
        projections = self.model(torch.cat([views["inputs_a"], views["inputs_b"]]))
        loss, accuracy = contrastive_loss(projections, views["groups"], self.method)
        return loss, {"pair_accuracy": scalar(accuracy)}
