"""The study over several seeds (``reproduce --seeds N``): every number as a mean with a 95% t-interval over the
seeds, and a comparison claimed only where the interval of the seed-paired difference excludes 0."""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from scipy import stats

from shortcutlab import plots
from shortcutlab.study import sweep
from shortcutlab.study.cache import ABLATION_MODELS, CONTROL_MODELS, MODEL_TITLES, REFERENCE_MODELS, STUDY_MODELS
from shortcutlab.study.context import StudyConfig
from shortcutlab.study.formatting import pct
from shortcutlab.study.task2_actmax import ActmaxSettings
from shortcutlab.study.task3_gradcam import GradCamSettings
from shortcutlab.study.task4_debiasing import REPORT_ACCURACY
from shortcutlab.study.task5_attacks import AttackSettings, RobustnessSettings
from shortcutlab.study.task6_sae import SAESettings

CONFIDENCE = 0.95
# Numbers that describe a run rather than measure a model, never averaged: every field of a task's settings (each
# task records its settings beside its measures) and the run's own records.
RUN_RECORDS = {"config", "timing", "figures", "history", "train_seconds", "cached", "train_size", "recipe",
               "lr_milestones", "seed", "digit", "example", "predictions", "hard_test_confusion", "splits", "data",
               "d_in", "d_hidden", "train_samples", "dominant_rate", "rates", "pass_mark"}
NOT_MEASURES = RUN_RECORDS | {f.name for settings in (ActmaxSettings, GradCamSettings, AttackSettings,
                                                      RobustnessSettings, SAESettings) for f in fields(settings)}


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and its two-sided t-interval [low, high] at CONFIDENCE (a point when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    def excludes(self, value: float = 0.0) -> bool:
        """Whether the interval rules ``value`` out: never with fewer than two seeds, nor with no spread at all (the
        seeds agreeing to the last image says more about the accuracies' steps of 1 / N images than about chance)."""
        return self.n >= 2 and self.high > self.low and (self.low > value or self.high < value)

    def text(self) -> str:
        """A fraction as '98.50% ± 0.12% (n = 5)' or, for one seed, '98.50%'."""
        if self.n < 2:
            return pct(self.mean)
        return f"{pct(self.mean)} ± {pct(self.high - self.mean)} (n = {self.n})"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` with its Student-t interval: mean ± t_{(1+confidence)/2, n-1} * s / sqrt(n)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("a t-interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, mean, mean, len(values))
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


@dataclass(frozen=True)
class Comparison:
    """``first`` against ``second`` on one measure: the seed-paired difference (first - second) and the verdict."""

    first: str
    second: str
    difference: Interval

    @property
    def verdict(self) -> str:
        """'higher', 'lower', or 'not distinguishable at N seeds' (the interval contains 0)."""
        if self.difference.excludes(0.0):
            return "higher" if self.difference.mean > 0 else "lower"
        return f"not distinguishable at {self.difference.n} seed{'s' if self.difference.n != 1 else ''}"


def compare(first: str, second: str, first_values: Sequence[float], second_values: Sequence[float] | float
            ) -> Comparison:
    """Compare per-seed values, paired by seed, or against a constant (e.g. the report's number)."""
    seconds = [second_values] * len(first_values) if isinstance(second_values, (int, float)) else second_values
    if len(seconds) != len(first_values):
        raise ValueError(f"paired comparison needs one value per seed each; got {len(first_values)} and "
                         f"{len(seconds)}")
    return Comparison(first, second, t_interval([a - b for a, b in zip(first_values, seconds)]))


def measures(results: dict) -> dict[str, float]:
    """Every number of one seed's results.json that measures a model, by path ('models.grl.hard_test_accuracy',
    'robustness.models.grl.robust_accuracy.3'); run settings, timings, curves and confusions are left out."""
    found: dict[str, float] = {}

    def walk(value, path: tuple[str, ...]) -> None:
        if path and path[-1] in NOT_MEASURES:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*path, str(index)))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[".".join(path)] = float(value)

    walk(results, ())
    return found


def summarise(per_seed: dict[int, dict]) -> dict:
    """results.json's ``across_seeds``: each measure's per-seed values and interval (measures every seed has), and
    the comparisons report.md states."""
    seeds = sorted(per_seed)
    found = [measures(per_seed[s]) for s in seeds]
    shared = [path for path in found[0] if all(path in f for f in found[1:])]
    values = {path: [f[path] for f in found] for path in shared}
    intervals = {path: asdict(t_interval(v)) for path, v in values.items()}
    return {"seeds": seeds, "confidence": CONFIDENCE, "values": values, "intervals": intervals,
            "comparisons": [asdict(c) | {"verdict": c.verdict} for c in comparisons(values)]}


def comparisons(values: dict[str, list[float]]) -> list[Comparison]:
    """Hard-test accuracy of every pair of debiased models, controls and references, of each GRL ablation against GRL,
    and of each method against the report's."""
    def hard(name: str) -> list[float] | None:
        return values.get(f"models.{name}.hard_test_accuracy")

    names = [n for n in (*STUDY_MODELS[1:], *CONTROL_MODELS, *REFERENCE_MODELS) if hard(n)]
    found = [compare(MODEL_TITLES[a], MODEL_TITLES[b], hard(a), hard(b))
             for i, a in enumerate(names) for b in names[i + 1:]]
    found += [compare(MODEL_TITLES[n], MODEL_TITLES["grl"], hard(n), hard("grl"))
              for n in ABLATION_MODELS if hard(n) and hard("grl")]
    found += [compare(MODEL_TITLES[n], f"the report ({pct(REPORT_ACCURACY[n]['hard_test_accuracy'])})", hard(n),
                      REPORT_ACCURACY[n]["hard_test_accuracy"]) for n in names if n in REPORT_ACCURACY]
    return found


def render(summary: dict, folders: dict[int, str]) -> str:
    """report.md of a several-seed run: the headline measures with their intervals, the comparisons, the seeds."""
    seeds, intervals = summary["seeds"], summary["intervals"]
    n = len(seeds)
    lines = ["# Colored MNIST: shortcut learning, reproduced with shortcutlab over several seeds", "",
             f"{n} seeds ({', '.join(map(str, seeds))}): each number is the mean over seeds ± the half-width of its "
             f"{CONFIDENCE:.0%} t-interval (Student's t, n - 1 degrees of freedom). A difference is claimed only "
             f"where the {CONFIDENCE:.0%} interval of the seed-paired difference excludes 0.", "",
             "| Model | Easy val | Hard test | 7 -> 3 attack success | Robust accuracy at eps 0.05 |",
             "|---|---|---|---|---|"]

    def cell(path: str) -> str:
        return Interval(**intervals[path]).text() if path in intervals else "-"

    grid = summary.get("eps_grid") or []
    for name in (*STUDY_MODELS, *CONTROL_MODELS, *REFERENCE_MODELS, *ABLATION_MODELS):
        if f"models.{name}.hard_test_accuracy" not in intervals:
            continue
        robust = cell(f"robustness.models.{name}.robust_accuracy.{grid.index(0.05)}") if 0.05 in grid else "-"
        lines.append(f"| {MODEL_TITLES[name]} | {cell(f'models.{name}.easy_val_accuracy')} | "
                     f"{cell(f'models.{name}.hard_test_accuracy')} | {cell(f'attack.models.{name}.success_rate')} | "
                     f"{robust} |")
    rates = summary.get("rates")
    if rates:
        lines += ["", "## Correlation sweep (hard test)", "", *sweep.table_head(rates)]
        for name in summary["sweep_models"]:
            lines.append(f"| {MODEL_TITLES[name]} | " + " | ".join(
                cell(f"sweep.models.{name}.hard_test_accuracy.{i}") for i in range(len(rates))) + " |")
    if summary.get("figures"):
        lines += ["", *[f"![{name}]({path})" for name, path in summary["figures"].items()]]
    lines += ["", "## Comparisons (hard test)", ""]
    for c in summary["comparisons"]:
        difference = Interval(**c["difference"])
        lines.append(f"- {c['first']} vs {c['second']}: {c['verdict']} (difference "
                     f"{difference.mean * 100:+.2f} points, interval [{difference.low * 100:+.2f}, "
                     f"{difference.high * 100:+.2f}])")
    lines += ["", "## Each seed", "", *[f"- seed {s}: [{folders[s]}/report.md]({folders[s]}/report.md)"
                                          for s in seeds], "",
              "Every measure of every seed, with its interval, is in results.json (`across_seeds`).", ""]
    return "\n".join(lines)


def _band_figure(out: Path, name: str, intervals: dict, models: list[str], path: str, xs: list[float], draw) -> str:
    """A figure of each model's mean over seeds along ``xs`` (measure ``path``.<i>) with its interval as a band, saved
    as out/figures/<name>.png; returns its path relative to ``out``."""
    series, bands = {}, {}
    for model in models:
        points = [Interval(**intervals[f"{path.format(model)}.{i}"]) for i in range(len(xs))
                  if f"{path.format(model)}.{i}" in intervals]
        if len(points) == len(xs):
            series[MODEL_TITLES[model]] = (xs, [p.mean for p in points])
            bands[MODEL_TITLES[model]] = ([p.low for p in points], [p.high for p in points])
    relative = f"figures/{name}.png"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    plots.save(draw(series, bands), out / relative)
    return relative


def run_seeds(config: StudyConfig, count: int, run_one) -> dict:
    """Run the study once per seed (config.seed, config.seed + 1, ...) into out/seeds/seed-<s>/ with ``run_one``
    (run_study), then write out/results.json and out/report.md across the seeds; return the summary results."""
    if count < 2:
        raise ValueError("run_seeds is for two or more seeds; one seed is a plain run")
    out = Path(config.out)
    per_seed, folders = {}, {}
    for seed in range(config.seed, config.seed + count):
        folders[seed] = f"seeds/seed-{seed}"
        per_seed[seed] = run_one(replace(config, seed=seed, out=out / folders[seed]))
    summary = summarise(per_seed)
    first = per_seed[config.seed]
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    if first.get("robustness"):
        summary["eps_grid"] = grid = first["robustness"]["eps_grid"]
        names = list(first["robustness"]["models"])
        figures["seeds_robust_accuracy"] = _band_figure(
            out, "seeds_robust_accuracy", summary["intervals"], names, "robustness.models.{}.robust_accuracy",
            grid, lambda series, bands: plots.curves(series, "eps (L_inf, [0, 1] scale)", "robust accuracy (hard test)",
                                                     f"untargeted PGD, mean and {CONFIDENCE:.0%} interval over "
                                                     f"{count} seeds", bands=bands))
    if first.get("sweep"):
        summary["rates"] = rates = first["sweep"]["rates"]
        summary["sweep_models"] = names = list(first["sweep"]["models"])
        references = {n: Interval(**summary["intervals"][f"sweep.references.{n}"]).mean
                      for n in first["sweep"]["references"]}
        figures["seeds_sweep_hard_test"] = _band_figure(
            out, "seeds_sweep_hard_test", summary["intervals"], names, "sweep.models.{}.hard_test_accuracy", rates,
            lambda series, bands: sweep.figure_from(series, bands, {MODEL_TITLES[n]: a for n, a in references.items()}))
    summary["figures"] = figures
    results = {"config": {**config.record(), "seeds": count}, "per_seed": folders, "across_seeds": summary}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(render(summary, folders))
    return results
