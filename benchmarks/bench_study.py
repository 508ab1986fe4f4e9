"""Full-study timing per part: runs `shortcutlab reproduce` in a fresh folder and prints each step and each model.

    python benchmarks/bench_study.py [--data DIR] [--quick] [--device auto|cpu|cuda] [--adversarial]
        [--full-curves] [--grl-ablation] [--dominant-rates 0.95,0.99,1.0] [--seeds N] [--out DIR]
    (default data: ../shared/data/mnist if present)

Models are trained from scratch (fresh output folder, --force), so the table is the cold, end-to-end cost of each
part: the tasks, the sweep, and every model trained inside them, per seed. With a GPU, run it once with --device cpu
and once with --device cuda to compare times and accuracies.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shortcutlab.data import EMBEDDED
from shortcutlab.study import TASKS, StudyConfig, run_study
from shortcutlab.study.estimate import estimate
from shortcutlab.study.run import step_label, step_module
from shortcutlab.study.seeds import run_seeds
from shortcutlab.study.sweep import parse_rates

DEFAULT_FULL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def print_run(results: dict) -> None:
    """One seed's parts: each step's seconds, each model's training seconds, accuracies."""
    timing = results["timing"]
    print(f"seed {results['config']['seed']}: data {results.get('data', {}).get('source', '?')}, "
          f"device {results['config']['resolved_device']}, {timing['machine']}")
    for step, seconds in timing["tasks"].items():
        print(f"  {step_label(step)} ({step_module(step).TITLE}): {seconds:.1f} s")
    for name, model in results.get("models", {}).items():
        accuracy = (f", easy val {model['easy_val_accuracy']:.2%}, hard test {model['hard_test_accuracy']:.2%}"
                    if "hard_test_accuracy" in model else "")
        print(f"    training {name}: {model['train_seconds']:.1f} s (inside the first step that needs it){accuracy}")
    sweep = results.get("sweep")
    if sweep:
        for name, entry in sweep["models"].items():
            trained = ", ".join(f"{rate:g}: {s:.1f} s" for rate, s in zip(sweep["rates"], entry["train_seconds"]))
            print(f"    sweep {name}: training {trained}")
    print(f"  total: {timing['total_seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_FULL) if DEFAULT_FULL.exists() else EMBEDDED)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--adversarial", action="store_true")
    parser.add_argument("--full-curves", action="store_true")
    parser.add_argument("--grl-ablation", action="store_true")
    parser.add_argument("--dominant-rates", help="comma-separated rates of the correlation sweep")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", help="keep results.json, report.md and figures here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        config = StudyConfig(data=args.data, out=out, tasks=tuple(TASKS), quick=args.quick, force=True, quiet=True,
                             device=args.device, adversarial=args.adversarial, full_curves=args.full_curves,
                             grl_ablation=args.grl_ablation,
                             dominant_rates=parse_rates(args.dominant_rates) if args.dominant_rates else ())
        expected = estimate(config, args.seeds)
        print(f"estimate: {expected.seconds:.0f} s, {len(expected.to_train)} models to train")
        start = time.perf_counter()
        per_seed = []
        if args.seeds == 1:
            per_seed.append(run_study(config))
        else:
            def run_one(seed_config: StudyConfig) -> dict:
                per_seed.append(run_study(seed_config))
                return per_seed[-1]

            run_seeds(config, args.seeds, run_one)
        total = time.perf_counter() - start
    for results in per_seed:
        print_run(results)
    print(f"total: {total:.1f} s for {args.seeds} seed(s) (estimated {expected.seconds:.0f} s)")


if __name__ == "__main__":
    main()
