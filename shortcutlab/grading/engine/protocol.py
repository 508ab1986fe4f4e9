"""What the grading parent sends a grading server: one ``Job`` per submission, as one JSON line.

The parent (runner.py) plans the job; the server (worker.py) grades it and answers with one JSON line of raw
results, which runner._assemble turns into a ``SubmissionResult``. Typed here so both sides name the same fields.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from shortcutlab.grading.results import LoadOutcome


@dataclass(frozen=True)
class CheckJob:
    """One check to run: ``name`` (the check), ``function`` (what it grades), its time limit (s) and its seed."""

    name: str
    function: str
    timeout: float
    seed: int


@dataclass(frozen=True)
class Job:
    """One submission to grade: its cells (``Cell.to_dict()``), its lesson's check file and checks, its limits,
    and the references the server resolves before any student code runs (reference guard and judge)."""

    id: int
    lesson: str
    check_file: str
    cells: tuple[dict, ...]
    checks: tuple[CheckJob, ...]
    load_timeout: float  # s for all of its cells
    cell_timeout: float  # s for one cell
    budget: float | None  # s for loading and checks in all (grading.submission_budget)
    memory_mb: int
    output_limit: int  # characters kept per check
    references: dict[str, str] = field(default_factory=dict)  # graded name -> dotted path of the reference
    allow_reference: bool = False
    scratch: str | None = None  # set by the server: the submission's scratch folder

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        checks = tuple(CheckJob(**c) for c in data.get("checks", ()))
        return cls(**{**data, "checks": checks, "cells": tuple(data.get("cells", ()))})


@dataclass(frozen=True)
class CheckReport:
    """A check's raw outcome: ``verified`` is True when the judge re-ran it and agreed, False when the judge could
    not re-run it, None when it did not pass in the runner (no re-run needed)."""

    status: str
    output: str = ""
    seconds: float = 0.0
    verified: bool | None = None
    tampered: str | None = None  # what the runner replaced of the grader, if anything
    why_unverified: str = ""
    slip: str | None = None  # the mistake a failing check diagnosed (an id; CheckFailure.slip)


@dataclass(frozen=True)
class JobResult:
    """What a server answers for a ``Job``: ``error`` when the submission could not be graded normally, the notes
    of cells that failed while loading (``CellNote.to_dict()``), what loading printed, one ``CheckReport`` per
    check, how loading went (``load``, set when its process died) and the judge's share of the time (s);
    ``grader_fault`` when the ``error`` is the grader's own (a broken check file, a server that failed)."""

    id: int | None = None
    error: str | None = None
    notes: tuple[dict, ...] = ()
    printed: str = ""
    results: dict[str, CheckReport] = field(default_factory=dict)
    load: LoadOutcome | None = None
    judge_seconds: float = 0.0
    grader_fault: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        known = {f.name for f in dataclasses.fields(CheckReport)}
        results = {name: CheckReport(**{k: v for k, v in report.items() if k in known})
                   for name, report in (data.get("results") or {}).items()}
        return cls(id=data.get("id"), error=data.get("error"), grader_fault=data.get("grader_fault") is True,
                   notes=tuple(data.get("notes") or ()),
                   printed=str(data.get("printed") or ""), results=results, load=LoadOutcome.from_dict(data.get("load")),
                   judge_seconds=float(data.get("judge_seconds") or 0.0))
