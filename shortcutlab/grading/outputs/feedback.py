"""Per-student feedback on one submission: one model, two templates.

``build_feedback`` turns a ``SubmissionResult`` (and the written answers) into a ``Feedback``, a frozen model in
which every decision is made once: the score with the written answers and its percent, the heading of a load that
went wrong, the sandbox line, the summary table's rows, a section per graded function with a ``CheckLine`` per
check (a hidden check carries only pass/fail and points, never its name or message; a failing visible check
carries its output), an ``AnswerLine`` per written answer (status, points, the instructor's comment and note, the
student's text) and the note on hidden checks. Points are written by ``wording.points``, check titles by
``wording.check_title``, symbols come from ``status.SYMBOLS``.

Two Jinja2 templates in ``templates/`` only lay the model out: ``feedback.md.j2`` (Markdown, not escaped: text
from students and checks goes inside code fences and quotes) and ``feedback.html.j2`` (a self-contained page,
autoescaped). ``feedback_markdown`` and ``feedback_html`` render them.
"""
from __future__ import annotations

import functools
import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shortcutlab.grading.results import AnswerResult, AnswerTotals, SubmissionResult, answers_status
from shortcutlab.grading.status import PENDING_SYMBOL, SYMBOLS, AnswerStatus, Status
from shortcutlab.timestamps import normalize_timestamp
from shortcutlab.grading.wording import check_title, load_failure, points

if TYPE_CHECKING:
    import jinja2

_ANSWER_SYMBOLS = {AnswerStatus.GRADED: "✎", AnswerStatus.AWAITING: "…", AnswerStatus.UNANSWERED: "✗"}
_ANSWER_KINDS = {AnswerStatus.GRADED: "passed", AnswerStatus.AWAITING: "hidden", AnswerStatus.UNANSWERED: "failed"}
AWAITING_NOTICE = "Written answers awaiting manual grading count 0 until your instructor has graded them."
HIDDEN_NOTICE = "Hidden checks test cases you were not shown; only whether they passed is reported."
GATING_NOTICE = ("How points are given: each function has a core check (its main result against the reference on "
                 "ordinary inputs); its other checks test one requirement each and count once the core check passes, "
                 "so one mistake costs that check's points only, and code that does not do the work earns none. A "
                 "check marked pending passed and will count once the core check does.")
NOT_GRADED = "Your submission could not be graded normally"


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Trouble:
    """Why the submission was not graded normally, or which cell raised or was stopped while it loaded."""

    heading: str
    message: str  # stripped; shown as preformatted text


@dataclass(frozen=True)
class SummaryRow:
    """A row of the summary table: a graded function (``is_function``) or the written answers."""

    name: str
    points: str  # '2.5 / 5'
    checks: str  # '1 of 2', or the written answers' state
    is_function: bool


@dataclass(frozen=True)
class CheckLine:
    """One check as the student sees it. A hidden check: ``label`` is 'hidden check, passed|failed', no
    ``failure``, no ``output``. A visible one: its title, and when it did not pass its status (``failure``) and
    its stripped output ('' if none)."""

    symbol: str
    label: str
    points: str  # '0 / 2.5'
    kind: str  # 'hidden', or the check's status (a CSS class in HTML)
    failure: str = ""  # the status after the points of a visible check that did not pass
    output: str = ""

    @property
    def hidden(self) -> bool:
        return self.kind == "hidden"


@dataclass(frozen=True)
class FunctionSection:
    """A graded function: its points and its checks, in check order."""

    name: str
    points: str
    checks: tuple[CheckLine, ...]


@dataclass(frozen=True)
class AnswerLine:
    """One written answer: its line ('✎ Question 1: 2 / 2, graded by hand'), the instructor's comment (only of a
    graded answer), a note, and the student's stripped text ('' if there is no answer)."""

    number: int
    status: AnswerStatus
    line: str
    kind: str  # 'passed' (graded), 'hidden' (awaiting), 'failed' (no answer): a CSS class in HTML
    comment: str = ""
    note: str = ""
    text: str = ""


@dataclass(frozen=True)
class Feedback:
    """Everything a student's feedback on one submission shows, decided once; the templates only lay it out."""

    heading: str  # 'Title (lesson)' or the lesson
    lesson: str
    student: str
    submitted: str  # '2024-05-01 10:00:00.000000 UTC', or ''
    score: str  # '5 / 10', written answers included
    percent: str  # '50%', or '' when nothing is to be had
    awaiting_notice: str  # '' unless a written answer awaits manual grading
    late_notice: str  # 'Handed in late: 1.2 points taken off (10 / 12 before).', or ''
    trouble: Trouble | None
    sandbox: str  # 'Graded in OS sandbox: bubblewrap.', or ''
    summary: tuple[SummaryRow, ...]  # empty when there are neither checks nor written answers
    functions: tuple[FunctionSection, ...]
    answers_heading: str  # 'Written answers: 1 / 3 (1 awaiting manual grading)', or '' without answers
    answers: tuple[AnswerLine, ...]
    hidden_notice: str  # '' unless some check is hidden
    gating_notice: str  # the partial-credit policy, where some check is pending on its core check; else ''


# ----------------------------------------------------------------------------- building it


def _trouble(result: SubmissionResult) -> Trouble | None:
    if result.error:
        return Trouble(NOT_GRADED, result.error.strip())
    if heading := load_failure(result.load, for_student=True):
        return Trouble(heading, result.load.message.strip())
    return None


def _check_line(check) -> CheckLine:
    symbol = PENDING_SYMBOL if check.gated else SYMBOLS.get(check.status, "?")
    score = f"{points(check.score)} / {points(check.max_score)}"
    passed = check.status == Status.PASSED
    if check.hidden:  # only pass/fail and points: never the name, the status's detail or the message
        state = "passed, pending the core check" if check.gated else "passed" if passed else "failed"
        return CheckLine(symbol, f"hidden check, {state}", score, "hidden")
    if check.gated:
        return CheckLine(symbol, check_title(check.name, check.function), score, "pending", "pending",
                         check.output.strip())
    return CheckLine(symbol, check_title(check.name, check.function), score, str(check.status),
                     "" if passed else str(check.status), "" if passed else check.output.strip())


def _answer_line(answer: AnswerResult) -> AnswerLine:
    most = points(answer.max_score)
    if answer.status == AnswerStatus.GRADED:
        state = f"{points(answer.points)} / {most}, graded by hand"
    elif answer.status == AnswerStatus.AWAITING:
        state = f"awaiting manual grading (0 / {most} until then)"
    else:
        state = f"no answer ({points(answer.points)} / {most})"
    graded = answer.status == AnswerStatus.GRADED
    return AnswerLine(answer.number, answer.status, f"{_ANSWER_SYMBOLS[answer.status]} Question {answer.number}: "
                      f"{state}", _ANSWER_KINDS[answer.status], answer.comment.strip() if graded else "",
                      answer.note, answer.text.strip())


def build_feedback(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "",
                   answers: Iterable[AnswerResult] = (), late_penalty: float = 0.0) -> Feedback:
    """The feedback on ``result`` for ``student``: score (less ``late_penalty`` points), points per function, each
    check (a hidden check shows only pass/fail and points), then each written answer (the student's text, its
    status, points and the instructor's comment)."""
    answers = tuple(answers)
    written = AnswerTotals.of(answers)
    got_answers, most_answers, awaiting = written.score, written.max_score, written.awaiting
    before, most = result.score + got_answers, result.max_score + most_answers
    score = max(0.0, before - late_penalty)
    lesson = result.lesson or "unknown lesson"

    summary = []
    sections = []
    for function, (got, best) in result.function_scores().items():
        mine = [c for c in result.checks if c.function == function]
        summary.append(SummaryRow(function, f"{points(got)} / {points(best)}",
                                  f"{sum(c.status == Status.PASSED for c in mine)} of {len(mine)}", True))
        sections.append(FunctionSection(function, f"{points(got)} / {points(best)}",
                                        tuple(_check_line(c) for c in mine)))
    answers_points = f"{points(got_answers)} / {points(most_answers)}"
    if answers:
        summary.append(SummaryRow("written answers", answers_points, f"{awaiting} of {len(answers)} awaiting manual "
                                  "grading" if awaiting else answers_status(answers), False))

    return Feedback(
        heading=f"{title} ({lesson})" if title else lesson,
        lesson=lesson,
        student=student,
        submitted=f"{normalize_timestamp(timestamp) or timestamp} UTC" if timestamp else "",
        score=f"{points(score)} / {points(most)}",
        percent=f"{100 * score / most:.0f}%" if most else "",
        awaiting_notice=AWAITING_NOTICE if awaiting else "",
        late_notice=(f"Handed in late: {points(late_penalty)} points taken off ({points(before)} / {points(most)} "
                     "before).") if late_penalty else "",
        trouble=_trouble(result),
        sandbox=f"Graded in OS sandbox: {result.sandbox}." if result.sandbox else "",
        summary=tuple(summary),
        functions=tuple(sections),
        answers_heading=(f"Written answers: {answers_points}" + (f" ({awaiting} awaiting manual grading)"
                                                                 if awaiting else "")) if answers else "",
        answers=tuple(_answer_line(a) for a in answers),
        hidden_notice=HIDDEN_NOTICE if any(c.hidden for c in result.checks) else "",
        gating_notice=GATING_NOTICE if any(c.gated for c in result.checks) else "",
    )


# ----------------------------------------------------------------------------- the templates


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates' environment: HTML (``*.html.j2``) autoescaped, Markdown not; a missing variable raises.
    jinja2 is imported here, on the first page rendered, so ``shortcutlab grade`` starts without it."""
    import jinja2
    from markupsafe import Markup

    @jinja2.pass_eval_context
    def finalize(context: jinja2.nodes.EvalContext, value: object) -> object:
        """In an autoescaped template, escape as ``html.escape`` does (``&quot;``, ``&#x27;``), not MarkupSafe."""
        if context.autoescape and not isinstance(value, Markup):
            return Markup(html.escape(str(value)))
        return value

    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                              autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
                              undefined=jinja2.StrictUndefined, finalize=finalize, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


def render(template: str, feedback: Feedback) -> str:
    """``feedback`` laid out by ``template`` (``feedback.md.j2`` or ``feedback.html.j2``)."""
    return environment().get_template(template).render(feedback=feedback)


def feedback_markdown(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "",
                      answers: Iterable[AnswerResult] = (), late_penalty: float = 0.0) -> str:
    """A student's feedback on one submission in Markdown (see ``build_feedback``)."""
    return render("feedback.md.j2", build_feedback(result, student, title, timestamp, answers, late_penalty))


def feedback_html(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "",
                  answers: Iterable[AnswerResult] = (), late_penalty: float = 0.0) -> str:
    """The same feedback as ``feedback_markdown``, as a self-contained HTML page."""
    return render("feedback.html.j2", build_feedback(result, student, title, timestamp, answers, late_penalty))
