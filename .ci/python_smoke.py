"""Smoke test of one Python: import every module, grade a small class on the command line, execute one lesson.

Run by ``.ci/test-pythons`` with the interpreter of a venv that has shortcutlab installed; exits 1 on any failure,
printing one line per step (``ok`` or what went wrong).
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00_colored_mnist"
MUTANTS = ("assign_colors__bias_inverted", "colorize__no_clamp")


def import_every_module() -> str:
    import shortcutlab

    names = [m.name for m in pkgutil.walk_packages(shortcutlab.__path__, "shortcutlab.")
             if not m.name.endswith(".__main__")]  # importing __main__ would run the command line
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the point is to list every module that fails
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        raise AssertionError("\n".join(failed))
    return f"{len(names)} modules"


def grade_a_small_class(workdir: Path) -> str:
    """The correct submission at full marks, each mutant below it, every submission graded, exit code 0."""
    sources = {"correct": ROOT / "tests" / "submissions" / f"{LESSON}.py"}
    sources.update({name: ROOT / "tests" / "mutants" / LESSON / f"{name}.py" for name in MUTANTS})
    for student, source in sources.items():  # one folder per student, as an LMS download has it
        (workdir / "class" / student).mkdir(parents=True)
        (workdir / "class" / student / f"{LESSON}.py").write_text(source.read_text(encoding="utf-8"))
    command = [sys.executable, "-m", "shortcutlab.cli", "grade", str(workdir / "class"), "--json", "--seed", "0",
               "--jobs", "2", "--out", str(workdir / "grades")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"exit code {done.returncode}:\n{done.stderr[-2000:]}")
    rows = json.loads(done.stdout)["submissions"]
    scores = {r["student"]: (r["score"], r["max_score"], r["status"]) for r in rows}
    correct = scores.pop("correct")
    if correct[0] != correct[1] or any(s[0] >= s[1] for s in scores.values()):
        raise AssertionError(f"unexpected scores: {LESSON} {correct}, mutants {scores}")
    if any(s[2] != "graded" for s in [correct, *scores.values()]):
        raise AssertionError(f"not every submission graded: {scores}")
    return f"{len(rows)} submissions: correct {correct[0]:g}/{correct[1]:g}, mutants " + ", ".join(
        f"{s[0]:g}" for s in scores.values())


def execute_a_lesson(workdir: Path) -> str:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4)
    env = {"SHORTCUTLAB_CACHE": str(workdir / "cache"), "MPLBACKEND": "Agg"}
    os.environ.update(env)
    NotebookClient(notebook, kernel_name="python3", timeout=600, allow_errors=False,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return f"solutions/{LESSON}.ipynb, {len(notebook.cells)} cells"


def main() -> int:
    print(f"Python {sys.version.split()[0]} ({sys.executable})", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for step in (import_every_module, grade_a_small_class, execute_a_lesson):
            start = time.perf_counter()
            try:
                args = () if step is import_every_module else (Path(scratch),)
                detail = step(*args)
            except Exception as exc:  # noqa: BLE001 - report the step, go on to the next
                failures += 1
                print(f"  FAIL {step.__name__}: {type(exc).__name__}: {exc}", flush=True)
            else:
                print(f"  ok   {step.__name__} ({time.perf_counter() - start:.0f} s): {detail}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
