"""A correct lesson-03 submission, written independently of shortcutlab.interpret (grades 100%)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of images (N, 3, H, W) at `layer`, for `targets` (N,) or the predictions."""
    stored = {}

    def keep_activations(module, inputs, output):
        stored["activations"] = output

    handle = layer.register_forward_hook(keep_activations)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            output = model(images.detach())
            logits = output[0] if isinstance(output, tuple) else output
            if targets is None:
                targets = logits.argmax(dim=1)
            score = logits[torch.arange(len(logits)), targets].sum()
            activations = stored["activations"]
            # autograd.grad, unlike backward(), leaves the parameters' .grad alone
            gradients = torch.autograd.grad(score, activations)[0]
    finally:
        handle.remove()
        for m, mode in modes.items():
            m.training = mode
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return (cam / peak).float()
