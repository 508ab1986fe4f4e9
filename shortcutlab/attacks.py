"""Adversarial attacks: L_inf projected gradient descent towards a chosen class (targeted) or away from the
true one (untargeted, the inner maximisation of adversarial training).

Images are float32 (N, 3, H, W) in [0, 1]; targets int64 (N,). Models return class logits (N, K),
or a tuple whose first element is the class logits (GRLNet returns (digit_logits, color_logits)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.models import class_logits, eval_mode, model_device
from shortcutlab.train import predict_logits

__all__ = ["AttackResult", "robust_accuracy", "targeted_pgd", "untargeted_pgd"]


@dataclass(frozen=True)
class AttackResult:
    """Per-sample outcome for N images: images (N, 3, H, W) in [0, 1], success (N,) bool, confidence (N,) final
    target probability, steps (N,) int64 updates until success first held (0: at the start, -1: never)."""

    images: torch.Tensor
    success: torch.Tensor
    steps: torch.Tensor
    confidence: torch.Tensor


def _check_arguments(
    images: torch.Tensor,
    targets: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    stop_confidence: float | None,
) -> None:
    """Raise ValueError unless the attack arguments are what targeted_pgd / untargeted_pgd expect."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images of shape (N, C, H, W), got {got}")
    if not images.is_floating_point():
        raise ValueError(f"expected floating-point images in [0, 1], got dtype {images.dtype}")
    # The negated comparison also rejects NaN, which would silently poison the sign of the gradient.
    if images.numel() > 0 and not bool(((images >= 0) & (images <= 1)).all()):
        raise ValueError(
            f"expected images in [0, 1], got values in [{images.min().item():g}, {images.max().item():g}]"
        )
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1:
        got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"expected targets of shape (N,) = ({images.shape[0]},), got {got}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"expected integer (int64) targets, got dtype {targets.dtype}")
    if targets.shape[0] != images.shape[0]:
        raise ValueError(
            f"expected one target per image, got {targets.shape[0]} targets for {images.shape[0]} images"
        )
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"expected eps >= 0 (L_inf radius in [0, 1] pixel units), got {eps}")
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"expected alpha >= 0 (step size in [0, 1] pixel units), got {alpha}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"expected steps to be an int >= 0, got {steps!r}")
    if stop_confidence is not None and not 0 < stop_confidence <= 1:
        raise ValueError(f"expected stop_confidence in (0, 1] or None, got {stop_confidence}")


def _check_logits(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise ValueError unless logits are (N, K) and every target lies in [0, K)."""
    if logits.shape[0] != targets.shape[0]:
        raise ValueError(
            f"expected the model to return logits for {targets.shape[0]} images, got shape {tuple(logits.shape)}"
        )
    num_classes = logits.shape[1]
    if targets.numel() > 0 and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"expected targets in [0, {num_classes}) for a {num_classes}-class model, "
            f"got values in [{targets.min().item()}, {targets.max().item()}]"
        )


def targeted_pgd(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    eps: float = 0.05,
    alpha: float = 0.01,
    steps: int = 40,
    random_start: bool = False,
    stop_confidence: float | None = None,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Targeted L_inf PGD: signed descent of CE(f(x), targets), steps of alpha, projected into the eps-ball and [0, 1].

    images (N, 3, H, W) in [0, 1]; targets (N,) int64 in [0, K); eps, alpha in pixel units of the [0, 1] scale.
    ``success`` (on the returned images): without ``stop_confidence``, the arg-max is the target; with it, the target
    probability is >= stop_confidence (the arg-max alone does not count, and only those images are frozen)."""
    _check_arguments(images, targets, eps, alpha, steps, stop_confidence)
    originals = images.detach().clone()
    targets = targets.detach().to(device=originals.device, dtype=torch.int64)
    n = originals.shape[0]

    x = _random_start(originals, eps, generator) if random_start else originals.clone()

    first_success = torch.full((n,), -1, dtype=torch.int64, device=originals.device)
    frozen = torch.zeros(n, dtype=torch.bool, device=originals.device)
    with eval_mode(model):
        for k in range(steps + 1):
            update = k < steps
            # Set explicitly so the attack also works under a caller's torch.no_grad(); the last pass only evaluates.
            with torch.set_grad_enabled(update):
                x_var = x.detach().requires_grad_(update)
                logits = class_logits(model(x_var))
                if k == 0:
                    _check_logits(logits, targets)
                # Mean reduction as torchattacks does; samples stay independent because the model is in eval mode.
                loss = F.cross_entropy(logits, targets) if update else None

            confidence = logits.detach().softmax(dim=1).gather(1, targets[:, None]).squeeze(1)
            if stop_confidence is None:
                # Nobody is frozen, to stay identical to torchattacks; a sample may later leave the target
                # class again, so success (final state) can be False while steps (first hit) is >= 0.
                reached = logits.detach().argmax(dim=1) == targets
            else:
                reached = confidence >= stop_confidence
                frozen = frozen | reached
            first_success = torch.where(reached & (first_success < 0), k, first_success)
            if not update or bool(frozen.all()):
                break

            # Gradient w.r.t. the input only, so the model's parameter .grad stays untouched.
            (grad,) = torch.autograd.grad(loss, x_var)
            stepped = x - alpha * grad.sign()
            delta = torch.clamp(stepped - originals, min=-eps, max=eps)
            stepped = torch.clamp(originals + delta, min=0, max=1)
            x = torch.where(frozen[:, None, None, None], x, stepped)

    # `reached`/`confidence` come from the last forward pass, which saw exactly the returned images.
    return AttackResult(images=x.detach(), success=reached, steps=first_success, confidence=confidence)


def _random_start(originals: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """clamp(x + U(-eps, eps), 0, 1), the noise drawn on the generator's device (a CPU generator also seeds a GPU
    attack) with uniform_ on an empty tensor, as torchattacks draws it."""
    noise_device = generator.device if generator is not None else originals.device
    noise = torch.empty(originals.shape, dtype=originals.dtype, device=noise_device).uniform_(
        -eps, eps, generator=generator).to(originals.device)
    return torch.clamp(originals + noise, min=0, max=1)


def untargeted_pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.1,
    alpha: float = 0.025,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted L_inf PGD (Madry et al., 2018): signed *ascent* of CE(f(x), labels) with steps of alpha, projected
    into the eps-ball and [0, 1]; returns the adversarial images (N, 3, H, W), detached, after all ``steps``.

    images (N, 3, H, W) in [0, 1]; labels (N,) int64 true classes; eps, alpha in pixel units of the [0, 1] scale.
    The model runs in eval mode (its modes are restored) and its parameters' .grad is left untouched, so the
    attack can run inside a training step."""
    _check_arguments(images, labels, eps, alpha, steps, None)
    originals = images.detach().clone()
    labels = labels.detach().to(device=originals.device, dtype=torch.int64)
    x = _random_start(originals, eps, generator) if random_start else originals.clone()
    with eval_mode(model), torch.enable_grad():
        for k in range(steps):
            x_var = x.detach().requires_grad_(True)
            logits = class_logits(model(x_var))
            if k == 0:
                _check_logits(logits, labels)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels), x_var)
            delta = torch.clamp(x + alpha * grad.sign() - originals, min=-eps, max=eps)
            x = torch.clamp(originals + delta, min=0, max=1)
    return x.detach()


def robust_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, steps: int = 20,
                    restarts: int = 1, alpha: float | None = None, generator: torch.Generator | None = None,
                    batch_size: int = 1000) -> torch.Tensor:
    """Which images (N,) bool a model still classifies correctly under untargeted L_inf PGD within ``eps``: right on
    the clean image and after each of ``restarts`` attacks (random starts, ``steps`` steps of ``alpha``, default
    2.5 eps / steps as in Madry et al.). The mean is the robust accuracy; an image counts as fooled if any restart
    fools it, so, as in AutoAttack, each restart attacks only the images still correct. Runs on the model's device,
    ``batch_size`` images at a time; the result is on the CPU."""
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"expected restarts to be an int >= 1, got {restarts!r}")
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else alpha
    device = model_device(model)
    robust = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        truth = labels[start:start + batch_size].to(device)
        correct = predict_logits(model, batch).argmax(dim=1) == truth
        for _ in range(restarts if eps > 0 else 0):
            left = torch.nonzero(correct).flatten()
            if not len(left):
                break
            attacked = untargeted_pgd(model, batch[left], truth[left], eps=eps, alpha=alpha, steps=steps,
                                      random_start=True, generator=generator)
            correct[left] = predict_logits(model, attacked).argmax(dim=1) == truth[left]
        robust.append(correct.cpu())
    return torch.cat(robust) if robust else torch.zeros(0, dtype=torch.bool)
