"""Interpretability tools: total variation, activation maximization and Grad-CAM.

Images are float32 (N, 3, H, W) in [0, 1]; models return class logits (N, K), or a tuple
whose first element is the class logits (GRLNet returns (digit_logits, color_logits)).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.models import class_logits, eval_mode, model_device

__all__ = ["activation_maximization", "grad_cam", "total_variation"]

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 total variation (N,) of images (N, C, H, W).

    Per sample, the sum over channels and pixels of |vertical| + |horizontal| neighbour differences.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    vertical = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().sum(dim=(1, 2, 3))
    horizontal = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))
    return vertical + horizontal


def activation_maximization(
    model: nn.Module,
    target_class: int | Sequence[int],
    steps: int = 256,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 1e-2,
    generator: torch.Generator | None = None,
    image_shape: tuple[int, int, int] = (3, 28, 28),
) -> torch.Tensor:
    """Image (1, *image_shape) in [0, 1] maximizing logit_c - l2*||x||^2 - tv*TV(x), by Adam from U(0.4, 0.6).

    The start is 0.4 + 0.2 * torch.rand((1, *image_shape), generator=generator), drawn on the CPU.
    A sequence of K classes optimizes K independent images at once (K, *image_shape): the same
    result as K single-class calls (Adam is elementwise), in one batched pass per step.
    """
    single = not isinstance(target_class, (Sequence, torch.Tensor))
    classes = [target_class] if single else list(target_class)
    device = model_device(model)
    # Drawn on the CPU so a seeded generator gives the same start on every device.
    x = (0.4 + 0.2 * torch.rand((len(classes), *image_shape), generator=generator)).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    with eval_mode(model), torch.enable_grad():
        with torch.no_grad():
            num_classes = class_logits(model(x[:1])).shape[1]
        for c in classes:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes:
                raise ValueError(f"target_class must be an int in [0, {num_classes}) (or a list of such ints), "
                                 f"got {c!r}")
        index = torch.arange(len(classes), device=device)
        targets = torch.tensor(classes, dtype=torch.int64, device=device)
        for _ in range(steps):
            logits = class_logits(model(x))[index, targets]
            # Summing per-image objectives keeps each image's gradient its own.
            loss = -(logits - l2 * x.pow(2).sum(dim=(1, 2, 3)) - tv * total_variation(x)).sum()
            # Gradient w.r.t. x only, so the parameters' .grad are never touched.
            (x.grad,) = torch.autograd.grad(loss, x)
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
    return x.detach()


def _check_targets(targets: torch.Tensor | Sequence[int], logits: torch.Tensor) -> torch.Tensor:
    """Targets as int64 (N,) on the logits' device, after checking shape, dtype and range [0, K)."""
    n, num_classes = logits.shape
    targets = torch.as_tensor(targets, device=logits.device)
    if targets.shape != (n,) or targets.dtype not in _INT_DTYPES:
        got = f"{targets.dtype} of shape {tuple(targets.shape)}"
        raise ValueError(f"expected integer targets of shape ({n},), got {got}")
    if n and not (0 <= int(targets.min()) and int(targets.max()) < num_classes):
        got = f"values in [{int(targets.min())}, {int(targets.max())}]"
        raise ValueError(f"targets must lie in [0, {num_classes}), got {got}")
    return targets.long()


def _single_feature_map(captured: list[torch.Tensor]) -> torch.Tensor:
    """The one (N, K, h, w) output a hooked layer produced during a forward pass."""
    if len(captured) != 1:
        raise ValueError(f"expected the layer to run once per forward pass, it ran {len(captured)} times")
    if not isinstance(captured[0], torch.Tensor) or captured[0].dim() != 4:
        got = tuple(captured[0].shape) if isinstance(captured[0], torch.Tensor) else type(captured[0]).__name__
        raise ValueError(f"expected the layer to output a tensor (N, K, h, w), got {got}")
    return captured[0]


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of images (N, 3, H, W) at `layer`, for `targets` (N,) or the predicted classes.

    Each map is ReLU(sum_k mean(dS/dA_k) A_k), bilinearly upsampled to (H, W) and divided by its own max.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with eval_mode(model), torch.enable_grad():
            # Detached so that no gradient can flow back into the caller's tensor.
            logits = class_logits(model(images.detach()))
            activations = _single_feature_map(captured)
            targets = _check_targets(logits.argmax(dim=1) if targets is None else targets, logits)
            # Samples are independent in eval mode, so the gradient of the sum gives each sample's own gradient.
            score = logits.gather(1, targets.unsqueeze(1)).sum()
            (gradients,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cams = F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    peaks = cams.amax(dim=(1, 2), keepdim=True)
    # A zero peak means an all-zero map (it is non-negative): divide by 1 to keep it zero, not NaN.
    return (cams / torch.where(peaks > 0, peaks, torch.ones_like(peaks))).float()
