"""The whole study end to end: tasks -> trained models (cached) -> results.json, report.md, figures/."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from shortcutlab import plots
from shortcutlab.data import (COLOR_NAMES, NUM_CLASSES, ColoredMNIST, color_given_digit, dominant_color_rate,
                              recolor)
from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import SimpleCNN
from shortcutlab.train import Recipe, erm, evaluate, fit, load_checkpoint, predict_logits, save_checkpoint

# The report's own numbers (spec/colored-mnist-report.txt), shown beside ours in report.md.
REPORT = {
    "dominant_rate": {"train": 0.95, "val": 0.95, "hard_test": 0.0},
    "cheater": {"easy_val_accuracy": 0.95, "hard_test_accuracy": 0.0625, "train_size": 2000, "epochs": 5},
}
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

    def fingerprint(self) -> str:
        def name(obj) -> str:  # stable across processes, unlike a function's repr with its address
            return getattr(obj, "__qualname__", None) or repr(obj)

        text = repr((name(self.factory), name(self.recipe), self.epochs, self.lr, self.batch_size, self.train_limit))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# The cheater follows the report: 2,000 images, Adam 1e-3, 5 epochs. Batch 256 (unstated in the report)
# gives 40 updates, enough to learn color, too few to learn shape from the 5% off-color images.
MODEL_SPECS: dict[str, ModelSpec] = {
    "cheater": ModelSpec(SimpleCNN, erm, epochs=5, lr=1e-3, batch_size=256, train_limit=2000),
}


@dataclass
class StudyConfig:
    data: str | None = None  # MNIST folder, "embedded", or None (env var / download / embedded)
    out: Path = Path("artifacts")
    tasks: tuple[int, ...] = (0, 1)
    quick: bool = False
    force: bool = False
    quiet: bool = False
    seed: int = 42


@dataclass
class Study:
    """Shared state of one run: splits, trained models, results and figures."""

    config: StudyConfig
    results: dict = field(default_factory=dict)
    _splits: dict[str, ColoredMNIST] = field(default_factory=dict)
    _models: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.config.out

    def split(self, name: str) -> ColoredMNIST:
        if name not in self._splits:
            self._splits[name] = ColoredMNIST(name, root=self.config.data, seed=self.config.seed)
        return self._splits[name]

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
        """The trained model ``name``: loaded from models/<name>.pt when its spec and data match, else trained."""
        if name in self._models:
            return self._models[name]
        spec = MODEL_SPECS[name]
        train = self.split("train")
        source = train.source
        meta = {"spec": spec.fingerprint(), "seed": self.config.seed, "source": source.source,
                "train_size": len(train) if spec.train_limit is None else min(spec.train_limit, len(train)),
                "data_size": len(source.labels)}
        path = self.out / "models" / f"{name}.pt"
        torch.manual_seed(self.config.seed)
        model = spec.factory()
        if path.exists() and not self.config.force:
            try:
                history, saved = load_checkpoint(path, model)
                if saved == meta:
                    self.log(f"{name}: reusing {path}")
                    self._record_training(name, history, cached=True, train_size=meta["train_size"])
                    self._models[name] = model
                    return model
            except (RuntimeError, KeyError, OSError):
                pass  # unreadable or from another architecture: retrain below
        images, labels, color_ids = train.tensors()
        limit = slice(0, spec.train_limit)
        curves = {split: tuple(t[:CURVE_SAMPLES] for t in self.split(split).tensors())
                  for split in ("val", "hard_test")}
        self.log(f"{name}: training on {meta['train_size']} images for {spec.epochs} epochs")
        history = fit(model, (images[limit], labels[limit], color_ids[limit]), recipe=spec.recipe,
                      epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size, seed=self.config.seed,
                      eval_sets=curves, quiet=self.config.quiet, desc=name)
        save_checkpoint(path, model, history, meta)
        self._record_training(name, history, cached=False, train_size=meta["train_size"])
        self._models[name] = model
        return model

    def _record_training(self, name: str, history, cached: bool, train_size: int) -> None:
        spec = MODEL_SPECS[name]
        self.results.setdefault("models", {})[name] = {
            "train_seconds": round(history.seconds, 2), "cached": cached, "train_size": train_size,
            "epochs": spec.epochs, "lr": spec.lr, "batch_size": spec.batch_size, "history": history.metrics,
        }


# ----------------------------------------------------------------------------- tasks


def task0_dataset(study: Study) -> None:
    """Colored MNIST: split sizes, dominant-color rates, hard-test color balance, figures 1 and P(color|digit)."""
    splits = {}
    matrices = {}
    for name in ("train", "val", "hard_test"):
        ds = study.split(name)
        entry = {"size": len(ds), "dominant_rate": round(dominant_color_rate(ds.labels, ds.color_ids), 5)}
        if name == "hard_test":
            counts = torch.bincount(ds.color_ids, minlength=NUM_CLASSES)
            # Off-color share per digit: uniform over the nine other colors means 1/9 each.
            offdiag = color_given_digit(ds.labels, ds.color_ids)[~torch.eye(NUM_CLASSES, dtype=torch.bool)]
            entry["color_counts"] = counts.tolist()
            entry["max_deviation_from_uniform_other_colors"] = round(float((offdiag - 1 / 9).abs().max()), 5)
        splits[name] = entry
        matrices[name] = color_given_digit(ds.labels, ds.color_ids)
    source = study.split("train").source
    study.results["data"] = {"source": source.source, "location": source.location, "splits": splits}
    train_images, train_labels, _ = study.split("train").tensors()
    hard_images, hard_labels, _ = study.split("hard_test").tensors()
    study.figure("task0_samples", plots.split_comparison((train_images, train_labels), (hard_images, hard_labels)))
    study.figure("task0_color_given_digit", plots.color_given_digit_heatmaps(
        {"train": matrices["train"], "hard test": matrices["hard_test"]}))


def recolor_sequence(image: torch.Tensor) -> torch.Tensor:
    """One colored digit (3, 28, 28) repainted in all ten palette colors: (10, 3, 28, 28)."""
    return recolor(image.expand(NUM_CLASSES, -1, -1, -1), torch.arange(NUM_CLASSES))


def recolor_test(models: dict[str, nn.Module], image: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    """Each model's prediction and confidence on ``image`` in all ten colors."""
    images = recolor_sequence(image)
    predictions, confidences = {}, {}
    for name, model in models.items():
        probabilities = predict_logits(model, images).softmax(dim=1)
        confidence, predicted = probabilities.max(dim=1)
        predictions[name], confidences[name] = predicted.tolist(), confidence.tolist()
    return images, predictions, confidences


def proof_image(study: Study, digit: int = 1) -> tuple[torch.Tensor, int]:
    """The first easy-validation image of ``digit`` (the report's recolor proofs use a 1)."""
    images, labels, _ = study.split("val").tensors()
    return images[int(torch.nonzero(labels == digit)[0])], digit


def task1_cheater(study: Study) -> None:
    """The cheater baseline: easy-val vs hard-test accuracy, hard-test confusion, recolor proof."""
    model = study.model("cheater")
    val, hard = evaluate(model, study.split("val")), evaluate(model, study.split("hard_test"))
    entry = study.results["models"]["cheater"]
    entry.update(easy_val_accuracy=round(val.accuracy, 4), hard_test_accuracy=round(hard.accuracy, 4),
                 hard_test_confusion=hard.confusion.tolist())
    # How often the hard-test prediction is the digit whose dominant color the image has: the shortcut rate.
    color_ids = study.split("hard_test").color_ids
    entry["hard_test_predicts_color_rate"] = round(float((hard.predictions == color_ids).float().mean()), 4)
    study.figure("task1_cheater_confusion", plots.confusion_matrix_figure(hard.confusion, "cheater, hard test"))
    image, digit = proof_image(study)
    images, predictions, confidences = recolor_test({"cheater": model}, image)
    study.results["recolor_proof"] = {"digit": digit, "colors": list(COLOR_NAMES), "predictions": predictions,
                                      "correct": {n: sum(p == digit for p in v) for n, v in predictions.items()},
                                      "distinct_predictions": {n: len(set(v)) for n, v in predictions.items()}}
    study.figure("task1_recolor_proof", plots.recolor_proof(images, predictions, confidences, digit))


TASKS: dict[int, tuple[str, Callable[[Study], None]]] = {
    0: ("Colored MNIST dataset", task0_dataset),
    1: ("Baseline cheater CNN", task1_cheater),
}


def parse_tasks(text: str) -> tuple[int, ...]:
    """'0,1' -> (0, 1); ShortcutlabError naming the known tasks otherwise."""
    known = ", ".join(map(str, TASKS))
    try:
        tasks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ShortcutlabError(f"--tasks takes comma-separated task numbers from {known}; got {text!r}") from None
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise ShortcutlabError(f"unknown task(s) {unknown or text!r}; this version runs tasks {known}")
    return tasks


# ----------------------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def render_report(results: dict) -> str:
    """report.md: the report's tables with its numbers beside ours, and every figure embedded."""
    lines = ["# Colored MNIST: shortcut learning, reproduced with shortcutlab", ""]
    data = results.get("data")
    if data:
        splits = data["splits"]
        lines += ["## Task 0: Colored MNIST", "",
                  f"Data source: **{data['source']}** (`{data['location']}`).", "",
                  "| Split | Size | Dominant color rate (report) | Dominant color rate (ours) |",
                  "|---|---|---|---|"]
        for name, entry in splits.items():
            lines.append(f"| {name} | {entry['size']:,} | {_pct(REPORT['dominant_rate'][name])} | "
                         f"{_pct(entry['dominant_rate'])} |")
        hard = splits.get("hard_test", {})
        if "max_deviation_from_uniform_other_colors" in hard:
            lines += ["", f"Hard-test colors per digit deviate from uniform-over-the-other-nine (1/9) by at most "
                          f"{hard['max_deviation_from_uniform_other_colors']:.4f}."]
        lines += [""]
    cheater = results.get("models", {}).get("cheater")
    if cheater and "easy_val_accuracy" in cheater:
        report = REPORT["cheater"]
        lines += ["## Task 1: Baseline cheater CNN", "",
                  f"SimpleCNN (3 conv + 2 FC), {cheater['train_size']:,} training images, Adam {cheater['lr']}, "
                  f"{cheater['epochs']} epochs, batch {cheater['batch_size']}; trained in "
                  f"{cheater['train_seconds']:.1f} s{' (cached)' if cheater['cached'] else ''}.", "",
                  "| Split | Report | Ours |", "|---|---|---|",
                  f"| Easy validation | ~{_pct(report['easy_val_accuracy'])} | {_pct(cheater['easy_val_accuracy'])} |",
                  f"| Hard test | {_pct(report['hard_test_accuracy'])} | {_pct(cheater['hard_test_accuracy'])} |", "",
                  f"On the hard test the cheater predicts the digit whose dominant color the image has "
                  f"{_pct(cheater['hard_test_predicts_color_rate'])} of the time."]
        proof = results.get("recolor_proof")
        if proof:
            lines += ["", f"Recolor proof: the same digit {proof['digit']} in ten colors is classified correctly "
                          f"{proof['correct']['cheater']}/10 times, with {proof['distinct_predictions']['cheater']} "
                          f"distinct predictions (report: 10 different classes)."]
        lines += [""]
    figures = results.get("figures", {})
    if figures:
        lines += ["## Figures", ""]
        lines += [f"### {name}\n\n![{name}]({path})\n" for name, path in figures.items()]
    timing = results.get("timing", {})
    if timing:
        per_task = ", ".join(f"task {t}: {s:.1f} s" for t, s in timing.get("tasks", {}).items())
        lines += ["## Timing", "", f"Total {timing['total_seconds']:.1f} s ({per_task}) on {timing['machine']}.", ""]
    return "\n".join(lines)


def run_study(config: StudyConfig) -> dict:
    """Run the chosen tasks, write results.json, report.md and figures/ into ``config.out``; return results."""
    start = time.perf_counter()
    out = Path(config.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    study = Study(config)
    study.results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    timings = {}
    for task in config.tasks:
        title, run = TASKS[task]
        study.log(f"task {task}: {title}")
        task_start = time.perf_counter()
        run(study)
        timings[str(task)] = round(time.perf_counter() - task_start, 2)
    study.results["timing"] = {"total_seconds": round(time.perf_counter() - start, 2), "tasks": timings,
                               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads"}
    (out / "results.json").write_text(json.dumps(study.results, indent=2))
    (out / "report.md").write_text(render_report(study.results))
    study.log(f"done in {study.results['timing']['total_seconds']:.1f} s: {out / 'report.md'}")
    return study.results


def default_artifacts() -> Path:
    """Where ``pretrained`` caches models: $SHORTCUTLAB_ARTIFACTS, else ./artifacts."""
    import os

    return Path(os.environ.get("SHORTCUTLAB_ARTIFACTS", "artifacts"))


def pretrained(name: str, data: str | None = None, out: str | Path | None = None, seed: int = 42,
               quiet: bool = False) -> nn.Module:
    """A trained study model (``cheater``, ...) from the ``shortcutlab reproduce`` cache, trained on demand.

    ``data`` as for ``--data`` (default: the embedded digits); ``out`` the artifacts folder to share.
    """
    if name not in MODEL_SPECS:
        raise ShortcutlabError(f"no model {name!r}; choose one of {', '.join(MODEL_SPECS)}")
    from shortcutlab.data import EMBEDDED

    config = StudyConfig(data=data if data is not None else EMBEDDED, out=Path(out) if out else default_artifacts(),
                         seed=seed, quiet=quiet)
    return Study(config).model(name)
