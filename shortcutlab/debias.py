"""Debiasing objectives: color-consistency regularization and gradient-reversal (GRL) training.

Each ``*_objective`` returns ``(loss, class_logits_of_the_original_images)`` so a training loop can
compute accuracy without a second forward pass; each ``*_loss`` returns just the scalar loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.models import class_logits

__all__ = [
    "consistency_loss",
    "consistency_objective",
    "grl_loss",
    "grl_objective",
    "symmetric_kl",
]


def _check_batch(images: torch.Tensor, **per_sample: torch.Tensor) -> None:
    """Raise ValueError unless images is (N, 3, H, W) and every per-sample tensor is an integer (N,)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    n = images.shape[0]
    if n == 0:
        raise ValueError("images is an empty batch (N=0); the losses are batch means and need N >= 1")
    for name, t in per_sample.items():
        if t.dim() != 1 or t.shape[0] != n:
            raise ValueError(f"{name} must have shape ({n},) to match images, got {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class ids (e.g. torch.long), got dtype {t.dtype}")


def _check_ids(name: str, ids: torch.Tensor, num: int) -> None:
    """Raise ValueError unless every id in the integer tensor lies in [0, num)."""
    # CE would fail with an IndexError on CPU or an opaque device-side assert on GPU
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num):
        raise ValueError(
            f"{name} must lie in [0, {num}) to match the model's outputs, "
            f"got values in [{int(ids.min())}, {int(ids.max())}]"
        )


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """1/2 [KL(p||q) + KL(q||p)] of the softmaxes of two (N, C) logit batches; scalar >= 0, batch mean."""
    if logits_p.dim() != 2 or logits_p.shape != logits_q.shape:
        raise ValueError(
            "symmetric_kl needs two (N, C) logit tensors of the same shape, "
            f"got {tuple(logits_p.shape)} and {tuple(logits_q.shape)}"
        )
    if logits_p.shape[0] == 0:
        raise ValueError("symmetric_kl got an empty batch (N=0)")
    # log_softmax stays finite for huge logits, where log(softmax) would give log(0) = -inf
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    # KL(p||q) + KL(q||p) = sum_c (p - q)(log p - log q): one finite expression, each term >= 0
    per_sample = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=1)
    return 0.5 * per_sample.mean()


def consistency_objective(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    new_color_ids: torch.Tensor,
    weight: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CE(f(x), y) + weight * symmetric_kl(f(x), f(recolor(x))); returns (scalar loss, (N, C) logits of x).

    images (N, 3, H, W) in [0, 1], labels and new_color_ids integer (N,). ``model`` may return logits
    or a tuple whose first element is the class logits (e.g. GRLNet).
    """
    _check_batch(images, labels=labels, new_color_ids=new_color_ids)
    if weight < 0:
        raise ValueError(f"weight must be >= 0 (it scales a penalty), got {weight}")
    # Imported here: data.py is developed alongside and tests may substitute recolor
    from shortcutlab.data import recolor

    recolored = recolor(images, new_color_ids)
    if recolored.shape != images.shape:
        raise ValueError(
            f"recolor returned shape {tuple(recolored.shape)}, expected {tuple(images.shape)}"
        )
    # One forward on both halves is faster than two and gives the same logits, because the study's
    # models have no batch-dependent layers (no batchnorm); a batchnorm model would mix the halves.
    output = model(torch.cat([images, recolored.to(images.dtype)], dim=0))
    logits = class_logits(output)
    n = images.shape[0]
    logits_orig, logits_recolored = logits[:n], logits[n:]
    _check_ids("labels", labels, logits.shape[1])
    loss = F.cross_entropy(logits_orig, labels) + weight * symmetric_kl(logits_orig, logits_recolored)
    return loss, logits_orig


def consistency_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    new_color_ids: torch.Tensor,
    weight: float = 2.0,
) -> torch.Tensor:
    """Scalar loss of :func:`consistency_objective` (same arguments and shapes)."""
    return consistency_objective(model, images, labels, new_color_ids, weight)[0]


def grl_objective(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    color_ids: torch.Tensor,
    color_weight: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CE(digit) + color_weight * CE(color) for a GRLNet; returns (scalar loss, (N, K) digit logits).

    images (N, 3, H, W), labels and color_ids integer (N,); the model reverses the color gradient itself.
    """
    _check_batch(images, labels=labels, color_ids=color_ids)
    output = model(images)
    if not (isinstance(output, tuple) and len(output) == 2):
        raise ValueError(
            "grl_objective needs a model returning (digit_logits, color_logits), such as GRLNet; "
            f"got {type(output).__name__}"
        )
    digit_logits, color_logits = output
    _check_ids("labels", labels, digit_logits.shape[1])
    _check_ids("color_ids", color_ids, color_logits.shape[1])
    loss = F.cross_entropy(digit_logits, labels) + color_weight * F.cross_entropy(color_logits, color_ids)
    return loss, digit_logits


def grl_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    color_ids: torch.Tensor,
    color_weight: float = 0.5,
) -> torch.Tensor:
    """Scalar loss of :func:`grl_objective` (same arguments and shapes)."""
    return grl_objective(model, images, labels, color_ids, color_weight)[0]
