"""What an instructor learns from a graded class: ``shortcutlab report --out DIR`` on a folder ``shortcutlab grade``
wrote.

``build_class_report`` reads the gradebook once (every student's latest submission of each lesson, their written
answers, the roster) into a ``ClassReport``, in which every number is computed once: score distributions per lesson
and per graded function, each check's pass rate (hidden checks by name: this is the instructor's page), the slips
the checks diagnosed (``CheckResult.slip``, typed ids, never read back from messages) with their counts and example
students, submissions that could not be graded or whose functions timed out, students at risk (below a share of
the points across the lessons graded, a missing lesson counting 0), students who handed nothing in, and how far
the grading of written answers has come. ``write_class_report`` lays it out: ``report.html`` (one self-contained
page from ``templates/class_report.html.j2``, its figures inlined as PNG) and ``check_stats.csv``.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shortcutlab.course import Course
from shortcutlab.grading.outputs.files import write_text
from shortcutlab.grading.outputs.tables import Row, class_rows
from shortcutlab.grading.status import AnswerStatus, Status, SubmissionStatus
from shortcutlab.grading.store.gradebook import Entry
from shortcutlab.grading.store.roster import Roster
from shortcutlab.grading.wording import check_title, points

CHECK_STATS_COLUMNS = ("lesson", "function", "check", "submissions", "passed", "pass_rate")
AT_RISK_SHARE = 0.5  # default: below half of the points of the lessons graded so far
EXAMPLES = 3  # students named per slip


@dataclass(frozen=True)
class CheckStat:
    """One check over the class: how many latest submissions it graded and how many it passed (a pending property
    check did not pass: it earned nothing)."""

    lesson: str
    function: str
    check: str
    title: str
    hidden: bool
    kind: str
    submissions: int
    passed: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.submissions if self.submissions else 0.0


@dataclass(frozen=True)
class SlipCount:
    """A mistake the checks diagnosed in one graded function: its id, how many submissions made it, who (the first
    few, sorted) and one message that named it, as an example."""

    lesson: str
    function: str
    slip: str
    count: int
    students: tuple[str, ...]
    example: str


@dataclass(frozen=True)
class Trouble:
    """A submission that could not be graded normally, or one of whose checks timed out."""

    student: str
    lesson: str
    status: str  # the submission's, or "timeout" for a check that timed out in a graded submission
    detail: str


@dataclass(frozen=True)
class AtRisk:
    """A student below the at-risk share: points earned and to be had over the lessons graded so far."""

    student: str
    name: str
    score: float
    max_score: float
    missing: tuple[str, ...]

    @property
    def share(self) -> float:
        return self.score / self.max_score if self.max_score else 0.0


@dataclass(frozen=True)
class AnswerProgress:
    """Written answers of one lesson: how many were answered, are graded, await grading, were left blank."""

    lesson: str
    answered: int
    graded: int
    awaiting: int
    blank: int


@dataclass(frozen=True)
class Figure:
    """A figure of the page: its title and the PNG, base64-encoded (inlined as a data: URI)."""

    title: str
    png: str


@dataclass(frozen=True)
class LessonSummary:
    """One lesson over the class: how many handed it in, their mean and median share of its points, its figure."""

    lesson: str
    title: str
    handed_in: int
    students: int
    max_score: float
    mean: float
    median: float
    figure: Figure | None


@dataclass(frozen=True)
class ClassReport:
    """Everything ``report.html`` and ``check_stats.csv`` show, decided once."""

    course: str
    generated: str
    submissions: int
    students: int
    at_risk_share: float
    lessons: tuple[LessonSummary, ...] = ()
    checks: tuple[CheckStat, ...] = ()
    slips: tuple[SlipCount, ...] = ()
    trouble: tuple[Trouble, ...] = ()
    at_risk: tuple[AtRisk, ...] = ()
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)
    answers: tuple[AnswerProgress, ...] = ()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _histograms(lesson: str, title: str, totals: list[float], max_score: float,
                functions: dict[str, tuple[list[float], float]]) -> Figure:
    """The lesson's score distribution and each graded function's, as small multiples (one PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    panels = [(f"{lesson}: total", totals, max_score)] + [(name, got, most) for name, (got, most) in functions.items()]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure = MplFigure(figsize=(3.2 * columns, 2.4 * rows), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    for index, (name, values, most) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        bins = [most * i / 10 for i in range(11)] if most else 10
        axes.hist(values, bins=bins, color="#4c72b0" if index else "#dd8452", edgecolor="white")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel(f"points of {points(most)}", fontsize=8)
        axes.set_ylabel("submissions", fontsize=8)
        axes.tick_params(labelsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return Figure(f"{title or lesson}: score distribution", base64.b64encode(buffer.getvalue()).decode())


def build_class_report(entries: Iterable[Entry], course: Course, roster: Roster = Roster(),
                       at_risk_share: float = AT_RISK_SHARE, figures: bool = True) -> ClassReport:
    """The class report of a gradebook's ``entries`` (with their written answers attached), its ``roster`` and
    ``course``; ``figures`` False leaves the histograms out (for tests of the numbers alone)."""
    entries = list(entries)
    rows: list[Row] = class_rows(entries, course, roster)
    names = course.graded_names
    titles = {spec.id: spec.title for spec in course.lessons}
    by_lesson: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_lesson[row.lesson].append(row)

    lessons = []
    for lesson, mine in by_lesson.items():
        handed = [r for r in mine if r.entry is not None]
        max_score = max((r.entry.max_score for r in handed), default=0.0)
        shares = [r.score / max_score for r in handed] if max_score else []
        functions: dict[str, tuple[list[float], float]] = {}
        for r in handed:
            for function, (got, most) in r.entry.result.function_scores().items():
                functions.setdefault(function, ([], most))[0].append(got)
        figure = _histograms(lesson, titles.get(lesson, ""), [r.score for r in handed], max_score, functions) \
            if figures and handed else None
        lessons.append(LessonSummary(lesson, titles.get(lesson, ""), len(handed), len(mine), max_score,
                                     sum(shares) / len(shares) if shares else 0.0, _median(shares), figure))

    stats: dict[tuple[str, str], list] = {}
    slips: dict[tuple[str, str, str], list] = defaultdict(list)
    trouble = []
    for entry in entries:
        result = entry.result
        if result.status != SubmissionStatus.GRADED:
            detail = (result.error or result.load.message or "").strip().splitlines()
            trouble.append(Trouble(entry.student_id, entry.lesson, str(result.status), detail[0][:300] if detail
                                   else ""))
        timed_out: set[str] = set()  # functions with a check that timed out (the checks after it were not run)
        for check in result.checks:
            key = (entry.lesson, check.name)
            if key not in stats:
                stats[key] = [check, 0, 0]
            stats[key][1] += 1
            stats[key][2] += check.status == Status.PASSED
            if check.slip:
                slips[(entry.lesson, check.function, check.slip)].append((entry.student_id, check.output))
            if check.status == Status.TIMEOUT and result.status == SubmissionStatus.GRADED and \
                    check.function not in timed_out:
                timed_out.add(check.function)
                trouble.append(Trouble(entry.student_id, entry.lesson, "timeout",
                                       f"{check.function}: {check.output.splitlines()[0][:300]}"))
    order = {lesson: i for i, lesson in enumerate(course.lesson_ids)}
    checks = tuple(CheckStat(lesson, c.function, c.name, check_title(c.name, c.function, names), c.hidden, c.kind,
                             total, passed)
                   for (lesson, _), (c, total, passed) in sorted(stats.items(), key=lambda kv: order.get(kv[0][0], 99)))
    slip_counts = []
    for (lesson, function, slip), seen in slips.items():
        students = sorted({student for student, _ in seen})
        slip_counts.append(SlipCount(lesson, function, slip, len(students), tuple(students[:EXAMPLES]),
                                     seen[0][1].strip().splitlines()[0][:300] if seen[0][1].strip() else ""))
    slip_counts.sort(key=lambda s: (order.get(s.lesson, 99), s.function, -s.count, s.slip))

    at_risk = []
    students = sorted({r.student for r in rows})
    for student in students:
        mine = [r for r in rows if r.student == student]
        score = sum(r.score for r in mine)
        most = sum(max((x.entry.max_score for x in by_lesson[r.lesson] if x.entry), default=0.0) for r in mine)
        name = next((r.name for r in mine if r.name), "")
        if most and score / most < at_risk_share:
            at_risk.append(AtRisk(student, name, score, most, tuple(r.lesson for r in mine if r.entry is None)))
    missing = {lesson: tuple(r.student for r in mine if r.entry is None) for lesson, mine in by_lesson.items()}

    progress = []
    for lesson, mine in by_lesson.items():
        answers = [a for r in mine if r.entry is not None for a in r.entry.answers]
        if answers:
            counts = Counter(a.status for a in answers)
            progress.append(AnswerProgress(lesson, len(answers) - counts[AnswerStatus.UNANSWERED],
                                           counts[AnswerStatus.GRADED], counts[AnswerStatus.AWAITING],
                                           counts[AnswerStatus.UNANSWERED]))
    return ClassReport(course.title, dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), len(entries),
                       len(students), at_risk_share, tuple(lessons), checks, tuple(slip_counts), tuple(trouble),
                       tuple(sorted(at_risk, key=lambda a: (a.share, a.student))),
                       {k: v for k, v in missing.items() if v}, tuple(progress))


def check_stats_csv(report: ClassReport) -> str:
    """``lesson, function, check, submissions, passed, pass_rate``: one row per check (hidden ones too)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CHECK_STATS_COLUMNS)
    for stat in report.checks:
        writer.writerow([stat.lesson, stat.function, stat.check, stat.submissions, stat.passed,
                         f"{stat.pass_rate:.4f}"])
    return buffer.getvalue()


def write_class_report(report: ClassReport, out: str | Path) -> list[Path]:
    """``out/report.html`` and ``out/check_stats.csv``; returns the files written."""
    from shortcutlab.grading.outputs.feedback import environment

    out = Path(out)
    page = environment().get_template("class_report.html.j2").render(report=report, points=points)
    write_text(out / "report.html", page)
    write_text(out / "check_stats.csv", check_stats_csv(report))
    return [out / "report.html", out / "check_stats.csv"]
