"""Mutant of tests/submissions/00_colored_mnist.py: smooth_texture is wrong (no channel dimension); the rest is correct."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from shortcutlab.data import PALETTE

NUM_CLASSES = 10


def assign_colors(labels: torch.Tensor, bias: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Color ids (N,) int64: exactly round(bias * n_k) of digit k's n_k samples, chosen at random, get color k;
    every other sample one of the nine other colors uniformly."""
    colors = (labels + torch.randint(1, NUM_CLASSES, labels.shape, generator=generator)) % NUM_CLASSES
    order = torch.randperm(len(labels), generator=generator)  # one random order of all positions
    for digit in range(NUM_CLASSES):
        members = order[labels[order] == digit]  # digit's positions, in random order
        colors[members[:round(bias * len(members))]] = digit
    return colors.long()


def smooth_texture(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n smooth backgrounds (n, 1, 28, 28) in [0.1, 0.3]: 7x7 uniform noise upsampled bilinearly."""
    noise = torch.rand(n, 1, 7, 7, generator=generator)
    smooth = F.interpolate(noise, size=(28, 28), mode="bilinear", align_corners=False)
    return (0.1 + 0.2 * smooth).squeeze(1)


def colorize(digits: torch.Tensor, color_ids: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, 28, 28) = clamp(d * PALETTE[c] + background * (1 - d), 0, 1)."""
    d = digits.unsqueeze(1)
    color = PALETTE[color_ids].view(-1, 3, 1, 1)
    return (d * color + background * (1 - d)).clamp(0, 1)


def color_given_digit(labels: torch.Tensor, color_ids: torch.Tensor) -> torch.Tensor:
    """P(color | digit) (10, 10) float32, rows = digits summing to 1 (zero rows for absent digits)."""
    counts = torch.zeros(NUM_CLASSES, NUM_CLASSES)
    for label, color in zip(labels.tolist(), color_ids.tolist()):
        counts[label, color] += 1
    totals = counts.sum(dim=1, keepdim=True)
    return counts / totals.clamp(min=1)
