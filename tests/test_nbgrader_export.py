"""Does `shortcutlab export-nbgrader` give a course root nbgrader can release, autograde and export, with the
same scores as `shortcutlab grade`; do check cells score partial credit under nbgrader autograde?"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shortcutlab
from shortcutlab.cli import main
from shortcutlab.course import CourseError, load_course
from shortcutlab.grading.batch import grade_class
from shortcutlab.grading.nbgrader_export import COURSE_FOLDER, export_nbgrader
from shortcutlab.grading.notebook import ChecksFailed, check_in_notebook

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00_colored_mnist"  # the lightest lesson: its exploration cells take seconds

TOY_COURSE = """\
version: 1
title: Toy course
grading: {timeout: 5, load_timeout: 20, preload: []}
lessons:
  - id: 90_toy
    title: Scaling
    notebook: 90_toy.ipynb
    functions:
      scale: {points: 2, reference: operator.mul}
"""

TOY_CHECKS = '''
from shortcutlab.grading import check


@check("scale")
def test_scale_small(scale):
    assert scale(3, 2) == 6, "scale(3, 2) should be 6"


@check("scale", hidden=True)
def test_scale_big(scale):
    assert scale(1000, 1000) == 10**6, "the secret big case"
'''


@pytest.fixture()
def toy(tmp_path) -> Path:
    (tmp_path / "autograder").mkdir()
    (tmp_path / "course.yml").write_text(TOY_COURSE)
    (tmp_path / "autograder" / "test_90_toy.py").write_text(TOY_CHECKS)
    return tmp_path / "course.yml"


# ----------------------------------------------------------------------------- the course root


def test_export_lays_out_config_sources_and_the_courses_checks(tmp_path, monkeypatch):
    root = tmp_path / "nbgrader"
    assert main(["export-nbgrader", str(root), "--lessons", f"{LESSON},03_gradcam"]) == 0
    assert sorted(p.name for p in (root / "source").iterdir()) == [LESSON, "03_gradcam"]
    source = root / "source" / LESSON / f"{LESSON}.ipynb"
    assert source.read_bytes() == (ROOT / "solutions" / f"{LESSON}.ipynb").read_bytes()
    copied = load_course(root / COURSE_FOLDER / "course.yml")
    assert all(copied.check_file(lesson).is_file() for lesson in copied.lessons)

    from traitlets.config import Config

    config = Config()
    monkeypatch.setenv("SHORTCUTLAB_COURSE", "overwritten by the config")  # restored after the test
    config_file = root / "nbgrader_config.py"
    exec(compile(config_file.read_text(), str(config_file), "exec"),  # noqa: S102 - our own generated file
         {"get_config": lambda: config, "__file__": str(config_file)})
    assert Path(os.environ["SHORTCUTLAB_COURSE"]) == (root / COURSE_FOLDER / "course.yml").resolve()
    assert config.CourseDirectory.root == str(root.resolve()) and config.Execute.timeout >= 300


def test_exporting_an_unknown_lesson_is_an_error_naming_the_lessons(tmp_path):
    with pytest.raises(CourseError, match="choose one of"):
        export_nbgrader(tmp_path, lessons=["42_nope"])


# ----------------------------------------------------------------------------- check cells under autograde


def test_under_autograde_a_check_cell_runs_hidden_checks_and_returns_partial_points(toy, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    points = check_in_notebook("90_toy.scale", lambda x, k: x * k if x < 100 else 0, course=toy)
    assert points == 1.0  # the visible check passes, the hidden one fails; no exception, so nbgrader reads the value
    printed = capsys.readouterr()
    assert printed.err == ""  # nbgrader gives 0 points to a cell that writes to stderr
    assert "1/2 checks passed" in printed.out and "hidden check (failed)" in printed.out
    assert "secret" not in printed.out and "scale big" not in printed.out
    assert check_in_notebook("90_toy.scale", lambda x, k: x * k, course=toy) == 2.0
    assert check_in_notebook("90_toy.scale", lambda x, k: 0, course=toy) == 0.0
    assert "should be 6" in capsys.readouterr().out  # visible checks still explain themselves


def test_shortcutlab_check_returns_the_points_so_the_cell_shows_them(toy, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert shortcutlab.check("90_toy.scale", lambda x, k: x * k, course=toy) == 2.0


def test_outside_autograde_a_check_cell_still_raises(toy, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    with pytest.raises(ChecksFailed):
        check_in_notebook("90_toy.scale", lambda x, k: 0, course=toy)


# ----------------------------------------------------------------------------- the round trip


def nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).with_name("nbgrader")
    if not executable.exists():
        pytest.skip("nbgrader is not installed (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHORTCUTLAB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1",
           # nbgrader runs `alembic` from PATH: the environment's scripts must come first, activated or not
           "PATH": os.pathsep.join([str(executable.parent), os.environ.get("PATH", "")])}
    env.pop("SHORTCUTLAB_COURSE", None)
    done = subprocess.run([str(executable), *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def csv_scores(path: Path) -> dict[str, tuple[float, float]]:
    return {row["student_id"]: (float(row["raw_score"]), float(row["max_score"]))
            for row in csv.DictReader(path.open()) if row["assignment"] == LESSON}


def without_exploration(text: str) -> str:
    """The notebook without its exploration code cells (neither setup nor nbgrader cells), as a student may
    delete them: nbgrader then runs only what is graded. (tests/test_notebooks.py runs whole notebooks.)"""
    notebook = json.loads(text)
    notebook["cells"] = [c for c in notebook["cells"] if c["cell_type"] != "code" or "nbgrader" in c["metadata"]
                         or "setup" in c["metadata"].get("tags", [])]
    return json.dumps(notebook, indent=1)


@pytest.mark.slow
def test_nbgrader_round_trip_gives_the_same_scores_as_shortcutlab_grade(tmp_path):
    """export -> generate_assignment -> autograde (a solution, an untouched lesson, a solution missing one clamp,
    which only a hidden check notices) -> export CSV; shortcutlab grade on the same notebooks agrees."""
    root = tmp_path / "course"
    assert main(["export-nbgrader", str(root), "--lessons", LESSON]) == 0
    nbgrader(root, "generate_assignment", LESSON)
    released = (root / "release" / LESSON / f"{LESSON}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in released and "NotImplementedError" in released

    solution = (root / "source" / LESSON / f"{LESSON}.ipynb").read_text()
    unclamped = solution.replace(".clamp(0, 1)", "")
    assert unclamped != solution
    for student, text in (("alice", solution), ("bob", released), ("carol", unclamped)):
        folder = root / "submitted" / student / LESSON
        folder.mkdir(parents=True)
        (folder / f"{LESSON}.ipynb").write_text(without_exploration(text))
        (folder / "timestamp.txt").write_text("2024-05-01 10:00:00.000000 UTC")
    nbgrader(root, "autograde", LESSON)
    nbgrader(root, "export")
    theirs = csv_scores(root / "grades.csv")
    assert theirs == {"alice": (12.0, 12.0), "bob": (0.0, 12.0), "carol": (pytest.approx(11.4), 12.0)}

    run = grade_class([root / "submitted"], tmp_path / "grades", jobs=2)
    ours = csv_scores(tmp_path / "grades" / "grades.csv")
    assert ours == theirs
    rows = list(csv.DictReader((tmp_path / "grades" / "grades.csv").open()))
    assert {r["timestamp"] for r in rows} == {"2024-05-01 10:00:00.000000 UTC"}
    assert all(s.error is None for s in run.report.submissions)

    autograded = json.loads((root / "autograded" / "carol" / LESSON / f"{LESSON}.ipynb").read_text())
    outputs = json.dumps(autograded["cells"])
    assert "hidden check (failed)" in outputs and "clamp the result" not in outputs  # hidden messages stay hidden
