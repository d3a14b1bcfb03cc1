"""Hugging Face style model repos: `model.safetensors` with a `config.json` beside it.

Tensors-only files (nothing to unpickle) whose architecture lives in the JSON next to them, the way
`huggingface_hub`'s PyTorchModelHubMixin ships plain PyTorch models (`model.safetensors` + `config.json`),
and the way nnssl model repos ship their adaptation plan beside the weights (`adaptation_plan.json`,
`config.json`; nnU-Net master's like_nnssl.py downloads both). Layouts read (the config decides):
- fomo_nn's own (`fomo_nn_export_encoder --format safetensors`): config {"format": "fomo_nn_encoder",
  "adaptation": ..., "plans": ...}, tensors = the encoder ("encoder.*");
- nnssl: the config is an nnssl adaptation plan (it has `architecture_plans`: a DNA class name +
  arch_kwargs + arch_kwargs_requiring_import, as in `nnssl_adaptation_plan`), or holds one under
  `nnssl_adaptation_plan`; or config.json lacks it and `adaptation_plan.json` beside holds it;
  tensors = nnssl's network_weights (or their encoder part).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.formats import fomo_nn_encoder, nnssl
from fomo_nn.checkpoints.loading import METADATA, SAFETENSORS_SUFFIX, STATE_DICT
from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.checkpoints.training_state import ENCODER, FORMAT as FORMAT_KEY
from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import write_atomically, write_json_atomic

NAME = "safetensors_config"
CONFIG_FILE = "config.json"
NNSSL_PLAN_FILE = "adaptation_plan.json"  # what nnssl model repos ship beside checkpoint_final.pth


def detect(contents: dict, path: Path) -> bool:
    return path.suffix == SAFETENSORS_SUFFIX and STATE_DICT in contents and METADATA in contents


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(path, f"not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise BadInputError(path, "holds no JSON object")
    return data


def nnssl_plan(config: dict) -> dict | None:
    if isinstance(config.get(nnssl.PLAN), dict):
        return config[nnssl.PLAN]
    return config if isinstance(config.get("architecture_plans"), dict) else None


def convert(contents: dict, path: Path) -> CheckpointRecord:
    tensors = contents[STATE_DICT]
    config = _read_json(path.with_name(CONFIG_FILE))
    if config is None:
        raise BadInputError(path, f"a .safetensors file holds tensors only: fomo_nn needs the {CONFIG_FILE} beside it "
                                  "(download both files of the model repo) to know the architecture")
    if config.get(FORMAT_KEY) == fomo_nn_encoder.NAME:
        record = fomo_nn_encoder.convert({**config, ENCODER: tensors}, path)
    else:
        plan = nnssl_plan(config) or nnssl_plan(_read_json(path.with_name(NNSSL_PLAN_FILE)) or {})
        if plan is None:
            raise BadInputError(path, f"{CONFIG_FILE} beside it names no architecture fomo_nn reads (keys: "
                                      f"{sorted(config)[:10]}): expected fomo_nn's export config (format "
                                      f"{fomo_nn_encoder.NAME!r}) or an nnssl adaptation plan (architecture_plans: "
                                      "arch_class_name + arch_kwargs)")
        record = nnssl.convert({nnssl.WEIGHTS: tensors, nnssl.PLAN: plan}, path)
    return dataclasses.replace(record, format=NAME, provenance={**record.provenance, "layout": record.format})


FORMAT = CheckpointFormat(name=NAME, description="model.safetensors + config.json (Hugging Face model repo layout)",
                          detect=detect, convert=convert)


# ---------------------------------------------------------------- writing (fomo_nn_export_encoder --format safetensors)
def write_safetensors(record: CheckpointRecord, out: Path) -> tuple[Path, Path]:
    """`out` (encoder tensors, fomo_nn's names) and the config.json beside it, each written atomically.

    The config is fomo_nn's export record when the encoder has one (a fomo_nn pretraining run), otherwise
    the nnssl adaptation plan that describes it (any plain_conv/residual encoder).
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != SAFETENSORS_SUFFIX:
        raise BadInputError(out, f"a safetensors export is written to a {SAFETENSORS_SUFFIX} file (e.g. model.safetensors)")
    if record.adaptation is not None:
        config = {FORMAT_KEY: fomo_nn_encoder.NAME, "format_version": 1, "adaptation": record.adaptation.to_dict(),
                  "plans": record.plans.to_json() if record.plans else record.adaptation.plans}
    else:
        config = nnssl.adaptation_plan_of(record)
    tensors = {k: v.detach().clone().contiguous() for k, v in record.encoder.items()}  # DNA aliases share storage
    metadata = {"format": str(config.get(FORMAT_KEY, nnssl.NAME)), "source": "fomo_nn_export_encoder"}
    write_atomically(out, lambda temp: save_file(tensors, str(temp), metadata=metadata), ".safetensors.part")
    return out, write_json_atomic(out.with_name(CONFIG_FILE), config)
