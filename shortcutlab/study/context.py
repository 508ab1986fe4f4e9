"""One run of the study: its configuration and the state its tasks share (splits, models, results, figures)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from shortcutlab import plots
from shortcutlab.data import COLOR_NAMES, DOMINANT_RATE, ColoredMNIST
from shortcutlab.devices import resolve_device
from shortcutlab.metrics import recolor_test
from shortcutlab.study.cache import (ABLATION_MODELS, CONTROL_MODELS, REFERENCE_MODELS, STUDY_MODELS, TrainedModel,
                                     load_or_train, sweep_rate)
from shortcutlab.train import evaluate


@dataclass
class StudyConfig:
    """What ``shortcutlab reproduce`` was asked for."""

    data: str | None = None  # MNIST folder, "embedded", or None (env var / download / embedded)
    out: Path = Path("artifacts")
    tasks: tuple[int, ...] = (0, 1)
    quick: bool = False
    force: bool = False
    quiet: bool = False
    seed: int = 42
    device: str = "auto"  # auto (CUDA when available), cpu, cuda or cuda:<index>
    adversarial: bool = False  # also train and measure the adversarially trained control (opt-in: the costliest model)
    full_curves: bool = False  # robustness at eps 0 to 0.3 with the gradient-masking checks, not three budgets
    grl_ablation: bool = False  # also train GRL without recolored data and at two other strengths (task 4)
    dominant_rates: tuple[float, ...] = ()  # train the sweep's models at each of these dominant-color rates

    def record(self) -> dict:
        """The configuration as results.json keeps it (paths as text)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Study:
    """Shared state of one run: splits and trained models (on ``device``), results and figures."""

    config: StudyConfig
    results: dict = field(default_factory=dict)
    splits: dict[tuple, ColoredMNIST] = field(default_factory=dict)
    models: dict[tuple[str, float | None], TrainedModel] = field(default_factory=dict)
    measured: dict[tuple[str, float | None], dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.config.device)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The models this run trains and compares: the study's three, the controls (adversarial training opt-in)."""
        return (*STUDY_MODELS, *(n for n in CONTROL_MODELS if n != "adversarial" or self.config.adversarial))

    @property
    def table_names(self) -> tuple[str, ...]:
        """Every model of task 4's accuracy table: the compared ones, the references, the GRL ablation if asked for."""
        return (*self.model_names, *REFERENCE_MODELS, *(ABLATION_MODELS if self.config.grl_ablation else ()))

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def split(self, name: str, bias: float = DOMINANT_RATE, grayscale: bool = False) -> ColoredMNIST:
        """The split ``name`` (train, val, hard_test) at dominant-color rate ``bias`` (the hard test has none),
        white-stroked if ``grayscale``, rendered on the study's device."""
        key = (name, 0.0 if name == "hard_test" else float(bias), grayscale)
        if key not in self.splits:
            self.splits[key] = ColoredMNIST(name, root=self.config.data, seed=self.config.seed, device=self.device,
                                            bias=bias, grayscale=grayscale)
        return self.splits[key]

    def log(self, message: str) -> None:
        if not self.config.quiet:
            print(f"[shortcutlab] {message}", flush=True)

    def figure(self, name: str, fig) -> str:
        """Save a figure as figures/<name>.png and return its path relative to the output folder."""
        relative = f"figures/{name}.png"
        plots.save(fig, self.out / relative)
        self.results.setdefault("figures", {})[name] = relative
        return relative

    def trained(self, name: str, rate: float | None = None) -> TrainedModel:
        """The trained model ``name`` at dominant-color rate ``rate`` (default: its own) on the study's device, from
        models/ when its spec and data match, else trained there (``load_or_train``)."""
        key = (name, sweep_rate(name, rate))
        if key not in self.models:
            self.models[key] = load_or_train(name, self.split, self.out / "models", seed=self.config.seed,
                                             device=self.device, rate=key[1], force=self.config.force,
                                             quiet=self.config.quiet, log=self.log)
        return self.models[key]

    def model(self, name: str) -> nn.Module:
        """The trained model ``name`` at its own rate; its training record goes into results["models"][name]."""
        trained = self.trained(name)
        models = self.results.setdefault("models", {})
        if name not in models:
            models[name] = trained.record()
        return trained.model

    def measure(self, name: str, rate: float | None = None) -> dict:
        """Train or load ``name`` at ``rate``; its training record with easy-val / hard-test accuracy (on the splits
        it was trained for), hard-test confusion and shortcut rate; measured once per run."""
        key = (name, sweep_rate(name, rate))
        if key in self.measured:
            return self.measured[key]
        trained = self.trained(name, rate)
        options = trained.spec.data_options()
        hard_split = self.split("hard_test", **options)
        val, hard = evaluate(trained.model, self.split("val", **options)), evaluate(trained.model, hard_split)
        # How often a hard-test prediction is the digit whose dominant color the image has: the shortcut rate.
        color_ids = hard_split.color_ids.cpu()
        self.measured[key] = {
            **trained.record(), "easy_val_accuracy": round(val.accuracy, 4),
            "hard_test_accuracy": round(hard.accuracy, 4),
            "hard_test_predicts_color_rate": round(float((hard.predictions == color_ids).float().mean()), 4),
            "hard_test_confusion": hard.confusion.tolist()}
        return self.measured[key]

    def evaluate_model(self, name: str) -> dict:
        """``measure(name)`` at the model's own rate, recorded as results["models"][name]."""
        entry = self.measure(name)
        self.results.setdefault("models", {})[name] = entry
        return entry

    def proof_image(self, digit: int = 1) -> torch.Tensor:
        """The first easy-validation image (3, 28, 28) of ``digit`` (the report's recolor proofs use a 1)."""
        images, labels, _ = self.split("val").tensors()
        return images[int(torch.nonzero(labels == digit)[0])]

    def record_recolor_test(self, key: str, names: tuple[str, ...], digit: int = 1) -> None:
        """Recolor the proof digit into all ten colors; record and draw each model's predictions."""
        images, predictions, confidences = recolor_test({n: self.model(n) for n in names}, self.proof_image(digit))
        self.results[key] = {"digit": digit, "colors": list(COLOR_NAMES), "predictions": predictions,
                             "correct": {n: sum(p == digit for p in v) for n, v in predictions.items()},
                             "distinct_predictions": {n: len(set(v)) for n, v in predictions.items()}}
        self.figure(key, plots.recolor_proof(images.cpu(), predictions, confidences, digit))
