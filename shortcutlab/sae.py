"""Task 6: a sparse autoencoder (SAE) on a CNN's penultimate activations, and SAE surgery.

The SAE maps activations ``x`` (N, d_in) to sparse non-negative latents ``f`` (N, d_hidden)
and back; latents that encode color rather than digit can then be ablated inside the CNN.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.progress import Progress

__all__ = [
    "SparseAutoencoder",
    "ablate_latents",
    "fraction_variance_unexplained",
    "group_variance_explained",
    "latent_label_correlation",
    "latent_selectivity",
    "resample_dead_latents",
    "sae_loss",
    "sae_metrics",
    "select_color_latents",
    "top_activating",
    "train_sae",
]

RESAMPLE_ENCODER_SCALE = 0.2  # revived encoder rows start at 0.2x the mean alive norm (Towards Monosemanticity)
RESAMPLE_POOL = 8192  # inputs scored when choosing where to revive dead latents
EVAL_CHUNK = 8192  # rows per forward pass when measuring, bounds memory at N x d_hidden / chunk


# ----------------------------------------------------------------------------- checks


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_matrix(name: str, x: torch.Tensor, cols: int | None = None, what: str = "features") -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, {cols if cols is not None else what}), got {tuple(x.shape)}")
    if cols is not None and x.shape[1] != cols:
        raise ValueError(f"{name} must have shape (N, {cols}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    _check_matrix(a_name, a)
    if b.shape != a.shape:
        raise ValueError(f"{b_name} must have the shape of {a_name} {tuple(a.shape)}, got {tuple(b.shape)}")


def _check_labels(name: str, labels: torch.Tensor, n: int, num_classes: int, count_name: str) -> None:
    _check_positive_int(count_name, num_classes)
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must have shape ({n},), one per row of f, got {got}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}], got values in [{int(labels.min())}, {int(labels.max())}]"
        )


# ----------------------------------------------------------------------------- model


class SparseAutoencoder(nn.Module):
    """One-hidden-layer ReLU autoencoder: x (N, d_in) -> f (N, d_hidden) >= 0 -> x_hat (N, d_in).

    ``W_dec`` rows are the latents' unit-norm dictionary directions; ``b_dec`` is subtracted
    before encoding and added after decoding, so it acts as the data's center.
    """

    def __init__(self, d_in: int, d_hidden: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_positive_int("d_in", d_in)
        _check_positive_int("d_hidden", d_hidden)
        self.d_in = d_in
        self.d_hidden = d_hidden
        # Random unit directions with a tied encoder start every latent alive and near-orthogonal.
        directions = torch.randn(d_hidden, d_in, generator=generator)
        directions = directions / directions.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(directions.T.contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.W_dec = nn.Parameter(directions)
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents relu((x - b_dec) @ W_enc + b_enc): (N, d_in) -> (N, d_hidden), >= 0."""
        _check_matrix("x", x, self.d_in)
        return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction f @ W_dec + b_dec: (N, d_hidden) -> (N, d_in)."""
        _check_matrix("f", f, self.d_hidden)
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat (N, d_in), f (N, d_hidden)) for x (N, d_in)."""
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every row of W_dec to unit L2 norm, in place."""
        # Unit rows stop the L1 penalty being dodged by shrinking f and growing W_dec.
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_hidden={self.d_hidden}"


# ----------------------------------------------------------------------------- loss and metrics


def sae_loss(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, l1: float = 1e-3) -> torch.Tensor:
    """Scalar mean_n ||x_hat - x||^2 + l1 * mean_n ||f||_1 for x, x_hat (N, d_in), f (N, d_hidden)."""
    _check_same_shape("x", x, "x_hat", x_hat)
    _check_matrix("f", f, what="d_hidden")
    if f.shape[0] != x.shape[0]:
        raise ValueError(f"f must have one row per row of x ({x.shape[0]}), got {tuple(f.shape)}")
    if l1 < 0:
        raise ValueError(f"l1 must be >= 0, got {l1}")
    reconstruction = (x_hat - x).pow(2).sum(dim=1).mean()
    sparsity = f.abs().sum(dim=1).mean()
    return reconstruction + l1 * sparsity


def fraction_variance_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean_n(x)||^2, in [0, inf); 0 is perfect, 1 is the mean."""
    _check_same_shape("x", x, "x_hat", x_hat)
    x64 = x.detach().double()
    residual = (x64 - x_hat.detach().double()).pow(2).sum()
    total = (x64 - x64.mean(dim=0)).pow(2).sum()
    if total == 0:
        raise ValueError(f"x has zero variance over its {x.shape[0]} rows, so FVU is undefined")
    return float(residual / total)


@torch.no_grad()
def sae_metrics(sae: SparseAutoencoder, x: torch.Tensor) -> dict[str, float]:
    """Metrics of ``sae`` on x (N, d_in).

    ``mse``: mean squared error per element, mean_n ||x_hat - x||^2 / d_in; ``fvu``: see
    fraction_variance_unexplained; ``l0``: mean number of latents > 0 per row;
    ``dead_fraction``: fraction of latents that are 0 on every row, in [0, 1].
    """
    _check_matrix("x", x, sae.d_in)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 rows to measure variance, got {x.shape[0]}")
    squared_error = 0.0
    active_count = 0
    fired = torch.zeros(sae.d_hidden, dtype=torch.bool, device=x.device)
    for chunk in x.split(EVAL_CHUNK):
        x_hat, f = sae(chunk)
        squared_error += float((x_hat - chunk).double().pow(2).sum())
        active = f > 0
        active_count += int(active.sum())
        fired |= active.any(dim=0)
    n = x.shape[0]
    x64 = x.double()
    total = float((x64 - x64.mean(dim=0)).pow(2).sum())
    if total == 0:
        raise ValueError(f"x has zero variance over its {n} rows, so FVU is undefined")
    return {
        "mse": squared_error / (n * sae.d_in),
        "fvu": squared_error / total,
        "l0": active_count / n,
        "dead_fraction": float((~fired).float().mean()),
    }


# ----------------------------------------------------------------------------- training


@torch.no_grad()
def resample_dead_latents(
    sae: SparseAutoencoder,
    dead: torch.Tensor,
    x: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Re-initialise the latents where ``dead`` (d_hidden,) bool is True from inputs x (N, d_in); returns how many.

    Decoder row: the unit reconstruction error of an input drawn with p ~ loss^2; encoder
    row: the same, at 0.2x the mean alive encoder norm; encoder bias and Adam state: zero.
    """
    if not isinstance(dead, torch.Tensor) or dead.dtype != torch.bool or dead.shape != (sae.d_hidden,):
        got = f"{tuple(dead.shape)} {dead.dtype}" if isinstance(dead, torch.Tensor) else type(dead).__name__
        raise ValueError(f"dead must be a bool tensor of shape ({sae.d_hidden},), got {got}")
    _check_matrix("x", x, sae.d_in)
    dead_ids = dead.nonzero().flatten()
    if dead_ids.numel() == 0 or x.shape[0] == 0:
        return 0
    # Score a random pool: cheap, and large enough to find the inputs the SAE fails on.
    pool = x[torch.randperm(x.shape[0], generator=generator)[:RESAMPLE_POOL].to(x.device)]
    residual = pool - sae(pool)[0]
    loss = residual.pow(2).sum(dim=1)
    weights = loss.pow(2).double().cpu()
    if not bool(weights.gt(0).any()):
        return 0  # nothing left to explain
    enough = int(weights.gt(0).sum()) >= dead_ids.numel()
    picks = torch.multinomial(weights, dead_ids.numel(), replacement=not enough, generator=generator)
    directions = residual[picks.to(x.device)]
    directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)

    alive = ~dead
    enc_norms = sae.W_enc.norm(dim=0)
    reference = enc_norms[alive].mean() if bool(alive.any()) else enc_norms.mean()
    sae.W_dec[dead_ids] = directions
    sae.W_enc[:, dead_ids] = directions.T * (RESAMPLE_ENCODER_SCALE * reference)
    sae.b_enc[dead_ids] = 0.0

    if optimizer is not None:
        # Stale moments would keep moving the new rows with the dead latents' gradient history.
        for param, index in ((sae.W_dec, (dead_ids,)), (sae.W_enc, (slice(None), dead_ids)), (sae.b_enc, (dead_ids,))):
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                moment = optimizer.state.get(param, {}).get(key)
                if isinstance(moment, torch.Tensor) and moment.shape == param.shape:
                    moment[index] = 0.0
    return int(dead_ids.numel())


@torch.no_grad()
def _project_decoder_grad_(sae: SparseAutoencoder) -> None:
    # Drop the gradient along each (unit) decoder row: that part only changes the norm,
    # which renormalisation undoes anyway, and it would distort Adam's step size.
    grad = sae.W_dec.grad
    if grad is not None:
        grad.sub_((grad * sae.W_dec).sum(dim=1, keepdim=True) * sae.W_dec)


@torch.no_grad()
def _rescale_(sae: SparseAutoencoder, factor: float) -> None:
    # Exact reparametrisation: an SAE for x/s equals an SAE for x with b_enc, b_dec times s
    # (latents scale by s, unit decoder rows are untouched).
    sae.b_enc.mul_(factor)
    sae.b_dec.mul_(factor)


@contextlib.contextmanager
def _scaled_by(sae: SparseAutoencoder, factor: float) -> Iterator[None]:
    """Multiplies the SAE's biases by ``factor`` when the block ends, however it ends (``_rescale_``)."""
    try:
        yield
    finally:
        _rescale_(sae, factor)


def train_sae(
    activations: torch.Tensor,
    d_hidden: int,
    l1: float = 0.1,
    epochs: int = 8,
    batch_size: int = 256,
    lr: float = 3e-3,
    resample_every: int | None = 500,
    seed: int = 0,
    quiet: bool = True,
    *,
    sae: SparseAutoencoder | None = None,
) -> tuple[SparseAutoencoder, dict[str, list[float]]]:
    """Train an SAE on activations (N, d_in); returns it and per-epoch history (lists of floats).

    Training sees x / s, s = sqrt(mean_n ||x - mean(x)||^2), so the loss's reconstruction term
    is an FVU and ``l1`` is scale-free; s is folded back, so the SAE works on raw activations.
    ``sae`` continues training that SAE in place instead of a fresh one seeded by ``seed``.
    """
    _check_matrix("activations", activations, what="d_in")
    _check_positive_int("d_hidden", d_hidden)
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    if resample_every is not None:
        _check_positive_int("resample_every", resample_every)
    if not (lr > 0):
        raise ValueError(f"lr must be > 0, got {lr}")
    if not (l1 >= 0):
        raise ValueError(f"l1 must be >= 0, got {l1}")
    n, d_in = activations.shape
    if n < 2:
        raise ValueError(f"activations need at least 2 rows, got {n}")
    if sae is not None and (sae.d_in, sae.d_hidden) != (d_in, d_hidden):
        raise ValueError(
            f"sae must have d_in={d_in}, d_hidden={d_hidden} to match the arguments, "
            f"got d_in={sae.d_in}, d_hidden={sae.d_hidden}"
        )

    generator = torch.Generator().manual_seed(seed)
    x = activations.detach()
    mean = x.mean(dim=0)
    scale = float((x - mean).pow(2).sum(dim=1).mean().sqrt())
    if scale == 0:
        raise ValueError(f"activations are constant over all {n} rows; there is nothing to learn")
    x = x / scale

    if sae is None:
        sae = SparseAutoencoder(d_in, d_hidden, generator=generator).to(device=x.device, dtype=x.dtype)
        with torch.no_grad():
            sae.b_dec.copy_(mean / scale)  # start at the data's center so encoders see centered input
    else:
        _rescale_(sae, 1.0 / scale)
    sae.normalize_decoder_()
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)

    # Per epoch: loss (on x / s), mse (per element, raw scale), fvu, l0, dead_fraction (silent
    # all epoch) and the number of latents resampled.
    history: dict[str, list[float]] = {k: [] for k in ("loss", "mse", "fvu", "l0", "dead_fraction", "resampled")}
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    fired_in_window = torch.zeros(d_hidden, dtype=torch.bool, device=x.device)
    step = 0
    # The SAE goes back to the data's raw scale on leaving, also on interruption, so a passed-in SAE is never
    # left scaled.
    with _scaled_by(sae, scale), Progress(epochs, desc="train SAE", unit="epoch", quiet=quiet) as bar:
        for _ in range(epochs):
            loss_sum = squared_error = 0.0
            active_count = 0
            resampled = 0
            fired_in_epoch = torch.zeros(d_hidden, dtype=torch.bool, device=x.device)
            for index in torch.randperm(n, generator=generator).to(x.device).split(batch_size):
                batch = x[index]
                x_hat, f = sae(batch)
                loss = sae_loss(batch, x_hat, f, l1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                _project_decoder_grad_(sae)
                optimizer.step()
                sae.normalize_decoder_()
                step += 1

                with torch.no_grad():
                    active = f > 0
                    fired_in_window |= active.any(dim=0)
                    fired_in_epoch |= active.any(dim=0)
                    active_count += int(active.sum())
                    squared_error += float((x_hat - batch).pow(2).sum())
                    loss_sum += float(loss) * batch.shape[0]
                # Revive only with a full window still to come, so new latents get trained.
                if resample_every is not None and step % resample_every == 0:
                    if step + resample_every <= total_steps:
                        resampled += resample_dead_latents(sae, ~fired_in_window, x, optimizer, generator)
                    fired_in_window.zero_()

            # Running statistics over the epoch's batches (the SAE moves during the epoch);
            # x has unit total variance, so the summed squared error per row is the FVU.
            history["loss"].append(loss_sum / n)
            history["fvu"].append(squared_error / n)
            history["mse"].append(squared_error * scale**2 / (n * d_in))
            history["l0"].append(active_count / n)
            history["dead_fraction"].append(float((~fired_in_epoch).float().mean()))
            history["resampled"].append(float(resampled))
            bar.set_postfix(fvu=f"{history['fvu'][-1]:.3f}", l0=f"{history['l0'][-1]:.1f}")
            bar.update(1)
    return sae, history


# ----------------------------------------------------------------------------- analysis


def latent_label_correlation(f: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(H, num_classes) Pearson correlation, in [-1, 1], of each latent of f (N, H) with each one-hot class.

    A constant latent or an absent/ubiquitous class has no defined correlation and gets 0.
    """
    _check_matrix("f", f, what="H")
    _check_labels("labels", labels, f.shape[0], num_classes, "num_classes")
    f64 = f.detach().double()
    onehot = F.one_hot(labels.long(), num_classes).to(f64)
    f_centered = f64 - f64.mean(dim=0)
    y_centered = onehot - onehot.mean(dim=0)
    covariance = f_centered.T @ y_centered
    norms = f_centered.norm(dim=0)[:, None] * y_centered.norm(dim=0)[None, :]
    corr = torch.where(norms > 0, covariance / norms.clamp_min(1e-300), torch.zeros_like(covariance))
    return corr.clamp(-1.0, 1.0).to(f.dtype)


def group_variance_explained(f: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(H,) correlation ratio eta^2 in [0, 1]: share of each latent's variance explained by the group means.

    f (N, H); groups (N,) int in [0, num_groups). A constant latent gets 0.
    """
    _check_matrix("f", f, what="H")
    _check_labels("groups", groups, f.shape[0], num_groups, "num_groups")
    f64 = f.detach().double()
    onehot = F.one_hot(groups.long(), num_groups).to(f64)
    counts = onehot.sum(dim=0)
    group_means = (onehot.T @ f64) / counts.clamp_min(1)[:, None]
    centered_means = group_means - f64.mean(dim=0)
    between = (counts[:, None] * centered_means.pow(2)).sum(dim=0)
    total = (f64 - f64.mean(dim=0)).pow(2).sum(dim=0)
    eta2 = torch.where(total > 0, between / total.clamp_min(1e-300), torch.zeros_like(total))
    return eta2.clamp(0.0, 1.0).to(f.dtype)


def latent_selectivity(
    f: torch.Tensor, color_ids: torch.Tensor, labels: torch.Tensor, num_colors: int = 10, num_classes: int = 10
) -> torch.Tensor:
    """(H,) color-vs-digit score in [-1, 1]: eta^2 by color minus eta^2 by digit; > 0 means color-like.

    Only meaningful where color and digit are independent (e.g. the hard test or random recoloring).
    """
    _check_matrix("f", f, what="H")
    _check_labels("color_ids", color_ids, f.shape[0], num_colors, "num_colors")
    _check_labels("labels", labels, f.shape[0], num_classes, "num_classes")
    return group_variance_explained(f, color_ids, num_colors) - group_variance_explained(f, labels, num_classes)


def select_color_latents(
    f: torch.Tensor,
    color_ids: torch.Tensor,
    labels: torch.Tensor,
    threshold: float = 0.5,
    num_colors: int = 10,
    num_classes: int = 10,
) -> torch.Tensor:
    """int64 indices of latents with latent_selectivity > threshold, most color-selective first."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [-1, 1] like the selectivity, got {threshold}")
    score = latent_selectivity(f, color_ids, labels, num_colors, num_classes)
    order = torch.sort(score, descending=True, stable=True).indices
    return order[score[order] > threshold]


def top_activating(f: torch.Tensor, k: int) -> torch.Tensor:
    """(H, k) int64 row indices of f (N, H) with the k largest activations per latent, largest first.

    Ties keep the lower row index first, so the result is deterministic.
    """
    _check_matrix("f", f, what="H")
    _check_positive_int("k", k)
    if k > f.shape[0]:
        raise ValueError(f"k must be at most the number of rows of f ({f.shape[0]}), got {k}")
    return torch.sort(f.detach().T, dim=1, descending=True, stable=True).indices[:, :k]


# ----------------------------------------------------------------------------- surgery


@contextlib.contextmanager
def ablate_latents(
    layer: nn.Module, sae: SparseAutoencoder, latent_ids: Sequence[int] | torch.Tensor
) -> Iterator[None]:
    """While active, ``layer``'s output h (N, d_in) becomes h - sum_{j in latent_ids} f_j(h) W_dec[j].

    The SAE's reconstruction error stays in h; repeated ids count once; the hook is always removed.
    """
    ids = torch.as_tensor(latent_ids, dtype=torch.long).flatten().unique()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= sae.d_hidden):
        raise ValueError(
            f"latent_ids must lie in [0, {sae.d_hidden - 1}], got values in [{int(ids.min())}, {int(ids.max())}]"
        )

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[1] != sae.d_in:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"ablate_latents needs a layer whose output is (N, {sae.d_in}), got {got}")
        selected = ids.to(output.device)
        f = sae.encode(output)
        return output - f[:, selected] @ sae.W_dec[selected]

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
