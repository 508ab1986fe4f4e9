"""Measures of what a model relies on, shared by the study, the lessons and the explorers.

Every function takes models and tensors (never a study or a split) and works on the device of the
model it is given; results come back as plain floats, lists or CPU tensors.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from shortcutlab.data import BACKGROUND_RANGE, NUM_CLASSES, PALETTE, recolor
from shortcutlab.interpret import grad_cam
from shortcutlab.models import eval_mode, model_device
from shortcutlab.train import predict_logits

STROKE_THRESHOLD = 0.3  # a pixel with MNIST intensity above this (of 1) is on the digit's stroke
ERASE_VALUE = sum(BACKGROUND_RANGE) / 2  # what a deleted pixel becomes: the background's mean gray


def recolor_sequence(image: torch.Tensor) -> torch.Tensor:
    """One colored digit (3, 28, 28) repainted in all ten palette colors: (10, 3, 28, 28)."""
    return recolor(image.expand(NUM_CLASSES, -1, -1, -1), torch.arange(NUM_CLASSES))


def recolor_test(models: dict[str, nn.Module], image: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    """Each model's prediction and confidence on ``image`` (3, 28, 28) in all ten colors.

    Returns (images (10, 3, 28, 28), {name: 10 predicted classes}, {name: 10 confidences in [0, 1]})."""
    images = recolor_sequence(image)
    predictions, confidences = {}, {}
    for name, model in models.items():
        probabilities = predict_logits(model, images).softmax(dim=1)
        confidence, predicted = probabilities.max(dim=1)
        predictions[name], confidences[name] = predicted.tolist(), confidence.tolist()
    return images, predictions, confidences


def palette_pixel_share(images: torch.Tensor, max_distance: float = 0.3) -> torch.Tensor:
    """(N, 10) share in [0, 1] of each image's pixels whose nearest palette color (within ``max_distance``) is k."""
    pixels = images.permute(0, 2, 3, 1).reshape(len(images), -1, 3)
    distance = torch.cdist(pixels, PALETTE.to(images.device).expand(len(images), -1, -1))
    nearest = torch.where(distance.min(dim=2).values < max_distance, distance.argmin(dim=2), -1)
    return torch.stack([(nearest == k).float().mean(dim=1) for k in range(NUM_CLASSES)], dim=1)


def stroke_masks(digits: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) float 0/1 masks of the strokes of gray MNIST digits (N, 28, 28) uint8."""
    return (digits.float() / 255 > STROKE_THRESHOLD).float()


def cam_mass_on_strokes(cams: torch.Tensor, digits: torch.Tensor) -> float:
    """Mean share in [0, 1] of each Grad-CAM map (N, 28, 28) that falls on the strokes of its gray digit
    (N, 28, 28) uint8. It cannot tell color from shape: the color lives on the strokes, so a map of "where the
    color is" also lies on them."""
    strokes = stroke_masks(digits).to(cams.device)
    return float(((cams * strokes).sum(dim=(1, 2)) / cams.sum(dim=(1, 2)).clamp_min(1e-8)).mean())


def deletion_curve(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """Deletion curve (Petsiuk et al., RISE, 2018): (steps + 1,) mean probability of each image's originally
    predicted class after erasing (to the background's mean gray) its most salient fraction k/steps of pixels.

    images (N, 3, H, W); saliency (N, H, W), higher = more important. A faithful map makes the curve fall fast.
    """
    device = model_device(model)
    images, saliency = images.to(device), saliency.to(device)
    n, pixels = len(images), saliency[0].numel()
    classes = predict_logits(model, images).argmax(dim=1)
    rank = torch.empty(n, pixels, dtype=torch.long, device=device)
    rank.scatter_(1, saliency.reshape(n, -1).argsort(dim=1, descending=True),
                  torch.arange(pixels, device=device).expand(n, -1))
    rank = rank.view(n, 1, *saliency.shape[1:])
    curve = []
    for k in range(steps + 1):
        erased = torch.where(rank < round(k * pixels / steps), torch.full_like(images, ERASE_VALUE), images)
        probabilities = predict_logits(model, erased).softmax(dim=1)
        curve.append(probabilities.gather(1, classes[:, None]).mean())
    return torch.stack(curve).cpu()


def curve_area(curve: torch.Tensor) -> float:
    """Area under a curve sampled at evenly spaced points of [0, 1] (trapezoid rule)."""
    return float(torch.trapezoid(curve.double(), dx=1 / (len(curve) - 1)))


def cam_color_sensitivity(model: nn.Module, images: torch.Tensor, cam: Callable = grad_cam) -> dict[str, float]:
    """How much the prediction and the Grad-CAM map change when only the stroke color changes.

    Each image (N, 3, H, W) is repainted in all ten palette colors; the map is taken for the class predicted on
    the original. Returns ``prediction_kept`` (share of recolorings keeping the prediction, in [0, 1]) and
    ``map_correlation`` (mean Pearson correlation in [-1, 1] between the original's map and each recoloring's).
    It is the sensitivity of an explanation (Yeh et al., 2019) under a perturbation that keeps the shape. ``cam``:
    the Grad-CAM to measure (a lesson passes its own).
    """
    device = model_device(model)
    images = images.to(device)
    n = len(images)
    classes = predict_logits(model, images).argmax(dim=1)
    repainted = recolor(images.repeat_interleave(NUM_CLASSES, dim=0), torch.arange(NUM_CLASSES).repeat(n))
    targets = classes.repeat_interleave(NUM_CLASSES)
    kept = (predict_logits(model, repainted).argmax(dim=1) == targets).double().mean()
    original_maps = cam(model, model.target_layer, images, classes).repeat_interleave(NUM_CLASSES, dim=0)
    maps = cam(model, model.target_layer, repainted, targets)
    a = original_maps.flatten(1).double()
    b = maps.flatten(1).double()
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    norms = a.norm(dim=1) * b.norm(dim=1)
    # An all-zero map carries no location: it correlates with nothing (0), rather than being undefined.
    correlation = torch.where(norms > 0, (a * b).sum(dim=1) / norms.clamp_min(1e-300), torch.zeros_like(norms))
    return {"prediction_kept": float(kept), "map_correlation": float(correlation.mean())}


@torch.no_grad()
def penultimate_activations(model: nn.Module, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """(N, hidden) activations of ``model.features`` for images (N, 3, 28, 28), eval mode, on the model's device."""
    device = model_device(model)
    with eval_mode(model):
        return torch.cat([model.features(images[i:i + batch_size].to(device))
                          for i in range(0, len(images), batch_size)])
