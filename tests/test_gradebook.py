"""Does the gradebook keep every grade exactly once, reuse it on a rerun, regrade what changed, survive a
kill -9 midway, and give the same grades every time?

A toy course of plain-Python lessons (no torch) keeps grading servers fast.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TOY_CHECKS, TOY_CORRECT, make_toy_course, sandbox_warnings_dropped, toy_course_yml

from shortcutlab.cli import main
from shortcutlab.course import load_course
from shortcutlab.grading.integrations.batch import grade_class
from shortcutlab.grading.engine.versions import checks_version
from shortcutlab.grading.store.gradebook import GRADEBOOK_FILE, Gradebook, GradebookError, GradeKey
from shortcutlab.grading.results import CheckResult, SubmissionResult

ROOT = Path(__file__).resolve().parents[1]

# The shared toy course (conftest.py) with a second lesson.
OTHER_LESSON = """\
  - id: 91_other
    title: Negation
    notebook: 91_other.ipynb
    functions:
      neg: {points: 1, reference: operator.neg}
"""
COURSE_YML = toy_course_yml(more_lessons=OTHER_LESSON)

OTHER_CHECKS = '''
from shortcutlab.grading import check


@check("neg")
def test_neg(neg, seed):
    assert neg(seed) == -seed, f"neg({seed}) should be {-seed}"
'''

CORRECT = TOY_CORRECT
CLASS = {
    "alice/90_toy.py": CORRECT,
    "bob/90_toy.py": CORRECT.replace("a + b", "a - b"),
    "carol/90_toy.py": CORRECT.replace("return a + b", "raise NotImplementedError('add them')"),
    "dave/90_toy.ipynb": '{"cells": [',
    "erin/90_toy.py": CORRECT.replace("return x * k", "return x * k if x < 100 else 0"),
    "alice/91_other.py": "def neg(v):\n    return -v\n",
}


@pytest.fixture()
def course(tmp_path) -> Path:
    """A toy course folder; returns its course.yml."""
    return make_toy_course(tmp_path / "course", more_lessons=OTHER_LESSON,
                           more_checks={"test_91_other.py": OTHER_CHECKS})


@pytest.fixture()
def submitted(tmp_path) -> Path:
    folder = tmp_path / "submitted"
    for name, text in CLASS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
        os.utime(folder / name, (1714557600, 1714557600))  # fixed timestamps, so two runs' CSVs can be compared
    return folder


def grades_rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / GRADEBOOK_FILE) as db:
        return db.execute("SELECT content_hash, lesson, checks_version, base_seed, seed, score, run_id FROM grades "
                          "ORDER BY content_hash, lesson").fetchall()


def scores(run) -> dict[str, float]:
    return {Path(s.path).relative_to(Path(s.path).parents[1]).as_posix(): s.score for s in run.report.submissions}


def comparable(run) -> list[dict]:
    """The run's results without timings."""
    return [{**s.to_dict(), "path": Path(s.path).name} for s in run.report.submissions]


# ----------------------------------------------------------------------------- one run, reruns


def test_a_run_writes_the_gradebook_csv_results_and_feedback(course, submitted, tmp_path):
    out = tmp_path / "grades"
    run = grade_class([submitted], out, course=course, jobs=2)
    assert (run.graded, run.reused) == (6, 0)
    assert scores(run) == {"alice/90_toy.py": 5, "bob/90_toy.py": 2, "carol/90_toy.py": 2, "dave/90_toy.ipynb": 0,
                           "erin/90_toy.py": 4, "alice/91_other.py": 1}
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert [(r["assignment"], r["student_id"], r["raw_score"], r["max_score"], r["status"]) for r in rows] == [
        ("90_toy", "alice", "5.0", "5.0", "graded"), ("90_toy", "bob", "2.0", "5.0", "graded"),
        ("90_toy", "carol", "2.0", "5.0", "graded"), ("90_toy", "dave", "0.0", "5.0", "error"),
        ("90_toy", "erin", "4.0", "5.0", "graded"), ("91_other", "alice", "1.0", "1.0", "graded"),
        ("91_other", "bob", "0.0", "1.0", "missing"), ("91_other", "carol", "0.0", "1.0", "missing"),
        ("91_other", "dave", "0.0", "1.0", "missing"), ("91_other", "erin", "0.0", "1.0", "missing")]
    assert {r["timestamp"] for r in rows} == {""}  # no LMS said when: never the files' modification times
    matrix = list(csv.reader((out / "class_matrix.csv").open()))
    assert matrix[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                         "Adding and scaling [90_toy, 5 pts]", "Negation [91_other, 1 pts]", "Final Points"]
    assert [(r[0], r[3], r[5:]) for r in matrix[1:]] == [
        ("alice", "alice", ["5", "1", "6"]), ("bob", "bob", ["2", "", "2"]), ("carol", "carol", ["2", "", "2"]),
        ("dave", "dave", ["0", "", "0"]), ("erin", "erin", ["4", "", "4"])]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("grades.csv", "class_matrix.csv", "identical_submissions.csv", "feedback/bob/90_toy.md"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # like any file the user creates
    assert run.identical == () and len((out / "identical_submissions.csv").read_text().splitlines()) == 1
    results = json.loads((out / "results" / "bob" / "90_toy" / "results.json").read_text())
    assert results["score"] == 2 and len(results["tests"]) == 4
    feedback = (out / "feedback" / "bob" / "90_toy.md").read_text()
    assert "should be" in feedback and "secret input" not in feedback
    assert (out / "feedback" / "dave" / "90_toy.html").is_file()


def test_a_rerun_reuses_every_grade_and_regrade_grades_again_without_duplicates(course, submitted, tmp_path):
    out = tmp_path / "grades"
    first = grade_class([submitted], out, course=course, jobs=2)
    before = grades_rows(out)
    again = grade_class([submitted], out, course=course, jobs=2)
    assert (again.graded, again.reused) == (0, 6)
    assert comparable(again) == comparable(first)
    assert grades_rows(out) == before  # nothing was written again (same run ids)
    forced = grade_class([submitted], out, course=course, jobs=2, regrade=True)
    assert (forced.graded, forced.reused) == (6, 0)
    rows = grades_rows(out)
    assert len(rows) == len(before) == 6 and len({r[:4] for r in rows}) == 6
    assert [r[:6] for r in rows] == [r[:6] for r in before]  # same keys, seeds and scores ...
    assert {r[6] for r in rows} != {r[6] for r in before}  # ... graded by the new run
    with Gradebook(out) as book:
        assert book.count("submissions") == 6 and book.count("runs") == 3


def test_the_same_bytes_handed_in_twice_are_graded_once_and_identical_code_is_flagged(course, tmp_path, capsys):
    folder = tmp_path / "class"
    for student in ("ann", "ben", "cid"):
        (folder / student).mkdir(parents=True)
        (folder / student / "90_toy.py").write_text(CORRECT)
    (folder / "dan").mkdir()  # a reformatted, re-commented copy: other bytes, same code
    copy = "# dan's own work\n" + CORRECT.replace("a + b", "a+b").replace("\n\n", "\n")
    (folder / "dan" / "90_toy.py").write_text(copy)
    out = tmp_path / "grades"
    run = grade_class([folder], out, course=course, jobs=1)
    assert [s.score for s in run.report.submissions] == [5, 5, 5, 5]
    assert [Path(s.path).parent.name for s in run.report.submissions] == ["ann", "ben", "cid", "dan"]
    with Gradebook(out) as book:
        assert book.count("grades") == 2 and book.count("submissions") == 4
        assert sorted(e.student_id for e in book.entries()) == ["ann", "ben", "cid", "dan"]
    assert [(g.lesson, g.students) for g in run.identical] == [("90_toy", ("ann", "ben", "cid", "dan"))]
    rows = list(csv.DictReader((out / "identical_submissions.csv").open()))
    assert [(r["lesson"], r["group"], r["student_id"]) for r in rows] == \
        [("90_toy", "1", s) for s in ("ann", "ben", "cid", "dan")]
    # the command line names them in its run summary (stderr); a rerun reuses every grade
    assert main(["grade", "--course", str(course), "--out", str(out), str(folder)]) == 0
    printed = capsys.readouterr()
    assert "identical graded code for 90_toy: ann, ben, cid, dan" in printed.err
    assert "1 group of identical" in printed.err
    assert printed.out.splitlines()[:4] == [f"{s}  90_toy  5/5  graded" for s in ("ann", "ben", "cid", "dan")]
    assert len(printed.out.splitlines()) == 5 and "identical" not in printed.out
    # a gradebook of a version that kept no code digests gains them from the files that still hold what was graded
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        db.execute("DELETE FROM code_digests")
    (folder / "dan" / "90_toy.py").write_text(copy + "# changed since, not handed in again\n")
    rerun = grade_class([folder / s for s in ("ann", "ben")], out, course=course, jobs=1)
    assert rerun.reused == 2 and [g.students for g in rerun.identical] == [("ann", "ben", "cid")]
    assert grade_class([folder / "ann"], out, course=course, jobs=1).identical == rerun.identical


def test_a_class_run_reads_each_submission_file_once_and_parses_only_those_it_grades(course, submitted, tmp_path, monkeypatch):
    """The batch reads a file once (its digest keys the gradebook), parses it only if it is to be graded, and hands
    the parsed submission to the runner."""
    from shortcutlab.grading.engine import runner, submission
    from shortcutlab.grading.integrations import batch

    parsed: list[str] = []
    real = submission.load_submission

    def counting(path, *args, **kwargs):
        parsed.append(str(Path(path).relative_to(submitted)))
        return real(path, *args, **kwargs)

    read: list[str] = []
    real_read = Path.read_bytes

    def counting_reads(path):
        if submitted in path.parents:
            read.append(str(path.relative_to(submitted)))
        return real_read(path)

    monkeypatch.setattr(batch, "load_submission", counting)
    monkeypatch.setattr(runner, "load_submission", counting)
    monkeypatch.setattr(Path, "read_bytes", counting_reads)
    run = grade_class([submitted], tmp_path / "grades", course=course, jobs=2)
    # every file once, the unparseable notebook (dave's) too: its error is graded from that one attempt
    assert run.graded == len(CLASS) and sorted(parsed) == sorted(CLASS), parsed
    assert sorted(read) == sorted(CLASS), read  # read once: hashed, parsed, its graded code digested
    assert any(r.error and "dave" in r.path for r in run.report.submissions)
    parsed.clear()
    read.clear()
    rerun = grade_class([submitted], tmp_path / "grades", course=course, jobs=2)
    assert rerun.reused == len(CLASS) and parsed == []  # every grade reused: hashed, never parsed
    assert sorted(read) == sorted(CLASS)  # and read once, to hash it: identical code comes from the gradebook


def test_two_files_of_one_student_for_one_lesson_are_both_graded_and_the_last_one_exported(course, tmp_path):
    folder = tmp_path / "class"
    (folder / "ann").mkdir(parents=True)
    (folder / "ann" / "90_toy.ipynb").write_text('{"cells": [')
    (folder / "ann" / "90_toy.py").write_text(CORRECT)
    warnings: list[str] = []
    run = grade_class([folder / "ann" / "90_toy.py", folder / "ann" / "90_toy.ipynb"], tmp_path / "grades",
                      course=course, jobs=2, warn=warnings.append)
    assert [s.score for s in run.report.submissions] == [5, 0]
    warnings = sandbox_warnings_dropped(warnings)
    assert len(warnings) == 1 and "both ann's 90_toy" in warnings[0]
    rows = list(csv.DictReader((tmp_path / "grades" / "grades.csv").open()))
    assert [(r["student_id"], r["raw_score"]) for r in rows] == [("ann", "0.0")]  # the one given last


def test_a_changed_check_or_points_regrade_only_the_lesson_concerned(course, submitted, tmp_path):
    out = tmp_path / "grades"
    grade_class([submitted], out, course=course, jobs=2)
    checks = course.parent / "autograder" / "test_91_other.py"
    checks.write_text(OTHER_CHECKS.replace("neg(seed) == -seed", "neg(seed + 1) == -seed - 1"))
    run = grade_class([submitted], out, course=course, jobs=2)
    assert (run.graded, run.reused) == (1, 5)
    course.write_text(COURSE_YML.replace("add: {points: 3", "add: {points: 4"))
    run = grade_class([submitted], out, course=course, jobs=2)
    assert (run.graded, run.reused) == (5, 1)
    assert scores(run)["alice/90_toy.py"] == 6


def test_the_checks_version_follows_the_check_file_the_lesson_entry_and_the_library(course):
    toy = load_course(course)
    version = checks_version(toy, "90_toy")
    assert version == checks_version(toy, "90_toy") and version != checks_version(toy, "91_other")
    (course.parent / "autograder" / "test_90_toy.py").write_text(TOY_CHECKS + "\n# reworded\n")
    assert checks_version(toy, "90_toy") != version


# ----------------------------------------------------------------------------- seeds and determinism


def test_a_gradebook_draws_a_secret_base_seed_once_and_every_run_into_it_keeps_it(course, submitted, tmp_path):
    first = grade_class([submitted / "alice"], tmp_path / "one", course=course, jobs=2)
    again = grade_class([submitted / "alice"], tmp_path / "one", course=course, jobs=2)
    other = grade_class([submitted / "alice"], tmp_path / "two", course=course, jobs=2)
    with Gradebook(tmp_path / "one") as book:
        assert first.report.seed == again.report.seed == book.secret_seed()
    assert other.report.seed != first.report.seed  # each gradebook its own secret (a 1 in 2**31 chance to clash)
    assert again.reused == 2 and again.graded == 0  # the same seed: the grades are reused
    given = grade_class([submitted / "alice"], tmp_path / "one", course=course, jobs=2, seed=5)
    assert given.report.seed == 5 and given.graded == 2  # another seed is another grade key


def test_grading_the_same_batch_twice_with_a_seed_gives_identical_grades(course, submitted, tmp_path):
    first = grade_class([submitted], tmp_path / "one", course=course, jobs=2, seed=5)
    second = grade_class([submitted], tmp_path / "two", course=course, jobs=1, seed=5)
    assert comparable(first) == comparable(second)
    assert (tmp_path / "one" / "grades.csv").read_text() == (tmp_path / "two" / "grades.csv").read_text()
    assert {r[3] for r in grades_rows(tmp_path / "one")} == {r[4] for r in grades_rows(tmp_path / "one")} == {5}


def test_two_files_differing_only_in_comments_see_the_same_inputs_and_get_the_same_grade(course, tmp_path):
    """The inputs derive from the base seed, the lesson and the check, never from the file: the same code gets the
    same grade whatever its comments, names or bytes."""
    folder = tmp_path / "class"
    folder.mkdir()
    wrong = CORRECT.replace("a + b", "a - b")
    (folder / "x_90_toy.py").write_text(wrong)
    (folder / "y_90_toy.py").write_text("# my own version\n" + wrong.replace("a - b", "a-b  # subtract"))
    run = grade_class([folder], tmp_path / "grades", course=course, jobs=1)
    x, y = run.report.submissions
    assert "should be" in x.checks[0].output
    assert [(c.name, c.status, c.output) for c in x.checks] == [(c.name, c.status, c.output) for c in y.checks]
    assert x.score == y.score


# ----------------------------------------------------------------------------- the gradebook itself


def test_a_grade_spoiled_by_the_grader_is_kept_but_graded_again_and_never_replaces_a_good_one(tmp_path):
    key = GradeKey("f" * 64, "90_toy", "v1", 0)
    good = SubmissionResult("a.py", "90_toy", None, (CheckResult("t", "add", 3, 3, "passed", ""),), 3.0)
    spoiled = SubmissionResult("a.py", "90_toy", "the grading server did not start", (), 3.0, grader_fault=True)
    # the submission's own error, whatever its words: final
    own = SubmissionResult("b.py", "90_toy", "grader error: a student's message", (), 3.0)
    with Gradebook(tmp_path) as book:
        book.record(GradeKey("e" * 64, "90_toy", "v1", 0), 1, own, "ben", "")
        assert book.lookup(GradeKey("e" * 64, "90_toy", "v1", 0))[0] == own
        book.record(key, 1, spoiled, "ann", "")
        assert book.lookup(key) is None  # not final: the next run grades it
        book.record(key, 1, good, "ann", "")
        assert book.lookup(key)[0].score == 3
        book.record(key, 1, spoiled, "ann", "")
        assert book.lookup(key)[0].score == 3 and book.count("grades") == 2  # its own row and ben's


# ----------------------------------------------------------------------------- the command line


def test_grade_out_and_regrade_on_the_command_line(course, submitted, tmp_path, capsys):
    out = tmp_path / "grades"
    args = ["grade", "--course", str(course), "--out", str(out), "--jobs", "2", "--json", str(submitted / "alice")]
    assert main(args) == 0
    first = capsys.readouterr()
    document = json.loads(first.out)
    with Gradebook(out) as book:
        assert set(document) == {"seed", "submissions"} and document["seed"] == book.secret_seed()
    assert [s["score"] for s in document["submissions"]] == [5, 1]
    assert main(args) == 0
    second = capsys.readouterr()
    assert json.loads(second.out) == document and second.err.count("already graded") == 2
    assert main(args + ["--regrade", "--quiet"]) == 0
    third = capsys.readouterr()
    assert json.loads(third.out) == document and sandbox_warnings_dropped(third.err) == ""
    assert (out / "grades.csv").is_file()


# ----------------------------------------------------------------------------- kill -9 and resume


SLOW_LOAD = "import time\ntime.sleep(1.0)  # loading takes a while, so the run can be killed midway\n"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry))
    return found


def _kill_tree(root: int) -> None:
    """SIGSTOP the process and everything it started (so nothing new starts), then SIGKILL them all."""
    stopped: set[int] = set()
    frontier = {root}
    while frontier:
        for pid in frontier:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= frontier
        frontier = set().union(*(_children(pid) for pid in stopped)) - stopped
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _graded(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM grades").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


def test_a_run_killed_midway_loses_nothing_graded_and_the_rerun_grades_the_rest_once(course, tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for i, student in enumerate(("ann", "ben", "cid", "dot")):
        body = CORRECT if i % 2 == 0 else CORRECT.replace("a + b", "a - b")
        (folder / f"{student}_90_toy.py").write_text(f"# {student}\n" + SLOW_LOAD + body)
    out = tmp_path / "grades"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "shortcutlab", "grade", "--course", str(course), "--out", str(out), "--jobs", "1",
               "--quiet", str(folder)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while _graded(out / GRADEBOOK_FILE) < 1:
            assert time.monotonic() < deadline, "nothing was graded within 120 s"
            try:
                process.wait(timeout=0.05)  # poll: returns early only if the run ended on its own
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"the run ended (code {process.returncode}) before it could be killed")
    finally:
        _kill_tree(process.pid)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    kept = grades_rows(out)
    assert 1 <= len(kept) < 4, "kill earlier: every submission was already graded"

    resumed = grade_class([folder], out, course=course, jobs=1)
    assert (resumed.reused, resumed.graded) == (len(kept), 4 - len(kept))
    rows = grades_rows(out)
    assert len(rows) == 4 and len({r[0] for r in rows}) == 4  # each submission once, no duplicates
    assert set(kept) <= set(rows)  # what was graded before the kill was kept as it was, not graded again
    with Gradebook(out) as book:
        seed = book.secret_seed()  # the killed run's and the resumed one's
    fresh = grade_class([folder], tmp_path / "uninterrupted", course=course, jobs=1, seed=seed)
    assert comparable(resumed) == comparable(fresh)
    assert [s.score for s in fresh.report.submissions] == [5, 2, 5, 2]
    with Gradebook(out) as book:
        assert book.count("submissions") == 4


def test_a_gradebook_that_cannot_be_opened_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GradebookError, match="cannot open the gradebook"):
        Gradebook(blocker / "grades")
    with Gradebook(tmp_path / "old") as book:
        book._db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(GradebookError, match="another version"):
        Gradebook(tmp_path / "old")
