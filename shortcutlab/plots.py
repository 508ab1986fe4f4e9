"""Every figure of the study. Each function returns a matplotlib ``Figure`` (Agg-safe, nothing shown)."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

# No backend is forced: headless runs fall back to Agg by themselves, and Jupyter keeps its inline one.
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shortcutlab.data import COLOR_NAMES, IMAGE_SIZE, NUM_CLASSES, PALETTE


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
    strip = RecolorStrip(list(predictions)).update(images, predictions, confidences, true_label)
    strip.figure.tight_layout()
    return strip.figure


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
    grid = ImageGrid(list(rows), n_cols, column_titles).update(rows)
    grid.figure.suptitle(title)
    grid.figure.tight_layout()
    return grid.figure


def cam_overlay(ax, image: torch.Tensor, cam: torch.Tensor, caption: str = ""):
    """Draw image (3, H, W) with a Grad-CAM map (H, W) in [0, 1] blended over it; returns both AxesImages."""
    base = ax.imshow(to_hwc(image))
    heat = ax.imshow(cam.detach().cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    _hide_axes(ax)
    if caption:
        ax.set_title(caption, fontsize=7)
    return base, heat


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
    panels = AttackPanels(list(rows)).update(rows)
    panels.figure.tight_layout()
    return panels.figure


def curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
           title: str, bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
           references: Mapping[str, float] | None = None, categorical_x: bool = False) -> Figure:
    """Line plot of name -> (x values, y values); ``bands``: name -> (low, high) per x, drawn shaded around its line
    (e.g. a confidence interval); ``references``: name -> y, drawn as dashed horizontal lines; ``categorical_x``:
    the x values evenly spaced and labelled as given (rates crowded near 1)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (xs, ys) in series.items():
        positions = list(range(len(xs))) if categorical_x else list(xs)
        line, = ax.plot(positions, ys, marker="o", markersize=3, label=name)
        if bands and name in bands:
            low, high = bands[name]
            ax.fill_between(positions, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if categorical_x:
            ax.set_xticks(positions, [f"{x:g}" for x in xs])
    for (name, y), style in zip((references or {}).items(), ("--", ":", "-.")):
        ax.axhline(y, linestyle=style, linewidth=1, color="black", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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


# ----------------------------------------------------------------------------- live figures
# Built once, then changed in place (set_data, set_height, set_text) by ``update``. The static figures above are
# a live figure's first frame; the widgets call ``update`` on every control change and ``png`` to show the result.
# ``pyplot=False`` keeps a figure out of pyplot, so a notebook does not also show it below the widget.

_BAR_COLOR, _BAR_HIGHLIGHT = "0.65", "tab:blue"


def new_figure(figsize: tuple[float, float], pyplot: bool = True) -> Figure:
    """A figure registered with pyplot (shown inline by Jupyter), or a detached one with its own Agg canvas."""
    if pyplot:
        return plt.figure(figsize=figsize)
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _blank(size: int = IMAGE_SIZE) -> torch.Tensor:
    return torch.zeros(3, size, size)


def _caption(ax, text: str = ""):
    """A text under an axes (its own artist, unlike the x label, so it can be redrawn alone)."""
    return ax.text(0.5, -0.04, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)


class LiveFigure:
    """A figure whose ``dynamic`` artists change on ``update``; ``png`` redraws only those (blitting)."""

    def __init__(self, figsize: tuple[float, float], pyplot: bool) -> None:
        self.figure = new_figure(figsize, pyplot)
        self.dynamic: list = []
        self._background = None
        self._dpi: float | None = None

    def layout(self) -> None:
        """Fit the layout to the current texts (tight_layout); the next ``png`` redraws everything."""
        self.figure.tight_layout()
        self._background = None

    def png(self, dpi: int = 80) -> bytes:
        """The current frame as PNG bytes: the static part (axes, ticks, labels) is drawn once and reused."""
        from PIL import Image

        canvas = self.figure.canvas
        if self._background is None or self._dpi != dpi:
            for artist in self.dynamic:
                artist.set_animated(True)  # left out of full draws, drawn on top of the saved background
            self.figure.set_dpi(dpi)
            canvas.draw()
            self._background, self._dpi = canvas.copy_from_bbox(self.figure.bbox), dpi
        canvas.restore_region(self._background)
        for artist in self.dynamic:
            self.figure.draw_artist(artist)
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(canvas.buffer_rgba())).save(buffer, format="png", compress_level=3)
        return buffer.getvalue()


class PredictionPanels(LiveFigure):
    """Live figure: the input image, then per model its Grad-CAM overlay above its class-probability bars."""

    def __init__(self, names: Sequence[str], pyplot: bool = True) -> None:
        self.names = list(names)
        n = len(self.names)
        super().__init__((1.5 + 1.7 * n, 3.3), pyplot)
        grid = self.figure.add_gridspec(2, n + 1, height_ratios=(1.3, 1))
        input_ax = self.figure.add_subplot(grid[:, 0])
        self._input = input_ax.imshow(to_hwc(_blank()))
        _hide_axes(input_ax)
        self._input_title = input_ax.set_title("input", fontsize=8)
        self.dynamic += [self._input, self._input_title]
        self._cams, self._titles, self._bars = {}, {}, {}
        for column, name in enumerate(self.names, start=1):
            cam_ax = self.figure.add_subplot(grid[0, column])
            self._cams[name] = cam_overlay(cam_ax, _blank(), torch.zeros(IMAGE_SIZE, IMAGE_SIZE))
            self._titles[name] = cam_ax.set_title(name, fontsize=8)
            bar_ax = self.figure.add_subplot(grid[1, column])
            self._bars[name] = bar_ax.bar(range(NUM_CLASSES), np.zeros(NUM_CLASSES), color=_BAR_COLOR)
            bar_ax.set_ylim(0, 1)
            bar_ax.set_xticks(range(NUM_CLASSES))
            bar_ax.set_yticks([0, 0.5, 1])
            bar_ax.tick_params(labelsize=6, length=2)
            bar_ax.set_xlabel("class probability", fontsize=7)
            self.dynamic += [*self._cams[name], self._titles[name], *self._bars[name]]

    def update(self, image: torch.Tensor, probabilities: Mapping[str, torch.Tensor],
               cams: Mapping[str, torch.Tensor], title: str = "input") -> "PredictionPanels":
        """image (3, H, W); per model name: probabilities (10,) and a Grad-CAM map (H, W) in [0, 1] (a model without
        one shows the image alone)."""
        picture = to_hwc(image)
        self._input.set_data(picture)
        self._input_title.set_text(title)
        for name in self.names:
            p = probabilities[name].detach().cpu().float()
            predicted = int(p.argmax())
            base, heat = self._cams[name]
            base.set_data(picture)
            heat.set_data(cams[name].detach().cpu().numpy() if name in cams else np.zeros(picture.shape[:2]))
            for k, bar in enumerate(self._bars[name]):
                bar.set_height(float(p[k]))
                bar.set_color(_BAR_HIGHLIGHT if k == predicted else _BAR_COLOR)
            self._titles[name].set_text(f"{name}: {predicted} ({float(p[predicted]):.0%})")
        return self


class RecolorStrip(LiveFigure):
    """Live figure: one digit in the ten palette colors, each model's prediction and confidence under each."""

    def __init__(self, names: Sequence[str], pyplot: bool = True) -> None:
        self.names = list(names)
        super().__init__((NUM_CLASSES * 1.1, 1.5 + 0.35 * len(self.names)), pyplot)
        self._axes = self.figure.subplots(1, NUM_CLASSES)
        self._images, self._captions = [], []
        for k, ax in enumerate(self._axes):
            self._images.append(ax.imshow(to_hwc(_blank())))
            _hide_axes(ax)
            ax.set_title(COLOR_NAMES[k], fontsize=8, color=tuple(PALETTE[k].tolist()) if k != 9 else "gray")
            self._captions.append(_caption(ax, "\n".join("0 (100%)" for _ in self.names)))
            self.dynamic += [self._images[-1], self._captions[-1], *ax.spines.values()]
        # The model names once, left of the first image, level with the lines of every caption.
        self._axes[0].text(-0.1, -0.04, "\n".join(f"{name}:" for name in self.names), transform=self._axes[0].transAxes,
                           ha="right", va="top", fontsize=7)
        self._title = self.figure.suptitle("")
        self.dynamic.append(self._title)

    def update(self, images: torch.Tensor, predictions: Mapping[str, Sequence[int]],
               confidences: Mapping[str, Sequence[float]], true_label: int | None = None) -> "RecolorStrip":
        """images (10, 3, H, W), image k in color k; frames turn red where a model misses ``true_label``."""
        for k, ax in enumerate(self._axes):
            self._images[k].set_data(to_hwc(images[k]))
            self._captions[k].set_text("\n".join(f"{int(predictions[name][k])} ({float(confidences[name][k]):.0%})"
                                                 for name in self.names))
            wrong = true_label is not None and any(int(predictions[name][k]) != true_label for name in self.names)
            ax.spines[:].set_color("red" if wrong else plt.rcParams["axes.edgecolor"])
        if true_label is None:
            summary = ", ".join(f"{name} {len({int(p) for p in predictions[name]})}" for name in self.names)
            self._title.set_text(f"recolored in the ten colors: distinct predictions {summary}")
        else:
            summary = ", ".join(f"{name} {sum(int(p) == true_label for p in predictions[name])}/10"
                                for name in self.names)
            self._title.set_text(f"digit {true_label} recolored: correct predictions {summary}")
        return self


class ImageGrid(LiveFigure):
    """Live figure: one row of up to ``n_cols`` images per name, optional column titles and per-image captions."""

    def __init__(self, names: Sequence[str], n_cols: int, column_titles: Sequence[str] | None = None,
                 pyplot: bool = True, cell: tuple[float, float] = (1.0, 1.15)) -> None:
        self.names, self.n_cols = list(names), n_cols
        super().__init__((n_cols * cell[0], len(self.names) * cell[1]), pyplot)
        self._axes = self.figure.subplots(len(self.names), n_cols, squeeze=False)
        self._images, self._captions = {}, {}
        for r, name in enumerate(self.names):
            self._images[name], self._captions[name] = [], []
            for c in range(n_cols):
                ax = self._axes[r, c]
                _hide_axes(ax)
                self._images[name].append(ax.imshow(to_hwc(_blank()), visible=False))
                self._captions[name].append(_caption(ax))
                if c == 0:
                    ax.set_ylabel(name, fontsize=8)
                if r == 0 and column_titles is not None:
                    ax.set_title(column_titles[c], fontsize=8)
            self.dynamic += [*self._images[name], *self._captions[name]]
        self._title = self.figure.suptitle("")
        self.dynamic.append(self._title)

    def update(self, rows: Mapping[str, torch.Tensor], captions: Mapping[str, Sequence[str]] | None = None,
               title: str | None = None) -> "ImageGrid":
        """rows: name -> images (k, 3, H, W), k <= n_cols (missing cells stay empty); captions go under the images."""
        for name in self.names:
            images = rows[name]
            for c, artist in enumerate(self._images[name]):
                artist.set_visible(c < len(images))
                if c < len(images):
                    artist.set_data(to_hwc(images[c]))
                if captions is not None:
                    self._captions[name][c].set_text(captions[name][c] if c < len(captions[name]) else "")
        if title is not None:
            self._title.set_text(title)
        return self


class AttackPanels(LiveFigure):
    """Live figure, one row per model: original, adversarial, delta (centred at gray) and delta x10, a caption."""

    COLUMNS = ("original", "adversarial", "delta", "delta x10")

    def __init__(self, names: Sequence[str], pyplot: bool = True) -> None:
        self.names = list(names)
        super().__init__((6.4, 1.75 * len(self.names)), pyplot)
        axes = self.figure.subplots(len(self.names), len(self.COLUMNS), squeeze=False)
        self._images, self._captions = {}, {}
        for r, name in enumerate(self.names):
            self._images[name] = [ax.imshow(to_hwc(_blank())) for ax in axes[r]]
            for c, ax in enumerate(axes[r]):
                _hide_axes(ax)
                if r == 0:
                    ax.set_title(self.COLUMNS[c], fontsize=8)
            axes[r, 0].set_ylabel(name, fontsize=8)
            self._captions[name] = _caption(axes[r, 1], " ")
            self.dynamic += [*self._images[name], self._captions[name]]

    def update(self, rows: Mapping[str, tuple[torch.Tensor, torch.Tensor, str]]) -> "AttackPanels":
        """rows: name -> (original (3, H, W), adversarial (3, H, W), caption)."""
        for name in self.names:
            original, adversarial, caption = rows[name]
            delta = adversarial - original
            for artist, image in zip(self._images[name], (original, adversarial, 0.5 + delta, 0.5 + 10 * delta)):
                artist.set_data(to_hwc(image))
            self._captions[name].set_text(caption)
        return self
