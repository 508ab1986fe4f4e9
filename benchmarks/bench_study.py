"""Full-study timing per task: runs `shortcutlab reproduce` in a temporary folder and prints a table.

    python benchmarks/bench_study.py [--data DIR] [--quick] [--device auto|cpu|cuda]
    (default data: ../shared/data/mnist if present)

Models are trained from scratch (fresh output folder), so the table is the cold, end-to-end cost. With a GPU,
run it once with --device cpu and once with --device cuda to compare times and accuracies.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from shortcutlab.data import EMBEDDED
from shortcutlab.study import TASKS, StudyConfig, run_study

DEFAULT_FULL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_FULL) if DEFAULT_FULL.exists() else EMBEDDED)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="keep results.json, report.md and figures here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        results = run_study(StudyConfig(data=args.data, out=out, tasks=tuple(TASKS), quick=args.quick, force=True,
                                        quiet=True, device=args.device))
    timing = results["timing"]
    print(f"data: {results['data']['source']}, device {results['config']['resolved_device']}, {timing['machine']}")
    for task, seconds in timing["tasks"].items():
        print(f"task {task} ({TASKS[int(task)].TITLE}): {seconds:.1f} s")
    for name, model in results["models"].items():
        print(f"  training {name}: {model['train_seconds']:.1f} s (inside the first task that needs it)")
    print(f"total: {timing['total_seconds']:.1f} s")
    for name, model in results["models"].items():
        print(f"  {name}: easy val {model['easy_val_accuracy']:.2%}, hard test {model['hard_test_accuracy']:.2%}")


if __name__ == "__main__":
    main()
