"""Tests of shortcutlab.attacks.targeted_pgd and untargeted_pgd, with torchattacks.PGD as the oracle.

Models are tiny and seeded so the whole file runs in a few seconds on 2 CPU cores.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.attacks import AttackResult, robust_accuracy, targeted_pgd, untargeted_pgd
from shortcutlab.interpret import class_logits
from shortcutlab.models import SimpleCNN
from shortcutlab.tolerance import tolerance_for

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread avoids thread-sync overhead (2x faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_net(seed: int = 0) -> nn.Module:
    """Seeded 10-class conv net for (N, 3, 28, 28), with BatchNorm and Dropout so train/eval mode matters."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Flatten(),
            nn.Linear(4 * 13 * 13, 10),
        )
        # Non-default running statistics, so eval-mode BatchNorm is not the identity.
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(16, 3, 28, 28) * 0.5)
    return model.eval()


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, 28, 28) in [0, 1] with exact 0 and 1 pixels (to exercise clipping), targets (n,) int64."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 28, 28, generator=generator)
    images[:, :, :10] = (images[:, :, :10] > 0.5).float()
    targets = torch.randint(0, 10, (n,), generator=generator)
    return images, targets


def _torchattacks_pgd(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, eps: float, alpha: float, steps: int,
    random_start: bool = False,
) -> torch.Tensor:
    """The oracle: torchattacks' targeted PGD, using targets as the target labels."""
    attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    attack.set_mode_targeted_by_label(quiet=True)
    return attack(images, targets)


def _pgd_tolerance(expected: torch.Tensor, steps: int) -> dict[str, float]:
    """Images after ``steps`` PGD updates agree up to 3 roundings per update (step, projection, clip)."""
    return tolerance_for(expected, ops=3 * steps + 1)


def _target_confidence(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax probability (N,) of each target class, model in eval mode."""
    model.eval()
    with torch.no_grad():
        return class_logits(model(images)).softmax(dim=1).gather(1, targets[:, None]).squeeze(1)


class _Brightness(nn.Module):
    """Parameter-free 2-class model: logit_1 = 100 * (mean pixel - 0.5), logit_0 = 0.

    Every input-gradient component of CE to class 1 is negative, so each targeted PGD update
    brightens every (unclipped) pixel by exactly alpha: the number of updates to success is computable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit_1 = 100 * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(logit_1), logit_1], dim=1)


def _gray(*values: float) -> torch.Tensor:
    """Uniform gray images (len(values), 3, 28, 28), one per value."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 28, 28).clone()


class _ModeRecorder(nn.Module):
    """Wraps a model and records, at every forward, the training flag of each of its submodules."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append([module.training for module in self.modules()])
        return self.inner(x)


class _TupleOutput(nn.Module):
    """Returns (class_logits, auxiliary_logits) like GRLNet; the auxiliary head must be ignored."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.inner(x)
        return logits, -100 * logits[:, :2]


# --- oracle ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eps", "alpha", "steps", "train_mode"),
    [(0.05, 0.01, 10, False), (0.3, 0.05, 8, False), (8 / 255, 2 / 255, 5, True), (0.05, 0.01, 0, False)],
)
def test_matches_torchattacks_targeted_pgd(eps: float, alpha: float, steps: int, train_mode: bool) -> None:
    model = _tiny_net()
    images, targets = _batch()
    expected = _torchattacks_pgd(model.train(train_mode), images, targets, eps, alpha, steps)
    result = targeted_pgd(model.train(train_mode), images, targets, eps=eps, alpha=alpha, steps=steps)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, steps))


def test_matches_torchattacks_on_simplecnn() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = SimpleCNN(width=4, hidden=16).eval()
    images, targets = _batch(4)
    expected = _torchattacks_pgd(model, images, targets, 0.1, 0.02, 5)
    result = targeted_pgd(model, images, targets, eps=0.1, alpha=0.02, steps=5)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, 5))


def test_random_start_without_generator_draws_the_same_noise_as_torchattacks() -> None:
    model = _tiny_net()
    images, targets = _batch()
    with torch.random.fork_rng():
        torch.manual_seed(123)
        expected = _torchattacks_pgd(model, images, targets, 0.05, 0.01, 5, random_start=True)
        torch.manual_seed(123)
        result = targeted_pgd(model, images, targets, eps=0.05, alpha=0.01, steps=5, random_start=True)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, 5 + 1))


# --- constraints and determinism ---------------------------------------------------------------


@pytest.mark.parametrize("random_start", [False, True])
def test_adversarial_images_stay_in_eps_ball_and_unit_range(random_start: bool) -> None:
    model = _tiny_net()
    images, targets = _batch()
    eps = 0.2
    result = targeted_pgd(
        model, images, targets, eps=eps, alpha=0.07, steps=10, random_start=random_start,
        generator=torch.Generator().manual_seed(0),
    )
    assert (result.images - images).abs().max() <= eps + 1e-6
    assert result.images.min() >= 0 and result.images.max() <= 1
    # The attack actually used the budget, so the bound above is not vacuous.
    assert (result.images - images).abs().max() > eps - 1e-6


def test_random_start_is_deterministic_per_generator_seed_and_differs_across_seeds() -> None:
    model = _tiny_net()
    images, targets = _batch()

    def attack(seed: int, steps: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return targeted_pgd(model, images, targets, eps=0.1, steps=steps, random_start=True, generator=generator).images

    for steps in (0, 3):
        assert torch.equal(attack(0, steps), attack(0, steps))
        assert not torch.equal(attack(0, steps), attack(1, steps))
    start = attack(0, steps=0)
    assert not torch.equal(start, images)
    assert (start - images).abs().max() <= 0.1 + 1e-6


def test_random_start_with_generator_leaves_global_rng_untouched() -> None:
    model = _tiny_net()
    images, targets = _batch()
    state = torch.get_rng_state()
    targeted_pgd(model, images, targets, steps=1, random_start=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("random_start", [False, True])
def test_eps_zero_returns_the_input(random_start: bool) -> None:
    model = _tiny_net()
    images, targets = _batch()
    result = targeted_pgd(model, images, targets, eps=0.0, steps=5, random_start=random_start)
    assert torch.equal(result.images, images)


def test_steps_zero_returns_the_input_and_reports_initial_success() -> None:
    model = _tiny_net()
    images, targets = _batch()
    clean_confidence = _target_confidence(model, images, targets)
    result = targeted_pgd(model, images, targets, steps=0)
    assert torch.equal(result.images, images)
    clean_success = class_logits(model(images)).argmax(dim=1) == targets
    assert torch.equal(result.success, clean_success)
    assert torch.equal(result.steps, torch.where(clean_success, 0, -1))
    torch.testing.assert_close(result.confidence, clean_confidence)


def test_samples_in_a_batch_do_not_interact() -> None:
    # BatchNorm in train mode would couple samples; the attack must use eval mode and a per-sample criterion.
    model = _tiny_net().train()
    images, targets = _batch(4)
    batched = targeted_pgd(model, images, targets, eps=0.1, alpha=0.02, steps=5, stop_confidence=0.3)
    for i in range(len(images)):
        alone = targeted_pgd(
            model, images[i : i + 1], targets[i : i + 1], eps=0.1, alpha=0.02, steps=5, stop_confidence=0.3
        )
        torch.testing.assert_close(batched.images[i : i + 1], alone.images, **_pgd_tolerance(alone.images, 5))
        assert batched.steps[i] == alone.steps[0]


# --- result semantics --------------------------------------------------------------------------


def test_result_has_documented_shapes_and_dtypes() -> None:
    model = _tiny_net()
    images, targets = _batch(5)
    result = targeted_pgd(model, images, targets, steps=2)
    assert isinstance(result, AttackResult)
    assert result.images.shape == (5, 3, 28, 28) and result.images.dtype == torch.float32
    assert result.success.shape == (5,) and result.success.dtype == torch.bool
    assert result.steps.shape == (5,) and result.steps.dtype == torch.int64
    assert result.confidence.shape == (5,) and result.confidence.dtype == torch.float32
    assert not result.images.requires_grad and not result.confidence.requires_grad


def test_success_and_confidence_are_evaluated_on_returned_images() -> None:
    model = _tiny_net()
    images, targets = _batch()
    result = targeted_pgd(model, images, targets, eps=0.1, alpha=0.01, steps=6)
    logits = class_logits(model(result.images))
    assert torch.equal(result.success, logits.argmax(dim=1) == targets)
    torch.testing.assert_close(result.confidence, _target_confidence(model, result.images, targets))
    # Mixed outcomes, so the equality above checks something.
    assert result.success.any() and not result.success.all()


def test_steps_count_updates_to_first_success_zero_if_already_and_minus_one_if_never() -> None:
    # Each update brightens by alpha=0.01; success (class 1) needs mean > 0.5; eps=0.1 caps the brightening.
    images = _gray(0.6, 0.465, 0.3)
    result = targeted_pgd(_Brightness(), images, torch.tensor([1, 1, 1]), eps=0.1, alpha=0.01, steps=20)
    assert result.steps.tolist() == [0, 4, -1]
    assert result.success.tolist() == [True, True, False]


def test_steps_count_works_towards_class_zero_too() -> None:
    # Towards class 0 each update darkens by alpha: 0.535 -> 0.495 after 4 updates.
    images = _gray(0.535, 0.4)
    result = targeted_pgd(_Brightness(), images, torch.tensor([0, 0]), eps=0.1, alpha=0.01, steps=20)
    assert result.steps.tolist() == [4, 0]
    expected = _gray(0.435, 0.3)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, 20))


def test_without_stop_confidence_successful_samples_keep_updating_like_torchattacks() -> None:
    # Start values keep p(class 1) below 1 - 1e-7 throughout: a float32 softmax saturated at 1 has
    # an exactly zero gradient, whose sign 0 would stop the updates (in torchattacks as well).
    images = _gray(0.505, 0.465)
    result = targeted_pgd(_Brightness(), images, torch.tensor([1, 1]), eps=0.1, alpha=0.01, steps=20)
    assert result.steps.tolist() == [0, 4]
    # Both reach the eps-ball boundary although they succeeded after 0 and 4 updates.
    expected = _gray(0.605, 0.565)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, 20))


class _Bump(nn.Module):
    """Parameter-free 2-class model: class 1 wins only while the mean pixel is within 0.05 of 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit_1 = 1 - 400 * (x.mean(dim=(1, 2, 3)) - 0.5) ** 2
        return torch.stack([torch.zeros_like(logit_1), logit_1], dim=1)


def test_steps_records_first_success_even_if_a_later_update_leaves_the_target() -> None:
    # alpha=0.08 overshoots the success band: mean 0.44 (miss) -> 0.52 (hit) -> 0.44 (miss).
    result = targeted_pgd(_Bump(), _gray(0.44), torch.tensor([1]), eps=0.2, alpha=0.08, steps=2)
    assert result.steps.tolist() == [1]
    assert result.success.tolist() == [False]
    expected = _gray(0.44)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, 2))


def test_stop_confidence_freezes_sample_once_target_probability_reached() -> None:
    # p(class 1) = sigmoid(100 * (mean - 0.5)) reaches 0.9 at mean 0.522: 0.465 + 6 * 0.01 = 0.525.
    images = _gray(0.465, 0.7)
    result = targeted_pgd(
        _Brightness(), images, torch.tensor([1, 1]), eps=0.1, alpha=0.01, steps=20, stop_confidence=0.9
    )
    assert result.steps.tolist() == [6, 0]
    assert result.success.tolist() == [True, True]
    expected = _gray(0.525, 0.7)
    torch.testing.assert_close(result.images, expected, **_pgd_tolerance(expected, 20))
    assert (result.confidence >= 0.9).all()
    assert math.isclose(result.confidence[0].item(), 1 / (1 + math.exp(-2.5)), rel_tol=1e-3)


def test_stop_confidence_success_means_reaching_confidence_not_argmax() -> None:
    # 0.49 + eps 0.02 = 0.51: argmax is the target (p = sigmoid(1) = 0.73) but p never reaches 0.9.
    images = _gray(0.49)
    targets = torch.tensor([1])
    result = targeted_pgd(_Brightness(), images, targets, eps=0.02, alpha=0.01, steps=20, stop_confidence=0.9)
    assert class_logits(_Brightness()(result.images)).argmax(dim=1).item() == 1
    assert result.success.tolist() == [False]
    assert result.steps.tolist() == [-1]
    assert math.isclose(result.confidence.item(), 1 / (1 + math.exp(-1.0)), rel_tol=1e-3)


# --- side effects ------------------------------------------------------------------------------


def test_model_is_in_eval_mode_during_attack_and_mixed_modes_restored_afterwards() -> None:
    model = _ModeRecorder(_tiny_net())
    model.train()
    model.inner[3].eval()  # a mixed state that model.train(True) alone would not restore
    before = [module.training for module in model.modules()]
    images, targets = _batch(4)
    targeted_pgd(model, images, targets, steps=3)
    assert model.seen and all(not any(flags) for flags in model.seen)
    assert [module.training for module in model.modules()] == before


def test_model_mode_restored_when_attack_raises() -> None:
    model = _ModeRecorder(_tiny_net()).train()
    images, _ = _batch(2)
    with pytest.raises(ValueError):
        targeted_pgd(model, images, torch.tensor([0, 10]), steps=3)
    assert all(module.training for module in model.modules())


def test_model_parameter_grads_untouched() -> None:
    model = _tiny_net()
    images, targets = _batch(4)
    parameters = list(model.parameters())
    parameters[0].grad = torch.full_like(parameters[0], 7.0)
    targeted_pgd(model, images, targets, steps=3)
    assert torch.equal(parameters[0].grad, torch.full_like(parameters[0], 7.0))
    assert all(p.grad is None for p in parameters[1:])


def test_inputs_are_not_modified() -> None:
    model = _tiny_net()
    images, targets = _batch()
    images_before, targets_before = images.clone(), targets.clone()
    targeted_pgd(model, images, targets, steps=3, random_start=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, images_before) and torch.equal(targets, targets_before)


def test_attacks_even_when_called_under_no_grad() -> None:
    model = _tiny_net()
    images, targets = _batch(4)
    expected = targeted_pgd(model, images, targets, steps=3).images
    with torch.no_grad():
        result = targeted_pgd(model, images, targets, steps=3).images
    assert torch.equal(result, expected)
    assert not torch.equal(result, images)


def test_tuple_returning_model_attacks_the_first_element() -> None:
    inner = _tiny_net()
    images, targets = _batch()
    plain = targeted_pgd(inner, images, targets, eps=0.1, steps=5)
    tupled = targeted_pgd(_TupleOutput(inner), images, targets, eps=0.1, steps=5)
    for field in ("images", "success", "steps", "confidence"):
        assert torch.equal(getattr(tupled, field), getattr(plain, field)), field


def test_empty_batch_returns_empty_result() -> None:
    result = targeted_pgd(_tiny_net(), torch.zeros(0, 3, 28, 28), torch.zeros(0, dtype=torch.int64), steps=3)
    assert result.images.shape == (0, 3, 28, 28)
    assert result.success.shape == result.steps.shape == result.confidence.shape == (0,)


# --- argument validation -----------------------------------------------------------------------

_IMAGES, _TARGETS = _batch(2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": _IMAGES[0]}, r"expected images of shape \(N, C, H, W\), got \(3, 28, 28\)"),
        ({"images": _IMAGES * 2}, r"expected images in \[0, 1\], got values in \[0, 2\]"),
        ({"images": (_IMAGES * 255).to(torch.uint8)}, r"expected floating-point images .* got dtype torch.uint8"),
        ({"targets": _TARGETS[:1]}, r"expected one target per image, got 1 targets for 2 images"),
        ({"targets": _TARGETS[:, None]}, r"expected targets of shape \(N,\) = \(2,\), got \(2, 1\)"),
        ({"targets": _TARGETS.float()}, r"expected integer \(int64\) targets, got dtype torch.float32"),
        ({"targets": torch.tensor([0, 10])}, r"expected targets in \[0, 10\) .* got values in \[0, 10\]"),
        ({"targets": torch.tensor([-1, 3])}, r"expected targets in \[0, 10\) .* got values in \[-1, 3\]"),
        ({"eps": -0.1}, r"expected eps >= 0 .* got -0.1"),
        ({"eps": float("nan")}, r"expected eps >= 0 .* got nan"),
        ({"alpha": -0.01}, r"expected alpha >= 0 .* got -0.01"),
        ({"steps": -1}, r"expected steps to be an int >= 0, got -1"),
        ({"steps": 2.5}, r"expected steps to be an int >= 0, got 2.5"),
        ({"stop_confidence": 0.0}, r"expected stop_confidence in \(0, 1\] or None, got 0.0"),
        ({"stop_confidence": 1.5}, r"expected stop_confidence in \(0, 1\] or None, got 1.5"),
    ],
)
def test_bad_arguments_raise_value_error_saying_expected_and_got(kwargs: dict, message: str) -> None:
    arguments = {"model": _tiny_net(), "images": _IMAGES, "targets": _TARGETS, "steps": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        targeted_pgd(**arguments)


# --- a wrong variant is caught -----------------------------------------------------------------


def _ascending_pgd(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, eps: float, alpha: float, steps: int
) -> torch.Tensor:
    """A sign bug on purpose: ascends the target CE (untargeted-style) instead of descending it."""
    model.eval()
    x = images.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(class_logits(model(x)), targets), x)
        x = torch.clamp(images + torch.clamp(x.detach() + alpha * grad.sign() - images, -eps, eps), 0, 1)
    return x.detach()


def _target_confidence_rose(
    model: nn.Module, images: torch.Tensor, adversarial: torch.Tensor, targets: torch.Tensor
) -> bool:
    """The sign check: did the attack raise the target probability of every sample?"""
    return bool((_target_confidence(model, adversarial, targets) > _target_confidence(model, images, targets)).all())


def test_target_confidence_rises_and_a_sign_flipped_variant_fails_that_check() -> None:
    model = _tiny_net()
    images, targets = _batch()
    result = targeted_pgd(model, images, targets, eps=0.05, alpha=0.01, steps=5)
    assert _target_confidence_rose(model, images, result.images, targets)

    wrong = _ascending_pgd(model, images, targets, eps=0.05, alpha=0.01, steps=5)
    assert not _target_confidence_rose(model, images, wrong, targets)
    assert (_target_confidence(model, wrong, targets) < _target_confidence(model, images, targets)).all()
    # The oracle comparison would catch it too.
    assert not torch.allclose(wrong, _torchattacks_pgd(model, images, targets, 0.05, 0.01, 5), atol=1e-5)


# --- untargeted PGD (adversarial training's inner maximisation) --------------------------------


@pytest.mark.parametrize(("eps", "alpha", "steps", "train_mode"),
                         [(0.1, 0.025, 10, False), (8 / 255, 2 / 255, 5, True)])
def test_untargeted_pgd_matches_torchattacks_pgd(eps: float, alpha: float, steps: int, train_mode: bool) -> None:
    model = _tiny_net()
    images, labels = _batch()
    expected = torchattacks.PGD(model.train(train_mode), eps=eps, alpha=alpha, steps=steps,
                                random_start=False)(images, labels)
    got = untargeted_pgd(model.train(train_mode), images, labels, eps=eps, alpha=alpha, steps=steps,
                         random_start=False)
    torch.testing.assert_close(got, expected, **_pgd_tolerance(expected, steps))


def test_untargeted_pgd_random_start_without_generator_draws_the_same_noise_as_torchattacks() -> None:
    model = _tiny_net()
    images, labels = _batch(4)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        expected = torchattacks.PGD(model, eps=0.05, alpha=0.01, steps=5, random_start=True)(images, labels)
        torch.manual_seed(3)
        got = untargeted_pgd(model, images, labels, eps=0.05, alpha=0.01, steps=5, random_start=True)
    torch.testing.assert_close(got, expected, **_pgd_tolerance(expected, 5))


def test_untargeted_pgd_raises_the_loss_of_the_true_class_and_stays_in_the_eps_ball() -> None:
    model = _tiny_net()
    images, labels = _batch()
    attacked = untargeted_pgd(model, images, labels, eps=0.1, alpha=0.02, steps=10,
                              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = F.cross_entropy(class_logits(model(images)), labels, reduction="none")
        adversarial = F.cross_entropy(class_logits(model(attacked)), labels, reduction="none")
    assert bool((adversarial > clean).all())
    assert float((attacked - images).abs().max()) <= 0.1 + tolerance_for(images)["atol"]
    assert attacked.min() >= 0 and attacked.max() <= 1 and not attacked.requires_grad


def test_untargeted_pgd_leaves_modes_grads_and_inputs_as_they_were_and_works_under_no_grad() -> None:
    model = _ModeRecorder(_tiny_net()).train()
    images, labels = _batch(4)
    images_before = images.clone()
    parameters = list(model.parameters())
    with torch.no_grad():
        attacked = untargeted_pgd(model, images, labels, steps=3, generator=torch.Generator().manual_seed(0))
    assert model.seen and all(not any(flags) for flags in model.seen)
    assert all(module.training for module in model.modules())
    assert all(p.grad is None for p in parameters)
    assert torch.equal(images, images_before) and not torch.equal(attacked, images)


def test_untargeted_pgd_is_deterministic_per_generator_seed() -> None:
    model = _tiny_net()
    images, labels = _batch(4)

    def run(seed: int) -> torch.Tensor:
        return untargeted_pgd(model, images, labels, steps=2, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


# --- robust accuracy ---------------------------------------------------------------------------


def _correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return class_logits(model.eval()(images)).argmax(dim=1) == labels


def test_robust_accuracy_at_eps_zero_is_the_clean_correctness() -> None:
    model = _tiny_net()
    images, labels = _batch(16)
    assert torch.equal(robust_accuracy(model, images, labels, 0.0), _correct(model, images, labels))


def test_an_image_is_robust_only_if_clean_and_every_restart_leave_it_correct() -> None:
    model = _tiny_net()
    images, labels = _batch(16)
    labels = class_logits(model(images)).argmax(dim=1).detach()  # every clean image correct, so restarts decide
    got = robust_accuracy(model, images, labels, 0.05, steps=3, restarts=2, generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    expected = torch.ones(16, dtype=torch.bool)
    for _ in range(2):  # the same generator stream, each restart on the images still correct
        left = torch.nonzero(expected).flatten()
        attacked = untargeted_pgd(model, images[left], labels[left], eps=0.05, alpha=2.5 * 0.05 / 3, steps=3,
                                  generator=generator)
        expected[left] = _correct(model, attacked, labels[left])
    assert torch.equal(got, expected) and not bool(expected.all())


def test_robust_accuracy_never_attacks_an_image_already_fooled(monkeypatch: pytest.MonkeyPatch) -> None:
    import shortcutlab.attacks as attacks_module

    model = _tiny_net()
    images, labels = _batch(16)
    labels = class_logits(model(images)).argmax(dim=1).detach()
    labels[:4] = (labels[:4] + 1) % 10  # four images wrong before any attack
    attacked_counts = []

    def counting(model, images, *args, **kwargs):
        attacked_counts.append(len(images))
        return untargeted_pgd(model, images, *args, **kwargs)

    monkeypatch.setattr(attacks_module, "untargeted_pgd", counting)
    robust = robust_accuracy(model, images, labels, 0.05, steps=3, restarts=3,
                             generator=torch.Generator().manual_seed(4))
    assert attacked_counts[0] == 12 and not robust[:4].any()
    assert all(later <= earlier for earlier, later in zip(attacked_counts, attacked_counts[1:]))


def test_a_model_whose_answer_cannot_change_keeps_its_clean_accuracy_at_every_eps() -> None:
    class Constant(nn.Module):  # no gradient to follow: what gradient masking looks like to an attack
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 10).index_fill(1, torch.tensor([3]), 1.0) + 0 * x.sum()

    images, labels = _batch(16)
    for eps in (0.0, 0.1, 0.3):
        assert torch.equal(robust_accuracy(Constant(), images, labels, eps, steps=2), labels == 3)


def test_robust_accuracy_rejects_fewer_than_one_restart() -> None:
    images, labels = _batch(2)
    with pytest.raises(ValueError, match="restarts"):
        robust_accuracy(_tiny_net(), images, labels, 0.1, restarts=0)
