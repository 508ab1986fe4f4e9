"""Task 6 (which the report skipped): a sparse autoencoder on the cheater's penultimate layer, and surgery."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from shortcutlab import plots
from shortcutlab.data import NUM_CLASSES, recolor
from shortcutlab.metrics import penultimate_activations
from shortcutlab.sae import ablate_latents, latent_selectivity, sae_metrics, select_color_latents, top_activating, train_sae
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct
from shortcutlab.train import evaluate

TITLE = "Sparse autoencoder and SAE surgery"


@dataclass(frozen=True)
class SAESettings:
    """SAE width (``expansion`` x the layer's), scale-free L1 weight, training, and the color-latent threshold."""

    expansion: int = 8
    l1: float = 0.1
    epochs: int = 8
    batch_size: int = 256
    lr: float = 3e-3
    train_count: int = 10000  # training images whose activations the SAE learns from
    selectivity_threshold: float = 0.3


SETTINGS = SAESettings()


def run(study: Study) -> None:
    """SAE quality, color latents, and ablating them ("SAE surgery") with a random-latent control."""
    settings = SETTINGS
    cheater = study.model("cheater")
    train_images = study.split("train").tensors()[0][:settings.train_count]
    acts = penultimate_activations(cheater, train_images)
    d_hidden = settings.expansion * acts.shape[1]
    sae, history = train_sae(acts, d_hidden, l1=settings.l1, epochs=settings.epochs, batch_size=settings.batch_size,
                             lr=settings.lr, seed=study.config.seed, quiet=study.config.quiet)
    sae.eval()
    # Select latents where color and digit are independent (validation recolored at random) and judge the
    # surgery on the untouched hard test, so selection never sees the data it is scored on.
    val = study.split("val")
    val_images, val_labels, _ = val.tensors()
    generator = torch.Generator().manual_seed(study.config.seed)
    random_colors = torch.randint(0, NUM_CLASSES, (len(val_labels),), generator=generator).to(val_labels.device)
    probe_images = recolor(val_images, random_colors)
    with torch.no_grad():
        f_probe = sae.encode(penultimate_activations(cheater, probe_images))
    probe_colors, probe_labels = random_colors.to(f_probe.device), val_labels.to(f_probe.device)
    selectivity = latent_selectivity(f_probe, probe_colors, probe_labels).cpu()
    color_latents = select_color_latents(f_probe, probe_colors, probe_labels,
                                         threshold=settings.selectivity_threshold).cpu()
    hard = study.split("hard_test")
    metrics = sae_metrics(sae, penultimate_activations(cheater, hard.tensors()[0]))
    alive = (f_probe > 0).any(dim=0).cpu()
    control = torch.nonzero(alive & (selectivity <= settings.selectivity_threshold)).flatten()
    control = control[torch.randperm(len(control), generator=generator)[:len(color_latents)]]

    def accuracies(latents: torch.Tensor) -> dict:
        with ablate_latents(cheater.penultimate, sae, latents):
            return {"hard_test_accuracy": round(evaluate(cheater, hard).accuracy, 4),
                    "easy_val_accuracy": round(evaluate(cheater, val).accuracy, 4)}

    study.results["sae"] = {
        **asdict(settings), "d_in": acts.shape[1], "d_hidden": d_hidden, "train_samples": len(acts),
        "metrics_hard_test": {k: round(float(v), 5) for k, v in metrics.items()},
        "history": history,
        "color_latents": color_latents.tolist(),
        "alive_latents": int(alive.sum()),
        "surgery": {"before": accuracies(torch.empty(0, dtype=torch.long)),
                    "ablate_color_latents": accuracies(color_latents),
                    "ablate_random_latents_control": accuracies(control)},
    }
    top = top_activating(f_probe, 8).cpu()
    digit_like = torch.argsort(selectivity)[:4].tolist()
    shown = color_latents[:4].tolist() + digit_like
    captions = [f"latent {j}\nselectivity {selectivity[j]:+.2f}" for j in shown]
    if shown:
        study.figure("task6_sae_latents", plots.latent_panels(probe_images.cpu(), top, shown, captions))


def report(results: dict) -> list[str]:
    """The Task 6 section of report.md (empty when the task did not run)."""
    sae = results.get("sae")
    if not sae:
        return []
    m, surgery = sae["metrics_hard_test"], sae["surgery"]
    lines = ["## Task 6: Sparse autoencoder (skipped by the report)", "",
             f"SAE {sae['d_in']} -> {sae['d_hidden']} latents ({sae['expansion']}x) on the cheater's penultimate "
             f"activations of {sae['train_samples']:,} training images; L1 {sae['l1']}.", "",
             "| MSE | FVU | L0 | Dead fraction |", "|---|---|---|---|",
             f"| {m['mse']:.4g} | {m['fvu']:.4f} | {m['l0']:.1f} | {m['dead_fraction']:.3f} |", "",
             f"{len(sae['color_latents'])} latents encode color more than digit (selectivity > "
             f"{sae['selectivity_threshold']}, measured on randomly recolored validation images).", "",
             "| SAE surgery on the cheater | Easy val | Hard test |", "|---|---|---|"]
    for key, label in (("before", "none"), ("ablate_color_latents", "color latents ablated"),
                       ("ablate_random_latents_control", "as many random latents ablated (control)")):
        lines.append(f"| {label} | {pct(surgery[key]['easy_val_accuracy'])} | "
                     f"{pct(surgery[key]['hard_test_accuracy'])} |")
    return lines + [""]
