"""Does the class report tell an instructor the truth about the class? Its numbers against the gradebook's, its slips
counted from typed ids, and the page itself rendered in headless Chromium (skipped, saying why, without it)."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import make_toy_class_course, toy_class_notebook
from shortcutlab.course import load_course
from shortcutlab.grading.integrations.batch import class_report, grade_class
from shortcutlab.grading.outputs.class_report import CHECK_STATS_COLUMNS, build_class_report
from shortcutlab.grading.store.gradebook import Gradebook

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SECTIONS = ("scores", "checks", "slips", "trouble", "at-risk", "missing", "answers")


KINDS = {"ann": {}, "bea": {"answer": "Sums."}, "cal": {}, "dan": {"answer": "No idea."}, "eli": {},
         "fay": {"add": "return a - b"}, "gus": {"add": "return a - b"}, "hal": {"add": "return a - b"},
         "ida": {"add": "return a + b + 1"}, "jon": {"add": "return a + b + 1"}, "kim": {"twice": "return x"},
         "lou": {"add": "raise NotImplementedError('add them')"}, "max": {"twice": "while True:\n        pass"}}


def _grade_class(course: Path, folder: Path, students: dict[str, dict], unreadable: list[str],
                 missing: list[str]) -> Path:
    for student, parts in students.items():
        (folder / "submitted" / student).mkdir(parents=True)
        (folder / "submitted" / student / "95_sums.ipynb").write_text(toy_class_notebook(**parts))
    for student in unreadable:
        (folder / "submitted" / student).mkdir(parents=True)
        (folder / "submitted" / student / "95_sums.ipynb").write_text('{"cells": [')
    (folder / "roster.csv").write_text("student_id,name\n" + "".join(f"{s},{s.title()}\n" for s in
                                                                    [*students, *unreadable, *missing]))
    out = folder / "grades"
    grade_class([folder / "submitted"], out, course=course, jobs=2, roster=folder / "roster.csv", seed=3)
    return out


@pytest.fixture(scope="module")
def toy_class_course(tmp_path_factory) -> Path:
    """The toy class course of conftest, once for this module's graded classes."""
    return make_toy_class_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def graded_class(toy_class_course, tmp_path_factory) -> Path:
    """A class of 14: right, three who subtract, two off by one, a wrong twice, a stub, an unreadable file, a
    function that loops, and a roster with one student who handed in nothing (graded once for the module)."""
    return _grade_class(toy_class_course, tmp_path_factory.mktemp("class"), KINDS, ["ned"], ["ola"])


@pytest.fixture(scope="module")
def hundred_class(toy_class_course, tmp_path_factory) -> Path:
    """A class of 100 submissions, the kinds above in turn (no loop: it would cost a time limit each), two of them
    unreadable, and a roster with three students who handed in nothing."""
    kinds = [parts for name, parts in KINDS.items() if name != "max"]
    students = {f"s{i:03d}": kinds[i % len(kinds)] for i in range(98)}
    return _grade_class(toy_class_course, tmp_path_factory.mktemp("hundred"), students, ["s098", "s099"],
                        ["s100", "s101", "s102"])


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_check_stats_agree_with_the_gradebook_and_slips_are_counted_from_typed_ids(graded_class, toy_class_course):
    course = load_course(toy_class_course)
    report, written = class_report(graded_class, course)
    assert [p.name for p in written] == ["report.html", "check_stats.csv"]
    stats = _rows(graded_class / "check_stats.csv")
    assert tuple(stats[0]) == CHECK_STATS_COLUMNS
    with Gradebook(graded_class) as book:
        entries = book.entries()
    # recounted here from the gradebook's results: every check of every latest submission
    expected = Counter((e.lesson, c.name) for e in entries for c in e.result.checks)
    passed = Counter((e.lesson, c.name) for e in entries for c in e.result.checks if c.status == "passed")
    assert {(r["lesson"], r["check"]): (int(r["submissions"]), int(r["passed"])) for r in stats} == \
        {key: (count, passed[key]) for key, count in expected.items()}
    add_core = next(r for r in stats if r["check"] == "test_add_random_numbers")
    assert (add_core["submissions"], add_core["passed"], add_core["pass_rate"]) == ("14", "7", "0.5000")
    hidden = next(r for r in stats if r["check"] == "test_add_negative_numbers")  # the instructor sees it by name
    assert hidden["submissions"] == "14"
    slips = {(s.function, s.slip): (s.count, s.students) for s in report.slips}
    assert slips == {("add", "subtracts"): (3, ("fay", "gus", "hal")), ("add", "off_by_one"): (2, ("ida", "jon"))}
    assert {(t.student, t.status) for t in report.trouble} == {("ned", "error"), ("max", "timeout")}
    assert report.missing == {"95_sums": ("ola",)}
    at_risk = {a.student for a in report.at_risk}
    assert {"ola", "ned", "lou", "fay"} <= at_risk and "ann" not in at_risk
    (answers,) = report.answers
    assert (answers.answered, answers.graded, answers.awaiting, answers.blank) == (2, 0, 2, 12)  # ned: unreadable
    assert [lesson.handed_in for lesson in report.lessons] == [14] and report.lessons[0].figure is not None


def test_the_report_of_a_class_with_no_mistake_named_and_no_trouble_says_so(toy_class_course):
    report = build_class_report([], load_course(toy_class_course), figures=False)
    assert report.checks == () and report.slips == () and report.trouble == () and report.at_risk == ()


def test_report_on_the_command_line_writes_both_files_and_refuses_a_folder_without_a_gradebook(
        graded_class, toy_class_course, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "shortcutlab", "report", "--out", str(graded_class), "--course",
                           str(toy_class_course), "--at-risk", "0.9"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "class report of 14 submissions by 15 students" in done.stdout
    assert (graded_class / "report.html").is_file() and (graded_class / "check_stats.csv").is_file()
    empty = subprocess.run([sys.executable, "-m", "shortcutlab", "report", "--out", str(tmp_path / "nothing"),
                            "--course", str(toy_class_course)], capture_output=True, text=True, env=env)
    assert empty.returncode == 2 and "no gradebook in" in empty.stderr


def test_the_report_page_of_a_100_submission_class_renders_in_chromium_with_every_section_and_its_numbers(
        hundred_class, toy_class_course):
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"Chromium is missing ({CHROMIUM}; Debian: apt-get install chromium): the report's browser test "
                    "needs it, .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install .[test])")
    report, _ = class_report(hundred_class, load_course(toy_class_course))
    assert report.submissions == 100 and report.students == 103
    stats = {r["check"]: r for r in _rows(hundred_class / "check_stats.csv")}
    with Gradebook(hundred_class) as book:
        entries = book.entries()
    core = [c for e in entries for c in e.result.checks if c.name == "test_add_random_numbers"]
    passed = sum(c.status == "passed" for c in core)
    assert (int(stats["test_add_random_numbers"]["passed"]), int(stats["test_add_random_numbers"]["submissions"])) \
        == (passed, len(core)) == (passed, 100)
    subtracting = sum(c.slip == "subtracts" for c in core)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page()
            page.goto((hundred_class / "report.html").as_uri())
            for section in SECTIONS:
                assert page.locator(f"section#{section} h2").count() == 1, section
            images = page.locator("img")
            assert images.count() >= 1
            assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
                       for i in range(images.count()))
            row = page.locator("section#checks tr", has_text="random numbers").inner_text()
            assert f"{passed} / 100" in row and f"{round(100 * passed / 100)}%" in row
            slip_row = page.locator("section#slips tr", has_text="subtracts").inner_text()
            assert subtracting == 24 and f"\t{subtracting}\t" in slip_row  # 8 rounds of 12 kinds, three subtract
            assert "s100, s101, s102" in page.locator("section#missing").inner_text()
            assert "s098" in page.locator("section#trouble").inner_text()
        finally:
            browser.close()
