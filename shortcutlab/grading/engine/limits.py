"""Every limit of grading, declared here: the ones a course sets (course.yml ``grading:`` keys, with their help
text in ``shortcutlab.course.GradingSpec``: ``timeout``, ``load_timeout``, ``memory_mb``, ``output_limit``,
``submission_budget``, ``derive_timeouts``, ``timeout_floor``, ``timeout_factor``, ``require_sandbox``; a lesson's
and a function's ``timeout``), the fixed ones below, and the budget of a whole submission. Checks' default timeouts
are derived from the reference's measured time in ``timeouts.py``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shortcutlab.grading.engine.protocol import Job

# ---- time
BUDGET_CAP = 900.0  # seconds: the most a submission's default budget may be
MEASURE_SLACK = 120.0  # seconds the measuring process may take on top of its checks' limits (importing torch)
GRACE = 3.0  # seconds past a check's own limit (enforced in-process) before its process is killed
START_SLACK = 30.0  # seconds a fresh process may take before it starts its first check
FORK_SECONDS = 1.0  # seconds allowed for forking each check's process
SERVER_START_TIMEOUT = 300.0  # seconds a grading server may take to start (importing torch on a loaded 2-core machine)
SANDBOX_PROBE_TIMEOUT = 30.0  # seconds to find out whether bubblewrap can run here
# ---- size (memory: course.yml grading.memory_mb; output: grading.output_limit)
MAX_SUBMISSION_BYTES = 200 << 20  # a notebook with embedded outputs can be tens of MB; far larger is not a submission
FILE_LIMIT = 256 << 20  # bytes one file written by a student process may reach (its stdout log included)
SCRATCH_BYTES = 1 << 30  # size cap of the sandbox's /tmp (every submission's scratch folder lives there)
MAX_LINE = 128 << 20  # bytes of one event line on a grading pipe; a longer one (a runaway writer) is dropped
RECORD_BYTES = 32 << 20  # tensor bytes one check may record for the judge (answers are kB, models a few MB)
RECORD_NODES = 200_000  # containers and scalars in one recorded value
RECORD_DEPTH = 32  # nesting of one recorded value
# ---- processes
PROCESS_LIMIT = 128  # processes and threads student code may have at once, in the OS sandbox (RLIMIT_NPROC)


def checks_time(timeouts: list[float]) -> float:
    """Seconds to run checks with these time limits once, each with its grace and a fork, after a process start:
    what the submission's processes may take for them, and the judge for its re-run."""
    return sum(t + GRACE + FORK_SECONDS for t in timeouts) + START_SLACK


def default_budget(load_timeout: float, checks: list) -> float:
    """A submission's default wall budget: loading, plus twice the longest check timeout of each graded function
    (one check that runs out of time, and the rest), at most ``BUDGET_CAP`` seconds (and never less than
    loading plus one minute)."""
    longest: dict[str, float] = {}
    for c in checks:
        longest[c.function] = max(longest.get(c.function, 0.0), float(c.timeout))
    return max(min(BUDGET_CAP, load_timeout + sum(2 * t for t in longest.values())), load_timeout + 60.0)


def run_limit(job: Job) -> float:
    """Seconds the submission's own processes may take, loading and checks: its ``budget`` (course.yml
    ``grading.submission_budget``) if the job has one, and never more than loading plus every check with its
    grace and a fork."""
    most = job.load_timeout + checks_time([c.timeout for c in job.checks])
    budget = job.budget
    return min(float(budget), most) if budget else most


def submission_budget(job: Job) -> float:
    """Seconds a submission may take in all: its run limit, then the grader's own re-run of the checks that
    passed."""
    return run_limit(job) + checks_time([c.timeout for c in job.checks])
