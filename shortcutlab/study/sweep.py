"""The correlation sweep (``reproduce --dominant-rates``): each sweep model trained at each dominant-color rate (train
and val splits at that rate, the hard test unchanged), its hard-test accuracy against the rate beside the references."""
from __future__ import annotations

from shortcutlab import plots
from shortcutlab.errors import ShortcutlabError
from shortcutlab.study.cache import MODEL_TITLES, REFERENCE_MODELS, SWEEP_MODELS
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct
from shortcutlab.study.task4_debiasing import PASS_MARK

TITLE = "Correlation sweep"
MEASURES = ("easy_val_accuracy", "hard_test_accuracy", "hard_test_predicts_color_rate", "train_seconds")
# What a higher rate takes from each model, the mechanism its measured breaking point is read against.
MECHANISM = {
    "erm": "plain cross-entropy can learn shape only from the off-color images, a (1 - rate) share of the split: none "
           "at 100%",
    "consistency": "its cross-entropy sees the training colors, but its consistency term asks for the same answer on "
                   "every recoloring of an image, which needs no off-color image",
    "grl": "it trains on random recolorings with random color labels: the rate never reaches its data",
    "grl_no_augmentation": "its color head learns the images' own colors, which the rate makes the digit labels: at "
                           "100% the color head can only predict the digit, so the reversal works against the digit "
                           "head itself and nothing in its data tells color from shape",
}


def parse_rates(text: str) -> tuple[float, ...]:
    """'0.95,0.99,1' -> (0.95, 0.99, 1.0), sorted, each a dominant-color rate in [0.1, 1]; ShortcutlabError else."""
    try:
        rates = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ShortcutlabError(f"--dominant-rates takes comma-separated rates such as 0.95,0.99,1.0; got {text!r}") \
            from None
    if not rates or not all(0.1 <= rate <= 1.0 for rate in rates):
        raise ShortcutlabError(f"--dominant-rates takes rates from 0.1 (colors carry no label information) to 1.0 "
                               f"(color determines the label); got {text!r}")
    return rates


def run(study: Study) -> None:
    """Train and measure every sweep model at every rate of the run; results["sweep"] and its figure."""
    rates = study.config.dominant_rates
    by_model = {name: {measure: [] for measure in MEASURES} for name in SWEEP_MODELS}
    for rate in rates:
        for name in SWEEP_MODELS:
            entry = study.measure(name, rate)
            for measure in MEASURES:
                by_model[name][measure].append(entry[measure])
    references = {name: study.evaluate_model(name) for name in REFERENCE_MODELS}
    study.results["sweep"] = {"rates": list(rates), "pass_mark": PASS_MARK, "models": by_model,
                              "references": {n: e["hard_test_accuracy"] for n, e in references.items()}}
    study.figure("sweep_hard_test", figure(study.results["sweep"]))


def figure(sweep: dict):
    """Hard-test accuracy against the rate, one line per model, the references as horizontal lines."""
    return figure_from({MODEL_TITLES[n]: (sweep["rates"], e["hard_test_accuracy"]) for n, e in sweep["models"].items()},
                       None, {MODEL_TITLES[n]: a for n, a in sweep["references"].items()})


def figure_from(series: dict, bands: dict | None, references: dict):
    """The sweep's figure from title -> (rates, hard-test accuracies), optional bands (title -> (low, high) per rate,
    an interval over seeds) and title -> the references' accuracy."""
    return plots.curves(series, "dominant-color rate of train and val", "hard-test accuracy",
                        "Hard test across the color correlation", bands=bands, references=references,
                        categorical_x=True)


def table_head(rates: list[float]) -> list[str]:
    """The header and rule of a markdown table with a model column and one column per rate."""
    return ["| Model | " + " | ".join(f"rate {rate:g}" for rate in rates) + " |", "|---|" + "---|" * len(rates)]


def breaking_rate(rates: list[float], accuracies: list[float], pass_mark: float) -> float | None:
    """The lowest rate from which the hard-test accuracy stays below ``pass_mark`` (None: it never falls below)."""
    below = None
    for rate, accuracy in zip(reversed(rates), reversed(accuracies)):
        if accuracy >= pass_mark:
            break
        below = rate
    return below


def report(results: dict) -> list[str]:
    """The sweep's section of report.md (empty when there was no sweep)."""
    sweep = results.get("sweep")
    if not sweep:
        return []
    rates = sweep["rates"]
    lines = ["## Correlation sweep", "",
             "Each model trained at each dominant-color rate (train and val splits at that rate, the hard test "
             "unchanged). Hard-test accuracy:", "", *table_head(rates)]
    for name, entry in sweep["models"].items():
        lines.append(f"| {MODEL_TITLES[name]} | " + " | ".join(map(pct, entry["hard_test_accuracy"])) + " |")
    for name, accuracy in sweep["references"].items():
        lines.append(f"| {MODEL_TITLES[name]} (reference, any rate) | " + " | ".join([pct(accuracy)] * len(rates))
                     + " |")
    lines += ["", f"Where each breaks (hard test below {pct(sweep['pass_mark'])}, the report's goal, from that rate "
                  "on):", ""]
    for name, entry in sweep["models"].items():
        accuracies = entry["hard_test_accuracy"]
        rate = breaking_rate(rates, accuracies, sweep["pass_mark"])
        verdict = ("holds at every rate" if rate is None else "below the goal at every rate" if rate == rates[0]
                   else f"breaks from rate {rate:g}")
        lines.append(f"- {MODEL_TITLES[name]}: {verdict} ({pct(accuracies[0])} at {rates[0]:g}, "
                     f"{pct(accuracies[-1])} at {rates[-1]:g}). Why: {MECHANISM[name]}.")
    return lines + [""]
