"""Do the exports say the right things to the right people: nbgrader's CSV, Gradescope's results.json, and
feedback that shows visible checks' messages but never a hidden check's name or message?"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import stat

import pytest

from shortcutlab.grading.outputs.exports import write_exports
from shortcutlab.grading.outputs.feedback import build_feedback, feedback_html, feedback_markdown, render
from shortcutlab.grading.outputs.gradescope import gradescope_results
from shortcutlab.grading.outputs.identical import find_identical, graded_code_digest, identical_csv
from shortcutlab.grading.outputs.tables import CSV_COLUMNS, MATRIX_IDENTITY, class_matrix_csv, grades_csv
from shortcutlab.grading.store.gradebook import Entry, GradeKey
from shortcutlab.grading.outputs.report import submission_status
from shortcutlab.grading.results import AnswerResult, CheckResult, SubmissionResult
from shortcutlab.grading.store.students import clean_id, normalize_timestamp, student_id, submission_timestamp

SECRET = "the hidden input was 12345"
LESSONS = ("00_colored_mnist", "03_gradcam")


def result(lesson: str = "03_gradcam", error: str | None = None) -> SubmissionResult:
    return SubmissionResult(f"submitted/alice/{lesson}.ipynb", lesson, error, (
        CheckResult("test_grad_cam_matches_reference", "grad_cam", 2.5, 2.5, "passed", ""),
        CheckResult("test_grad_cam_shape", "grad_cam", 0.0, 2.5, "failed",
                    "grad_cam(x) should have shape (4, 28, 28), got (4, 1, 28, 28) <b>"),
        CheckResult("test_grad_cam_leaves_no_hooks", "grad_cam", 0.0, 2.5, "error", f"RuntimeError: {SECRET}", True),
        CheckResult("test_grad_cam_detaches", "grad_cam", 2.5, 2.5, "passed", "", True),
    ), 10.0, 1.25)


def entry(student: str, lesson: str, score_result: SubmissionResult | None = None) -> Entry:
    res = score_result or result(lesson)
    return Entry(student, lesson, res.path, "2024-05-01 10:00:00.000000", GradeKey("h", lesson, "v", 0), 1, res, "")


# ----------------------------------------------------------------------------- grades.csv


def test_csv_has_nbgraders_columns_and_a_zero_row_for_a_lesson_not_handed_in():
    entries = [entry("bob", "03_gradcam"), entry("alice", "03_gradcam"), entry("alice", "00_colored_mnist")]
    rows = list(csv.DictReader(io.StringIO(grades_csv(entries, LESSONS))))
    # nbgrader's columns, then status and written_answers
    assert tuple(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[-2:] == ("status", "written_answers")
    assert [(r["assignment"], r["student_id"]) for r in rows] == [
        ("00_colored_mnist", "alice"), ("00_colored_mnist", "bob"), ("03_gradcam", "alice"), ("03_gradcam", "bob")]
    alice = rows[2]
    assert (alice["raw_score"], alice["late_submission_penalty"], alice["score"], alice["max_score"]) == \
        ("5.0", "0.0", "5.0", "10.0")
    assert alice["timestamp"] == "2024-05-01 10:00:00.000000" and alice["status"] == "graded"
    missing = rows[1]  # bob never handed in lesson 0: nbgrader's export gives 0 and no timestamp
    assert (missing["raw_score"], missing["score"], missing["timestamp"], missing["max_score"], missing["status"]) == \
        ("0.0", "0.0", "", "10.0", "missing")


def test_csv_timestamps_have_one_format_whatever_was_stored():
    stamps = ["2024-05-01 10:00:00", "2024-05-01 10:00:00.000000 UTC", "2024-05-01T12:00:00+02:00"]
    entries = [dataclasses.replace(entry(name, "03_gradcam"), timestamp=stamp)
               for name, stamp in zip(("ann", "ben", "cid"), stamps)]
    rows = list(csv.DictReader(io.StringIO(grades_csv(entries, LESSONS))))
    assert {r["timestamp"] for r in rows} == {"2024-05-01 10:00:00.000000"}


def test_csv_status_tells_an_error_and_a_timeout_from_a_zero():
    timed_out = SubmissionResult("t.py", "03_gradcam", None, (
        CheckResult("test_grad_cam_shape", "grad_cam", 0.0, 10.0, "timeout", "grad_cam did not finish within 5 s"),),
        10.0)
    entries = [entry("ann", "03_gradcam", SubmissionResult("a.ipynb", "03_gradcam", "a.ipynb is not a valid notebook",
                                                            (), 10.0)),
               entry("ben", "03_gradcam", timed_out), entry("cid", "03_gradcam")]
    rows = list(csv.DictReader(io.StringIO(grades_csv(entries, LESSONS))))
    assert [(r["student_id"], r["score"], r["status"]) for r in rows] == [
        ("ann", "0.0", "error"), ("ben", "0.0", "timeout"), ("cid", "5.0", "graded")]


def _missing(name: str, note: str) -> str:
    """execute.missing_message's wording for a function whose cell raised while loading."""
    return f"`{name}` is not defined in your submission. Keep the name {name!r} exactly, and make sure the cell " \
           f"that defines it runs without errors.\nIts cell (<cell 3, {name}>) raised:\n{note}"


@pytest.mark.parametrize("error, check, expected", [
    (None, ("passed", ""), "graded"),
    (None, ("failed", "grad_cam is not implemented yet: it raises NotImplementedError"), "graded"),
    (None, ("error", "`grad_cam` is not defined in your submission. Keep the name 'grad_cam' exactly, and make sure "
                     "the cell that defines it runs without errors."), "graded"),  # left out: 0 points, graded
    (None, ("error", _missing("grad_cam", "SyntaxError: invalid syntax (line 1)")), "error"),
    (None, ("error", _missing("grad_cam", "did not finish within 20 s and was stopped")), "timeout"),
    (None, ("timeout", "grad_cam did not finish within 5 s: look for an endless loop"), "timeout"),
    ("the submission's code ended the grading process while loading: it did not finish loading within 20 s",
     ("error", "not graded: ..."), "timeout"),
    ("the submission's code ended the grading process while loading: it was killed by SIGKILL",
     ("error", "not graded: ..."), "error"),
    ("grader error: the grading server did not start", ("error", "not graded: ..."), "error"),
])
def test_the_status_of_a_submission(error, check, expected):
    status, output = check
    result = SubmissionResult("x.py", "03_gradcam", error, (CheckResult("test_grad_cam_x", "grad_cam", 0.0, 1.0,
                                                                        status, output),), 1.0)
    assert submission_status(result) == expected


def test_csv_quotes_awkward_ids():
    text = grades_csv([entry("o'neil, jr", "03_gradcam")], LESSONS)
    assert list(csv.reader(io.StringIO(text)))[1][3] == "o'neil, jr"


# ----------------------------------------------------------------------------- Gradescope


def test_gradescope_results_have_the_documented_fields_and_one_test_per_check():
    data = gradescope_results(result())
    assert {"score", "execution_time", "tests"} <= set(data)
    assert data["score"] == 5.0 and data["execution_time"] == 1.25
    assert len(data["tests"]) == 4
    for test in data["tests"]:
        assert {"name", "score", "max_score", "output", "visibility", "status"} <= set(test)
        assert test["status"] in ("passed", "failed")
    visible_fail = data["tests"][1]
    assert visible_fail["visibility"] == "visible" and "shape (4, 28, 28)" in visible_fail["output"]
    assert visible_fail["name"] == "grad_cam: shape"


def test_gradescope_hidden_checks_show_pass_or_fail_and_points_only():
    data = gradescope_results(result())
    hidden = [t for t in data["tests"] if t["visibility"] != "visible"]
    assert [t["status"] for t in hidden] == ["failed", "passed"]
    assert all(t["visibility"] == "after_published" for t in hidden)
    assert [t["max_score"] for t in hidden] == [2.5, 2.5]
    text = json.dumps(data)
    assert SECRET not in text and "leaves_no_hooks" not in text and "leaves no hooks" not in text


def test_gradescope_results_of_a_submission_that_could_not_be_graded_say_why():
    data = gradescope_results(SubmissionResult("x.ipynb", "03_gradcam", "x.ipynb is not a valid notebook", (), 5.0))
    assert data["score"] == 0 and data["tests"] == [] and "not a valid notebook" in data["output"]


# ----------------------------------------------------------------------------- feedback


@pytest.mark.parametrize("render", [feedback_markdown, feedback_html])
def test_feedback_shows_visible_messages_and_hides_hidden_checks_details(render):
    text = render(result(), "alice", "Grad-CAM", "2024-05-01 10:00:00")
    assert "alice" in text and "Grad-CAM" in text and "5 / 10" in text
    assert "shape (4, 28, 28)" in text  # a visible check's message
    assert SECRET not in text and "no hooks" not in text and "no_hooks" not in text
    assert text.count("hidden check") == 2 and "passed" in text and "failed" in text


def test_html_feedback_escapes_student_text():
    page = feedback_html(result(), "<script>alert(1)</script>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;" in page  # from a check's output


def test_feedback_of_a_submission_that_could_not_be_graded_shows_the_error():
    text = feedback_markdown(SubmissionResult("x.ipynb", "03_gradcam", "broken JSON at line 3", (), 5.0))
    assert "could not be graded" in text and "broken JSON at line 3" in text and "0 / 5" in text


HOSTILE = "<script>alert(1)</script> & 'quoted' \"too\""


def rich_result() -> tuple[SubmissionResult, tuple[AnswerResult, ...]]:
    """result() with a load error, a sandbox, a multi-line failing output and written answers in every state."""
    extra = CheckResult("test_colorize_matches_the_formula", "colorize", 0.0, 0.625, "timeout",
                        f"first `line` | pipe\n\n{HOSTILE}\n")
    res = dataclasses.replace(result(), checks=(*result().checks, extra), max_score=10.625,
                              load={"status": "error", "cell": 3, "message": "NameError: x"}, sandbox="bubblewrap")
    answers = (AnswerResult("q1", 2.0, f"Color, because\n\n{HOSTILE}", 1.5, "Good.\nBut short."),
               AnswerResult("q2", 1.0, "Shape?", None, "", "a note"), AnswerResult("q3", 1.0))
    return res, answers


def test_feedback_is_one_model_that_both_renderings_lay_out():
    import html

    res, answers = rich_result()
    model = build_feedback(res, "alice", "Grad-CAM", "2024-05-01 10:00:00", answers)
    # decided once, in the model: a hidden check carries only pass/fail and points
    hidden = [c for s in model.functions for c in s.checks if c.hidden]
    assert [(c.label, c.points, c.failure, c.output) for c in hidden] == [
        ("hidden check, failed", "0 / 2.5", "", ""), ("hidden check, passed", "2.5 / 2.5", "", "")]
    assert SECRET not in repr(model) and "no_hooks" not in repr(model) and "no hooks" not in repr(model)
    assert (model.score, model.percent) == ("6.5 / 14.625", "44%")
    assert [c.status for c in model.answers] == ["graded", "awaiting manual grading", "unanswered"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.score = "10 / 10"  # type: ignore[misc]

    facts = [model.heading, model.submitted, model.trouble.heading, model.trouble.message, model.sandbox,
             model.awaiting_notice, model.answers_heading, model.hidden_notice]
    facts += [x for row in model.summary for x in (row.name, row.points, row.checks)]
    facts += [f"{s.name}" for s in model.functions] + [s.points for s in model.functions]
    facts += [f"{c.symbol} {c.label} ({c.points})" + (f": {c.failure}" if c.failure else "")
              for s in model.functions for c in s.checks]
    facts += [a.line for a in model.answers] + [a.note for a in model.answers if a.note]
    markdown, page = feedback_markdown(res, "alice", "Grad-CAM", "2024-05-01 10:00:00", answers), \
        feedback_html(res, "alice", "Grad-CAM", "2024-05-01 10:00:00", answers)
    for fact in filter(None, facts):
        assert fact in markdown and html.escape(fact) in page, fact
    assert f"**{model.score}** ({model.percent})" in markdown and f"<strong>{model.score}</strong>" in page
    # a failing visible check's output: a fenced block in Markdown, <pre> in HTML; in both and nowhere else
    output = next(c.output for s in model.functions for c in s.checks if c.output.startswith("first"))
    assert "  ```text\n" + "\n".join(f"  {line}" for line in output.splitlines()) + "\n  ```" in markdown
    assert f"<pre>{html.escape(output)}</pre>" in page
    for text in (markdown, page):
        assert SECRET not in text and "no hooks" not in text and text.count("hidden check") == 2
    # the comment of a graded answer and the text of each answered one
    assert "  Comment: Good.\n  But short." in markdown and "<p>Comment: Good.\nBut short.</p>" in page
    assert "  > Color, because\n  >\n  > " in markdown and "<pre>Color, because\n\n" in page


def test_html_feedback_escapes_hostile_text_and_markdown_keeps_it_in_fences_and_quotes():
    import html

    res, answers = rich_result()
    markdown, page = feedback_markdown(res, HOSTILE, answers=answers), feedback_html(res, HOSTILE, answers=answers)
    assert "<script>" not in page and page.count(html.escape(HOSTILE)) == 4  # student (title, list), output, answer
    assert f"<title>Feedback: 03_gradcam - {html.escape(HOSTILE)}</title>" in page
    assert html.escape(f"Color, because\n\n{HOSTILE}") in page  # an answer's text
    assert "&quot;too&quot;" in page and "&#x27;quoted&#x27;" in page  # as html.escape writes them
    # Markdown is not escaped: the check output stays inside its fence, the answer inside its quote
    assert f"- Student: {HOSTILE}\n" in markdown
    assert f"  ```text\n  first `line` | pipe\n  \n  {HOSTILE}\n  ```" in markdown
    assert f"  > Color, because\n  >\n  > {HOSTILE}\n" in markdown


@pytest.mark.parametrize("template", ["feedback.md.j2", "feedback.html.j2"])
def test_a_template_missing_a_value_of_the_model_fails_loudly(template):
    import types

    import jinja2

    model = build_feedback(*rich_result()[:1], "alice")
    assert render(template, model)  # the whole model renders
    for name in ("sandbox", "heading", "functions"):
        partial = types.SimpleNamespace(**{f.name: getattr(model, f.name) for f in dataclasses.fields(model)
                                           if f.name != name})
        with pytest.raises(jinja2.UndefinedError):
            render(template, partial)


def test_write_exports_lays_out_csv_results_and_feedback(tmp_path):
    written = write_exports([entry("alice", "03_gradcam"), entry("bob", "00_colored_mnist")], tmp_path, LESSONS)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["class_matrix.csv", "feedback/alice/03_gradcam.html", "feedback/alice/03_gradcam.md",
                     "feedback/bob/00_colored_mnist.html", "feedback/bob/00_colored_mnist.md", "grades.csv",
                     "identical_submissions.csv", "results/alice/03_gradcam/results.json",
                     "results/bob/00_colored_mnist/results.json"]
    assert json.loads((tmp_path / "results/alice/03_gradcam/results.json").read_text())["score"] == 5.0
    assert not list(tmp_path.rglob("*.tmp"))


def test_exports_are_readable_files_that_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_exports([entry("alice", "03_gradcam")], tmp_path / "a", LESSONS)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert modes == {0o644}


def test_the_class_matrix_is_one_row_per_student_in_a_layout_lms_imports_accept():
    entries = [entry("bob", "03_gradcam"), entry("alice", "03_gradcam"), entry("alice", "00_colored_mnist")]
    rows = list(csv.reader(io.StringIO(class_matrix_csv(entries, LESSONS, {"03_gradcam": "Grad-CAM"}))))
    assert rows[0] == [*MATRIX_IDENTITY, "00_colored_mnist [00_colored_mnist, 10 pts]",
                       "Grad-CAM [03_gradcam, 10 pts]", "Final Points"]
    assert MATRIX_IDENTITY == ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")  # Canvas's, in its order
    assert rows[1:] == [["alice", "", "", "alice", "", "5", "5", "10"],
                        ["bob", "", "", "bob", "", "", "5", "5"]]  # not handed in: empty, not 0


# ----------------------------------------------------------------------------- identical submissions


COPY = "import math\n\n\ndef grad_cam(x):\n    # my own work\n    return math.sqrt(x) + 1\n"
REFORMATTED = "import math\ndef grad_cam( x ):\n\n        return math.sqrt( x )+1   # honest\n"


def code_notebook(*sources: str) -> str:
    cells = [{"cell_type": "code", "metadata": {"tags": ["setup"]}, "source": "import math\n", "outputs": [],
              "execution_count": None}]
    cells += [{"cell_type": "code", "metadata": {"nbgrader": {"solution": True, "grade": False, "grade_id": f"f{i}"}},
               "source": source, "outputs": [], "execution_count": None} for i, source in enumerate(sources)]
    cells.append({"cell_type": "code", "metadata": {}, "source": "print('exploring', 42)\n", "outputs": [],
                  "execution_count": None})
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_graded_code_ignores_layout_comments_setup_and_exploration_cells(tmp_path):
    (tmp_path / "a.py").write_text(COPY)
    (tmp_path / "b.py").write_text(REFORMATTED)
    (tmp_path / "c.py").write_text(COPY.replace("+ 1", "+ 2"))
    (tmp_path / "a.ipynb").write_text(code_notebook("def grad_cam(x):\n    return math.sqrt(x) + 1\n"))
    (tmp_path / "b.ipynb").write_text(code_notebook("def grad_cam(x):\n  return math.sqrt(x)+1  # mine\n")
                                      .replace("exploring", "something else"))
    digests = {name: graded_code_digest(tmp_path / name) for name in ("a.py", "b.py", "c.py", "a.ipynb", "b.ipynb")}
    assert digests["a.py"] == digests["b.py"] != digests["c.py"]
    assert digests["a.ipynb"] == digests["b.ipynb"]
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    assert graded_code_digest(tmp_path / "broken.ipynb") is None


def test_identical_submissions_by_different_students_are_grouped_and_stubs_are_not(tmp_path):
    def handed_in(student: str, text: str, lesson: str = "03_gradcam") -> Entry:
        path = tmp_path / student / f"{lesson}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        base = entry(student, lesson)
        return dataclasses.replace(base, path=str(path), key=GradeKey(hashlib.sha256(path.read_bytes()).hexdigest(),
                                                                        lesson, "v", 0))
    stub = "def grad_cam(x):\n    raise NotImplementedError('compute it')\n"
    entries = [handed_in("ann", COPY), handed_in("ben", REFORMATTED), handed_in("cid", COPY.replace("1", "2")),
               handed_in("dot", stub), handed_in("eve", stub), handed_in("ann", COPY, "00_colored_mnist")]
    changed = handed_in("fay", COPY)
    (tmp_path / "fay" / "03_gradcam.py").write_text(COPY + "# edited after grading\n")
    entries.append(changed)
    (tmp_path / "stub.py").write_text(stub)
    groups = find_identical(entries, ignore={graded_code_digest(tmp_path / "stub.py")})
    assert [(g.lesson, g.students) for g in groups] == [("03_gradcam", ("ann", "ben"))]
    rows = list(csv.DictReader(io.StringIO(identical_csv(groups))))
    assert [(r["lesson"], r["group"], r["student_id"]) for r in rows] == [("03_gradcam", "1", "ann"),
                                                                          ("03_gradcam", "1", "ben")]
    assert rows[0]["code_sha256"] == groups[0].digest and rows[0]["path"].endswith("03_gradcam.py")
    assert identical_csv([]).strip() == "lesson,group,student_id,path,score,max_score,code_sha256"


# ----------------------------------------------------------------------------- students


@pytest.mark.parametrize("path, lesson, expected", [
    ("submitted/alice/03_gradcam.ipynb", "03_gradcam", "alice"),
    ("submitted/bob/03_gradcam/03_gradcam.ipynb", "03_gradcam", "bob"),  # nbgrader's layout
    ("class/03_gradcam/carol.py", "03_gradcam", "carol"),
    ("dave_03_gradcam.ipynb", "03_gradcam", "dave"),
    ("03_gradcam-Eve Smith.ipynb", "03_gradcam", "Eve_Smith"),
    ("uploads/frank.ipynb", "03_gradcam", "frank"),
    ("uploads/frank.ipynb", None, "frank"),
])
def test_student_ids_come_from_the_file_name_or_the_folder(path, lesson, expected):
    assert student_id(path, lesson, LESSONS) == expected


def test_student_ids_are_safe_file_names():
    assert clean_id("../../etc/passwd") == "etc_passwd"
    assert clean_id("  ") == "unknown"


def test_the_timestamp_is_nbgraders_timestamp_file_or_the_modification_time(tmp_path):
    path = tmp_path / "alice" / "03_gradcam" / "03_gradcam.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    os.utime(path, (1714557600, 1714557600))
    assert submission_timestamp(path) == "2024-05-01 10:00:00.000000"
    (path.parent / "timestamp.txt").write_text("2024-05-02 09:30:00.000000 UTC\n")
    assert submission_timestamp(path) == "2024-05-02 09:30:00.000000"
    (path.parent / "timestamp.txt").write_text("not a time\n")
    assert submission_timestamp(path) == "2024-05-01 10:00:00.000000"


@pytest.mark.parametrize("text, expected", [
    ("2024-05-02 09:30:00.000000 UTC", "2024-05-02 09:30:00.000000"),  # nbgrader's timestamp.txt
    ("2024-05-02 09:30:00", "2024-05-02 09:30:00.000000"),  # nbgrader's export when microseconds are 0
    ("2024-05-02 09:30:00.25", "2024-05-02 09:30:00.250000"),
    ("2024-05-02T09:30:00Z", "2024-05-02 09:30:00.000000"),
    ("2024-05-02 11:30:00.000000 +0200", "2024-05-02 09:30:00.000000"),
    ("2024-05-02 04:30:00-05:00", "2024-05-02 09:30:00.000000"),
    ("2024-05-02 11:30:00.000000 Europe/Berlin", "2024-05-02 09:30:00.000000"),
    ("yesterday", ""),
    ("", ""),
])
def test_timestamps_are_normalized_to_utc_in_nbgraders_format(text, expected):
    assert normalize_timestamp(text) == expected
