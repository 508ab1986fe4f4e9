"""The study's three models, its controls, references and ablations: how each is built and trained, and the cache of
trained ones (``pretrained``), keyed by recipe, seed, dominant-color rate and data."""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from shortcutlab.data import DOMINANT_RATE, EMBEDDED, UNINFORMATIVE_RATE, ColoredMNIST
from shortcutlab.devices import resolve_device
from shortcutlab.errors import ShortcutlabError
from shortcutlab.exported import load_exported, shipped_model_path
from shortcutlab.models import GRLNet, SimpleCNN
from shortcutlab.train import (AdversarialTraining, Consistency, GradientReversal, History, Recipe, RecolorAugmentation,
                               erm, fit, load_checkpoint, save_checkpoint)

STUDY_MODELS = ("cheater", "consistency", "grl")
# Controls beside the study's three: what recolor augmentation alone does (lesson 4), and a model trained for
# worst-case robustness (lesson 5).
CONTROL_MODELS = ("augmentation", "adversarial")
# How far from the ceiling: the same network and schedule where color carries no label information, and on white
# strokes (train and test), where there is no color at all.
REFERENCE_MODELS = ("unbiased", "grayscale")
# What GRL's parts do: its adversary without the recolored data, and its strength (the color loss weight).
ABLATION_MODELS = ("grl_no_augmentation", "grl_weight_0.1", "grl_weight_2", "grl_no_augmentation_weight_0.1",
                   "grl_no_augmentation_weight_2")
# Trained at every rate of --dominant-rates: plain cross-entropy on the whole split, the two methods, and GRL without
# recolored data (the recipe whose color labels become the digit labels at rate 1).
SWEEP_MODELS = ("erm", "consistency", "grl", "grl_no_augmentation")
MODEL_TITLES = {"cheater": "Cheater baseline", "consistency": "Color consistency", "grl": "GRL + augmentation",
                "augmentation": "Augmentation only", "adversarial": "Adversarial training + augmentation",
                "unbiased": "Unbiased colors", "grayscale": "Grayscale (shape only)", "erm": "ERM, whole split",
                "grl_no_augmentation": "GRL, own colors (no augmentation)",
                "grl_weight_0.1": "GRL + augmentation, color weight 0.1",
                "grl_weight_2": "GRL + augmentation, color weight 2",
                "grl_no_augmentation_weight_0.1": "GRL, own colors, color weight 0.1",
                "grl_no_augmentation_weight_2": "GRL, own colors, color weight 2"}
CURVE_SAMPLES = 2000  # per-epoch curves use the first 2,000 val / hard-test samples; final numbers use all


@dataclass(frozen=True)
class ModelSpec:
    """How one model of the study is built and trained."""

    factory: Callable[[], nn.Module]
    recipe: Recipe
    epochs: int
    lr: float
    batch_size: int
    train_limit: int | None = None  # None: the whole train split
    lr_milestones: tuple[int, ...] = ()  # epochs (0-based) at whose start the learning rate drops 10x
    one_cycle: bool = False  # instead: the one-cycle policy, peaking at lr (see fit)
    bias: float = DOMINANT_RATE  # dominant-color rate of the train and val splits it trains and is selected on
    grayscale: bool = False  # white strokes in every split, the hard test included

    def fingerprint(self) -> str:
        def name(obj) -> str:  # stable across processes, unlike a function's repr with its address
            return getattr(obj, "__qualname__", None) or repr(obj)

        text = repr((name(self.factory), name(self.recipe), self.epochs, self.lr, self.batch_size, self.train_limit,
                     self.lr_milestones, self.one_cycle, self.bias, self.grayscale))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def data_options(self) -> dict:
        """The ColoredMNIST options of the splits this model trains and is measured on."""
        return {"bias": self.bias, "grayscale": self.grayscale}


# The cheater follows the report: 2,000 images, Adam 1e-3, 5 epochs. Batch 256 (unstated in the report)
# gives 40 updates, enough to learn color, too few to learn shape from the 5% off-color images.
# The debiased models see the whole train split; their recipes randomise colors, so shape is all that helps.
# Every model after the cheater shares the debiased models' schedule, so only the recipe or the data differ: two
# epochs on the one-cycle policy come within 0.2 points of three at a constant lr with a last epoch at lr/10 (full
# MNIST hard test: consistency 98.38% / 98.49%, augmentation 98.37% / 98.45%) in two thirds of the time.
SCHEDULE = {"epochs": 2, "lr": 4e-3, "batch_size": 128, "one_cycle": True}
ERM = ModelSpec(SimpleCNN, erm, **SCHEDULE)


def _grl(color_weight: float, recolor: bool) -> ModelSpec:
    """GRL and its ablations (peak lr 4e-3 chosen on easy val: 97.7% against 97.6% at 6e-3)."""
    return ModelSpec(GRLNet, GradientReversal(color_weight=color_weight, recolor=recolor), **SCHEDULE)


MODEL_SPECS: dict[str, ModelSpec] = {
    "cheater": ModelSpec(SimpleCNN, erm, epochs=5, lr=1e-3, batch_size=256, train_limit=2000),
    "consistency": ModelSpec(SimpleCNN, Consistency(weight=2.0), **SCHEDULE),
    "grl": _grl(0.5, recolor=True),
    # The debiased models' data and schedule without their extra term: what do the objectives add?
    "augmentation": ModelSpec(SimpleCNN, RecolorAugmentation(), **SCHEDULE),
    "adversarial": ModelSpec(SimpleCNN, AdversarialTraining(eps=0.05, alpha=0.02, steps=3, clean_weight=0.5),
                             **SCHEDULE),
    "erm": ERM,
    "unbiased": replace(ERM, bias=UNINFORMATIVE_RATE),
    "grayscale": replace(ERM, grayscale=True),
    "grl_no_augmentation": _grl(0.5, recolor=False),
    "grl_weight_0.1": _grl(0.1, recolor=True),
    "grl_weight_2": _grl(2.0, recolor=True),
    "grl_no_augmentation_weight_0.1": _grl(0.1, recolor=False),
    "grl_no_augmentation_weight_2": _grl(2.0, recolor=False),
}
# A small train split (the 3,600 embedded digits of --quick and of offline machines) needs more passes:
# these settings replace the full-MNIST ones when the train split has fewer than SMALL_TRAIN images.
SMALL_TRAIN = 10_000
SMALL_DATA_SETTINGS: dict[str, dict] = {
    name: {"epochs": 6, "lr_milestones": (5,), "one_cycle": False, "lr": 3e-3 if spec.factory is GRLNet else 2e-3}
    for name, spec in MODEL_SPECS.items() if name != "cheater"}


def spec_for(name: str, train_size: int, rate: float | None = None) -> ModelSpec:
    """The training spec of model ``name`` for a train split of ``train_size`` images, at dominant-color rate ``rate``
    (default: the model's own, the study's 95% but for the unbiased reference)."""
    spec = MODEL_SPECS[name]
    small = train_size < SMALL_TRAIN and name in SMALL_DATA_SETTINGS
    spec = replace(spec, **SMALL_DATA_SETTINGS[name]) if small else spec
    return spec if rate is None else replace(spec, bias=float(rate))


def sweep_rate(name: str, rate: float | None) -> float | None:
    """``rate`` as a model's cache key: None for the model's own rate, however it was asked for (a sweep at 95% reuses
    the study's models)."""
    return None if rate is None or float(rate) == MODEL_SPECS[name].bias else float(rate)


def checkpoint_name(name: str, spec: ModelSpec) -> str:
    """models/<name>.pt at the model's own rate, models/<name>@rate<r>.pt at another (a sweep's)."""
    rate = sweep_rate(name, spec.bias)
    return f"{name}.pt" if rate is None else f"{name}@rate{rate:g}.pt"


@dataclass(frozen=True)
class TrainedModel:
    """A study model on its device, with how it was trained and whether it came from the cache."""

    model: nn.Module
    spec: ModelSpec
    history: History
    cached: bool
    train_size: int

    def record(self) -> dict:
        """The training entry of results.json (settings, time, per-epoch curves)."""
        spec = self.spec
        return {"train_seconds": round(self.history.seconds, 2), "cached": self.cached,
                "train_size": self.train_size, "epochs": spec.epochs, "lr": spec.lr,
                "lr_milestones": list(spec.lr_milestones), "one_cycle": spec.one_cycle, "batch_size": spec.batch_size,
                "recipe": repr(spec.recipe), "dominant_rate": spec.bias, "grayscale": spec.grayscale,
                "history": self.history.metrics}


def _writable(models_dir: Path, name: str) -> None:
    """Fail before training, not after, where the trained model could not be saved (a read-only shared cache)."""
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    if not os.access(models_dir, os.W_OK):
        raise ShortcutlabError(f"the model cache {models_dir} has no usable {name} model and cannot be written to (a "
                               f"read-only shared cache?); train every lesson's model there once, e.g. `shortcutlab "
                               f"reproduce --out {models_dir.parent} --adversarial`, or point SHORTCUTLAB_ARTIFACTS at "
                               "a folder you can write")


SplitSource = Callable[..., ColoredMNIST]  # (split name, bias=, grayscale=) -> that split on the training device


def cache_entry(name: str, split: SplitSource, models_dir: Path, *, seed: int, rate: float | None = None
                ) -> tuple[ModelSpec, Path, dict]:
    """Model ``name``'s spec at ``rate``, its checkpoint path in ``models_dir``, and the meta a checkpoint there must
    hold to be reused (spec fingerprint, seed, data source and sizes)."""
    spec = spec_for(name, len(split("train")), rate)
    train = split("train", **spec.data_options())
    source = train.source
    train_size = len(train) if spec.train_limit is None else min(spec.train_limit, len(train))
    meta = {"spec": spec.fingerprint(), "seed": seed, "source": source.source, "location": source.location,
            "train_size": train_size, "data_size": len(source.labels)}
    return spec, models_dir / checkpoint_name(name, spec), meta


def is_cached(name: str, split: SplitSource, models_dir: Path, *, seed: int, rate: float | None = None) -> bool:
    """Whether ``load_or_train`` would reuse a checkpoint instead of training."""
    _, path, meta = cache_entry(name, split, models_dir, seed=seed, rate=rate)
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("meta") == meta
    except (OSError, RuntimeError, AttributeError, EOFError, pickle.UnpicklingError):
        return False


def load_or_train(name: str, split: SplitSource, models_dir: Path, *, seed: int, device: torch.device,
                  rate: float | None = None, force: bool = False, quiet: bool = False,
                  log: Callable[[str], None] = print) -> TrainedModel:
    """Model ``name`` at dominant-color rate ``rate`` (default its own) loaded from ``models_dir`` when its spec
    (recipe, schedule, rate), seed and data match, else trained on ``split("train", **spec.data_options())``
    (per-epoch curves on the first CURVE_SAMPLES of val and hard test) and saved there.

    Checkpoints hold CPU-independent weights: a model trained on a GPU loads on a CPU and vice versa."""
    spec, path, meta = cache_entry(name, split, models_dir, seed=seed, rate=rate)
    train = split("train", **spec.data_options())
    train_size = meta["train_size"]
    torch.manual_seed(seed)
    # Channels-last, as fit trains it; loading a checkpoint keeps the layout, so cached and fresh models
    # compute the same numbers.
    model = spec.factory().to(device=device, memory_format=torch.channels_last)
    if path.exists() and not force:
        try:
            history, saved = load_checkpoint(path, model)
            if saved == meta:
                log(f"{path.stem}: reusing {path}")
                return TrainedModel(model, spec, history, cached=True, train_size=train_size)
        except (RuntimeError, KeyError, OSError, EOFError, pickle.UnpicklingError):
            pass  # unreadable or from another architecture: retrain below
    _writable(models_dir, name)
    images, labels, color_ids = train.tensors()
    limit = slice(0, spec.train_limit)
    curves = {part: tuple(t[:CURVE_SAMPLES] for t in split(part, **spec.data_options()).tensors())
              for part in ("val", "hard_test")}
    log(f"{path.stem}: training on {train_size} images for {spec.epochs} epochs on {device}")
    history = fit(model, (images[limit], labels[limit], color_ids[limit]), recipe=spec.recipe, epochs=spec.epochs,
                  lr=spec.lr, batch_size=spec.batch_size, seed=seed, lr_milestones=spec.lr_milestones,
                  one_cycle=spec.one_cycle, eval_sets=curves, quiet=quiet, desc=path.stem)
    save_checkpoint(path, model, history, meta)
    return TrainedModel(model, spec, history, cached=False, train_size=train_size)


def default_artifacts(start: Path | None = None) -> Path:
    """Where ``pretrained`` caches models: $SHORTCUTLAB_ARTIFACTS, else the artifacts/ folder of the course
    root (the nearest folder from ``start`` (default: the working directory) up that holds course.yml, so a
    notebook in lessons/ finds what `make reproduce` trained), else ./artifacts."""
    if os.environ.get("SHORTCUTLAB_ARTIFACTS"):
        return Path(os.environ["SHORTCUTLAB_ARTIFACTS"])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "course.yml").is_file():
            return folder / "artifacts"
    return here / "artifacts"


def cached_data(checkpoint: Path) -> str | None:
    """The ``--data`` value a cached model was trained on: its MNIST folder if still there, None (the
    download cache) for a downloaded MNIST, else (no or unreadable checkpoint) the embedded digits."""
    try:
        meta = torch.load(checkpoint, map_location="cpu", weights_only=True).get("meta", {})
    except (OSError, RuntimeError, AttributeError, EOFError, pickle.UnpicklingError):
        return EMBEDDED
    if meta.get("source") == "folder" and meta.get("location") and Path(meta["location"]).is_dir():
        return meta["location"]
    return None if meta.get("source") == "download" else EMBEDDED


def pretrained(name: str, data: str | None = None, out: str | Path | None = None, seed: int = 42,
               quiet: bool = False, device: str | torch.device | None = "auto") -> nn.Module:
    """A trained study model (``cheater``, ``consistency``, ``grl``, a control: ``augmentation``, ``adversarial``, or
    any other of ``MODEL_SPECS``) on ``device`` ("auto": the GPU if there is one), from the ``shortcutlab reproduce`` cache,
    trained on demand (with a progress bar unless ``quiet``).

    ``data`` as for ``--data``; by default the data the cached model was trained on (so a full-MNIST model
    from ``make reproduce ARGS=--data ...`` is reused, never replaced), else the embedded digits.
    ``out`` is the artifacts folder to share (default: ``default_artifacts()``).
    """
    if name not in MODEL_SPECS:
        raise ShortcutlabError(f"no model {name!r}; choose one of {', '.join(MODEL_SPECS)}")
    shipped = shipped_model_path(name)
    if shipped.is_file() and data in (None, EMBEDDED) and out is None and seed == 42:
        return load_exported(shipped, resolve_device(device))  # a student edition's: no training, no cache
    out = Path(out) if out else default_artifacts()
    data = data if data is not None else cached_data(out / "models" / f"{name}.pt")
    target = resolve_device(device)

    @functools.cache  # load_or_train asks for the train split more than once: build each split once
    def build(split_name: str, bias: float, grayscale: bool) -> ColoredMNIST:
        # Splits render only when tensors() is called, i.e. only if the model must be trained.
        return ColoredMNIST(split_name, root=data, seed=seed, device=target, bias=bias, grayscale=grayscale)

    def split(split_name: str, bias: float = DOMINANT_RATE, grayscale: bool = False) -> ColoredMNIST:
        return build(split_name, float(bias), bool(grayscale))

    def log(message: str) -> None:
        if not quiet:
            print(f"[shortcutlab] {message}", flush=True)

    return load_or_train(name, split, out / "models", seed=seed, device=target, quiet=quiet, log=log).model
