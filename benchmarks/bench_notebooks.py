"""Notebook benchmark: seconds to execute each solution notebook headless, with and without cached models, on an
idle machine and beside a busy neighbour.

    python benchmarks/bench_notebooks.py [--only 03_gradcam ...] [--cache warm|cold|both] [--threads N]
                                         [--neighbour idle|busy|both]

Without --threads each kernel picks its torch threads as a student's does (shortcutlab/threads.py).

Each notebook runs alone on a fresh python3 kernel (nbclient), offline, one after another, so the machine must
be otherwise idle for the numbers to mean anything. "cold" starts from an empty artifacts folder, so every
``shortcutlab.pretrained`` call trains its model (what a fresh clone sees); "warm" reuses the models that the cold
runs left behind (or trains them once first). "busy" runs the notebooks while another process keeps one core
busy (a student's browser, a second kernel). Budgets per notebook, on 2 cores: 30 s warm, 90 s cold.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
BUDGET_S = {"warm": 30.0, "cold": 90.0}


def run_notebook(path: Path, artifacts: Path, threads: int | None) -> float:
    """Seconds to execute ``path`` top to bottom with models cached in ``artifacts`` (torch on ``threads`` threads;
    None: the kernel's own choice, see shortcutlab/threads.py); raises if a cell fails."""
    nb = nbformat.read(path, as_version=4)
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(SHORTCUTLAB_OFFLINE="1", SHORTCUTLAB_ARTIFACTS=str(artifacts), PYDEVD_DISABLE_FILE_VALIDATION="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as workdir:
        client = NotebookClient(nb, kernel_name="python3", timeout=600,
                                resources={"metadata": {"path": workdir}})
        start = time.perf_counter()
        client.execute(env=env)
        return time.perf_counter() - start


@contextlib.contextmanager
def neighbour(busy: bool):
    """While open, with ``busy``, another process spins on one core."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="notebook stems (default: all seven lessons)")
    parser.add_argument("--cache", choices=("warm", "cold", "both"), default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per kernel (default: what a "
                        "student's kernel uses, one core fewer than the machine has)")
    parser.add_argument("--neighbour", choices=("idle", "busy", "both"), default="idle")
    args = parser.parse_args(argv)
    busy_modes = (False, True) if args.neighbour == "both" else (args.neighbour == "busy",)
    names = args.only or sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    modes = ("cold", "warm") if args.cache == "both" else (args.cache,)
    from shortcutlab.threads import kernel_threads

    threads = args.threads if args.threads is not None else kernel_threads()
    print(f"{os.cpu_count()} cores, {threads} torch threads; budget per notebook "
          f"{BUDGET_S['warm']:.0f} s warm, {BUDGET_S['cold']:.0f} s cold")
    over = 0
    with tempfile.TemporaryDirectory() as shared:
        warm_artifacts = Path(shared) / "warm"
        if "cold" not in modes:
            from shortcutlab.study.cache import MODEL_SPECS, pretrained

            for model in MODEL_SPECS:  # untimed: the warm runs must find every model cached
                pretrained(model, out=warm_artifacts, quiet=True, device="cpu")
        for busy in busy_modes:
            for mode in modes:
                for name in names:
                    if mode == "cold":
                        artifacts = Path(tempfile.mkdtemp(dir=shared))
                    else:
                        artifacts = warm_artifacts
                    with neighbour(busy):
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
                    flag = "" if seconds < BUDGET_S[mode] else "  OVER BUDGET"
                    over += seconds >= BUDGET_S[mode]
                    print(f"{name:<30} {mode:<5} {'busy' if busy else 'idle':<5} {seconds:6.1f} s{flag}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
