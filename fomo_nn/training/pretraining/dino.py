"""3D self-distillation (DINO-style), optionally with an iBOT-style masked-token term.

A student and an EMA teacher (same EmbeddingNet: pooled bottleneck -> projection MLP -> cosine
logits against learned prototypes). From each batch patch, 2 global crops and N local crops are cut
on the device: crops are NOT resized (voxels keep their physical size; the CNN with global pooling
takes any size), edges rounded to the encoder's total stride; each crop gets its own flips and
intensity jitter. The teacher sees the global crops, the student all crops; the student's output
for every crop is pulled towards the teacher's output for every *other* global crop.

Collapse is prevented as in DINO: the teacher output is centred (EMA of its batch mean, kept in the
checkpoint so a resumed run is exact) and sharpened (teacher temperature < student temperature).
The teacher follows the student with a momentum rising from teacher_momentum (0.996) to 1 on a
cosine schedule over the run.

iBOT term (ibot_weight > 0): the student's global crops have ibot_mask_ratio of their bottleneck
tokens masked (token cubes of the encoder's total stride, filled with a learned token); at masked
tokens the student's per-token logits are pulled towards the teacher's for the unmasked crop
(separate token centre).

Head input standardization (head_input_standardize, default on): instance norm removes each
sample's channel means, so pooled bottlenecks of these CNN encoders are nearly identical across
samples at initialization (~1 % spread) and the teacher targets carry no per-image signal. A
parameter-free forward pre-hook standardizes the projection head's input across the batch (a
BatchNorm without affine or running stats, as DINO's ResNet heads had BatchNorm). It adds no
weights: the adaptation record and the encoder keys are unchanged. It needs >= 2 samples per pass.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from fomo_nn.training.pretraining.base import PretrainingTrainer
from fomo_nn.training.pretraining.losses import (
    batch_standardize,
    distillation_cross_entropy,
    scalar,
    teacher_distribution,
    updated_center,
)
from fomo_nn.training.pretraining.masking import check_mask_ratio, random_token_mask, upsample_token_mask
from fomo_nn.training.pretraining.views import crop_shape, make_view, total_stride
from fomo_nn.training.registry import register_trainer

NUM_GLOBAL_CROPS = 2


def teacher_momentum_at(step: int, total_steps: int, base: float) -> float:
    """Cosine schedule from `base` at step 0 to 1 at the last step."""
    progress = min(1.0, step / max(1, total_steps - 1))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def cross_view_loss(student_views: list[torch.Tensor], teacher_probs: list[torch.Tensor], temperature: float):
    """Mean CE over every (teacher global view i, student view j) with j != i."""
    terms = [distillation_cross_entropy(s, t, temperature)
             for i, t in enumerate(teacher_probs) for j, s in enumerate(student_views) if j != i]
    return torch.stack(terms).mean()


def standardize_head_input(_module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook on the projection head: its input standardized across the batch (and tokens)."""
    return (batch_standardize(args[0]),) + tuple(args[1:])


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean()


@register_trainer
class DINOTrainer(PretrainingTrainer):
    name = "dino"
    # two global + four local (1/8-volume) crops through the student encoder, the teacher without gradients:
    # 0.57x (measured, RESULTS.md)
    memory_multiplier = 0.6
    description = "3D self-distillation: EMA teacher, 2 global + N local crops, centring/sharpening, optional iBOT"
    augmentation_family = "pretraining_contrastive"
    sampling = "iid"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher: nn.Module | None = None
        self.center: torch.Tensor | None = None
        self.token_center: torch.Tensor | None = None

    def default_method_settings(self) -> dict:
        return {"global_crop_scale": 0.8, "local_crop_scale": 0.5, "num_local_crops": 4,
                "student_temperature": 0.1, "teacher_temperature": 0.04, "center_momentum": 0.9,
                "teacher_momentum": 0.996, "projection_hidden": 1024, "projection_dim": 256, "projection_layers": 3,
                "prototypes": 4096, "ibot_weight": 0.0, "ibot_mask_ratio": 0.3, "view_jitter": 0.1,
                "view_flips": True, "head_input_standardize": True}

    def check_settings(self) -> None:
        s = self.method
        if not 0 < float(s["local_crop_scale"]) <= float(s["global_crop_scale"]) <= 1:
            raise ValueError(f"need 0 < local_crop_scale ({s['local_crop_scale']}) <= global_crop_scale "
                             f"({s['global_crop_scale']}) <= 1")
        if int(s["num_local_crops"]) < 0:
            raise ValueError(f"setting num_local_crops must be >= 0, got {s['num_local_crops']}")
        if not 0 < float(s["teacher_temperature"]) <= float(s["student_temperature"]):
            raise ValueError(f"need 0 < teacher_temperature ({s['teacher_temperature']}) <= student_temperature "
                             f"({s['student_temperature']}): the teacher must be the sharper one")
        for key in ("center_momentum", "teacher_momentum"):
            if not 0 <= float(s[key]) <= 1:
                raise ValueError(f"setting {key} must lie in [0, 1], got {s[key]}")
        if int(s["prototypes"]) < 2:
            raise ValueError(f"setting prototypes must be >= 2, got {s['prototypes']}")
        if float(s["ibot_weight"]) < 0:
            raise ValueError(f"setting ibot_weight must be >= 0, got {s['ibot_weight']}")
        if self.uses_ibot:
            check_mask_ratio(s["ibot_mask_ratio"])
        # global crops go through the network 2 x batch at a time, local crops num_local_crops x batch
        if s["head_input_standardize"] and self.plans.batch_size == 1 and int(s["num_local_crops"]) == 1:
            raise ValueError("head_input_standardize needs >= 2 samples per forward pass: with batch size 1 "
                             "use num_local_crops 0 or >= 2")

    @property
    def uses_ibot(self) -> bool:
        return float(self.method["ibot_weight"]) > 0

    def network_settings(self) -> dict:
        keys = ("projection_hidden", "projection_dim", "projection_layers", "prototypes")
        # the learned mask token exists only when it is used (DDP rejects parameters without gradients)
        return {**{k: self.method[k] for k in keys}, "mask_token": "learned" if self.uses_ibot else "zero"}

    # ------------------------------------------------------------------ teacher and centres
    def initialize_weights(self) -> None:
        """The teacher starts as an exact copy of the student and is never trained by gradients."""
        self.teacher = copy.deepcopy(self.network).requires_grad_(False).eval()
        if self.method["head_input_standardize"]:
            for model in (self.network, self.teacher):
                model.projection.register_forward_pre_hook(standardize_head_input)
        prototypes = int(self.method["prototypes"])
        self.center = torch.zeros(prototypes, device=self.device)
        self.token_center = torch.zeros(prototypes, device=self.device)

    def after_optimizer_step(self, step: int) -> None:
        momentum = teacher_momentum_at(step, self.total_steps, float(self.method["teacher_momentum"]))
        ema_update(self.teacher, self.network, momentum)

    def extra_state(self) -> dict:
        return {"teacher": self.teacher.state_dict(), "center": self.center, "token_center": self.token_center}

    def load_extra_state(self, state: dict) -> None:
        if "teacher" not in state:
            raise RuntimeError("this dino checkpoint has no teacher state; it cannot be resumed exactly")
        self.teacher.load_state_dict(state["teacher"])
        self.center = state["center"].to(self.device)
        self.token_center = state["token_center"].to(self.device)

    # ------------------------------------------------------------------ loss
    def _crops(self, image: torch.Tensor, generator: torch.Generator):
        stride = total_stride(self.plans.network)
        jitter, flips = float(self.method["view_jitter"]), bool(self.method["view_flips"])
        global_size = crop_shape(image.shape[2:], float(self.method["global_crop_scale"]), stride)
        local_size = crop_shape(image.shape[2:], float(self.method["local_crop_scale"]), stride)
        global_crops = [make_view(image, global_size, generator, jitter, flips)[0] for _ in range(NUM_GLOBAL_CROPS)]
        local_crops = [make_view(image, local_size, generator, jitter, flips)[0]
                       for _ in range(int(self.method["num_local_crops"]))]
        return global_crops, local_crops, global_size, stride

    def _token_mask(self, batch: int, crop_size, stride, generator: torch.Generator, device):
        grid = tuple(c // s for c, s in zip(crop_size, stride))
        tokens = random_token_mask(batch, grid, float(self.method["ibot_mask_ratio"]), generator).to(device)
        return tokens, upsample_token_mask(tokens, stride, crop_size)

    def compute_loss(self, batch: dict, generator: torch.Generator):
        s = self.method
        image = batch["image"]
        global_crops, local_crops, global_size, stride = self._crops(image, generator)
        globals_ = torch.cat(global_crops)
        with torch.no_grad():
            teacher_out = self.teacher(globals_, tokens=self.uses_ibot)
        teacher_logits, teacher_tokens = teacher_out if self.uses_ibot else (teacher_out, None)
        if self.uses_ibot:
            token_mask, voxel_mask = self._token_mask(globals_.shape[0], global_size, stride, generator, image.device)
            student_global, student_tokens = self.model(globals_, voxel_mask, tokens=True)
        else:
            student_global = self.model(globals_)
        student_views = list(student_global.chunk(NUM_GLOBAL_CROPS))
        if local_crops:
            student_views += list(self.model(torch.cat(local_crops)).chunk(len(local_crops)))

        teacher_temperature, student_temperature = float(s["teacher_temperature"]), float(s["student_temperature"])
        teacher_probs = teacher_distribution(teacher_logits, self.center, teacher_temperature)
        dino = cross_view_loss(student_views, list(teacher_probs.chunk(NUM_GLOBAL_CROPS)), student_temperature)
        loss, metrics = dino, {"dino": scalar(dino), "teacher_entropy": scalar(entropy(teacher_probs))}
        if self.uses_ibot:
            ibot = self._ibot_loss(student_tokens, teacher_tokens, token_mask, student_temperature, teacher_temperature)
            loss = loss + float(s["ibot_weight"]) * ibot
            metrics["ibot"] = scalar(ibot)
        if self.network.training:  # validation must not move the centres
            self.center = updated_center(self.center, teacher_logits, float(s["center_momentum"]))
            if self.uses_ibot:
                self.token_center = updated_center(self.token_center, teacher_tokens, float(s["center_momentum"]))
        return loss, metrics

    def _ibot_loss(self, student_tokens, teacher_tokens, token_mask, student_temperature, teacher_temperature):
        masked = token_mask.flatten(1)  # (2B, N), same order as the bottleneck flattening
        if student_tokens.shape[1] != masked.shape[1]:
            raise RuntimeError(f"bottleneck has {student_tokens.shape[1]} tokens but the iBOT mask grid has "
                               f"{masked.shape[1]}: crop edges must be multiples of the encoder stride")
        teacher_probs = teacher_distribution(teacher_tokens, self.token_center, teacher_temperature)
        log_student = torch.log_softmax(student_tokens.float() / student_temperature, dim=-1)
        per_token = -(teacher_probs * log_student).sum(dim=-1)
        weights = masked.float()
        return (per_token * weights).sum() / weights.sum().clamp_min(1.0)
