"""Which torch device to compute on: ``auto`` (CUDA when there is one, else the CPU), ``cpu`` or ``cuda[:k]``."""
from __future__ import annotations

import torch

from shortcutlab.errors import ShortcutlabError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch.device for ``device`` ("auto" or None: CUDA if available, else CPU); a clear error for a
    CUDA device this machine does not have."""
    if isinstance(device, torch.device):
        choice = device
    elif device is None or str(device) == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            choice = torch.device(str(device))
        except RuntimeError:
            raise ShortcutlabError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:<index>") from None
    if choice.type not in ("cpu", "cuda"):
        raise ShortcutlabError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:<index>")
    if choice.type == "cuda":
        if not torch.cuda.is_available():
            raise ShortcutlabError(f"device {device!r} asked for CUDA, but torch sees no GPU here "
                                   f"(torch {torch.__version__}); use --device cpu or auto")
        if choice.index is not None and choice.index >= torch.cuda.device_count():
            raise ShortcutlabError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return choice
