"""The judge: the grader's own re-run of each check the submission's process says passed.

``verify`` forks the judge's process from the grading server itself, never from a process where student code ran:
the server has only ever imported torch, the check files and the references, and the submission's processes are
gone by then (job.run_job). The judge never imports or runs the submission: each student function it meets is a
stand-in that answers with what the submission's process recorded (replay.py), each student class a token only
probes take (probes.py). It computes the reference values and the verdict itself, and reports one ``Verified``
event per check on a pipe of its own; verdict.judge merges them with what the submission's process reported.
"""
from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from shortcutlab.grading import probes
from shortcutlab.grading.engine.events import Verified
from shortcutlab.grading.engine.execute import UNVERIFIED, CheckContext, Outcome, run_check
from shortcutlab.grading.engine.limits import checks_time
from shortcutlab.grading.engine.processes import fork_reporting, kill_group, reap
from shortcutlab.grading.engine.protocol import CheckJob, Job
from shortcutlab.grading.engine.replay import Transcript
from shortcutlab.grading.engine.serving import child_setup, job_event, send


def _trusted_process(checks: list[CheckJob], functions: dict[str, Callable], references: dict[str, Any],
                     transcripts: dict[str, Any], out_fd: int, log_fd: int, job: Job) -> None:
    """Re-run passed checks from their recorded answers, in a process forked from the server (no student
    code ever ran here), and report each verdict: ``unverified`` for a check that cannot be replayed. A student
    class is handed over as a token that only probes take (probes.py)."""
    child_setup(log_fd, job.memory_mb)
    limit = int(job.output_limit)
    for item in checks:
        fn = functions[item.name]
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "seed"]
        names = [p.name for p in params if p.name in references or p.default is inspect.Parameter.empty]
        if any(name not in references for name in names):
            outcome, observed = Outcome(UNVERIFIED, "takes an object of the submission that is not graded, so not "
                                                    "replayable"), False
        else:
            recorded = Transcript(transcripts.get(item.name))
            classes = {n: probes.StudentClass(n) for n in names if isinstance(references[n], type)}
            stand_ins = {n: recorded.replayer(n) for n in names if n not in classes}
            with probes.replaying(recorded.replayer, classes):
                outcome = run_check(fn, CheckContext({**stand_ins, **classes}), item.seed, item.timeout,
                                    item.function, limit)
            observed = recorded.observed()
        send(out_fd, Verified(item.name, outcome.status, outcome.output(limit),
                              bool(outcome.status != UNVERIFIED and observed), outcome.slip))


def verify(job: Job, functions: dict[str, Callable], references: dict[str, Any], transcripts: dict[str, Any],
           log: Any) -> dict[str, Verified]:
    """Re-run the checks the submission's process says passed, in a process forked from this server (where no
    student code ever ran), from the recorded answers; its verdict by check name."""
    todo = [c for c in job.checks if c.name in transcripts]
    if not todo:
        return {}
    pid, lines = fork_reporting(lambda fd: _trusted_process(todo, functions, references, transcripts, fd,
                                                            log.fileno(), job))
    names = {c.name for c in todo}
    deadline = time.monotonic() + checks_time([c.timeout for c in todo])
    verdicts: dict[str, Verified] = {}
    while True:
        try:
            line = lines.next(deadline)
        except TimeoutError:
            break
        if line is None:
            break
        event = job_event(line)
        if isinstance(event, Verified) and event.name in names:
            verdicts[event.name] = event
    lines.close()
    kill_group(pid)
    reap(pid)
    return verdicts
