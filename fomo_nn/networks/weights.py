"""Moving encoder weights between models: export, load with a full report, stem expansion.

Unlike the FOMO25 baseline (which silently dropped mismatched weights), a mismatch is an error
unless partial loading is asked for, and the error names the keys and shapes.
"""
from __future__ import annotations

import torch
from torch import nn

from fomo_nn.networks.encoders import ENCODER_PREFIX, stem_weight_keys
from fomo_nn.networks.fusion import expand_stem_weights

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
SHOWN_KEYS = 5


class EncoderMismatchError(ValueError):
    """The checkpoint's encoder does not fit the model's encoder."""


def encoder_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's encoder weights, keys with the ``encoder.`` prefix (detached copies)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIX)}


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """Remove DDP/compile prefixes so ``module.encoder.x`` reads as ``encoder.x``."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def load_encoder_weights(model: nn.Module, state_dict: dict, allow_partial: bool = False) -> dict:
    """Load the ``encoder.*`` entries of ``state_dict`` into ``model.encoder``.

    Non-encoder entries (decoders, heads) are ignored. A 1-input-channel stem is expanded to the
    model's C channels (weights / C). Returns dict(loaded, missing, unexpected, shape_mismatch,
    stem_expanded). Raises EncoderMismatchError on any missing, unexpected or mis-shaped encoder key
    unless ``allow_partial``; raises in any case when nothing matches.
    """
    checkpoint = {k: v for k, v in strip_wrapper_prefixes(state_dict).items() if k.startswith(ENCODER_PREFIX)}
    if not checkpoint:
        examples = ", ".join(list(state_dict)[:SHOWN_KEYS]) or "none"
        raise EncoderMismatchError(f"the state dict has no '{ENCODER_PREFIX}*' weights (its keys start with: "
                                   f"{examples}); is it a fomo_nn checkpoint's network weights?")
    target = {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIX)}

    stem_expanded = []
    for stem_key in stem_weight_keys(model):
        if _needs_stem_expansion(checkpoint.get(stem_key), target[stem_key]):
            checkpoint = expand_stem_weights(checkpoint, stem_key, target[stem_key].shape[1])
            stem_expanded.append(stem_key)

    shared = [k for k in target if k in checkpoint]
    report = {
        "loaded": [k for k in shared if checkpoint[k].shape == target[k].shape],
        "missing": [k for k in target if k not in checkpoint],
        "unexpected": [k for k in checkpoint if k not in target],
        "shape_mismatch": [{"key": k, "checkpoint_shape": list(checkpoint[k].shape), "model_shape": list(target[k].shape)}
                           for k in shared if checkpoint[k].shape != target[k].shape],
        "stem_expanded": stem_expanded,
    }
    problems = report["missing"] or report["unexpected"] or report["shape_mismatch"]
    if problems and not allow_partial:
        raise EncoderMismatchError(describe_mismatch(report) + "; both must be built from the same NetworkPlan "
                                   "(encoder type, features_per_stage, kernel sizes, strides, convs per stage). "
                                   "Pass allow_partial=True to load only the matching weights.")
    if not report["loaded"]:
        raise EncoderMismatchError(describe_mismatch(report) + "; not a single encoder weight matches this network")
    model.load_state_dict({k: checkpoint[k] for k in report["loaded"]}, strict=False)
    return report


def _needs_stem_expansion(checkpoint_stem, model_stem) -> bool:
    return (checkpoint_stem is not None and checkpoint_stem.dim() == 5 and checkpoint_stem.shape[1] == 1
            and model_stem.shape[1] > 1 and checkpoint_stem.shape[0] == model_stem.shape[0]
            and checkpoint_stem.shape[2:] == model_stem.shape[2:])


def describe_mismatch(report: dict) -> str:
    """One line naming the first few offending keys of each kind, with shapes."""
    parts = []
    for kind in ("missing", "unexpected"):
        keys = report[kind]
        if keys:
            shown = ", ".join(keys[:SHOWN_KEYS]) + (" ..." if len(keys) > SHOWN_KEYS else "")
            parts.append(f"{len(keys)} {kind} encoder keys ({shown})")
    mismatches = report["shape_mismatch"]
    if mismatches:
        shown = ", ".join(f"{m['key']}: checkpoint {tuple(m['checkpoint_shape'])} vs model {tuple(m['model_shape'])}"
                          for m in mismatches[:SHOWN_KEYS])
        parts.append(f"{len(mismatches)} shape mismatches ({shown}{' ...' if len(mismatches) > SHOWN_KEYS else ''})")
    return "encoder weights do not match: " + ("; ".join(parts) if parts else "no problems")
