"""Task 4: two repairs of the shortcut, color consistency and gradient reversal, against the cheater."""
from __future__ import annotations

import torch

from shortcutlab import plots
from shortcutlab.study.cache import CONTROL_MODELS, MODEL_TITLES, STUDY_MODELS
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct
from shortcutlab.study.task1_cheater import REPORT_CHEATER

TITLE = "Debiasing: color consistency and gradient reversal"
REPORT_ACCURACY = {"consistency": {"easy_val_accuracy": 0.97, "hard_test_accuracy": 0.9627},
                   "grl": {"easy_val_accuracy": 0.96, "hard_test_accuracy": 0.9277}, "cheater": REPORT_CHEATER}
PASS_MARK = 0.7  # the report's "> 70% on the hard test" goal


def run(study: Study) -> None:
    """Accuracies, training curves, hard-test confusions and recolor-invariance proofs of the three models and the
    controls (recolor augmentation alone; adversarial training with --adversarial)."""
    names = study.model_names
    for name in names:
        if "hard_test_accuracy" not in study.results.get("models", {}).get(name, {}):
            study.evaluate_model(name)
    models = study.results["models"]
    study.figure("task4_training_curves", plots.training_curves({n: models[n]["history"] for n in names}))
    study.figure("task4_confusion", plots.confusion_matrices(
        {n: torch.tensor(models[n]["hard_test_confusion"]) for n in names}, "hard test"))
    study.record_recolor_test("recolor_invariance", names)


def report(results: dict) -> list[str]:
    """The Task 4 section of report.md (empty when the task did not run)."""
    models = results.get("models", {})
    if "hard_test_accuracy" not in models.get("consistency", {}):
        return []
    lines = ["## Task 4: Debiasing", "",
             "| Model | Easy val (report) | Easy val (ours) | Hard test (report) | Hard test (ours) | > 70% | "
             "Train time |", "|---|---|---|---|---|---|---|"]
    for name in (*STUDY_MODELS, *CONTROL_MODELS):
        if "hard_test_accuracy" in models.get(name, {}):
            ours, report = models[name], REPORT_ACCURACY.get(name)
            title = MODEL_TITLES[name] + (" (control)" if name in CONTROL_MODELS else "")
            lines.append(f"| {title} | {'~' + pct(report['easy_val_accuracy']) if report else '-'} | "
                         f"{pct(ours['easy_val_accuracy'])} | {pct(report['hard_test_accuracy']) if report else '-'} | "
                         f"{pct(ours['hard_test_accuracy'])} | "
                         f"{'✓' if ours['hard_test_accuracy'] > PASS_MARK else '✗'} | "
                         f"{ours['train_seconds']:.0f} s |")
    invariance = results.get("recolor_invariance")
    if invariance:
        lines += ["", f"Recolor invariance (digit {invariance['digit']} in ten colors, report: 10/10 for both "
                      "debiased models): " + ", ".join(f"{MODEL_TITLES[n]} {c}/10"
                                                       for n, c in invariance["correct"].items()) + "."]
    return lines + [""]
