"""Grading results: per check, per submission, per run (the shape of ``shortcutlab grade --json``), and a written
answer graded by hand."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shortcutlab.grading.status import AnswerStatus


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

    def to_dict(self) -> dict:
        return {"name": self.name, "function": self.function, "score": round(self.score, 4),
                "max_score": round(self.max_score, 4), "status": self.status, "output": self.output,
                "hidden": self.hidden, "judged": self.judged}


@dataclass(frozen=True)
class SubmissionResult:
    """One submission; ``error`` says why it could not be graded normally (None when it was)."""

    path: str
    lesson: str | None
    error: str | None
    checks: tuple[CheckResult, ...] = ()
    max_score: float = 0.0
    seconds: float = 0.0
    # How loading went: {"status": ok|error|timeout|not_run, "cell": notebook cell number or None, "message"}
    load: dict | None = None
    sandbox: str | None = None  # the OS sandbox it ran in: "bubblewrap" or "none" (None: not recorded)
    judge_seconds: float = 0.0  # of ``seconds``, the judge's re-run of the passed checks (not stored, not in --json)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    def function_scores(self) -> dict[str, tuple[float, float]]:
        """(score, max_score) per graded function, in check order."""
        out: dict[str, tuple[float, float]] = {}
        for c in self.checks:
            got, most = out.get(c.function, (0.0, 0.0))
            out[c.function] = (got + c.score, most + c.max_score)
        return out

    def to_dict(self) -> dict:
        return {"path": self.path, "lesson": self.lesson, "score": round(self.score, 4),
                "max_score": round(self.max_score, 4), "error": self.error,
                "load": self.load or {"status": "ok", "cell": None, "message": ""}, "sandbox": self.sandbox,
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

    ``text`` is what the student wrote (empty: unanswered, the prompt left as is or the cell deleted); ``score``
    is the instructor's points, None until imported (``shortcutlab answers SCORES.csv``). Until then it counts
    0 of ``max_score``; an unanswered question counts 0 and needs no grading (a score may still be imported).
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
        if self.score is not None:
            return AnswerStatus.GRADED
        return AnswerStatus.AWAITING if self.answered else AnswerStatus.UNANSWERED



def answers_status(answers: Iterable[AnswerResult]) -> str:
    """A submission's written answers at a glance: '' (none), 'awaiting manual grading' (some answered one has
    no score yet), 'graded' (some scored, none awaiting) or 'unanswered' (all left unanswered, none scored)."""
    statuses = {a.status for a in answers}
    for status in (AnswerStatus.AWAITING, AnswerStatus.GRADED, AnswerStatus.UNANSWERED):
        if status in statuses:
            return status
    return ""
