"""Networks of the study: the SimpleCNN baseline and the gradient-reversal GRLNet."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """3x3 conv (same padding) + ReLU, optionally followed by 2x2 max pooling."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SimpleCNN(nn.Module):
    """The report's baseline: 3 conv blocks + 2 fully connected layers.

    Input (N, 3, 28, 28) in [0, 1]; output logits (N, num_classes).
    ``target_layer`` is the last conv block (output (N, width*4, 7, 7)), used by Grad-CAM;
    ``penultimate`` outputs the (N, hidden) activations fed to ``classifier``.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.block1 = conv_block(3, width, pool=True)  # 14x14
        self.block2 = conv_block(width, width * 2, pool=True)  # 7x7
        self.block3 = conv_block(width * 2, width * 4, pool=False)  # 7x7, Grad-CAM target
        self.penultimate = nn.Sequential(nn.Flatten(), nn.Linear(width * 4 * 7 * 7, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        return self.block3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden) for images (N, 3, 28, 28)."""
        return self.penultimate(self.block3(self.block2(self.block1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-strength``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:  # type: ignore[override]
        ctx.strength = float(strength)
        # view_as gives autograd a distinct output node, so backward is always called
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        # strength is a hyperparameter, not something to learn: no gradient for it
        return grad_output * -ctx.strength, None


def grad_reverse(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Return ``x`` unchanged (any shape); gradients flowing back through it get scaled by ``-strength``."""
    return GradReverse.apply(x, strength)


class GRLNet(nn.Module):
    """SimpleCNN backbone with a digit head and an adversarial color head (gradient reversal).

    Input (N, 3, 28, 28) in [0, 1]; ``forward`` returns (digit_logits (N, num_classes),
    color_logits (N, num_colors)). The color head sees the shared (N, hidden) features through
    ``grad_reverse``, so training it pushes the backbone to *remove* color information.
    ``strength`` may be reassigned during training (e.g. a warm-up schedule).
    """

    def __init__(
        self,
        num_classes: int = 10,
        num_colors: int = 10,
        strength: float = 1.0,
        width: int = 16,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if num_colors < 1:
            raise ValueError(f"num_colors must be >= 1, got {num_colors}")
        if hidden < 2:
            raise ValueError(f"hidden must be >= 2 (the color head has hidden // 2 units), got {hidden}")
        # Reusing SimpleCNN keeps the backbone identical to the baseline: its classifier is the digit head
        self.backbone = SimpleCNN(num_classes=num_classes, width=width, hidden=hidden)
        self.color_head = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, num_colors)
        )
        self.strength = float(strength)

    @property
    def target_layer(self) -> nn.Module:
        return self.backbone.target_layer

    @property
    def penultimate(self) -> nn.Module:
        return self.backbone.penultimate

    @property
    def classifier(self) -> nn.Module:
        """The digit head (same role as ``SimpleCNN.classifier``)."""
        return self.backbone.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shared activations (N, hidden) for images (N, 3, 28, 28)."""
        return self.backbone.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.classifier(h), self.color_head(grad_reverse(h, self.strength))


def class_logits(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Class logits (N, K) from a model output: the tensor itself, or the first element of a tuple/list."""
    logits = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"expected class logits of shape (N, num_classes), got {got}")
    return logits


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then give each back its own previous mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        # Per module, because model.train(was_training) would flatten mixed train/eval modes.
        for module, training in modes:
            module.training = training
