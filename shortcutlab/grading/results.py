"""Grading results: per check, per submission, per run (the shape of ``shortcutlab grade --json``), and a written
answer graded by hand."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shortcutlab.grading.status import AnswerStatus, LoadStatus, SubmissionStatus


@dataclass(frozen=True)
class LoadOutcome:
    """How a submission's cells ran: its status, the notebook cell number of the first problem (None: none, or not
    a notebook cell) and what went wrong, in words ('' when it went well)."""

    status: LoadStatus = LoadStatus.OK
    cell: int | None = None
    message: str = ""

    @property
    def failed(self) -> bool:
        """A cell raised or was stopped (a file never run is an error of the submission, not of its loading)."""
        return self.status in (LoadStatus.ERROR, LoadStatus.TIMEOUT)

    def to_dict(self) -> dict:
        return {"status": str(self.status), "cell": self.cell, "message": self.message}

    @classmethod
    def from_dict(cls, data: object) -> LoadOutcome | None:
        """The outcome a dict holds (as ``to_dict`` wrote it, or as a grading server sent it); None if it is not one."""
        if not isinstance(data, dict) or data.get("status") not in tuple(LoadStatus):
            return None
        cell = data.get("cell")
        return cls(LoadStatus(data["status"]), cell if isinstance(cell, int) and not isinstance(cell, bool) and cell
                   else None, str(data.get("message") or ""))


@dataclass(frozen=True)
class CheckResult:
    """One check: ``score`` is ``max_score`` if it passed, else 0."""

    name: str
    function: str
    score: float
    max_score: float
    status: str
    output: str
    hidden: bool = False
    judged: bool = False  # its pass was decided by the judge, a process where no student code ran
    gated: bool = False  # a property check that passed but counts only once its function's core checks pass
    kind: str = "core"  # registry.CORE or registry.PROPERTY
    slip: str | None = None  # the mistake the check diagnosed, as an id (``CheckFailure(..., slip=...)``)

    def to_dict(self) -> dict:
        return {"name": self.name, "function": self.function, "score": round(self.score, 4),
                "max_score": round(self.max_score, 4), "status": self.status, "output": self.output,
                "hidden": self.hidden, "judged": self.judged, "kind": self.kind, "gated": self.gated,
                "slip": self.slip}


@dataclass(frozen=True)
class SubmissionResult:
    """One submission; ``error`` says why it could not be graded normally (None when it was)."""

    path: str
    lesson: str | None
    error: str | None
    checks: tuple[CheckResult, ...] = ()
    max_score: float = 0.0
    seconds: float = 0.0
    load: LoadOutcome = LoadOutcome()
    sandbox: str | None = None  # the OS sandbox it ran in: "bubblewrap" or "none" (None: not recorded)
    grader_fault: bool = False  # ``error`` is the grader's own (a server that died or hung): graded again next run
    judge_seconds: float = 0.0  # of ``seconds``, the judge's re-run of the passed checks (not stored, not in --json)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def status(self) -> SubmissionStatus:
        """``timeout`` if a time limit cut its loading off, ``error`` if it could not be graded normally otherwise
        (unreadable, its code ended the grading process, a cell raised while loading, a grader problem), else
        ``graded``: a wrong answer, a stub, a function left out or one whose check timed out was graded."""
        if self.load.status == LoadStatus.TIMEOUT:
            return SubmissionStatus.TIMEOUT
        if self.error or self.load.status == LoadStatus.ERROR:
            return SubmissionStatus.ERROR
        return SubmissionStatus.GRADED

    def function_scores(self) -> dict[str, tuple[float, float]]:
        """(score, max_score) per graded function, in check order."""
        out: dict[str, tuple[float, float]] = {}
        for c in self.checks:
            got, most = out.get(c.function, (0.0, 0.0))
            out[c.function] = (got + c.score, most + c.max_score)
        return out

    def to_dict(self) -> dict:
        return {"path": self.path, "lesson": self.lesson, "status": str(self.status), "score": round(self.score, 4),
                "max_score": round(self.max_score, 4), "error": self.error,
                "load": self.load.to_dict(), "sandbox": self.sandbox,
                "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class GradeReport:
    """A grading run: the seed every check's inputs derive from, and one result per submission."""

    seed: int
    submissions: tuple[SubmissionResult, ...] = field(default=())
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"seed": self.seed, "submissions": [s.to_dict() for s in self.submissions]}


@dataclass(frozen=True)
class AnswerResult:
    """A written answer to one question of a lesson (course.yml's ``answers``), graded by hand.

    ``text`` is what the student wrote (empty: no answer, the prompt left as is or the cell deleted); ``score``
    is the instructor's points, None until imported (``shortcutlab answers SCORES.csv``). Until then it counts
    0 of ``max_score``; a question with no answer counts 0 and needs no grading (its status stays "no answer" even
    if a score is imported for it, and the score counts).
    """

    question: str
    max_score: float
    text: str = ""
    score: float | None = None
    comment: str = ""
    note: str = ""  # for the instructor and the student: why a stored score was not applied, say

    @property
    def number(self) -> int:
        return int(self.question.lstrip("q"))

    @property
    def answered(self) -> bool:
        return bool(self.text.strip())

    @property
    def points(self) -> float:
        return float(self.score) if self.score is not None else 0.0

    @property
    def status(self) -> AnswerStatus:
        if not self.answered:
            return AnswerStatus.UNANSWERED
        return AnswerStatus.GRADED if self.score is not None else AnswerStatus.AWAITING



@dataclass(frozen=True)
class AnswerTotals:
    """A submission's written answers in sum: points earned (0 for those not scored yet), points to be had, and how
    many answered ones await manual grading."""

    score: float = 0.0
    max_score: float = 0.0
    awaiting: int = 0

    @classmethod
    def of(cls, answers: Iterable[AnswerResult]) -> AnswerTotals:
        answers = tuple(answers)
        return cls(sum(a.points for a in answers), sum(a.max_score for a in answers),
                   sum(a.status == AnswerStatus.AWAITING for a in answers))


@dataclass(frozen=True)
class ClassLine:
    """One submission of a class as the instructor's outputs show it (terminal, --json, grades.csv): whose it is, its
    checks' result, its written answers and its late penalty (points). Code and written-answer points are kept apart;
    ``total`` adds them, ``score`` takes the penalty off."""

    student: str
    result: SubmissionResult
    answers: tuple[AnswerResult, ...] = ()
    late_penalty: float = 0.0
    name: str = ""

    @property
    def written(self) -> AnswerTotals:
        return AnswerTotals.of(self.answers)

    @property
    def total(self) -> float:
        return self.result.score + self.written.score

    @property
    def max_score(self) -> float:
        return self.result.max_score + self.written.max_score

    @property
    def score(self) -> float:
        return max(0.0, self.total - self.late_penalty)

    @property
    def full_marks(self) -> bool:
        """Every point of the checks and of the written answers earned, none lost to lateness."""
        return bool(self.max_score) and self.score >= self.max_score - 1e-9

    @property
    def full_code_marks(self) -> bool:
        return bool(self.result.max_score) and self.result.score >= self.result.max_score - 1e-9

    def to_dict(self) -> dict:
        written = self.written
        return {"student": self.student, **self.result.to_dict(),
                "answers": {"score": round(written.score, 4), "max_score": round(written.max_score, 4),
                            "awaiting": written.awaiting, "status": answers_status(self.answers)},
                "late_penalty": round(self.late_penalty, 4),
                "total": {"score": round(self.score, 4), "max_score": round(self.max_score, 4)}}


def answers_status(answers: Iterable[AnswerResult]) -> str:
    """A submission's written answers at a glance: '' (none), 'awaiting manual grading' (some answered one has
    no score yet), 'graded' (some answered and scored, none awaiting) or 'no answer' (all left blank)."""
    statuses = {a.status for a in answers}
    for status in (AnswerStatus.AWAITING, AnswerStatus.GRADED, AnswerStatus.UNANSWERED):
        if status in statuses:
            return status
    return ""
