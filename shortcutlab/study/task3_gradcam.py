"""Task 3: Grad-CAM maps of the three models, and measures of what the maps show."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from shortcutlab import plots
from shortcutlab.interpret import grad_cam
from shortcutlab.metrics import (cam_color_sensitivity, cam_mass_on_strokes, curve_area, deletion_curve,
                                 recolor_sequence)
from shortcutlab.study.cache import MODEL_TITLES, STUDY_MODELS
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import decimal, pct
from shortcutlab.train import predict_logits

TITLE = "Grad-CAM"


@dataclass(frozen=True)
class GradCamSettings:
    """How many hard-test samples each measure uses, and the resolution of the deletion curve."""

    stroke_mass_count: int = 500
    deletion_count: int = 500
    deletion_steps: int = 20
    color_sensitivity_count: int = 200


SETTINGS = GradCamSettings()


def cams_with_captions(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None):
    """(images, Grad-CAM maps, "pred p / true t" captions) for a panel of plots.cam_panels, on the CPU."""
    cams = grad_cam(model, model.target_layer, images)
    predictions = predict_logits(model, images).argmax(dim=1).tolist()
    truths = predictions if labels is None else labels.tolist()
    captions = [f"pred {p}" + ("" if labels is None else f" / true {t}") for p, t in zip(predictions, truths)]
    return images.cpu(), cams.cpu(), captions


def measure(model: nn.Module, images: torch.Tensor, digits: torch.Tensor, settings: GradCamSettings,
            seed: int) -> dict:
    """CAM mass on strokes, deletion AUC (Grad-CAM order vs a random order) and color sensitivity."""
    # One Grad-CAM pass serves both map measures (predicted classes, so the maps are the same per image).
    mapped = max(settings.stroke_mass_count, settings.deletion_count)
    all_cams = grad_cam(model, model.target_layer, images[:mapped])
    stroke_cams, stroke_digits = all_cams[:settings.stroke_mass_count], digits[:settings.stroke_mass_count]
    deleted, cams = images[:settings.deletion_count], all_cams[:settings.deletion_count]
    random_order = torch.rand(cams.shape, generator=torch.Generator().manual_seed(seed)).to(cams.device)
    cam_curve = deletion_curve(model, deleted, cams, settings.deletion_steps)
    random_curve = deletion_curve(model, deleted, random_order, settings.deletion_steps)
    sensitivity = cam_color_sensitivity(model, images[:settings.color_sensitivity_count])
    return {"cam_mass_on_strokes": round(cam_mass_on_strokes(stroke_cams, stroke_digits), 4),
            "deletion_auc": round(curve_area(cam_curve), 4),
            "deletion_auc_random_order": round(curve_area(random_curve), 4),
            "deletion_curve": [round(float(v), 4) for v in cam_curve],
            "recolor_prediction_kept": round(sensitivity["prediction_kept"], 4),
            "recolor_map_correlation": round(sensitivity["map_correlation"], 4)}


def run(study: Study) -> None:
    """Figures: cheater on easy val vs hard test, the recolor sequence, the three models; measures per model."""
    cheater = study.model("cheater")
    val_images, val_labels, _ = study.split("val").tensors()
    hard = study.split("hard_test")
    hard_images, hard_labels, _ = hard.tensors()
    study.figure("task3_gradcam_val_vs_hard", plots.cam_panels({
        "easy val": cams_with_captions(cheater, val_images[:8], val_labels[:8]),
        "hard test": cams_with_captions(cheater, hard_images[:8], hard_labels[:8])}, "cheater Grad-CAM"))
    digit = 1
    sequence = recolor_sequence(study.proof_image(digit))
    study.figure("task3_gradcam_recolor_sequence", plots.cam_panels(
        {name: cams_with_captions(study.model(name), sequence) for name in STUDY_MODELS},
        f"digit {digit} in ten colors: Grad-CAM and prediction"))
    study.figure("task3_gradcam_models", plots.cam_panels(
        {name: cams_with_captions(study.model(name), hard_images[:6], hard_labels[:6]) for name in STUDY_MODELS},
        "the same hard-test samples under each model"))
    study.results["gradcam"] = {
        "settings": asdict(SETTINGS),
        "models": {name: measure(study.model(name), hard_images, hard.digits(), SETTINGS, study.config.seed)
                   for name in STUDY_MODELS}}


def report(results: dict) -> list[str]:
    """The Task 3 section of report.md (empty when the task did not run)."""
    gradcam = results.get("gradcam")
    if not gradcam:
        return []
    s = gradcam["settings"]
    lines = ["## Task 3: Grad-CAM", "",
             "Three measures on hard-test samples (maps for the predicted class):", "",
             f"- **CAM mass on strokes** ({s['stroke_mass_count']} samples): the share of each map on the digit's "
             "strokes. It cannot tell *color* from *shape*: the color lives on the strokes, so a model that looks "
             "at the stroke's color and one that looks at its shape both put their maps there.",
             f"- **Deletion AUC** (Petsiuk et al., 2018; {s['deletion_count']} samples, {s['deletion_steps']} steps): "
             "erase the most salient pixels first (to the background's gray) and average the predicted class's "
             "probability over the curve; lower than the random-order AUC means the map found what the model "
             "uses. It tests the map's faithfulness, not what kind of evidence it found.",
             f"- **Recolor sensitivity** ({s['color_sensitivity_count']} samples, each repainted in all ten "
             "colors; the sensitivity of an explanation, Yeh et al., 2019, under a perturbation that keeps the "
             "shape): how often the prediction survives, and the correlation of each repainted image's map with "
             "the original's. The prediction kept is what separates a color model from a shape model; the map "
             "correlation says whether the map itself ignores the color, which an invariant prediction does not "
             "guarantee.", "",
             "| Model | CAM mass on strokes | Deletion AUC (random order) | Prediction kept under recolor | "
             "Map correlation under recolor |", "|---|---|---|---|---|"]
    lines += [f"| {MODEL_TITLES[n]} | {pct(e['cam_mass_on_strokes'])} | {decimal(e['deletion_auc'])} "
              f"({decimal(e['deletion_auc_random_order'])}) | {pct(e['recolor_prediction_kept'])} | "
              f"{decimal(e['recolor_map_correlation'], 2)} |" for n, e in gradcam["models"].items()]
    return lines + [""]
