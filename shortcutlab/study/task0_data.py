"""Task 0: the Colored MNIST splits, their dominant-color rates and the hard test's color balance."""
from __future__ import annotations

import torch

from shortcutlab import plots
from shortcutlab.data import NUM_CLASSES, color_given_digit, dominant_color_rate
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import pct

TITLE = "Colored MNIST dataset"
REPORT_DOMINANT_RATE = {"train": 0.95, "val": 0.95, "hard_test": 0.0}  # the report's Table 1


def run(study: Study) -> None:
    """Split sizes, dominant-color rates, hard-test color balance; figures 1 and P(color | digit)."""
    splits, matrices = {}, {}
    for name in ("train", "val", "hard_test"):
        ds = study.split(name)
        entry = {"size": len(ds), "dominant_rate": round(dominant_color_rate(ds.labels, ds.color_ids), 5)}
        matrices[name] = color_given_digit(ds.labels, ds.color_ids)
        if name == "hard_test":
            counts = torch.bincount(ds.color_ids.cpu(), minlength=NUM_CLASSES)
            # Off-color share per digit: uniform over the nine other colors means 1/9 each.
            offdiag = matrices[name][~torch.eye(NUM_CLASSES, dtype=torch.bool)]
            entry["color_counts"] = counts.tolist()
            entry["max_deviation_from_uniform_other_colors"] = round(float((offdiag - 1 / 9).abs().max()), 5)
        splits[name] = entry
    source = study.split("train").source
    study.results["data"] = {"source": source.source, "location": source.location, "splits": splits}
    train_images, train_labels, _ = study.split("train").tensors()
    hard_images, hard_labels, _ = study.split("hard_test").tensors()
    # Figure 1 shows a few samples per digit, all found among the first 2,000: move just those to the CPU.
    shown = 2000
    study.figure("task0_samples", plots.split_comparison((train_images[:shown].cpu(), train_labels[:shown].cpu()),
                                                         (hard_images[:shown].cpu(), hard_labels[:shown].cpu())))
    study.figure("task0_color_given_digit", plots.color_given_digit_heatmaps(
        {"train": matrices["train"], "hard test": matrices["hard_test"]}))


def report(results: dict) -> list[str]:
    """The Task 0 section of report.md (empty when the task did not run)."""
    data = results.get("data")
    if not data:
        return []
    splits = data["splits"]
    lines = ["## Task 0: Colored MNIST", "", f"Data source: **{data['source']}** (`{data['location']}`).", "",
             "| Split | Size | Dominant color rate (report) | Dominant color rate (ours) |", "|---|---|---|---|"]
    for name, entry in splits.items():
        lines.append(f"| {name} | {entry['size']:,} | {pct(REPORT_DOMINANT_RATE[name])} | "
                     f"{pct(entry['dominant_rate'])} |")
    hard = splits.get("hard_test", {})
    if "max_deviation_from_uniform_other_colors" in hard:
        lines += ["", "Hard-test colors per digit deviate from uniform-over-the-other-nine (1/9) by at most "
                      f"{hard['max_deviation_from_uniform_other_colors']:.4f}."]
    return lines + [""]
