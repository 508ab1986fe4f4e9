"""Grading reports: the JSON document of ``shortcutlab grade --json``, a submission's status, and a readable table
(one line per submission; per-function scores and visible checks' messages with ``details``).

Hidden checks' messages never appear here (only their name and status, with ``details``): instructors find them in
the gradebook and in ``--json``.
"""
from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from shortcutlab.grading.results import ClassLine, GradeReport, SubmissionResult
from shortcutlab.grading.wording import load_failure, points
from shortcutlab.grading.status import Status, SubmissionStatus
from shortcutlab.grading.store.students import student_id

MARKS = {Status.PASSED: "ok", Status.FAILED: "FAIL", Status.ERROR: "ERROR", Status.TIMEOUT: "TIMEOUT"}
# A submission's status (grades.csv, the terminal); "missing" (not handed in) exists only in the class's exports.
GRADED, ERROR, TIMEOUT, MISSING = SubmissionStatus
STATUSES = tuple(SubmissionStatus)


def class_lines(report: GradeReport, lines: Sequence[ClassLine] | None = None) -> list[ClassLine]:
    """``lines`` (a class run's, one per submission of ``report``), or each submission of ``report`` as a line of its
    own, its student told by its file name and no written answers (a run of the runner alone)."""
    if lines is not None:
        return list(lines)
    return [ClassLine(student_id(r.path, r.lesson), r) for r in report.submissions]


def render_json(report: GradeReport, lines: Sequence[ClassLine] | None = None) -> str:
    """``{"seed", "submissions": [{"student", "path", "lesson", "status", "score", "max_score", "error", "load",
    "sandbox", "checks": [...], "answers": {...}, "late_penalty", "total": {...}}]}``: ``score`` and ``max_score`` are
    the checks' points, ``answers`` the written answers', ``total`` both less the late penalty."""
    return json.dumps({"seed": report.seed, "submissions": [line.to_dict() for line in class_lines(report, lines)]},
                      indent=2)


def _first_lines(text: str, count: int = 4, width: int = 110) -> list[str]:
    """The first ``count`` lines of ``text``, long ones wrapped to ``width``."""
    lines = [part for line in text.strip().splitlines() if line.strip()
             for part in textwrap.wrap(line, width, subsequent_indent="  ") or [""]]
    return lines[:count] + (["..."] if len(lines) > count else [])


def render_line(line: ClassLine) -> str:
    """One line: student, lesson, the checks' points, the written answers' points (where the lesson has any, with how
    many await manual grading), a late penalty (if any), the status."""
    result = line.result
    parts = [line.student, result.lesson or "unknown lesson", f"{points(result.score)}/{points(result.max_score)}"]
    written = line.written
    if written.max_score:
        parts.append(f"answers {points(written.score)}/{points(written.max_score)}"
                     + (f" ({written.awaiting} awaiting)" if written.awaiting else ""))
    if line.late_penalty:
        parts.append(f"late -{points(line.late_penalty)}")
    return "  ".join(parts) + f"  {result.status}{load_problem(result)}"


def load_problem(result: SubmissionResult) -> str:
    """`` (cell 3 timed out while loading)``, `` (cell 3 raised while loading)`` or '' when loading went well."""
    problem = load_failure(result.load, for_student=False)
    return f" ({problem})" if problem else ""


def render_details(result: SubmissionResult) -> list[str]:
    """Indented: the file, the error, one line per function, and each non-passing check (a visible check with
    its first lines; a hidden check with its name and status only)."""
    lines = [f"  file: {result.path}"]
    if result.error:
        lines += ["  error: " + line for line in _first_lines(result.error, 4)]
    elif load_problem(result):
        lines += ["  loading: " + line for line in _first_lines(result.load.message, 4)]
    width = max((len(c.function) for c in result.checks), default=0)
    for function, (got, most) in result.function_scores().items():
        mine = [c for c in result.checks if c.function == function]
        passed = sum(c.status == Status.PASSED for c in mine)
        lines.append(f"  {function:<{width}}  {points(got):>5}/{points(most):<5} {passed}/{len(mine)} checks passed")
        for c in mine:
            if c.status == Status.PASSED or result.error:  # with an error, no check ran: the error says why
                continue
            lines.append(f"    {'PENDING' if c.gated else MARKS.get(c.status, c.status)} {c.name}"
                         + (" (hidden)" if c.hidden else ""))
            if not c.hidden:
                lines += ["        " + line for line in _first_lines(c.output)]
    return lines


def render_summary(report: GradeReport, lines: Sequence[ClassLine] | None = None) -> str:
    """``N submissions in S s (seed K): G graded, E error, T timeout; F with full marks``, and where some lesson has
    written answers, how many have every code point and how many answers await manual grading: "full marks" counts
    only submissions with every point of the checks and of the written answers."""
    lines = class_lines(report, lines)
    total = len(lines)
    counts = {status: 0 for status in STATUSES[:3]}
    for line in lines:
        counts[line.result.status] += 1
    text = (f"{total} submission{'s' if total != 1 else ''} in {report.seconds:.1f} s (seed {report.seed}): "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + f"; {sum(line.full_marks for line in lines)} with full marks")
    if any(line.written.max_score for line in lines):
        awaiting = sum(line.written.awaiting for line in lines)
        text += (f" (written answers included), {sum(line.full_code_marks for line in lines)} with every code point; "
                 f"{awaiting} written answer{'s' if awaiting != 1 else ''} awaiting manual grading")
    return text


def render_table(report: GradeReport, details: bool = False, lines: Sequence[ClassLine] | None = None) -> str:
    """One line per submission (``render_line``; ``lines`` are a class run's, else each file's student comes from its
    name), each followed by its ``render_details`` if ``details``, then a summary line."""
    out: list[str] = []
    for line in class_lines(report, lines):
        out.append(render_line(line))
        if details:
            out += render_details(line.result)
    out.append(render_summary(report, lines))
    return "\n".join(out)
