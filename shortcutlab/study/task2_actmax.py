"""Task 2: activation maximization of every class logit; does each image take its class's color?"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from shortcutlab import plots
from shortcutlab.data import COLOR_NAMES, NUM_CLASSES
from shortcutlab.interpret import activation_maximization
from shortcutlab.metrics import palette_pixel_share
from shortcutlab.study.cache import MODEL_TITLES, STUDY_MODELS
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct
from shortcutlab.train import predict_logits

TITLE = "Activation maximization"


@dataclass(frozen=True)
class ActmaxSettings:
    """Adam steps on the image, and the weights of its L2 and total-variation penalties."""

    steps: int = 256
    lr: float = 0.05
    l2: float = 1e-3
    tv: float = 1e-2


SETTINGS = ActmaxSettings()
QUICK_SETTINGS = ActmaxSettings(steps=128)


def run(study: Study) -> None:
    """All 10 class logits per model: class-color pixel share, most enriched color, target probability."""
    settings = QUICK_SETTINGS if study.config.quick else SETTINGS
    rows, entry = {}, {}
    for name in STUDY_MODELS:
        model = study.model(name)
        images = activation_maximization(model, list(range(NUM_CLASSES)), steps=settings.steps, lr=settings.lr,
                                         l2=settings.l2, tv=settings.tv,
                                         generator=torch.Generator().manual_seed(study.config.seed))
        share = palette_pixel_share(images)
        class_share = share.diagonal()
        # Enrichment: the color this image holds more of than the average actmax image does.
        enriched = (share / (share.mean(dim=0, keepdim=True) + 1e-3)).argmax(dim=1).cpu()
        probabilities = predict_logits(model, images).softmax(1).diagonal()
        rows[name] = images.cpu()
        entry[name] = {"class_color_pixel_share": [round(v, 4) for v in class_share.tolist()],
                       "mean_class_color_pixel_share": round(float(class_share.mean()), 4),
                       "class_color_most_enriched": int((enriched == torch.arange(NUM_CLASSES)).sum()),
                       "target_probability": [round(p, 4) for p in probabilities.tolist()]}
    study.results["actmax"] = {**asdict(settings), "models": entry}
    study.figure("task2_activation_maximization", plots.image_grid(
        rows, [f"{c}: {COLOR_NAMES[c]}" for c in range(NUM_CLASSES)], "activation maximization per class logit"))


def report(results: dict) -> list[str]:
    """The Task 2 section of report.md (empty when the task did not run)."""
    actmax = results.get("actmax")
    if not actmax:
        return []
    lines = ["## Task 2: Activation maximization", "",
             f"{actmax['steps']} Adam steps (lr {actmax['lr']}, L2 {actmax['l2']}, TV {actmax['tv']}) per class "
             "logit. The report saw color blobs for the cheater; we measure it: the share of each image's "
             "pixels that are (within 0.3 RGB) the class's dominant color, and in how many of the ten images "
             "the class color is the most over-represented palette color.", "",
             "| Model | Mean class-color pixel share | Per class (0-9, %) | Class color most enriched |",
             "|---|---|---|---|"]
    lines += [f"| {MODEL_TITLES[n]} | {pct(e['mean_class_color_pixel_share'])} | "
              f"{' '.join(f'{100 * v:.0f}' for v in e['class_color_pixel_share'])} | "
              f"{e['class_color_most_enriched']}/10 |" for n, e in actmax["models"].items()]
    return lines + [""]
