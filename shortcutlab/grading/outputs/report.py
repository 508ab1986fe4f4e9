"""Grading reports: the JSON document of ``shortcutlab grade --json``, a submission's status, and a readable table
(one line per submission; per-function scores and visible checks' messages with ``details``).

Hidden checks' messages never appear here (only their name and status, with ``details``): instructors find them in
the gradebook and in ``--json``.
"""
from __future__ import annotations

import json
import textwrap
from shortcutlab.grading.results import GradeReport, SubmissionResult
from shortcutlab.grading.wording import points
from shortcutlab.grading.status import Status, SubmissionStatus
from shortcutlab.grading.store.students import student_id

MARKS = {Status.PASSED: "ok", Status.FAILED: "FAIL", Status.ERROR: "ERROR", Status.TIMEOUT: "TIMEOUT"}
# A submission's status (grades.csv, the terminal); "missing" (not handed in) exists only in the class's exports.
GRADED, ERROR, TIMEOUT, MISSING = SubmissionStatus
STATUSES = tuple(SubmissionStatus)
# How the engine words these (worker.py, execute.py): loading cut off by its time limit, a graded cell that was
# stopped while loading, and a graded function whose cell raised while loading (execute.missing_message).
_LOAD_TIMEOUT = "did not finish loading within"
_CELL_TIMEOUTS = ("did not finish within", "loading the submission used up its")
_CELL_RAISED = ("is not defined in your submission", "\nIts cell (")


def submission_status(result: SubmissionResult) -> str:
    """``error`` if the submission could not be graded normally (unreadable, its code killed the grader while
    loading, a graded cell that raised while loading), ``timeout`` if a time limit cut it off (loading or a
    check), else ``graded``. A wrong answer, a stub or a function left out is ``graded``."""
    if result.error:
        return TIMEOUT if _LOAD_TIMEOUT in result.error or (result.load or {}).get("status") == TIMEOUT else ERROR
    if (result.load or {}).get("status") in (ERROR, TIMEOUT):  # a cell that raised or was stopped while loading
        return result.load["status"]
    cell_timeout = False
    for check in result.checks:
        if check.status == Status.ERROR and all(marker in check.output for marker in _CELL_RAISED):
            raised = check.output.split(_CELL_RAISED[1], 1)[1]
            if any(marker in raised for marker in _CELL_TIMEOUTS):
                cell_timeout = True
            else:
                return ERROR
    if cell_timeout or any(check.status == Status.TIMEOUT for check in result.checks):
        return TIMEOUT
    return GRADED


def render_json(report: GradeReport) -> str:
    """``{"seed", "submissions": [{"path", "lesson", "score", "max_score", "error", "checks": [...]}]}``."""
    return json.dumps(report.to_dict(), indent=2)


def _first_lines(text: str, count: int = 4, width: int = 110) -> list[str]:
    """The first ``count`` lines of ``text``, long ones wrapped to ``width``."""
    lines = [part for line in text.strip().splitlines() if line.strip()
             for part in textwrap.wrap(line, width, subsequent_indent="  ") or [""]]
    return lines[:count] + (["..."] if len(lines) > count else [])


def render_line(result: SubmissionResult, student: str | None = None) -> str:
    """One line: student, lesson, score/max, status (the student id from the path unless given)."""
    student = student or student_id(result.path, result.lesson)
    return f"{student}  {result.lesson or 'unknown lesson'}  {points(result.score)}/{points(result.max_score)}  " \
           f"{submission_status(result)}{load_problem(result)}"


def load_problem(result: SubmissionResult) -> str:
    """`` (cell 3 timed out while loading)``, `` (cell 3 raised while loading)`` or '' when loading went well."""
    load = result.load or {}
    if load.get("status") not in (ERROR, TIMEOUT):
        return ""
    where = f"cell {load['cell']}" if load.get("cell") else "its code"
    return f" ({where} {'timed out' if load['status'] == TIMEOUT else 'raised'} while loading)"


def render_details(result: SubmissionResult) -> list[str]:
    """Indented: the file, the error, one line per function, and each non-passing check (a visible check with
    its first lines; a hidden check with its name and status only)."""
    lines = [f"  file: {result.path}"]
    if result.error:
        lines += ["  error: " + line for line in _first_lines(result.error, 4)]
    elif load_problem(result):
        lines += ["  loading: " + line for line in _first_lines(result.load.get("message", ""), 4)]
    width = max((len(c.function) for c in result.checks), default=0)
    for function, (got, most) in result.function_scores().items():
        mine = [c for c in result.checks if c.function == function]
        passed = sum(c.status == Status.PASSED for c in mine)
        lines.append(f"  {function:<{width}}  {points(got):>5}/{points(most):<5} {passed}/{len(mine)} checks passed")
        for c in mine:
            if c.status == Status.PASSED or (result.error and c.output.startswith("not graded")):
                continue
            lines.append(f"    {MARKS.get(c.status, c.status)} {c.name}" + (" (hidden)" if c.hidden else ""))
            if not c.hidden:
                lines += ["        " + line for line in _first_lines(c.output)]
    return lines


def render_summary(report: GradeReport) -> str:
    """``N submissions in S s (seed K): G graded, E error, T timeout; F with full marks``."""
    total = len(report.submissions)
    counts = {status: 0 for status in STATUSES[:3]}
    for s in report.submissions:
        counts[submission_status(s)] += 1
    full = sum(1 for s in report.submissions if s.max_score and abs(s.score - s.max_score) < 1e-9)
    return (f"{total} submission{'s' if total != 1 else ''} in {report.seconds:.1f} s (seed {report.seed}): "
            + ", ".join(f"{n} {status}" for status, n in counts.items()) + f"; {full} with full marks")


def render_table(report: GradeReport, details: bool = False, students: dict[str, str] | None = None) -> str:
    """One line per submission (``render_line``), each followed by its ``render_details`` if ``details``, then
    a summary line. ``students`` maps a submission's path to its student id (default: the file name)."""
    students = students or {}
    lines: list[str] = []
    for result in report.submissions:
        lines.append(render_line(result, students.get(result.path)))
        if details:
            lines += render_details(result)
    lines.append(render_summary(report))
    return "\n".join(lines)
