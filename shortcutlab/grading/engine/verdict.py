"""Where a check's verdict is decided, in this order: the runner's answer -> the judge's re-run -> one status ->
points.

``judge``: a check that passed in the runner (where the student's code ran) passes only if the judge's re-run
(where no student code ran) passes too; a re-run that could not happen, or a runner that tampered with the grader
when the verdict relied on what the runner observed, is no pass (job.run_job, for each check of a job).
``score``: the final statuses of a submission's checks -> its ``CheckResult``s: an unknown status is an error,
property checks count only once their function's core checks pass (gating.py), a pass earns the check's points
(runner._assemble).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shortcutlab.grading.engine.events import Verified
from shortcutlab.grading.engine.execute import truncate
from shortcutlab.grading.engine.gating import gated, gated_output
from shortcutlab.grading.engine.protocol import CheckReport
from shortcutlab.grading.registry import PlannedCheck
from shortcutlab.grading.results import CheckResult
from shortcutlab.grading.status import FINAL, Status

NOT_RE_RUN = ("grader error: the grader's own re-run of this check, which decides whether it passes, did not "
              "finish; it is not counted as passed")


def judge(report: CheckReport, verdict: Verified | None, limit: int) -> CheckReport:
    """A check that passed in the runner (``report``: status, output, tampered), once the judge's ``verdict`` is in
    (None if the re-run never reported)."""
    if verdict is None:
        return replace(report, status=Status.ERROR, output=NOT_RE_RUN)
    if report.tampered and (verdict.status == Status.UNVERIFIED or
                            (verdict.status == Status.PASSED and verdict.observed)):
        # The process that recorded the answers (model states, probe data) replaced part of the grader: what it
        # observed cannot be trusted, so not a pass.
        return replace(report, status=Status.FAILED, verified=verdict.status == Status.PASSED,
                       output=f"the submission replaced `{report.tampered}`, which the grader or its checks rely on, "
                              "so this check cannot be trusted to pass; leave the library and the grader as they are")
    if verdict.status == Status.UNVERIFIED:
        return replace(report, verified=False, why_unverified=verdict.output[:300])
    if verdict.status == Status.PASSED:
        return replace(report, verified=True)
    return replace(report, status=verdict.status, output=truncate(verdict.output, limit), verified=True,
                   slip=verdict.slip)


def score(planned: Sequence[PlannedCheck], results: dict[str, CheckReport], error: str | None, notes: list[str],
          limit: int, names: Sequence[str]) -> tuple[CheckResult, ...]:
    """Each planned check's result: its final status and message (``error`` when it was never graded, ``notes``
    of the submission's loading added to what did not pass), and its points. ``names``: the course's graded names,
    for check titles."""
    outcomes: dict[str, tuple[str, str]] = {}
    for c in planned:
        got = results.get(c.name)
        if got is None:
            status, output = Status.ERROR, f"not graded: {error or 'no result was reported'}"
        else:
            status, output = str(got.status), str(got.output or "")
            if status not in FINAL:
                status, output = Status.ERROR, f"grader error: unknown status {status!r}"
        outcomes[c.name] = status, output
    # Property checks count once their function's core checks pass (gating.py): one that passed before is pending.
    pending = gated(planned, {name: status for name, (status, _) in outcomes.items()}, names)
    checks = []
    for c in planned:
        status, output = outcomes[c.name]
        if c.name in pending:
            status, output = Status.FAILED, gated_output(pending[c.name])
        passed = status == Status.PASSED
        if not passed and notes:
            output += ("\n" if output else "") + "\n".join(f"note: {n}" for n in notes)
        judged = passed and c.name in results and results[c.name].verified is True
        slip = results[c.name].slip if c.name in results and status == Status.FAILED else None
        checks.append(CheckResult(c.name, c.function, c.max_score if passed else 0.0, c.max_score,
                                  Status(status), truncate(output, limit), c.hidden, judged, gated=c.name in pending,
                                  kind=c.kind, slip=slip))
    return tuple(checks)
