"""Gradescope's ``results.json`` for one submission: one test per check (a hidden check shows only passed/failed
and its points, once grades are published), then one per written answer."""
from __future__ import annotations

from collections.abc import Iterable

from shortcutlab.grading.results import AnswerResult, AnswerTotals, SubmissionResult
from shortcutlab.grading.status import AnswerStatus, Status
from shortcutlab.grading.wording import check_title, points, rounded

HIDDEN_NOTE = "hidden check: its details are not shown"


def answer_output(answer: AnswerResult, quote_answer: bool = True) -> str:
    """What a student reads about one written answer: its status, points, the instructor's comment, the answer."""
    if answer.status == AnswerStatus.GRADED:
        head = f"Graded by hand: {points(answer.points)} / {points(answer.max_score)}."
        if answer.comment.strip():
            head += f"\nComment: {answer.comment.strip()}"
    elif answer.status == AnswerStatus.AWAITING:
        head = f"Awaiting manual grading (0 / {points(answer.max_score)} until then): your instructor reads and " \
               "scores this answer by hand."
    else:
        head = f"No answer: {points(answer.points)} / {points(answer.max_score)}."
    if answer.note:
        head += f"\n({answer.note})"
    if quote_answer and answer.answered:
        head += "\n\nYour answer:\n" + answer.text.strip()
    return head


def answer_tests(answers: Iterable[AnswerResult], first: int = 1) -> list[dict]:
    """results.json tests for written answers, numbered from ``first``: manually graded tests with the
    instructor's points, or 0 of their points and no ``status`` while awaiting manual grading. Only full points
    are ``passed`` and only 0 points ``failed``; a partly scored answer has no ``status`` (it is neither)."""
    tests = []
    for number, answer in enumerate(answers, start=first):
        test = {"name": f"Question {answer.number}: written answer ({answer.status})", "number": str(number),
                "score": rounded(answer.points), "max_score": rounded(answer.max_score),
                "output": answer_output(answer), "visibility": "visible"}
        if answer.status != AnswerStatus.AWAITING:
            if answer.points >= answer.max_score - 1e-9:
                test["status"] = "passed"
            elif answer.points <= 1e-9:
                test["status"] = "failed"
        tests.append(test)
    return tests


def results_document(score: float, seconds: float, output: str, tests: list[dict]) -> dict:
    """Gradescope's results.json: the total ``score``, the run's ``seconds``, the summary shown to the student and
    one entry per test; the student never sees the grader's stdout."""
    return {"score": rounded(score), "execution_time": round(float(seconds), 3), "output": output,
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def gradescope_results(result: SubmissionResult, execution_time: float | None = None,
                       answers: Iterable[AnswerResult] = (), late_penalty: float = 0.0) -> dict:
    """Gradescope's results.json for one submission: the score (less ``late_penalty`` points), one test per check,
    then one per written answer (``answer_tests``; they add to the score once graded by hand).

    Visible checks show their message; hidden checks show only passed/failed and their points once grades
    are published (visibility ``after_published``).
    """
    answers = tuple(answers)
    tests = []
    for number, check in enumerate(result.checks, start=1):
        status = "passed" if check.status == Status.PASSED else "failed"
        if check.hidden:
            tests.append({"name": f"{check.function}: hidden check", "number": str(number),
                          "score": rounded(check.score), "max_score": rounded(check.max_score),
                          "output": f"{status} ({HIDDEN_NOTE})", "visibility": "after_published", "status": status})
        else:
            output = check.output if check.status != Status.PASSED else ""
            if check.status in (Status.ERROR, Status.TIMEOUT):
                output = f"[{check.status}] {output}"
            tests.append({"name": f"{check.function}: {check_title(check.name, check.function)}", "number": str(number),
                          "score": rounded(check.score), "max_score": rounded(check.max_score),
                          "output": output, "visibility": "visible", "status": status})
    tests += answer_tests(answers, len(tests) + 1)
    written = AnswerTotals.of(answers)
    score = max(0.0, result.score + written.score - late_penalty)
    summary = f"{points(score)} / {points(result.max_score + written.max_score)} points"
    if late_penalty:
        summary += f" ({points(late_penalty)} taken off: handed in late)"
    if result.lesson:
        summary = f"{result.lesson}: {summary}"
    awaiting = written.awaiting
    if awaiting:
        summary += f" ({awaiting} written answer{'s' if awaiting != 1 else ''} awaiting manual grading)"
    if result.error:
        summary += f"\n\nThis submission could not be graded normally:\n{result.error}"
    return results_document(score, result.seconds if execution_time is None else execution_time, summary, tests)
