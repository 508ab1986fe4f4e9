"""Do the exports say the right things to the right people: nbgrader's CSV, Gradescope's results.json, and
feedback that shows visible checks' messages but never a hidden check's name or message?"""
from __future__ import annotations

import csv
import io
import json
import os

import pytest

from shortcutlab.grading.exports import (CSV_COLUMNS, feedback_html, feedback_markdown, gradescope_results,
                                         grades_csv, write_exports)
from shortcutlab.grading.gradebook import Entry, GradeKey
from shortcutlab.grading.results import CheckResult, SubmissionResult
from shortcutlab.grading.students import clean_id, student_id, submission_timestamp

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
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["assignment"], r["student_id"]) for r in rows] == [
        ("00_colored_mnist", "alice"), ("00_colored_mnist", "bob"), ("03_gradcam", "alice"), ("03_gradcam", "bob")]
    alice = rows[2]
    assert (alice["raw_score"], alice["late_submission_penalty"], alice["score"], alice["max_score"]) == \
        ("5.0", "0.0", "5.0", "10.0")
    assert alice["timestamp"] == "2024-05-01 10:00:00.000000"
    missing = rows[1]  # bob never handed in lesson 0: nbgrader's export gives 0 and no timestamp
    assert (missing["raw_score"], missing["score"], missing["timestamp"], missing["max_score"]) == \
        ("0.0", "0.0", "", "10.0")


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


def test_write_exports_lays_out_csv_results_and_feedback(tmp_path):
    written = write_exports([entry("alice", "03_gradcam"), entry("bob", "00_colored_mnist")], tmp_path, LESSONS)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["feedback/alice/03_gradcam.html", "feedback/alice/03_gradcam.md",
                     "feedback/bob/00_colored_mnist.html", "feedback/bob/00_colored_mnist.md", "grades.csv",
                     "results/alice/03_gradcam/results.json", "results/bob/00_colored_mnist/results.json"]
    assert json.loads((tmp_path / "results/alice/03_gradcam/results.json").read_text())["score"] == 5.0
    assert not list(tmp_path.rglob("*.tmp"))


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
    assert submission_timestamp(path) == "2024-05-01 10:00:00"
    (path.parent / "timestamp.txt").write_text("2024-05-02 09:30:00.000000 UTC\n")
    assert submission_timestamp(path) == "2024-05-02 09:30:00.000000 UTC"
