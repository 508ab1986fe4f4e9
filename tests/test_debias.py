"""Tests of the debiasing objectives (shortcutlab.debias) and of gradient reversal / GRLNet (models)."""
from __future__ import annotations

import copy
import importlib
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.debias import (
    consistency_loss,
    consistency_objective,
    grl_loss,
    grl_objective,
    symmetric_kl,
)
from shortcutlab.models import GradReverse, GRLNet, SimpleCNN, grad_reverse
from shortcutlab.tolerance import float_tolerance, tolerance_for

# A fixed stand-in palette: the tests check the debias wiring, not data.recolor itself
_PALETTE = torch.tensor(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0],
     [0.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.5, 0.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]
)


def _fake_recolor(images: torch.Tensor, color_ids: torch.Tensor) -> torch.Tensor:
    """Stroke intensity (channel max) painted with palette colors: (N, 3, H, W) -> (N, 3, H, W)."""
    intensity = images.amax(dim=1, keepdim=True)
    return intensity * _PALETTE[color_ids][:, :, None, None]


@pytest.fixture
def recolor_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Replace shortcutlab.data.recolor by the stand-in (creating a fake module if data.py is absent)."""
    try:
        data = importlib.import_module("shortcutlab.data")
    except ImportError:
        import shortcutlab

        data = types.ModuleType("shortcutlab.data")
        monkeypatch.setitem(sys.modules, "shortcutlab.data", data)
        monkeypatch.setattr(shortcutlab, "data", data, raising=False)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording(images: torch.Tensor, color_ids: torch.Tensor) -> torch.Tensor:
        calls.append((images, color_ids))
        return _fake_recolor(images, color_ids)

    monkeypatch.setattr(data, "recolor", recording, raising=False)
    return calls


def _colored_batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (n, 3, 28, 28) in [0, 1], labels (n,), new color ids (n,)).

    Images follow the data model recolor assumes: stroke d * palette color + gray background * (1 - d).
    """
    g = torch.Generator().manual_seed(seed)
    strokes = (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float()
    colors = _PALETTE[torch.randint(0, 8, (n,), generator=g)]  # hued colors only: 8, 9 are gray, white
    images = strokes * colors[:, :, None, None] + 0.2 * (1 - strokes)
    labels = torch.randint(0, 10, (n,), generator=g)
    new_ids = torch.randint(0, 10, (n,), generator=g)
    return images, labels, new_ids


def _small_cnn(seed: int = 0) -> SimpleCNN:
    torch.manual_seed(seed)
    return SimpleCNN(width=4, hidden=16)


def _small_grl(seed: int = 0, strength: float = 1.0) -> GRLNet:
    torch.manual_seed(seed)
    return GRLNet(strength=strength, width=4, hidden=16)


# Roundings in one logit of the width-4, hidden-16 nets (shortcutlab.tolerance): convs 27 + 36 + 72, Linear 784 and 16;
# a loss adds a 10-class log-softmax and a 6-sample mean. consistency_loss runs originals and recolored images as one
# batch of 12, which may take other conv kernels than two batches of 6: equal up to rounding, not bitwise.
LOGIT_OPS = 27 + 36 + 72 + 16 * 7 * 7 + 16
LOSS_OPS = LOGIT_OPS + 10 + 6


# --- symmetric_kl -------------------------------------------------------------------------------


def test_symmetric_kl_is_zero_for_equal_logits() -> None:
    logits = torch.randn(5, 7)
    assert symmetric_kl(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_symmetric_kl_is_zero_for_logits_differing_by_a_per_row_constant() -> None:
    logits = torch.randn(5, 7)
    shifted = logits + torch.randn(5, 1)
    _, atol = float_tolerance(torch.float32, float(shifted.abs().max()), ops=2 * 7)  # log-softmax of 7 logits
    assert symmetric_kl(logits, shifted).item() == pytest.approx(0.0, abs=atol)


def test_symmetric_kl_is_symmetric_in_its_arguments() -> None:
    p, q = torch.randn(8, 10), torch.randn(8, 10)
    assert torch.allclose(symmetric_kl(p, q), symmetric_kl(q, p))


def test_symmetric_kl_is_non_negative() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        p, q = torch.randn(4, 6, generator=g) * 3, torch.randn(4, 6, generator=g) * 3
        assert symmetric_kl(p, q).item() >= 0.0


def test_symmetric_kl_equals_half_sum_of_kl_div_both_ways_batch_mean() -> None:
    p, q = torch.randn(8, 10, dtype=torch.float64), torch.randn(8, 10, dtype=torch.float64)
    log_p, log_q = F.log_softmax(p, dim=1), F.log_softmax(q, dim=1)
    # kl_div(input=log q, target=log p, log_target) = KL(p || q); batchmean = per-sample sum, batch mean
    kl_pq = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    kl_qp = F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
    assert torch.allclose(symmetric_kl(p, q), 0.5 * (kl_pq + kl_qp))


def test_symmetric_kl_matches_hand_computed_value() -> None:
    p = torch.tensor([[0.0, 0.0]])  # softmax (1/2, 1/2)
    q = torch.tensor([[0.0, torch.log(torch.tensor(3.0))]])  # softmax (1/4, 3/4)
    kl_pq = 0.5 * torch.log(torch.tensor(2.0)) + 0.5 * torch.log(torch.tensor(2.0 / 3.0))
    kl_qp = 0.25 * torch.log(torch.tensor(0.5)) + 0.75 * torch.log(torch.tensor(1.5))
    rtol, atol = float_tolerance(torch.float32, ops=2 * 2 * 2)  # two 2-term KL sums of log-probabilities ~1
    assert symmetric_kl(p, q).item() == pytest.approx(0.5 * (kl_pq + kl_qp).item(), rel=rtol, abs=atol)


def test_symmetric_kl_is_finite_with_finite_gradient_for_huge_logits() -> None:
    p = (torch.randn(4, 10) * 1e4).requires_grad_()
    q = (torch.randn(4, 10) * 1e4).requires_grad_()
    value = symmetric_kl(p, q)
    value.backward()
    assert torch.isfinite(value) and value.item() > 0
    assert torch.isfinite(p.grad).all() and torch.isfinite(q.grad).all()


def test_symmetric_kl_rejects_mismatched_or_non_2d_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        symmetric_kl(torch.randn(4, 10), torch.randn(4, 9))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        symmetric_kl(torch.randn(10), torch.randn(10))


# --- gradient reversal -------------------------------------------------------------------------


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, 2.5])
def test_grad_reverse_is_identity_forward_and_scales_gradient_by_minus_strength(strength: float) -> None:
    x = torch.randn(3, 5, requires_grad=True)
    upstream = torch.randn(3, 5)
    y = grad_reverse(x, strength)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, -strength * upstream)


def test_grad_reverse_default_strength_negates_gradient() -> None:
    x = torch.randn(4, requires_grad=True)
    grad_reverse(x).sum().backward()
    assert torch.equal(x.grad, -torch.ones(4))


def test_grad_reverse_gives_no_gradient_for_strength() -> None:
    ctx = types.SimpleNamespace(strength=2.5)
    grad_x, grad_strength = GradReverse.backward(ctx, torch.ones(2))
    assert grad_strength is None
    assert torch.equal(grad_x, torch.full((2,), -2.5))


# --- GRLNet -------------------------------------------------------------------------------------


def test_grlnet_outputs_digit_and_color_logits_of_the_right_shapes() -> None:
    torch.manual_seed(0)
    model = GRLNet(num_classes=10, num_colors=7, width=4, hidden=16)
    digits, colors = model(torch.rand(3, 3, 28, 28))
    assert digits.shape == (3, 10) and colors.shape == (3, 7)
    assert model.features(torch.rand(3, 3, 28, 28)).shape == (3, 16)


def test_grlnet_exposes_conv_target_layer_and_penultimate_like_simplecnn() -> None:
    model = _small_grl()
    assert isinstance(model.target_layer, nn.Sequential)
    assert isinstance(model.target_layer[0], nn.Conv2d)
    assert model.target_layer is model.backbone.block3
    acts: list[torch.Tensor] = []
    model.target_layer.register_forward_hook(lambda m, i, o: acts.append(o))
    model.penultimate.register_forward_hook(lambda m, i, o: acts.append(o))
    model(torch.rand(2, 3, 28, 28))
    assert acts[0].shape == (2, 16, 7, 7)  # width * 4 channels at 7x7
    assert acts[1].shape == (2, 16)  # hidden


def test_grlnet_rejects_hidden_too_small_for_color_head() -> None:
    with pytest.raises(ValueError, match="hidden"):
        GRLNet(hidden=1)


def _backbone_grads_of_color_loss(model: GRLNet, images: torch.Tensor, color_ids: torch.Tensor) -> dict:
    model.zero_grad()
    F.cross_entropy(model(images)[1], color_ids).backward()
    # The digit head is off the color path, so its .grad stays None
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_grlnet_color_gradient_on_backbone_is_reversed_but_head_gradient_is_not() -> None:
    images, _, color_ids = _colored_batch()
    reversed_model = _small_grl(strength=1.0)
    plain_model = copy.deepcopy(reversed_model)
    plain_model.strength = -1.0  # -(-1) = +1: an ordinary, non-reversed gradient
    g_rev = _backbone_grads_of_color_loss(reversed_model, images, color_ids)
    g_plain = _backbone_grads_of_color_loss(plain_model, images, color_ids)
    backbone = [n for n in g_rev if n.startswith("backbone.") and not n.startswith("backbone.classifier")]
    head = [n for n in g_rev if n.startswith("color_head.")]
    assert backbone and head
    for name in backbone:
        assert g_rev[name].abs().sum() > 0, name
        assert torch.allclose(g_rev[name], -g_plain[name], atol=1e-7), name
    for name in head:
        assert torch.allclose(g_rev[name], g_plain[name]), name


def test_grlnet_color_gradient_equals_minus_strength_times_undetached_gradient() -> None:
    images, _, color_ids = _colored_batch()
    model = _small_grl(strength=2.5)
    g_rev = _backbone_grads_of_color_loss(model, images, color_ids)
    # Reference: the same network with a plain (non-reversed) path from features to color head
    model.zero_grad()
    F.cross_entropy(model.color_head(model.features(images)), color_ids).backward()
    name = "backbone.block1.0.weight"
    expected = -2.5 * model.get_parameter(name).grad  # scaled at the end, not at the features: rounds differently
    # the conv weight gradient sums 6 images x 28 x 28 positions, after the backward pass through the net
    torch.testing.assert_close(g_rev[name], expected, **tolerance_for(expected, ops=6 * 28 * 28 + LOGIT_OPS))


def test_grlnet_strength_can_be_changed_during_training_and_zero_blocks_color_gradient() -> None:
    images, _, color_ids = _colored_batch()
    model = _small_grl(strength=1.0)
    model.strength = 0.0
    grads = _backbone_grads_of_color_loss(model, images, color_ids)
    assert all(grads[n].abs().sum() == 0 for n in grads if n.startswith("backbone.block"))
    assert grads["color_head.0.weight"].abs().sum() > 0


def test_grlnet_digit_gradient_does_not_depend_on_strength() -> None:
    images, labels, _ = _colored_batch()
    a = _small_grl(strength=1.0)
    b = copy.deepcopy(a)
    b.strength = 3.0
    for m in (a, b):
        F.cross_entropy(m(images)[0], labels).backward()
    assert torch.equal(a.backbone.block1[0].weight.grad, b.backbone.block1[0].weight.grad)


# --- consistency loss ---------------------------------------------------------------------------


def test_consistency_loss_equals_ce_plus_weight_times_symmetric_kl_with_recolor(recolor_calls) -> None:
    images, labels, new_ids = _colored_batch()
    model = _small_cnn()
    loss = consistency_loss(model, images, labels, new_ids, weight=2.0)
    with torch.no_grad():
        logits = model(images)
        expected = F.cross_entropy(logits, labels) + 2.0 * symmetric_kl(
            logits, model(_fake_recolor(images, new_ids))
        )
    torch.testing.assert_close(loss, expected, **tolerance_for(expected, ops=LOSS_OPS))
    assert len(recolor_calls) == 1
    assert torch.equal(recolor_calls[0][0], images) and torch.equal(recolor_calls[0][1], new_ids)


def test_consistency_loss_with_weight_zero_reduces_to_cross_entropy(recolor_calls) -> None:
    images, labels, new_ids = _colored_batch()
    model = _small_cnn()
    loss = consistency_loss(model, images, labels, new_ids, weight=0.0)
    expected = F.cross_entropy(model(images), labels)
    torch.testing.assert_close(loss, expected, **tolerance_for(expected, ops=LOSS_OPS))


def test_consistency_penalty_is_positive_when_recoloring_changes_predictions(recolor_calls) -> None:
    images, labels, new_ids = _colored_batch()
    model = _small_cnn()
    ce = consistency_loss(model, images, labels, new_ids, weight=0.0)
    assert consistency_loss(model, images, labels, new_ids, weight=2.0) > ce


def test_consistency_objective_returns_loss_and_logits_of_original_images(recolor_calls) -> None:
    images, labels, new_ids = _colored_batch()
    model = _small_cnn()
    loss, logits = consistency_objective(model, images, labels, new_ids, weight=1.5)
    assert logits.shape == (6, 10)
    expected = model(images)
    torch.testing.assert_close(logits, expected, **tolerance_for(expected, ops=LOGIT_OPS))
    assert torch.allclose(loss, consistency_loss(model, images, labels, new_ids, weight=1.5))


def test_consistency_single_concatenated_forward_matches_two_forwards_and_backpropagates(
    recolor_calls,
) -> None:
    images, labels, new_ids = _colored_batch()
    model = _small_cnn()
    loss = consistency_loss(model, images, labels, new_ids)
    loss.backward()
    logits, logits_new = model(images), model(_fake_recolor(images, new_ids))
    expected = F.cross_entropy(logits, labels) + 2.0 * symmetric_kl(logits, logits_new)
    torch.testing.assert_close(loss, expected, **tolerance_for(expected, ops=LOSS_OPS))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_consistency_loss_accepts_models_returning_a_tuple(recolor_calls) -> None:
    images, labels, new_ids = _colored_batch()
    model = _small_grl()
    loss, logits = consistency_objective(model, images, labels, new_ids)
    assert logits.shape == (6, 10)
    expected = model(images)[0]
    torch.testing.assert_close(logits, expected, **tolerance_for(expected, ops=LOGIT_OPS))
    assert torch.isfinite(loss)


def test_consistency_loss_uses_the_real_data_recolor_when_it_exists() -> None:
    data = pytest.importorskip("shortcutlab.data")
    if not hasattr(data, "recolor"):
        pytest.skip("shortcutlab.data.recolor is not implemented yet")
    images, labels, new_ids = _colored_batch()
    model = _small_cnn()
    loss = consistency_loss(model, images, labels, new_ids, weight=2.0)
    with torch.no_grad():
        logits = model(images)
        expected = F.cross_entropy(logits, labels) + 2.0 * symmetric_kl(
            logits, model(data.recolor(images, new_ids))
        )
    torch.testing.assert_close(loss, expected, **tolerance_for(expected, ops=LOSS_OPS))


def _ids(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize(
    ("images", "labels", "new_ids", "match"),
    [
        (torch.rand(4, 3, 28, 28), _ids(3), _ids(4), "labels"),
        (torch.rand(4, 3, 28, 28), _ids(4), _ids(5), "new_color_ids"),
        (torch.rand(4, 1, 28, 28), _ids(4), _ids(4), "images"),
        (torch.rand(4, 3, 28, 28), torch.zeros(4), _ids(4), "integer"),
        (torch.rand(4, 3, 28, 28), torch.full((4,), 10), _ids(4), r"\[0, 10\)"),
        (torch.rand(0, 3, 28, 28), _ids(0), _ids(0), "empty"),
    ],
)
def test_consistency_loss_rejects_bad_shapes_and_ids_with_value_error(
    recolor_calls, images, labels, new_ids, match
) -> None:
    with pytest.raises(ValueError, match=match):
        consistency_loss(_small_cnn(), images, labels, new_ids)


def test_consistency_loss_rejects_negative_weight(recolor_calls) -> None:
    images, labels, new_ids = _colored_batch()
    with pytest.raises(ValueError, match="weight"):
        consistency_loss(_small_cnn(), images, labels, new_ids, weight=-1.0)


# --- GRL loss -----------------------------------------------------------------------------------


def test_grl_loss_equals_digit_ce_plus_color_weight_times_color_ce() -> None:
    images, labels, color_ids = _colored_batch()
    model = _small_grl()
    loss = grl_loss(model, images, labels, color_ids, color_weight=0.7)
    digits, colors = model(images)
    expected = F.cross_entropy(digits, labels) + 0.7 * F.cross_entropy(colors, color_ids)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_grl_objective_returns_loss_and_digit_logits() -> None:
    images, labels, color_ids = _colored_batch()
    model = _small_grl()
    loss, digits = grl_objective(model, images, labels, color_ids)
    assert digits.shape == (6, 10)
    assert torch.allclose(digits, model(images)[0], atol=1e-6)
    assert torch.allclose(loss, grl_loss(model, images, labels, color_ids))


def test_grl_loss_rejects_mismatched_lengths_and_out_of_range_ids() -> None:
    model = _small_grl()
    images = torch.rand(4, 3, 28, 28)
    with pytest.raises(ValueError, match="labels"):
        grl_loss(model, images, torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="color_ids"):
        grl_loss(model, images, torch.zeros(4, dtype=torch.long), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="color_ids"):
        grl_loss(model, images, torch.zeros(4, dtype=torch.long), torch.full((4,), 10))


def test_grl_loss_rejects_models_without_a_color_head() -> None:
    images, labels, color_ids = _colored_batch()
    with pytest.raises(ValueError, match="GRLNet"):
        grl_loss(_small_cnn(), images, labels, color_ids)
