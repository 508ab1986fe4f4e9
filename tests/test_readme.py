"""Do the README's and the guides' walkthroughs (docs/*.md) work as written? Each fenced block just after a
`<!-- tested: tests/test_readme.py::NAME -->` comment runs verbatim with bash (`set -euo pipefail`), from a scratch
copy of the repository root (its course files and notebooks) with this environment's scripts first on PATH, as
`source .venv/bin/activate` puts them; test NAME then checks what the block promises."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from shortcutlab.course import load_course

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LESSON = "00_colored_mnist"  # the README's example: the lightest lesson to grade
TESTED = re.compile(r"^<!-- tested: tests/test_readme\.py::(\w+) -->\n```(\w*)\n(.*?)^```", re.M | re.S)


def readme_blocks() -> dict[str, str]:
    """The tested shell blocks of the README and docs/, by the name of the test that runs each."""
    blocks: dict[str, str] = {}
    found = [match for document in DOCUMENTS for match in TESTED.findall(document.read_text(encoding="utf-8"))]
    for name, language, code in found:
        assert language in ("bash", "sh"), f"the block tested by {name} is not a shell block"
        assert name not in blocks, f"two README blocks are marked as tested by {name}"
        blocks[name] = code
    return blocks


def run_readme_block(name: str, cwd: Path, artifacts: Path | None = None) -> subprocess.CompletedProcess:
    """Run the README's block for test ``name`` in a scratch copy of the repository root (``cwd``), with the
    models of ``artifacts`` cached in its artifacts/ (where ``shortcutlab.pretrained`` looks from below the root)."""
    for item in ("course.yml", "autograder", "solutions", "lessons"):
        source = ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, cwd / item)
    if artifacts is not None:  # the explore cells a notebook runs load the run's models instead of training them
        shutil.copytree(artifacts / "models", cwd / "artifacts" / "models")
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join([str(scripts), os.environ.get("PATH", "")]),
           "OMP_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.pop("SHORTCUTLAB_COURSE", None)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + readme_blocks()[name]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README block {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_every_tested_readme_block_has_its_test():
    blocks = readme_blocks()
    assert {"test_the_readmes_gradescope_local_run", "test_the_readmes_nbgrader_round"} <= set(blocks)
    for name in blocks:
        assert callable(globals().get(name)), f"README.md marks a block as tested by {name}, which is not here"


@pytest.mark.slow
def test_the_readmes_gradescope_local_run(tmp_path):
    """The bundle, unpacked as Gradescope does, gives the solution handed in full marks in ag/results/results.json."""
    assert LESSON in readme_blocks()["test_the_readmes_gradescope_local_run"]
    done = run_readme_block("test_the_readmes_gradescope_local_run", tmp_path)
    assert "results in ag/results/results.json" in done.stdout
    results = json.loads((tmp_path / "ag" / "results" / "results.json").read_text())
    functions = load_course().lesson(LESSON).functions
    full = sum(spec.points for spec in functions.values())
    assert full == 12  # as the README says
    checks = [t for t in results["tests"] if t["name"].split(":")[0] in functions]
    assert {t["name"].split(":")[0] for t in checks} == set(functions)
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] for t in checks), checks
    assert sum(t["max_score"] for t in checks) == pytest.approx(full, abs=1e-3)  # each rounded to 4 places
    assert results["score"] == pytest.approx(full)


@pytest.mark.heavy  # an nbgrader round (about 35 s on 2 cores): make test-slow, which CI runs too
def test_the_readmes_nbgrader_round(tmp_path, study_artifacts):
    """export-nbgrader -> generate_assignment -> autograde -> export: alice's solution gets every check cell's
    points; the written-answer cells wait for manual grading but count in max_score."""
    from nbgrader.api import Gradebook

    assert LESSON in readme_blocks()["test_the_readmes_nbgrader_round"]
    run_readme_block("test_the_readmes_nbgrader_round", tmp_path, study_artifacts)
    course = tmp_path / "nbgrader-course"
    assert (course / "release" / LESSON / f"{LESSON}.ipynb").is_file()
    assert (course / "autograded" / "alice" / LESSON / f"{LESSON}.ipynb").is_file()

    source = nbformat.read(course / "source" / LESSON / f"{LESSON}.ipynb", as_version=4)
    cell_points = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
                   for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")}
    functions = load_course().lesson(LESSON).functions
    check_points = {f"check_{name}": float(spec.points) for name, spec in functions.items()}
    assert {k: v for k, v in cell_points.items() if k.startswith("check_")} == check_points
    assert sum(check_points.values()) == 12  # as the README says

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(LESSON, LESSON, "alice")
        scores = {g.name: (g.score, g.max_score) for g in notebook.grades if g.name in check_points}
    assert scores == {name: (points, points) for name, points in check_points.items()}

    rows = [r for r in csv.DictReader((course / "grades.csv").open()) if r["assignment"] == LESSON]
    assert [r["student_id"] for r in rows] == ["alice"]
    assert float(rows[0]["max_score"]) == pytest.approx(sum(cell_points.values()))  # written answers included
    assert float(rows[0]["raw_score"]) >= sum(check_points.values())
