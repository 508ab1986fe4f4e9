"""The grading server: ``python -m shortcutlab.grading.worker PRELOAD_JSON``.

It imports torch and the check files once, then for each job (one JSON line on stdin, one result line
on stdout) forks a process for the submission, in a scratch folder of its own (its working, temp and home
folder, removed afterwards), with capped memory and file sizes. That process runs the submission's cells,
then forks one process per graded function to run its checks, so a crash, hang or ``sys.exit`` in one
function costs that function's checks only. Time limits are kept by the parent of each process, never by
the process that runs student code; a process that dies without reporting a check fails that check.

What those processes report is never trusted to pass a check on its own: each passed check comes with a
record of the calls it made to student functions, and a process forked from this server (where no student
code ever runs) re-runs the check from those recorded answers, computing the reference values and the
verdict itself (replay.py). Reports carry a per-job token, so blindly forged lines are dropped. See
the README's "Threat model" for what this defends and what it does not.
"""
from __future__ import annotations

import builtins
import dataclasses
import faulthandler
import importlib
import inspect
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from shortcutlab.course import import_object
from shortcutlab.grading.execute import (ERROR, PASSED, TIMEOUT, UNVERIFIED, CheckContext,
                                         Outcome, describe_exception, exec_cells, run_check, truncate)
from shortcutlab.grading import probes
from shortcutlab.grading.guard import ReferenceGuard, Snapshot, reference_codes
from shortcutlab.grading.processes import (Lines, crash_summary, describe_exit, die_with_parent, fork_group,
                                           kill_group, log_tail, parent_of, reap, remove_tree, run_child)
from shortcutlab.grading.protocol import CheckJob, Job, JobResult
from shortcutlab.grading.limits import FILE_LIMIT, GRACE, PROCESS_LIMIT, START_SLACK
from shortcutlab.grading.registry import collect_checks, import_check_file
from shortcutlab.grading.replay import Recorder, Transcript
from shortcutlab.grading.sandbox import drop_privileges, kill_uid, student_uid
from shortcutlab.grading.verdict import judge

SUBMISSION_NAME = "__submission__"  # __name__ of a submission: its `if __name__ == "__main__":` block stays off


# ----------------------------------------------------------------------------- pipes


_TOKEN: str | None = None  # this job's secret, stamped on every event its processes send
_SNAPSHOT: Snapshot | None = None  # what the grader relies on, as it was before the job's student code ran


def send(fd: int, payload: dict) -> None:
    """Write one JSON line to ``fd`` (whole, even if the pipe takes it in pieces), stamped with the job's token."""
    if _TOKEN is not None and "token" not in payload:
        payload = {**payload, "token": _TOKEN}
    data = (json.dumps(payload) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


# ----------------------------------------------------------------------------- inside the forked processes


def _child_setup(log_fd: int, memory_mb: int | None) -> None:
    """First steps of every forked process: dies with its parent, no access to the server's pipes, output
    to the job's log, capped memory, a traceback on a hard crash."""
    die_with_parent()
    if _PROTOCOL_FD is not None:
        try:
            os.close(_PROTOCOL_FD)
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


def _become_sandbox(log_fd: int, memory_mb: int | None, scratch: str | None = None) -> None:
    """First steps of a forked process that will run student code: in the OS sandbox, becoming its unprivileged
    user (first: a change of user clears the parent-death signal); those of every child; a cap on the size of any
    file it writes (and in the sandbox on its processes); its own scratch folder as working, temp and home folder."""
    uid = student_uid()
    if uid is not None:
        drop_privileges(uid)
    _child_setup(log_fd, memory_mb)
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
        send(out_fd, {"event": "start", "name": item.name})
        recorder = Recorder()
        with probes.recording(recorder, classes):
            outcome = run_check(functions[item.name], context, item.seed, item.timeout, item.function,
                                limit, wrap=_record_wrapper(recorder, references or {}), guard=guards(item.function))
        event = {"event": "result", "name": item.name, "status": outcome.status,
                 "output": outcome.output(limit), "seconds": round(outcome.seconds, 3)}
        if outcome.status == PASSED:
            event["transcript"] = recorder.transcript()
            event["tampered"] = _SNAPSHOT.changed() if _SNAPSHOT is not None else None
        send(out_fd, event)
        if outcome.status == TIMEOUT:
            return  # the parent marks the function's remaining checks as not run


def skipped_after_timeout(item: CheckJob) -> dict:
    """The result of a check not run because an earlier check of the same function timed out."""
    return {"event": "result", "name": item.name, "status": TIMEOUT, "seconds": 0.0,
            "output": f"not run: an earlier check of {item.function} timed out (it did not finish within "
                      f"{item.timeout:g} s); a function that loops once is not run again"}


def _run_function(checks: list[CheckJob], functions: dict[str, Callable], context: CheckContext, out_fd: int,
                  limit: int, guards: Callable[[str], ReferenceGuard | None] = lambda f: None,
                  references: dict[str, Any] | None = None) -> int:
    """Fork a process for ``checks`` (one function's), relay its results, kill it if a check overruns.
    Returns how many of ``checks`` got a result (the rest are retried in a fresh process). Once a check times
    out, the function's remaining checks are reported as timed out without running: a function that loops
    costs one check's time limit, not one per check."""
    sys.stdout.flush()
    r, w = os.pipe()
    pid = fork_group()
    if pid == 0:
        os.close(r)
        os.close(out_fd)
        run_child(lambda: _function_process(checks, functions, context, w, limit, guards, references))
    os.close(w)
    # The server kills this process group too if the whole submission runs out of time.
    send(out_fd, {"event": "function", "pid": pid})
    lines = Lines(r)
    done, current, deadline = 0, None, time.monotonic() + START_SLACK
    by_name = {c.name: c for c in checks}
    problem, timed_out = "", False
    while True:
        try:
            event = lines.next(deadline)
        except TimeoutError:
            kill_group(pid)
            if current is not None:
                item = by_name[current]
                send(out_fd, {"event": "result", "name": current, "status": TIMEOUT, "seconds": item.timeout,
                              "output": f"{item.function} did not finish within {item.timeout:g} s and was "
                                        "stopped: look for an endless loop or far more work than needed"})
                done += 1
                timed_out = True
            else:
                problem = "the check's process stopped responding"
            break
        if event is None:
            status = reap(pid)
            if current is not None:
                tail = crash_summary(log_tail(1, 8000))
                send(out_fd, {"event": "result", "name": current, "status": ERROR, "seconds": 0.0,
                              "output": f"the process running this check {describe_exit(status)} before it "
                                        f"reported a result (a crash, os._exit or similar in "
                                        f"{by_name[current].function})" + (f"\nlast output:\n{tail}" if tail
                                                                               else "")})
                done += 1
            elif done < len(checks):
                problem = f"the check's process {describe_exit(status)} before starting"
            break
        if event.get("event") == "start" and event.get("name") in by_name and current is None:
            current = event["name"]
            deadline = time.monotonic() + by_name[current].timeout + GRACE
            send(out_fd, {"event": "start", "name": current})
        elif event.get("event") == "result" and event.get("name") == current:
            send(out_fd, event)
            done, current, deadline = done + 1, None, time.monotonic() + START_SLACK
            if event.get("status") == TIMEOUT:
                timed_out = True
                break
    os.close(r)
    kill_group(pid)
    reap(pid)
    if timed_out:
        for item in checks[done:]:
            send(out_fd, skipped_after_timeout(item))
        return len(checks)
    if done == 0:
        # No progress: report the first check so the retry loop always moves on.
        send(out_fd, {"event": "result", "name": checks[0].name, "status": ERROR, "seconds": 0.0,
                      "output": f"grader error: {problem or 'no result'}"})
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
                                on_cell=lambda cell: send(out_fd, {"event": "cell", "filename": cell["filename"],
                                                                   "index": cell.get("index", 0)}))
    send(out_fd, {"event": "loaded", "notes": [n.to_dict() for n in notes], "printed": truncate(printed, limit)})
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


def _trusted_process(checks: list[CheckJob], functions: dict[str, Callable], references: dict[str, Any],
                     transcripts: dict[str, Any], out_fd: int, log_fd: int, job: Job) -> None:
    """Re-run passed checks from their recorded answers, in a process forked from the server (no student
    code ever ran here), and report each verdict: ``unverified`` for a check that cannot be replayed. A student
    class is handed over as a token that only probes take (probes.py)."""
    _child_setup(log_fd, job.memory_mb)
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
        send(out_fd, {"event": "verified", "name": item.name, "status": outcome.status,
                      "output": outcome.output(limit), "observed": outcome.status != UNVERIFIED and observed})


# ----------------------------------------------------------------------------- the server


def _checks_time(job: Job) -> float:
    """Seconds to run every check of ``job`` once, each with its grace and a fork, after a process start."""
    return sum(c.timeout + GRACE + 1.0 for c in job.checks) + START_SLACK


def run_limit(job: Job) -> float:
    """Seconds the submission's own processes may take, loading and checks: its ``budget`` (course.yml
    ``grading.submission_budget``) if the job has one, and never more than loading plus every check with its
    grace and a fork."""
    most = job.load_timeout + _checks_time(job)
    budget = job.budget
    return min(float(budget), most) if budget else most


def submission_budget(job: Job) -> float:
    """Seconds a submission may take in all: its run limit, then the grader's own re-run of the checks that
    passed."""
    return run_limit(job) + _checks_time(job)


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
                    log: Any, result: dict) -> dict[str, Any]:
    """Fork the submission's process and collect what it reports into ``result``; returns the recorded calls
    of each check it says passed."""
    transcripts: dict[str, Any] = {}
    names = {c.name for c in job.checks}
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = fork_group()
    if pid == 0:
        os.close(r)
        run_child(lambda: _submission_process(job, functions, w, log.fileno(), references, codes))
    os.close(w)
    lines = Lines(r)
    limit_s = run_limit(job)
    deadline = time.monotonic() + limit_s
    # Loading keeps its own limit in-process; code that blocks the alarm is killed shortly after it.
    load_deadline = min(deadline, time.monotonic() + job.load_timeout + 2 * GRACE)
    loaded, last_cell, last_index, timed_out, function_pid, current = False, "", 0, False, 0, None
    while True:
        try:
            event = lines.next(deadline if loaded else load_deadline)
        except TimeoutError:
            timed_out = True
            break
        if event is None:
            break
        if event.get("token") != _TOKEN:
            continue  # not written by the grader's own code
        kind = event.get("event")
        if kind == "cell":
            last_cell = str(event.get("filename", ""))
            last_index = event.get("index") if isinstance(event.get("index"), int) else 0
        elif kind == "start" and loaded and event.get("name") in names:
            current = event["name"]
        elif kind == "function" and isinstance(event.get("pid"), int):
            function_pid = event["pid"]
        elif kind == "loaded" and not loaded:
            loaded = True
            result["notes"] = event.get("notes", []) if isinstance(event.get("notes"), list) else []
            result["printed"] = truncate(str(event.get("printed", "")), int(job.output_limit))
        elif kind == "result" and loaded and event.get("name") in names and event["name"] not in result["results"]:
            result["results"][event["name"]] = {k: event.get(k) for k in ("status", "output", "seconds")}
            if event.get("status") == PASSED:
                transcripts[event["name"]] = event.get("transcript")
                if event.get("tampered"):
                    result["results"][event["name"]]["tampered"] = str(event["tampered"])[:200]
    os.close(r)
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
        result["error"] = f"the submission's code ended the grading process while loading{where}: it {what}" + \
                          (f"\nlast output:\n{tail[-500:]}" if tail else "")
        result["load"] = {"status": TIMEOUT if timed_out else ERROR, "cell": last_index or None,
                          "message": result["error"]}
    else:
        if budget_spent:
            why = f"used up the submission's grading budget of {limit_s:g} s"
            if current is not None and current not in result["results"]:
                result["results"][current] = {"status": TIMEOUT, "seconds": 0.0,
                                              "output": f"stopped: the submission {why} (course.yml "
                                                        "grading.submission_budget) while this check ran"}
        else:
            why = "ran out of time" if timed_out else f"{describe_exit(status)} unexpectedly"
        for item in job.checks:
            result["results"].setdefault(item.name, {
                "status": TIMEOUT if timed_out else ERROR, "seconds": 0.0,
                "output": f"not run: the submission's grading process {why}" if not budget_spent else
                          f"not run: the submission {why} (course.yml grading.submission_budget)"})
    return transcripts


def _verify(job: Job, functions: dict[str, Callable], references: dict[str, Any], transcripts: dict[str, Any],
            log: Any) -> dict[str, dict]:
    """Re-run the checks the submission's process says passed, in a process forked from this server (where no
    student code ever ran), from the recorded answers; its verdict by check name."""
    todo = [c for c in job.checks if c.name in transcripts]
    if not todo:
        return {}
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = fork_group()
    if pid == 0:
        os.close(r)
        run_child(lambda: _trusted_process(todo, functions, references, transcripts, w, log.fileno(), job))
    os.close(w)
    lines = Lines(r)
    names = {c.name for c in todo}
    deadline = time.monotonic() + sum(c.timeout + GRACE for c in todo) + START_SLACK
    verdicts: dict[str, dict] = {}
    while True:
        try:
            event = lines.next(deadline)
        except TimeoutError:
            break
        if event is None:
            break
        if event.get("token") == _TOKEN and event.get("event") == "verified" and event.get("name") in names:
            verdicts[event["name"]] = {"status": event.get("status"), "output": event.get("output")}
    os.close(r)
    kill_group(pid)
    reap(pid)
    return verdicts


def run_job(job: Job) -> dict:
    """Grade one submission: its code and checks run in forked processes of their own (in a scratch folder
    removed afterwards); a check passes only if that process says so and the grader's own re-run of the
    check from the recorded answers agrees. Results by check name, plus load notes or an error."""
    global _TOKEN, _SNAPSHOT
    result: dict[str, Any] = {"id": job.id, "error": None, "notes": [], "printed": "", "results": {}}
    try:
        functions = collect_checks(import_check_file(job.check_file))
    except BaseException as exc:  # noqa: BLE001 - a broken check file is reported, not fatal to the server
        result["error"] = f"grader error: the check file {job.check_file} failed to import: " \
                          f"{describe_exception(exc)}"
        return result
    if "torch" in sys.modules:  # a check file may bring torch in itself (when it is not preloaded)
        warm_up()
    runnable = [c for c in job.checks if c.name in functions]
    for item in job.checks:
        if item.name not in functions:
            result["results"][item.name] = {"status": ERROR, "seconds": 0.0,
                                               "output": f"grader error: no check {item.name} in the check file"}
    references, codes = _references(job)
    _SNAPSHOT = Snapshot()
    _TOKEN = secrets.token_hex(16)
    scratch = tempfile.mkdtemp(prefix="shortcutlab-scratch-")
    uid = student_uid()
    if uid is not None:
        os.chown(scratch, uid, uid)
    job = dataclasses.replace(job, checks=tuple(runnable), scratch=scratch)
    try:
        with tempfile.TemporaryFile() as log:
            transcripts = _run_submission(job, functions, references, codes, log, result)
            if uid is not None:
                kill_uid(uid)  # a daemon it started, whatever its process group or session
            judge_start = time.monotonic()
            verdicts = _verify(job, functions, references, transcripts, log) if result["error"] is None else {}
            result["judge_seconds"] = round(time.monotonic() - judge_start, 4)
    finally:
        _TOKEN = _SNAPSHOT = None
        if uid is not None:
            kill_uid(uid)
        remove_tree(scratch)
    for name in transcripts:
        judge(result["results"][name], verdicts.get(name), int(job.output_limit))
    return result


def preload(modules: list[str]) -> list[str]:
    """Import what every submission needs once, before forking; returns the modules that failed."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional module (e.g. matplotlib) may be absent
            failed.append(name)
    if "torch" in sys.modules:
        warm_up()
    return failed


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


_PROTOCOL_FD: int | None = None  # the server's result pipe, closed in every forked process


def serve(modules: list[str]) -> int:
    """Answer jobs from stdin until it closes."""
    global _PROTOCOL_FD
    _PROTOCOL_FD = os.dup(1)
    protocol = os.fdopen(_PROTOCOL_FD, "w", buffering=1)
    # Anything else printed here (a noisy import, a warning) goes to stderr, never into the protocol.
    os.dup2(2, 1)
    failed = preload(modules)
    protocol.write(json.dumps({"ready": True, "failed_preload": failed}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        protocol.write(JobResult.from_dict(run_job(Job.from_dict(json.loads(line)))).to_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else []))
