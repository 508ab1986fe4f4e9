"""Does the grading engine find checks, split points, isolate failures, keep time limits and report cleanly?

Most tests grade toy lessons written into a temporary course, in one batch (one `grade` call): lesson
90_toy is plain Python (fast servers), 91_tensor uses torch and the expect_* helpers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import TOY_CHECKS, TOY_CORRECT, make_toy_course, sandbox_warnings_dropped, toy_course_yml
import torch

import shortcutlab
from shortcutlab.course import CourseError, load_course
from shortcutlab.grading import CheckFailure, check, expect_close, expect_equal, expect_finite, expect_range, \
    expect_shape
from shortcutlab.grading.integrations.notebook import ChecksFailed, check_in_notebook
from shortcutlab.grading.registry import CheckFileError, collect_checks, import_check_file, parse_check_file, plan_checks
from shortcutlab.grading.outputs.report import render_table
from shortcutlab.grading.results import CheckResult, GradeReport, SubmissionResult
from shortcutlab.grading.engine.runner import grade
from shortcutlab.grading.engine.submission import SubmissionError, load_submission

ROOT = Path(__file__).resolve().parents[1]

# The shared toy course (conftest.py) with a second lesson of tensors; functions time out after 2 s here.
TENSOR_LESSON = """\
  - id: 91_tensor
    title: Tensors
    notebook: 91_tensor.ipynb
    timeout: 30
    functions:
      norm: {points: 2, reference: torch.linalg.vector_norm}
      double: {points: 1, reference: operator.neg}
"""
COURSE_YML = toy_course_yml(timeout=2, more_lessons=TENSOR_LESSON)

TENSOR_CHECKS = '''
import torch
from shortcutlab.grading import check, expect_close, expect_finite, expect_shape


@check("norm")
def test_norm_of_rows(norm, seed):
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))
    got = norm(x)
    expect_shape(got, (5,), "norm(x) for x of shape (5, 3)")
    expect_finite(got, "norm(x)")
    expect_close(got, x.norm(dim=1), "norm(x)", atol=1e-6, rtol=1e-5, hint="sqrt of the sum of squares per row")


@check("double")
def test_double(double, seed):
    assert double(seed) == 2 * seed
'''

CORRECT_TOY = TOY_CORRECT

CORRECT_TENSOR = '''
import torch

def norm(x):
    return x.pow(2).sum(dim=1).sqrt()

def double(v):
    return 2 * v
'''

SUBMISSIONS = {
    "90_toy_correct.py": CORRECT_TOY,
    "90_toy_missing_scale.py": "def add(a, b):\n    return a + b\n",
    "90_toy_add_raises.py": CORRECT_TOY.replace("return a + b", "raise ValueError('no adding today')"),
    "90_toy_python_loop.py": CORRECT_TOY.replace("return x * k", "while True:\n        pass"),
    # SIGALRM blocked: only killing the process stops it; the big check then runs in a fresh process
    "90_toy_blocks_alarm.py": CORRECT_TOY.replace(
        "return x * k", "import signal\n    if x < 100:\n        signal.pthread_sigmask(signal.SIG_BLOCK, "
                        "{signal.SIGALRM})\n        while True:\n            pass\n    return x * k"),
    "90_toy_exits.py": CORRECT_TOY.replace("return a + b", "import os\n    os._exit(3)").replace(
        "return x * k", "import sys\n    sys.exit('bye')"),
    "90_toy_dies_while_loading.py": CORRECT_TOY + "\nimport os\nos._exit(1)\n",
    "90_toy_stub.py": CORRECT_TOY.replace("return a + b", "raise NotImplementedError('add the numbers')"),
    "90_toy_noisy.py": "import os\nprint('hello from loading')\nos.write(1, b'raw bytes on fd 1\\n')\n"
                       + CORRECT_TOY.replace("return a + b", "print('adding', a, b)\n    return a + b + 1"),
    "90_toy_tail_error.py": CORRECT_TOY + "\nraise RuntimeError('a demo call at the end of the file')\n",
    "91_tensor_correct.py": CORRECT_TENSOR,
    "91_tensor_nan.py": CORRECT_TENSOR.replace("return x.pow(2).sum(dim=1).sqrt()",
                                               "return x.sum(dim=1).sqrt()"),
    "91_tensor_wrong_shape.py": CORRECT_TENSOR.replace("sum(dim=1)", "sum(dim=1, keepdim=True)"),
    "91_tensor_wrong_values.py": CORRECT_TENSOR.replace("sqrt()", "sqrt() * 1.01"),
    "mystery.py": CORRECT_TOY,
    # Tamper attempts: forged result lines (printed, on every file descriptor, as files), a patched check runner,
    # the reference itself.
    "90_toy_forges.py": CORRECT_TOY.replace("return a + b", "return 0") + """
import json, os
_names = ["test_add_small_numbers", "test_add_negative_numbers", "test_scale_small", "test_scale_big"]
_fake = "".join(json.dumps({"event": "result", "name": n, "status": "passed", "output": ""}) + "\\n" for n in _names)
print(_fake)
for _fd in range(1, 64):
    try:
        os.write(_fd, _fake.encode())
    except OSError:
        pass
open("results.json", "w").write(_fake)
""",
    "90_toy_patches_runner.py": CORRECT_TOY.replace("return a + b", "return 0") + """
import sys
import shortcutlab.grading.engine.execute as execute
import shortcutlab.grading.engine.job as job  # where the processes of a job call run_check
job.run_check = lambda *args, **kwargs: execute.Outcome(execute.PASSED)
""",
    "90_toy_is_reference.py": CORRECT_TOY.replace("def add(a, b):\n    return a + b\n", "from operator import add\n"),
}


def code_cell(source: str, **metadata) -> dict:
    return {"cell_type": "code", "metadata": metadata, "source": source, "outputs": [], "execution_count": None}


def solution(name: str, source: str) -> dict:
    return code_cell(source, nbgrader={"grade": False, "solution": True, "locked": False, "grade_id": name,
                                       "schema_version": 3})


def notebook(cells: list[dict]) -> str:
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


NOTEBOOK = notebook([
    {"cell_type": "markdown", "metadata": {}, "source": "# Toy lesson"},
    code_cell("%matplotlib inline\nOFFSET = 0\n", tags=["setup"]),
    solution("add", "def add(a, b):\n    return a + b + OFFSET\n"),
    code_cell("shortcutlab.check('90_toy.add', add)",
              nbgrader={"grade": True, "solution": False, "points": 3, "grade_id": "check_add"}),
    code_cell("import sys\nsys.exit('exploration cells never run when grading')\n"),
    code_cell("while True:\n    pass\n"),
    solution("scale", "def scale(x, k)\n    return x * k\n"),  # a syntax error costs scale only
])


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A course folder with the toy lessons, their checks and the submissions above."""
    root = tmp_path_factory.mktemp("toy")
    make_toy_course(root, timeout=2, more_lessons=TENSOR_LESSON, more_checks={"test_91_tensor.py": TENSOR_CHECKS})
    subs = root / "submissions"
    subs.mkdir()
    for name, source in SUBMISSIONS.items():
        (subs / name).write_text(source)
    (subs / "90_toy_notebook.ipynb").write_text(NOTEBOOK)
    (subs / "90_toy_broken.ipynb").write_text('{"cells": [')
    (subs / "90_toy_v3.ipynb").write_text(json.dumps({"worksheets": [], "nbformat": 3}))
    (subs / "90_toy_v5.ipynb").write_text(json.dumps({"cells": [], "nbformat": 5, "nbformat_minor": 0}))
    return root


@pytest.fixture(scope="module")
def graded(toy) -> dict:
    """Every toy submission graded in one batch with a fixed seed: {file name: SubmissionResult}."""
    report = grade([toy / "submissions"], course=toy / "course.yml", jobs=2, seed=1234)
    results = {Path(s.path).name: s for s in report.submissions}
    results["_report"] = report
    return results


def statuses(result) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


def by_function(result) -> dict[str, tuple[float, float]]:
    return result.function_scores()


# ----------------------------------------------------------------------------- discovery and points


def test_checks_are_discovered_in_file_order_with_their_function_params_and_visibility(toy):
    checks = parse_check_file(toy / "autograder" / "test_90_toy.py")
    assert [(c.name, c.function, c.hidden, c.params) for c in checks] == [
        ("test_add_small_numbers", "add", False, ("add", "seed")),
        ("test_add_negative_numbers", "add", True, ("add", "seed")),
        ("test_scale_small", "scale", False, ("scale",)),
        ("test_scale_big", "scale", False, ("scale",)),
    ]


def test_points_are_split_equally_over_a_functions_checks_and_course_yml_can_hide_checks(toy):
    planned = {c.name: c for c in plan_checks(load_course(toy / "course.yml"), "90_toy")}
    assert {n: c.max_score for n, c in planned.items()} == {
        "test_add_small_numbers": 1.5, "test_add_negative_numbers": 1.5, "test_scale_small": 1.0, "test_scale_big": 1.0}
    assert planned["test_add_negative_numbers"].hidden and planned["test_scale_big"].hidden
    assert not planned["test_scale_small"].hidden
    assert all(c.timeout == 2 for c in planned.values())


@pytest.mark.parametrize("source, message", [
    ('@check(NAME)\ndef test_x(x): ...\n', "literal arguments"),
    ('@check("x", hidden=flag)\ndef test_x(x): ...\n', "literal arguments"),
    ('@check("x")\ndef test_x(x): ...\n@check("x")\ndef test_x(x): ...\n', "a second check named test_x"),
    ('def broken(:\n', "line 1"),
])
def test_a_check_file_that_cannot_be_read_statically_is_an_error_naming_the_line(tmp_path, source, message):
    path = tmp_path / "test_bad.py"
    path.write_text(source)
    with pytest.raises(CheckFileError, match=message):
        parse_check_file(path)


@pytest.mark.parametrize("checks, hidden, message", [
    ('@check("add")\ndef test_a(add): ...\n', "", "no @check for it"),
    ('@check("add")\ndef test_a(add): ...\n@check("scale")\ndef test_s(scale): ...\n@check("mul")\n'
     'def test_m(mul): ...\n', "", "does not list"),
    ('@check("add")\ndef test_a(add): ...\n@check("scale")\ndef test_s(scale): ...\n', "[test_nope]", "no such check"),
])
def test_course_yml_and_check_file_must_agree(tmp_path, checks, hidden, message):
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "test_90_toy.py").write_text("from shortcutlab.grading import check\n" + checks)
    text = COURSE_YML.replace("hidden: [test_scale_big]", f"hidden: {hidden or '[]'}")
    (tmp_path / "course.yml").write_text(text)
    with pytest.raises(CheckFileError, match=message):
        plan_checks(load_course(tmp_path / "course.yml"), "90_toy")


def test_a_lesson_without_a_check_file_is_named_in_the_error(tmp_path):
    (tmp_path / "course.yml").write_text(COURSE_YML)
    with pytest.raises(CheckFileError, match="no check file .*test_90_toy.py"):
        plan_checks(load_course(tmp_path / "course.yml"), "90_toy")


def test_static_discovery_agrees_with_importing_every_autograder_file():
    course = load_course()
    for lesson in course.lessons:
        path = course.check_file(lesson)
        if not path.exists():
            continue
        static = {c.name: (c.function, c.hidden) for c in parse_check_file(path)}
        imported = collect_checks(import_check_file(path))
        marks = {name: (fn.__shortcutlab_check__.function, fn.__shortcutlab_check__.hidden)
                 for name, fn in imported.items()}
        assert static == marks, path.name
        assert {c.function for c in plan_checks(course, lesson)} == set(lesson.functions)


def test_the_decorator_marks_and_returns_the_function_and_rejects_a_non_name():
    @check("grad_cam", hidden=True)
    def test_it(grad_cam):
        pass

    assert test_it.__shortcutlab_check__.function == "grad_cam" and test_it.__shortcutlab_check__.hidden
    with pytest.raises(TypeError, match="name"):
        check(lambda: None)
    with pytest.raises(TypeError):
        check("lesson.fn", test_it)  # shortcutlab.check's call shape, given to the decorator by mistake


# ----------------------------------------------------------------------------- grading outcomes


def test_a_correct_submission_gets_full_marks_hidden_checks_included(graded):
    result = graded["90_toy_correct.py"]
    assert (result.score, result.max_score, result.error) == (5.0, 5.0, None)
    assert {c.name: c.hidden for c in result.checks}["test_add_negative_numbers"] is True
    assert graded["91_tensor_correct.py"].score == 3.0


def test_a_missing_function_fails_only_its_own_checks(graded):
    result = graded["90_toy_missing_scale.py"]
    assert by_function(result) == {"add": (3.0, 3.0), "scale": (0.0, 2.0)}
    assert result.error is None
    scale = [c for c in result.checks if c.function == "scale"]
    assert all(c.status == "error" and "`scale` is not defined" in c.output for c in scale)


def test_an_exception_fails_only_that_functions_checks_and_shows_the_students_line(graded):
    result = graded["90_toy_add_raises.py"]
    assert by_function(result) == {"add": (0.0, 3.0), "scale": (2.0, 2.0)}
    add = [c for c in result.checks if c.function == "add"]
    assert all(c.status == "error" for c in add)
    assert "ValueError: no adding today" in add[0].output
    assert "90_toy_add_raises.py, line 2" in add[0].output and "raise ValueError" in add[0].output


def test_a_stub_is_failed_as_not_implemented_not_as_a_grader_error(graded):
    result = graded["90_toy_stub.py"]
    add = [c for c in result.checks if c.function == "add"]
    assert all(c.status == "failed" and "not implemented yet" in c.output and "add the numbers" in c.output
               for c in add)
    assert result.error is None and by_function(result)["scale"] == (2.0, 2.0)


def test_an_endless_loop_times_out_and_costs_only_that_function_once(graded):
    result = graded["90_toy_python_loop.py"]
    assert statuses(result) == {"test_add_small_numbers": "passed", "test_add_negative_numbers": "passed",
                                "test_scale_small": "timeout", "test_scale_big": "timeout"}
    assert "did not finish within 2 s" in result.checks[2].output
    # The function's next check is not run at all: a loop costs one time limit, not one per check.
    assert result.checks[3].output.startswith("not run: an earlier check of scale timed out")


def test_a_hang_the_alarm_cannot_stop_is_killed_and_the_functions_next_check_is_not_run(graded):
    result = graded["90_toy_blocks_alarm.py"]
    assert statuses(result)["test_scale_small"] == "timeout"
    assert "did not finish within 2 s and was stopped" in result.checks[2].output
    assert statuses(result)["test_scale_big"] == "timeout"
    assert result.checks[3].output.startswith("not run: an earlier check of scale timed out")
    assert by_function(result)["add"] == (3.0, 3.0)


def test_a_process_that_exits_fails_its_checks_never_passes_them(graded):
    result = graded["90_toy_exits.py"]
    assert statuses(result) == {"test_add_small_numbers": "error", "test_add_negative_numbers": "error",
                                "test_scale_small": "error", "test_scale_big": "error"}
    assert "exited with code 3" in result.checks[0].output
    assert "SystemExit: bye" in result.checks[2].output
    assert result.score == 0 and result.error is None


def test_code_that_kills_the_process_while_loading_is_a_submission_error_with_zero_points(graded):
    result = graded["90_toy_dies_while_loading.py"]
    assert result.score == 0 and result.max_score == 5
    assert "while loading" in result.error and "exited with code 1" in result.error
    assert {c.status for c in result.checks} == {"error"}


def test_a_statement_that_raises_in_a_py_file_does_not_stop_the_rest(graded):
    result = graded["90_toy_tail_error.py"]
    assert result.score == 5.0
    # ... but it is never silent: loading reports the statement that raised, and so does the submission's status.
    assert result.load.status == "error" and "a demo call at the end of the file" in result.load.message
    assert result.status == "error"


def test_a_graded_cell_that_raises_while_loading_is_reported_with_its_cell_number(graded):
    result = graded["90_toy_notebook.ipynb"]
    assert result.load.status == "error" and result.load.cell == 7
    assert "SyntaxError" in result.load.message


def test_printing_is_captured_and_shown_with_a_failure(graded):
    result = graded["90_toy_noisy.py"]
    add = result.checks[0]
    assert add.status == "failed" and "--- printed output ---" in add.output and "adding" in add.output
    assert by_function(result)["scale"] == (2.0, 2.0)


def test_nan_and_wrong_shape_fail_with_messages_in_the_students_terms(graded):
    nan = graded["91_tensor_nan.py"]
    assert by_function(nan) == {"norm": (0.0, 2.0), "double": (1.0, 1.0)}
    assert "non-finite" in nan.checks[0].output and "at index" in nan.checks[0].output
    shape = graded["91_tensor_wrong_shape.py"].checks[0]
    assert shape.status == "failed" and "should have shape (5,), got (5, 1)" in shape.output
    assert "dimensions of size 1" in shape.output
    values = graded["91_tensor_wrong_values.py"].checks[0]
    assert "5 of 5 values differ" in values.output and "expected" in values.output
    assert "Hint: sqrt of the sum of squares per row" in values.output


def test_a_notebook_runs_setup_and_solution_cells_only(graded):
    result = graded["90_toy_notebook.ipynb"]
    assert result.error is None
    assert by_function(result) == {"add": (3.0, 3.0), "scale": (0.0, 2.0)}
    scale = [c for c in result.checks if c.function == "scale"][0]
    assert "SyntaxError" in scale.output and "cell 7, scale" in scale.output


def test_malformed_notebooks_and_unknown_lessons_get_a_clear_error_and_zero(graded):
    broken = graded["90_toy_broken.ipynb"]
    assert broken.score == 0 and broken.max_score == 5 and "broken JSON at line 1" in broken.error
    assert "v3" in graded["90_toy_v3.ipynb"].error
    assert "nbformat 5 notebook; the grader reads nbformat 4" in graded["90_toy_v5.ipynb"].error
    mystery = graded["mystery.py"]
    assert mystery.lesson is None and "cannot tell the lesson" in mystery.error and "--lesson" in mystery.error


def test_forged_result_lines_and_files_do_not_pass_a_check(graded):
    result = graded["90_toy_forges.py"]
    assert by_function(result) == {"add": (0.0, 3.0), "scale": (2.0, 2.0)}
    assert not (Path.cwd() / "results.json").exists()


def test_a_check_runner_patched_by_the_submission_passes_nothing(graded):
    """Its process says every check passed, but without the answers the grader's own re-run needs."""
    result = graded["90_toy_patches_runner.py"]
    assert result.score == 0 and result.error is None
    assert all(c.status == "failed" and "could not verify" in c.output for c in result.checks)


def test_a_function_that_is_the_reference_scores_zero_unless_the_course_allows_it(graded, toy, tmp_path):
    result = graded["90_toy_is_reference.py"]
    assert by_function(result) == {"add": (0.0, 3.0), "scale": (2.0, 2.0)}
    assert all("add is the shortcutlab reference `operator.add`; write your own implementation" in c.output
               for c in result.checks if c.function == "add")
    allowing = tmp_path / "course.yml"
    allowing.write_text(COURSE_YML.replace("preload: []}", "preload: [], allow_reference: true}"))
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "test_90_toy.py").write_text(TOY_CHECKS)
    (tmp_path / "autograder" / "test_91_tensor.py").write_text(TENSOR_CHECKS)
    report = grade([toy / "submissions" / "90_toy_is_reference.py"], course=allowing, jobs=1, seed=1234)
    assert report.submissions[0].score == 5.0


def test_results_come_back_in_input_order_with_the_given_seed(graded):
    report = graded["_report"]
    assert report.seed == 1234
    names = [Path(s.path).name for s in report.submissions]
    assert names == sorted(names)  # a folder is expanded in sorted order and results keep it


def test_hard_coded_outputs_fail_because_inputs_change_with_the_seed(toy, capsys):
    reports = []
    for seed in (1, 1, 2):
        with pytest.raises(ChecksFailed):
            check_in_notebook("90_toy.add", lambda a, b: 7, course=toy / "course.yml", seed=seed)
        reports.append(capsys.readouterr().out)
    assert reports[0] == reports[1] and reports[0] != reports[2]
    assert "add(" in reports[0] and "got 7" in reports[0]


# ----------------------------------------------------------------------------- submissions


def test_lesson_comes_from_the_file_name_a_parent_folder_or_the_lesson_option(toy, tmp_path):
    course = load_course(toy / "course.yml")
    nested = tmp_path / "90_toy" / "alice.py"
    nested.parent.mkdir()
    nested.write_text(CORRECT_TOY)
    assert load_submission(nested, course).lesson == "90_toy"
    other = tmp_path / "work.py"
    other.write_text(CORRECT_TOY)
    assert load_submission(other, course, lesson="90_toy").lesson == "90_toy"
    with pytest.raises(CourseError, match="choose one of: 90_toy, 91_tensor"):
        load_submission(other, course, lesson="99_nope")


def test_a_py_file_with_a_syntax_error_is_a_submission_error_naming_the_line(toy, tmp_path):
    path = tmp_path / "90_toy.py"
    path.write_text("def add(a, b):\n    return a +\n")
    with pytest.raises(SubmissionError, match="line 2"):
        load_submission(path, load_course(toy / "course.yml"))


def test_magics_are_dropped_and_a_notebook_without_metadata_runs_only_definitions(toy, tmp_path):
    path = tmp_path / "90_toy.ipynb"
    path.write_text(notebook([code_cell("import math\n!pip install nothing\ndef add(a, b):\n    return a + b\n"),
                              code_cell("add(1, 2)\nwhile True: pass\n")]))
    submission = load_submission(path, load_course(toy / "course.yml"))
    assert [c.source for c in submission.cells] == ["import math\n# !pip install nothing\ndef add(a, b):\n"
                                                    "    return a + b\n"]
    assert "no setup tags or nbgrader metadata" in submission.notes[0]


# ----------------------------------------------------------------------------- the command line


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``shortcutlab grade ARGS`` in a subprocess, its gradebook and exports in a throwaway folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as out:
        return subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--out", out, *args], capture_output=True,
                              text=True, cwd=cwd, env=env, timeout=120)


def test_json_output_is_one_document_on_stdout_with_the_documented_schema(toy):
    subs = toy / "submissions"
    done = run_cli("--json", "--course", str(toy / "course.yml"), "--seed", "7", str(subs / "90_toy_noisy.py"),
                   str(subs / "90_toy_correct.py"), str(subs / "90_toy_broken.ipynb"))
    assert done.returncode == 1, done.stderr  # one submission could not be graded
    document = json.loads(done.stdout)  # student prints (even raw fd writes) never reach stdout
    assert set(document) == {"seed", "submissions"} and document["seed"] == 7
    for submission in document["submissions"]:
        assert set(submission) == {"student", "path", "lesson", "status", "score", "max_score", "error", "load",
                                   "sandbox", "checks", "answers", "late_penalty", "total"}
        assert set(submission["load"]) == {"status", "cell", "message"}
        assert submission["load"]["status"] in ("ok", "error", "timeout", "not_run")
        assert submission["status"] in ("graded", "error", "timeout")
        assert set(submission["answers"]) == {"score", "max_score", "awaiting", "status"}
        assert set(submission["total"]) == {"score", "max_score"}
        for c in submission["checks"]:
            assert set(c) == {"name", "function", "score", "max_score", "status", "output", "hidden", "judged",
                              "kind", "gated", "slip"}
            assert c["status"] in ("passed", "failed", "error", "timeout") and c["kind"] in ("core", "property")
            assert isinstance(c["score"], (int, float)) and isinstance(c["output"], str)
    noisy, correct, broken = document["submissions"]
    assert [s["student"] for s in document["submissions"]] == ["noisy", "correct", "broken"]
    assert [s["lesson"] for s in document["submissions"]] == ["90_toy"] * 3
    assert [s["status"] for s in document["submissions"]] == ["graded", "graded", "error"]
    assert (correct["score"], correct["max_score"], correct["error"]) == (5, 5, None)
    assert correct["load"]["status"] == "ok" and broken["load"]["status"] == "not_run"
    assert noisy["score"] == 2 and broken["error"] and broken["score"] == 0
    assert "graded" in done.stderr


def test_table_output_is_one_line_per_submission_and_details_with_verbose(toy):
    args = ("--course", str(toy / "course.yml"), "--seed", "7", "--quiet",
            str(toy / "submissions" / "90_toy_add_raises.py"))
    done = run_cli(*args)
    assert done.returncode == 0 and sandbox_warnings_dropped(done.stderr) == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "add_raises  90_toy  2/5  graded"  # student, lesson, score/max, status
    assert len(lines) == 2 and "1 submission in" in lines[1] and "1 graded, 0 error, 0 timeout" in lines[1]
    verbose = run_cli("--verbose", *args)
    assert verbose.returncode == 0 and verbose.stdout.splitlines()[0] == lines[0]
    assert "ERROR test_add_small_numbers" in verbose.stdout and "ValueError: no adding today" in verbose.stdout
    assert "test_add_negative_numbers (hidden)" in verbose.stdout  # a hidden check: its name, never its message
    after = verbose.stdout.split("test_add_negative_numbers (hidden)\n", 1)[1]
    assert not after.startswith("        ")  # no message under it


def test_each_submission_gets_a_status_graded_error_or_timeout(graded):
    assert {name: graded[name].status for name in (
        "90_toy_correct.py", "90_toy_stub.py", "90_toy_missing_scale.py", "90_toy_add_raises.py",
        "90_toy_python_loop.py", "90_toy_dies_while_loading.py", "90_toy_broken.ipynb", "90_toy_notebook.ipynb")} == {
        "90_toy_correct.py": "graded", "90_toy_stub.py": "graded", "90_toy_missing_scale.py": "graded",
        "90_toy_add_raises.py": "graded",  # a wrong answer or a function left out is graded, not an error
        "90_toy_python_loop.py": "graded",  # a function that timed out was graded: its checks say timeout
        "90_toy_dies_while_loading.py": "error", "90_toy_broken.ipynb": "error",
        "90_toy_notebook.ipynb": "error"}  # its graded cell `scale` failed to load (a syntax error)


def test_the_table_never_shows_hidden_check_messages(graded):
    table = render_table(graded["_report"])
    assert len(table.splitlines()) == len(graded["_report"].submissions) + 1  # one line each, and a summary
    secret = SubmissionResult("x/alice_90_toy.py", "90_toy", None, (
        CheckResult("test_add_small_numbers", "add", 0.0, 1.5, "failed", "add(1, 2) should be 3, got 4"),
        CheckResult("test_add_negative_numbers", "add", 0.0, 1.5, "failed", "the hidden input was 12345", True)), 3.0)
    for details in (False, True):
        text = render_table(GradeReport(0, (secret,)), details=details)
        assert "12345" not in text and text.splitlines()[0] == "alice  90_toy  0/3  graded"
    assert "should be 3, got 4" in text and "test_add_negative_numbers (hidden)" in text


def test_usage_errors_exit_2_with_a_message(toy, tmp_path):
    done = run_cli("--course", str(toy / "course.yml"), "--lesson", "42_nope", str(tmp_path))
    assert done.returncode == 2 and "no lesson '42_nope'" in done.stderr
    done = run_cli("--course", str(toy / "course.yml"), str(tmp_path))
    assert done.returncode == 2 and "no submissions to grade" in done.stderr


def test_render_table_summarises_the_run(graded):
    table = render_table(graded["_report"])
    assert "with full marks" in table and "seed 1234" in table


# ----------------------------------------------------------------------------- shortcutlab.check in a notebook


def test_check_prints_a_short_report_and_runs_visible_checks_only(toy, capsys):
    assert check_in_notebook("90_toy.add", lambda a, b: a + b, course=toy / "course.yml") is None
    out = capsys.readouterr().out
    assert out.startswith("add: 1/1 checks passed") and "small numbers" in out and "negative" not in out


def test_check_raises_an_assertion_error_on_failure_so_nbgrader_marks_the_cell_failed(toy, capsys):
    with pytest.raises(AssertionError, match="1 of 1 checks of scale did not pass"):
        check_in_notebook("90_toy.scale", lambda x, k: x + k, course=toy / "course.yml")
    out = capsys.readouterr().out
    assert "✗ small" in out and "scale(3, 2) should be 6" in out and "seed" in out


def test_check_names_the_lesson_and_function_it_knows(toy):
    with pytest.raises(CourseError, match="no lesson '90_tyo'"):
        check_in_notebook("90_tyo.add", len, course=toy / "course.yml")
    with pytest.raises(CourseError, match="grades add, scale"):
        check_in_notebook("90_toy.mul", len, course=toy / "course.yml")
    with pytest.raises(CourseError, match="'<lesson id>.<function>'"):
        check_in_notebook("add", len, course=toy / "course.yml")


@pytest.mark.parametrize("lesson", load_course().lesson_ids)
def test_each_functions_visible_checks_pass_on_the_reference(lesson, capsys, monkeypatch):
    """The visible checks agree with the references, in a course that lets a graded function be its reference
    (``grading.allow_reference``, self-study); the course itself fails them (tests/test_visible_checks.py)."""
    from shortcutlab.course import import_object
    from shortcutlab.grading.integrations import notebook

    course = load_course()
    course = course.model_copy(update={"grading": course.grading.model_copy(update={"allow_reference": True})})
    monkeypatch.setattr(notebook, "load_course", lambda path=None: course)
    references = {name: import_object(spec.reference) for name, spec in course.lesson(lesson).functions.items()}
    for function, reference in references.items():
        # the other graded functions are passed too: a check may take the ones its function calls
        shortcutlab.check(f"{lesson}.{function}", reference, **{k: v for k, v in references.items() if k != function})
    out = capsys.readouterr().out
    assert "✗" not in out and "✓" in out


def test_shortcutlab_check_takes_other_objects_from_the_callers_globals(toy, capsys):
    yml = COURSE_YML + ("  - id: 92_pair\n    title: Pair\n    notebook: 92_pair.ipynb\n    functions:\n"
                        "      twice: {points: 1, reference: operator.neg}\n"
                        "      helper: {points: 1, reference: operator.pos}\n")
    (toy / "pair.yml").write_text(yml)
    (toy / "autograder" / "test_92_pair.py").write_text(
        "from shortcutlab.grading import check\n@check('twice')\ndef test_twice(twice, helper):\n"
        "    assert twice(3) == 2 * helper(3)\n@check('helper')\ndef test_helper(helper):\n    assert helper(1) == 1\n")
    global helper
    helper = lambda v: v  # noqa: E731 - a notebook-global the check needs besides the checked function
    try:
        shortcutlab.check("92_pair.twice", lambda v: 2 * v, course=toy / "pair.yml")
    finally:
        del helper
    assert "1/1 checks passed" in capsys.readouterr().out


def test_a_pass_that_relies_on_what_a_tampering_process_observed_is_refused(toy, tmp_path):
    """A check that hands the student a model relies on what the student's process observed of it (its state after
    the call). A submission that replaced part of the library there cannot be trusted with that, so such a pass is
    refused; a check judged on plain values alone keeps its pass."""
    yml = COURSE_YML + ("  - id: 93_model\n    title: Model\n    notebook: 93_model.ipynb\n    functions:\n"
                        "      zero_bias: {points: 1, reference: operator.neg}\n"
                        "      plus: {points: 1, reference: operator.add}\n")
    (toy / "model.yml").write_text(yml)
    (toy / "autograder" / "test_93_model.py").write_text(
        "import torch\nimport shortcutlab.data\nfrom shortcutlab.grading import check\n\n"
        "@check('zero_bias')\ndef test_zero_bias_zeroes_the_bias(zero_bias):\n"
        "    layer = torch.nn.Linear(2, 2)\n    zero_bias(layer)\n    assert torch.equal(layer.bias, torch.zeros(2))\n\n"
        "@check('plus')\ndef test_plus_adds(plus):\n    assert plus(2, 3) == 5\n")
    source = ("import torch\n\ndef zero_bias(layer):\n    with torch.no_grad():\n        layer.bias.zero_()\n\n"
              "def plus(a, b):\n    return a + b\n")
    honest, tampering = tmp_path / "93_model_honest.py", tmp_path / "93_model_tampering.py"
    honest.write_text(source)
    tampering.write_text(source + "\nimport shortcutlab.data\nshortcutlab.data.smooth_texture = print\n")
    report = grade([honest, tampering], course=toy / "model.yml", jobs=1, seed=3)
    by_name = {Path(s.path).name: s for s in report.submissions}
    assert [c.status for c in by_name[honest.name].checks] == ["passed", "passed"]
    assert all(c.judged for c in by_name[honest.name].checks)
    model_check, plain_check = by_name[tampering.name].checks
    assert model_check.status == "failed" and "replaced `shortcutlab.data.smooth_texture`" in model_check.output
    assert plain_check.status == "passed" and plain_check.judged


# ----------------------------------------------------------------------------- assertion helpers


def test_expect_helpers_say_what_is_wrong_where():
    with pytest.raises(CheckFailure, match=r"should have shape \(2, 3, 28, 28\), got \(2, 28, 28, 3\).*order"):
        expect_shape(torch.zeros(2, 28, 28, 3), (2, 3, 28, 28), "images")
    with pytest.raises(CheckFailure, match="should be a torch.Tensor, got list"):
        expect_shape([1, 2], (2,), "ids")
    with pytest.raises(CheckFailure, match=r"1 of 4 values differ.*index \[1, 0\]: expected 3, got 5.*Hint: h"):
        expect_close(torch.tensor([[1.0, 2.0], [5.0, 4.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "m",
                     atol=1e-6, rtol=0, hint="h")
    with pytest.raises(CheckFailure, match="expected 0.5, got 0.25"):
        expect_close(0.25, torch.tensor(0.5), "accuracy", atol=1e-6, rtol=0)
    with pytest.raises(CheckFailure, match=r"should lie in \[0, 1\].*1.5 at index \[2\]"):
        expect_range(torch.tensor([0.0, 0.5, 1.5]), 0, 1, "x")
    with pytest.raises(CheckFailure, match=r"1 non-finite value.*nan at index \[1\]"):
        expect_finite(torch.tensor([0.0, float("nan")]), "loss")
    with pytest.raises(CheckFailure, match=r"index \[0, 1\]: expected 2, got 1"):
        expect_equal(torch.tensor([[1, 1]]), torch.tensor([[1, 2]]), "counts")
    expect_close(torch.tensor([1.0]), 1.0 + 1e-7, "one", atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- tamper resistance, piece by piece


STUDENT_CODE = '''
import importlib
import shortcutlab.data


def by_attribute(labels, colors):
    return shortcutlab.data.color_given_digit(labels, colors)


def by_importlib(labels, colors):
    return getattr(importlib.import_module("shortcutlab" + ".data"), "color_given_" + "digit")(labels, colors)


def through_the_library(n):
    return shortcutlab.data.smooth_texture(n)  # another library function: allowed


def own(labels, colors):
    return torch.zeros(10, 10)
'''


@pytest.mark.parametrize("name, flagged", [("by_attribute", "calls"), ("by_importlib", "calls"),
                                           ("through_the_library", None), ("own", None)])
def test_the_reference_guard_catches_calls_into_the_reference_from_student_code_only(name, flagged):
    import shortcutlab.data
    from shortcutlab.grading.engine.guard import ReferenceGuard

    namespace = {"torch": torch}
    exec(compile(STUDENT_CODE, "<cell 3, student>", "exec"), namespace)  # noqa: S102
    guard = ReferenceGuard("color_given_digit", shortcutlab.data.color_given_digit,
                           "shortcutlab.data.color_given_digit", {"<cell 3, student>"})
    labels = torch.randint(0, 10, (20,))
    assert guard.check_object(namespace[name]) is None
    with guard:
        namespace[name](20) if name == "through_the_library" else namespace[name](labels, labels)
        shortcutlab.data.color_given_digit(labels, labels)  # the check computing its expected value: fine
    if flagged:
        assert guard.violation == (f"color_given_digit {flagged} the shortcutlab reference "
                                   "`shortcutlab.data.color_given_digit`; write your own implementation "
                                   "(this check gives no points for the library's code)")
    else:
        assert guard.violation is None


def test_the_reference_guard_knows_the_reference_in_disguise():
    import functools

    import shortcutlab.data
    import shortcutlab.models
    from shortcutlab.grading.engine.guard import ReferenceGuard

    colorize = shortcutlab.data.colorize
    copy = type(colorize)(colorize.__code__, colorize.__globals__)
    for disguised in (colorize, functools.partial(colorize), functools.wraps(colorize)(lambda *a: colorize(*a)), copy):
        guard = ReferenceGuard("colorize", colorize, "shortcutlab.data.colorize", set())
        assert guard.check_object(disguised), disguised
    subclass = type("SimpleCNN", (shortcutlab.models.SimpleCNN,), {})
    def guard():
        return ReferenceGuard("SimpleCNN", shortcutlab.models.SimpleCNN, "shortcutlab.models.SimpleCNN", set())

    assert guard().check_object(subclass) and not guard().check_object(torch.nn.Module)


def test_the_reference_guard_knows_the_reference_rebuilt_from_its_code_or_its_file():
    """Without the OS sandbox the library's files are readable: the reference compiled again from its module's text
    (another file name) or its code object renamed is still the reference, called or handed in."""
    import types

    import shortcutlab.interpret
    from shortcutlab.grading.engine.guard import ReferenceGuard

    reference = shortcutlab.interpret.grad_cam
    namespace = dict(vars(shortcutlab.interpret))
    with open(shortcutlab.interpret.__file__) as handle:
        exec(compile(handle.read(), "<cell 2, student>", "exec"), namespace)  # noqa: S102 - the library's own text
    renamed = types.FunctionType(reference.__code__.replace(co_name="mine", co_firstlineno=3), namespace, "mine",
                                 reference.__defaults__)
    for rebuilt in (namespace["grad_cam"], renamed):
        guard = ReferenceGuard("grad_cam", reference, "shortcutlab.interpret.grad_cam", {"<cell 2, student>"})
        assert guard.check_object(rebuilt) and "is the shortcutlab reference" in guard.violation
    student = {"mine": renamed}
    exec(compile("def grad_cam(*args):\n    return mine(*args)\n", "<cell 3, student>", "exec"), student)  # noqa: S102
    guard = ReferenceGuard("grad_cam", reference, "shortcutlab.interpret.grad_cam", {"<cell 3, student>"})
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 64, 3))
    with guard:
        student["grad_cam"](model, model[0], torch.rand(2, 3, 8, 8))
    assert guard.violation is not None and "calls the shortcutlab reference" in guard.violation


def test_a_function_that_switches_the_profiler_off_to_call_the_reference_unseen_is_caught():
    import threading

    import shortcutlab.interpret
    from shortcutlab.grading.engine.guard import ReferenceGuard

    namespace = {"sys": sys, "library": shortcutlab.interpret, "threading": threading}
    exec(compile("def grad_cam(*args):\n"  # noqa: S102 - the test's own code
                 "    hook = sys.getprofile()\n"
                 "    sys.setprofile(None)\n"
                 "    try:\n"
                 "        return library.grad_cam(*args)\n"
                 "    finally:\n"
                 "        sys.setprofile(hook)\n"
                 "def in_a_thread(*args):\n"
                 "    worker = threading.Thread(target=lambda: None)\n"
                 "    worker.start()\n"
                 "    worker.join()\n"
                 "    return 0\n", "<cell 3, student>", "exec"), namespace)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 64, 3))
    for name, caught in (("grad_cam", True), ("in_a_thread", False)):
        guard = ReferenceGuard("grad_cam", shortcutlab.interpret.grad_cam, "shortcutlab.interpret.grad_cam",
                               {"<cell 3, student>"})
        with guard:
            namespace[name](model, model[0], torch.rand(2, 3, 8, 8))
        assert (guard.violation is not None and "sys.setprofile" in guard.violation) == caught, guard.violation
        assert sys.setprofile.__module__ == "sys" and sys.getprofile() is None


def test_a_decorator_the_reference_shares_with_student_code_is_not_the_reference():
    """SparseAutoencoder.normalize_decoder_ is a @torch.no_grad() method, as the stub's is: torch's wrapper code is
    everyone's, so a student's own decorated method, called from its own __init__, is neither the reference nor a
    call of it."""
    import shortcutlab.sae
    from shortcutlab.grading.engine.guard import ReferenceGuard

    namespace = {"torch": torch, "nn": torch.nn}
    exec(compile("class SparseAutoencoder(nn.Module):\n"  # noqa: S102 - the test's own code
                 "    def __init__(self, d_in, d_hidden):\n"
                 "        super().__init__()\n"
                 "        self.W_dec = nn.Parameter(torch.ones(d_hidden, d_in))\n"
                 "        self.normalize_decoder_()\n"
                 "    @torch.no_grad()\n"
                 "    def normalize_decoder_(self):\n"
                 "        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True))\n", "<cell 5, student>", "exec"),
         namespace)
    guard = ReferenceGuard("SparseAutoencoder", shortcutlab.sae.SparseAutoencoder,
                           "shortcutlab.sae.SparseAutoencoder", {"<cell 5, student>"})
    assert guard.check_object(namespace["SparseAutoencoder"]) is None
    with guard:
        namespace["SparseAutoencoder"](4, 3).normalize_decoder_()
    assert guard.violation is None


def test_an_over_long_line_on_a_grading_pipe_is_dropped_and_reading_goes_on():
    from shortcutlab.grading.engine.processes import Lines

    r, w = os.pipe()
    os.write(w, b"x" * 5000 + b"\n" + b'{"event": "ok"}\n' + b'{"n": 1' + b"9" * 5000 + b"}\n")
    os.close(w)
    lines = Lines(r, max_line=1000)
    deadline = time.monotonic() + 5
    got = [lines.next(deadline) for _ in range(4)]
    os.close(r)
    assert got == [{"event": "garbage"}, {"event": "ok"}, {"event": "garbage"}, None]


def test_a_snapshot_names_what_student_code_replaced_in_the_library_or_the_grader():
    import shortcutlab.data
    import shortcutlab.grading.engine.execute
    from shortcutlab.grading.engine.tamper import Snapshot

    snapshot = Snapshot()
    assert snapshot.changed() is None
    for owner, name in ((shortcutlab.data, "colorize"), (shortcutlab.grading.engine.execute, "run_check"),
                        (torch.Tensor, "allclose")):
        original = vars(owner).get(name)  # torch.Tensor.allclose is inherited: patching shadows it
        setattr(owner, name, lambda *args, **kwargs: True)
        try:
            assert snapshot.changed().endswith(f"{name}")
        finally:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
    assert snapshot.changed() is None


# ----------------------------------------------------------------------------- messages: titles, points, tracebacks


def test_every_check_title_reads_as_a_phrase_with_its_numbers_and_names():
    import re

    from shortcutlab.grading.outputs.feedback import feedback_markdown
    from shortcutlab.grading.wording import check_title, snake_case

    course = load_course()
    names = [f for lesson in course.lessons for f in lesson.functions]
    titles = {}
    for lesson in course.lessons:
        for c in plan_checks(course, lesson):
            title = check_title(c.name, c.function, names)
            # the notebook, nbgrader's cells and the exports (results.json, feedback) all use wording.check_title
            feedback = feedback_markdown(SubmissionResult("a.py", lesson.id, None,
                                                          (CheckResult(c.name, c.function, 0.0, 1.0, "failed", ""),)))
            assert f" {title} (0 / 1)" in feedback
            titles[(lesson.id, c.name)] = title
            assert title and title == title.strip(), title
            assert "_" not in re.sub("|".join(n for n in names if "_" in n), "", title), title
            assert not re.search(r"\d \d", title), f"{c.name}: {title!r} lost a decimal point"
            for name in names:
                spellings = {name.lower(), snake_case(name).replace("_", " ")} - {name}
                for spelling in spellings:
                    assert not re.search(rf"\b{re.escape(spelling)}\b", title), \
                        f"{c.name}: {title!r} writes {name} as {spelling!r}"
    assert titles[("00_colored_mnist", "test_smooth_texture_returns_backgrounds_between_0_1_and_0_3")] == \
        "returns backgrounds between 0.1 and 0.3"
    assert titles[("03_gradcam", "test_grad_cam_matches_reference_on_simplecnn_target_layer")] == \
        "matches reference on SimpleCNN target layer"
    assert titles[("04_debiasing", "test_grlnet_returns_digit_and_color_logits_of_the_right_shapes")] == \
        "returns digit and color logits of the right shapes"
    assert titles[("00_colored_mnist", "test_colorize_returns_rgb_images_in_unit_range")] == \
        "returns RGB images in unit range"
    assert check_title("test_fvu_is_0_for_perfect_and_1_for_the_mean", "fvu") == "is 0 for perfect and 1 for the mean"


@pytest.mark.parametrize("value, text", [(0.625, "0.625"), (5, "5"), (5.0, "5"), (2.5, "2.5"), (1 / 3, "0.333"),
                                         (2 / 3, "0.667"), (0.0625, "0.0625"), (10 / 3, "3.333"), (0, "0"),
                                         (-0.0, "0"), (7.5, "7.5"), (float("nan"), "?")])
def test_points_are_printed_without_rounding_a_fraction_away(value, text):
    from shortcutlab.grading.wording import points

    assert points(value) == text


def test_points_in_the_table_and_feedback_keep_every_decimal():
    from shortcutlab.grading.outputs.feedback import feedback_html, feedback_markdown

    checks = tuple(CheckResult(f"test_f_{i}", "f", 0.625 if i < 3 else 0.0, 0.625, "passed" if i < 3 else "failed",
                               "" if i < 3 else "wrong") for i in range(4))
    result = SubmissionResult("alice_90_toy.py", "90_toy", None, checks, 2.5, 0.1)
    table = render_table(GradeReport(0, (result,), 0.1), details=True)
    assert "1.875/2.5" in table and "1.88" not in table and "0.62 " not in table
    for text in (feedback_markdown(result, "alice"), feedback_html(result, "alice")):
        assert "1.875 / 2.5" in text and "0.625 / 0.625" in text and "0.62 " not in text


def test_a_failing_check_in_ipython_shows_no_grader_frame():
    import contextlib
    import io

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
        result = shell.run_cell("import shortcutlab\n"
                                "def colorize(digits, color_ids, background):\n"
                                "    return 1\n"
                                "shortcutlab.check('00_colored_mnist.colorize', colorize)\n")
    text = shown.getvalue()
    assert isinstance(result.error_in_exec, ChecksFailed)
    assert "✗ returns RGB images in unit range" in text
    assert "checks of colorize did not pass; see the report above" in text
    for grader in ("grading/notebook.py", "shortcutlab/__init__.py", "check_in_notebook", "Traceback"):
        assert grader not in text, text
