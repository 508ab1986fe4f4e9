"""Where is a check's verdict decided? verdict.judge: a pass in the runner (where student code ran) stands only if
the judge's re-run (where none ran) passes too, and never when the runner tampered with the grader and the
verdict relied on what the runner observed."""
from __future__ import annotations

import pytest

from shortcutlab.grading.engine.events import Verified
from shortcutlab.grading.engine.protocol import CheckReport
from shortcutlab.grading.engine.verdict import NOT_RE_RUN, judge
from shortcutlab.grading.status import Status

PASSED = CheckReport(Status.PASSED, "", 0.5)
TAMPERED = CheckReport(Status.PASSED, "", 0.5, tampered="shortcutlab.data.colorize")


@pytest.mark.parametrize("report, verdict, status, verified", [
    (PASSED, Verified("c", Status.PASSED, "", observed=False), Status.PASSED, True),
    (PASSED, Verified("c", Status.FAILED, "expected 3, got 5", observed=False), Status.FAILED, True),
    (PASSED, Verified("c", Status.UNVERIFIED, "not replayable", observed=False), Status.PASSED, False),
    (PASSED, None, Status.ERROR, None),
    (TAMPERED, Verified("c", Status.PASSED, "", observed=False), Status.PASSED, True),  # plain values: judged alone
    (TAMPERED, Verified("c", Status.PASSED, "", observed=True), Status.FAILED, True),
    (TAMPERED, Verified("c", Status.UNVERIFIED, "not replayable", observed=False), Status.FAILED, False),
    (TAMPERED, Verified("c", Status.FAILED, "wrong", observed=False), Status.FAILED, True),
])
def test_a_runner_pass_stands_only_with_the_judges_and_never_on_a_tampering_runners_observations(
        report, verdict, status, verified):
    judged = judge(report, verdict, limit=1000)
    assert (judged.status, judged.verified) == (status, verified)
    assert report.status == Status.PASSED  # the report given is left as it was
    if verdict is None:
        assert judged.output == NOT_RE_RUN
    elif report.tampered and status == Status.FAILED and verdict.status != Status.FAILED:
        assert "replaced `shortcutlab.data.colorize`" in judged.output
    elif verdict.status == Status.FAILED:
        assert judged.output == verdict.output
    elif verdict.status == Status.UNVERIFIED:
        assert judged.why_unverified == "not replayable"


def test_the_judges_message_is_cut_to_the_output_limit():
    judged = judge(PASSED, Verified("c", Status.FAILED, "x" * 5000, False), limit=200)
    assert judged.status == Status.FAILED and judged.output.startswith("x" * 200 + "\n")
    assert "(4800 more characters not shown)" in judged.output
