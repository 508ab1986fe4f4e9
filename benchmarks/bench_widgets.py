"""Explorer benchmark: milliseconds per update of each explorer with the study's three models, on the CPU.

    python benchmarks/bench_widgets.py [--artifacts DIR] [--repeats N] [--threads N]

Models come from ``shortcutlab.pretrained`` (embedded digits; trained into --artifacts on first use, about two
minutes). An update is what one control change costs: the models' work, the readout and the PNG frames. The first
update of a process pays one-time costs (torch's lazy imports), so each line reports the median of warm updates
and the slowest one. The recolor update must stay well under 0.5 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import shortcutlab
from shortcutlab.data import EMBEDDED, ColoredMNIST
from shortcutlab.widgets import actmax_explorer, draw_digit, epsilon_explorer, recolor_explorer

BUDGET_S = 0.5  # an update of a 3-model explorer must stay well under this


def updates(explorer, changes) -> list[float]:
    """Seconds of each update caused by the (control, value) changes, in order."""
    seconds = []
    for name, value in changes:
        explorer.controls[name].value = value
        seconds.append(explorer.seconds)
    return seconds


def report(label: str, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    print(f"{label:<44} {1000 * median:7.1f} ms median, {1000 * max(seconds):7.1f} ms slowest "
          f"({len(seconds)} updates)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default=None, help="model cache (default $SHORTCUTLAB_ARTIFACTS or ./artifacts)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over each control's values")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = {name: shortcutlab.pretrained(name, data=EMBEDDED, out=args.artifacts, quiet=True)
              for name in ("cheater", "consistency", "grl")}
    print(f"models ready in {time.perf_counter() - start:.1f} s; {torch.get_num_threads()} torch threads")
    images, labels, _ = ColoredMNIST("hard_test", root=EMBEDDED).tensors()

    w = recolor_explorer(models, images[:100], labels[:100])
    colors = [("color", k) for k in list(range(1, 10)) + [0]] * args.repeats
    recolor = report("recolor: color change", updates(w, colors))
    report("recolor: hue change", updates(w, [("hue", float(h)) for h in range(15, 360, 30)] * args.repeats))
    report("recolor: index change", updates(w, [("index", i) for i in range(1, 11)] * args.repeats))

    sevens = images[labels == 7]
    for steps in (10, 20):
        w = epsilon_explorer(models, sevens[0], steps=steps)
        report(f"epsilon: epsilon change, {steps} PGD steps",
               updates(w, [("epsilon", e / 100) for e in range(1, 11)] * args.repeats))

    w = draw_digit(models)
    seconds = []
    for _ in range(5 * args.repeats):
        w.clear()
        w.draw_strokes([[(140, 40), (140, 240)]])
        seconds.append(w.seconds)
    report("draw: one stroke", seconds)
    report("draw: color change", updates(w, [("color", k) for k in range(10)] * args.repeats))

    w = actmax_explorer(models)
    report(f"actmax: class change, {w.controls['steps'].value} steps", updates(w, [("class", c) for c in range(1, 6)]))

    verdict = "well under" if recolor < BUDGET_S / 2 else "under" if recolor < BUDGET_S else "OVER"
    print(f"recolor update {1000 * recolor:.0f} ms: {verdict} the {1000 * BUDGET_S:.0f} ms budget")


if __name__ == "__main__":
    main()
