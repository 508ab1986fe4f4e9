"""One run of the study: its configuration and the state its tasks share (splits, models, results, figures)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from shortcutlab import plots
from shortcutlab.data import COLOR_NAMES, ColoredMNIST
from shortcutlab.devices import resolve_device
from shortcutlab.metrics import recolor_test
from shortcutlab.study.cache import CONTROL_MODELS, STUDY_MODELS, load_or_train
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

    def record(self) -> dict:
        """The configuration as results.json keeps it (paths as text)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Study:
    """Shared state of one run: splits and trained models (on ``device``), results and figures."""

    config: StudyConfig
    results: dict = field(default_factory=dict)
    splits: dict[str, ColoredMNIST] = field(default_factory=dict)
    models: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.config.device)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The models this run trains and compares: the study's three, the controls (adversarial training opt-in)."""
        return (*STUDY_MODELS, *(n for n in CONTROL_MODELS if n != "adversarial" or self.config.adversarial))

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def split(self, name: str) -> ColoredMNIST:
        """The split ``name`` (train, val, hard_test), rendered on the study's device."""
        if name not in self.splits:
            self.splits[name] = ColoredMNIST(name, root=self.config.data, seed=self.config.seed, device=self.device)
        return self.splits[name]

    def log(self, message: str) -> None:
        if not self.config.quiet:
            print(f"[shortcutlab] {message}", flush=True)

    def figure(self, name: str, fig) -> str:
        """Save a figure as figures/<name>.png and return its path relative to the output folder."""
        relative = f"figures/{name}.png"
        plots.save(fig, self.out / relative)
        self.results.setdefault("figures", {})[name] = relative
        return relative

    def model(self, name: str) -> nn.Module:
        """The trained model ``name`` on the study's device: from models/<name>.pt when its spec and data
        match, else trained; its training record goes into results["models"][name]."""
        if name not in self.models:
            trained = load_or_train(name, self.split("train"), {s: self.split(s) for s in ("val", "hard_test")},
                                    self.out / "models", seed=self.config.seed, device=self.device,
                                    force=self.config.force, quiet=self.config.quiet, log=self.log)
            self.results.setdefault("models", {})[name] = trained.record()
            self.models[name] = trained.model
        return self.models[name]

    def evaluate_model(self, name: str) -> dict:
        """Train or load ``name``; record easy-val / hard-test accuracy, hard-test confusion and shortcut rate."""
        model = self.model(name)
        hard_split = self.split("hard_test")
        val, hard = evaluate(model, self.split("val")), evaluate(model, hard_split)
        entry = self.results["models"][name]
        # How often a hard-test prediction is the digit whose dominant color the image has: the shortcut rate.
        color_ids = hard_split.color_ids.cpu()
        entry.update(easy_val_accuracy=round(val.accuracy, 4), hard_test_accuracy=round(hard.accuracy, 4),
                     hard_test_predicts_color_rate=round(float((hard.predictions == color_ids).float().mean()), 4),
                     hard_test_confusion=hard.confusion.tolist())
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
