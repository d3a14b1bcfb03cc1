"""What the Lightning-based formats (asparagus, the FOMO25 baseline, FOMO2JOMO) share: the file layout
Lightning's `_CheckpointConnector.dump_checkpoint` writes (pytorch_lightning 2.6.6; `lightning.pytorch` writes the
same keys): `epoch`, `global_step`, `pytorch-lightning_version`, `state_dict` (the LightningModule's, so the
network sits under its attribute name, `model.`, and `model._orig_mod.` when torch.compile wrapped it), `loops`,
`callbacks`, `optimizer_states`, `lr_schedulers`, `hyper_parameters` (save_hyperparameters). The FOMO25
baseline's `load_pretrained_weights` (src/utils/utils.py @ d2df6d4) also takes the bare LightningModule state dict
(`torch.save(module.state_dict())`, keys `model.*` at the top level): `module_state` reads both. Not a format.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks.weights import strip_wrapper_prefixes

STATE_DICT = "state_dict"
VERSION = "pytorch-lightning_version"
HYPER_PARAMETERS = "hyper_parameters"
MODULE_ATTRIBUTE = "model."  # all three frameworks keep the network at LightningModule.model


def is_lightning(contents: dict) -> bool:
    return isinstance(contents.get(STATE_DICT), dict) and VERSION in contents


def module_state(contents: dict, bare: bool = False) -> dict | None:
    """The LightningModule's state dict: a Lightning checkpoint's `state_dict`, or (with `bare`) the file itself
    when it is nothing but `model.*` tensors; None otherwise."""
    if is_lightning(contents):
        return contents[STATE_DICT]
    if bare and contents and all(isinstance(k, str) and k.startswith(MODULE_ATTRIBUTE) and isinstance(v, torch.Tensor)
                                 for k, v in contents.items()):
        return contents
    return None


def network_state(contents: dict) -> dict[str, torch.Tensor]:
    """The network's own state dict: Lightning's 'model.' and compile's '_orig_mod.' stripped."""
    state = {}
    for key, value in module_state(contents, bare=True).items():
        if isinstance(key, str) and key.startswith(MODULE_ATTRIBUTE) and isinstance(value, torch.Tensor):
            state[key[len(MODULE_ATTRIBUTE):]] = value
    return strip_wrapper_prefixes(state)


def has_keys(contents: dict, *suffixes: str, bare: bool = False) -> bool:
    """Whether the module's state dict holds every one of these network keys (with or without '_orig_mod.')."""
    keys = module_state(contents, bare)
    return keys is not None and all(f"{MODULE_ATTRIBUTE}{s}" in keys or f"{MODULE_ATTRIBUTE}_orig_mod.{s}" in keys for s in suffixes)


def encoder_of(state: dict[str, torch.Tensor], path: Path, framework: str) -> dict[str, torch.Tensor]:
    """The 'encoder.*' part of a network state dict, keys without the prefix."""
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        raise BadInputError(path, f"{framework} Lightning checkpoint holds no 'model.encoder.*' weights")
    return encoder


def provenance(contents: dict, framework: str, **extra) -> dict:
    """JSON-able provenance: framework, epoch, step, Lightning version, the JSON-able hyper-parameters."""
    hyper = contents.get(HYPER_PARAMETERS) if isinstance(contents.get(HYPER_PARAMETERS), dict) else {}
    return {"framework": framework, "epoch": _plain(contents.get("epoch")),
            "global_step": _plain(contents.get("global_step")), "lightning_version": contents.get(VERSION),
            "hyper_parameters": {str(k): _plain(v) for k, v in hyper.items() if _json_able(_plain(v))}, **extra}


def _plain(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _json_able(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
