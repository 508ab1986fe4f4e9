"""Checks of lesson 01: SimpleCNN, train_one_epoch, accuracy, confusion_matrix (shortcutlab.models / train are the
reference).

SimpleCNN may be any reasonable CNN, so it is graded on behaviour (logits of the right shape, not probabilities;
num_classes honoured; a target layer giving the last 7x7 feature map; it learns; images independent of their batch). The training and evaluation functions are graded on small models of the checks' own (never the
student's SimpleCNN, so one wrong answer does not cost another) and compared with the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shortcutlab.data import colorize
from shortcutlab.grading import (CheckFailure, Slip, check, probe, expect_close, expect_dtype, expect_equal, expect_finite,
                                 expect_shape, expect_true)
from shortcutlab.tolerance import tolerance_for

# Bound at import, before any submission runs, so a submission cannot swap the reference.
from shortcutlab.data import smooth_texture as reference_smooth_texture
from shortcutlab.train import confusion_matrix as reference_confusion_matrix
from shortcutlab.train import train_one_epoch as reference_train_one_epoch

NUM_CLASSES = 10
IMAGE = (3, 28, 28)
# Roundings accumulated in the compared values (shortcutlab.tolerance). A student's SimpleCNN: any plausible one, e.g.
# width 32 and hidden 256 sums 27 + 288 + 576 + 6272 + 256 terms. A training loop runs the same kernels on the same
# batches as the reference; it differs in how each batch's loss is formed and accumulated (a 10-class log-softmax, a
# mean over up to 16 samples, the weighting by the batch size). Adam divides each update by the gradient's own size,
# so a weight whose gradient nearly cancels in its sum over the batch (7 images x 784 positions) moves by the relative
# rounding error of that sum.
SIMPLECNN_OPS = 10_000
BATCH_LOSS_OPS = NUM_CLASSES + 16 + 2
ADAM_STEP_OPS = BATCH_LOSS_OPS + 7 * 28 * 28


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + salt)


def _color_coded(n: int, seed: int, salt: int, balanced: bool = False) -> tuple[torch.Tensor, ...]:
    """Images (n, 3, 28, 28) of a square stroke whose color is the label (a task any CNN learns fast), labels, and
    color ids that are never the label.
    ``balanced``: every class equally often, so guessing the class frequencies cannot lower the loss."""
    g = _generator(seed, salt)
    labels = torch.randperm(n, generator=g) % NUM_CLASSES if balanced else torch.randint(0, NUM_CLASSES, (n,),
                                                                                          generator=g)
    strokes = torch.zeros(n, 28, 28)
    for i in range(n):
        top, left = (int(v) for v in torch.randint(2, 14, (2,), generator=g))
        strokes[i, top:top + 12, left:left + 8] = 1.0
    images = colorize(strokes, labels, reference_smooth_texture(n, generator=g))
    # The third item plays the loader's color ids, which training and evaluation must ignore: never the label here,
    # so code that reads them instead of the labels gets other results.
    others = (labels + torch.randint(1, NUM_CLASSES, (n,), generator=g)) % NUM_CLASSES
    return images, labels, others


def _loader(data: tuple[torch.Tensor, ...], batch_size: int) -> DataLoader:
    """Batches of (images, labels, color_ids) in order; the last batch is smaller."""
    return DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=False)


class _Small(nn.Module):
    """A tiny CNN (N, 3, 28, 28) -> (N, 10) with dropout, seeded: the model the loop checks train."""

    def __init__(self, seed: int, dropout: float = 0.0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * 7 * 7, NUM_CLASSES))
        self.modes: list[bool] = []  # training flag of every submodule, at each forward
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(all(m.training for m in self.modules()) if self.training else
                          any(m.training for m in self.modules()))
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.head(self.features(x))


class _SGD:
    """Plain SGD with the optimizer interface train_one_epoch uses (zero_grad, step, param_groups).

    Visible checks avoid torch.optim: creating the first torch optimizer in a process imports torch._dynamo,
    seconds a student would wait for in a check cell.
    """

    def __init__(self, params, lr: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"params": self.params, "lr": lr}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.sub_(self.param_groups[0]["lr"] * p.grad)


class _Adam(_SGD):
    """Adam (betas 0.9, 0.999; eps 1e-8), same interface as _SGD."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr)
        self.t = 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for p, (m, v) in zip(self.params, self.moments):
            if p.grad is None:
                continue
            m.mul_(0.9).add_(p.grad, alpha=0.1)
            v.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
            step = (m / (1 - 0.9**self.t)) / ((v / (1 - 0.999**self.t)).sqrt() + 1e-8)
            p.sub_(self.param_groups[0]["lr"] * step)


def _parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _number(value: object, what: str) -> float:
    """A Python float from a number or a one-element tensor."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise CheckFailure(f"{what} should return a number (a Python float), got {type(value).__name__}"
                       + (f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else "")
                       + ". Hint: return total / count as a float, e.g. with loss.item()")


# ----------------------------------------------------------------------------- SimpleCNN


def _new_model(SimpleCNN) -> nn.Module:
    model = SimpleCNN()
    expect_true(isinstance(model, nn.Module), f"SimpleCNN() should build an nn.Module, got {type(model).__name__}. "
                "Hint: class SimpleCNN(nn.Module) with super().__init__() first in __init__")
    return model


def _describe(shape: object) -> str:
    return str(tuple(shape)) if isinstance(shape, torch.Size) else "?"


def _forward(model: nn.Module, x: torch.Tensor, what: str) -> object:
    """``model(x)``; a shape error inside the model becomes a message listing the layer shapes along the way."""
    steps: list[tuple[str, nn.Module, object, object]] = []

    def record(name: str):
        def hook(module, inputs, output):
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            steps.append((name, module, first.shape if first is not None else None,
                          output.shape if isinstance(output, torch.Tensor) else None))
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.Linear))]
    try:
        return model(x)
    except RuntimeError as error:
        convs = [(name, i, o) for name, m, i, o in steps if isinstance(m, nn.Conv2d) and i is not None
                 and o is not None and o[-1] < i[-1]]
        if convs:
            name, i, o = convs[0]
            hint = Slip("no_padding", f"the convolution {name} turns maps of {i[-2]}x{i[-1]} into {o[-2]}x{o[-1]}: a "
                        "3x3 convolution without padding=1 shrinks each map by 2 pixels, so the last map is not 7x7 "
                        "and the first linear layer gets the wrong number of inputs. Use nn.Conv2d(in, out, 3, "
                        "padding=1)")
        else:
            hint = Slip("wrong_flatten_size", "the first linear layer's in_features must be the size of the flattened "
                        "last feature map, C * 7 * 7 for a map (N, C, 7, 7) (28 -> 14 -> 7 after two 2x2 poolings)")
        path = "; ".join(f"{name or type(m).__name__} {_describe(i)} -> {_describe(o)}" for name, m, i, o in steps)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckFailure(f"{what} raised an error inside the model: {first_line}. Shapes along the way: "
                           f"{path or 'no layer ran'}. Hint: {hint}", hint=hint) from None
    finally:
        for handle in handles:
            handle.remove()


def _expect_logits(out: object, n: int, what: str, classes: int = NUM_CLASSES) -> torch.Tensor:
    """``out`` is (n, classes) finite float32 logits, not probabilities (judged on data)."""
    expect_shape(out, (n, classes), what,
                 hint=f"end with a linear layer to num_classes ({classes}) outputs, one logit per class")
    expect_dtype(out, torch.float32, what)
    expect_finite(out, what)
    sums = out.detach().double().sum(dim=1)
    if bool((out >= 0).all()) and bool(((sums - 1).abs() < 1e-4).all()):
        raise CheckFailure(f"{what}: every row is non-negative and sums to 1, so these are probabilities, not logits. "
                           "Hint: return the last linear layer's output as it is, without softmax: F.cross_entropy "
                           "applies log-softmax itself, and a softmax before it flattens the gradients",
                           slip="returns_probabilities")
    return out


def _logits(model: nn.Module, x: torch.Tensor, what: str, classes: int = NUM_CLASSES) -> torch.Tensor:
    """``model(x)``, checked to be logits (inside a probe: the judge checks what the probe returns again)."""
    return _expect_logits(_forward(model, x, what), x.shape[0], what, classes)


@probe
def _outputs_on(SimpleCNN, images: torch.Tensor, noise: torch.Tensor, classes: int) -> dict:
    """SimpleCNN()'s outputs on ``images`` and ``noise``, and SimpleCNN(num_classes=classes)'s on ``images``."""
    model = _new_model(SimpleCNN)
    n = images.shape[0]
    out = _forward(model, images, f"SimpleCNN()(images of shape ({n}, 3, 28, 28))")
    other = _forward(model, noise, "SimpleCNN()(other images)")
    resized = _forward(SimpleCNN(num_classes=classes), images,
                       f"SimpleCNN(num_classes={classes})(images of shape ({n}, 3, 28, 28))")
    return {"out": _detached(out), "other": _detached(other), "resized": _detached(resized)}


def _detached(value: object) -> object:
    return value.detach() if isinstance(value, torch.Tensor) else value


@check("SimpleCNN", kind="property")
def test_simple_cnn_maps_images_to_ten_logits(SimpleCNN, seed):
    """(N, 3, 28, 28) images give (N, 10) finite float32 logits (not probabilities) that depend on the image;
    SimpleCNN(num_classes=k) gives k logits."""
    g = _generator(seed, 1)
    n = int(torch.randint(2, 7, (1,), generator=g))
    x, _, _ = _color_coded(n, seed, 2)
    noise = torch.rand(x.shape, generator=_generator(seed, 3))
    classes = int(torch.randint(2, 9, (1,), generator=g))
    got = _outputs_on(SimpleCNN, x, noise, classes)
    out = _expect_logits(got["out"], n, f"SimpleCNN()(images of shape ({n}, 3, 28, 28))")
    other = _expect_logits(got["other"], n, "SimpleCNN()(other images)")
    expect_true(not torch.allclose(out, other, rtol=0, atol=1e-6), "SimpleCNN gives the same logits for different "
                "images: the output must be computed from the input")
    _expect_logits(got["resized"], n, f"SimpleCNN(num_classes={classes})(images of shape ({n}, 3, 28, 28))", classes)


@probe
def _target_layer_run(SimpleCNN, images: torch.Tensor) -> dict:
    """What Grad-CAM needs of ``model.target_layer``: whether it is one of the model's own layers, and the order in
    which it and the convolutions run on ``images`` with the shape of each output."""
    model = _new_model(SimpleCNN)
    if not hasattr(model, "target_layer"):
        return {"has": False}
    target = model.target_layer
    found = {"has": True, "type": type(target).__name__, "is_module": isinstance(target, nn.Module)}
    if not found["is_module"]:
        return found
    found["own"] = any(m is target for m in model.modules())
    order: list[tuple[str, object]] = []  # the target layer's output and every convolution, in the order they run

    def shape(output: object) -> object:
        return list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__

    handles = [target.register_forward_hook(lambda module, inputs, output: order.append(("target", shape(output))))]
    handles += [m.register_forward_hook(lambda module, inputs, output: order.append(("conv", shape(output))))
                for m in model.modules() if isinstance(m, nn.Conv2d) and m is not target]
    try:
        _forward(model, images, "SimpleCNN()(images of shape (3, 3, 28, 28))")
    finally:
        for handle in handles:
            handle.remove()
    found["order"] = order
    return found


@check("SimpleCNN", kind="property")
def test_simple_cnn_exposes_a_convolutional_target_layer(SimpleCNN, seed):
    """``model.target_layer`` is a submodule whose output is a 4-D feature map (N, C, H, W), for Grad-CAM."""
    found = _target_layer_run(SimpleCNN, _color_coded(3, seed, 3)[0])
    expect_true(found["has"], "SimpleCNN has no attribute target_layer. Hint: keep the last "
                "convolutional block as self.target_layer (or a property returning it)")
    expect_true(found["is_module"], f"model.target_layer should be a layer (nn.Module), got {found['type']}")
    expect_true(found["own"], "model.target_layer is not one of the model's own "
                "layers; it must be the module the forward pass goes through")
    order = [(kind, output) for kind, output in found["order"]]
    seen = [output for kind, output in order if kind == "target"]
    expect_true(seen, "the forward pass never runs model.target_layer; use the layer itself in forward")
    feature_map = seen[-1]
    is_map = isinstance(feature_map, list) and len(feature_map) == 4 and feature_map[0] == 3
    expect_true(is_map, "model.target_layer should output a feature map (N, C, H, W); it output "
                + (f"shape {tuple(feature_map)}" if isinstance(feature_map, list) else str(feature_map))
                + ". Hint: pick a convolutional block, not a linear layer")
    last = max(i for i, (kind, _) in enumerate(order) if kind == "target")
    expect_true(all(kind != "conv" for kind, _ in order[last + 1:]),
                "a convolution runs after model.target_layer: it should be the last convolutional block, whose "
                "output is the last feature map")
    expect_true(tuple(feature_map[-2:]) == (7, 7),
                f"model.target_layer outputs maps of {feature_map[-2]}x{feature_map[-1]} pixels; the "
                "last feature map of 28x28 images is 7x7 (28 -> 14 -> 7 after two 2x2 poolings). Hint: 3x3 "
                "convolutions with padding=1 keep the size; only the two MaxPool2d(2) halve it")


@probe
def _training_losses(SimpleCNN, x: torch.Tensor, labels: torch.Tensor) -> list[float] | None:
    """The cross-entropy losses of 15 Adam steps (lr 5e-3) of a fresh SimpleCNN on (x, labels); None if it has
    no trainable parameters."""
    model = _new_model(SimpleCNN).train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        return None
    optimizer = _Adam(parameters, lr=5e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(_logits(model, x, "SimpleCNN's output"), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@check("SimpleCNN")
def test_simple_cnn_learns_a_color_coded_task(SimpleCNN, seed):
    """A few Adam steps on 20 images whose color gives the label bring the loss well down."""
    x, labels, _ = _color_coded(20, seed, 4, balanced=True)
    losses = _training_losses(SimpleCNN, x, labels)
    expect_true(losses is not None, "SimpleCNN has no trainable parameters. Hint: create layers in __init__ as "
                "attributes (self.conv = nn.Conv2d(...)), not inside forward")
    expect_true(isinstance(losses, list) and len(losses) == 15 and all(isinstance(v, float) for v in losses),
                "the grader could not read the training losses")
    # The reference ends below 0.55 of its first loss on every seed tried; a model that cannot use the image
    # stays at 1.0 (balanced classes).
    expect_true(min(losses[-3:]) < 0.8 * losses[0],
                f"SimpleCNN does not learn: 15 Adam steps (lr 5e-3) on 20 images whose label is their color take the "
                f"loss from {losses[0]:.3f} only to {min(losses[-3:]):.3f}. Hint: conv layers with ReLU, pooling, "
                "then linear layers; make sure every layer is used in forward and nothing is detached")


@probe
def _batch_and_single(SimpleCNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh SimpleCNN's eval-mode logits of ``x`` as one batch, and of each image alone (stacked)."""
    model = _new_model(SimpleCNN).eval()
    with torch.no_grad():
        batch = _logits(model, x, "SimpleCNN's output")
        single = torch.cat([_logits(model, x[i:i + 1], "SimpleCNN's output on one image")
                            for i in range(x.shape[0])])
    return batch, single


@check("SimpleCNN", kind="property")
def test_simple_cnn_treats_each_image_independently(SimpleCNN, seed):
    """In eval mode, an image's logits do not depend on the other images of its batch."""
    x, _, _ = _color_coded(4, seed, 5)
    batch, single = _batch_and_single(SimpleCNN, x)
    batch = _expect_logits(batch, 4, "SimpleCNN's output")
    single = _expect_logits(single, 4, "SimpleCNN's output on one image at a time")
    expect_close(batch, single, "logits of images run as a batch vs one at a time",
                 **tolerance_for(single, ops=SIMPLECNN_OPS),
                 hint="an image's logits must depend on that image alone: flatten with x.flatten(1) (or "
                      "x.view(x.size(0), -1)) and compute nothing over the batch dimension (no mean or "
                      "normalisation over dim 0)")


# ----------------------------------------------------------------------------- train_one_epoch


def _train_both(train_one_epoch, seed: int, n: int, batch_size: int, make_optimizer, salt: int):
    """Run the student's and the reference's epoch from identical models; returns both (loss, model) pairs."""
    data = _color_coded(n, seed, salt)
    mine, theirs = _Small(seed), _Small(seed)
    got = train_one_epoch(mine, _loader(data, batch_size), make_optimizer(mine.parameters()))
    expected = reference_train_one_epoch(theirs, _loader(data, batch_size), make_optimizer(theirs.parameters()))
    return (got, mine), (expected, theirs), data


NO_ZERO_GRAD_HINT = Slip("no_zero_grad", "it matches an epoch whose gradients pile up over the batches: "
                         "loss.backward() adds to .grad, so call optimizer.zero_grad() in every batch before "
                         "loss.backward()")
COLOR_IDS_HINT = Slip("trains_on_color_ids", "it matches an epoch trained on the color ids (the third item of each "
                      "batch) instead of the labels (the second): for images, labels, _ in loader")
STEP_BEFORE_BACKWARD_HINT = Slip("step_before_backward", "it matches an epoch that calls optimizer.step() before "
                                 "loss.backward(), so each step finds no gradient of its batch. Per batch: "
                                 "optimizer.zero_grad(), loss.backward(), then optimizer.step()")


LOOP_VARIANTS = ((NO_ZERO_GRAD_HINT, {"zero_grad": False}), (STEP_BEFORE_BACKWARD_HINT, {"step_first": True}),
                 (COLOR_IDS_HINT, {"color_ids": True}))


def _sgd_epoch(data, seed: int, batch_size: int, zero_grad: bool = True, step_first: bool = False,
               color_ids: bool = False):
    """The batch losses, batch sizes and final weights of an SGD epoch (lr 0.1) of _Small(seed), as a correct
    loop gives them, or with gradients never zeroed, the step taken before backward, or the color ids as targets."""
    model = _Small(seed)
    optimizer = _SGD(model.parameters(), lr=0.1)
    losses, sizes = [], []
    for images, labels, colors in _loader(data, batch_size):
        loss = F.cross_entropy(model(images), colors if color_ids else labels)
        if zero_grad:
            optimizer.zero_grad()
        if step_first:
            optimizer.step()
            loss.backward()
        else:
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
        sizes.append(len(labels))
    return losses, sizes, _parameters(model)


def _per_sample_mean(losses: list[float], sizes: list[int]) -> float:
    return sum(l * s for l, s in zip(losses, sizes)) / sum(sizes)


def _loss_hint(got: float, data, seed: int, batch_size: int) -> str:
    """Recognise averaging per batch instead of per sample, summing, and a wrong update order from the value."""
    def near(value: float) -> bool:
        tolerance = tolerance_for(value, ops=len(losses) * BATCH_LOSS_OPS)
        return abs(got - value) <= tolerance["atol"] + tolerance["rtol"] * abs(value)

    losses, sizes, _ = _sgd_epoch(data, seed, batch_size)
    for hint, variant in LOOP_VARIANTS:
        other_losses, other_sizes, _ = _sgd_epoch(data, seed, batch_size, **variant)
        if near(_per_sample_mean(other_losses, other_sizes)):
            return hint
    if near(sum(losses) / len(losses)):
        return Slip("mean_of_batch_means", "that is the mean of the batch losses; weight each batch's loss by its size "
                    "(the last batch is smaller)")
    if near(sum(l * s for l, s in zip(losses, sizes))):
        return Slip("total_not_mean", "that is the total loss; divide by the number of samples")
    if near(sum(losses)):
        return Slip("sum_of_batch_means", "that is the sum of the batch losses; return the mean loss per sample")
    return "return sum(batch loss * batch size) / number of samples, with each batch's loss taken before its step"


@check("train_one_epoch", kind="property")
def test_train_one_epoch_returns_the_mean_loss_per_sample(train_one_epoch, seed):
    """40 samples in batches of 16, 16 and 8: the returned value is the mean cross-entropy per sample."""
    # Data on which the mean of the three batch means is far (10 tolerances) from the mean per sample, so averaging
    # the batch means fails for every seed; chosen from the reference's own epoch, before any student code runs.
    for attempt in range(50):
        salt = 10 + 1000 * attempt
        losses, sizes, _ = _sgd_epoch(_color_coded(40, seed, salt), seed, 16)
        per_sample = _per_sample_mean(losses, sizes)
        tolerance = tolerance_for(per_sample, ops=3 * BATCH_LOSS_OPS)
        if abs(sum(losses) / len(losses) - per_sample) > 10 * (tolerance["atol"] + tolerance["rtol"] * per_sample):
            break
    (got, _), (expected, _), data = _train_both(train_one_epoch, seed, 40, 16,
                                                lambda p: _SGD(p, lr=0.1), salt)
    value = _number(got, "train_one_epoch")
    expect_close(value, expected, "the loss train_one_epoch returned",
                 **tolerance_for(expected, ops=3 * BATCH_LOSS_OPS), hint=_loss_hint(value, data, seed, 16))


@check("train_one_epoch")
def test_train_one_epoch_takes_one_optimizer_step_per_batch(train_one_epoch, seed):
    """After the epoch the weights equal the reference's: zero_grad, backward and step once per batch."""
    (_, mine), (_, theirs), _ = _train_both(train_one_epoch, seed, 40, 16, lambda p: _SGD(p, lr=0.1), 11)
    before = _parameters(_Small(seed))
    after = _parameters(mine)
    expected = _parameters(theirs)
    hint = "for each batch: optimizer.zero_grad(), loss.backward(), optimizer.step()"
    if torch.equal(after, before):
        hint = Slip("no_step", "the weights did not change at all: call optimizer.step() after loss.backward()")
    else:
        data = _color_coded(40, seed, 11)
        for variant_hint, variant in LOOP_VARIANTS:
            weights = _sgd_epoch(data, seed, 16, **variant)[2]
            if torch.allclose(after, weights, **tolerance_for(weights, ops=3 * BATCH_LOSS_OPS)):
                hint = variant_hint
                break
    expect_close(after, expected, "the model's weights after one epoch",
                 **tolerance_for(expected, ops=3 * BATCH_LOSS_OPS), hint=hint)


@check("train_one_epoch", kind="property")
def test_train_one_epoch_puts_the_model_in_train_mode(train_one_epoch, seed):
    """A model handed over in eval mode is trained in train mode (dropout on)."""
    data = _color_coded(20, seed, 12)
    model = _Small(seed, dropout=0.5).eval()
    train_one_epoch(model, _loader(data, 8), _SGD(model.parameters(), lr=0.01))
    expect_true(model.modes, "train_one_epoch never called the model")
    expect_true(all(model.modes), "the model ran in eval mode during training. Hint: call model.train() at the "
                "start of train_one_epoch (the model may arrive in eval mode, e.g. after accuracy)")
    expect_true(all(model.grad_enabled), "train_one_epoch ran the model without gradients (torch.no_grad); "
                "training needs them")


@check("train_one_epoch", hidden=True, kind="property")
def test_train_one_epoch_matches_the_reference_with_adam(train_one_epoch, seed):
    """Another optimizer (Adam) and batch size (7 over 30 samples): same loss and weights as the reference."""
    (got, mine), (expected, theirs), _ = _train_both(train_one_epoch, seed, 30, 7,
                                                     lambda p: torch.optim.Adam(p, lr=1e-2), 13)
    expect_close(_number(got, "train_one_epoch"), expected, "the loss train_one_epoch returned (Adam, batches of 7)",
                 **tolerance_for(expected, ops=5 * BATCH_LOSS_OPS))
    weights = _parameters(theirs)
    expect_close(_parameters(mine), weights, "the weights after one epoch with Adam",
                 **tolerance_for(weights, ops=5 * ADAM_STEP_OPS),
                 hint="use the optimizer you are given; do not create your own")


# ----------------------------------------------------------------------------- accuracy


def _labelled_for(model: nn.Module, data, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The data relabelled so exactly the first ``k`` samples match the model's prediction."""
    images, _, colors = data
    with torch.no_grad():
        was = model.training
        predicted = model.eval()(images).argmax(dim=1)
        model.train(was)
    labels = predicted.clone()
    labels[k:] = (predicted[k:] + 1) % NUM_CLASSES
    model.modes.clear()
    model.grad_enabled.clear()
    return images, labels, colors


def _accuracy(accuracy, model: nn.Module, loader) -> float:
    return _number(accuracy(model, loader), "accuracy")


@check("accuracy")
def test_accuracy_counts_correct_predictions_over_all_samples(accuracy, seed):
    """37 samples in batches of 10, 10, 10, 7, with exactly k right: accuracy is k / 37, a fraction in [0, 1]."""
    g = _generator(seed, 20)
    k = int(torch.randint(5, 33, (1,), generator=g))
    model = _Small(seed)
    data = _labelled_for(model, _color_coded(37, seed, 21), k)
    order = torch.randperm(37, generator=g)
    data = tuple(t[order] for t in data)
    got = _accuracy(accuracy, model, _loader(data, 10))
    hint = "count correct predictions over all batches and divide by the number of samples"
    if abs(got - 100 * k / 37) < 1e-3:
        hint = Slip("percentage", "return a fraction in [0, 1], not a percentage")
    expect_close(got, k / 37, f"accuracy with {k} of 37 predictions right", **tolerance_for(k / 37, ops=2 * 4),
                 hint=hint)


@check("accuracy", kind="property")
def test_accuracy_runs_the_model_in_eval_mode(accuracy, seed):
    """Dropout must be off while evaluating: the model runs in eval mode."""
    model = _Small(seed, dropout=0.5).train()
    data = _labelled_for(model, _color_coded(24, seed, 22), 12)
    _accuracy(accuracy, model, _loader(data, 8))
    expect_true(model.modes, "accuracy never called the model")
    expect_true(not any(model.modes), "the model ran in train mode (dropout active) while evaluating. Hint: call "
                "model.eval() before the loop")


@check("accuracy", kind="property")
def test_accuracy_gives_the_model_back_in_its_mode(accuracy, seed):
    """A model in train mode is in train mode after the call; one in eval mode stays in eval mode."""
    data = _color_coded(16, seed, 23)
    for mode in (True, False):
        model = _Small(seed, dropout=0.5).train(mode)
        _accuracy(accuracy, model, _loader(data, 8))
        after = [m.training for m in model.modules()]
        expect_true(all(t == mode for t in after),
                    f"the model was in {'train' if mode else 'eval'} mode before accuracy but not after it. Hint: "
                    "remember was_training = model.training, and call model.train(was_training) at the end")


@check("accuracy", kind="property")
def test_accuracy_computes_no_gradients(accuracy, seed):
    """Evaluation needs no autograd graph: the model runs under torch.no_grad()."""
    model = _Small(seed)
    data = _color_coded(16, seed, 24)
    _accuracy(accuracy, model, _loader(data, 8))
    expect_true(model.grad_enabled, "accuracy never called the model")
    expect_true(not any(model.grad_enabled), "accuracy ran the model with gradients enabled. Hint: decorate it with "
                "@torch.no_grad() or put the loop inside `with torch.no_grad():`")


# ----------------------------------------------------------------------------- confusion_matrix


def _predictions(seed: int, n: int, classes: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed, salt)
    labels = torch.randint(0, classes, (n,), generator=g)
    right = torch.rand(n, generator=g) < 0.5
    predictions = torch.where(right, labels, torch.randint(0, classes, (n,), generator=g))
    return predictions, labels


def _matrix(confusion_matrix, predictions, labels, classes: int | None = None) -> torch.Tensor:
    args = (predictions.clone(), labels.clone()) + ((classes,) if classes is not None else ())
    out = confusion_matrix(*args)
    size = classes or NUM_CLASSES
    what = f"confusion_matrix of {len(labels)} predictions" + (f" with num_classes={classes}" if classes else "")
    hint = f"one row and one column per class: ({size}, {size})"
    if classes is None:
        hint += "; the size comes from num_classes (default 10), not from the largest label present"
    if classes is not None and isinstance(out, torch.Tensor) and tuple(out.shape) == (NUM_CLASSES, NUM_CLASSES):
        hint = f"the size comes from the num_classes argument ({classes} here), not a fixed 10"
    expect_shape(out, (size, size), what, hint=hint)
    expect_dtype(out, torch.int64, what, hint="counts are integers: build the matrix with dtype=torch.long")
    return out


def _expect_counts(out: torch.Tensor, expected: torch.Tensor, what: str, hint: str) -> None:
    """``out`` equals the reference's counts; a transposed matrix gets its own hint."""
    if out.shape == expected.shape and torch.equal(out, expected.T):
        hint = Slip("transposed", "the matrix is transposed: rows must be true labels, columns predictions")
    expect_equal(out, expected, what, hint=hint)


@check("confusion_matrix")
def test_confusion_matrix_counts_pairs_with_true_labels_as_rows(confusion_matrix, seed):
    """Entry [t, p] counts samples of true label t predicted as p."""
    predictions, labels = _predictions(seed, 200, NUM_CLASSES, 30)
    out = _matrix(confusion_matrix, predictions, labels)
    _expect_counts(out, reference_confusion_matrix(predictions, labels), "the confusion matrix",
                   "entry [t, p] counts samples with true label t and prediction p")


@check("confusion_matrix", kind="property")
def test_confusion_matrix_is_ten_by_ten_even_with_missing_classes(confusion_matrix, seed):
    """Labels and predictions only in 0..5 still give a 10 x 10 matrix whose entries sum to N."""
    predictions, labels = _predictions(seed, 50, 6, 31)
    out = _matrix(confusion_matrix, predictions, labels)
    expect_equal(out.sum(), 50, "the sum of all entries of the confusion matrix (one count per sample)")
    _expect_counts(out, reference_confusion_matrix(predictions, labels),
                   "the confusion matrix of labels and predictions in 0..5",
                   "entry [t, p] counts samples with true label t and prediction p; rows and columns 6..9 stay 0")


@check("confusion_matrix", kind="property")
def test_confusion_matrix_supports_other_class_counts(confusion_matrix, seed):
    """num_classes=3 and num_classes=12 give 3 x 3 and 12 x 12 matrices."""
    for classes in (3, 12):
        predictions, labels = _predictions(seed, 80, classes, 32 + classes)
        out = _matrix(confusion_matrix, predictions, labels, classes)
        expected = reference_confusion_matrix(predictions, labels, classes)
        expect_equal(out, expected, f"the confusion matrix with num_classes={classes}",
                     hint="the matrix is transposed: rows must be true labels, columns predictions"
                     if torch.equal(out, expected.T) else "entry [t, p] counts samples with true label t and "
                     "prediction p")
