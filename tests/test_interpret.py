"""Tests of shortcutlab.interpret: total variation, activation maximization and Grad-CAM."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.interpret import activation_maximization, grad_cam, total_variation
from shortcutlab.models import class_logits
from shortcutlab.models import SimpleCNN
from shortcutlab.tolerance import tolerance_for

# Roundings accumulated into one Grad-CAM value (shortcutlab.tolerance): forward to the target layer, its gradient,
# the spatial mean (49), the channel sum and the bilinear upsampling (4). TinyNet: convs 27 + 36, head backward 5.
# SimpleCNN(width=4, hidden=16): convs 27 + 36 + 72, backward through classifier 1 and penultimate 16.
CAM_OPS = {"TinyNet": 27 + 36 + 5 + 49 + 4 + 4, "SimpleCNN": 27 + 36 + 72 + 1 + 16 + 49 + 16 + 4}
# One activation-maximization step: the input gradient back through TinyNet (head 5, conv 36, conv 27) and Adam's
# few elementwise operations; the steps add up.
ACTMAX_STEP_OPS = 5 + 36 + 27 + 8


class TinyNet(nn.Module):
    """Conv + BatchNorm net: (N, 3, 28, 28) -> logits (N, 5); ``target_layer`` outputs (N, 4, 7, 7)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(4))
        self.target_layer = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 7 * 7, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.target_layer(self.stem(x)))


class TupleNet(nn.Module):
    """Wraps a model to return (class_logits, extra_logits) like GRLNet."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.inner(x)
        return logits, -logits[:, :3]


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def confident_tiny_net(seed: int = 0) -> TinyNet:
    """TinyNet with its head scaled up, so that logit gradients outweigh the l2 and TV penalties as in a trained net."""
    model = tiny_net(seed)
    with torch.no_grad():
        model.head[1].weight.mul_(30)
    return model


def simple_cnn(seed: int = 0) -> SimpleCNN:
    torch.manual_seed(seed)
    return SimpleCNN(width=4, hidden=16)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


def start_image(seed: int) -> torch.Tensor:
    return 0.4 + 0.2 * torch.rand(1, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- class_logits


def test_class_logits_takes_tensor_or_first_tuple_element() -> None:
    logits = torch.randn(2, 10)
    assert class_logits(logits) is logits
    assert class_logits((logits, torch.randn(2, 3))) is logits


def test_class_logits_rejects_non_2d_output() -> None:
    with pytest.raises(ValueError, match=r"\(N, num_classes\).*\(2, 3, 4\)"):
        class_logits(torch.randn(2, 3, 4))


# ---------------------------------------------------------------- total_variation


def test_total_variation_hand_computed_example() -> None:
    # Channel 0 [[0, 1], [3, 2]]: vertical |3-0| + |2-1| = 4, horizontal |1-0| + |2-3| = 2.
    # Channel 1 [[0, 0], [0, 5]]: vertical 5, horizontal 5.  Total 4 + 2 + 5 + 5 = 16.
    x = torch.tensor([[[[0.0, 1.0], [3.0, 2.0]], [[0.0, 0.0], [0.0, 5.0]]]])
    assert torch.equal(total_variation(x), torch.tensor([16.0]))


def test_total_variation_hand_computed_non_square() -> None:
    # One row [0, 2, 1]: no vertical neighbours, horizontal |2-0| + |1-2| = 3.
    x = torch.tensor([[[[0.0, 2.0, 1.0]]]])
    assert torch.equal(total_variation(x), torch.tensor([3.0]))


def test_total_variation_shape_is_batch_size() -> None:
    assert total_variation(images(5)).shape == (5,)


def test_total_variation_is_zero_for_constant_images() -> None:
    x = torch.full((3, 3, 28, 28), 0.7)
    assert torch.equal(total_variation(x), torch.zeros(3))


def test_total_variation_samples_are_independent() -> None:
    x = images(4)
    batched = total_variation(x)
    one_by_one = torch.cat([total_variation(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, one_by_one, **tolerance_for(one_by_one, ops=2 * 3 * 28 * 27))
    changed = x.clone()
    changed[2] = 0.5
    assert torch.equal(total_variation(changed)[[0, 1, 3]], batched[[0, 1, 3]])
    assert total_variation(changed)[2] == 0


def test_total_variation_rejects_non_4d_input() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(3, 28, 28\)"):
        total_variation(torch.rand(3, 28, 28))


# ---------------------------------------------------------------- activation_maximization


def reference_activation_maximization(
    model: nn.Module, target: int, steps: int, lr: float, l2: float, tv: float, seed: int = 0,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Independent re-implementation: hand-written Adam (PyTorch defaults) and TV, from ``start`` (1, 3, 28, 28)."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x = start_image(seed) if start is None else start
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    model.eval()
    for t in range(1, steps + 1):
        x = x.detach().requires_grad_(True)
        tv_x = (x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum()
        objective = model(x)[0, target] - l2 * (x**2).sum() - tv * tv_x
        (g,) = torch.autograd.grad(-objective, x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        x = (x - lr * m_hat / (v_hat.sqrt() + eps)).clamp(0, 1)
    return x.detach()


def test_activation_maximization_shape_and_range() -> None:
    x = activation_maximization(confident_tiny_net(), 2, steps=30, generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 3, 28, 28)
    assert x.dtype == torch.float32
    assert not x.requires_grad
    assert x.min() >= 0 and x.max() <= 1
    # Some pixels are pushed onto the bounds, so the clamp is exercised.
    assert (x == 0).any() or (x == 1).any()


def test_activation_maximization_is_deterministic_for_a_seeded_generator() -> None:
    model = tiny_net()
    a = activation_maximization(model, 1, steps=10, generator=torch.Generator().manual_seed(3))
    b = activation_maximization(model, 1, steps=10, generator=torch.Generator().manual_seed(3))
    c = activation_maximization(model, 1, steps=10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_activation_maximization_zero_steps_returns_the_uniform_start() -> None:
    x = activation_maximization(tiny_net(), 0, steps=0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, start_image(5))
    assert x.min() >= 0.4 and x.max() <= 0.6


def test_activation_maximization_raises_the_target_logit() -> None:
    model = confident_tiny_net().eval()
    x = activation_maximization(model, 2, steps=30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = model(start_image(0))[0, 2], model(x)[0, 2]
    assert after > before + 10


def test_activation_maximization_matches_independent_reimplementation() -> None:
    model = confident_tiny_net()
    generator = torch.Generator().manual_seed(8)
    got = activation_maximization(model, 3, steps=20, lr=0.05, l2=1e-3, tv=1e-2, generator=generator)
    expected = reference_activation_maximization(model, 3, steps=20, lr=0.05, l2=1e-3, tv=1e-2, seed=8)
    assert ((expected == 0) | (expected == 1)).any()  # the clamp is part of what is compared
    torch.testing.assert_close(got, expected, **tolerance_for(expected, ops=20 * ACTMAX_STEP_OPS))


def test_activation_maximization_of_several_classes_equals_one_call_per_class() -> None:
    model = confident_tiny_net()
    batched = activation_maximization(model, [3, 1, 3], steps=20, generator=torch.Generator().manual_seed(8))
    starts = 0.4 + 0.2 * torch.rand((3, 3, 28, 28), generator=torch.Generator().manual_seed(8))
    assert batched.shape == (3, 3, 28, 28)
    for row, target in enumerate([3, 1, 3]):
        expected = reference_activation_maximization(model, target, steps=20, lr=0.05, l2=1e-3, tv=1e-2,
                                                     start=starts[row:row + 1])
        torch.testing.assert_close(batched[row:row + 1], expected, **tolerance_for(expected, ops=20 * ACTMAX_STEP_OPS),
                                   msg=lambda m: f"image {row} (class {target}): {m}")


def test_activation_maximization_rejects_a_bad_class_in_a_list() -> None:
    with pytest.raises(ValueError, match="target_class"):
        activation_maximization(tiny_net(), [0, 10], steps=1)


@pytest.mark.parametrize("training", [True, False])
def test_activation_maximization_restores_the_model_mode(training: bool) -> None:
    model = tiny_net().train(training)
    model.stem[1].train(not training)  # a mixed mode must come back exactly too
    activation_maximization(model, 0, steps=2)
    assert model.training is training
    assert model.stem[1].training is (not training)
    assert all(m.training is training for m in model.modules() if m is not model.stem[1])


def test_activation_maximization_leaves_parameters_and_their_grads_untouched() -> None:
    model = tiny_net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    activation_maximization(model, 0, steps=3)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_activation_maximization_works_with_tuple_returning_model() -> None:
    plain = activation_maximization(tiny_net(), 4, steps=5, generator=torch.Generator().manual_seed(2))
    wrapped = activation_maximization(TupleNet(tiny_net()), 4, steps=5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(plain, wrapped)


@pytest.mark.parametrize("target", [-1, 5, 2.0, True])
def test_activation_maximization_rejects_bad_target_class(target: object) -> None:
    with pytest.raises(ValueError, match=r"target_class must be an int in \[0, 5\)"):
        activation_maximization(tiny_net(), target, steps=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- grad_cam


def captum_reference(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Captum's LayerGradCam, then the same bilinear upsampling and per-map max normalisation."""
    from captum.attr import LayerGradCam

    model.eval()
    attributions = LayerGradCam(lambda inp: class_logits(model(inp)), layer).attribute(
        x, target=targets, relu_attributions=True
    )
    maps = F.interpolate(attributions, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peaks = maps.amax(dim=(1, 2), keepdim=True)
    return (maps / torch.where(peaks > 0, peaks, torch.ones_like(peaks))).detach()


@pytest.mark.parametrize("make_model", [tiny_net, simple_cnn])
def test_grad_cam_matches_captum(make_model) -> None:
    pytest.importorskip("captum")
    model, x = make_model(), images(6)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    got = grad_cam(model, model.target_layer, x, targets)
    expected = captum_reference(model, model.target_layer, x, targets)
    assert (expected.amax(dim=(1, 2)) > 0).all()  # non-trivial maps
    assert got.shape == (6, 28, 28) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, **tolerance_for(expected, ops=CAM_OPS[type(model).__name__]))


def test_grad_cam_maps_lie_in_unit_interval_with_max_one() -> None:
    model = simple_cnn()
    maps = grad_cam(model, model.target_layer, images(6), torch.arange(6))
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.amax(dim=(1, 2))
    assert torch.all((peaks == 0) | torch.isclose(peaks, torch.ones(6)))
    assert (peaks > 0).any()


def test_grad_cam_none_targets_use_the_predicted_class() -> None:
    model, x = simple_cnn(), images(5)
    with torch.no_grad():
        predicted = model.eval()(x).argmax(dim=1)
    assert torch.equal(grad_cam(model, model.target_layer, x), grad_cam(model, model.target_layer, x, predicted))


def test_grad_cam_works_with_tuple_returning_model() -> None:
    model, x, targets = simple_cnn(), images(3), torch.tensor([1, 5, 9])
    wrapped = TupleNet(model)
    expected = grad_cam(model, model.target_layer, x, targets)
    assert torch.equal(grad_cam(wrapped, model.target_layer, x, targets), expected)


def test_grad_cam_samples_are_independent() -> None:
    model, x, targets = tiny_net(), images(4), torch.tensor([3, 1, 4, 1])
    batched = grad_cam(model, model.target_layer, x, targets)
    one_by_one = torch.cat([grad_cam(model, model.target_layer, x[i : i + 1], targets[i : i + 1]) for i in range(4)])
    # Other batch sizes run other conv kernels (and other CPUs other ones again): equal up to rounding, not bitwise.
    torch.testing.assert_close(batched, one_by_one, **tolerance_for(one_by_one, ops=CAM_OPS["TinyNet"]))


def test_grad_cam_leaves_no_hooks() -> None:
    model = tiny_net()
    grad_cam(model, model.target_layer, images(2))
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not module._backward_pre_hooks


def test_grad_cam_removes_its_hook_when_the_forward_fails() -> None:
    model = tiny_net()
    with pytest.raises(RuntimeError):
        grad_cam(model, model.target_layer, torch.rand(2, 3, 5, 5))  # too small for the Linear head
    assert not model.target_layer._forward_hooks


@pytest.mark.parametrize("training", [True, False])
def test_grad_cam_restores_the_model_mode(training: bool) -> None:
    model = tiny_net().train(training)
    grad_cam(model, model.target_layer, images(2))
    assert all(m.training is training for m in model.modules())


def test_grad_cam_runs_in_eval_mode() -> None:
    # In train mode BatchNorm would use batch statistics and update its running stats.
    model = tiny_net().train()
    x, targets = images(3), torch.tensor([0, 1, 2])
    in_train = grad_cam(model, model.target_layer, x, targets)
    in_eval = grad_cam(model.eval(), model.target_layer, x, targets)
    assert torch.equal(in_train, in_eval)


def test_grad_cam_leaves_parameters_buffers_and_grads_untouched() -> None:
    model = tiny_net().train()
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0:
            p.grad = torch.full_like(p, float(i))
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grad_cam(model, model.target_layer, images(3))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for name, p in model.named_parameters():
        if grads[name] is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, grads[name])


@pytest.mark.parametrize("requires_grad", [False, True])
def test_grad_cam_leaves_the_input_untouched(requires_grad: bool) -> None:
    model = tiny_net()
    x = images(3).requires_grad_(requires_grad)
    before = x.detach().clone()
    grad_cam(model, model.target_layer, x)
    assert torch.equal(x.detach(), before)
    assert x.requires_grad is requires_grad
    assert x.grad is None


def test_grad_cam_result_is_detached() -> None:
    model = tiny_net()
    assert not grad_cam(model, model.target_layer, images(2).requires_grad_(True)).requires_grad


def test_grad_cam_works_under_no_grad() -> None:
    model, x = tiny_net(), images(2)
    expected = grad_cam(model, model.target_layer, x)
    with torch.no_grad():
        assert torch.equal(grad_cam(model, model.target_layer, x), expected)


def test_grad_cam_all_zero_map_stays_zero_without_nan() -> None:
    model = tiny_net()
    conv = model.target_layer[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-1.0)  # ReLU output is all zeros, so every map is zero
    maps = grad_cam(model, model.target_layer, images(3))
    assert torch.equal(maps, torch.zeros(3, 28, 28))


@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 1, 28, 28), (2, 4, 28, 28), (1, 2, 3, 28, 28)])
def test_grad_cam_rejects_wrong_image_shape(shape: tuple[int, ...]) -> None:
    model = tiny_net()
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, H, W\), got " + re.escape(str(shape))):
        grad_cam(model, model.target_layer, torch.rand(shape))


def test_grad_cam_rejects_a_layer_the_forward_does_not_use() -> None:
    model = tiny_net()
    unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="run once per forward pass, it ran 0 times"):
        grad_cam(model, unused, images(2))
    assert not unused._forward_hooks


def test_grad_cam_rejects_targets_of_wrong_length() -> None:
    model = tiny_net()
    with pytest.raises(ValueError, match=r"targets of shape \(3,\).*\(2,\)"):
        grad_cam(model, model.target_layer, images(3), torch.tensor([0, 1]))


@pytest.mark.parametrize("targets", [torch.tensor([0, 5]), torch.tensor([-1, 0])])
def test_grad_cam_rejects_out_of_range_targets(targets: torch.Tensor) -> None:
    model = tiny_net()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 5\)"):
        grad_cam(model, model.target_layer, images(2), targets)


def test_grad_cam_rejects_float_targets() -> None:
    model = tiny_net()
    with pytest.raises(ValueError, match="integer targets"):
        grad_cam(model, model.target_layer, images(2), torch.tensor([0.0, 1.0]))
