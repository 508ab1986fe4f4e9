"""Checks of lesson 04: symmetric_kl, consistency_loss, grad_reverse, GRLNet and grl_loss.

The losses are determined and compared with shortcutlab.debias; GRLNet's architecture is not, so it is
graded on behaviour: output shapes, and gradients measured against finite differences of its own forward.

One mistake, one penalty: while consistency_loss's checks run, the name ``symmetric_kl`` in the student's code means
the library's reference, and while GRLNet's run, ``grad_reverse`` does (``with_reference``), so a wrong
symmetric_kl or grad_reverse costs points on its own checks only.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.data import NUM_CLASSES, colorize, recolor, smooth_texture
from shortcutlab.grading import (CheckFailure, Slip, check, expect_close, expect_finite, expect_shape, expect_true, probe,
                                 with_reference)
from shortcutlab.tolerance import tolerance_for

# Bound at import, before any submission runs, so a submission cannot swap the reference.
from shortcutlab.debias import consistency_loss as reference_consistency_loss
from shortcutlab.debias import grl_loss as reference_grl_loss
from shortcutlab.debias import symmetric_kl as reference_symmetric_kl
from shortcutlab.models import grad_reverse as reference_grad_reverse


# Roundings a correct answer may differ by from the reference (shortcutlab.tolerance). symmetric_kl of up to 10
# classes: two log-softmaxes (2 x 2C), the two C-term KL sums and the batch mean. The conv nets below (_ColorReader,
# _TwoHeads): conv 75 + Linear 144, a cross-entropy and the penalty; their weight gradients add sums over up to 12
# images x 36 positions. grad_reverse's own chain: tanh(x @ a.T) (4 terms), a 5-term product, sums over 6 rows.
KL_OPS = 2 * 2 * 10 + 2 * 10 + 6
NET_LOSS_OPS = 75 + 4 * 6 * 6 + NUM_CLASSES + 10 + KL_OPS
NET_GRAD_OPS = NET_LOSS_OPS + 12 * 6 * 6
REVERSE_OPS = 4 + 5 + 3 * 6


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + salt)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _scalar(value: object, what: str) -> torch.Tensor:
    """A loss must be a one-element tensor (a 0-d scalar), so that .backward() works on it."""
    if not isinstance(value, torch.Tensor):
        raise CheckFailure(f"{what} should be a scalar torch.Tensor (so that .backward() works), got "
                           f"{type(value).__name__}")
    if value.numel() != 1:
        raise CheckFailure(f"{what} should be a scalar (shape ()), got shape {tuple(value.shape)}. Hint: take the "
                           "mean over the batch (.mean()), not a per-sample vector")
    return value.reshape(())


def _close(a: torch.Tensor, b: torch.Tensor, ops: int) -> bool:
    """``a`` equals ``b`` up to the roundings of ``ops`` operations (to recognise a slip from its value)."""
    return bool(torch.isclose(a.detach().double(), b.detach().double(), **tolerance_for(b, ops=ops)).all())


def _grads(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


# ----------------------------------------------------------------------------- symmetric_kl


def _kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax a || softmax b) (N,)."""
    la, lb = F.log_softmax(a, dim=1), F.log_softmax(b, dim=1)
    return (la.exp() * (la - lb)).sum(dim=1)


def _skl_hint(p: torch.Tensor, q: torch.Tensor, got: torch.Tensor) -> str:
    kl_pq, kl_qp = _kl(p, q), _kl(q, p)
    slips = {
        Slip("missing_one_half", "the 1/2 is missing: average the two directions, 0.5 * (KL(p||q) + KL(q||p))"):
            (kl_pq + kl_qp).mean(),
        Slip("one_sided_kl", "only KL(p||q) is there; symmetric KL averages both directions, 0.5 * (KL(p||q) + "
             "KL(q||p))"): kl_pq.mean(),
        Slip("one_sided_kl", "only KL(q||p) is there; symmetric KL averages both directions, 0.5 * (KL(p||q) + "
             "KL(q||p))"): kl_qp.mean(),
        Slip("summed_over_batch", "the batch is summed; take the mean over the N samples"): 0.5 * (kl_pq + kl_qp).sum(),
        Slip("mean_over_classes", "the mean is over all N*C entries; sum over classes (dim=1), then take the mean "
             "over samples"): 0.5 * (kl_pq + kl_qp).mean() / p.shape[1],
    }
    for hint, value in slips.items():
        if _close(got, value, KL_OPS):
            return hint
    return "with log_p = F.log_softmax(logits_p, dim=1) (and log_q), KL(p||q) per row is (p * (log_p - log_q)).sum(1)"


def _random_logits(seed: int, salt: int, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed, salt)
    n, c = int(torch.randint(2, 7, (1,), generator=g)), int(torch.randint(3, 11, (1,), generator=g))
    return scale * torch.randn(n, c, generator=g), scale * torch.randn(n, c, generator=g)


@check("symmetric_kl")
def test_symmetric_kl_matches_reference_on_random_logits(symmetric_kl, seed):
    """Random (N, C) logit pairs; value = 1/2 [KL(p||q) + KL(q||p)] averaged over the batch."""
    p, q = _random_logits(seed, 1)
    got = _scalar(symmetric_kl(p.clone(), q.clone()), f"symmetric_kl of two {tuple(p.shape)} logit batches")
    expected = reference_symmetric_kl(p, q)
    tolerance = tolerance_for(expected, ops=KL_OPS)
    try:
        expect_close(got, expected, "symmetric_kl", **tolerance)
    except CheckFailure:
        expect_close(got, expected, "symmetric_kl", **tolerance, hint=_skl_hint(p, q, got))


@check("symmetric_kl", kind="property")
def test_symmetric_kl_is_symmetric_and_zero_for_equal_distributions(symmetric_kl, seed):
    """Swapping the arguments changes nothing; equal logits, or logits shifted by a per-row constant, give 0."""
    p, q = _random_logits(seed, 2)
    forward = _scalar(symmetric_kl(p.clone(), q.clone()), "symmetric_kl(p, q)")
    backward = _scalar(symmetric_kl(q.clone(), p.clone()), "symmetric_kl(q, p)")
    expect_close(backward, forward, "symmetric_kl(q, p) compared with symmetric_kl(p, q)",
                 **tolerance_for(forward, ops=KL_OPS), hint="KL alone is not symmetric; average KL(p||q) and KL(q||p)")
    shift = torch.randn(p.shape[0], 1, generator=_generator(seed, 3)) * 3
    shifted = p + shift  # 0 up to the roundings of log-probabilities of the logits' size
    expect_close(_scalar(symmetric_kl(p.clone(), shifted), "symmetric_kl(p, p + c)"), 0.0,
                 "symmetric_kl of logits that differ by a per-row constant (same softmax)",
                 **tolerance_for(0.0, ops=KL_OPS, magnitude=float(shifted.abs().max())),
                 hint="compare the softmax distributions (log_softmax), not the raw logits")


@check("symmetric_kl", kind="property")
def test_symmetric_kl_stays_finite_for_large_logits(symmetric_kl, seed):
    """Logits in the hundreds make softmax underflow to 0; log_softmax keeps the value and gradient finite."""
    p, q = _random_logits(seed, 4, scale=150.0)
    p, q = p.requires_grad_(True), q.clone()
    got = _scalar(symmetric_kl(p, q), "symmetric_kl of large logits")
    hint = "use F.log_softmax for log p and log q; torch.log(softmax(...)) gives log(0) = -inf and then NaN"
    expect_finite(got, "symmetric_kl of logits of size ~150", hint=hint)
    expected = reference_symmetric_kl(p.detach(), q)
    tolerance = tolerance_for(expected, ops=KL_OPS)
    try:
        expect_close(got, expected, "symmetric_kl of large logits", **tolerance)
    except CheckFailure:
        expect_close(got, expected, "symmetric_kl of large logits", **tolerance,
                     hint=_skl_hint(p.detach(), q, got.detach()))
    expect_true(got.requires_grad, "symmetric_kl's result is not connected to the logits' autograd graph; use "
                "torch operations only (no .item(), .detach() or torch.no_grad())")
    (grad,) = torch.autograd.grad(got, p)
    expect_finite(grad, "the gradient of symmetric_kl for large logits", hint=hint)


def _skl_gradient_hint(p: torch.Tensor, q: torch.Tensor, got: list[torch.Tensor]) -> str:
    """Which input's gradient is missing, if that is what ``got`` (gradients with respect to p and q) shows."""
    zero = [bool((g == 0).all()) for g in got]
    if zero[0] != zero[1]:
        name = "logits_p" if zero[0] else "logits_q"
        return Slip("gradient_blocked", f"no gradient reaches {name}: do not detach it or compute its log-softmax "
                    "under torch.no_grad(); consistency_loss trains the model through both arguments")
    return "compute both log-softmaxes from the logits as given, with torch operations only"


@check("symmetric_kl", kind="property")
def test_symmetric_kl_gradient_reaches_both_logits(symmetric_kl, seed):
    """consistency_loss trains the model through both arguments: the gradient with respect to each equals the
    reference's."""
    p, q = _random_logits(seed, 6)
    p1, q1 = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
    value = _scalar(symmetric_kl(p1, q1), "symmetric_kl")
    expect_true(value.requires_grad, "symmetric_kl's result is not connected to the logits' autograd graph; use "
                "torch operations only (no .item(), .detach() or torch.no_grad())")
    got = _grads(value, [p1, q1])
    p2, q2 = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
    expected = _grads(reference_symmetric_kl(p2, q2), [p2, q2])
    hint = _skl_gradient_hint(p, q, got)
    for name, a, b in zip(("logits_p", "logits_q"), got, expected):
        expect_close(a, b, f"gradient of symmetric_kl with respect to {name}", **tolerance_for(b, ops=KL_OPS),
                     hint=hint)


@check("symmetric_kl", hidden=True, kind="property")
def test_symmetric_kl_gradient_matches_reference(symmetric_kl, seed):
    """consistency_loss backpropagates through it, so its gradient must be the reference's."""
    p, q = _random_logits(seed, 5)
    p1, q1 = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
    got = _grads(_scalar(symmetric_kl(p1, q1), "symmetric_kl"), [p1, q1])
    p2, q2 = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
    expected = _grads(reference_symmetric_kl(p2, q2), [p2, q2])
    for name, a, b in zip(("logits_p", "logits_q"), got, expected):
        expect_close(a, b, f"gradient of symmetric_kl with respect to {name}", **tolerance_for(b, ops=KL_OPS))


# ----------------------------------------------------------------------------- consistency_loss


class _ColorReader(nn.Module):
    """A small conv net whose logits depend strongly on color, so recoloring changes its predictions."""

    def __init__(self, seed: int, tuple_output: bool = False) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(3, 4, 5, stride=4)
            self.head = nn.Linear(4 * 6 * 6, NUM_CLASSES)
            with torch.no_grad():
                # Large weights make recoloring move the softmax a lot, so a missing or misdirected
                # consistency term changes the loss far beyond the tolerance.
                self.conv.weight.mul_(3.0)
                self.head.weight.mul_(10.0)
        self.tuple_output = tuple_output

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(F.relu(self.conv(x)).flatten(1))
        return (logits, -logits[:, :3]) if self.tuple_output else logits


def _colored_batch(seed: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (n, 3, 28, 28) drawn like Colored MNIST, labels (n,), new color ids (n,)), labels != new ids."""
    g = _generator(seed, 20)
    blobs = F.interpolate(torch.rand(n, 1, 7, 7, generator=g), size=28, mode="bilinear", align_corners=False)
    digits = ((blobs[:, 0] - 0.55) * 6).clamp(0, 1)
    colors = torch.randint(0, 9, (n,), generator=g)  # hued colors (not gray 9), which recolor repaints exactly
    images = colorize(digits, colors, smooth_texture(n, g))
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    new_ids = (labels + torch.randint(1, NUM_CLASSES, (n,), generator=g)) % NUM_CLASSES
    return images, labels, new_ids


def _consistency_parts(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, new_ids: torch.Tensor):
    """(CE of the original images, logits of the originals, logits of the recolored images)."""
    def logits_of(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out[0] if isinstance(out, tuple) else out

    original = logits_of(images)
    return F.cross_entropy(original, labels), original, logits_of(recolor(images, new_ids))


def _consistency_formula(model, images, labels, new_ids, weight) -> torch.Tensor:
    """CE + weight * symmetric_kl with the reference symmetric_kl, the one the student's consistency_loss calls
    while its checks run (``with_reference``): a wrong symmetric_kl costs points on symmetric_kl only."""
    return reference_consistency_loss(model, images, labels, new_ids, weight)


def _consistency_hint(model, images, labels, new_ids, weight, got) -> str:
    with torch.no_grad():
        ce, original, recolored = _consistency_parts(model, images, labels, new_ids)
        kl = reference_symmetric_kl(original, recolored)
        _, _, with_labels = _consistency_parts(model, images, labels, labels)
        slips = {
            Slip("no_cross_entropy", "the cross-entropy term CE(f(x), labels) is missing"): weight * kl,
            Slip("weight_ignored", f"the penalty is scaled by 2.0, not by the weight argument ({weight:.3g})"):
                ce + 2.0 * kl,
            Slip("recolor_not_applied", "the penalty is zero: compare the logits of the images with those of "
                 "recolor(images, new_color_ids)"): ce,
            Slip("recolored_with_labels", "the images are recolored with the labels; recolor them with "
                 "new_color_ids"): ce + weight * reference_symmetric_kl(original, with_labels),
            Slip("penalty_not_scaled", "the penalty is not scaled: multiply symmetric_kl by weight"): ce + kl,
        }
    for hint, value in slips.items():
        if _close(got, value, NET_LOSS_OPS):
            return hint
    return "loss = F.cross_entropy(f(x), labels) + weight * symmetric_kl(f(x), f(recolor(x, new_color_ids)))"


def _check_consistency(consistency_loss, model, images, labels, new_ids, weight, what,
                       pass_weight: bool = True) -> torch.Tensor:
    args = (model, images.clone(), labels.clone(), new_ids.clone()) + ((weight,) if pass_weight else ())
    with with_reference(consistency_loss, "symmetric_kl", reference_symmetric_kl):
        got = _scalar(consistency_loss(*args), what)
    expected = _consistency_formula(model, images, labels, new_ids, weight)
    tolerance = tolerance_for(expected, ops=NET_LOSS_OPS)
    try:
        expect_close(got, expected, what, **tolerance)
    except CheckFailure:
        expect_close(got, expected, what, **tolerance,
                     hint=_consistency_hint(model, images, labels, new_ids, weight, got))
    return got


@check("consistency_loss")
def test_consistency_loss_matches_ce_plus_weight_times_symmetric_kl(consistency_loss, seed):
    """A random weight, a color-sensitive model and Colored-MNIST-like images recolored with new_color_ids."""
    images, labels, new_ids = _colored_batch(seed)
    weight = _uniform(_generator(seed, 21), 0.3, 1.5)  # well away from the default 2.0
    _check_consistency(consistency_loss, _ColorReader(seed), images, labels, new_ids, weight,
                       f"consistency_loss with weight={weight:.3g}")


@check("consistency_loss", kind="property")
def test_consistency_loss_with_weight_zero_is_the_cross_entropy(consistency_loss, seed):
    """weight=0 leaves only CE(f(x), labels) on the original images."""
    images, labels, new_ids = _colored_batch(seed + 1)
    _check_consistency(consistency_loss, _ColorReader(seed + 1), images, labels, new_ids, 0.0,
                       "consistency_loss with weight=0")


def _check_default_weight(consistency_loss, seed: int) -> None:
    images, labels, new_ids = _colored_batch(seed)
    _check_consistency(consistency_loss, _ColorReader(seed), images, labels, new_ids, 2.0,
                       "consistency_loss with the default weight", pass_weight=False)


@check("consistency_loss", kind="property")
def test_consistency_loss_weight_defaults_to_two(consistency_loss, seed):
    """Called without weight, the penalty weight is 2.0 (the signature's default)."""
    _check_default_weight(consistency_loss, seed + 6)


@check("consistency_loss", hidden=True, kind="property")
def test_consistency_loss_default_weight_is_two(consistency_loss, seed):
    """Called without weight, the penalty weight is 2.0 (other inputs than the visible check's)."""
    _check_default_weight(consistency_loss, seed + 2)


@check("consistency_loss", kind="property")
def test_consistency_loss_accepts_a_model_returning_a_tuple(consistency_loss, seed):
    """A GRLNet-style model returns (class_logits, other_logits): use the first element."""
    images, labels, new_ids = _colored_batch(seed + 3)
    what = "consistency_loss of a model returning a tuple (class_logits, other_logits)"
    hint = ("the model returned a tuple (class_logits, other_logits), as GRLNet does; take output[0] when the "
            "output is a tuple or list, else the output itself")
    try:
        _check_consistency(consistency_loss, _ColorReader(seed + 3, tuple_output=True), images, labels,
                           new_ids, 1.5, what)
    except (NotImplementedError, CheckFailure):
        raise
    except Exception as error:  # a tuple reached cross_entropy, softmax or slicing
        raise CheckFailure(f"{what} raised {type(error).__name__}: {error}. Hint: {hint}") from error


def _consistency_gradient_hint(model, images, labels, new_ids, weight, got: list[torch.Tensor]) -> str:
    """The branch whose gradient is missing, if the parameter gradients ``got`` are those of the loss with one
    branch of the penalty detached (under torch.no_grad(), or .detach())."""
    params = list(model.parameters())

    def with_detached(recolored_only: bool) -> list[torch.Tensor]:
        ce, original, recolored = _consistency_parts(model, images, labels, new_ids)
        kl = reference_symmetric_kl(original if recolored_only else original.detach(), recolored.detach())
        return _grads(ce + weight * kl, params)

    slips = {
        Slip("recolored_branch_detached", "the penalty's gradient does not reach the model through the recolored "
             "images: compute f(recolor(x)) with the graph (no torch.no_grad(), no .detach()), so the penalty "
             "trains both branches"): with_detached(True),
        Slip("penalty_detached", "the penalty carries no gradient: it must train the model, so keep both logits in "
             "the graph (no torch.no_grad(), .detach() or .item())"): with_detached(False),
    }
    for hint, grads in slips.items():
        if all(_close(a, b, NET_GRAD_OPS) for a, b in zip(got, grads)):
            return hint
    return "keep every step in the autograd graph: the loss trains the model through f(x) and f(recolor(x))"


def _check_consistency_gradients(consistency_loss, seed: int, weight: float) -> None:
    images, labels, new_ids = _colored_batch(seed)
    model = _ColorReader(seed)
    params = list(model.parameters())
    got = _check_consistency(consistency_loss, model, images, labels, new_ids, weight, "consistency_loss")
    expect_true(got.requires_grad, "consistency_loss is not connected to the model's parameters; do not detach "
                "the logits or compute under torch.no_grad()")
    got_grads = _grads(got, params)
    expected = _grads(_consistency_formula(model, images, labels, new_ids, weight), params)
    hint = None
    for (name, _), a, b in zip(model.named_parameters(), got_grads, expected):
        tolerance = tolerance_for(b, ops=NET_GRAD_OPS)
        if hint is None and not _close(a, b, NET_GRAD_OPS):
            hint = _consistency_gradient_hint(model, images, labels, new_ids, weight, got_grads)
        expect_close(a, b, f"gradient of consistency_loss with respect to {name}", **tolerance, hint=hint)


@check("consistency_loss", kind="property")
def test_consistency_loss_trains_the_model_through_both_branches(consistency_loss, seed):
    """The loss's parameter gradients equal the formula's: the penalty backpropagates through the original and the
    recolored images."""
    _check_consistency_gradients(consistency_loss, seed + 5, 1.0)


@check("consistency_loss", hidden=True, kind="property")
def test_consistency_loss_backpropagates_into_the_model(consistency_loss, seed):
    """The loss trains the model: its parameter gradients equal those of the formula (other inputs than the visible
    check's)."""
    _check_consistency_gradients(consistency_loss, seed + 4, 1.0)


# ----------------------------------------------------------------------------- grad_reverse


def _reverse_setup(seed: int, salt: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    g = _generator(seed, salt)
    shape = tuple(int(s) for s in torch.randint(1, 5, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g))
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), _uniform(g, 1.5, 3.0)  # far from 1


@check("grad_reverse", kind="property")
def test_grad_reverse_is_the_identity_in_the_forward_pass(grad_reverse, seed):
    """The output has the input's shape and values, whatever the strength."""
    x, _, strength = _reverse_setup(seed, 30)
    out = grad_reverse(x.clone(), strength)
    expect_shape(out, tuple(x.shape), f"grad_reverse(x, {strength:.3g}) for x of shape {tuple(x.shape)}")
    expect_close(out, x, "grad_reverse(x) in the forward pass", atol=0, rtol=0,
                 hint="the forward pass returns x unchanged (x.view_as(x)); only the backward pass reverses")


@check("grad_reverse")
def test_grad_reverse_multiplies_the_gradient_by_minus_strength(grad_reverse, seed):
    """d/dx sum(w * grad_reverse(x, s)) = -s * w, and -w with the default strength 1."""
    x, w, strength = _reverse_setup(seed, 31)
    for s, args in ((strength, (strength,)), (1.0, ())):
        leaf = x.clone().requires_grad_(True)
        out = grad_reverse(leaf, *args)
        expect_true(isinstance(out, torch.Tensor) and out.requires_grad,
                    "grad_reverse's output is not connected to x's autograd graph: call your autograd.Function "
                    "with .apply(x, strength)")
        (grad,) = torch.autograd.grad((out * w).sum(), leaf)
        what = f"gradient through grad_reverse(x{', strength=%.3g' % s if args else ''})"
        if _close(grad, w, 2):
            hint = Slip("not_reversed", "the gradient is not reversed: backward returns -strength * grad_output")
        elif args and _close(grad, -w, 2):
            hint = Slip("strength_ignored", "the strength is ignored: backward returns -strength * grad_output")
        elif _close(grad, s * w, 2):
            hint = Slip("sign_missing", "the sign is missing: backward returns -strength * grad_output")
        else:
            hint = "backward returns (-strength * grad_output, None): one gradient per input of forward"
        expected = -s * w  # one product, up to the order of the factors
        expect_close(grad, expected, what, **tolerance_for(expected, ops=2), hint=hint)


def _check_reverse_chain(grad_reverse, seed: int, salt: int) -> None:
    """In y = B(grad_reverse(A(x), s)), A's gradient is -s times the plain one and B's is unchanged."""
    g = _generator(seed, salt)
    a, b = torch.randn(5, 4, generator=g), torch.randn(3, 5, generator=g)
    x, strength = torch.randn(6, 4, generator=g), _uniform(g, 1.5, 3.0)

    def loss(reverse: bool) -> list[torch.Tensor]:
        a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        hidden = torch.tanh(x @ a1.T)
        hidden = grad_reverse(hidden, strength) if reverse else hidden
        return _grads((hidden @ b1.T).pow(2).sum(), [a1, b1])

    (ga, gb), (pa, pb) = loss(True), loss(False)
    expected = -strength * pa  # scaled at the end here, in the middle of the chain there: rounds differently
    expect_close(ga, expected, "gradient of the layer before grad_reverse", **tolerance_for(expected, ops=REVERSE_OPS),
                 hint="backward returns -strength * grad_output")
    expect_close(gb, pb, "gradient of the layer after grad_reverse", **tolerance_for(pb, ops=REVERSE_OPS),
                 hint="the forward pass must return x unchanged")


@check("grad_reverse", kind="property")
def test_grad_reverse_in_a_chain_reverses_only_the_layers_before_it(grad_reverse, seed):
    """In y = B(grad_reverse(A(x), s)), A's gradient is -s times the plain one and B's is unchanged."""
    _check_reverse_chain(grad_reverse, seed, 33)


@check("grad_reverse", hidden=True, kind="property")
def test_grad_reverse_reverses_only_what_flows_through_it(grad_reverse, seed):
    """The visible chain check on other inputs."""
    _check_reverse_chain(grad_reverse, seed, 32)


# ----------------------------------------------------------------------------- GRLNet


def _build_grlnet(GRLNet, seed: int, num_colors: int, strength: float) -> nn.Module:
    """A small GRLNet (width 4, hidden 64 where the constructor takes them), seeded, in float64."""
    try:
        accepted = inspect.signature(GRLNet).parameters
    except (TypeError, ValueError):
        accepted = {}
    size = {k: v for k, v in (("width", 4), ("hidden", 64)) if k in accepted}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GRLNet(num_classes=NUM_CLASSES, num_colors=num_colors, strength=strength, **size)
    expect_true(isinstance(model, nn.Module), f"GRLNet(...) should build an nn.Module, got {type(model).__name__}")
    return model.double().eval()


def _detached(value: object) -> object:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _output_parts(out: object, detach: bool) -> dict:
    """What the check needs of GRLNet's output ``out``: whether it is a pair, what it is if not, and the pair."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        return {"pair": False, "got": got}
    digit, color = (_detached(out[0]), _detached(out[1])) if detach else (out[0], out[1])
    return {"pair": True, "digit": digit, "color": color}


def _expect_pair(parts: dict, n: int, num_colors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``parts`` (from _output_parts) is a pair of digit logits (n, 10) and color logits (n, num_colors)."""
    if not parts["pair"]:
        raise CheckFailure(f"GRLNet's forward should return a pair (digit_logits, color_logits), got {parts['got']}. "
                           "Hint: return self.backbone.classifier(h), self.color_head(grad_reverse(h, self.strength))")
    expect_shape(parts["digit"], (n, NUM_CLASSES), "GRLNet's digit_logits (first output)")
    expect_shape(parts["color"], (n, num_colors), f"GRLNet's color_logits (second output) for num_colors={num_colors}")
    return parts["digit"], parts["color"]


def _grl_outputs(model: nn.Module, x: torch.Tensor, num_colors: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _expect_pair(_output_parts(model(x), detach=False), x.shape[0], num_colors)


def _directional_derivatives(model: nn.Module, x: torch.Tensor, num_colors: int, seed: int):
    """Per parameter: (name, autograd and finite-difference derivatives of the digit and the color objective)."""
    g = _generator(seed, 40)
    w_digit = torch.randn(x.shape[0], NUM_CLASSES, generator=g, dtype=torch.float64)
    w_color = torch.randn(x.shape[0], num_colors, generator=g, dtype=torch.float64)

    def objectives() -> tuple[torch.Tensor, torch.Tensor]:
        digit, color = _grl_outputs(model, x, num_colors)
        return (digit * w_digit).sum(), (color * w_color).sum()

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    expect_true(bool(params), "GRLNet has no trainable parameters: build its layers in __init__ as nn.Modules")
    digit, color = objectives()
    auto_digit, auto_color = _grads(digit, params, retain_graph=True), _grads(color, params)
    rows = []
    with torch.no_grad():
        for (name, p), ad, ac in zip(named, auto_digit, auto_color):
            direction = torch.randn(p.shape, generator=g, dtype=p.dtype)
            # Tiny steps in float64: rounding stays ~1e-8 and few ReLU/max-pool kinks are crossed.
            h = 1e-8 * max(1.0, float(p.abs().max()))
            p.add_(h * direction)
            d_plus, c_plus = objectives()
            p.sub_(2 * h * direction)
            d_minus, c_minus = objectives()
            p.add_(h * direction)
            fd_digit, fd_color = float(d_plus - d_minus) / (2 * h), float(c_plus - c_minus) / (2 * h)
            rows.append((name, float((ad * direction).sum()), fd_digit, float((ac * direction).sum()), fd_color))
    return rows


def _about(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-4 * scale + 1e-3 * abs(b)


@probe
def _digit_head_outputs(GRLNet, seed: int, num_colors: int, x: torch.Tensor) -> dict:
    """GRLNet's first output on ``x`` and its backbone's own classifier(features(x)) (``backbone``: whether it has a
    backbone with features and classifier)."""
    model = _build_grlnet(GRLNet, seed, num_colors, 1.0)
    backbone = getattr(model, "backbone", None)
    if not (isinstance(backbone, nn.Module) and hasattr(backbone, "features") and hasattr(backbone, "classifier")):
        return {"backbone": False}
    with with_reference(GRLNet, "grad_reverse", reference_grad_reverse), torch.no_grad():
        out = model(x)
        expected = backbone.classifier(backbone.features(x))
    digit = out[0] if isinstance(out, (tuple, list)) else out
    return {"backbone": True, "digit": _detached(digit), "expected": _detached(expected)}


@probe
def _shapes_of_outputs_and_color_head(GRLNet, seed: int, num_colors: int, x: torch.Tensor) -> dict:
    """GRLNet's outputs on ``x``, whether it has a color_head module and its parameters' shapes, and whether the
    constructor takes ``hidden`` (then _build_grlnet passes 64)."""
    model = _build_grlnet(GRLNet, seed, num_colors, 1.0)
    with with_reference(GRLNet, "grad_reverse", reference_grad_reverse):
        out = _output_parts(model(x), detach=True)
    head = getattr(model, "color_head", None)
    is_module = isinstance(head, nn.Module)
    return {"out": out, "color_head": is_module,
            "head_shapes": [list(p.shape) for p in head.parameters()] if is_module else [],
            "takes_hidden": "hidden" in inspect.signature(GRLNet).parameters}


@check("GRLNet", kind="property")
def test_grlnet_digit_head_is_the_backbone_classifier(GRLNet, seed):
    """digit_logits = backbone.classifier(backbone.features(x)), i.e. the backbone SimpleCNN's own output."""
    g = _generator(seed, 45)
    num_colors = int(torch.randint(3, 9, (1,), generator=g))
    x = torch.rand(3, 3, 28, 28, generator=g, dtype=torch.float64)
    got = _digit_head_outputs(GRLNet, seed, num_colors, x)
    expect_true(got["backbone"], "GRLNet has no attribute backbone with features and classifier. Hint: self.backbone = "
                "SimpleCNN(num_classes=num_classes, width=width, hidden=hidden)")
    digit, expected = got["digit"], got["expected"]
    expect_close(digit, expected, "GRLNet's digit_logits compared with self.backbone.classifier(self.backbone."
                 "features(x))", **tolerance_for(expected, ops=4),
                 hint="the digit head is the backbone's own classifier: digit_logits = self.backbone.classifier(h) "
                 "with h = self.backbone.features(x) (no extra digit head), so the backbone alone is the digit model")


@check("GRLNet", kind="property")
def test_grlnet_returns_digit_and_color_logits_of_the_right_shapes(GRLNet, seed):
    """forward(x) is (digit_logits (N, num_classes), color_logits (N, num_colors)) for images (N, 3, 28, 28)."""
    g = _generator(seed, 41)
    num_colors, n = int(torch.randint(3, 9, (1,), generator=g)), int(torch.randint(2, 5, (1,), generator=g))
    got = _shapes_of_outputs_and_color_head(GRLNet, seed, num_colors, torch.rand(n, 3, 28, 28, generator=g,
                                                                                  dtype=torch.float64))
    digit, color = _expect_pair(got["out"], n, num_colors)
    expect_finite(digit, "GRLNet's digit_logits")
    expect_finite(color, "GRLNet's color_logits")
    expect_true(got["color_head"], "GRLNet has no attribute color_head (an nn.Module). Hint: self.color_head "
                "= nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, num_colors))")
    shapes = sorted(tuple(int(s) for s in shape) for shape in got["head_shapes"])
    hidden = 64 if got["takes_hidden"] else 128  # _build_grlnet's, else the default
    expected = sorted([(hidden // 2, hidden), (hidden // 2,), (num_colors, hidden // 2), (num_colors,)])
    expect_true(shapes == expected, f"GRLNet(hidden={hidden}, num_colors={num_colors}).color_head has parameters of "
                f"shapes {shapes}, expected {expected}. Hint: nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), "
                "nn.Linear(hidden // 2, num_colors))")


@probe
def _reversal_rows(GRLNet, seed: int, num_colors: int, strength: float, reassign: float | None,
                   x: torch.Tensor) -> list:
    """_directional_derivatives of GRLNet(strength=strength) on ``x``, after model.strength = reassign if given."""
    model = _build_grlnet(GRLNet, seed, num_colors, strength)
    if reassign is not None:
        model.strength = reassign
    with with_reference(GRLNet, "grad_reverse", reference_grad_reverse):
        return _directional_derivatives(model, x, num_colors, seed)


def _check_reversal(GRLNet, seed: int, strength: float, reassign: float | None) -> None:
    g = _generator(seed, 42)
    num_colors = int(torch.randint(3, 9, (1,), generator=g))
    initial = strength
    x = torch.rand(4, 3, 28, 28, generator=g, dtype=torch.float64)
    rows = [tuple(r) for r in _reversal_rows(GRLNet, seed, num_colors, strength, reassign, x)]
    if reassign is not None:
        strength = reassign
    scale = max(max(abs(r[2]), abs(r[4])) for r in rows) or 1.0
    small = 1e-6 * scale  # below this a parameter does not influence that output
    digit_only = [r for r in rows if abs(r[4]) <= small and abs(r[2]) > small]
    color_only = [r for r in rows if abs(r[2]) <= small and abs(r[4]) > small]
    shared = [r for r in rows if abs(r[2]) > small and abs(r[4]) > small]
    # A step can still cross a ReLU kink; such a parameter shows on the digit path too and is left out.
    digit_ok = [r for r in rows if _about(r[1], r[2], scale)]
    digit_bad = [r for r in rows if not _about(r[1], r[2], scale)]
    if len(digit_bad) > len(rows) // 3:
        name, ad, fd = digit_bad[0][:3]
        raise CheckFailure(f"the gradient of the digit logits with respect to {name} is {ad:.4g} (along a test "
                           f"direction) where the forward pass says {fd:.4g}: the digit path must carry the ordinary "
                           "gradient (no grad_reverse before the digit head)")
    shared = [r for r in shared if r in digit_ok]
    expect_true(bool(digit_only), "every parameter of GRLNet influences the color logits, so the color head "
                "seems to read the digit logits. Hint: both heads read the shared features h = "
                "self.backbone.features(x); the color head gets grad_reverse(h, self.strength)")
    expect_true(bool(color_only), "GRLNet has no parameters of its own for the color logits: add a color head "
                "(e.g. nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, num_colors)))")
    expect_true(bool(shared), "the color logits do not depend on the shared backbone: feed the color head the "
                "backbone features through grad_reverse")
    for name, _, _, ac, fc in color_only:
        expect_true(_about(ac, fc, scale), f"the color head's own parameter {name} gets {ac:.4g} where the "
                    f"ordinary gradient is {fc:.4g}: reverse the gradient between the features and the color head, "
                    "not after the head")
    for name, _, _, ac, fc in shared:
        if _about(ac, fc, scale):
            problem = "the ordinary gradient: it is not reversed (is grad_reverse applied to the features?)"
        elif _about(ac, -fc, scale):
            problem = f"-1 times the ordinary gradient: the strength ({strength:.3g}) is ignored (use self.strength)"
        elif reassign is not None and _about(ac, -initial * fc, scale):
            problem = (f"-{initial:.3g} times the ordinary gradient, the strength given to the constructor: "
                       f"model.strength = {strength:.3g} set afterwards (as a warm-up schedule does) is ignored. "
                       "Hint: read self.strength in forward, grad_reverse(h, self.strength)")
        else:
            problem = f"{ac / fc if fc else float('nan'):.4g} times the ordinary gradient"
        expect_true(_about(ac, -strength * fc, scale),
                    f"through the color logits, backbone parameter {name} should get -strength = {-strength:.3g} "
                    f"times the ordinary gradient; it gets {problem}")


@check("GRLNet")
def test_grlnet_reverses_the_color_gradient_into_the_backbone_only(GRLNet, seed):
    """Backbone: -strength x color gradient, +1 x digit gradient; heads: ordinary gradients (vs finite differences)."""
    _check_reversal(GRLNet, seed, _uniform(_generator(seed, 43), 1.5, 2.5), None)  # far from 1, so it must be used


@check("GRLNet", kind="property")
def test_grlnet_strength_can_be_changed_after_construction(GRLNet, seed):
    """model.strength = s (a warm-up schedule) takes effect at the next forward pass."""
    g = _generator(seed, 44)
    _check_reversal(GRLNet, seed + 1, _uniform(g, 0.3, 0.7), _uniform(g, 1.5, 3.0))


# ----------------------------------------------------------------------------- grl_loss


class _TwoHeads(nn.Module):
    """Returns (digit_logits (N, 10), color_logits (N, 10)) like GRLNet, without any gradient reversal."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.body = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.Flatten())
            self.digit = nn.Linear(4 * 6 * 6, NUM_CLASSES)
            self.color = nn.Linear(4 * 6 * 6, NUM_CLASSES)
            with torch.no_grad():
                # Confident heads: cross-entropies against different targets differ by far more than the tolerance
                self.digit.weight.mul_(10.0)
                self.color.weight.mul_(10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.digit(h), self.color(h)


def _grl_batch(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    g = _generator(seed, 50)
    n = int(torch.randint(6, 11, (1,), generator=g))
    images = torch.rand(n, 3, 28, 28, generator=g)
    model = _TwoHeads(seed)
    with torch.no_grad():
        # Color ids the color head predicts and labels it does not: CE(color, labels) is far from CE(color, ids)
        color_ids = model(images)[1].argmax(dim=1)
    labels = (color_ids + torch.randint(1, NUM_CLASSES, (n,), generator=g)) % NUM_CLASSES
    return model, images, labels, color_ids, _uniform(g, 0.8, 2.0)  # well away from the default 0.5


def _grl_hint(model, images, labels, color_ids, color_weight, got) -> str:
    with torch.no_grad():
        digit, color = model(images)
        ce_d, ce_c = F.cross_entropy(digit, labels), F.cross_entropy(color, color_ids)
        slips = {
            Slip("weight_ignored", f"color_weight is ignored (the default 0.5 was used instead of "
                 f"{color_weight:.3g})"): ce_d + 0.5 * ce_c,
            Slip("color_term_not_weighted", "the color term is not weighted: multiply its cross-entropy by "
                 "color_weight"): ce_d + ce_c,
            Slip("color_term_subtracted", "the color term is subtracted: the adversary's sign flip happens inside "
                 "the model (grad_reverse before the color head), so the loss adds color_weight * CE(color_logits, "
                 "color_ids); subtracting it too would reverse twice"): ce_d - color_weight * ce_c,
            Slip("labels_as_color_targets", "the color head is scored against the digit labels; its targets are "
                 "color_ids"): ce_d + color_weight * F.cross_entropy(color, labels),
            Slip("targets_swapped", "the targets are swapped: digit logits go with labels, color logits with "
                 "color_ids"): F.cross_entropy(digit, color_ids) + color_weight * F.cross_entropy(color, labels),
            Slip("no_color_term", "the color cross-entropy is missing"): ce_d,
            Slip("no_digit_term", "the digit cross-entropy is missing"): color_weight * ce_c,
            Slip("weight_on_digit_term", "color_weight multiplies the digit term; it belongs to the color term"):
                color_weight * ce_d + ce_c,
        }
    for hint, value in slips.items():
        if _close(got, value, NET_LOSS_OPS):
            return hint
    return ("the value is none of the usual slips; compare each term with the formula: CE of the digit logits "
            "against labels, plus color_weight times CE of the color logits against color_ids")


def _check_grl(grl_loss, model, images, labels, color_ids, color_weight, what, pass_weight=True) -> torch.Tensor:
    args = (model, images.clone(), labels.clone(), color_ids.clone()) + ((color_weight,) if pass_weight else ())
    got = _scalar(grl_loss(*args), what)
    expected = reference_grl_loss(model, images, labels, color_ids, color_weight)
    tolerance = tolerance_for(expected, ops=NET_LOSS_OPS)
    try:
        expect_close(got, expected, what, **tolerance)
    except CheckFailure:
        expect_close(got, expected, what, **tolerance,
                     hint=_grl_hint(model, images, labels, color_ids, color_weight, got))
    return got


@check("grl_loss")
def test_grl_loss_matches_digit_ce_plus_color_weight_times_color_ce(grl_loss, seed):
    """A two-headed model, random labels and color ids, random color_weight."""
    model, images, labels, color_ids, color_weight = _grl_batch(seed)
    _check_grl(grl_loss, model, images, labels, color_ids, color_weight,
               f"grl_loss with color_weight={color_weight:.3g}")


def _check_grl_default_weight(grl_loss, seed: int) -> None:
    model, images, labels, color_ids, _ = _grl_batch(seed)
    _check_grl(grl_loss, model, images, labels, color_ids, 0.5, "grl_loss with the default color_weight",
               pass_weight=False)


@check("grl_loss", kind="property")
def test_grl_loss_color_weight_defaults_to_one_half(grl_loss, seed):
    """Called without color_weight, the color term is weighted 0.5 (the signature's default)."""
    _check_grl_default_weight(grl_loss, seed + 3)


@check("grl_loss", hidden=True, kind="property")
def test_grl_loss_default_color_weight_is_one_half(grl_loss, seed):
    """The visible default-weight check on other inputs."""
    _check_grl_default_weight(grl_loss, seed + 1)


@check("grl_loss", kind="property")
def test_grl_loss_trains_both_heads_and_the_body(grl_loss, seed):
    """The loss trains both heads and the body: parameter gradients equal those of the formula."""
    _check_grl_gradients(grl_loss, seed + 4)


@check("grl_loss", hidden=True, kind="property")
def test_grl_loss_backpropagates_into_both_heads(grl_loss, seed):
    """The visible gradient check on other inputs."""
    _check_grl_gradients(grl_loss, seed + 2)


def _check_grl_gradients(grl_loss, seed: int) -> None:
    model, images, labels, color_ids, color_weight = _grl_batch(seed)
    got = _check_grl(grl_loss, model, images, labels, color_ids, color_weight, "grl_loss")
    expect_true(got.requires_grad, "grl_loss is not connected to the model's parameters; do not detach the logits")
    params = list(model.parameters())
    got_grads = _grads(got, params)
    expected = _grads(reference_grl_loss(model, images, labels, color_ids, color_weight), params)
    for (name, _), a, b in zip(model.named_parameters(), got_grads, expected):
        expect_close(a, b, f"gradient of grl_loss with respect to {name}", **tolerance_for(b, ops=NET_GRAD_OPS))

