"""Which torch device to compute on: ``auto`` (CUDA when there is one, else the CPU), ``cpu`` or ``cuda[:k]``.

``$SHORTCUTLAB_DEVICE`` (e.g. ``cpu``) replaces ``auto`` everywhere: ``SHORTCUTLAB_DEVICE=cpu make test``
runs the whole suite, notebooks included, on the CPU of a machine that has a GPU.
"""
from __future__ import annotations

import os

import torch

from shortcutlab.errors import ShortcutlabError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch.device for ``device`` ("auto" or None: $SHORTCUTLAB_DEVICE if set, else CUDA if available,
    else the CPU); a clear error for a CUDA device this machine does not have."""
    if device is None or (isinstance(device, str) and device == "auto"):
        device = os.environ.get("SHORTCUTLAB_DEVICE") or "auto"
    if isinstance(device, torch.device):
        choice = device
    elif str(device) == "auto":
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
