"""Interactive explorers (ipywidgets) over trained models: recoloring, epsilon, activation maximization, drawing,
SAE latents.

Each explorer is an ``Explorer``, an ipywidgets ``VBox`` with ``.controls`` (name -> ipywidgets control) and
``.state`` (the latest result, tensors), so tests drive it headlessly: ``w.controls["color"].value = 4`` recomputes
``w.state`` at once. Figures are live figures of ``plots`` (built once, updated in place) shown as PNG in an
``ipywidgets.Image``: no flicker, and the same in Jupyter, Voila and a headless kernel. Sliders only report on
release (``continuous_update=False``), so a drag costs one update, and nothing waits for a browser, so notebooks
that build explorers run under nbclient, nbgrader and CI like any other cell.

Displayed, an explorer leaves the live widget and, in the same output, a static PNG of its figures as they are at
that moment (``_repr_mimebundle_``; ``png()`` gives it) and its readout as text (``text()``): frontends with a
widget manager (JupyterLab, Notebook, Voila) rank the widget view first and show it; renderers without one
(nbconvert's HTML of a notebook saved without widget state, its PDF) fall back on the PNG. nbconvert's HTML takes
the widget view when the notebook holds the widget state (nbclient's default ``store_widget_state=True``): its
page then draws the widgets with a script from unpkg.com, so only online. Execute with
``--ExecutePreprocessor.store_widget_state=False`` (nbclient: ``store_widget_state=False``) for the PNG.

Every explorer that runs models takes ``device``: None (the default) leaves each model where it is, anything else
(``"auto"``, ``"cpu"``, ``"cuda[:k]"``, a ``torch.device``) moves the caller's models there, in place (``.to()``).
Inputs go to each model's device for a forward pass; what the explorers keep, draw and report is on the CPU.
"""
from __future__ import annotations

import base64
import colorsys
import html
import io
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import ipywidgets as widgets
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab import plots
from shortcutlab.attacks import targeted_pgd
from shortcutlab.data import (COLOR_NAMES, IMAGE_SIZE, NUM_CLASSES, PALETTE, TEXTURE_GRID, colorize,
                              estimate_stroke_color, recolor_rgb, texture_from_noise)
from shortcutlab.devices import resolve_device
from shortcutlab.interpret import activation_maximization, grad_cam
from shortcutlab.metrics import palette_pixel_share
from shortcutlab.edition.withheld import is_withheld
from shortcutlab.models import class_logits, eval_mode, model_device
from shortcutlab.train import predict_logits
from shortcutlab.sae import top_activating

__all__ = ["CAM_LAYERS", "CAM_TARGETS", "Explorer", "actmax_explorer", "cam_class", "cam_layer", "cam_note",
           "draw_digit", "epsilon_explorer", "hue_to_rgb", "latent_browser", "mnist_preprocess", "model_outputs",
           "rasterize_strokes", "recolor_explorer"]

MNIST_BOX = 20  # MNIST digits were scaled to fit a 20x20 box ...
MNIST_CENTER = 14.0  # ... and shifted so their centre of mass sits here (row and column index; MNIST's mean is 14.0)
DPI = 96  # of the PNG frames the widgets show: a figure inch is a CSS inch (96 px)
_WIDE = {"description_width": "initial"}


# ----------------------------------------------------------------------------- pure helpers


def hue_to_rgb(hue: float) -> torch.Tensor:
    """RGB (3,) float32 in [0, 1] of a saturated, full-value hue in degrees (0 red, 60 yellow, 120 green, 240 blue)."""
    return torch.tensor(colorsys.hsv_to_rgb((float(hue) % 360.0) / 360.0, 1.0, 1.0), dtype=torch.float32)


def rgb_to_hue(rgb: torch.Tensor) -> float | None:
    """Hue in degrees [0, 360) of an RGB color (3,), or None for a gray one (no hue)."""
    h, s, _ = colorsys.rgb_to_hsv(*(float(v) for v in rgb))
    return None if s < 1e-6 else round(360.0 * h, 6) % 360.0


def _palette_index(image: torch.Tensor) -> int:
    """The palette color nearest to the stroke color of an image (3, H, W)."""
    stroke = estimate_stroke_color(image[None])
    return int(torch.cdist(stroke, PALETTE).argmin())


def rasterize_strokes(strokes: Sequence[Sequence[tuple[float, float]]], size: tuple[int, int],
                      width: float) -> torch.Tensor:
    """Gray image (H, W) in [0, 1] of polylines drawn with a round pen ``width`` px wide, antialiased.

    ``strokes``: polylines, each a list of (x, y) points in pixel units (x to the right, y down); one point is a dot.
    """
    height, wide = size
    out = torch.zeros(height * wide)
    segments = []
    for line in strokes:
        points = torch.as_tensor([tuple(map(float, p)) for p in line], dtype=torch.float32).reshape(-1, 2)
        if len(points) == 1:
            points = points.repeat(2, 1)
        segments.append(torch.stack([points[:-1], points[1:]], dim=1))
    if not segments:
        return out.view(height, wide)
    segments = torch.cat(segments)  # (S, 2 ends, 2 coordinates)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(wide) + 0.5, indexing="ij")
    pixels = torch.stack([xs.flatten(), ys.flatten()], dim=1)  # pixel centres (P, 2)
    radius = float(width) / 2
    for chunk in segments.split(64):
        start, direction = chunk[:, 0], chunk[:, 1] - chunk[:, 0]
        offset = pixels[:, None] - start[None]  # (P, S, 2)
        along = (offset * direction).sum(-1) / direction.pow(2).sum(-1).clamp_min(1e-12)
        nearest = start[None] + along.clamp(0, 1)[..., None] * direction[None]
        distance = (pixels[:, None] - nearest).norm(dim=-1)
        # One pixel of linear falloff at the pen's edge: the antialiasing.
        out = torch.maximum(out, (radius + 0.5 - distance).clamp(0, 1).amax(dim=1))
    return out.view(height, wide)


def mnist_preprocess(gray: torch.Tensor) -> torch.Tensor:
    """A drawn digit (H, W), ink >= 0 on 0, made like MNIST: (28, 28) float32 in [0, 1].

    Crop to the ink's bounding box, scale its longest side to 20 px keeping the aspect ratio (antialiased
    bilinear), stretch the ink to a peak of 1, and paste it into 28x28 with its centre of mass at (14, 14),
    as MNIST was made; the shift is clamped so the digit stays whole. No ink gives an all-zero image.
    """
    gray = torch.as_tensor(gray, dtype=torch.float32)
    if gray.dim() != 2:
        raise ValueError(f"expected a gray image (H, W), got shape {tuple(gray.shape)}")
    gray = gray.clamp_min(0)
    out = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    peak = float(gray.max()) if gray.numel() else 0.0
    if peak <= 0:
        return out
    ink = gray > 1e-3 * peak
    rows, cols = torch.nonzero(ink.any(dim=1)).flatten(), torch.nonzero(ink.any(dim=0)).flatten()
    crop = gray[int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]
    scale = MNIST_BOX / max(crop.shape)
    size = tuple(max(1, min(MNIST_BOX, round(n * scale))) for n in crop.shape)
    small = F.interpolate(crop[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0]
    small = small.clamp_min(0)
    small = small / small.max()
    mass = small.sum()
    center_y = float((small.sum(dim=1) * torch.arange(size[0])).sum() / mass)
    center_x = float((small.sum(dim=0) * torch.arange(size[1])).sum() / mass)
    top = min(max(math.floor(MNIST_CENTER - center_y + 0.5), 0), IMAGE_SIZE - size[0])
    left = min(max(math.floor(MNIST_CENTER - center_x + 0.5), 0), IMAGE_SIZE - size[1])
    out[top:top + size[0], left:left + size[1]] = small
    return out


def _probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Softmax class probabilities (N, K) on the CPU, in eval mode."""
    return predict_logits(model, images.to(model_device(model))).softmax(dim=1).cpu()


# What a Grad-CAM map explains: the model's prediction, the true digit, or the model's second choice.
CAM_TARGETS = ("prediction", "true digit", "runner-up")
# Where a Grad-CAM map is taken: the model's target_layer, or the conv block before it (the course's models' block2).
CAM_LAYERS = ("target_layer", "block before")


def cam_layer(model: nn.Module, layer: str = "target_layer") -> nn.Module:
    """The module whose output ``layer`` (``CAM_LAYERS``) names: ``model.target_layer``, or the conv block before it
    in the course's models (``block2`` of a SimpleCNN, or of a GRLNet's backbone); target_layer where there is none."""
    if layer not in CAM_LAYERS:
        raise ValueError(f"layer must be one of {', '.join(CAM_LAYERS)}, got {layer!r}")
    if layer == "block before":
        before = getattr(getattr(model, "backbone", model), "block2", None)
        if isinstance(before, nn.Module):
            return before
    return model.target_layer


def cam_class(probabilities: torch.Tensor, target: str = "prediction", label: int | None = None) -> int:
    """The class (an index into ``probabilities`` (K,)) whose Grad-CAM map to show for ``target`` (``CAM_TARGETS``);
    "true digit" without a ``label`` falls back to the prediction."""
    if target not in CAM_TARGETS:
        raise ValueError(f"target must be one of {', '.join(CAM_TARGETS)}, got {target!r}")
    if target == "true digit" and label is not None:
        return int(label)
    if target == "runner-up":
        return int(probabilities.topk(2).indices[1])
    return int(probabilities.argmax())


def model_outputs(models: Mapping[str, nn.Module], image: torch.Tensor, cam: Callable | None = grad_cam,
                  target: str = "prediction", label: int | None = None, layer: str = "target_layer"
                  ) -> tuple[dict[str, torch.Tensor], dict[str, int], dict[str, torch.Tensor], dict[str, int]]:
    """Per model: probabilities (10,), prediction, Grad-CAM map (H, W) at ``layer`` (see ``cam_layer``) and the class
    it explains (see ``cam_class``), for an image (3, H, W); no maps when ``cam`` is None."""
    probabilities, predictions, cams, explained = {}, {}, {}, {}
    for name, model in models.items():
        p = _probabilities(model, image[None])[0]
        probabilities[name], predictions[name] = p, int(p.argmax())
        explained[name] = cam_class(p, target, label)
        if cam is None:
            continue
        cams[name] = cam(model, cam_layer(model, layer), image[None].to(model_device(model)),
                         torch.tensor([explained[name]], device=model_device(model)))[0].detach().cpu()
    return probabilities, predictions, cams, explained


# An explorer's note where this edition of the library withholds Grad-CAM (shortcutlab/edition): no maps are drawn.
NO_CAM_NOTE = "no Grad-CAM map: grad_cam is lesson 03's exercise; pass yours as cam= to see maps"


def usable(function: Callable | None) -> Callable | None:
    """``function``, or None where it is a stand-in this edition withholds (an explorer then leaves its part out)."""
    return None if function is None or is_withheld(function) else function


def cam_note(cams: Mapping[str, torch.Tensor], explained: Mapping[str, int]) -> dict[str, str]:
    """Per model whose map is zero everywhere, why (the readout shows it): nothing at the layer raises the score."""
    return {name: f"its Grad-CAM map for {explained[name]} is all zero: weighting each channel by its gradient "
                  f"averaged over the layer's positions leaves no position with positive evidence (the ReLU keeps only "
                  f"that); try the block before, or another class"
            for name, cam in cams.items() if not bool(cam.gt(0).any())}


def _lines(header: str, rows: Sequence[str]) -> str:
    """Readout HTML: a header line, then one line per model (already escaped)."""
    return "".join([f'<div class="sl-readout-header">{header}</div>'] + [f"<div>{row}</div>" for row in rows])


# ----------------------------------------------------------------------------- the explorer


class Explorer(widgets.VBox):
    """Controls, a readout and live figures. ``controls``: name -> control; ``state``: the latest result.

    Any control change recomputes synchronously (``refresh``); ``seconds`` is how long the last update took.
    Subclasses define ``compute() -> state``, ``describe(state) -> HTML`` and ``draw(state)`` (update figures).
    """

    def __init__(self, kind: str, controls: Mapping[str, widgets.Widget], figures: Sequence,
                 extra: Sequence[widgets.Widget] = ()) -> None:
        self.kind = kind
        self.controls = dict(controls)
        self.state: dict = {}
        self.seconds = 0.0
        self.figures = list(figures)
        self.readout = widgets.HTML()
        self.readout.add_class("sl-readout")
        self.readout.add_class(f"sl-{kind}-readout")
        self.frames = [widgets.Image(format="png", layout=widgets.Layout(max_width="100%")) for _ in self.figures]
        bar = widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([bar, *extra, self.readout, *self.frames])
        self.add_class("sl-explorer")
        self.add_class(f"sl-{kind}-explorer")
        self._laid_out = False
        for control in self.controls.values():
            if isinstance(control, widgets.ValueWidget):
                control.observe(self._changed, names="value")

    def _changed(self, change) -> None:
        self.refresh()

    def png(self) -> bytes:
        """The figures as they are now, one PNG (stacked top to bottom when there are several)."""
        frames = [bytes(frame.value) for frame in self.frames]
        if len(frames) == 1:
            return frames[0]
        from PIL import Image  # matplotlib's own dependency

        images = [Image.open(io.BytesIO(frame)).convert("RGB") for frame in frames]
        sheet = Image.new("RGB", (max(im.width for im in images), sum(im.height for im in images)), "white")
        top = 0
        for im in images:
            sheet.paste(im, (0, top))
            top += im.height
        out = io.BytesIO()
        sheet.save(out, format="png", dpi=(DPI, DPI))
        return out.getvalue()

    def text(self) -> str:
        """The readout as plain text."""
        lines = re.sub(r"<[^>]*>", "", re.sub(r"</div>", "\n", self.readout.value))
        return html.unescape(lines).strip()

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widget, plus a static PNG of the figures and the readout as text, for where widgets don't show.

        Frontends with a widget manager rank the widget view first; renderers without one (nbconvert, when the
        notebook holds no widget state) fall back on the PNG. The PNG is the state when displayed: display again
        to leave a later one.
        """
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = f"{type(self).__name__}: {self.text()}"
        if self.frames:
            bundle["image/png"] = base64.b64encode(self.png()).decode("ascii")
        return bundle

    def compute(self) -> dict:
        raise NotImplementedError

    def describe(self, state: dict) -> str:
        raise NotImplementedError

    def draw(self, state: dict) -> None:
        raise NotImplementedError

    def refresh(self) -> dict:
        """Recompute ``state`` from the controls, then the readout and the figures; returns the state."""
        start = time.perf_counter()
        try:
            state = self.compute()
            text = self.describe(state)
            self.draw(state)
        except Exception as exc:
            self.readout.value = f'<div class="sl-error">{type(exc).__name__}: {html.escape(str(exc))}</div>'
            raise
        if not self._laid_out:  # once: later frames keep the layout, so nothing jumps
            for frame, figure in zip(self.frames, self.figures):
                figure.layout()
                # Shown at its own size (a page's CSS may otherwise stretch it, blurred), shrunk if the page is narrow.
                frame.layout.width = f"{round(figure.figure.get_figwidth() * DPI)}px"
            self._laid_out = True
        for frame, figure in zip(self.frames, self.figures):
            frame.value = figure.png(dpi=DPI)
        self.state = state
        self.readout.value = text
        self.seconds = time.perf_counter() - start
        return state


def _check_models(models: Mapping[str, nn.Module], device: str | torch.device | None = None
                  ) -> dict[str, nn.Module]:
    """The models as a dict; moved in place onto ``resolve_device(device)`` unless ``device`` is None."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict {name: model}, "
                         "e.g. {'cheater': shortcutlab.pretrained('cheater')}")
    if device is not None:
        target = resolve_device(device)
        for model in models.values():
            model.to(target)
    return dict(models)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    images = torch.as_tensor(images).detach().float().cpu()
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"expected colored images (N, 3, H, W) or one image (3, H, W), got {tuple(images.shape)}")
    return images


# ----------------------------------------------------------------------------- recoloring


class RecolorExplorer(Explorer):
    """One sample, repainted with a palette color or any hue; each model's prediction, probabilities and Grad-CAM
    (``cam``: of the prediction, the true digit or the runner-up; ``layer``: at target_layer or the block before)."""

    def __init__(self, models, images, labels=None, index: int = 0, color: int | None = None,
                 cam: Callable = grad_cam, device: str | torch.device | None = None) -> None:
        self.models, self.images, self.cam = _check_models(models, device), _check_images(images), usable(cam)
        self.labels = None if labels is None else torch.as_tensor(labels).long().flatten()
        if not 0 <= index < len(self.images):
            raise ValueError(f"index must lie in [0, {len(self.images) - 1}], got {index}")
        color = _palette_index(self.images[index]) if color is None else int(color)
        controls = {
            "index": widgets.IntSlider(value=index, min=0, max=len(self.images) - 1, description="index",
                                       continuous_update=False, style=_WIDE),
            "color": widgets.Dropdown(options=[(name, k) for k, name in enumerate(COLOR_NAMES)], value=color,
                                      description="color", style=_WIDE),
            "hue": widgets.FloatSlider(value=rgb_to_hue(PALETTE[color]) or 0.0, min=0.0, max=359.0, step=1.0,
                                       description="hue", readout_format=".0f", continuous_update=False, style=_WIDE),
            "cam": widgets.Dropdown(options=[t for t in CAM_TARGETS if t != "true digit" or labels is not None],
                                    value="prediction", description="cam", style=_WIDE),
            "layer": widgets.Dropdown(options=CAM_LAYERS, value="target_layer", description="layer", style=_WIDE),
        }
        controls["color"].add_class("sl-recolor-color")
        controls["hue"].add_class("sl-recolor-hue")
        self._mode, self._syncing = "color", False
        super().__init__("recolor", controls, [plots.PredictionPanels(list(self.models), pyplot=False)])
        self.refresh()

    def _changed(self, change) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            if change.owner is self.controls["hue"]:
                # The stroke now has a free hue: no palette color is selected until one is picked again.
                self._mode = "hue"
                self.controls["color"].value = None
            elif change.owner is self.controls["color"]:
                if change.new is None:
                    return
                self._mode = "color"
                hue = rgb_to_hue(PALETTE[change.new])
                if hue is not None:
                    self.controls["hue"].value = hue
        finally:
            self._syncing = False
        self.refresh()

    def compute(self) -> dict:
        index = self.controls["index"].value
        color, hue = self.controls["color"].value, self.controls["hue"].value
        rgb = hue_to_rgb(hue) if self._mode == "hue" or color is None else PALETTE[color]
        image = recolor_rgb(self.images[index][None], rgb[None])[0]
        label = None if self.labels is None else int(self.labels[index])
        probabilities, predictions, cams, explained = model_outputs(self.models, image, self.cam,
                                                                    self.controls["cam"].value, label,
                                                                    self.controls["layer"].value)
        return {"index": index, "label": None if self.labels is None else int(self.labels[index]),
                "color": None if self._mode == "hue" else color, "hue": hue if self._mode == "hue" else None,
                "stroke_rgb": rgb, "image": image, "probabilities": probabilities, "predictions": predictions,
                "cams": cams, "explained": explained,
                "cam_notes": cam_note(cams, explained) if self.cam else dict.fromkeys(self.models, NO_CAM_NOTE)}

    def describe(self, state: dict) -> str:
        stroke = COLOR_NAMES[state["color"]] if state["color"] is not None else f"hue {state['hue']:.0f}°"
        label = "" if state["label"] is None else f", digit {state['label']}"
        rows = [f"{html.escape(name)}: {state['predictions'][name]} "
                f"({100 * float(state['probabilities'][name].max()):.1f}%), Grad-CAM of {state['explained'][name]}"
                + (f"; {html.escape(state['cam_notes'][name])}" if name in state["cam_notes"] else "")
                for name in self.models]
        return _lines(f"sample {state['index']}{label}, stroke {stroke}", rows)

    def draw(self, state: dict) -> None:
        self.figures[0].update(state["image"], state["probabilities"], state["cams"], title="recolored input")


def recolor_explorer(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor | None = None,
                     index: int = 0, color: int | None = None, cam: Callable = grad_cam,
                     device: str | torch.device | None = None) -> RecolorExplorer:
    """Pick a sample (``index``) of images (N, 3, 28, 28) and repaint its strokes (``color``: a palette color;
    ``hue``: any hue, in degrees); see each model's prediction, probabilities and Grad-CAM (``cam``, e.g. your own).

    ``device``: None keeps each model where it is; else the models are moved there in place (e.g. "cuda").
    state: image (3, 28, 28), probabilities {model: (10,)}, predictions {model: int}, cams {model: (28, 28)}.
    """
    return RecolorExplorer(models, images, labels, index, color, cam, device)


# ----------------------------------------------------------------------------- epsilon


class EpsilonExplorer(Explorer):
    """Targeted PGD on one image against each model, with the budget epsilon, the step count and the target."""

    def __init__(self, models, image, target: int = 3, epsilon: float = 0.02, steps: int = 10,
                 attack: Callable = targeted_pgd, device: str | torch.device | None = None) -> None:
        self.models, self.attack = _check_models(models, device), attack
        images = _check_images(image)
        if len(images) != 1:
            raise ValueError(f"epsilon_explorer attacks one image (3, H, W); got {len(images)} images")
        self.image = images[0]
        self.before = {name: _probabilities(model, self.image[None])[0] for name, model in self.models.items()}
        controls = {
            "epsilon": widgets.FloatSlider(value=epsilon, min=0.0, max=0.1, step=0.005, description="epsilon",
                                           readout_format=".3f", continuous_update=False, style=_WIDE),
            "steps": widgets.IntSlider(value=steps, min=1, max=100, description="steps", continuous_update=False,
                                       style=_WIDE),
            "target": widgets.Dropdown(options=list(range(NUM_CLASSES)), value=int(target), description="target",
                                       style=_WIDE),
        }
        controls["epsilon"].add_class("sl-epsilon")
        super().__init__("epsilon", controls, [plots.AttackPanels(list(self.models), pyplot=False)])
        self.refresh()

    def compute(self) -> dict:
        epsilon, steps, target = (self.controls[k].value for k in ("epsilon", "steps", "target"))
        # Step size 2.5 eps / steps (Madry et al.): enough to cross the ball, whatever the number of steps.
        alpha = 2.5 * epsilon / steps
        state = {"epsilon": epsilon, "steps": steps, "target": target, "alpha": alpha, "adversarial": {},
                 "delta": {}, "target_confidence": {}, "success": {}, "predictions": {}, "before_confidence": {}}
        targets = torch.tensor([target])
        for name, model in self.models.items():
            device = model_device(model)
            result = self.attack(model, self.image[None].to(device), targets.to(device), eps=epsilon, alpha=alpha,
                                 steps=steps if epsilon > 0 else 0)
            adversarial = result.images[0].detach().cpu()
            state["adversarial"][name] = adversarial
            state["delta"][name] = adversarial - self.image
            state["target_confidence"][name] = float(result.confidence[0])
            state["success"][name] = bool(result.success[0])
            state["predictions"][name] = int(_probabilities(model, adversarial[None])[0].argmax())
            state["before_confidence"][name] = float(self.before[name][target])
        return state

    def describe(self, state: dict) -> str:
        target = state["target"]
        rows = [f"{html.escape(name)}: p({target}) = {state['target_confidence'][name]:.3f} "
                f"({'success' if state['success'][name] else 'failed'}), predicts {state['predictions'][name]}; "
                f"before the attack {state['before_confidence'][name]:.3f}" for name in self.models]
        header = (f"epsilon {state['epsilon']:.3f}, {state['steps']} steps of {state['alpha']:.4f}, "
                  f"target {target}")
        return _lines(header, rows)

    def draw(self, state: dict) -> None:
        target = state["target"]
        self.figures[0].update({name: (self.image, state["adversarial"][name],
                                       f"p({target}) = {state['target_confidence'][name]:.2f}"
                                       + (" (success)" if state["success"][name] else ""))
                                for name in self.models})


def epsilon_explorer(models: Mapping[str, nn.Module], image: torch.Tensor, target: int = 3, epsilon: float = 0.02,
                     steps: int = 10, attack: Callable = targeted_pgd,
                     device: str | torch.device | None = None) -> EpsilonExplorer:
    """Targeted L_inf PGD (``attack``, e.g. your own) of one image (3, 28, 28) towards ``target`` for each model.

    Controls ``epsilon`` (0 to 0.1), ``steps``, ``target``; step size 2.5 * epsilon / steps, no random start.
    state: adversarial {model: (3, 28, 28)}, delta {model: (3, 28, 28)}, target_confidence {model: float},
    success {model: bool} (the model now predicts the target). ``device``: None keeps each model where it is;
    else the models are moved there in place.
    """
    return EpsilonExplorer(models, image, target, epsilon, steps, attack, device)


# ----------------------------------------------------------------------------- activation maximization


class ActmaxExplorer(Explorer):
    """The activation-maximization image of one class per model, with the L2 and TV weights and the step count."""

    def __init__(self, models, target_class: int = 0, steps: int = 32, l2: float = 1e-3, tv: float = 1e-2,
                 seed: int = 0, maximize: Callable = activation_maximization,
                 device: str | torch.device | None = None) -> None:
        self.models, self.maximize, self.seed = _check_models(models, device), maximize, seed
        controls = {
            "class": widgets.Dropdown(options=[(f"{c} ({COLOR_NAMES[c]})", c) for c in range(NUM_CLASSES)],
                                      value=int(target_class), description="class", style=_WIDE),
            "l2": widgets.FloatLogSlider(value=l2, base=10, min=-5, max=0, step=0.25, description="l2",
                                         readout_format=".1e", continuous_update=False, style=_WIDE),
            "tv": widgets.FloatLogSlider(value=tv, base=10, min=-4, max=0, step=0.25, description="tv",
                                         readout_format=".1e", continuous_update=False, style=_WIDE),
            "steps": widgets.IntSlider(value=steps, min=8, max=512, step=8, description="steps",
                                       continuous_update=False, style=_WIDE),
        }
        names = list(self.models)
        super().__init__("actmax", controls, [plots.ImageGrid([""], len(names), names, pyplot=False,
                                                              cell=(1.7, 2.0))])
        self.refresh()

    def compute(self) -> dict:
        target, steps, l2, tv = (self.controls[k].value for k in ("class", "steps", "l2", "tv"))
        state = {"class": target, "steps": steps, "l2": l2, "tv": tv, "images": {}, "target_probability": {},
                 "logit": {}, "class_color_share": {}}

        def maximize(model: nn.Module) -> torch.Tensor:
            return self.maximize(model, target, steps=steps, l2=l2, tv=tv,
                                 generator=torch.Generator().manual_seed(self.seed))[0].detach().cpu()

        # One thread per model: batch-1 steps are mostly per-op overhead, which threads overlap (~1.6x on 2 cores).
        # A model listed twice runs sequentially: maximize switches its train/eval mode.
        distinct = len({id(m) for m in self.models.values()}) == len(self.models)
        with ThreadPoolExecutor(max_workers=len(self.models) if distinct else 1) as pool:
            images = list(pool.map(maximize, self.models.values()))
        for (name, model), image in zip(self.models.items(), images):
            with torch.no_grad(), eval_mode(model):
                logits = class_logits(model(image[None].to(model_device(model)))).cpu()[0]
            state["images"][name] = image
            state["logit"][name] = float(logits[target])
            state["target_probability"][name] = float(logits.softmax(dim=0)[target])
            state["class_color_share"][name] = float(palette_pixel_share(image[None])[0, target])
        return state

    def describe(self, state: dict) -> str:
        c = state["class"]
        rows = [f"{html.escape(name)}: p({c}) = {state['target_probability'][name]:.3f}, logit "
                f"{state['logit'][name]:.1f}, {100 * state['class_color_share'][name]:.0f}% of pixels "
                f"{COLOR_NAMES[c]}" for name in self.models]
        return _lines(f"class {c} (its color: {COLOR_NAMES[c]}), {state['steps']} steps, l2 {state['l2']:.1e}, "
                      f"tv {state['tv']:.1e}", rows)

    def draw(self, state: dict) -> None:
        names = list(self.models)
        c = state["class"]
        self.figures[0].update({"": torch.stack([state["images"][n] for n in names])},
                               {"": [f"p({c}) = {state['target_probability'][n]:.2f}" for n in names]},
                               title=f"class {c}: the image each model finds most {c}-like")


def actmax_explorer(models: Mapping[str, nn.Module], target_class: int = 0, steps: int = 32, l2: float = 1e-3,
                    tv: float = 1e-2, seed: int = 0, maximize: Callable = activation_maximization,
                    device: str | torch.device | None = None) -> ActmaxExplorer:
    """Activation maximization (``maximize``, e.g. your own) of ``class`` per model; controls class, l2, tv, steps.

    state: images {model: (3, 28, 28)}, target_probability {model: float}, logit {model: float},
    class_color_share {model: float} (share of the image's pixels in the class's palette color).
    The start is drawn from a CPU generator seeded with ``seed``, so it is the same on every device. ``device``:
    None keeps each model where it is; else the models are moved there in place.
    """
    return ActmaxExplorer(models, target_class, steps, l2, tv, seed, maximize, device)


# ----------------------------------------------------------------------------- drawing


class DrawDigit(Explorer):
    """Draw a digit with the mouse; it is made like MNIST, colored, and shown to every model."""

    RASTER = 112  # strokes are rasterized at this resolution (then scaled to MNIST's 20 px box)

    def __init__(self, models, color: int = 0, size: int = 280, pen: int | None = None, seed: int = 0,
                 cam: Callable = grad_cam, device: str | torch.device | None = None) -> None:
        from ipycanvas import Canvas

        self.models, self.cam, self.size = _check_models(models, device), usable(cam), int(size)
        self.strokes: list[list[tuple[float, float]]] = []
        self._drawing = False
        self._noise = torch.rand(1, 1, TEXTURE_GRID, TEXTURE_GRID, generator=torch.Generator().manual_seed(seed))
        self.canvas = Canvas(width=self.size, height=self.size,
                             layout=widgets.Layout(width=f"{self.size}px", height=f"{self.size}px"))
        self.canvas.add_class("sl-draw-canvas")
        controls = {
            "color": widgets.Dropdown(options=[(name, k) for k, name in enumerate(COLOR_NAMES)], value=int(color),
                                      description="color", style=_WIDE),
            "pen": widgets.IntSlider(value=pen or round(self.size / 12), min=4, max=max(8, self.size // 5),
                                     description="pen", continuous_update=False, style=_WIDE),
            "clear": widgets.Button(description="clear", tooltip="erase the drawing"),
        }
        controls["color"].add_class("sl-draw-color")
        controls["clear"].add_class("sl-draw-clear")
        controls["clear"].on_click(lambda _: self.clear())
        names = list(self.models)
        super().__init__("draw", controls, [plots.PredictionPanels(names, pyplot=False),
                                            plots.RecolorStrip(names, pyplot=False)], extra=[self.canvas])
        self.canvas.on_mouse_down(self._mouse_down)
        self.canvas.on_mouse_move(self._mouse_move)
        self.canvas.on_mouse_up(self._mouse_up)
        self.canvas.on_mouse_out(self._mouse_up)
        # A page that connects later (Voila renders after the kernel ran the notebook) gets a blank canvas: repaint.
        self.canvas.on_client_ready(self._paint)
        self._paint()
        self.refresh()

    # the canvas: strokes are kept here and painted there; the models only see the Python copy
    def _pen(self) -> None:
        self.canvas.stroke_style = "white"
        self.canvas.fill_style = "white"
        self.canvas.line_width = self.controls["pen"].value
        self.canvas.line_cap = "round"
        self.canvas.line_join = "round"

    def _paint(self) -> None:
        from ipycanvas import canvas as ipycanvas_canvas, hold_canvas

        # ipycanvas tells the page which canvas to draw on only when the target changes, so a page that connected
        # after the first drawing (Voila) would drop every command: make the next command name its canvas again.
        manager = getattr(ipycanvas_canvas, "_CANVAS_MANAGER", None)
        if hasattr(manager, "_current_canvas"):
            manager._current_canvas = None
        with hold_canvas():
            self.canvas.clear()
            self.canvas.fill_style = "black"
            self.canvas.fill_rect(0, 0, self.size, self.size)
            self._pen()
            for line in self.strokes:
                if len(line) == 1:
                    self.canvas.fill_circle(line[0][0], line[0][1], self.controls["pen"].value / 2)
                else:
                    self.canvas.stroke_lines(line)

    def _mouse_down(self, x: float, y: float) -> None:
        self._drawing = True
        self.strokes.append([(x, y)])
        self._pen()
        self.canvas.fill_circle(x, y, self.controls["pen"].value / 2)

    def _mouse_move(self, x: float, y: float) -> None:
        if self._drawing:
            (px, py) = self.strokes[-1][-1]
            self.strokes[-1].append((x, y))
            self.canvas.stroke_line(px, py, x, y)

    def _mouse_up(self, x: float, y: float) -> None:
        if self._drawing:  # the models run once per stroke, when the button is released
            self._drawing = False
            self.refresh()

    def _changed(self, change) -> None:
        if change.owner is self.controls["pen"]:
            self._paint()
        self.refresh()

    def draw_strokes(self, strokes: Sequence[Sequence[tuple[float, float]]]) -> dict:
        """Add polylines (lists of (x, y) canvas pixels, as if drawn with the mouse); returns the new state."""
        self.strokes.extend([[(float(x), float(y)) for x, y in line] for line in strokes if len(line)])
        self._paint()
        return self.refresh()

    def clear(self) -> dict:
        """Erase the drawing; returns the new state."""
        self.strokes = []
        self._paint()
        return self.refresh()

    def compute(self) -> dict:
        factor = self.RASTER / self.size
        gray = rasterize_strokes([[(x * factor, y * factor) for x, y in line] for line in self.strokes],
                                 (self.RASTER, self.RASTER), self.controls["pen"].value * factor)
        digit = mnist_preprocess(gray)
        color = self.controls["color"].value
        background = texture_from_noise(self._noise)
        image = colorize(digit[None], torch.tensor([color]), background)[0]
        probabilities, predictions, cams, _ = model_outputs(self.models, image, self.cam)
        # The recolor test, rendered exactly: the same strokes and background in each palette color.
        recolored = colorize(digit.expand(NUM_CLASSES, -1, -1), torch.arange(NUM_CLASSES),
                             background.expand(NUM_CLASSES, -1, -1, -1))
        recolor_probabilities = {name: _probabilities(model, recolored) for name, model in self.models.items()}
        return {"strokes": [list(line) for line in self.strokes], "digit": digit, "color": color, "image": image,
                "probabilities": probabilities, "predictions": predictions, "cams": cams, "recolored": recolored,
                "recolor_predictions": {n: p.argmax(dim=1) for n, p in recolor_probabilities.items()},
                "recolor_confidences": {n: p.amax(dim=1) for n, p in recolor_probabilities.items()}}

    def describe(self, state: dict) -> str:
        if not state["strokes"]:
            return _lines("draw a digit in the black square (hold the mouse button down)", [])
        rows = [f"{html.escape(name)}: {state['predictions'][name]} "
                f"({100 * float(state['probabilities'][name].max()):.1f}%); in the ten colors: "
                + " ".join(str(int(p)) for p in state["recolor_predictions"][name]) for name in self.models]
        return _lines(f"your digit in {COLOR_NAMES[state['color']]}", rows)

    def draw(self, state: dict) -> None:
        self.figures[0].update(state["image"], state["probabilities"], state["cams"], title="as MNIST, colored")
        self.figures[1].update(state["recolored"], {n: p.tolist() for n, p in state["recolor_predictions"].items()},
                               {n: c.tolist() for n, c in state["recolor_confidences"].items()})


def draw_digit(models: Mapping[str, nn.Module], color: int = 0, size: int = 280, pen: int | None = None,
               seed: int = 0, cam: Callable = grad_cam, device: str | torch.device | None = None) -> DrawDigit:
    """A canvas to draw a digit on; it is made like MNIST (``mnist_preprocess``), painted in ``color`` over a textured
    background, and shown with every model's prediction, Grad-CAM and the ten-color recolor test.

    ``draw_strokes([[(x, y), ...], ...])`` draws from code, ``clear()`` erases. state: image (3, 28, 28),
    digit (28, 28), predictions, probabilities, cams, recolor_predictions {model: (10,)}. ``device``: None keeps
    each model where it is; else the models are moved there in place.
    """
    return DrawDigit(models, color, size, pen, seed, cam, device)


# ----------------------------------------------------------------------------- SAE latents


class LatentBrowser(Explorer):
    """Browse the latents of a sparse autoencoder: the images that activate the chosen latent most."""

    def __init__(self, images, activations, selectivity=None, labels=None, color_ids=None, k: int = 8,
                 latent: int | None = None) -> None:
        self.images = _check_images(images)
        self.activations = torch.as_tensor(activations).detach().float().cpu()
        if self.activations.dim() != 2 or len(self.activations) != len(self.images):
            raise ValueError(f"activations must be (N, latents) for the {len(self.images)} images, got "
                             f"{tuple(self.activations.shape)}")
        self.selectivity = None if selectivity is None else torch.as_tensor(selectivity).detach().float().cpu()
        self.labels = None if labels is None else torch.as_tensor(labels).long().cpu()
        self.color_ids = None if color_ids is None else torch.as_tensor(color_ids).long().cpu()
        self.k = min(int(k), len(self.images))
        self.top = top_activating(self.activations, self.k)
        alive = torch.nonzero((self.activations > 0).any(dim=0)).flatten()
        if self.selectivity is not None:  # most color-selective first
            alive = alive[torch.sort(self.selectivity[alive], descending=True, stable=True).indices]
        if len(alive) == 0:
            raise ValueError("no latent is ever active on these images: nothing to browse")
        options = [(f"{j}" + ("" if self.selectivity is None else f" ({float(self.selectivity[j]):+.2f})"), int(j))
                   for j in alive]
        controls = {"latent": widgets.Dropdown(options=options, value=int(alive[0]) if latent is None else int(latent),
                                               description="latent", style=_WIDE)}
        super().__init__("latent", controls, [plots.ImageGrid(["top images"], self.k, pyplot=False,
                                                              cell=(1.0, 1.6))])
        self.refresh()

    def compute(self) -> dict:
        j = self.controls["latent"].value
        rows = self.top[j]
        column = self.activations[:, j]
        return {"latent": j, "top": rows, "top_activations": column[rows],
                "fire_rate": float((column > 0).float().mean()),
                "selectivity": None if self.selectivity is None else float(self.selectivity[j])}

    def _caption(self, row: int, value: float) -> str:
        """The activation, then the image's digit and color when known."""
        about = ([] if self.labels is None else [str(int(self.labels[row]))]) + (
            [] if self.color_ids is None else [COLOR_NAMES[int(self.color_ids[row])]])
        return f"{value:.2f}" + ("\n" + " ".join(about) if about else "")

    def describe(self, state: dict) -> str:
        header = f"latent {state['latent']}"
        if state["selectivity"] is not None:
            leaning = "more color than digit" if state["selectivity"] > 0 else "more digit than color"
            header += f": selectivity {state['selectivity']:+.2f} ({leaning})"
        rows = [f"fires on {100 * state['fire_rate']:.1f}% of the images"]
        if self.labels is not None:
            rows.append("top images' digits: " + " ".join(str(int(self.labels[r])) for r in state["top"]))
        if self.color_ids is not None:
            rows.append("top images' colors: " + ", ".join(COLOR_NAMES[int(self.color_ids[r])] for r in state["top"]))
        return _lines(header, rows)

    def draw(self, state: dict) -> None:
        captions = [self._caption(int(r), float(v)) for r, v in zip(state["top"], state["top_activations"])]
        self.figures[0].update({"top images": self.images[state["top"]]}, {"top images": captions},
                               title=f"latent {state['latent']}: its {self.k} most activating images")


def latent_browser(images: torch.Tensor, activations: torch.Tensor, selectivity: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None, color_ids: torch.Tensor | None = None, k: int = 8,
                   latent: int | None = None) -> LatentBrowser:
    """Pick an SAE latent (``latent``; alive ones, most color-selective first) and see its top-``k`` images.

    images (N, 3, 28, 28); activations (N, latents), e.g. ``sae.encode(model.features(images))``; optional
    selectivity (latents,), labels and color ids (N,) for the captions. state: latent, top (k,), top_activations
    (k,), fire_rate, selectivity.
    """
    return LatentBrowser(images, activations, selectivity, labels, color_ids, k, latent)
