"""Checks of lesson 03: grad_cam (shortcutlab.interpret.grad_cam is the reference).

Grad-CAM is fully determined, so maps are compared with the reference on tiny seeded conv nets; the
side effects that a comparison cannot see (hooks, model mode, parameter gradients) have their own checks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.grading import CheckFailure, Slip, check, expect_close, expect_dtype, expect_shape, expect_true
from shortcutlab.tolerance import float_tolerance, tolerance_for

# Bound at import, before any submission runs, so a submission cannot swap the reference.
from shortcutlab.interpret import grad_cam as reference_grad_cam
from shortcutlab.models import SimpleCNN

NUM_CLASSES = 5
# Roundings in one Grad-CAM value (shortcutlab.tolerance), on the longer of the graded nets, SimpleCNN(width=4,
# hidden=16): convs 27 + 36 + 72 to the target layer, the target logit's gradient back through the head (5 + 16), the
# spatial mean (49), the channel sum (16), the bilinear upsampling (4) and the normalisation (1). _TinyNet's is 128.
CAM_OPS = 27 + 36 + 72 + 5 + 16 + 49 + 16 + 4 + 1


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + salt)


class _TinyNet(nn.Module):
    """Conv + BatchNorm + Dropout net: (N, 3, 28, 28) -> logits (N, 5); ``target_layer`` outputs (N, 6, 7, 7).

    BatchNorm has non-default running statistics and Dropout is active in train mode, so train mode
    gives different maps from eval mode.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(4))
            self.target_layer = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Flatten(), nn.Linear(6 * 7 * 7, NUM_CLASSES))
            with torch.no_grad():
                self.train()
                for _ in range(2):
                    self.stem(torch.rand(8, 3, 28, 28) * 0.8)
        # Graded models arrive in train mode, as they do straight out of a training loop.
        self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.target_layer(self.stem(x)))


def _images(seed: int, n: int, salt: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 28, 28, generator=_generator(seed, salt))


def _nonzero_targets(model: nn.Module, images: torch.Tensor, seed: int) -> torch.Tensor:
    """Targets that differ from the predicted class and whose reference map is not all zero."""
    with torch.no_grad():
        predicted = model.eval()(images).argmax(dim=1)
    model.train()
    shifts = torch.randint(1, NUM_CLASSES, (images.shape[0],), generator=_generator(seed, 2))
    targets = (predicted + shifts) % NUM_CLASSES
    for _ in range(NUM_CLASSES):
        peaks = reference_grad_cam(model, model.target_layer, images, targets).amax(dim=(1, 2))
        dead = (peaks == 0) | (targets == predicted)
        if not bool(dead.any()):
            break
        targets = torch.where(dead, (targets + 1) % NUM_CLASSES, targets)
    return targets


def _live_batch(model: nn.Module, seed: int, n: int, salt: int,
                predicted_too: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images and ``_nonzero_targets`` for them such that no reference map is all zero (nor, with
    ``predicted_too``, the map of the predicted class): a check that is not about all-zero maps then gives the same
    verdict whatever the seed, also to code that mishandles them. Images are redrawn (bounded) until that holds."""
    for attempt in range(25):
        images = _images(seed, n, salt + 101 * attempt)
        targets = _nonzero_targets(model, images, seed)
        peaks = reference_grad_cam(model, model.target_layer, images, targets).amax(dim=(1, 2))
        if predicted_too:
            peaks = torch.minimum(peaks, reference_grad_cam(model, model.target_layer, images).amax(dim=(1, 2)))
        if bool((peaks > 0).all()):
            break
    return images, targets


def _cam_slips(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Maps (N, H, W) that the usual slips produce, to recognise a wrong answer and name its cause."""
    captured: list[torch.Tensor] = []
    handle = model.target_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(images)
            (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), captured[0], retain_graph=True)
            predicted = logits.argmax(dim=1)
            (grads_pred,) = torch.autograd.grad(logits.gather(1, predicted[:, None]).sum(), captured[0])
    finally:
        handle.remove()
        model.train(was_training)
    acts = captured[0].detach()
    size = images.shape[-2:]

    def finish(raw: torch.Tensor, relu: bool = True, mode: str = "bilinear", corners: bool | None = False,
               norm: str = "own") -> torch.Tensor:
        cam = F.relu(raw) if relu else raw
        cam = F.interpolate(cam[:, None], size=size, mode=mode, align_corners=corners)[:, 0]
        if norm == "own":
            peak = cam.amax(dim=(1, 2), keepdim=True)
            return cam / torch.where(peak > 0, peak, torch.ones_like(peak))
        if norm == "global":
            return cam / cam.max().clamp_min(1e-12)
        return cam

    mean_w = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1)
    return {
        Slip("no_relu", "the maps are not passed through a ReLU: keep only positive evidence, F.relu(sum_k w_k A_k)"):
            finish(mean_w, relu=False),
        Slip("max_not_mean_weights", "channel weights should be the spatial *mean* of the gradients, "
             "grads.mean(dim=(2, 3))"): finish((grads.amax(dim=(2, 3), keepdim=True) * acts).sum(dim=1)),
        Slip("nearest_upsampling", "upsample with mode='bilinear' (align_corners=False), not nearest"):
            finish(mean_w, mode="nearest", corners=None),
        Slip("align_corners_true", "upsample with align_corners=False (the default), not True"):
            finish(mean_w, corners=True),
        Slip("batch_max_normalisation", "each map must be divided by its own max (amax over dims (1, 2)), not by the "
             "max of the whole batch"): finish(mean_w, norm="global"),
        Slip("not_normalised", "the maps are not normalised: divide each map by its own max so that it peaks at 1"):
            finish(mean_w, norm=None),
        Slip("predicted_not_target", "these are the maps of the predicted classes: use the given targets when they "
             "are not None"): finish((grads_pred.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1)),
    }


def _hint(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, got: torch.Tensor) -> str:
    for hint, value in _cam_slips(model, images, targets).items():
        if got.shape == value.shape and torch.allclose(got.detach().float(), value,
                                                       **tolerance_for(value, ops=CAM_OPS)):
            return hint
    return ("weights = mean over (h, w) of d score / d A; map = ReLU(sum_k w_k A_k), bilinear upsampling, "
            "divided by its own max; run the model in eval mode")


def _expect_maps_close(got: torch.Tensor, expected: torch.Tensor, what: str, hint) -> None:
    """expect_close up to Grad-CAM's roundings; the hint (a callable, as it reruns the model) is computed only on
    failure."""
    tolerance = tolerance_for(expected, ops=CAM_OPS)
    try:
        expect_close(got, expected, what, **tolerance)
    except CheckFailure:
        expect_close(got, expected, what, **tolerance, hint=hint() if callable(hint) else hint)


def _call(grad_cam, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """The student's maps, checked to be a float32 tensor (N, H, W)."""
    args = (model, model.target_layer, images.clone()) + (() if targets is None else (targets.clone(),))
    maps = grad_cam(*args)
    if not isinstance(maps, torch.Tensor):
        raise CheckFailure(f"grad_cam should return a torch.Tensor, got {type(maps).__name__}")
    n, _, h, w = images.shape
    if maps.shape == (n, 1, h, w):
        raise CheckFailure(f"grad_cam should return maps of shape (N, H, W) = {(n, h, w)}, got (N, 1, H, W) "
                           f"{tuple(maps.shape)}. Hint: drop the channel dimension, e.g. cams[:, 0]")
    expect_shape(maps, (n, h, w), f"grad_cam maps of images {tuple(images.shape)}")
    expect_dtype(maps, torch.float32, "grad_cam maps")
    return maps


@check("grad_cam")
def test_grad_cam_matches_reference_on_random_batch(grad_cam, seed):
    """Maps of a random batch for given targets (none of them the predicted class). The core check: the model is
    handed over in eval mode, so a grad_cam that forgets model.eval() loses the eval-mode check's points, not these."""
    n = int(torch.randint(3, 6, (1,), generator=_generator(seed, 3)))
    model = _TinyNet(seed)
    images, targets = _live_batch(model, seed, n, 1)
    model.eval()
    expected = reference_grad_cam(model, model.target_layer, images, targets)
    got = _call(grad_cam, model, images, targets)
    _expect_maps_close(got, expected, "grad_cam map", lambda: _hint(model, images, targets, got))


@check("grad_cam", kind="property")
def test_grad_cam_maps_lie_in_unit_interval_and_each_peaks_at_one(grad_cam, seed):
    """Every map is in [0, 1] and reaches exactly 1 (each map divided by its own max); the model is handed over in
    eval mode, so only the normalisation decides (a forgotten model.eval() has a check of its own)."""
    model = _TinyNet(seed + 1000)
    images, targets = _live_batch(model, seed, 4, 4)
    model.eval()
    got = _call(grad_cam, model, images, targets)
    # _live_batch avoids all-zero maps, but a batch may have none other: then zero is the right map.
    dead = reference_grad_cam(model, model.target_layer, images, targets).amax(dim=(1, 2)) == 0
    _, atol = float_tolerance(torch.float32, 1.0, ops=CAM_OPS)  # a map's own rounding, as in the comparisons
    for i in range(images.shape[0]):
        low, high = float(got[i].min()), float(got[i].max())
        expect_true(low >= -atol, f"map {i} has negative values (min {low:.4f}). Hint: apply F.relu to the "
                    "weighted sum of activations")
        if bool(dead[i]):
            expect_true(abs(high) <= atol, f"map {i} should be all zero (the ReLU of its weighted sum is zero "
                        f"everywhere), its max is {high:.4f}. Hint: divide by the max only where it is above zero")
        else:
            expect_true(abs(high - 1.0) <= atol, f"map {i} should peak at exactly 1, its max is {high:.4f}. Hint: "
                        "divide each map by its own max, cams.amax(dim=(1, 2), keepdim=True)")


@check("grad_cam", kind="property")
def test_grad_cam_uses_the_given_targets_and_defaults_to_the_predicted_class(grad_cam, seed):
    """targets=None means the predicted classes; explicit targets change the maps."""
    model = _TinyNet(seed + 2000)
    images, targets = _live_batch(model, seed, 3, 5, predicted_too=True)
    with torch.no_grad():
        predicted = model.eval()(images).argmax(dim=1)
    model.train()
    explicit = _call(grad_cam, model, images, targets)
    _expect_maps_close(explicit, reference_grad_cam(model, model.target_layer, images, targets),
                       f"grad_cam map for targets {targets.tolist()}", lambda: _hint(model, images, targets, explicit))
    default = _call(grad_cam, model, images, None)

    def default_hint() -> str:
        # If targets=None agrees with passing the predictions, the slip is elsewhere: name that one.
        own = _call(grad_cam, model, images, predicted)
        if torch.allclose(own, default, **tolerance_for(default, ops=CAM_OPS)):
            return _hint(model, images, predicted, default)
        return "with targets=None, use the predicted classes logits.argmax(dim=1) (model in eval mode)"

    _expect_maps_close(default, reference_grad_cam(model, model.target_layer, images, predicted),
                       "grad_cam map with targets=None", default_hint)


@check("grad_cam", hidden=True, kind="property")
def test_grad_cam_matches_reference_on_simplecnn_target_layer(grad_cam, seed):
    """The lesson's own architecture, at SimpleCNN.target_layer (7x7 maps upsampled to 28x28)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SimpleCNN(num_classes=NUM_CLASSES, width=4, hidden=16)
    images, targets = _live_batch(model, seed, 3, 6)
    got = _call(grad_cam, model, images, targets)
    _expect_maps_close(got, reference_grad_cam(model, model.target_layer, images, targets),
                       "grad_cam map on SimpleCNN", lambda: _hint(model, images, targets, got))


@check("grad_cam", hidden=True, kind="property")
def test_grad_cam_samples_are_independent(grad_cam, seed):
    """The batched maps equal the maps of each image alone."""
    model = _TinyNet(seed + 3000)
    images, targets = _live_batch(model, seed, 3, 7)
    batched = _call(grad_cam, model, images, targets)
    for i in range(3):
        alone = _call(grad_cam, model, images[i : i + 1], targets[i : i + 1])
        # other batch sizes may run other conv kernels: equal up to rounding, not bitwise
        expect_close(batched[i], alone[0], f"map of image {i} in a batch vs alone",
                     **tolerance_for(alone[0], ops=CAM_OPS),
                     hint="normalise each map by its own max, and run in eval mode so samples do not interact")


def _hooks_left(model: nn.Module) -> list[str]:
    """'<hook kind> on <module>' for every hook still registered on the model or one of its modules."""
    return [f"{kind} on module {name or 'model'!r}" for name, module in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            if getattr(module, kind, None)]


@check("grad_cam", kind="property")
def test_grad_cam_works_when_called_under_no_grad(grad_cam, seed):
    """Called inside torch.no_grad() (as in an evaluation loop), grad_cam must still enable gradients itself."""
    model = _TinyNet(seed + 9000)
    images, targets = _live_batch(model, seed, 2, 13)
    expected = reference_grad_cam(model, model.target_layer, images, targets)
    try:
        with torch.no_grad():
            got = _call(grad_cam, model, images, targets)
    except NotImplementedError:
        raise  # a stub: reported as "not implemented yet"
    except RuntimeError as error:
        # Name the slip only on evidence: the same call works outside no_grad, so the caller's no_grad broke it.
        try:
            _call(grad_cam, model, images, targets)
        except Exception:  # noqa: BLE001 - it fails anyway: the error itself is the message, no slip named
            raise CheckFailure(f"grad_cam raised {type(error).__name__} when called inside torch.no_grad(), and "
                               f"fails outside it too: {error}") from None
        hint = Slip("gradients_not_enabled", "it works outside torch.no_grad() and fails inside: wrap the forward "
                    "pass and torch.autograd.grad in `with torch.enable_grad():`")
        raise CheckFailure(f"grad_cam failed when called inside torch.no_grad(): {error}. Hint: {hint}",
                           hint=hint) from None

    def hint() -> str:
        # Maps that are wrong only under no_grad name no slip of their own; wrong maps anywhere may name one.
        return _hint(model, images, targets, got)

    _expect_maps_close(got, expected, "grad_cam map when called inside torch.no_grad()", hint)


@check("grad_cam", kind="property")
def test_grad_cam_leaves_no_hooks_behind(grad_cam, seed):
    """Every hook registered on the model is removed, and a second call gives the same maps."""
    model = _TinyNet(seed + 4000)
    images, targets = _live_batch(model, seed, 2, 8)
    first = _call(grad_cam, model, images, targets)
    left = _hooks_left(model)
    expect_true(not left, f"after grad_cam returned, the model still has {', '.join(left)}; a forgotten hook keeps "
                "firing in every later call. Hint: keep the handle of register_forward_hook and call handle.remove() "
                "in a finally block")
    second = _call(grad_cam, model, images, targets)
    expect_close(second, first, "grad_cam map on a second call with the same inputs", atol=1e-6, rtol=0,
                 hint="the same inputs must give the same maps: run the model in eval mode (no dropout) and let "
                 "nothing from an earlier call (a hook, a stored activation) leak into the next one")


class _ModelFailure(RuntimeError):
    """What _FailingNet raises: the check expects it to come out of grad_cam (or be swallowed), nothing else."""


class _FailInBackward(torch.autograd.Function):
    """Identity whose backward pass raises _ModelFailure."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        raise _ModelFailure("the model failed during the backward pass (on purpose, for this check)")


class _FailingNet(_TinyNet):
    """_TinyNet that raises once ``fail`` is "forward" (after target_layer has run) or "backward"."""

    fail: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activations = self.target_layer(self.stem(x))
        if self.fail == "forward":
            raise _ModelFailure("the model failed during the forward pass (on purpose, for this check)")
        if self.fail == "backward":
            activations = _FailInBackward.apply(activations)
        return self.head(activations)


@check("grad_cam", kind="property")
def test_grad_cam_removes_its_hook_even_when_the_model_raises(grad_cam, seed):
    """A model that raises in its forward pass (after the hooked layer ran), then in its backward pass: no hook may
    stay behind either time, and the next, normal call still gives the right maps."""
    model = _FailingNet(seed + 8000)
    images, targets = _live_batch(model, seed, 2, 12)
    for where in ("forward", "backward"):
        model.fail = where
        outcome = "returned anyway"
        try:
            _call(grad_cam, model, images, targets)
        except _ModelFailure:
            outcome = "let the error out"
        except CheckFailure:
            outcome = "returned a malformed result"
        left = _hooks_left(model)
        expect_true(not left, f"the model raised an error during its {where} pass, after your hook was registered; "
                    f"grad_cam {outcome} but left {', '.join(left)}, which fires in every later call. "
                    "Hint: handle = layer.register_forward_hook(...); try: <forward, gradient> finally: handle.remove()")
    model.fail = None
    model.train()
    got = _call(grad_cam, model, images, targets)
    _expect_maps_close(got, reference_grad_cam(model, model.target_layer, images, targets),
                       "grad_cam map after two failed calls", lambda: _hint(model, images, targets, got))


@check("grad_cam", kind="property")
def test_grad_cam_runs_in_eval_mode_and_restores_the_mode(grad_cam, seed):
    """Maps are those of eval mode (no dropout, running BatchNorm stats), and the model is given back as it came."""
    model = _TinyNet(seed + 5000)
    images, targets = _live_batch(model, seed, 3, 9)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    got = _call(grad_cam, model, images, targets)
    expect_true(all(m.training for m in model.modules()),
                "the model was in train mode before grad_cam but not after; give it back in the mode it came in. "
                "Hint: was_training = model.training before model.eval(), and model.train(was_training) in the "
                "finally block")
    expect_true(all(torch.equal(buffers[k], v) for k, v in model.state_dict().items()),
                "grad_cam changed the model's parameters or BatchNorm running statistics: run it in eval mode")
    _expect_maps_close(got, reference_grad_cam(model, model.target_layer, images, targets), "grad_cam map",
                       lambda: _hint(model, images, targets, got))


@check("grad_cam", kind="property")
def test_grad_cam_leaves_parameter_gradients_untouched(grad_cam, seed):
    """Only the activations' gradient is needed: parameters' .grad must stay as they were (None or a value)."""
    model, images = _TinyNet(seed + 6000), _images(seed, 2, salt=10)
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i)) if i % 2 else None
    _call(grad_cam, model, images, None)
    for (name, p), i in zip(model.named_parameters(), range(len(params))):
        before = None if i % 2 == 0 else torch.full_like(p, float(i))
        unchanged = p.grad is None if before is None else (p.grad is not None and torch.equal(p.grad, before))
        expect_true(unchanged, f"grad_cam changed {name}.grad. Hint: get the activations' gradient with "
                    "torch.autograd.grad(score, activations) instead of score.backward()")


@check("grad_cam", kind="property")
def test_grad_cam_all_zero_map_stays_zero_without_nan(grad_cam, seed):
    """A layer whose output is all zero gives all-zero maps, not NaN from 0 / 0."""
    model, images = _TinyNet(seed + 7000), _images(seed, 2, salt=11)
    with torch.no_grad():
        model.target_layer[0].weight.zero_()
        model.target_layer[0].bias.fill_(-1.0)
    got = _call(grad_cam, model, images, None)
    expect_true(bool(torch.isfinite(got).all()), "an all-zero map became NaN. Hint: divide by the max only where "
                "it is > 0, e.g. torch.where(peak > 0, peak, torch.ones_like(peak))")
    expect_close(got, torch.zeros_like(got), "all-zero grad_cam map", atol=1e-6, rtol=0)
