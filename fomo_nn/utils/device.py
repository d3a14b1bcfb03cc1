"""The torch device a command runs on, from its --device flag (training and inference share it)."""
from __future__ import annotations

import torch


def choose_device(requested: str = "auto") -> torch.device:
    """`auto` picks CUDA when present; an explicit CUDA device that is not there is an error, not a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:  # torch's own message lists every device type; ours says which flag
        raise RuntimeError(f"--device {requested!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {requested} was requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"--device {requested} was requested but only {torch.cuda.device_count()} "
                               "CUDA device(s) are visible")
    return device
