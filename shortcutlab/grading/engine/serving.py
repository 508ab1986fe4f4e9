"""What a grading server and every process it forks share (worker.py, job.py, judge.py): the server's state
(``STATE``: its protocol pipe, the current job's token and snapshot), sending an event stamped with that token,
reading one only if it carries it, the first steps of a forked process, and torch warmed up once before any fork.

``STATE`` is one object whose fields the server sets for each job (job.run_job) and clears after it; a forked
process reads the values its copy held at the fork. Read it as ``STATE.token``, never copy a field into a name of
another module: the field changes with every job."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from shortcutlab.grading.engine.events import decode
from shortcutlab.grading.engine.processes import die_with_parent

if TYPE_CHECKING:
    from shortcutlab.grading.engine.events import Event
    from shortcutlab.grading.engine.tamper import Snapshot


@dataclass
class ServerState:
    """``protocol_fd``: the server's result pipe, closed in every forked process (set once, by worker.serve);
    ``token``: the current job's secret, stamped on every event its processes send; ``snapshot``: what the grader
    relies on, as it was before the job's student code ran (both set by job.run_job, None between jobs)."""

    protocol_fd: int | None = None
    token: str | None = None
    snapshot: Snapshot | None = None


STATE = ServerState()


def send(fd: int, event: Event) -> None:
    """Write ``event`` as one JSON line to ``fd`` (whole, even if the pipe takes it in pieces), stamped with the job's
    token unless it carries one."""
    if STATE.token is not None and event.token is None:
        event = replace(event, token=STATE.token)
    data = (event.to_json() + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def job_event(line: dict) -> Event | None:
    """The event in ``line`` (as ``processes.Lines`` reads it) if it is well-formed and carries the current job's
    token; None otherwise, and the server ignores it (a line without the token was not written by the grader's own
    code, or not for this job)."""
    event = decode(line)
    return event if event is not None and event.token == STATE.token else None


def child_setup(log_fd: int, memory_mb: int | None) -> None:
    """First steps of every forked process: dies with its parent, no access to the server's pipes, output
    to the job's log, capped memory, a traceback on a hard crash."""
    die_with_parent()
    if STATE.protocol_fd is not None:
        try:
            os.close(STATE.protocol_fd)
        except OSError:
            pass
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb:
            cap = int(memory_mb) << 20
            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass
    faulthandler.enable(file=sys.__stderr__)


_WARM = False


def warm_up() -> None:
    """One torch thread, and torch's first-call costs paid once here rather than in every forked process
    (assert_close alone spends about a second on its first call)."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    import torch

    # One thread per submission process: parallelism comes from grading several submissions at once,
    # and a process that never ran a multi-threaded op can be forked safely.
    torch.set_num_threads(1)
    import torch.nn.functional as F

    from shortcutlab.grading import asserts

    asserts.expect_close(torch.ones(2), torch.ones(2), "warm-up")
    layer = torch.nn.Conv2d(3, 2, 3)
    optimizer = torch.optim.Adam(layer.parameters())
    F.cross_entropy(layer(torch.rand(2, 3, 4, 4)).flatten(1), torch.zeros(2, dtype=torch.long)).backward()
    optimizer.step()
