"""Do the shared measures (recolor test, palette share, CAM measures) measure what they claim?"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from shortcutlab.data import NUM_CLASSES, PALETTE, ColoredMNIST
from shortcutlab.metrics import (ERASE_VALUE, cam_color_sensitivity, cam_mass_on_strokes, curve_area,
                                 deletion_curve, palette_pixel_share, penultimate_activations, recolor_sequence,
                                 recolor_test, stroke_masks)
from shortcutlab.interpret import grad_cam
from shortcutlab.models import SimpleCNN
from shortcutlab.train import predict_logits


class PatchReader(nn.Module):
    """Class 0's logit is 20 x the mean red in the top-left 6x6 patch; the other logits are 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), NUM_CLASSES)
        return logits.index_put((torch.arange(len(x)), torch.zeros(len(x), dtype=torch.long)),
                                20 * x[:, 0, :6, :6].mean(dim=(1, 2)))


def test_palette_pixel_share_counts_each_palette_colors_pixels():
    images = PALETTE[[3, 7]].view(2, 3, 1, 1).expand(-1, -1, 28, 28).clone()
    images[1, :, :14] = 0.2  # half of the second image is background gray, which is no palette color
    share = palette_pixel_share(images)
    assert share.shape == (2, NUM_CLASSES)
    assert share[0, 3] == 1 and share[0].sum() == 1
    assert share[1, 7] == 0.5 and share[1].sum() == 0.5


def test_recolor_sequence_repaints_one_digit_in_every_palette_color():
    image = ColoredMNIST("val", root="embedded").tensors()[0][0]
    sequence = recolor_sequence(image)
    assert sequence.shape == (NUM_CLASSES, 3, 28, 28)
    # image k is drawn in palette color k: its strokes (over 5% of a digit's pixels) take that color
    assert (palette_pixel_share(sequence).diagonal() > 0.05).all()


def test_recolor_test_reports_ten_predictions_and_confidences_per_model():
    image = ColoredMNIST("val", root="embedded").tensors()[0][0]
    images, predictions, confidences = recolor_test({"a": SimpleCNN().eval()}, image)
    assert images.shape == (NUM_CLASSES, 3, 28, 28)
    assert len(predictions["a"]) == len(confidences["a"]) == NUM_CLASSES
    assert all(0 <= c <= 1 for c in confidences["a"])


def test_stroke_masks_threshold_the_gray_digit():
    digits = torch.tensor([[[0, 76, 77, 255]]], dtype=torch.uint8)
    assert stroke_masks(digits).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]


def test_cam_mass_on_strokes_is_a_share():
    split = ColoredMNIST("hard_test", root="embedded", limit=8)
    model = SimpleCNN()
    share = cam_mass_on_strokes(grad_cam(model, model.target_layer, split.tensors()[0]), split.digits())
    assert 0.0 <= share <= 1.0


def test_the_deletion_curve_starts_at_the_models_confidence_and_ends_on_an_erased_image():
    torch.manual_seed(0)
    images = torch.rand(5, 3, 28, 28)
    model = SimpleCNN().eval()
    curve = deletion_curve(model, images, torch.rand(5, 28, 28), steps=4)
    assert curve.shape == (5,)
    probabilities = predict_logits(model, images).softmax(1)
    classes = probabilities.argmax(1)
    erased = predict_logits(model, torch.full_like(images, ERASE_VALUE)).softmax(1)
    scale = torch.finfo(torch.float32).eps * 100  # a few ulps of probabilities in [0, 1] after a forward pass
    assert abs(curve[0] - probabilities.max(1).values.mean()) <= scale
    assert abs(curve[-1] - erased.gather(1, classes[:, None]).mean()) <= scale


def test_deleting_by_a_faithful_map_drops_the_confidence_faster_than_a_random_order():
    images = torch.full((4, 3, 28, 28), 0.2)
    images[:, 0, :6, :6] = 1.0  # the red patch that class 0 reads
    faithful = torch.zeros(4, 28, 28)
    faithful[:, :6, :6] = 1.0
    random_map = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(0))
    model = PatchReader()
    by_map, by_chance = deletion_curve(model, images, faithful, 10), deletion_curve(model, images, random_map, 10)
    assert curve_area(by_map) < curve_area(by_chance) - 0.1


def test_curve_area_is_the_trapezoid_rule_over_the_unit_interval():
    assert curve_area(torch.ones(11)) == pytest.approx(1.0, abs=1e-12)
    assert curve_area(torch.linspace(1, 0, 21)) == pytest.approx(0.5, abs=1e-7)


def test_color_sensitivity_separates_the_cheater_from_the_consistency_model(study_models):
    images = ColoredMNIST("hard_test", root="embedded", limit=30).tensors()[0]
    cheater = cam_color_sensitivity(study_models["cheater"], images)
    consistent = cam_color_sensitivity(study_models["consistency"], images)
    for result in (cheater, consistent):
        assert 0 <= result["prediction_kept"] <= 1 and -1 <= result["map_correlation"] <= 1
    assert cheater["prediction_kept"] < 0.5 < 0.9 < consistent["prediction_kept"]
    assert cheater["map_correlation"] < consistent["map_correlation"]


def test_penultimate_activations_are_the_models_features_in_batches():
    model = SimpleCNN().eval()
    images = torch.rand(7, 3, 28, 28)
    acts = penultimate_activations(model, images, batch_size=3)
    assert acts.shape == (7, 128)
    with torch.no_grad():
        expected = model.features(images)
    tol = torch.finfo(torch.float32).eps * 64 * max(1.0, float(expected.abs().max()))
    assert (acts - expected).abs().max() <= tol


def test_adversarial_training_resists_the_attacks_that_fool_the_consistency_model(study_artifacts):
    """The science of lesson 5 and task 5 on the embedded digits: the adversarially trained control is rarely pushed
    from 7 to 3 and keeps most of its accuracy at eps 0.05, where the debiased model falls."""
    from shortcutlab.attacks import robust_accuracy, targeted_pgd
    from shortcutlab.study import pretrained

    models = {name: pretrained(name, data="embedded", out=study_artifacts, quiet=True, device="cpu")
              for name in ("consistency", "adversarial")}
    images, labels, _ = ColoredMNIST("hard_test", root="embedded").tensors()
    sevens = images[labels == 7][:64]
    success = {name: float(targeted_pgd(model, sevens, torch.full((len(sevens),), 3), eps=0.05, alpha=0.01, steps=40,
                                        stop_confidence=0.9).success.float().mean()) for name, model in models.items()}
    robust = {name: float(robust_accuracy(model, images[:200], labels[:200], 0.05, steps=10,
                                          generator=torch.Generator().manual_seed(0)).float().mean())
              for name, model in models.items()}
    assert success["adversarial"] < success["consistency"] / 2
    assert robust["adversarial"] > robust["consistency"] + 0.3
