"""Written answers: released as prompts, collected by `shortcutlab grade` (from the notebook's JSON, never run),
listed for the instructor with the model answers, scored by hand in a CSV and imported back into the gradebook,
grades.csv, the class matrix, the feedback and Gradescope's results.json.

A toy course of plain-Python lessons (no torch) keeps grading fast.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from shortcutlab.cli import main
from shortcutlab.course import load_course
from shortcutlab.grading.integrations.batch import refresh
from shortcutlab.grading.outputs.feedback import feedback_markdown
from shortcutlab.grading.outputs.gradescope import gradescope_results
from shortcutlab.grading.results import AnswerResult
from shortcutlab.grading.status import AnswerStatus
from shortcutlab.grading.store.answers import AnswerError, normalize_answer, read_answers

ANSWER_GRADED, ANSWER_AWAITING, ANSWER_UNANSWERED = AnswerStatus
from shortcutlab.grading.store.gradebook import Gradebook
from shortcutlab.grading.results import CheckResult, SubmissionResult
from shortcutlab.release import ANSWER_PROMPT, answer_stub, points_problems, release

COURSE_YML = """\
version: 1
title: Toy course
grading: {timeout: 5, load_timeout: 20, preload: []}
lessons:
  - id: 90_toy
    title: Adding
    notebook: 90_toy.ipynb
    functions:
      add: {points: 3, reference: operator.add}
    answers: {q1: {points: 2}, q2: {points: 1}}
"""

CHECKS = '''
from shortcutlab.grading import check


@check("add")
def test_add(add, seed):
    assert add(seed, 1) == seed + 1, f"add({seed}, 1) should be {seed + 1}"
'''

MODEL = {"q1": "Color: the rule scores **95%**.", "q2": "About 1.1 points."}


def _cell(kind: str, source: str, nbgrader: dict | None = None, **extra) -> dict:
    cell = {"cell_type": kind, "metadata": {"nbgrader": {**nbgrader, "schema_version": 3}} if nbgrader else {},
            "source": source}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    cell.update(extra)
    return cell


def notebook(add_body: str = "return a + b", answers: dict[str, str] | None = None, points: dict | None = None,
             solution: bool = False) -> str:
    """The toy lesson's notebook: the solution (model answers in their regions) or a student's copy."""
    points = points or {"q1": 2, "q2": 1}
    answers = answers if answers is not None else {}
    cells = [
        _cell("code", "def add(a, b):\n    ### BEGIN SOLUTION\n    " + add_body + "\n    ### END SOLUTION\n"
              if solution else f"def add(a, b):\n    {add_body}\n",
              {"grade": False, "solution": True, "locked": False, "grade_id": "add"}),
        _cell("code", 'shortcutlab.check("90_toy.add", add)',
              {"grade": True, "solution": False, "locked": True, "points": 3, "grade_id": "check_add"}),
        _cell("markdown", "## What you found"),
    ]
    for number, question in enumerate(points, start=1):
        text = f"### BEGIN SOLUTION\n{MODEL.get(question, 'extra')}\n### END SOLUTION" if solution else \
            answers.get(question, ANSWER_PROMPT)
        cells += [_cell("markdown", f"**Question {number}.** What does the rule score? ({question})"),
                  _cell("markdown", text, {"grade": True, "solution": True, "locked": False,
                                           "points": points[question], "grade_id": f"answer_{question}"})]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 4}, indent=1)


@pytest.fixture()
def toy(tmp_path) -> Path:
    root = tmp_path / "course"
    for folder in ("autograder", "solutions", "lessons"):
        (root / folder).mkdir(parents=True)
    (root / "course.yml").write_text(COURSE_YML)
    (root / "autograder" / "test_90_toy.py").write_text(CHECKS)
    (root / "solutions" / "90_toy.ipynb").write_text(notebook(solution=True))
    return root / "course.yml"


@pytest.fixture()
def submitted(tmp_path) -> Path:
    folder = tmp_path / "submitted"
    files = {
        "alice/90_toy.ipynb": notebook(answers={"q1": "It scores 95% because\nof **color**.", "q2": ANSWER_PROMPT}),
        "bob/90_toy.py": "def add(a, b):\n    return a + b\n",  # a .py has no answers
        "carol/90_toy.ipynb": notebook("return a - b", answers={
            "q1": "### BEGIN SOLUTION\nShape, not color.\n### END SOLUTION", "q2": "YOUR ANSWER HERE\n\nIt varies."}),
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def fill(scores: Path, values: dict[tuple[str, str], tuple[str, str]]) -> None:
    table = rows(scores)
    for row in table:
        if (row["student"], row["question"]) in values:
            row["points"], row["comment"] = values[(row["student"], row["question"])]
    with scores.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


# ----------------------------------------------------------------------------- release


def test_release_turns_model_answers_into_prompts_and_keeps_everything_else(toy, tmp_path):
    root = toy.parent
    release(root / "solutions", root / "lessons", load_course(toy))
    lesson = json.loads((root / "lessons" / "90_toy.ipynb").read_text())
    answers = [c for c in lesson["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("answer")]
    assert ["".join(c["source"]) for c in answers] == [ANSWER_PROMPT, ANSWER_PROMPT]
    assert [c["metadata"]["nbgrader"]["points"] for c in answers] == [2, 1]
    text = (root / "lessons" / "90_toy.ipynb").read_text()
    assert all(model not in text for model in MODEL.values())
    assert "Question 1" in text
    assert answer_stub("Intro\n  ### BEGIN SOLUTION\n  secret\n  ### END SOLUTION\nOutro") == \
        f"Intro\n  {ANSWER_PROMPT}\nOutro"
    assert answer_stub("no region at all") == ANSWER_PROMPT  # as nbgrader's ClearSolutions


def test_release_writes_answer_points_from_course_yml_and_check_names_each_disagreement(toy, capsys):
    root = toy.parent
    (root / "solutions" / "90_toy.ipynb").write_text(notebook(solution=True, points={"q1": 5, "q2": 1}))
    args = ["release", "--solutions", str(root / "solutions"), "--lessons", str(root / "lessons"),
            "--course", str(toy)]
    assert main(args + ["--check"]) == 1
    assert "answer q1 has 5 points in the notebook (cell 4, answer_q1) but 2 in course.yml" in capsys.readouterr().err
    assert main(args) == 0
    solution = json.loads((root / "solutions" / "90_toy.ipynb").read_text())
    assert solution["cells"][4]["metadata"]["nbgrader"]["points"] == 2
    assert main(args + ["--check"]) == 0


def test_release_check_fails_for_an_answer_without_a_cell_and_a_cell_without_an_answer(toy):
    root = toy.parent
    course = load_course(toy)
    (root / "solutions" / "90_toy.ipynb").write_text(notebook(solution=True, points={"q1": 2, "q3": 1}))
    problems = points_problems(root / "solutions", root / "lessons", course)
    assert any("answer_q3" in line and "which course.yml does not list" in line for line in problems)
    assert any("no answer cell for q2" in line and "course.yml lists it" in line for line in problems)


def test_a_manually_graded_cell_must_be_named_after_its_question(toy):
    course = load_course(toy)
    nb = json.loads(notebook(solution=True))
    nb["cells"][4]["metadata"]["nbgrader"]["grade_id"] = "cell-deadbeef"
    path = toy.parent / "solutions" / "90_toy.ipynb"
    path.write_text(json.dumps(nb))
    problems = points_problems(toy.parent / "solutions", toy.parent / "lessons", course)
    assert any("grade_id is not answer_<question>" in line for line in problems)


def test_the_repository_lessons_hold_no_model_answers():
    root = Path(__file__).resolve().parents[1]
    course = load_course(root / "course.yml")
    for spec in course.lessons:
        if not spec.answers:
            continue
        lesson = json.loads(course.lesson_notebook(spec).read_text(encoding="utf-8"))
        cells = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in lesson["cells"]
                 if c["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("answer_")}
        assert sorted(cells) == sorted(f"answer_{q}" for q in spec.answers), spec.id
        assert set(cells.values()) == {ANSWER_PROMPT}, spec.id


# ----------------------------------------------------------------------------- reading answers


def test_answers_are_read_from_the_notebook_json_and_prompts_count_as_unanswered(tmp_path):
    path = tmp_path / "90_toy.ipynb"
    path.write_text(notebook(answers={"q1": "  My answer.\n", "q2": "*Your answer here.*"}))
    assert read_answers(path) == {"q1": "My answer."}
    assert normalize_answer("YOUR ANSWER HERE") == ""
    assert normalize_answer("### BEGIN SOLUTION\nkept\n### END SOLUTION") == "kept"
    (tmp_path / "90_toy.py").write_text("answer_q1 = 'not an answer cell'\n")
    assert read_answers(tmp_path / "90_toy.py") == {}
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    assert read_answers(tmp_path / "broken.ipynb") == {}


# ----------------------------------------------------------------------------- the round trip


def test_grade_lists_answers_and_imported_scores_reach_every_export(toy, submitted, tmp_path, capsys):
    out = tmp_path / "grades"
    assert main(["grade", str(submitted), "--out", str(out), "--course", str(toy), "--jobs", "2"]) == 0
    assert "3 written answers awaiting manual grading" in capsys.readouterr().err

    # the instructor's file: each question, its model answer, then each student's answer
    sheet = (out / "answers" / "90_toy.md").read_text()
    assert sheet.index("## Question 1") < sheet.index(MODEL["q1"]) < sheet.index("### alice: awaiting manual grading")
    assert "> It scores 95% because\n> of **color**." in sheet
    assert "### bob: no answer" in sheet and "> Shape, not color." in sheet and "> It varies." in sheet
    assert sheet.index("### carol") < sheet.index("## Question 2") < sheet.index(MODEL["q2"])

    scores = out / "answers" / "90_toy_scores.csv"
    table = rows(scores)
    assert list(table[0]) == ["lesson", "student", "question", "points", "max_points", "comment", "answer"]
    assert [(r["student"], r["question"], r["points"], r["max_points"], r["comment"]) for r in table] == [
        ("alice", "q1", "", "2", ""), ("bob", "q1", "", "2", "no answer"), ("carol", "q1", "", "2", ""),
        ("alice", "q2", "", "1", "no answer"), ("bob", "q2", "", "1", "no answer"), ("carol", "q2", "", "1", "")]

    # before the import: answers count 0 of their points and await grading
    grades = {(r["student_id"]): r for r in rows(out / "grades.csv")}
    assert (grades["alice"]["score"], grades["alice"]["max_score"], grades["alice"]["written_answers"]) == \
        ("3.0", "6.0", ANSWER_AWAITING)
    assert grades["bob"]["written_answers"] == ANSWER_UNANSWERED  # nothing to read: a .py has no answers
    results = json.loads((out / "results" / "alice" / "90_toy" / "results.json").read_text())
    assert results["score"] == 3
    assert [(t["name"], t["score"], t["max_score"], t.get("status")) for t in results["tests"][-2:]] == [
        ("Question 1: written answer (awaiting manual grading)", 0, 2, None),
        ("Question 2: written answer (no answer)", 0, 1, "failed")]
    feedback = (out / "feedback" / "alice" / "90_toy.md").read_text()
    assert "Score: **3 / 6**" in feedback and "awaiting manual grading" in feedback
    assert "  > It scores 95% because" in feedback

    # the instructor grades alice's q1 and carol's answers, then imports
    fill(scores, {("alice", "q1"): ("1.5", "Right number, say why."), ("carol", "q1"): ("0", ""),
                  ("carol", "q2"): ("1", "Good.")})
    assert main(["answers", "--out", str(out), "--course", str(toy), str(scores)]) == 0
    assert "imported 3 scores" in capsys.readouterr().out  # the rows filled in: blank answers need none
    # importing the same file again imports nothing new
    assert main(["answers", "--out", str(out), "--course", str(toy), str(scores)]) == 0
    assert "imported 0 scores of written answers from" in capsys.readouterr().out

    grades = {(r["student_id"]): r for r in rows(out / "grades.csv")}
    assert [(grades[s]["score"], grades[s]["max_score"], grades[s]["written_answers"])
            for s in ("alice", "bob", "carol")] == [("4.5", "6.0", ANSWER_GRADED), ("3.0", "6.0", ANSWER_UNANSWERED),
                                                    ("1.0", "6.0", ANSWER_GRADED)]
    assert (grades["alice"]["code_score"], grades["alice"]["answers_score"], grades["alice"]["answers_max_score"]) \
        == ("3.0", "1.5", "3.0")
    matrix = rows(out / "class_matrix.csv")
    assert "Adding [90_toy, 6 pts]" in matrix[0]
    assert [(r["Student"], r["Adding [90_toy, 6 pts]"], r["Final Points"]) for r in matrix] == [
        ("alice", "4.5", "4.5"), ("bob", "3", "3"), ("carol", "1", "1")]
    results = json.loads((out / "results" / "alice" / "90_toy" / "results.json").read_text())
    assert results["score"] == 4.5
    first = results["tests"][-2]
    assert (first["name"], first["score"], first["max_score"], first.get("status")) == \
        ("Question 1: written answer (graded)", 1.5, 2, None)  # partly scored: neither passed nor failed
    assert "Right number, say why." in first["output"] and "It scores 95%" in first["output"]
    feedback = (out / "feedback" / "carol" / "90_toy.md").read_text()
    assert "Written answers: 1 / 3" in feedback and "Comment: Good." in feedback
    assert "awaiting" not in (out / "feedback" / "carol" / "90_toy.html").read_text()
    assert "### alice: graded, 1.5 / 2" in (out / "answers" / "90_toy.md").read_text()
    assert ("alice", "q1", "1.5", "Right number, say why.") in [
        (r["student"], r["question"], r["points"], r["comment"]) for r in rows(scores)]

    # grading again keeps the scores (the gradebook holds them), and a changed answer awaits grading again
    (submitted / "alice" / "90_toy.ipynb").write_text(notebook(answers={"q1": "Another answer."}))
    assert main(["grade", str(submitted), "--out", str(out), "--course", str(toy), "--quiet"]) == 0
    grades = {(r["student_id"]): r for r in rows(out / "grades.csv")}
    assert (grades["alice"]["score"], grades["alice"]["written_answers"]) == ("3.0", ANSWER_AWAITING)
    assert (grades["carol"]["score"], grades["carol"]["written_answers"]) == ("1.0", ANSWER_GRADED)
    assert "a score of 1.5 was given to an earlier answer" in (out / "answers" / "90_toy.md").read_text()


def test_the_scores_template_keeps_what_the_instructor_typed_before_importing(toy, submitted, tmp_path):
    out = tmp_path / "grades"
    assert main(["grade", str(submitted), "--out", str(out), "--course", str(toy), "--quiet"]) == 0
    scores = out / "answers" / "90_toy_scores.csv"
    fill(scores, {("alice", "q1"): ("2", "half done")})
    assert main(["answers", "--out", str(out), "--course", str(toy)]) == 0  # no file: only rewrites
    assert ("alice", "q1", "2", "half done") in [(r["student"], r["question"], r["points"], r["comment"])
                                                 for r in rows(scores)]
    assert {r["student_id"]: r["score"] for r in rows(out / "grades.csv")}["alice"] == "3.0"  # not imported yet


@pytest.mark.parametrize("row, message", [
    ({"student": "zoe"}, "line 2: unknown student 'zoe' for 90_toy"),
    ({"lesson": "99_none"}, "line 2: unknown lesson '99_none'"),
    ({"question": "q7"}, "line 2: unknown question 'q7' for 90_toy (course.yml lists q1, q2)"),
    ({"points": "2.5"}, "line 2: 2.5 points for alice's q1 of 90_toy, more than its 2 (course.yml)"),
    ({"points": "-1"}, "line 2: points '-1' for alice's q1 of 90_toy must be a number from 0 to 2"),
    ({"points": "lots"}, "line 2: points 'lots' for alice's q1 of 90_toy must be a number from 0 to 2"),
    ({"answer": "0123456789ab"}, "line 2: alice's answer to q1 of 90_toy changed since this file was written"),
])
def test_a_bad_score_row_is_named_and_nothing_is_imported(toy, submitted, tmp_path, capsys, row, message):
    out = tmp_path / "grades"
    assert main(["grade", str(submitted), "--out", str(out), "--course", str(toy), "--quiet"]) == 0
    scores = tmp_path / "scores.csv"
    good = {"lesson": "90_toy", "student": "carol", "question": "q2", "points": "1", "comment": ""}
    bad = {**good, "student": "alice", "question": "q1", **row}
    with scores.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["lesson", "student", "question", "points", "comment", "answer"])
        writer.writeheader()
        writer.writerows([bad, good])
    capsys.readouterr()
    assert main(["answers", "--out", str(out), "--course", str(toy), str(scores)]) == 2
    err = capsys.readouterr().err
    assert "nothing imported" in err and f"{scores}, {message}" in err
    with Gradebook(out) as book:
        assert book.answer_scores() == {}  # the good row was not imported either


def test_a_row_given_twice_and_a_missing_column_are_errors(toy, submitted, tmp_path):
    out = tmp_path / "grades"
    assert main(["grade", str(submitted), "--out", str(out), "--course", str(toy), "--quiet"]) == 0
    course = load_course(toy)
    twice = tmp_path / "twice.csv"
    twice.write_text("lesson,student,question,points\n90_toy,carol,q1,1\n90_toy,carol,1,2\n")
    with pytest.raises(AnswerError, match=r"line 3: carol's q1 of 90_toy is scored again \(.*line 2 already"):
        refresh(out, course, [twice])
    columns = tmp_path / "columns.csv"
    columns.write_text("student,points\ncarol,1\n")
    with pytest.raises(AnswerError, match="no column lesson, question"):
        refresh(out, course, [columns])
    with pytest.raises(AnswerError, match="no gradebook"):
        refresh(tmp_path / "nowhere", course, [twice])


def test_an_import_survives_a_rerun_and_the_gradebook_keeps_answers_when_files_go(toy, submitted, tmp_path):
    out = tmp_path / "grades"
    assert main(["grade", str(submitted), "--out", str(out), "--course", str(toy), "--quiet"]) == 0
    scores = out / "answers" / "90_toy_scores.csv"
    fill(scores, {("alice", "q1"): ("2", "")})
    course = load_course(toy)
    refresh(out, course, [scores])
    refresh(out, course, [scores])  # importing the same file again changes nothing
    (submitted / "alice" / "90_toy.ipynb").unlink()
    run = refresh(out, course)
    assert (run.awaiting, run.graded) == (2, 1)  # carol's two; alice's q1
    assert "> It scores 95% because" in (out / "answers" / "90_toy.md").read_text()
    with Gradebook(out) as book:
        assert book.count("answer_scores") == 1 and book.count("answers") == 3


# ----------------------------------------------------------------------------- student-facing renderings


def test_gradescope_results_and_feedback_show_answers_as_manually_graded_tests():
    result = SubmissionResult("alice.ipynb", "90_toy", None,
                              (CheckResult("test_add", "add", 3.0, 3.0, "passed", ""),), 3.0)
    answers = (AnswerResult("q1", 2.0, "Color.", 2.0, "Exactly."), AnswerResult("q2", 1.0, "Shape?"),
               AnswerResult("q3", 1.0))
    assert [a.status for a in answers] == [ANSWER_GRADED, ANSWER_AWAITING, ANSWER_UNANSWERED]
    results = gradescope_results(result, answers=answers)
    assert results["score"] == 5
    assert [(t["number"], t["score"], t["max_score"], t.get("status")) for t in results["tests"]] == [
        ("1", 3, 3, "passed"), ("2", 2, 2, "passed"), ("3", 0, 1, None), ("4", 0, 1, "failed")]
    assert "awaiting manual grading" in results["output"]
    text = feedback_markdown(result, "alice", "Adding", answers=answers)
    assert "Score: **5 / 7**" in text and "| written answers | 2 / 4 | 1 of 3 awaiting manual grading |" in text
    assert "Question 3: no answer (0 / 1)" in text and "  Comment: Exactly." in text


def test_gradescopes_run_autograder_lists_the_uploads_answers_awaiting_manual_grading(toy, tmp_path):
    from shortcutlab.grading.integrations.gradescope_bundle import run_autograder

    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "submission" / "90_toy.ipynb").write_text(notebook(answers={"q1": "Color."}))
    config = toy.parent / "shortcutlab_autograder.json"
    config.write_text(json.dumps({"lesson": "90_toy", "seed": 0, "course": "course.yml"}))
    results = run_autograder(root, config)
    # the check's test, then the answers' (scored by hand on Gradescope: 0 here, whatever the checks gave)
    assert [t["max_score"] for t in results["tests"]] == [3, 2, 1]
    assert results["score"] == sum(t["score"] for t in results["tests"][:1])
    assert [(t["name"], t["score"], t["max_score"], t.get("status")) for t in results["tests"][-2:]] == [
        ("Question 1: written answer (awaiting manual grading)", 0, 2, None),
        ("Question 2: written answer (no answer)", 0, 1, "failed")]
    assert "Your answer:\nColor." in results["tests"][-2]["output"]
    assert MODEL["q1"] not in json.dumps(results)
