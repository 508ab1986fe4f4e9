"""Checks of lesson 06: SparseAutoencoder, sae_loss and fraction_variance_unexplained (shortcutlab.sae).

The SAE's formulas are compared with the reference SAE holding the same parameter values; its random
initialisation is graded on behaviour (unit decoder rows, zero biases, reproducible from the generator).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.grading import (CheckFailure, Slip, check, expect_close, expect_shape, expect_tensor, expect_true,
                                 probe)
from shortcutlab.tolerance import tolerance_for

# Bound at import, before any submission runs, so a submission cannot swap the reference.
from shortcutlab.sae import SparseAutoencoder as ReferenceSparseAutoencoder
from shortcutlab.sae import fraction_variance_unexplained as reference_fraction_variance_unexplained
from shortcutlab.sae import sae_loss as reference_sae_loss

PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec")
# Roundings a correct answer may differ by from the reference (shortcutlab.tolerance), at the checks' sizes (N <= 13,
# d_in <= 8, d_hidden <= 16): encode's d_in-term product and bias, decode's d_hidden-term one, a row norm (d_in
# squares, a root, a division), the loss's sums over features and latents and its mean over rows, a gradient's sums
# over rows, the FVU's two sums over all entries and the feature means.
ENCODE_OPS, DECODE_OPS, NORM_OPS = 8 + 2, 16 + 1, 2 * 8 + 2
FORWARD_OPS = ENCODE_OPS + DECODE_OPS
LOSS_OPS = 8 + 16 + 9 + 2
GRAD_OPS = FORWARD_OPS + LOSS_OPS + 9 + 16
FVU_OPS = 2 * 13 * 8 + 13 + 2


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + salt)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _sizes(seed: int, salt: int) -> tuple[int, int, int]:
    """(N, d_in, d_hidden), d_hidden > d_in as in an overcomplete SAE."""
    g = _generator(seed, salt)
    d_in = int(torch.randint(3, 9, (1,), generator=g))
    return int(torch.randint(4, 10, (1,), generator=g)), d_in, d_in + int(torch.randint(2, 9, (1,), generator=g))


def _close(a: torch.Tensor, b: torch.Tensor, ops: int) -> bool:
    """``a`` equals ``b`` up to the roundings of ``ops`` operations (to recognise a slip from its value)."""
    return a.shape == b.shape and bool(torch.allclose(a.detach().double(), b.detach().double(),
                                                      **tolerance_for(b, ops=ops)))


def _fvu_close(got: float, value: float) -> bool:
    tolerance = tolerance_for(value, ops=FVU_OPS, dtype=torch.float32)
    return abs(got - value) <= tolerance["atol"] + tolerance["rtol"] * abs(value)


# ----------------------------------------------------------------------------- SparseAutoencoder
#
# Each check's use of the student's class is a @probe (it builds and runs the SAE, returning plain data); the check
# body judges that data: the parameters' names and shapes again, and every comparison with the reference, which is
# built in the body from parameter values the body draws itself.


def _build(SparseAutoencoder, d_in: int, d_hidden: int, seed: int) -> nn.Module:
    """(Inside a probe) a new SAE, stopped early with the message a check gives if it is not one of the right shape."""
    sae = SparseAutoencoder(d_in, d_hidden, generator=_generator(seed, 1))
    _expect_built(_described(sae), d_in, d_hidden)
    return sae


def _described(sae: object) -> dict:
    """What ``_expect_built`` judges of a new SAE: whether it is an nn.Module, and its registered parameters."""
    if not isinstance(sae, nn.Module):
        return {"module": False, "type": type(sae).__name__, "parameters": {}}
    return {"module": True, "type": type(sae).__name__,
            "parameters": {name: p.detach().clone() for name, p in sae.named_parameters() if name in PARAMETERS}}


def _expect_built(built: dict, d_in: int, d_hidden: int) -> None:
    expect_true(built["module"], f"SparseAutoencoder(...) should build an nn.Module, got {built['type']}")
    registered = built["parameters"]
    for name, shape in zip(PARAMETERS, ((d_in, d_hidden), (d_hidden,), (d_hidden, d_in), (d_in,))):
        if name not in registered:
            raise CheckFailure(f"SparseAutoencoder has no parameter {name}; create it in __init__ as "
                               f"self.{name} = nn.Parameter(...) of shape {shape}")
        expect_shape(registered[name], shape, f"SparseAutoencoder({d_in}, {d_hidden}).{name}",
                     hint="W_enc is (d_in, d_hidden), b_enc (d_hidden,), W_dec (d_hidden, d_in), b_dec (d_in,)")


def _plain(value: object) -> object:
    """A student method's answer as plain data: tensors detached (and copied), tuples and lists element-wise."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value) if type(value) in (tuple, list) else [_plain(v) for v in value]
    return value


def _state(sae: nn.Module) -> dict[str, object]:
    """The SAE's four parameters as it holds them now (attributes, detached copies)."""
    return {name: _plain(getattr(sae, name)) for name in PARAMETERS}


def _random_values(d_in: int, d_hidden: int, seed: int, salt: int) -> dict[str, torch.Tensor]:
    """Random values for every parameter (non-zero biases, uneven decoder rows)."""
    g = _generator(seed, salt)
    shapes = {"W_enc": (d_in, d_hidden), "b_enc": (d_hidden,), "W_dec": (d_hidden, d_in), "b_dec": (d_in,)}
    values = {name: torch.randn(shapes[name], generator=g) for name in PARAMETERS}
    values["W_dec"] = values["W_dec"] * (0.5 + 2 * torch.rand(values["W_dec"].shape[0], 1, generator=g))
    return values


def _assign(sae: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """(Inside a probe) copy ``values`` into the SAE's parameters."""
    with torch.no_grad():
        for name in PARAMETERS:
            getattr(sae, name).copy_(values[name])


def _reference_with(values: dict[str, torch.Tensor]) -> nn.Module:
    d_hidden, d_in = values["W_dec"].shape
    reference = ReferenceSparseAutoencoder(d_in, d_hidden)
    with torch.no_grad():
        for name, value in values.items():
            getattr(reference, name).copy_(value)
    return reference


def _encode_hint(values: dict[str, torch.Tensor], x: torch.Tensor, got: torch.Tensor) -> str:
    w_enc, b_enc, w_dec, b_dec = (values[n] for n in PARAMETERS)
    slips = {
        Slip("b_dec_not_subtracted", "b_dec is not subtracted before encoding: relu((x - b_dec) @ W_enc + b_enc)"):
            F.relu(x @ w_enc + b_enc),
        Slip("no_relu", "the ReLU is missing: latents must be >= 0"): (x - b_dec) @ w_enc + b_enc,
        Slip("no_b_enc", "b_enc is missing: relu((x - b_dec) @ W_enc + b_enc)"): F.relu((x - b_dec) @ w_enc),
        Slip("encodes_with_w_dec", "encode uses W_dec.T; it must use W_enc (they are separate parameters)"):
            F.relu((x - b_dec) @ w_dec.T + b_enc),
    }
    for hint, value in slips.items():
        if _close(got, value, ENCODE_OPS):
            return hint
    return "encode(x) = relu((x - b_dec) @ W_enc + b_enc)"


@probe
def _shapes_of(SparseAutoencoder, d_in: int, d_hidden: int, seed: int, x: torch.Tensor | None) -> dict:
    """A new SAE's parameters, its stored (d_in, d_hidden) and, given ``x``, its forward output on it."""
    sae = _build(SparseAutoencoder, d_in, d_hidden, seed)
    stored = (getattr(sae, "d_in", None), getattr(sae, "d_hidden", None))
    return {"built": _described(sae), "stored": _plain(stored), "out": None if x is None else _plain(sae(x))}


@check("SparseAutoencoder", kind="property")
def test_sparse_autoencoder_has_parameters_and_outputs_of_the_documented_shapes(SparseAutoencoder, seed):
    """W_enc (d_in, d_hidden), b_enc (d_hidden,), W_dec (d_hidden, d_in), b_dec (d_in,); forward -> (x_hat, f)."""
    n, d_in, d_hidden = _sizes(seed, 2)
    got = _shapes_of(SparseAutoencoder, d_in, d_hidden, seed, None)  # the stored sizes are judged before forward runs
    _expect_built(got["built"], d_in, d_hidden)
    stored = tuple(got["stored"])
    expect_true(stored == (d_in, d_hidden), f"SparseAutoencoder({d_in}, {d_hidden}) stores (d_in, d_hidden) = {stored}. "
                "Hint: self.d_in, self.d_hidden = d_in, d_hidden (the training loop and the notebook read them)")
    x = torch.randn(n, d_in, generator=_generator(seed, 3))
    got = _shapes_of(SparseAutoencoder, d_in, d_hidden, seed, x)
    _expect_built(got["built"], d_in, d_hidden)
    out = got["out"]
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailure(f"SparseAutoencoder's forward should return a pair (x_hat, f), got {type(out).__name__}. "
                           "Hint: f = self.encode(x); return self.decode(f), f")
    expect_shape(out[0], (n, d_in), f"x_hat (first output) for x of shape {(n, d_in)}")
    expect_shape(out[1], (n, d_hidden), f"f (second output) for x of shape {(n, d_in)}")


@probe
def _answers_of(SparseAutoencoder, d_in: int, d_hidden: int, seed: int, values: dict, calls: list) -> dict:
    """A new SAE given the parameter ``values``: its answers to ``calls`` [(method, input)], in order, without
    gradients ("forward" is sae(input))."""
    sae = _build(SparseAutoencoder, d_in, d_hidden, seed)
    _assign(sae, values)
    answers = []
    with torch.no_grad():
        for method, value in calls:
            answers.append(_plain(sae(value.clone()) if method == "forward" else getattr(sae, method)(value.clone())))
    return {"built": _described(sae), "answers": answers}


@check("SparseAutoencoder")
def test_sparse_autoencoder_encode_and_decode_follow_the_formulas(SparseAutoencoder, seed):
    """With random parameter values: encode = relu((x - b_dec) @ W_enc + b_enc), decode = f @ W_dec + b_dec."""
    n, d_in, d_hidden = _sizes(seed, 4)
    values = _random_values(d_in, d_hidden, seed, 5)
    reference = _reference_with(values)
    x = torch.randn(n, d_in, generator=_generator(seed, 6)) + 2 * torch.randn(d_in, generator=_generator(seed, 7))
    latents = F.relu(torch.randn(n, d_hidden, generator=_generator(seed, 8)))
    calls = [("encode", x), ("decode", latents), ("forward", x)]

    def answers(count: int) -> list:  # answers to the first ``count`` calls: a stage is judged before the next runs
        got = _answers_of(SparseAutoencoder, d_in, d_hidden, seed, values, calls[:count])
        _expect_built(got["built"], d_in, d_hidden)
        return got["answers"]

    with torch.no_grad():
        f, expected_f = answers(1)[0], reference.encode(x)
        expect_shape(f, (n, d_hidden), "encode(x)")
        encode_tolerance = tolerance_for(expected_f, ops=ENCODE_OPS)
        try:
            expect_close(f, expected_f, "encode(x)", **encode_tolerance)
        except CheckFailure:
            expect_close(f, expected_f, "encode(x)", **encode_tolerance, hint=_encode_hint(values, x, f))
        x_hat = answers(2)[1]
        expect_shape(x_hat, (n, d_in), "decode(f)")
        expected_x_hat = reference.decode(latents)
        expect_close(x_hat, expected_x_hat, "decode(f)", **tolerance_for(expected_x_hat, ops=DECODE_OPS),
                     hint="decode(f) = f @ W_dec + b_dec (b_dec is added back after decoding)")
        out = answers(3)[2]
        expected_x_hat, _ = reference(x)
        expect_close(out[1], expected_f, "forward(x)[1], the latents f", **encode_tolerance,
                     hint="forward returns (decode(encode(x)), encode(x))")
        expect_close(out[0], expected_x_hat, "forward(x)[0], the reconstruction x_hat",
                     **tolerance_for(expected_x_hat, ops=FORWARD_OPS),
                     hint="forward returns (decode(encode(x)), encode(x))")


@probe
def _normalized(SparseAutoencoder, d_in: int, d_hidden: int, seed: int, values: dict) -> dict:
    """A new SAE given the parameter ``values``, after normalize_decoder_(): its parameters, and whether W_dec is
    still the same object."""
    sae = _build(SparseAutoencoder, d_in, d_hidden, seed)
    _assign(sae, values)
    parameter = sae.W_dec
    sae.normalize_decoder_()
    return {"built": _described(sae), "same_w_dec": sae.W_dec is parameter, "state": _state(sae)}


@check("SparseAutoencoder", kind="property")
def test_sparse_autoencoder_normalize_decoder_makes_every_row_unit_norm(SparseAutoencoder, seed):
    """normalize_decoder_() divides each row of W_dec by its L2 norm, in place, keeping its direction."""
    _, d_in, d_hidden = _sizes(seed, 9)
    values = _random_values(d_in, d_hidden, seed, 10)
    got = _normalized(SparseAutoencoder, d_in, d_hidden, seed, values)
    _expect_built(got["built"], d_in, d_hidden)
    expect_true(got["same_w_dec"] is True, "normalize_decoder_ replaced W_dec by a new object; rescale it in place "
                "(self.W_dec.div_(...) under torch.no_grad()) so an optimizer holding it keeps working")
    state = got["state"]
    w_dec = expect_tensor(state["W_dec"], "W_dec after normalize_decoder_()")
    norms = w_dec.norm(dim=1)
    expected = values["W_dec"] / values["W_dec"].norm(dim=1, keepdim=True)
    hint = "each *row* (one latent's direction, dim=1) gets unit norm: W_dec / W_dec.norm(dim=1, keepdim=True)"
    ones = torch.ones(d_hidden)
    expect_close(norms, ones, f"norms of the {d_hidden} rows of W_dec after normalize_decoder_()",
                 **tolerance_for(ones, ops=2 * NORM_OPS), hint=hint)
    expect_close(w_dec, expected, "W_dec after normalize_decoder_()",
                 **tolerance_for(expected, ops=NORM_OPS), hint=hint)
    for name in ("W_enc", "b_enc", "b_dec"):
        expect_close(state[name], values[name], f"{name} after normalize_decoder_()", atol=0, rtol=0,
                     hint="normalize_decoder_ changes W_dec only")


@probe
def _two_fresh(SparseAutoencoder, d_in: int, d_hidden: int, seed: int) -> dict:
    """Two SAEs built with identically seeded generators: their parameters as they start."""
    a = _build(SparseAutoencoder, d_in, d_hidden, seed)
    b = _build(SparseAutoencoder, d_in, d_hidden, seed)
    return {"built": [_described(a), _described(b)], "a": _state(a), "b": _state(b)}


@check("SparseAutoencoder", kind="property")
def test_sparse_autoencoder_starts_with_unit_decoder_rows_zero_biases_reproducibly(SparseAutoencoder, seed):
    """Fresh SAE: unit-norm decoder rows, W_enc = W_dec.T (tied), zero biases, reproducible from the generator."""
    _, d_in, d_hidden = _sizes(seed, 11)
    got = _two_fresh(SparseAutoencoder, d_in, d_hidden, seed)
    for built in got["built"]:
        _expect_built(built, d_in, d_hidden)
    a, b = got["a"], got["b"]
    for name in PARAMETERS:
        expect_tensor(a[name], f"a fresh {name}")
        expect_tensor(b[name], f"a fresh {name}")
    ones = torch.ones(d_hidden)
    row_norms = a["W_dec"].norm(dim=1)
    hint = "start from random unit directions: torch.randn(d_hidden, d_in, generator=generator), each row divided by its norm"
    if not _close(row_norms, ones, 2 * NORM_OPS) and _close(a["W_dec"].norm(dim=0), torch.ones(d_in), 2 * NORM_OPS):
        hint = ("the columns of W_dec have unit norm, its rows do not: row j is latent j's direction, so normalise "
                "along dim=1, directions / directions.norm(dim=1, keepdim=True)")
    expect_close(row_norms, ones, f"norms of the {d_hidden} rows of a fresh W_dec ({d_hidden}, {d_in})",
                 **tolerance_for(ones, ops=2 * NORM_OPS), hint=hint)
    expect_close(a["W_enc"], a["W_dec"].T, "a fresh W_enc compared with W_dec.T", atol=0, rtol=0,
                 hint="tied start: W_enc is the transpose of W_dec (the same unit directions), as a separate copy")
    for name in ("b_enc", "b_dec"):
        expect_close(a[name], torch.zeros_like(a[name]), f"a fresh {name}", atol=0, rtol=0, hint="biases start at zero")
    for name in PARAMETERS:
        expect_true(torch.equal(a[name], b[name]), f"two SAEs built with identically seeded "
                    f"generators have different {name}. Hint: draw with torch.randn(..., generator=generator)")


@probe
def _gradients(SparseAutoencoder, d_in: int, d_hidden: int, seed: int, values: dict, x: torch.Tensor,
               l1: float) -> dict:
    """A new SAE given the parameter ``values``: each parameter's gradient (None if it got none) of the loss
    sae_loss(x, *sae(x), l1)."""
    sae = _build(SparseAutoencoder, d_in, d_hidden, seed)
    _assign(sae, values)
    x_hat, f = sae(x.clone())
    reference_sae_loss(x, x_hat, f, l1).backward()
    return {"built": _described(sae), "grads": {name: _plain(getattr(sae, name).grad) for name in PARAMETERS}}


@check("SparseAutoencoder", kind="property")
def test_sparse_autoencoder_trains_every_parameter_like_the_reference(SparseAutoencoder, seed):
    """Training works: every parameter gets the reference's gradient of a reconstruction + L1 loss."""
    _check_sae_gradients(SparseAutoencoder, seed, 44)


@check("SparseAutoencoder", hidden=True, kind="property")
def test_sparse_autoencoder_gradients_match_the_reference(SparseAutoencoder, seed):
    """The visible gradient check on other inputs."""
    _check_sae_gradients(SparseAutoencoder, seed, 12)


def _check_sae_gradients(SparseAutoencoder, seed: int, salt: int) -> None:
    n, d_in, d_hidden = _sizes(seed, salt)
    values = _random_values(d_in, d_hidden, seed, salt + 1)
    x = torch.randn(n, d_in, generator=_generator(seed, salt + 2))
    got = _gradients(SparseAutoencoder, d_in, d_hidden, seed, values, x, 0.1)
    _expect_built(got["built"], d_in, d_hidden)
    reference = _reference_with(values)
    x_hat, f = reference(x.clone())
    reference_sae_loss(x, x_hat, f, 0.1).backward()
    for name in PARAMETERS:
        grad = got["grads"][name]
        expect_true(grad is not None, f"{name} got no gradient: use it in encode/decode with torch operations")
        expected = getattr(reference, name).grad
        expect_close(grad, expected, f"gradient of the loss with respect to {name}",
                     **tolerance_for(expected, ops=GRAD_OPS),
                     hint="encode = relu((x - b_dec) @ W_enc + b_enc), decode = f @ W_dec + b_dec")


# ----------------------------------------------------------------------------- sae_loss


def _loss_batch(seed: int, salt: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, d_in, d_hidden = _sizes(seed, salt)
    g = _generator(seed, salt + 1)
    x = torch.randn(n, d_in, generator=g)
    return x, x + 0.5 * torch.randn(n, d_in, generator=g), F.relu(2 * torch.randn(n, d_hidden, generator=g))


def _loss_hint(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, l1: float, got: torch.Tensor) -> str:
    sq = (x_hat - x).pow(2)
    rec, sparsity = sq.sum(dim=1).mean(), f.abs().sum(dim=1).mean()
    slips = {
        Slip("reconstruction_mean_over_features", "the reconstruction term is averaged over features too; sum the "
             "squares over features (dim=1), then average over rows"): sq.mean() + l1 * sparsity,
        Slip("l1_mean_over_latents", "the L1 term is averaged over latents too; sum |f| over latents (dim=1), then "
             "average over rows"): rec + l1 * f.abs().mean(),
        Slip("mean_over_features", "both terms are averaged over features; sum over dim=1, then average over rows"):
            sq.mean() + l1 * f.abs().mean(),
        Slip("l1_missing", "the L1 sparsity term l1 * mean_n ||f||_1 is missing"): rec,
        Slip("l1_not_scaled", "the L1 term is not multiplied by l1"): rec + sparsity,
        Slip("summed_over_batch", "the terms are summed over the batch; average them over rows"):
            sq.sum() + l1 * f.abs().sum(),
        Slip("error_not_squared", "the reconstruction error is not squared"):
            (x_hat - x).abs().sum(dim=1).mean() + l1 * sparsity,
    }
    for hint, value in slips.items():
        if _close(got, value, LOSS_OPS):
            return hint
    return "loss = (x_hat - x).pow(2).sum(dim=1).mean() + l1 * f.abs().sum(dim=1).mean()"


def _check_loss(sae_loss, x, x_hat, f, l1, what, pass_l1=True) -> torch.Tensor:
    got = sae_loss(x.clone(), x_hat.clone(), f.clone(), *((l1,) if pass_l1 else ()))
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        got_what = f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
        raise CheckFailure(f"sae_loss should return a scalar tensor (so that .backward() works), got {got_what}")
    expected = reference_sae_loss(x, x_hat, f, l1)
    tolerance = tolerance_for(expected, ops=LOSS_OPS)
    try:
        expect_close(got, expected, what, **tolerance)
    except CheckFailure:
        expect_close(got, expected, what, **tolerance, hint=_loss_hint(x, x_hat, f, l1, got.detach()))
    return got


@check("sae_loss")
def test_sae_loss_matches_reference_on_random_batch(sae_loss, seed):
    """Random x, x_hat (N, d_in), non-negative f (N, d_hidden) and l1."""
    x, x_hat, f = _loss_batch(seed, 20)
    l1 = _uniform(_generator(seed, 22), 0.05, 0.5)
    _check_loss(sae_loss, x, x_hat, f, l1, f"sae_loss with l1={l1:.3g}")


@check("sae_loss", kind="property")
def test_sae_loss_with_l1_zero_is_the_mean_squared_error_per_row(sae_loss, seed):
    """l1=0 leaves mean_n ||x_hat - x||^2: summed over features, averaged over rows."""
    x, x_hat, f = _loss_batch(seed, 23)
    _check_loss(sae_loss, x, x_hat, f, 0.0, "sae_loss with l1=0")


@check("sae_loss", kind="property")
def test_sae_loss_uses_the_absolute_value_of_f(sae_loss, seed):
    """f with negative entries (not from a ReLU): the penalty is l1 * mean_n sum_j |f_nj|."""
    x, x_hat, f = _loss_batch(seed, 27)
    f = f - 1.5 * f.mean()  # a good part of the entries negative
    l1 = _uniform(_generator(seed, 28), 0.05, 0.5)
    what = f"sae_loss with l1={l1:.3g} and f partly negative"
    got = sae_loss(x.clone(), x_hat.clone(), f.clone(), l1)
    expected = reference_sae_loss(x, x_hat, f, l1)
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not _close(got.reshape(()), expected, LOSS_OPS) and \
            _close(got.reshape(()), (x_hat - x).pow(2).sum(dim=1).mean() + l1 * f.sum(dim=1).mean(), LOSS_OPS):
        raise CheckFailure(f"{what}: got {float(got):.6g}, expected {float(expected):.6g}. Hint: the L1 norm sums "
                           "|f|; without .abs() negative entries cancel the positive ones (f.abs().sum(dim=1))")
    _check_loss(sae_loss, x, x_hat, f, l1, what)


@check("sae_loss", kind="property")
def test_sae_loss_l1_defaults_to_one_thousandth(sae_loss, seed):
    """Called without l1, the sparsity weight is 1e-3 (the signature's default)."""
    _check_default_l1(sae_loss, seed, 40)


@check("sae_loss", hidden=True, kind="property")
def test_sae_loss_default_l1_is_one_thousandth(sae_loss, seed):
    """The visible default-l1 check on other inputs."""
    _check_default_l1(sae_loss, seed, 25)


def _check_default_l1(sae_loss, seed: int, salt: int) -> None:
    x, x_hat, f = _loss_batch(seed, salt)
    _check_loss(sae_loss, x, x_hat, 200 * f, 1e-3, "sae_loss with the default l1", pass_l1=False)


@check("sae_loss", kind="property")
def test_sae_loss_gradients_reach_x_hat_and_f(sae_loss, seed):
    """The SAE trains on this loss: its gradients with respect to x_hat and f are the reference's."""
    _check_loss_gradients(sae_loss, seed, 42)


@check("sae_loss", hidden=True, kind="property")
def test_sae_loss_gradient_matches_reference(sae_loss, seed):
    """The visible gradient check on other inputs."""
    _check_loss_gradients(sae_loss, seed, 26)


def _check_loss_gradients(sae_loss, seed: int, salt: int) -> None:
    x, x_hat, f = _loss_batch(seed, salt)
    grads = []
    for fn in (sae_loss, reference_sae_loss):
        xh, ff = x_hat.clone().requires_grad_(True), f.clone().requires_grad_(True)
        loss = fn(x.clone(), xh, ff, 0.2)
        expect_true(isinstance(loss, torch.Tensor) and loss.requires_grad, "sae_loss is not connected to x_hat and "
                    "f's autograd graph; use torch operations only (no .item() or .detach())")
        # allow_unused: a loss that ignores f has a zero gradient there, which the comparison then reports
        grads.append([torch.zeros_like(t) if g is None else g
                      for t, g in zip((xh, ff), torch.autograd.grad(loss.sum(), (xh, ff), allow_unused=True))])
    expect_close(grads[0][0], grads[1][0], "gradient of sae_loss with respect to x_hat",
                 **tolerance_for(grads[1][0], ops=LOSS_OPS),
                 hint="the reconstruction term is mean_n ||x_hat - x||^2 (squares summed over features)")
    expect_close(grads[0][1], grads[1][1], "gradient of sae_loss with respect to f",
                 **tolerance_for(grads[1][1], ops=LOSS_OPS),
                 hint="the sparsity term is l1 * mean_n ||f||_1 (|f| summed over latents)")


# ----------------------------------------------------------------------------- fraction_variance_unexplained


def _fvu_data(seed: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x with a large offset and different scales per feature (so centering and pooling matter), x_hat near x."""
    n, d_in, _ = _sizes(seed, salt)
    g = _generator(seed, salt + 1)
    scales = 0.2 + 3 * torch.rand(d_in, generator=g)
    x = 3 + 2 * torch.randn(d_in, generator=g) + scales * torch.randn(n + 4, d_in, generator=g)
    return x, x + 0.7 * torch.randn(n + 4, d_in, generator=g)


def _fvu_hint(x: torch.Tensor, x_hat: torch.Tensor, got: float) -> str:
    x64, h64 = x.double(), x_hat.double()
    residual = (x64 - h64).pow(2)
    centered = (x64 - x64.mean(dim=0)).pow(2)
    slips = {
        Slip("not_mean_centered", "the total variance is not mean-centered: divide by sum ||x - mean_n(x)||^2, not "
             "sum ||x||^2"): residual.sum() / x64.pow(2).sum(),
        Slip("per_feature_average", "this is the average of per-feature FVUs; pool the squared errors over all "
             "features before dividing"): (residual.sum(dim=0) / centered.sum(dim=0)).mean(),
        Slip("centered_with_overall_mean", "x is centered with its overall mean; center each feature with its own "
             "mean, x.mean(dim=0)"): residual.sum() / (x64 - x64.mean()).pow(2).sum(),
        Slip("variance_explained", "this is the fraction of variance explained (1 - FVU); FVU is the unexplained "
             "part"): 1 - residual.sum() / centered.sum(),
    }
    for hint, value in slips.items():
        if _fvu_close(got, float(value)):
            return hint
    return "FVU = sum ||x - x_hat||^2 / sum ||x - x.mean(dim=0)||^2 (sums over rows and features)"


def _call_fvu(fraction_variance_unexplained, x: torch.Tensor, x_hat: torch.Tensor) -> float:
    got = fraction_variance_unexplained(x.clone(), x_hat.clone())
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise CheckFailure(f"fraction_variance_unexplained should return a number (a Python float), got "
                           f"{type(got).__name__}")
    return float(got)


@check("fraction_variance_unexplained")
def test_fraction_variance_unexplained_matches_reference_on_random_data(fraction_variance_unexplained, seed):
    """Features with a large offset and different scales; x_hat a noisy copy of x."""
    x, x_hat = _fvu_data(seed, 30)
    got = _call_fvu(fraction_variance_unexplained, x, x_hat)
    expected = reference_fraction_variance_unexplained(x, x_hat)
    expect_close(got, expected, f"fraction_variance_unexplained of x {tuple(x.shape)}",
                 **tolerance_for(expected, ops=FVU_OPS, dtype=torch.float32),
                 hint=None if _fvu_close(got, expected) else _fvu_hint(x, x_hat, got))


@check("fraction_variance_unexplained", kind="property")
def test_fraction_variance_unexplained_is_0_for_perfect_and_1_for_the_mean(fraction_variance_unexplained, seed):
    """x_hat = x gives 0; predicting every row as the mean row gives exactly 1."""
    x, _ = _fvu_data(seed, 32)
    expect_close(_call_fvu(fraction_variance_unexplained, x, x), 0.0, "FVU of a perfect reconstruction", atol=1e-6,
                 rtol=0, hint="the residual sum ||x - x_hat||^2 is 0 when x_hat = x")
    mean = x.mean(dim=0, keepdim=True).expand_as(x)
    got = _call_fvu(fraction_variance_unexplained, x, mean)
    expect_close(got, 1.0, "FVU of predicting the mean row x.mean(dim=0) for every row",
                 **tolerance_for(1.0, ops=FVU_OPS),
                 hint=_fvu_hint(x, mean, got))


def _fvu_offset_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features between 4900 and 7300 that vary by a few float32 steps (2^-11 there), each feature's mean exactly
    half-way between two float32 values: a float32 mean is off by at least 2^-12, a float64 one is exact."""
    n, d_in, _ = _sizes(seed, 36)
    g = _generator(seed, 37)
    step = 2.0 ** -11  # spacing of float32 in [4096, 8192)
    half = torch.randint(-8, 9, (n, d_in), generator=g, dtype=torch.float64)
    counts = torch.cat([half + 1, -half])  # 2n rows; each column sums to n: mean = 1/2 step above the offset
    offsets = 4096 + 8 * torch.randint(100, 400, (d_in,), generator=g, dtype=torch.float64)
    x = offsets + step * counts[torch.randperm(2 * n, generator=g)]
    x_hat = x + step * torch.randint(-4, 5, x.shape, generator=g, dtype=torch.float64)
    return x.float(), x_hat.float()  # exact: every value is a float32


@check("fraction_variance_unexplained", kind="property")
def test_fraction_variance_unexplained_is_computed_in_float64(fraction_variance_unexplained, seed):
    """float32 activations with a large offset (4900 to 7300) and a small spread: only a float64 computation is accurate."""
    x, x_hat = _fvu_offset_data(seed)
    got = _call_fvu(fraction_variance_unexplained, x, x_hat)
    expected = reference_fraction_variance_unexplained(x, x_hat)
    tolerance = tolerance_for(expected, ops=FVU_OPS, dtype=torch.float64)
    if abs(got - expected) <= tolerance["atol"] + tolerance["rtol"] * abs(expected):
        return
    hint = _fvu_hint(x, x_hat, got)
    if hint.startswith("FVU = "):  # no known slip of the formula: the precision
        hint = ("compute in float64 (x.double() and x_hat.double() before any sum or mean). These features sit between "
                "4900 and 7300 and vary by ~0.004; float32 values there are 2^-11 apart and each feature's mean lies half-way "
                "between two of them, so a float32 mean is off by at least 2^-12, which moves the FVU far beyond "
                "the tolerance")
    expect_close(got, expected, f"fraction_variance_unexplained of float32 x {tuple(x.shape)} offset by 4900 to 7300 "
                 f"(computed in float64)", **tolerance, hint=hint)


@check("fraction_variance_unexplained", kind="property")
def test_fraction_variance_unexplained_returns_a_float_without_touching_gradients(fraction_variance_unexplained,
                                                                                 seed):
    """A metric: a Python float, also for inputs that require grad, with no gradient left anywhere."""
    x, x_hat = _fvu_data(seed, 34)
    x_hat = x_hat.requires_grad_(True)
    got = fraction_variance_unexplained(x, x_hat)
    expect_true(isinstance(got, float), f"fraction_variance_unexplained should return a Python float, got "
                f"{type(got).__name__}. Hint: return float(residual / total) (or .item()), not a tensor")
    expected = reference_fraction_variance_unexplained(x, x_hat.detach())
    expect_close(got, expected, "fraction_variance_unexplained",
                 **tolerance_for(expected, ops=FVU_OPS, dtype=torch.float32))
    expect_true(x_hat.grad is None, "fraction_variance_unexplained left a gradient in x_hat.grad; it is a metric")
