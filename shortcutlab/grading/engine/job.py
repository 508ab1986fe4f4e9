"""One job of a grading server (worker.py): ``run_job`` grades one submission in processes it forks.

It forks a process for the submission, in a scratch folder of its own (its working, temp and home folder, removed
afterwards), with capped memory and file sizes. That process runs the submission's cells, then forks one process per
graded function to run its checks, so a crash, hang or ``sys.exit`` in one function costs that function's checks
only. Time limits are kept by the parent of each process, never by the process that runs student code; a process
that dies without reporting a check fails that check. Processes report to their parent with typed events
(events.py), each stamped with a per-job token (serving.py), so blindly forged lines are dropped.

What those processes report is never trusted to pass a check on its own: each passed check comes with a
record of the calls it made to student functions, and the judge (judge.py), a process forked from the server
where no student code ever runs, re-runs the check from those recorded answers, computing the reference values
and the verdict itself; verdict.judge merges the two. See docs/threat-model.md for what this defends and what it
does not.
"""
from __future__ import annotations

import builtins
import dataclasses
import linecache
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from shortcutlab.course import import_object
from shortcutlab.grading import probes
from shortcutlab.grading.engine import verdict
from shortcutlab.grading.engine.events import CellStarted, FunctionStarted, Loaded, Result, Start, decode
from shortcutlab.grading.engine.execute import (ERROR, PASSED, TIMEOUT, CheckContext, describe_exception, exec_cells,
                                                run_check, truncate)
from shortcutlab.grading.engine.guard import ReferenceGuard, reference_codes
from shortcutlab.grading.engine.tamper import Snapshot
from shortcutlab.grading.engine.judge import verify
from shortcutlab.grading.engine.limits import FILE_LIMIT, GRACE, PROCESS_LIMIT, START_SLACK, run_limit
from shortcutlab.grading.engine.processes import (crash_summary, describe_exit, die_with_parent, fork_reporting,
                                                  kill_group, log_tail, parent_of, reap, remove_tree)
from shortcutlab.grading.engine.protocol import CheckJob, CheckReport, Job, JobResult
from shortcutlab.grading.engine.replay import Recorder
from shortcutlab.grading.engine.sandbox import drop_privileges, kill_uid, student_uid
from shortcutlab.grading.engine.serving import STATE, child_setup, job_event, send, warm_up
from shortcutlab.grading.registry import collect_checks, import_check_file
from shortcutlab.grading.results import LoadOutcome
from shortcutlab.grading.status import LoadStatus

SUBMISSION_NAME = "__submission__"  # __name__ of a submission: its `if __name__ == "__main__":` block stays off


# ----------------------------------------------------------------------------- inside the forked processes


def _become_sandbox(log_fd: int, memory_mb: int | None, scratch: str | None = None) -> None:
    """First steps of a forked process that will run student code: in the OS sandbox, becoming its unprivileged
    user (first: a change of user clears the parent-death signal); those of every child; a cap on the size of any
    file it writes (and in the sandbox on its processes); its own scratch folder as working, temp and home folder."""
    uid = student_uid()
    if uid is not None:
        drop_privileges(uid)
    linecache.clearcache()  # source lines the server read (a traceback's) must not reach student code
    child_setup(log_fd, memory_mb)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        if uid is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (PROCESS_LIMIT, PROCESS_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    if scratch:
        os.chdir(scratch)
        for key in ("TMPDIR", "TEMP", "TMP", "HOME"):
            os.environ[key] = scratch
        tempfile.tempdir = scratch


def _record_wrapper(recorder: Recorder, references: dict[str, Any]) -> Callable[[str, Any], Any]:
    """Record calls of the student objects whose reference is a function (classes cannot be replayed)."""

    def wrap(name: str, obj: Any) -> Any:
        reference = references.get(name)
        if reference is None or isinstance(reference, type) or not callable(obj):
            return obj
        return recorder.wrap(name, obj)

    return wrap


def _function_process(checks: list[CheckJob], functions: dict[str, Callable], context: CheckContext,
                      out_fd: int, limit: int, guards: Callable[[str], ReferenceGuard | None] = lambda f: None,
                      references: dict[str, Any] | None = None) -> None:
    """Run one function's checks in order, reporting each on ``out_fd``; a passed check's report carries
    the record of its calls, for the grader's own re-run."""
    die_with_parent()
    classes = {name: context.namespace[name] for name, reference in (references or {}).items()
               if isinstance(reference, type) and name in context.namespace}
    for item in checks:
        send(out_fd, Start(item.name))
        recorder = Recorder()
        with probes.recording(recorder, classes):
            outcome = run_check(functions[item.name], context, item.seed, item.timeout, item.function,
                                limit, wrap=_record_wrapper(recorder, references or {}), guard=guards(item.function))
        result = Result(item.name, outcome.status, outcome.output(limit), round(outcome.seconds, 3),
                        slip=outcome.slip)
        if outcome.status == PASSED:
            result = dataclasses.replace(result, transcript=recorder.transcript(),
                                         tampered=STATE.snapshot.changed() if STATE.snapshot is not None else None)
        send(out_fd, result)
        if outcome.status == TIMEOUT:
            return  # the parent marks the function's remaining checks as not run


def skipped_after_timeout(item: CheckJob) -> Result:
    """The result of a check not run because an earlier check of the same function timed out."""
    return Result(item.name, TIMEOUT, f"not run: an earlier check of {item.function} timed out (it did not finish "
                                      f"within {item.timeout:g} s); a function that loops once is not run again", 0.0)


def _run_function(checks: list[CheckJob], functions: dict[str, Callable], context: CheckContext, out_fd: int,
                  limit: int, guards: Callable[[str], ReferenceGuard | None] = lambda f: None,
                  references: dict[str, Any] | None = None) -> int:
    """Fork a process for ``checks`` (one function's), relay its results, kill it if a check overruns.
    Returns how many of ``checks`` got a result (the rest are retried in a fresh process). Once a check times
    out, the function's remaining checks are reported as timed out without running: a function that loops
    costs one check's time limit, not one per check."""
    pid, lines = fork_reporting(lambda fd: _function_process(checks, functions, context, fd, limit, guards,
                                                             references), close_in_child=(out_fd,))
    # The server kills this process group too if the whole submission runs out of time.
    send(out_fd, FunctionStarted(pid))
    done, current, deadline = 0, None, time.monotonic() + START_SLACK
    by_name = {c.name: c for c in checks}
    problem, timed_out = "", False
    while True:
        try:
            line = lines.next(deadline)
        except TimeoutError:
            kill_group(pid)
            if current is not None:
                item = by_name[current]
                send(out_fd, Result(current, TIMEOUT, f"{item.function} did not finish within {item.timeout:g} s and "
                                                      "was stopped: look for an endless loop or far more work than "
                                                      "needed", item.timeout))
                done += 1
                timed_out = True
            else:
                problem = "the check's process stopped responding"
            break
        if line is None:
            status = reap(pid)
            if current is not None:
                tail = crash_summary(log_tail(1, 8000))
                send(out_fd, Result(current, ERROR, f"the process running this check {describe_exit(status)} before "
                                                    f"it reported a result (a crash, os._exit or similar in "
                                                    f"{by_name[current].function})" + (f"\nlast output:\n{tail}"
                                                                                       if tail else ""), 0.0))
                done += 1
            elif done < len(checks):
                problem = f"the check's process {describe_exit(status)} before starting"
            break
        event = decode(line)
        if isinstance(event, Start) and event.name in by_name and current is None:
            current = event.name
            deadline = time.monotonic() + by_name[current].timeout + GRACE
            send(out_fd, Start(current))
        elif isinstance(event, Result) and event.name == current:
            send(out_fd, event)  # as it came, token and all
            done, current, deadline = done + 1, None, time.monotonic() + START_SLACK
            if event.status == TIMEOUT:
                timed_out = True
                break
            if done == len(checks):  # all reported: no waiting for the end of a pipe student code may hold open
                break
    lines.close()
    kill_group(pid)
    reap(pid)
    if timed_out:
        for item in checks[done:]:
            send(out_fd, skipped_after_timeout(item))
        return len(checks)
    if done == 0:
        # No progress: report the first check so the retry loop always moves on.
        send(out_fd, Result(checks[0].name, ERROR, f"grader error: {problem or 'no result'}", 0.0))
        done = 1
    return done


def _submission_process(job: Job, functions: dict[str, Callable], out_fd: int, log_fd: int,
                        references: dict[str, Any] | None = None, codes: dict[str, set] | None = None) -> None:
    """Run the submission's cells, then each graded function's checks in a process of its own."""
    _become_sandbox(log_fd, job.memory_mb, job.scratch)
    limit = int(job.output_limit)
    cells = job.cells
    namespace: dict[str, Any] = {"__name__": SUBMISSION_NAME, "__builtins__": builtins}
    notes, printed = exec_cells(cells, namespace, job.cell_timeout, job.load_timeout, limit,
                                on_cell=lambda cell: send(out_fd, CellStarted(cell["filename"], cell.get("index", 0))))
    send(out_fd, Loaded(tuple(n.to_dict() for n in notes), truncate(printed, limit)))
    student_files = {c["filename"] for c in cells}
    context = CheckContext(namespace, student_files, notes)
    references, codes = references or {}, codes or {}
    check_files = {getattr(getattr(fn, "__code__", None), "co_filename", "") for fn in functions.values()}

    def guards(function: str) -> ReferenceGuard | None:
        if job.allow_reference or function not in references:
            return None
        return ReferenceGuard(function, references[function], job.references[function], student_files,
                              check_files, codes=codes.get(function))

    order: list[str] = []
    for item in job.checks:
        if item.function not in order:
            order.append(item.function)
    for function in order:
        remaining = [c for c in job.checks if c.function == function]
        while remaining:
            remaining = remaining[_run_function(remaining, functions, context, out_fd, limit, guards, references):]


# ----------------------------------------------------------------------------- the job


def _references(job: Job) -> tuple[dict[str, Any], dict[str, set]]:
    """The lesson's reference objects and their code, resolved here, before any student code runs."""
    references: dict[str, Any] = {}
    for name, dotted in job.references.items():
        try:
            references[name] = import_object(dotted)
        except Exception:  # noqa: BLE001 - a reference that cannot be imported guards and replays nothing
            pass
    return references, {name: reference_codes(ref) for name, ref in references.items()}


def _run_submission(job: Job, functions: dict[str, Callable], references: dict[str, Any], codes: dict[str, set],
                    log: Any) -> tuple[JobResult, dict[str, Any]]:
    """Fork the submission's process and collect what it reports (how loading went, a report per check); also
    returns the recorded calls of each check it says passed."""
    transcripts: dict[str, Any] = {}
    reports: dict[str, CheckReport] = {}
    notes: tuple[dict, ...] = ()
    printed = ""
    names = {c.name for c in job.checks}
    pid, lines = fork_reporting(lambda fd: _submission_process(job, functions, fd, log.fileno(), references, codes))
    limit_s = run_limit(job)
    deadline = time.monotonic() + limit_s
    # Loading keeps its own limit in-process; code that blocks the alarm is killed shortly after it.
    load_deadline = min(deadline, time.monotonic() + job.load_timeout + 2 * GRACE)
    loaded, last_cell, last_index, timed_out, function_pid, current = False, "", 0, False, 0, None
    while True:
        try:
            line = lines.next(deadline if loaded else load_deadline)
        except TimeoutError:
            timed_out = True
            break
        if line is None:
            break
        event = job_event(line)
        if event is None:
            continue  # malformed, or not written by the grader's own code
        if isinstance(event, CellStarted):
            last_cell, last_index = event.filename, event.index
        elif isinstance(event, Start) and loaded and event.name in names:
            current = event.name
        elif isinstance(event, FunctionStarted):
            function_pid = event.pid
        elif isinstance(event, Loaded) and not loaded:
            loaded = True
            notes, printed = tuple(event.notes), truncate(event.printed, int(job.output_limit))
        elif isinstance(event, Result) and loaded and event.name in names and event.name not in reports:
            passed = event.status == PASSED
            reports[event.name] = CheckReport(event.status, event.output, event.seconds,
                                              tampered=event.tampered[:200] if passed and event.tampered else None,
                                              slip=None if passed else event.slip)
            if passed:
                transcripts[event.name] = event.transcript
            if names <= reports.keys():  # all reported: no waiting for the end of the pipe (above)
                break
    lines.close()
    if function_pid and parent_of(function_pid) == pid:  # only ever our own grandchild
        kill_group(function_pid)
    kill_group(pid)
    status = reap(pid)
    tail = log_tail(log.fileno())
    budget_spent = timed_out and bool(job.budget) and limit_s >= float(job.budget) - 1e-9 and (
        loaded or load_deadline >= deadline)
    if not loaded:
        where = f" in {last_cell}" if last_cell else ""
        what = (f"used up the submission's grading budget of {limit_s:g} s" if budget_spent and
                limit_s < job.load_timeout else f"did not finish loading within {min(limit_s, job.load_timeout):g} s"
                ) if timed_out else describe_exit(status)
        error = f"the submission's code ended the grading process while loading{where}: it {what}" + \
                (f"\nlast output:\n{tail[-500:]}" if tail else "")
        load = LoadOutcome(LoadStatus.TIMEOUT if timed_out else LoadStatus.ERROR, last_index or None, error)
        return JobResult(job.id, error, notes, printed, reports, load), transcripts
    if budget_spent:
        why = f"used up the submission's grading budget of {limit_s:g} s"
        if current is not None and current not in reports:
            reports[current] = CheckReport(TIMEOUT, f"stopped: the submission {why} (course.yml "
                                                    "grading.submission_budget) while this check ran")
    else:
        why = "ran out of time" if timed_out else f"{describe_exit(status)} unexpectedly"
    for item in job.checks:
        reports.setdefault(item.name, CheckReport(
            TIMEOUT if timed_out else ERROR,
            f"not run: the submission's grading process {why}" if not budget_spent else
            f"not run: the submission {why} (course.yml grading.submission_budget)"))
    return JobResult(job.id, None, notes, printed, reports), transcripts


def run_job(job: Job) -> JobResult:
    """Grade one submission: its code and checks run in forked processes of their own (in a scratch folder
    removed afterwards); a check passes only if that process says so and the grader's own re-run of the
    check from the recorded answers agrees (verdict.judge). A report per check, plus load notes or an error."""
    try:
        functions = collect_checks(import_check_file(job.check_file))
    except BaseException as exc:  # noqa: BLE001 - a broken check file is reported, not fatal to the server
        return JobResult(job.id, grader_fault=True, error=f"grader error: the check file {job.check_file} failed to import: "
                                 f"{describe_exception(exc)}")
    if "torch" in sys.modules:  # a check file may bring torch in itself (when it is not preloaded)
        warm_up()
    runnable = [c for c in job.checks if c.name in functions]
    missing = {item.name: CheckReport(ERROR, f"grader error: no check {item.name} in the check file")
               for item in job.checks if item.name not in functions}
    references, codes = _references(job)
    STATE.snapshot = Snapshot()
    STATE.token = secrets.token_hex(16)
    scratch = tempfile.mkdtemp(prefix="shortcutlab-scratch-")
    uid = student_uid()
    if uid is not None:
        os.chown(scratch, uid, uid)
    job = dataclasses.replace(job, checks=tuple(runnable), scratch=scratch)
    try:
        with tempfile.TemporaryFile() as log:
            result, transcripts = _run_submission(job, functions, references, codes, log)
            if uid is not None:
                kill_uid(uid)  # a daemon it started, whatever its process group or session
            judge_start = time.monotonic()
            # Forked from this server, never from a process that ran student code (judge.py).
            verdicts = verify(job, functions, references, transcripts, log) if result.error is None else {}
            judge_seconds = round(time.monotonic() - judge_start, 4)
    finally:
        STATE.token = STATE.snapshot = None
        if uid is not None:
            kill_uid(uid)
        remove_tree(scratch)
    reports = {**missing, **result.results}
    for name in transcripts:
        reports[name] = verdict.judge(reports[name], verdicts.get(name), int(job.output_limit))
    return dataclasses.replace(result, results=reports, judge_seconds=judge_seconds)
