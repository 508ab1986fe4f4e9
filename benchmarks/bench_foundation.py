"""Foundation benchmark: vectorised rendering vs a per-item loop, one training epoch, the cheater end to end.

    python benchmarks/bench_foundation.py [--data DIR]   (default: ../shared/data/mnist if present, else embedded)

Ratios are measured against baselines run in this same process, so they hold on any machine.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from shortcutlab.data import EMBEDDED, PALETTE, ColoredMNIST
from shortcutlab.models import SimpleCNN
from shortcutlab.train import evaluate, fit

DEFAULT_FULL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def per_item_render(ds: ColoredMNIST) -> torch.Tensor:
    """The straightforward pipeline: one sample at a time, as a Dataset.__getitem__ + DataLoader would."""
    out = torch.empty(len(ds), 3, 28, 28)
    for i in range(len(ds)):
        digit = ds.digits()[i].float() / 255
        background = 0.1 + 0.2 * F.interpolate(ds.noise()[i:i + 1], size=(28, 28), mode="bilinear",
                                               align_corners=False)[0]
        color = PALETTE[ds.color_ids[i]].view(3, 1, 1)
        out[i] = (digit * color + background * (1 - digit)).clamp(0, 1)
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_FULL) if DEFAULT_FULL.exists() else EMBEDDED)
    args = parser.parse_args()
    train = ColoredMNIST("train", root=args.data)
    print(f"data: {train.source.source} ({len(train):,} train images), {torch.get_num_threads()} torch threads")

    vectorised, images = min((timed(lambda: train.render(slice(None))) for _ in range(3)), key=lambda r: r[0])
    naive, reference = timed(lambda: per_item_render(train))
    assert torch.allclose(images, reference, atol=1e-5)
    print(f"render train split: vectorised {vectorised:.2f} s, per-item {naive:.1f} s, ratio {naive / vectorised:.0f}x")

    torch.manual_seed(0)
    epoch, _ = timed(lambda: fit(SimpleCNN(), train, epochs=1, batch_size=256, quiet=True))
    print(f"one training epoch on the full train split: {epoch:.1f} s ({len(train) / epoch:.0f} images/s)")

    def cheater():
        val, hard = ColoredMNIST("val", root=args.data), ColoredMNIST("hard_test", root=args.data)
        torch.manual_seed(42)
        model = SimpleCNN()
        fit(model, ColoredMNIST("train", root=args.data, limit=2000), epochs=5, batch_size=256, seed=42, quiet=True)
        return evaluate(model, val).accuracy, evaluate(model, hard).accuracy

    seconds, (val_acc, hard_acc) = timed(cheater)
    print(f"cheater end to end: {seconds:.1f} s, easy val {val_acc:.2%}, hard test {hard_acc:.2%}")


if __name__ == "__main__":
    main()
