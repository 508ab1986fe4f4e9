"""Every figure of the study. Each function returns a matplotlib ``Figure`` (Agg-safe, nothing shown)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

# No backend is forced: headless runs fall back to Agg by themselves, and Jupyter keeps its inline one.
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from shortcutlab.data import COLOR_NAMES, NUM_CLASSES, PALETTE


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) tensor in [0, 1] as an (H, W, 3) numpy array for imshow."""
    return image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def _hide_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _digit_rows(axes, images: torch.Tensor, labels: torch.Tensor, per_digit: int) -> None:
    """Fill a (10, per_digit) axes grid: row d shows the first samples of digit d."""
    for digit in range(NUM_CLASSES):
        members = torch.nonzero(labels == digit).flatten()[:per_digit]
        for col in range(per_digit):
            ax = axes[digit, col]
            _hide_axes(ax)
            if col < len(members):
                ax.imshow(to_hwc(images[members[col]]))
            if col == 0:
                ax.set_ylabel(str(digit), rotation=0, labelpad=10)


def split_comparison(train: tuple[torch.Tensor, torch.Tensor], hard: tuple[torch.Tensor, torch.Tensor],
                     per_digit: int = 6) -> Figure:
    """Figure 1: training samples (biased) beside hard-test samples (never the dominant color)."""
    fig = plt.figure(figsize=(2 * per_digit * 0.9 + 0.6, NUM_CLASSES * 0.9 + 0.6))
    panels = fig.subfigures(1, 2, wspace=0.05)
    for panel, (images, labels), title in zip(panels, (train, hard), ("train (95% dominant color)", "hard test (0%)")):
        _digit_rows(panel.subplots(NUM_CLASSES, per_digit), images, labels, per_digit)
        panel.suptitle(title)
    return fig


def color_given_digit_heatmaps(matrices: Mapping[str, torch.Tensor]) -> Figure:
    """P(color | digit) heatmaps (10x10, rows = digit), one panel per split name."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.2), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        shown = ax.imshow(matrix.numpy(), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"P(color | digit), {name}")
        ax.set_xlabel("color")
        ax.set_ylabel("digit")
        ax.set_xticks(range(NUM_CLASSES), [n[:4] for n in COLOR_NAMES], rotation=60, fontsize=7)
        ax.set_yticks(range(NUM_CLASSES))
        fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def recolor_proof(images: torch.Tensor, predictions: Mapping[str, Sequence[int]],
                  confidences: Mapping[str, Sequence[float]], true_label: int) -> Figure:
    """One digit in all ten colors (10, 3, 28, 28), with each model's prediction and confidence under it."""
    rows = len(predictions)
    fig, axes = plt.subplots(1, NUM_CLASSES, figsize=(NUM_CLASSES * 1.1, 1.5 + 0.35 * rows))
    for k, ax in enumerate(axes):
        ax.imshow(to_hwc(images[k]))
        _hide_axes(ax)
        ax.set_title(COLOR_NAMES[k], fontsize=8, color=tuple(PALETTE[k].tolist()) if k != 9 else "gray")
        lines = [f"{name}: {predictions[name][k]} ({confidences[name][k]:.0%})" for name in predictions]
        ax.set_xlabel("\n".join(lines), fontsize=7)
        for name in predictions:
            if predictions[name][k] != true_label:
                ax.spines[:].set_color("red")
    summary = ", ".join(f"{name} {sum(int(p) == true_label for p in preds)}/10"
                        for name, preds in predictions.items())
    fig.suptitle(f"digit {true_label} recolored: correct predictions {summary}")
    fig.tight_layout()
    return fig


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Loss and accuracy per epoch for each model (train, val, hard test)."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, metrics in histories.items():
        for key, style in (("train", "-"), ("val", "--"), ("hard_test", ":")):
            if f"{key}_loss" in metrics:
                epochs = range(1, len(metrics[f"{key}_loss"]) + 1)
                loss_ax.plot(epochs, metrics[f"{key}_loss"], style, label=f"{name} {key}")
                acc_ax.plot(epochs, metrics[f"{key}_accuracy"], style, label=f"{name} {key}")
    loss_ax.set_title("loss")
    acc_ax.set_title("accuracy")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    """Write ``fig`` as PNG and close it (keeps memory flat when the study makes dozens of figures)."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def image_grid(rows: Mapping[str, torch.Tensor], column_titles: Sequence[str] | None = None,
               title: str = "") -> Figure:
    """One row per name of images (k, 3, H, W), e.g. activation maximization per model and class."""
    n_cols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 1.0, len(rows) * 1.15), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            _hide_axes(ax)
            if c < len(images):
                ax.imshow(to_hwc(images[c]))
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and column_titles is not None:
                ax.set_title(column_titles[c], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def cam_overlay(ax, image: torch.Tensor, cam: torch.Tensor, caption: str = "") -> None:
    """Draw image (3, H, W) with a Grad-CAM map (H, W) in [0, 1] blended over it."""
    ax.imshow(to_hwc(image))
    ax.imshow(cam.detach().cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    _hide_axes(ax)
    if caption:
        ax.set_title(caption, fontsize=7)


def cam_panels(rows: Mapping[str, tuple[torch.Tensor, torch.Tensor, Sequence[str]]], title: str = "") -> Figure:
    """Rows of Grad-CAM overlays: name -> (images (k, 3, H, W), cams (k, H, W), captions)."""
    n_cols = max(len(images) for images, _, _ in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 1.15, len(rows) * 1.35), squeeze=False)
    for r, (name, (images, cams, captions)) in enumerate(rows.items()):
        for c in range(n_cols):
            if c < len(images):
                cam_overlay(axes[r, c], images[c], cams[c], captions[c])
            else:
                axes[r, c].axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def attack_figure(rows: Mapping[str, tuple[torch.Tensor, torch.Tensor, str]]) -> Figure:
    """Per model: original, adversarial, delta (centred at gray) and delta x10, with a caption."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(6.4, 1.75 * len(rows)), squeeze=False)
    for r, (name, (original, adversarial, caption)) in enumerate(rows.items()):
        delta = adversarial - original
        panels = (original, adversarial, 0.5 + delta, 0.5 + 10 * delta)
        for c, (image, label) in enumerate(zip(panels, ("original", "adversarial", "delta", "delta x10"))):
            axes[r, c].imshow(to_hwc(image))
            _hide_axes(axes[r, c])
            if r == 0:
                axes[r, c].set_title(label, fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
        axes[r, 1].set_xlabel(caption, fontsize=7)
    fig.tight_layout()
    return fig


def curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
           title: str) -> Figure:
    """Line plot of name -> (x values, y values)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def latent_panels(images: torch.Tensor, top: torch.Tensor, latents: Sequence[int],
                  captions: Sequence[str]) -> Figure:
    """For each latent, its top-activating images: images (N, 3, H, W), top (H_latents, k) row indices."""
    k = top.shape[1]
    fig, axes = plt.subplots(len(latents), k, figsize=(k * 0.9, len(latents) * 1.0), squeeze=False)
    for r, (latent, caption) in enumerate(zip(latents, captions)):
        for c in range(k):
            axes[r, c].imshow(to_hwc(images[top[latent, c]]))
            _hide_axes(axes[r, c])
        axes[r, 0].set_ylabel(caption, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: Mapping[str, torch.Tensor], title: str) -> Figure:
    """Side-by-side confusion matrices (rows = true digit), one per model."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        values = matrix.numpy()
        ax.imshow(values, cmap="Blues")
        for (i, j), count in np.ndenumerate(values):
            if count:
                ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=5,
                        color="white" if count > values.max() / 2 else "black")
        accuracy = np.trace(values) / max(values.sum(), 1)
        ax.set_title(f"{name} ({accuracy:.1%})", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true digit")
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
    fig.suptitle(title)
    fig.tight_layout()
    return fig
