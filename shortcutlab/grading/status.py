"""Every status a check or a submission can have, in one place (string enums: they compare, hash and serialise as
their values, so ``"passed"`` read back from a gradebook or JSON equals ``Status.PASSED``)."""
from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """``enum.StrEnum`` (Python 3.11+) for 3.10 too: ``str()`` and ``format()`` give the value, not ``Cls.NAME``."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Status(StrEnum):
    """A check's outcome."""

    PASSED = "passed"
    FAILED = "failed"  # includes a stub's NotImplementedError and a property check not counted yet
    ERROR = "error"  # an exception escaped the check, or the grader could not grade it
    TIMEOUT = "timeout"
    UNVERIFIED = "unverified"  # internal: the judge could not re-run the check (never a final status)


FINAL = (Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT)  # what results, CSVs and JSON carry

# How a check's status is shown in the notebook report, nbgrader's cell output and the feedback.
SYMBOLS = {Status.PASSED: "✓", Status.FAILED: "✗", Status.ERROR: "✗", Status.TIMEOUT: "⏱"}
PENDING_SYMBOL = "…"  # a property check that passed and counts once its function's core checks pass (gating.py)


class SubmissionStatus(StrEnum):
    """A submission's line in the terminal, grades.csv and the feedback."""

    GRADED = "graded"
    ERROR = "error"  # not graded normally: unreadable, its code killed the grader, a cell raised while loading
    TIMEOUT = "timeout"  # cut off by a time limit
    MISSING = "missing"  # not handed in


class LoadStatus(StrEnum):
    """How a submission's cells ran before its checks."""

    OK = "ok"
    ERROR = "error"  # a cell raised, or the code ended its process
    TIMEOUT = "timeout"  # a cell was stopped by a time limit
    NOT_RUN = "not_run"  # never loaded: the file could not be read, or a grader problem


class AnswerStatus(StrEnum):
    """A written answer's state (graded by hand, never by a check)."""

    GRADED = "graded"  # answered, and the instructor's points are imported
    AWAITING = "awaiting manual grading"  # answered, not scored yet: counts 0 until then
    UNANSWERED = "no answer"  # left blank (the prompt as is, or the cell deleted): 0 points, nothing to grade
