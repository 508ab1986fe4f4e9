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

from shortcutlab.course import load_course
from shortcutlab.grading.outputs.exports import write_exports
from shortcutlab.grading.outputs.feedback import build_feedback, feedback_html, feedback_markdown, render
from shortcutlab.grading.outputs.gradescope import gradescope_results
from shortcutlab.grading.outputs.identical import find_identical, graded_code_digest, identical_csv
from shortcutlab.grading.outputs.tables import CSV_COLUMNS, MATRIX_IDENTITY, class_matrix_csv, class_rows, grades_csv
from shortcutlab.grading.store.gradebook import Entry, GradeKey
from shortcutlab.grading.results import AnswerResult, CheckResult, LoadOutcome, SubmissionResult
from shortcutlab.grading.status import LoadStatus
from shortcutlab.grading.store.roster import Roster
from shortcutlab.grading.store.students import clean_id, identify, student_id
from shortcutlab.timestamps import normalize_timestamp

SECRET = "the hidden input was 12345"
LESSONS = ("00_colored_mnist", "03_gradcam")
COURSE = load_course()  # the repository's: its lessons' order and ids, no due times


def csv_text(entries, course=COURSE, roster=Roster()) -> str:
    return grades_csv(class_rows(entries, course, roster), course)


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
    rows = list(csv.DictReader(io.StringIO(csv_text(entries))))
    # nbgrader's columns, then status, written_answers, the checks' and written answers' points apart, similar_to
    assert tuple(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[11:] == ("status", "written_answers", "code_score",
                                                                  "code_max_score", "answers_score", "answers_max_score",
                                                                  "similar_to")
    assert {r["similar_to"] for r in rows} == {""}
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
    rows = list(csv.DictReader(io.StringIO(csv_text(entries))))
    assert {r["timestamp"] for r in rows} == {"2024-05-01 10:00:00.000000"}


def test_csv_status_tells_an_error_and_a_timeout_from_a_zero():
    timed_out = SubmissionResult("t.py", "03_gradcam", None, (
        CheckResult("test_grad_cam_shape", "grad_cam", 0.0, 10.0, "timeout", "not graded: ..."),), 10.0,
        load=LoadOutcome(LoadStatus.TIMEOUT, 4, "cell 4 did not finish within 20 s and was stopped"))
    slow_function = SubmissionResult("s.py", "03_gradcam", None, (
        CheckResult("test_grad_cam_shape", "grad_cam", 0.0, 10.0, "timeout", "grad_cam did not finish within 5 s"),),
        10.0)
    entries = [entry("ann", "03_gradcam", SubmissionResult("a.ipynb", "03_gradcam", "a.ipynb is not a valid notebook",
                                                            (), 10.0)),
               entry("ben", "03_gradcam", timed_out), entry("cid", "03_gradcam"), entry("dan", "03_gradcam",
                                                                                          slow_function)]
    rows = list(csv.DictReader(io.StringIO(csv_text(entries))))
    assert [(r["student_id"], r["score"], r["status"]) for r in rows] == [
        ("ann", "0.0", "error"), ("ben", "0.0", "timeout"), ("cid", "5.0", "graded"), ("dan", "0.0", "graded")]


@pytest.mark.parametrize("error, load, check, expected", [
    (None, None, "passed", "graded"),
    (None, None, "failed", "graded"),  # a wrong answer, a stub or a function left out: 0 points, graded
    (None, None, "timeout", "graded"),  # a function that timed out was graded: its checks say so
    (None, {"status": "error", "cell": 3, "message": "SyntaxError: invalid syntax (line 1)"}, "error", "error"),
    (None, {"status": "timeout", "cell": 3, "message": "did not finish within 20 s and was stopped"}, "error",
     "timeout"),
    ("the submission's code ended the grading process while loading: it did not finish loading within 20 s",
     {"status": "timeout", "cell": None, "message": "..."}, "error", "timeout"),
    ("the submission's code ended the grading process while loading: it was killed by SIGKILL",
     {"status": "error", "cell": None, "message": "..."}, "error", "error"),
    ("grader error: the grading server did not start", {"status": "not_run", "cell": None, "message": "..."}, "error",
     "error"),
])
def test_the_status_of_a_submission_comes_from_its_error_and_loading_never_from_messages(error, load, check,
                                                                                          expected):
    result = SubmissionResult("x.py", "03_gradcam", error, (CheckResult("test_grad_cam_x", "grad_cam", 0.0, 1.0,
                                                                        check, "any words at all"),), 1.0, load=LoadOutcome.from_dict(load) or LoadOutcome())
    assert result.status == expected


def test_csv_quotes_awkward_ids():
    text = csv_text([entry("o'neil, jr", "03_gradcam")])
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
                              load=LoadOutcome(LoadStatus.ERROR, 3, "NameError: x"), sandbox="bubblewrap")
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
    assert [c.status for c in model.answers] == ["graded", "awaiting manual grading", "no answer"]
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
    written = write_exports([entry("alice", "03_gradcam"), entry("bob", "00_colored_mnist")], tmp_path, COURSE)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["class_matrix.csv", "feedback/alice/03_gradcam.html", "feedback/alice/03_gradcam.md",
                     "feedback/bob/00_colored_mnist.html", "feedback/bob/00_colored_mnist.md", "grades.csv",
                     "identical_submissions.csv", "results/alice/03_gradcam/results.json",
                     "results/bob/00_colored_mnist/results.json"]
    assert json.loads((tmp_path / "results/alice/03_gradcam/results.json").read_text())["score"] == 5.0
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_rerun_writes_only_the_exports_whose_content_changed(tmp_path):
    entries = [entry("alice", "03_gradcam"), entry("bob", "00_colored_mnist")]
    first = write_exports(entries, tmp_path, COURSE)
    stamps = {p: p.stat().st_mtime_ns for p in first}
    for path in first:  # an old time, so a rewrite would show even on a coarse clock
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert write_exports(entries, tmp_path, COURSE) == []
    assert all(p.stat().st_mtime_ns == 1_000_000_000 for p in stamps)
    slower = dataclasses.replace(result("00_colored_mnist"), checks=result("00_colored_mnist").checks[:1])
    changed = write_exports([entries[0], entry("bob", "00_colored_mnist", slower)], tmp_path, COURSE)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in changed) == [
        "class_matrix.csv", "feedback/bob/00_colored_mnist.html", "feedback/bob/00_colored_mnist.md", "grades.csv",
        "results/bob/00_colored_mnist/results.json"]
    assert (tmp_path / "feedback/alice/03_gradcam.md").stat().st_mtime_ns == 1_000_000_000


def test_exports_are_readable_files_that_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_exports([entry("alice", "03_gradcam")], tmp_path / "a", COURSE)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert modes == {0o644}


def test_the_class_matrix_is_one_row_per_student_in_a_layout_lms_imports_accept():
    entries = [entry("bob", "03_gradcam"), entry("alice", "03_gradcam"), entry("alice", "00_colored_mnist")]
    course = COURSE.model_copy(update={"lessons": tuple(
        spec.model_copy(update={"title": "Grad-CAM"}) if spec.id == "03_gradcam" else spec for spec in COURSE.lessons)})
    rows = list(csv.reader(io.StringIO(class_matrix_csv(class_rows(entries, course), course))))
    assert rows[0] == [*MATRIX_IDENTITY, f"{COURSE.lesson('00_colored_mnist').title} [00_colored_mnist, 10 pts]",
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


def test_identical_submissions_by_different_students_are_grouped_and_stubs_and_empty_files_are_not(tmp_path):
    def handed_in(student: str, text: str, lesson: str = "03_gradcam") -> Entry:
        path = tmp_path / student / f"{lesson}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        base = entry(student, lesson)
        return dataclasses.replace(base, path=str(path), key=GradeKey(hashlib.sha256(path.read_bytes()).hexdigest(),
                                                                        lesson, "v", 0),
                                   code_digest=graded_code_digest(path) or "")
    stub = "def grad_cam(x):\n    raise NotImplementedError('compute it')\n"
    entries = [handed_in("ann", COPY), handed_in("ben", REFORMATTED), handed_in("cid", COPY.replace("1", "2")),
               handed_in("dot", stub), handed_in("eve", stub), handed_in("ann", COPY, "00_colored_mnist")]
    unknown = dataclasses.replace(handed_in("fay", COPY), code_digest=None)  # graded before digests were kept
    entries += [unknown, handed_in("gus", "# nothing yet\n"), handed_in("hal", "\n")]  # no code: in no group
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


@pytest.mark.parametrize("path, expected", [
    # Canvas: name[_LATE]_userid_submissionid_file, "-1" for a resubmission; the user id is the student id
    ("dl/smithjohn_12345_678910_03_gradcam-1.ipynb", ("12345", "canvas", "smithjohn", 1, False)),
    ("dl/smithjohn_LATE_12345_678911_03_gradcam.ipynb", ("12345", "canvas", "smithjohn", 0, True)),
    ("dl/doejane_77_88_03_gradcam.ipynb", ("77", "canvas", "doejane", 0, False)),
    # Moodle: Full Name_participantid_assignsubmission_file_file, as a file or a folder
    ("m/Jane Doe_4242_assignsubmission_file_03_gradcam.ipynb", ("Jane_Doe", "moodle", "Jane Doe", 0, False)),
    ("m/Jane Doe_4242_assignsubmission_file_/03_gradcam (2).ipynb", ("Jane_Doe", "moodle", "Jane Doe", 2, False)),
    # a browser's duplicate download is a resubmission of the same student's file
    ("submitted/alice/03_gradcam (1).ipynb", ("alice", "folder", "", 1, False)),
    ("submitted/alice_03_gradcam (3).ipynb", ("alice", "file name", "", 3, False)),
    # nbgrader
    ("submitted/bob/03_gradcam/03_gradcam.ipynb", ("bob", "nbgrader", "", 0, False)),
    # no pattern: the id is the cleaned file name, and the layout '' (the caller warns)
    ("x/bob (final)_03_gradcam.ipynb", ("bob_final", "", "", 0, False)),
])
def test_lms_download_names_give_the_student_id_name_resubmission_and_late_mark(path, expected):
    handin = identify(path, "03_gradcam", LESSONS)
    assert (handin.student, handin.layout, handin.name, handin.attempt, handin.late) == expected
    assert handin.timestamp == ""  # none of these names says when: never the file's modification time


GRADESCOPE_METADATA = """\
submission_101:
  :submitters:
  - :name: Jane Doe
    :sid: '4711'
    :email: jane@example.edu
  :created_at: 2024-05-02 10:30:00.000000000 +02:00
  :score: 3.0
submission_102:
  :submitters:
  - :name: Sam Roe
    :email: sam@example.edu
  :created_at: '2024-05-03T09:00:00Z'
"""


def test_a_gradescope_export_gives_each_submitter_and_the_hand_in_time(tmp_path):
    export = tmp_path / "assignment_9_export"
    for folder in ("submission_101", "submission_102", "submission_103"):
        (export / folder).mkdir(parents=True)
        (export / folder / "03_gradcam.ipynb").write_text("{}")
    (export / "submission_metadata.yml").write_text(GRADESCOPE_METADATA)
    jane, sam, unknown = (identify(export / f / "03_gradcam.ipynb", "03_gradcam", LESSONS)
                          for f in ("submission_101", "submission_102", "submission_103"))
    assert (jane.student, jane.layout, jane.name, jane.email, jane.timestamp) == \
        ("4711", "gradescope", "Jane Doe", "jane@example.edu", "2024-05-02 08:30:00.000000")
    assert (sam.student, sam.timestamp) == ("sam@example.edu", "2024-05-03 09:00:00.000000")  # no sid: the email
    assert unknown.layout != "gradescope" and unknown.timestamp == ""  # not in the metadata


def test_the_hand_in_time_is_nbgraders_timestamp_file_and_never_the_modification_time(tmp_path):
    path = tmp_path / "alice" / "03_gradcam" / "03_gradcam.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    os.utime(path, (1714557600, 1714557600))
    assert identify(path, "03_gradcam", LESSONS).timestamp == ""
    (path.parent / "timestamp.txt").write_text("2024-05-02 09:30:00.000000 UTC\n")
    assert identify(path, "03_gradcam", LESSONS).timestamp == "2024-05-02 09:30:00.000000"
    (path.parent / "timestamp.txt").write_text("not a time\n")
    assert identify(path, "03_gradcam", LESSONS).timestamp == ""


def test_student_ids_are_safe_file_names():
    assert clean_id("../../etc/passwd") == "etc_passwd"
    assert clean_id("  ") == "unknown"


# ----------------------------------------------------------------------------- rosters and late hand-ins


def test_a_roster_gives_every_student_a_row_per_lesson_with_names_and_missing_where_nothing_came():
    from shortcutlab.grading.store.roster import parse_roster

    roster = parse_roster("student_id,first_name,last_name,email\nalice,Alice,Smith,a@x.edu\n"
                          "bob,Bob,Jones,b@x.edu\nzoe,Zoe,Wu,\n")
    entries = [entry("alice", "03_gradcam"), entry("bob", "03_gradcam"), entry("alice", "00_colored_mnist"),
               entry("stranger", "03_gradcam")]
    rows = list(csv.DictReader(io.StringIO(csv_text(entries, roster=roster))))
    table = {(r["assignment"], r["student_id"]): r for r in rows}
    assert len(rows) == 2 * 4  # two lessons handed in x (three on the roster + one who is not)
    assert (table[("03_gradcam", "zoe")]["status"], table[("03_gradcam", "zoe")]["raw_score"]) == ("missing", "0.0")
    assert table[("00_colored_mnist", "bob")]["status"] == "missing"
    alice = table[("03_gradcam", "alice")]
    assert (alice["first_name"], alice["last_name"], alice["email"]) == ("Alice", "Smith", "a@x.edu")
    matrix = list(csv.reader(io.StringIO(class_matrix_csv(class_rows(entries, COURSE, roster), COURSE))))
    assert [row[0] for row in matrix[1:]] == ["Alice Smith", "Bob Jones", "stranger", "Zoe Wu"]
    assert matrix[-1][3:] == ["zoe", "", "", "", "0"]


def test_a_roster_matches_lms_names_ids_and_emails_and_refuses_bad_files():
    from shortcutlab.grading.store.roster import RosterError, parse_roster
    from shortcutlab.grading.store.students import Handin

    roster = parse_roster("Student_ID,Name,Email\n12345,John Smith,js@x.edu\n99,Jane Doe,jd@x.edu\n")
    assert roster.match(Handin("12345", "canvas", "smithjohn")).student_id == "12345"
    assert roster.match(Handin("Jane_Doe", "moodle", "Jane Doe")).student_id == "99"
    assert roster.match(Handin("x", "gradescope", "", "JD@x.edu")).student_id == "99"
    assert roster.match(Handin("smithjohn", "canvas", "smithjohn")).student_id == "12345"
    assert roster.match(Handin("nobody", "folder")) is None
    for text, problem in (("name\nAnn\n", "no student_id column"), ("student_id\nann\nann\n", "listed twice"),
                          ("student_id,name\n,Ann\n", "no student id")):
        with pytest.raises(RosterError, match=problem):
            parse_roster(text)


def test_a_late_hand_in_loses_the_course_penalty_per_started_day_and_a_flagged_one_its_flat_days():
    from shortcutlab.course import LatePenaltySpec
    from shortcutlab.grading.lateness import lateness

    rule = LatePenaltySpec(per_day=0.1, max=0.25, grace_minutes=15, flagged_days=1)
    due = "2024-05-01 12:00:00.000000"
    assert lateness(due, "2024-05-01 12:10:00.000000", False, rule).share == 0  # within the grace period
    assert lateness(due, "2024-05-01 12:20:00.000000", False, rule).days == 1
    assert lateness(due, "2024-05-02 12:20:00.000000", False, rule).share == pytest.approx(0.2)
    assert lateness(due, "2024-05-09 12:00:00.000000", False, rule).share == pytest.approx(0.25)  # the cap
    assert lateness(due, "", True, rule).share == pytest.approx(0.1)  # Canvas's LATE: no time, one day
    assert lateness(due, "", False, rule).share == 0 and lateness("", "2030-01-01 00:00:00.000000", True,
                                                                 rule).share == 0
    course = COURSE.model_copy(update={"grading": COURSE.grading.model_copy(update={
        "due": {"03_gradcam": "2024-05-01 14:00 +02:00"}, "late_penalty": rule})})
    late = dataclasses.replace(entry("ann", "03_gradcam"), timestamp="2024-05-02 13:00:00.000000")
    flagged = dataclasses.replace(entry("ben", "03_gradcam"), timestamp="", late=True)
    rows = {r["student_id"]: r for r in csv.DictReader(io.StringIO(csv_text([late, flagged, entry("cid", "03_gradcam")],
                                                                             course)))}
    assert rows["ann"]["duedate"] == "2024-05-01 12:00:00.000000"
    assert (rows["ann"]["raw_score"], rows["ann"]["late_submission_penalty"], rows["ann"]["score"]) == \
        ("5.0", "2.0", "3.0")  # 2 started days: 20% of 10 points
    assert (rows["ben"]["late_submission_penalty"], rows["ben"]["score"]) == ("1.0", "4.0")
    assert rows["cid"]["late_submission_penalty"] == "0.0"  # handed in on time (2024-05-01 10:00 UTC)


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
