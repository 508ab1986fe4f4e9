"""Task 1: the cheater baseline, right on the easy validation split and wrong on the hard test."""
from __future__ import annotations

import torch

from shortcutlab import plots
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct

TITLE = "Baseline cheater CNN"
REPORT_CHEATER = {"easy_val_accuracy": 0.95, "hard_test_accuracy": 0.0625, "train_size": 2000, "epochs": 5}


def run(study: Study) -> None:
    """Easy-val vs hard-test accuracy, hard-test confusion, and the recolor proof on one digit."""
    entry = study.evaluate_model("cheater")
    study.figure("task1_cheater_confusion",
                 plots.confusion_matrices({"cheater": torch.tensor(entry["hard_test_confusion"])}, "hard test"))
    study.record_recolor_test("recolor_proof", ("cheater",))


def report(results: dict) -> list[str]:
    """The Task 1 section of report.md (empty when the task did not run)."""
    cheater = results.get("models", {}).get("cheater")
    if not cheater or "easy_val_accuracy" not in cheater:
        return []
    lines = ["## Task 1: Baseline cheater CNN", "",
             f"SimpleCNN (3 conv + 2 FC), {cheater['train_size']:,} training images, Adam {cheater['lr']}, "
             f"{cheater['epochs']} epochs, batch {cheater['batch_size']}; trained in "
             f"{cheater['train_seconds']:.1f} s{' (cached)' if cheater['cached'] else ''}.", "",
             "| Split | Report | Ours |", "|---|---|---|",
             f"| Easy validation | ~{pct(REPORT_CHEATER['easy_val_accuracy'])} | {pct(cheater['easy_val_accuracy'])} |",
             f"| Hard test | {pct(REPORT_CHEATER['hard_test_accuracy'])} | {pct(cheater['hard_test_accuracy'])} |", "",
             "On the hard test the cheater predicts the digit whose dominant color the image has "
             f"{pct(cheater['hard_test_predicts_color_rate'])} of the time."]
    proof = results.get("recolor_proof")
    if proof:
        lines += ["", f"Recolor proof: the same digit {proof['digit']} in ten colors is classified correctly "
                      f"{proof['correct']['cheater']}/10 times, with {proof['distinct_predictions']['cheater']} "
                      "distinct predictions (report: 10 different classes)."]
    return lines + [""]
