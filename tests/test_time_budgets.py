"""Do time limits protect the class? A function that loops costs one check's time limit (its other checks are
not run), a submission has a wall budget, checks' default timeouts come from the reference's own time, and a
cell stopped or raising while loading is reported (terminal line, --json, grades.csv, feedback), never silent.

The toy course here has tiny timeouts so the whole file takes seconds per batch; the lesson-03 batch at the end is
the issue's acceptance case (a correct notebook, a `while True` grad_cam, a top-level hang in a graded cell) with
the real checks and short limits.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.engine import limits
from shortcutlab.grading.engine import timeouts
from shortcutlab.grading.engine.limits import START_SLACK, default_budget
from shortcutlab.grading.engine.timeouts import apply_derived_timeouts, derived_timeout
from shortcutlab.grading.registry import plan_checks
from shortcutlab.grading.engine.runner import grade

from conftest import processes_left

ROOT = Path(__file__).resolve().parents[1]

COURSE_YML = """\
version: 1
title: Time limits
grading: {timeout: 1.5, load_timeout: 20, preload: []}
lessons:
  - id: 92_loops
    title: Loops
    notebook: 92_loops.ipynb
    functions:
      inc: {points: 4, reference: operator.pos}
      dec: {points: 1, reference: operator.neg}
"""

CHECKS = '''
from shortcutlab.grading import check


@check("inc")
def test_inc_one(inc):
    assert inc(1) == 2


@check("inc")
def test_inc_two(inc):
    assert inc(2) == 3


@check("inc")
def test_inc_three(inc):
    assert inc(3) == 4


@check("inc")
def test_inc_four(inc):
    assert inc(4) == 5


@check("dec")
def test_dec(dec):
    assert dec(1) == 0
'''

INC = "def inc(x):\n    return x + 1\n"
DEC = "def dec(x):\n    return x - 1\n"


def _cell(source: str, **metadata) -> dict:
    return {"cell_type": "code", "metadata": metadata, "source": source, "outputs": [], "execution_count": None}


def _solution(name: str, source: str) -> dict:
    return _cell(source, nbgrader={"grade": False, "solution": True, "locked": False, "grade_id": name,
                                   "schema_version": 3})


def _notebook(inc: str, dec: str = DEC) -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Loops"},
             _cell("import math\n", tags=["setup"]), _solution("inc", inc), _solution("dec", dec)]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("budgets")
    (root / "course.yml").write_text(COURSE_YML)
    (root / "autograder").mkdir()
    (root / "autograder" / "test_92_loops.py").write_text(CHECKS)
    subs = root / "submissions"
    subs.mkdir()
    (subs / "92_loops_correct.ipynb").write_text(_notebook(INC))
    (subs / "92_loops_loop.ipynb").write_text(_notebook("def inc(x):\n    while True:\n        pass\n"))
    # A top-level hang in a graded cell, after the function it defines (cell 3 of the notebook).
    (subs / "92_loops_hang.ipynb").write_text(_notebook(INC + "\nwhile True:\n    pass\n"))
    return root


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "shortcutlab", "grade", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def graded_class(toy):
    """The three toy submissions graded by the command line, two at a time, then listed again from the gradebook."""
    out = toy / "grades"
    start = time.monotonic()
    done = _cli("--jobs", "2", "--json", "--seed", "3", "--course", str(toy / "course.yml"), "--out", str(out),
                str(toy / "submissions"), cwd=toy)
    seconds = time.monotonic() - start
    table = _cli("--seed", "3", "--course", str(toy / "course.yml"), "--out", str(out), str(toy / "submissions"),
                 cwd=toy)  # reused from the gradebook: the terminal lines
    document = json.loads(done.stdout)
    by_name = {Path(s["path"]).name.removeprefix("92_loops_").removesuffix(".ipynb"): s
               for s in document["submissions"]}
    return {"done": done, "seconds": seconds, "json": by_name, "table": table.stdout, "out": out}


def _statuses(submission: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in submission["checks"]}


def test_a_looping_function_costs_one_time_limit_and_its_other_checks_are_not_run(graded_class):
    loop = graded_class["json"]["loop"]
    assert _statuses(loop) == {"test_inc_one": "timeout", "test_inc_two": "timeout", "test_inc_three": "timeout",
                               "test_inc_four": "timeout", "test_dec": "passed"}
    first, *rest = [c for c in loop["checks"] if c["function"] == "inc"]
    assert "did not finish within 1.5 s" in first["output"]
    assert all(c["output"].startswith("not run: an earlier check of inc timed out") for c in rest)
    assert loop["score"] == 1 and loop["load"]["status"] == "ok"
    # Four checks of 1.5 s each would cost over 6 s for this submission alone.
    assert graded_class["seconds"] < 60, graded_class["seconds"]


def test_a_top_level_hang_in_a_graded_cell_is_reported_everywhere(graded_class):
    hang = graded_class["json"]["hang"]
    assert hang["load"]["status"] == "timeout" and hang["load"]["cell"] == 3
    assert "did not finish within 1.5 s" in hang["load"]["message"]
    assert hang["error"] is None and hang["score"] == 5  # what it defined still counts
    lines = {line.split()[0]: line for line in graded_class["table"].splitlines() if "92_loops" in line}
    assert lines["hang"].split()[2:4] == ["5/5", "timeout"] and "cell 3 timed out while loading" in lines["hang"]
    assert lines["correct"].split()[2:] == ["5/5", "graded"]
    rows = {r["student_id"]: r for r in csv.DictReader((graded_class["out"] / "grades.csv").open())}
    assert rows["hang"]["status"] == "timeout" and rows["correct"]["status"] == "graded"
    assert rows["loop"]["status"] == "graded"  # a function that timed out was graded: its checks say timeout
    feedback = "\n".join(p.read_text() for p in (graded_class["out"] / "feedback").rglob("*.md") if "hang" in str(p))
    assert "Cell 3 did not finish in time while loading" in feedback


def test_the_correct_submission_is_untouched_and_the_hang_makes_the_run_exit_1(graded_class):
    correct = graded_class["json"]["correct"]
    assert correct["score"] == correct["max_score"] == 5 and correct["load"] == {"status": "ok", "cell": None,
                                                                                   "message": ""}
    done = graded_class["done"]
    # the hang could not be loaded in time: the run says so and exits 1; the loop was graded (its function timed out)
    assert done.returncode == 1, done.stderr
    assert "not graded: hang's 92_loops" in done.stderr and "loop's" not in done.stderr
    assert "1 submission could not be graded normally (exit code 1)" in done.stderr


def test_a_submission_that_uses_up_its_budget_has_its_remaining_checks_timed_out(tmp_path):
    (tmp_path / "course.yml").write_text(COURSE_YML.replace(
        "grading: {timeout: 1.5, load_timeout: 20, preload: []}",
        "grading: {timeout: 30, load_timeout: 20, preload: [], submission_budget: 4, derive_timeouts: false}"))
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "test_92_loops.py").write_text(CHECKS)
    slow = tmp_path / "92_loops.py"
    slow.write_text("import time\n\ndef inc(x):\n    time.sleep(1.5)\n    return x + 1\n\n" + DEC)
    start = time.monotonic()
    result = grade([slow], course=tmp_path / "course.yml", jobs=1, seed=1).submissions[0]
    assert time.monotonic() - start < 40
    statuses = {c.name: c.status for c in result.checks}
    assert statuses["test_inc_one"] == "passed"  # 1.5 s of a 4 s budget
    assert statuses["test_dec"] == "timeout"  # never reached: inc's four checks need more than the budget
    stopped = [c for c in result.checks if c.status == "timeout"]
    assert all("grading budget of 4 s" in c.output for c in stopped), [c.output for c in stopped]
    assert result.error is None


def test_a_child_left_running_by_a_function_neither_stalls_grading_nor_outlives_it(toy, tmp_path):
    """inc forks a child that sleeps on with the grader's pipes inherited: every result is in, so grading goes on
    at once (it used to wait START_SLACK, 30 s, for the pipe to close), and the child is killed."""
    name = f"slkid{os.getpid()}"[:15]
    source = ("import ctypes, os, time\n\ndef inc(x):\n    if not globals().get('_KID'):\n"
              "        globals()['_KID'] = True\n        if os.fork() == 0:\n"
              f"            ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n            time.sleep(120)\n"
              "            os._exit(0)\n    return x + 1\n\n" + DEC)
    (tmp_path / "92_loops.py").write_text(source)
    result = grade([tmp_path / "92_loops.py"], course=toy / "course.yml", jobs=1, seed=1).submissions[0]
    assert [c.status for c in result.checks] == ["passed"] * 5, [c.output for c in result.checks]
    assert result.seconds < START_SLACK, result.seconds
    assert processes_left([name]) == []


def test_the_default_budget_is_loading_plus_two_time_limits_per_function_capped():
    class C:  # a planned check
        def __init__(self, function: str, timeout: float) -> None:
            self.function, self.timeout = function, timeout

    assert default_budget(120, [C("grad_cam", 60)] * 9) == 240
    assert default_budget(10, [C("a", 1), C("a", 2), C("b", 3)]) == 70  # at least loading + a minute
    assert default_budget(120, [C(f"f{i}", 60) for i in range(10)]) == limits.BUDGET_CAP


DERIVE_YML = """\
version: 1
title: Derived
grading: {timeout: 30, timeout_floor: 1, timeout_factor: 20, preload: []}
lessons:
  - id: 93_derive
    title: Derived timeouts
    notebook: 93_derive.ipynb
    functions:
      nap: {points: 1, reference: time.sleep}
      fixed: {points: 1, reference: operator.neg, timeout: 7}
      wrong: {points: 1, reference: operator.neg}
"""

DERIVE_CHECKS = '''
from shortcutlab.grading import check


@check("nap")
def test_nap(nap):
    nap(0.2)


@check("fixed")
def test_fixed(fixed):
    assert fixed(1) == -1


@check("wrong")
def test_wrong(wrong):
    assert wrong(1) == 1, "the reference fails this check, so it cannot be timed"
'''


def test_default_timeouts_come_from_the_references_time_once_and_course_yml_keys_win(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "course.yml").write_text(DERIVE_YML)
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "test_93_derive.py").write_text(DERIVE_CHECKS)
    course = load_course(tmp_path / "course.yml")
    planned = {c.name: c.timeout for c in apply_derived_timeouts(course, "93_derive", plan_checks(course, "93_derive"))}
    assert 4 <= planned["test_nap"] <= 10  # 20 x 0.2 s, rounded up
    assert planned["test_fixed"] == 7  # course.yml's own timeout wins
    assert planned["test_wrong"] == 30  # not measurable: grading.timeout
    assert len(list((tmp_path / "cache" / "grading-timeouts").glob("93_derive-*.json"))) == 1

    def measure(*args, **kwargs):
        raise AssertionError("measured twice")

    monkeypatch.setattr(timeouts, "_measure", measure)  # cached: the same timeouts without measuring again
    again = {c.name: c.timeout for c in apply_derived_timeouts(course, "93_derive", plan_checks(course, "93_derive"))}
    assert again == planned
    assert derived_timeout(0.001, 10, 20, 60) == 10 and derived_timeout(5, 10, 20, 60) == 60
    assert derived_timeout(None, 10, 20, 60) == 60 and derived_timeout(0.7, 10, 20, 60) == 14


# ----------------------------------------------------------------------------- the acceptance case


def _lesson_03_class(folder: Path) -> list[Path]:
    """A correct lesson-03 notebook, one whose grad_cam is `while True: pass`, one that hangs at top level in
    grad_cam's cell (after defining it)."""
    source = ROOT / "solutions" / "03_gradcam.ipynb"
    folder.mkdir(parents=True, exist_ok=True)

    def variant(name: str, change) -> Path:
        notebook = json.loads(source.read_text())
        for cell in notebook["cells"]:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "grad_cam":
                cell["source"] = change("".join(cell["source"]))
        path = folder / f"03_gradcam__{name}.ipynb"
        path.write_text(json.dumps(notebook))
        return path

    def loop(code: str) -> str:
        end = code.index('"""', code.index('"""') + 3) + 3  # after grad_cam's docstring
        return code[:end] + "\n    while True:\n        pass\n"

    return [variant("loop", loop), variant("hang", lambda code: code + "\n\nwhile True:\n    pass\n"),
            variant("correct", lambda code: code)]


@pytest.mark.slow
@pytest.mark.heavy  # make test-slow: a real lesson's class with a loop and a hang (the toy's stay in make test)
def test_a_lesson_03_class_with_a_looping_and_a_hanging_notebook_is_graded_fast(tmp_path):
    from shortcutlab.grading.integrations.batch import grade_class

    course = load_course(ROOT / "course.yml")
    lessons = tuple(lesson.model_copy(update={"timeout": 8.0, "load_timeout": 40.0}) if lesson.id == "03_gradcam"
                    else lesson for lesson in course.lessons)
    preload = ("numpy", "torch", "torch.nn.functional", "shortcutlab.interpret", "shortcutlab.models")
    course = course.model_copy(update={"lessons": lessons,
                                       "grading": course.grading.model_copy(update={"preload": preload})})
    paths = _lesson_03_class(tmp_path / "class")
    start = time.monotonic()
    run = grade_class(paths, tmp_path / "grades", course=course, jobs=2, seed=5)
    seconds = time.monotonic() - start
    by_name = {Path(r.path).stem.split("__")[1]: r for r in run.report.submissions}
    loop, hang, correct = by_name["loop"], by_name["hang"], by_name["correct"]
    assert correct.score == pytest.approx(correct.max_score) == pytest.approx(5)
    assert correct.status == "graded"
    assert loop.score == 0 and {c.status for c in loop.checks} == {"timeout"}
    assert sum(c.output.startswith("grad_cam did not finish within 8 s") for c in loop.checks) == 1  # one, not nine
    assert sum(c.output.startswith("not run: an earlier check of grad_cam timed out") for c in loop.checks) == \
        len(loop.checks) - 1
    assert hang.load.status == "timeout" and hang.load.cell == 4 and hang.status == "timeout"
    rows = {r["student_id"]: r["status"] for r in csv.DictReader((tmp_path / "grades" / "grades.csv").open())}
    assert sorted(rows.values()) == ["graded", "graded", "timeout"]  # the loop was graded: one function timed out
    # Loading (8 s for the hang), one 8 s limit for the loop, the correct checks and two server starts.
    assert seconds < 120, seconds
