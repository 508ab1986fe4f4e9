"""A second correct lesson-06 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
import torch.nn.functional as F
from torch import nn


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in, d_hidden, *, generator=None):
        super().__init__()
        self.d_in, self.d_hidden = d_in, d_hidden
        directions = torch.randn(d_hidden, d_in, generator=generator)
        self.W_dec = nn.Parameter(directions)
        self.normalize_decoder_()
        self.W_enc = nn.Parameter(self.W_dec.detach().t().clone())  # tied start, a separate copy
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x):
        return F.relu(torch.addmm(self.b_enc, x - self.b_dec, self.W_enc))

    def decode(self, f):
        return torch.addmm(self.b_dec, f, self.W_dec)

    def forward(self, x):
        latents = self.encode(x)
        return self.decode(latents), latents

    @torch.no_grad()
    def normalize_decoder_(self):
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


def sae_loss(x, x_hat, f, l1=1e-3):
    squared = (x_hat - x).square().sum(dim=1).mean()
    return squared + l1 * f.abs().sum(dim=1).mean()


def fraction_variance_unexplained(x, x_hat):
    x, x_hat = x.detach().double(), x_hat.detach().double()
    residual = (x - x_hat).pow(2).sum()
    spread = (x - x.mean(dim=0)).pow(2).sum()
    return float(residual / spread)
