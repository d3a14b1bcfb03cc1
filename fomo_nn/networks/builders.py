"""Build the network a Plans asks for: finetuning by task kind (fomo_nn.tasks), pretraining by method.

Optional model settings come from ``plans.method`` (finetuning: ``pool``, ``deep_supervision``,
``fusion_weighting``), so they can be edited in plans.json.
"""
from __future__ import annotations

from torch import nn

from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks.finetuning import DEFAULT_POOL, ClassificationNet, PooledHeadNet, RegressionNet, SegmentationNet
from fomo_nn.networks.pretraining import EmbeddingNet, HybridNet, MAENet
from fomo_nn.networks.vae import VAEHybridNet
from fomo_nn.plans.records import PLANS_FILE, Plans
from fomo_nn.tasks import task_kind

ARCHITECTURES = {cls.__name__: cls for cls in (SegmentationNet, PooledHeadNet, ClassificationNet, RegressionNet,
                                                MAENet, HybridNet, EmbeddingNet, VAEHybridNet)}

# Architecture options per pretraining method with their defaults; any other method setting
# (mask ratio, temperatures, loss weights) belongs to the trainer and is ignored here.
PRETRAINING_OPTIONS = {
    "mae": {"mask_token": "zero"},
    "contrastive": {"projection_hidden": 512, "projection_dim": 128, "projection_layers": 2},
    "hybrid": {"mask_token": "zero", "projection_hidden": 512, "projection_dim": 128},
    "vae": {"subject_channels": 256, "sequence_channels": None, "mask_token": "zero"},
    "dino": {"projection_hidden": 1024, "projection_dim": 256, "projection_layers": 3, "prototypes": 4096,
             "mask_token": "learned"},
}
PRETRAINING_METHODS = tuple(PRETRAINING_OPTIONS)


def _plans_error(plans: Plans, problem: str) -> BadInputError:
    return BadInputError(f"{PLANS_FILE} of {plans.dataset_name}", problem)


def build_finetuning_network(plans: Plans, **overrides) -> nn.Module:
    """The finetuning network ``plans.task_type``'s kind builds (fomo_nn.tasks: its ``network`` hook).

    Channels = len(plans.channel_names); fusion = plans.network.fusion. ``overrides`` replace
    settings from ``plans.method`` (e.g. deep_supervision=True).
    """
    net = plans.network
    channels = plans.num_input_channels
    if net.fusion == "none" and net.input_channels != channels:
        raise _plans_error(plans, f"network.input_channels is {net.input_channels} but the dataset has {channels} "
                                  f"channels {plans.channel_names} and fusion is 'none'; set fusion to "
                                  "'stem_expansion' or 'shared_encoder', or input_channels to the channel count")
    kind = task_kind(plans.task_type)
    if kind.network is None:
        raise _plans_error(plans, f"task_type {plans.task_type!r} has no finetuning network "
                                  "(pretraining datasets use build_pretraining_network)")
    return kind.hook("network")(plans, {**plans.method, **overrides})


def segmentation_network(plans: Plans, settings: dict) -> SegmentationNet:
    """A U-Net decoder on the encoder, one output per label."""
    if not plans.labels or len(plans.labels) < 2:
        raise _plans_error(plans, f"segmentation needs labels with background and >= 1 foreground, got {plans.labels}")
    return SegmentationNet(plans.network, plans.num_input_channels, len(plans.labels),
                           deep_supervision=bool(settings.get("deep_supervision", False)), fusion=plans.network.fusion,
                           fusion_weighting=settings.get("fusion_weighting") or "conv")


def _pooled_head(settings: dict, plans: Plans) -> dict:
    # every stage pooled (FOMO2JOMO's multi-scale idea): instance norm leaves the pooled bottleneck
    # alone nearly constant across scans, which starves few-shot classification/regression heads;
    # per-sequence passes keep their pooled features side by side ("concat")
    return {"pool": settings.get("pool", DEFAULT_POOL), "dropout": settings.get("head_dropout"),
            "fusion": plans.network.fusion, "fusion_weighting": settings.get("fusion_weighting") or "concat"}


def classification_network(plans: Plans, settings: dict) -> ClassificationNet:
    """A pooled head on the encoder, one logit per class."""
    if not plans.classes or len(plans.classes) < 2:
        raise _plans_error(plans, f"classification needs >= 2 classes, got {plans.classes}")
    return ClassificationNet(plans.network, plans.num_input_channels, len(plans.classes),
                             **_pooled_head(settings, plans))


def regression_network(plans: Plans, settings: dict) -> RegressionNet:
    """A pooled head on the encoder, one value."""
    return RegressionNet(plans.network, plans.num_input_channels, **_pooled_head(settings, plans))


def architecture_options(method: str, method_kwargs: dict) -> dict:
    """The method's architecture options: defaults updated by the given settings (others dropped)."""
    key = method.lower()
    if key not in PRETRAINING_OPTIONS:
        raise ValueError(f"unknown pretraining method {method!r}; known: {', '.join(PRETRAINING_METHODS)}")
    defaults = PRETRAINING_OPTIONS[key]
    return {name: method_kwargs.get(name, default) for name, default in defaults.items()}


def build_pretraining_network(plans: Plans, method: str, **method_kwargs) -> nn.Module:
    """MAENet (mae), EmbeddingNet (contrastive, dino), HybridNet (hybrid) or VAEHybridNet (vae)."""
    key = method.lower()
    options = architecture_options(key, method_kwargs)
    channels = plans.num_input_channels
    if key == "mae":
        return MAENet(plans.network, channels, **options)
    if key == "hybrid":
        return HybridNet(plans.network, channels, **options)
    if key in ("contrastive", "dino"):
        return EmbeddingNet(plans.network, channels, **options)
    if channels != 1:
        raise _plans_error(plans, f"the vae method needs single-channel scans, the dataset has {channels} channels")
    return VAEHybridNet(plans.network, **options)


def build_architecture(class_name: str, kwargs: dict) -> nn.Module:
    """Rebuild a model from its class name and ``architecture_kwargs`` (as stored in adaptation records)."""
    if class_name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {class_name!r}; known: {', '.join(ARCHITECTURES)}")
    kwargs = dict(kwargs)
    network = kwargs.pop("network")
    return ARCHITECTURES[class_name](network, **kwargs)
