"""Checks of lesson 02: total_variation and activation_maximization (shortcutlab.interpret is the reference).

Activation maximization is not fully determined (optimizer details vary), so it is graded on behaviour
with tiny hand-built models whose best images are known; total variation is compared with the reference.
One mistake, one penalty: while activation_maximization's checks run, the name ``total_variation`` in the student's
code means the library's reference (``with_reference``), so a wrong total_variation costs points on its checks only.
"""
from __future__ import annotations

import torch
from torch import nn

from shortcutlab.data import COLOR_NAMES, PALETTE
from shortcutlab.grading import (
    CheckFailure,
    Slip,
    check,
    expect_close,
    expect_dtype,
    expect_finite,
    expect_range,
    expect_shape,
    expect_tensor,
    expect_true,
    with_reference,
)
from shortcutlab.tolerance import tolerance_for

# Bound at import, before any submission runs, so a submission cannot swap the reference.
from shortcutlab.interpret import total_variation as reference_total_variation

IMAGE = (3, 28, 28)


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + salt)


# ----------------------------------------------------------------------------- total_variation


def _tv_ops(images: torch.Tensor) -> int:
    """Roundings in one image's total variation (shortcutlab.tolerance): a difference and a sum per neighbour pair."""
    return 2 * images[0].numel()


def _tv_hint(images: torch.Tensor, got: torch.Tensor) -> str:
    """The usual slips, recognised from the value they produce."""
    dv = images[:, :, 1:, :] - images[:, :, :-1, :]
    dh = images[:, :, :, 1:] - images[:, :, :, :-1]
    slips = {
        Slip("no_horizontal_term", "only vertical differences are counted: add the horizontal ones "
             "(x[..., :, 1:] - x[..., :, :-1])"): dv.abs().sum(dim=(1, 2, 3)),
        Slip("no_vertical_term", "only horizontal differences are counted: add the vertical ones "
             "(x[..., 1:, :] - x[..., :-1, :])"): dh.abs().sum(dim=(1, 2, 3)),
        Slip("squared_differences", "the differences look squared; total variation uses their absolute value "
             "(.abs())"): dv.pow(2).sum(dim=(1, 2, 3)) + dh.pow(2).sum(dim=(1, 2, 3)),
        Slip("mean_not_sum", "the differences look averaged; total variation sums them over channels and pixels"):
            dv.abs().mean(dim=(1, 2, 3)) + dh.abs().mean(dim=(1, 2, 3)),
    }
    for hint, value in slips.items():
        if got.shape == value.shape and torch.allclose(got.detach().double(), value.double(),
                                                       **tolerance_for(value, ops=_tv_ops(images))):
            return hint
    return "per image, sum |vertical| + |horizontal| neighbour differences over channels and pixels"


def _call_tv(total_variation, images: torch.Tensor) -> torch.Tensor:
    got = expect_tensor(total_variation(images.clone()), "total_variation(images)")
    n = images.shape[0]
    if got.shape != (n,):
        hint = " Sum over channels and pixels (dims 1, 2, 3), not over the batch." if got.numel() == 1 else ""
        raise CheckFailure(
            f"total_variation should return one value per image, shape ({n},) for images of shape "
            f"{tuple(images.shape)}; got shape {tuple(got.shape)}.{hint}"
        )
    return got


@check("total_variation")
def test_total_variation_matches_reference_on_random_images(total_variation, seed):
    """Random batch of random size (N, C, H, W), non-square."""
    g = _generator(seed, 1)
    n, c = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(3, 12, (2,), generator=g))
    w += h == w  # non-square catches swapped height/width
    images = torch.rand(n, c, h, w, generator=g)
    got = _call_tv(total_variation, images)
    expected = reference_total_variation(images)
    expect_close(
        got, expected, f"total_variation of images {tuple(images.shape)}",
        **tolerance_for(expected, ops=_tv_ops(images)), hint=_tv_hint(images, got),
    )


@check("total_variation", kind="property")
def test_total_variation_of_a_small_worked_example(total_variation, seed):
    """One 1-channel 2x3 image of small integers, so the message can show the arithmetic."""
    g = _generator(seed, 2)
    image = torch.randint(0, 6, (1, 1, 2, 3), generator=g).float()
    got = _call_tv(total_variation, image)
    rows = image[0, 0].long().tolist()
    vertical = int((image[..., 1:, :] - image[..., :-1, :]).abs().sum())
    horizontal = int((image[..., :, 1:] - image[..., :, :-1]).abs().sum())
    expected = torch.tensor([float(vertical + horizontal)])
    expect_close(
        got, expected, f"total_variation of the 1x1x2x3 image with rows {rows}", atol=1e-5, rtol=0,
        hint=f"vertical |row2 - row1| sums to {vertical}, horizontal |right - left| sums to {horizontal}; "
        f"{_tv_hint(image, got)}",
    )


@check("total_variation", hidden=True, kind="property")
def test_total_variation_samples_are_independent(total_variation, seed):
    """Changing one image changes only its own entry."""
    g = _generator(seed, 3)
    images = torch.rand(4, 3, 9, 7, generator=g)
    before = _call_tv(total_variation, images)
    k = int(torch.randint(0, 4, (1,), generator=g))
    changed = images.clone()
    changed[k] = torch.rand(3, 9, 7, generator=g)
    after = _call_tv(total_variation, changed)
    others = [i for i in range(4) if i != k]
    expect_close(after[others], before[others], f"total variation of the images other than image {k}",
                 **tolerance_for(before[others], ops=_tv_ops(images)),
                 hint="each image's value must depend on that image only")
    expected = reference_total_variation(changed)[k]
    expect_close(after[k], expected, f"total variation of the changed image {k}",
                 **tolerance_for(expected, ops=_tv_ops(images)))


@check("total_variation", kind="property")
def test_total_variation_is_differentiable_with_the_reference_gradient(total_variation, seed):
    """activation_maximization backpropagates through TV, so its gradient must be the reference's."""
    g = _generator(seed, 4)
    images = torch.rand(3, 3, 8, 8, generator=g)
    weights = torch.rand(3, generator=g) + 0.5
    x = images.clone().requires_grad_(True)
    out = _call_tv(total_variation, x)
    expect_true(out.requires_grad, "total_variation's result is not connected to the images' autograd graph; "
                "use torch operations only (no .item(), .numpy(), .detach() or torch.no_grad())")
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    ref_x = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((reference_total_variation(ref_x) * weights).sum(), ref_x)
    # each pixel's gradient adds the signs of its (up to 4) neighbour differences, times its image's weight
    expect_close(grad, expected, "gradient of total_variation with respect to the images",
                 **tolerance_for(expected, ops=4 + 1), hint="use absolute differences summed per image")


# ----------------------------------------------------------------------------- activation_maximization


class _Template(nn.Module):
    """Linear per-pixel readout, logits (N, K) = scale * x W / sqrt(D); its best image is 1 where W_k > 0, else 0."""

    def __init__(self, seed: int, num_classes: int = 10, scale: float = 30.0, dropout: float = 0.0) -> None:
        super().__init__()
        d = IMAGE[0] * IMAGE[1] * IMAGE[2]
        self.drop = nn.Dropout(dropout)
        self.weight = nn.Parameter(torch.randn(d, num_classes, generator=_generator(seed, 10)) * scale / d**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x.flatten(1)) @ self.weight


class _ColorCheater(nn.Module):
    """A shortcut model: logit_c = -scale * ||mean RGB of x - PALETTE[c]||^2, so class c is 'whatever is colored c'."""

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.palette = nn.Parameter(PALETTE.clone())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_rgb = x.mean(dim=(2, 3))
        return -self.scale * (mean_rgb[:, None, :] - self.palette[None]).pow(2).sum(dim=2)


class _ModeRecorder(nn.Module):
    """Records the training flag of every submodule at each forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(any(m.training for m in self.modules()))
        return self.inner(x)


def _target(seed: int, salt: int, num_classes: int = 10) -> int:
    return int(torch.randint(0, num_classes, (1,), generator=_generator(seed, salt)))


def _run_actmax(activation_maximization, model: nn.Module, target: int, seed: int, **kwargs) -> torch.Tensor:
    """Call the student's function with a seeded generator; check it returns one image (1, 3, 28, 28)."""
    with with_reference(activation_maximization, "total_variation", reference_total_variation):
        x = activation_maximization(model, target, generator=_generator(seed, 99), **kwargs)
    x = expect_tensor(x, "activation_maximization(...)")
    expect_shape(x, (1, *IMAGE), "activation_maximization's image")
    expect_finite(x, "activation_maximization's image")
    return x


@check("activation_maximization", kind="property")
def test_activation_maximization_returns_one_detached_image_in_unit_range(
    activation_maximization, seed
):
    """A strong linear model drives pixels past 0 and 1, so an unclamped image leaves the range."""
    model = _Template(seed)
    x = _run_actmax(activation_maximization, model, _target(seed, 20), seed, steps=30)
    expect_dtype(x, torch.float32, "activation_maximization's image")
    expect_true(not x.requires_grad, "the returned image still requires grad: return x.detach()")
    expect_range(x, 0.0, 1.0, "activation_maximization's image",
                 hint="clamp the image to [0, 1] after every optimizer step (with torch.no_grad(): x.clamp_(0, 1))")


@check("activation_maximization", kind="property")
def test_activation_maximization_with_zero_steps_returns_the_noisy_start(activation_maximization, seed):
    """With steps=0 the result is the start image U(0.4, 0.6), drawn from the given generator."""
    x = _run_actmax(activation_maximization, _Template(seed), _target(seed, 21), seed, steps=0)
    lo, hi = float(x.min()), float(x.max())
    hint = "start from 0.4 + 0.2 * torch.rand((1, 3, 28, 28), generator=generator)"
    expect_true(lo >= 0.4 - 1e-6 and hi <= 0.6 + 1e-6,
                f"with steps=0 the image should be the start, uniform noise in [0.4, 0.6]; got values in "
                f"[{lo:.3f}, {hi:.3f}]. Hint: {hint}")
    # U(0.4, 0.6) has mean 0.5 and std 0.2 / sqrt(12) = 0.058; a constant or narrower start is not it
    std, mean = float(x.std()), float(x.mean())
    expect_true(0.045 < std < 0.07 and abs(mean - 0.5) < 0.01,
                f"with steps=0 the image should be uniform noise in [0.4, 0.6] (mean 0.5, std 0.058); got mean "
                f"{mean:.3f}, std {std:.3f}. Hint: {hint}")
    again = _run_actmax(activation_maximization, _Template(seed), _target(seed, 21), seed, steps=0)
    expect_true(torch.equal(x, again), "two calls with identically seeded generators gave different start "
                "images. Hint: draw the noise with torch.rand(..., generator=generator)")


def _unlikely_target(model: nn.Module, seed: int, salt: int) -> int:
    """A class among the five the model scores lowest on a plain gray image: far from saturating a softmax, so the
    ascent has a long way to go whatever the seed."""
    with torch.no_grad():
        lowest = model(torch.full((1, *IMAGE), 0.5))[0].argsort()[:5]
    return int(lowest[int(torch.randint(0, 5, (1,), generator=_generator(seed, salt)))])


@check("activation_maximization")
def test_activation_maximization_raises_the_class_logit(activation_maximization, seed):
    """Gradient *ascent*: a class the model scores low on a gray image must end well above its value there, and be
    the top class."""
    model = _Template(seed)
    target = _unlikely_target(model, seed, 22)
    x = _run_actmax(activation_maximization, model, target, seed, steps=30)
    with torch.no_grad():
        logits = model(x)[0]
        gray = model(torch.full((1, *IMAGE), 0.5))[0]
    gain = float(logits[target] - gray[target])
    if gain < -5.0:
        hint = Slip("descends_the_objective", "it fell, so the optimizer is minimising the objective: minimise its "
                    "negative, loss = -(logit - l2*||x||^2 - tv*TV(x))")
    else:
        hint = ("take the gradient of the target logit itself (logits[0, target_class], not a softmax, "
                "log-softmax or another class), call optimizer.step() every step and clamp only after it")
    expect_true(gain > 5.0,
                f"after 30 steps the class-{target} logit should be more than 5 above its value on a plain gray "
                f"image: it is {float(logits[target]):.2f} on your image vs {float(gray[target]):.2f} on gray, "
                f"a rise of {gain:.2f}. Hint: {hint}", slip=getattr(hint, "slip", None))
    expect_true(int(logits.argmax()) == target,
                f"class {target} should be the top class on your image; the model predicts "
                f"{int(logits.argmax())} (logit {float(logits.max()):.2f} vs {float(logits[target]):.2f} for class "
                f"{target}). Hint: maximise the logit of target_class, not of another class")


@check("activation_maximization", kind="property")
def test_activation_maximization_of_a_color_cheater_takes_the_class_color(
    activation_maximization, seed
):
    """A model that classifies by mean color: its class-c image must be painted PALETTE[c]."""
    target = _target(seed, 23, num_classes=9)  # not gray (9): the noisy start already has that mean color
    x = _run_actmax(activation_maximization, _ColorCheater(), target, seed, steps=60)
    mean_rgb = x.detach().mean(dim=(0, 2, 3))
    distances = (PALETTE - mean_rgb).norm(dim=1)
    nearest = int(distances.argmin())
    wanted = tuple(round(v, 2) for v in PALETTE[target].tolist())
    got = tuple(round(v, 2) for v in mean_rgb.tolist())
    distance = float(distances[target])
    if nearest != target:
        where = (f"it is nearer to {COLOR_NAMES[nearest]} {tuple(round(v, 2) for v in PALETTE[nearest].tolist())} "
                 f"than to {COLOR_NAMES[target]}")
    else:
        where = "it is nearer to it than to any other palette color, but not close enough"
    expect_true(
        nearest == target and distance < 0.25,
        f"this model scores class {target} by how close an image's mean color is to {COLOR_NAMES[target]} "
        f"{wanted}, so after 60 steps your class-{target} image's mean color should lie within 0.25 of it; "
        f"it is {got}, at distance {distance:.2f} ({where}). "
        "Hint: ascend the class logit with Adam from the noisy start, keeping the image in [0, 1]",
    )


class _SharedBrightness(nn.Module):
    """Every class's logit rises with the image's mean brightness (a shared term) plus a small per-class template.

    Its logit-maximising image is white (the shared term outweighs every penalty and template weight); a softmax or
    log-softmax of the logits cancels the shared term, so maximising those leaves the image about as gray as it started.
    """

    def __init__(self, seed: int, brightness: float = 0.2, template: float = 0.01, num_classes: int = 10) -> None:
        super().__init__()
        d = IMAGE[0] * IMAGE[1] * IMAGE[2]
        self.brightness = brightness * d  # d logit / d pixel = brightness for every class
        self.weight = nn.Parameter(torch.randn(d, num_classes, generator=_generator(seed, 11)) * template)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.brightness * x.mean(dim=(1, 2, 3))[:, None] + x.flatten(1) @ self.weight


class _Uniform(nn.Module):
    """logit_c = slope * sum(x) for every class: with the L2 penalty l2 * ||x||^2 the best pixel value is slope / (2 l2)."""

    def __init__(self, slope: float, num_classes: int = 10) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.full((num_classes,), slope))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(1, 2, 3))[:, None] * self.slope[None]


@check("activation_maximization", kind="property")
def test_activation_maximization_ascends_the_logit_itself_not_its_softmax(activation_maximization, seed):
    """Every logit rises with brightness: ascending the logit whitens the image; a (log-)softmax cancels that term."""
    model = _SharedBrightness(seed)
    target = _target(seed, 27)
    x = _run_actmax(activation_maximization, model, target, seed, steps=30)
    mean = float(x.mean())
    expect_true(mean > 0.9,
                f"this model's logits all rise by 0.2 per unit of every pixel (plus a class template 20 times "
                f"weaker), so ascending the class-{target} logit for 30 steps should make the image nearly white, "
                f"mean pixel above 0.9; yours has mean {mean:.3f}. Hint: the objective is the raw logit "
                "logits[0, target_class]; a softmax probability or log_softmax cancels what raises every class")


@check("activation_maximization", kind="property")
def test_activation_maximization_l2_penalty_is_the_squared_norm(activation_maximization, seed):
    """With logit = a * sum(x), tv=0 and weight l2, each pixel's best value is a / (2 * l2), inside [0, 1]."""
    g = _generator(seed, 28)
    best = 0.25 + 0.3 * float(torch.rand((), generator=g))  # in [0.25, 0.55]
    l2 = 1.0
    model = _Uniform(slope=2 * l2 * best)
    x = _run_actmax(activation_maximization, model, _target(seed, 29), seed, steps=80, lr=0.02, l2=l2, tv=0.0)
    mean, spread = float(x.mean()), float((x - best).abs().max())
    if mean > best:
        hint = ("the pixels rose above it, so the L2 penalty pulls too weakly: use l2 * x.pow(2).sum(), the "
                "squared norm summed over pixels (not x.norm(), not a mean)")
    else:
        hint = ("the pixels sank below it, so the penalty pulls too hard or the logit does not pull at all: "
                "ascend the raw logit (every class has the same logit here, so a softmax of them has no gradient) "
                "and use l2 * x.pow(2).sum()")
    expect_true(abs(mean - best) < 0.03 and spread < 0.1,
                f"with logit = {2 * l2 * best:.3f} * sum(x), tv=0 and l2={l2:g}, the objective "
                f"logit - l2 * ||x||^2 is best with every pixel at {best:.3f} (where {2 * l2 * best:.3f} = "
                f"2 * l2 * x); after 80 steps your image should have mean within 0.03 of it and no pixel off by "
                f"0.1 or more; it has mean {mean:.3f} and the farthest pixel is {spread:.3f} away. Hint: {hint}")

class _TupleOutput(nn.Module):
    """Returns (class logits, an auxiliary head's output), as lesson 4's GRLNet does."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.inner(x)
        return logits, -3.0 * logits[:, :2]


@check("activation_maximization", kind="property")
def test_activation_maximization_accepts_a_model_returning_a_tuple(activation_maximization, seed):
    """A model returning (logits, other) must give the same image as the bare model returning logits."""
    inner = _Template(seed)
    target = _target(seed, 30)
    try:
        got = _run_actmax(activation_maximization, _TupleOutput(inner), target, seed, steps=5)
    except (TypeError, IndexError, AttributeError) as error:
        raise CheckFailure(f"activation_maximization failed on a model that returns a tuple (logits, other), as "
                           f"lesson 4's GRLNet does: {type(error).__name__}: {error}. Hint: output = model(x); "
                           "logits = output[0] if isinstance(output, (tuple, list)) else output") from None
    expected = _run_actmax(activation_maximization, inner, target, seed, steps=5)
    expect_close(got, expected, "image for a model returning (logits, other) vs the same model returning logits",
                 atol=1e-5, rtol=0, hint="optimise the first element of the tuple, the class logits")


@check("activation_maximization", kind="property")
def test_activation_maximization_runs_the_model_in_eval_mode_and_restores_its_mode(
    activation_maximization, seed
):
    """Dropout must be off while optimising, and a model in train mode must be given back in train mode."""
    model = _ModeRecorder(_Template(seed, dropout=0.5)).train()
    _run_actmax(activation_maximization, model, _target(seed, 24), seed, steps=3)
    expect_true(bool(model.seen), "activation_maximization never called the model")
    expect_true(not any(model.seen), "the model ran in train mode (dropout active) during activation "
                "maximization. Hint: call model.eval() before optimising")
    expect_true(all(m.training for m in model.modules()),
                "the model was in train mode before the call but not after it. Hint: remember "
                "model.training at the start and restore it with model.train(was_training) at the end")
    model = _ModeRecorder(_Template(seed, dropout=0.5)).eval()
    _run_actmax(activation_maximization, model, _target(seed, 24), seed, steps=1)
    expect_true(not any(m.training for m in model.modules()),
                "the model was in eval mode before the call but in train mode after it; give it back as it came")


@check("activation_maximization", kind="property")
def test_activation_maximization_smooths_more_with_a_larger_tv_weight(
    activation_maximization, seed
):
    """With a salt-and-pepper optimum, a large TV weight must give a much smoother image than tv=0."""
    model = _Template(seed, scale=3.0)
    target = _target(seed, 25)
    rough = _run_actmax(activation_maximization, model, target, seed, steps=60, tv=0.0, l2=0.0)
    smooth = _run_actmax(activation_maximization, model, target, seed, steps=60, tv=0.05, l2=0.0)
    tv_rough, tv_smooth = (float(reference_total_variation(v.detach())) for v in (rough, smooth))
    # the start alone has TV about 2 * 3 * 28 * 27 * 0.2 / 3 = 300; the template's optimum is salt-and-pepper
    expect_true(tv_rough > 1000,
                f"with tv=0 and l2=0 this model's best image is salt-and-pepper (total variation well above 1000 "
                f"after 60 steps); yours has total variation {tv_rough:.1f}. Hint: ascend the class logit, and "
                "optimise the image only (the model's weights are fixed)")
    expect_true(tv_smooth < 0.6 * tv_rough,
                f"with tv=0.05 the image's total variation should be below 0.6 times its value with tv=0: it is "
                f"{tv_smooth:.1f} vs {tv_rough:.1f} with tv=0. Hint: the objective subtracts tv * TV(x) (a penalty), "
                "computed with total_variation on the image being optimised")


@check("activation_maximization", kind="property")
def test_activation_maximization_is_reproducible_and_leaves_the_model_unchanged(
    activation_maximization, seed
):
    """Same seeded generator, same image; the model's parameters are inputs, not things to optimise."""
    model = _Template(seed)
    before = model.weight.detach().clone()
    target = _target(seed, 26)
    a = _run_actmax(activation_maximization, model, target, seed, steps=5)
    b = _run_actmax(activation_maximization, model, target, seed, steps=5)
    expect_true(torch.equal(model.weight.detach(), before),
                "activation_maximization changed the model's parameters; optimise only the image")
    expect_true(torch.equal(a, b), "two calls with identically seeded generators gave different images")
