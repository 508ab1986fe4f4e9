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

from conftest import toy_class_notebook
from shortcutlab.course import load_course
from shortcutlab.grading.integrations.batch import class_report, grade_class
from shortcutlab.grading.outputs.class_report import CHECK_STATS_COLUMNS, build_class_report
from shortcutlab.grading.store.gradebook import Gradebook

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SECTIONS = ("scores", "checks", "slips", "trouble", "at-risk", "missing", "answers")


@pytest.fixture()
def graded_class(toy_class_course, tmp_path) -> Path:
    """A class of 14: right, three who subtract, two off by one, a wrong twice, a stub, an unreadable file, a
    function that loops, and a roster with one student who handed in nothing."""
    course = toy_class_course
    course.write_text(course.read_text().replace("timeout: 5,", "timeout: 1.5,"))
    folder = tmp_path / "submitted"
    kinds = {"ann": {}, "bea": {"answer": "Sums."}, "cal": {}, "dan": {"answer": "No idea."}, "eli": {},
             "fay": {"add": "return a - b"}, "gus": {"add": "return a - b"}, "hal": {"add": "return a - b"},
             "ida": {"add": "return a + b + 1"}, "jon": {"add": "return a + b + 1"}, "kim": {"twice": "return x"},
             "lou": {"add": "raise NotImplementedError('add them')"}, "max": {"twice": "while True:\n        pass"}}
    for student, parts in kinds.items():
        (folder / student).mkdir(parents=True)
        (folder / student / "95_sums.ipynb").write_text(toy_class_notebook(**parts))
    (folder / "ned").mkdir()
    (folder / "ned" / "95_sums.ipynb").write_text('{"cells": [')
    (tmp_path / "roster.csv").write_text("student_id,name\n" + "".join(f"{s},{s.title()}\n" for s in
                                                                      [*kinds, "ned", "ola"]))
    out = tmp_path / "grades"
    grade_class([folder], out, course=course, jobs=2, roster=tmp_path / "roster.csv", seed=3)
    return out


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


def test_the_report_page_renders_in_chromium_with_every_section_its_images_and_the_gradebooks_numbers(
        graded_class, toy_class_course):
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"Chromium is missing ({CHROMIUM}; Debian: apt-get install chromium): the report's browser test "
                    "needs it, .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install .[test])")
    class_report(graded_class, load_course(toy_class_course))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page()
            page.goto((graded_class / "report.html").as_uri())
            for section in SECTIONS:
                assert page.locator(f"section#{section} h2").count() == 1, section
            images = page.locator("img")
            assert images.count() >= 1
            assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
                       for i in range(images.count()))
            core = page.locator("section#checks tr", has_text="random numbers")
            assert "7 / 14" in core.inner_text() and "50%" in core.inner_text()
            assert "subtracts" in page.locator("section#slips").inner_text()
            assert "fay, gus, hal" in page.locator("section#slips").inner_text()
            assert "ola" in page.locator("section#missing").inner_text()
        finally:
            browser.close()
