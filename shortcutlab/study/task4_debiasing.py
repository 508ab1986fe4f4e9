"""Task 4: two repairs of the shortcut, color consistency and gradient reversal, against the cheater."""
from __future__ import annotations

import torch

from shortcutlab import plots
from shortcutlab.study.cache import ABLATION_MODELS, CONTROL_MODELS, MODEL_TITLES, REFERENCE_MODELS, STUDY_MODELS
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct
from shortcutlab.study.task1_cheater import REPORT_CHEATER

TITLE = "Debiasing: color consistency and gradient reversal"
REPORT_ACCURACY = {"consistency": {"easy_val_accuracy": 0.97, "hard_test_accuracy": 0.9627},
                   "grl": {"easy_val_accuracy": 0.96, "hard_test_accuracy": 0.9277}, "cheater": REPORT_CHEATER}
PASS_MARK = 0.7  # the report's "> 70% on the hard test" goal
ROLE = {**{n: " (control)" for n in CONTROL_MODELS}, **{n: " (reference)" for n in REFERENCE_MODELS},
        **{n: " (ablation)" for n in ABLATION_MODELS}}


def run(study: Study) -> None:
    """Accuracies, training curves, hard-test confusions and recolor-invariance proofs of the three models and the
    controls (recolor augmentation alone; adversarial training with --adversarial); the accuracies of the references
    (unbiased colors, grayscale) and, with --grl-ablation, of GRL's ablation."""
    for name in study.table_names:
        if "hard_test_accuracy" not in study.results.get("models", {}).get(name, {}):
            study.evaluate_model(name)
    names = study.model_names
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
    for name in (*STUDY_MODELS, *CONTROL_MODELS, *REFERENCE_MODELS, *ABLATION_MODELS):
        if "hard_test_accuracy" in models.get(name, {}):
            ours, report = models[name], REPORT_ACCURACY.get(name)
            title = MODEL_TITLES[name] + ROLE.get(name, "")
            lines.append(f"| {title} | {'~' + pct(report['easy_val_accuracy']) if report else '-'} | "
                         f"{pct(ours['easy_val_accuracy'])} | {pct(report['hard_test_accuracy']) if report else '-'} | "
                         f"{pct(ours['hard_test_accuracy'])} | "
                         f"{'✓' if ours['hard_test_accuracy'] > PASS_MARK else '✗'} | "
                         f"{ours['train_seconds']:.0f} s |")
    if any(name in models for name in REFERENCE_MODELS):
        lines += ["", "References: the same network and schedule as the debiased models, with plain cross-entropy, "
                      f"trained where each digit takes every color equally often (*{MODEL_TITLES['unbiased']}*: its "
                      "easy val has the same uninformative colors) and on white strokes in every split "
                      f"(*{MODEL_TITLES['grayscale']}*): how close the methods come to what the shape alone allows."]
    if any(name in models for name in ABLATION_MODELS):
        lines += ["", "GRL ablation: *own colors* trains the adversary on the training images' own colors instead of "
                      "random recolorings, so at the 95% rate the color labels mostly are the digit labels; the color "
                      "weight scales the color loss, and with it the reversed gradient the backbone receives."]
    invariance = results.get("recolor_invariance")
    if invariance:
        lines += ["", f"Recolor invariance (digit {invariance['digit']} in ten colors, report: 10/10 for both "
                      "debiased models): " + ", ".join(f"{MODEL_TITLES[n]} {c}/10"
                                                       for n, c in invariance["correct"].items()) + "."]
    return lines + [""]
