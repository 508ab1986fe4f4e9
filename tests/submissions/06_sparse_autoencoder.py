"""A correct lesson-06 submission, written independently of shortcutlab.sae (grades 100%)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SparseAutoencoder(nn.Module):
    """One-hidden-layer ReLU autoencoder: x (N, d_in) -> f (N, d_hidden) >= 0 -> x_hat (N, d_in)."""

    def __init__(self, d_in: int, d_hidden: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.d_in = d_in
        self.d_hidden = d_hidden
        rows = torch.randn(d_hidden, d_in, generator=generator)
        rows = rows / rows.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(rows.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.W_dec = nn.Parameter(rows.clone())
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents relu((x - b_dec) @ W_enc + b_enc) (N, d_hidden)."""
        centered = x - self.b_dec
        return F.relu(centered @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction f @ W_dec + b_dec (N, d_in)."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat (N, d_in), f (N, d_hidden))."""
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every row of W_dec to unit L2 norm, in place."""
        row_norms = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec /= row_norms.clamp_min(1e-12)


def sae_loss(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, l1: float = 1e-3) -> torch.Tensor:
    """Scalar mean_n ||x_hat - x||^2 + l1 * mean_n ||f||_1."""
    reconstruction = ((x_hat - x) ** 2).sum(dim=1).mean()
    sparsity = f.abs().sum(dim=1).mean()
    return reconstruction + l1 * sparsity


def fraction_variance_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean_n(x)||^2; 0 is perfect, 1 is as good as the mean."""
    x = x.detach().double()
    x_hat = x_hat.detach().double()
    residual = ((x - x_hat) ** 2).sum()
    total = ((x - x.mean(dim=0, keepdim=True)) ** 2).sum()
    return (residual / total).item()
