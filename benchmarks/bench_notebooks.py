"""Notebook benchmark: seconds to execute each solution notebook headless, with and without cached models.

    python benchmarks/bench_notebooks.py [--only 03_gradcam ...] [--cache warm|cold|both] [--threads N]

Each notebook runs alone on a fresh python3 kernel (nbclient), offline, one after another, so the machine must
be otherwise idle for the numbers to mean anything. "cold" starts from an empty artifacts folder, so every
``shortcutlab.pretrained`` call trains its model (what a fresh clone sees); "warm" reuses the models that the cold
runs left behind (or trains them once first). The budget is 60 s per notebook on 2 idle cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
BUDGET_S = 60.0


def run_notebook(path: Path, artifacts: Path, threads: int) -> float:
    """Seconds to execute ``path`` top to bottom with models cached in ``artifacts``; raises if a cell fails."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, SHORTCUTLAB_OFFLINE="1", SHORTCUTLAB_ARTIFACTS=str(artifacts),
               OMP_NUM_THREADS=str(threads), PYDEVD_DISABLE_FILE_VALIDATION="1")
    with tempfile.TemporaryDirectory() as workdir:
        client = NotebookClient(nb, kernel_name="python3", timeout=600,
                                resources={"metadata": {"path": workdir}})
        start = time.perf_counter()
        client.execute(env=env)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="notebook stems (default: all seven lessons)")
    parser.add_argument("--cache", choices=("warm", "cold", "both"), default="both")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    names = args.only or sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    modes = ("cold", "warm") if args.cache == "both" else (args.cache,)
    print(f"{os.cpu_count()} cores, {args.threads} torch threads; budget {BUDGET_S:.0f} s per notebook")
    over = 0
    with tempfile.TemporaryDirectory() as shared:
        warm_artifacts = Path(shared) / "warm"
        if "cold" not in modes:
            from shortcutlab.study.cache import MODEL_SPECS, pretrained

            for model in MODEL_SPECS:  # untimed: the warm runs must find every model cached
                pretrained(model, out=warm_artifacts, quiet=True, device="cpu")
        for mode in modes:
            for name in names:
                if mode == "cold":
                    artifacts = Path(tempfile.mkdtemp(dir=shared))
                else:
                    artifacts = warm_artifacts
                seconds = run_notebook(SOLUTIONS / f"{name}.ipynb", artifacts, args.threads)
                if mode == "cold" and not warm_artifacts.exists():
                    artifacts.rename(warm_artifacts)
                elif mode == "cold" and (artifacts / "models").exists():
                    # Keep every model any cold run trained, so the warm runs never train.
                    (warm_artifacts / "models").mkdir(parents=True, exist_ok=True)
                    for model in (artifacts / "models").iterdir():
                        target = warm_artifacts / "models" / model.name
                        if not target.exists():
                            model.rename(target)
                flag = "" if seconds < BUDGET_S else "  OVER BUDGET"
                over += seconds >= BUDGET_S
                print(f"{name:<30} {mode:<5} {seconds:6.1f} s{flag}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
