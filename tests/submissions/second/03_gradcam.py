"""A second correct lesson-03 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(model, layer, images, targets=None):
    captured = []
    hook = layer.register_forward_hook(lambda module, args, out: captured.append(out))
    saved_modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(images)
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            chosen = logits.argmax(-1) if targets is None else targets
            picked = logits.gather(1, chosen.view(-1, 1)).sum()
            feature = captured[-1]
            (dfeature,) = torch.autograd.grad(picked, feature)
    finally:
        hook.remove()
        for m, mode in saved_modes:
            m.training = mode
    alphas = dfeature.mean(dim=(-2, -1), keepdim=True)
    heat = torch.relu((alphas * feature).sum(1, keepdim=True)).detach()
    heat = F.interpolate(heat, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False).squeeze(1)
    top = heat.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return torch.where(top > 0, heat / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(heat))
