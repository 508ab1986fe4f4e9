"""The grading server: ``python -m shortcutlab.grading.worker PRELOAD_JSON``.

It imports torch and the check files once, then for each job (one JSON line on stdin, one result line
on stdout) forks a process for the submission. That process runs the submission's cells, then forks one
process per graded function to run its checks, so a crash, hang or ``sys.exit`` in one function costs
that function's checks only. Time limits are kept by the parent of each process, never by the process
that runs student code; a process that dies without reporting a check fails that check, never passes it.
"""
from __future__ import annotations

import builtins
import faulthandler
import importlib
import json
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from shortcutlab.grading.execute import (ERROR, TIMEOUT, CheckContext, describe_exception, exec_cells, run_check,
                                         truncate)
from shortcutlab.grading.registry import collect_checks, import_check_file

GRACE = 3.0  # seconds past a check's own limit (enforced in-process) before its process is killed
START_SLACK = 30.0  # seconds a fresh process may take before it starts its first check
SUBMISSION_NAME = "__submission__"  # __name__ of a submission: its `if __name__ == "__main__":` block stays off


# ----------------------------------------------------------------------------- pipes


def send(fd: int, payload: dict) -> None:
    """Write one JSON line to ``fd`` (whole, even if the pipe takes it in pieces)."""
    data = (json.dumps(payload) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


class Lines:
    """JSON lines read from a pipe with a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer, self.closed = fd, b"", False

    def next(self, deadline: float) -> dict | None:
        """The next event; None at end of file; TimeoutError once ``deadline`` (time.monotonic) passes."""
        while b"\n" not in self.buffer:
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.closed = True
                if not self.buffer.strip():
                    return None
                chunk = b"\n"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return {"event": "garbage"}
        return event if isinstance(event, dict) else {"event": "garbage"}


def describe_exit(status: int) -> str:
    """A waitpid status in words."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        why = " (out of memory, or stopped by the grader)" if name == "SIGKILL" else ""
        return f"was killed by {name}{why}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def kill_group(pid: int) -> None:
    """SIGKILL a process group we created (a process and everything it started)."""
    if pid <= 1 or pid in (os.getpgrp(), os.getpid()):
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def reap(pid: int, timeout: float = GRACE) -> int:
    """The exit status of our child ``pid``, killing it (and its group) if it outlives ``timeout`` s."""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.005)
        kill_group(pid)
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def run_child(body: Callable[[], None]) -> None:
    """End a forked process: after ``body``, with os._exit (no atexit handlers or buffers of the parent run
    twice); a grader bug shows as a traceback in the log and a non-zero exit."""
    code = 0
    try:
        body()
    except BaseException:  # noqa: BLE001 - whatever happens, this process must end here
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        os._exit(code)


def fork_group() -> int:
    """os.fork, with the child leading a new process group (set on both sides, so no kill can miss it)."""
    pid = os.fork()
    try:
        os.setpgid(0 if pid == 0 else pid, 0 if pid == 0 else pid)
    except OSError:
        pass  # the child already exec'd or exited: nothing left to group
    return pid


def log_tail(fd: int, limit: int = 1500) -> str:
    """The end of what student code wrote straight to the process's stdout/stderr file."""
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, limit, max(size - limit, 0)).decode(errors="replace").strip()
    except OSError:
        return ""


# ----------------------------------------------------------------------------- inside the forked processes


def _become_sandbox(log_fd: int, memory_mb: int | None) -> None:
    """First steps of a forked process that will run student code: no access to the server's pipes,
    capped memory, a traceback on a hard crash."""
    if _PROTOCOL_FD is not None:
        os.close(_PROTOCOL_FD)
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


def _function_process(checks: list[dict], functions: dict[str, Callable], context: CheckContext,
                      out_fd: int, limit: int) -> None:
    """Run one function's checks in order, reporting each on ``out_fd``."""
    for item in checks:
        send(out_fd, {"event": "start", "name": item["name"]})
        outcome = run_check(functions[item["name"]], context, item["seed"], item["timeout"], item["function"], limit)
        send(out_fd, {"event": "result", "name": item["name"], "status": outcome.status,
                      "output": outcome.output(limit), "seconds": round(outcome.seconds, 3)})


def _run_function(checks: list[dict], functions: dict[str, Callable], context: CheckContext, out_fd: int,
                  limit: int) -> int:
    """Fork a process for ``checks`` (one function's), relay its results, kill it if a check overruns.
    Returns how many of ``checks`` got a result (the rest are retried in a fresh process)."""
    sys.stdout.flush()
    r, w = os.pipe()
    pid = fork_group()
    if pid == 0:
        os.close(r)
        os.close(out_fd)
        run_child(lambda: _function_process(checks, functions, context, w, limit))
    os.close(w)
    # The server kills this process group too if the whole submission runs out of time.
    send(out_fd, {"event": "function", "pid": pid})
    lines = Lines(r)
    done, current, deadline = 0, None, time.monotonic() + START_SLACK
    by_name = {c["name"]: c for c in checks}
    problem = ""
    while True:
        try:
            event = lines.next(deadline)
        except TimeoutError:
            kill_group(pid)
            if current is not None:
                item = by_name[current]
                send(out_fd, {"event": "result", "name": current, "status": TIMEOUT, "seconds": item["timeout"],
                              "output": f"{item['function']} did not finish within {item['timeout']:g} s and was "
                                        "stopped: look for an endless loop or far more work than needed"})
                done += 1
            else:
                problem = "the check's process stopped responding"
            break
        if event is None:
            status = reap(pid)
            if current is not None:
                tail = log_tail(1)
                send(out_fd, {"event": "result", "name": current, "status": ERROR, "seconds": 0.0,
                              "output": f"the process running this check {describe_exit(status)} before it "
                                        f"reported a result (a crash, os._exit or similar in "
                                        f"{by_name[current]['function']})" + (f"\nlast output:\n{tail}" if tail
                                                                               else "")})
                done += 1
            elif done < len(checks):
                problem = f"the check's process {describe_exit(status)} before starting"
            break
        if event.get("event") == "start" and event.get("name") in by_name and current is None:
            current = event["name"]
            deadline = time.monotonic() + by_name[current]["timeout"] + GRACE
        elif event.get("event") == "result" and event.get("name") == current:
            send(out_fd, event)
            done, current, deadline = done + 1, None, time.monotonic() + START_SLACK
    os.close(r)
    kill_group(pid)
    reap(pid)
    if done == 0:
        # No progress: report the first check so the retry loop always moves on.
        send(out_fd, {"event": "result", "name": checks[0]["name"], "status": ERROR, "seconds": 0.0,
                      "output": f"grader error: {problem or 'no result'}"})
        done = 1
    return done


def _submission_process(job: dict, functions: dict[str, Callable], out_fd: int, log_fd: int) -> None:
    """Run the submission's cells, then each graded function's checks in a process of its own."""
    _become_sandbox(log_fd, job.get("memory_mb"))
    limit = int(job["output_limit"])
    cells = job["cells"]
    namespace: dict[str, Any] = {"__name__": SUBMISSION_NAME, "__builtins__": builtins}
    notes, printed = exec_cells(cells, namespace, job["cell_timeout"], job["load_timeout"], limit,
                                on_cell=lambda cell: send(out_fd, {"event": "cell", "filename": cell["filename"]}))
    send(out_fd, {"event": "loaded", "notes": [n.to_dict() for n in notes], "printed": truncate(printed, limit)})
    context = CheckContext(namespace, {c["filename"] for c in cells}, notes)
    order: list[str] = []
    for item in job["checks"]:
        if item["function"] not in order:
            order.append(item["function"])
    for function in order:
        remaining = [c for c in job["checks"] if c["function"] == function]
        while remaining:
            remaining = remaining[_run_function(remaining, functions, context, out_fd, limit):]


# ----------------------------------------------------------------------------- the server


def submission_budget(job: dict) -> float:
    """Seconds a submission's process may take in all: loading, then every check with its grace and a fork."""
    return job["load_timeout"] + sum(c["timeout"] + GRACE + 2.0 for c in job["checks"]) + START_SLACK


def run_job(job: dict) -> dict:
    """Grade one submission in a forked process; results by check name, plus load notes or an error."""
    result: dict[str, Any] = {"id": job.get("id"), "error": None, "notes": [], "printed": "", "results": {}}
    try:
        functions = collect_checks(import_check_file(job["check_file"]))
    except BaseException as exc:  # noqa: BLE001 - a broken check file is reported, not fatal to the server
        result["error"] = f"grader error: the check file {job['check_file']} failed to import: " \
                          f"{describe_exception(exc)}"
        return result
    if "torch" in sys.modules:  # a check file may bring torch in itself (when it is not preloaded)
        _warm_up()
    runnable = [c for c in job["checks"] if c["name"] in functions]
    for item in job["checks"]:
        if item["name"] not in functions:
            result["results"][item["name"]] = {"status": ERROR, "seconds": 0.0,
                                               "output": f"grader error: no check {item['name']} in the check file"}
    job = {**job, "checks": runnable}
    with tempfile.TemporaryFile() as log:
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = fork_group()
        if pid == 0:
            os.close(r)
            run_child(lambda: _submission_process(job, functions, w, log.fileno()))
        os.close(w)
        lines = Lines(r)
        deadline = time.monotonic() + submission_budget(job)
        loaded, last_cell, timed_out, function_pid = False, "", False, 0
        while True:
            try:
                event = lines.next(deadline)
            except TimeoutError:
                timed_out = True
                break
            if event is None:
                break
            kind = event.get("event")
            if kind == "cell":
                last_cell = str(event.get("filename", ""))
            elif kind == "function" and isinstance(event.get("pid"), int):
                function_pid = event["pid"]
            elif kind == "loaded":
                loaded = True
                result["notes"] = event.get("notes", [])
                result["printed"] = event.get("printed", "")
            elif kind == "result" and loaded and event.get("name") in {c["name"] for c in runnable}:
                result["results"][event["name"]] = {k: event.get(k) for k in ("status", "output", "seconds")}
        os.close(r)
        kill_group(pid)
        kill_group(function_pid)
        status = reap(pid)
        tail = log_tail(log.fileno())
    if not loaded:
        where = f" in {last_cell}" if last_cell else ""
        what = f"did not finish loading within {job['load_timeout']:g} s" if timed_out else describe_exit(status)
        result["error"] = f"the submission's code ended the grading process while loading{where}: it {what}" + \
                          (f"\nlast output:\n{tail[-500:]}" if tail else "")
    else:
        why = "ran out of time" if timed_out else f"{describe_exit(status)} unexpectedly"
        for item in runnable:
            result["results"].setdefault(item["name"], {
                "status": TIMEOUT if timed_out else ERROR, "seconds": 0.0,
                "output": f"not run: the submission's grading process {why}"})
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
        _warm_up()
    return failed


_WARM = False


def _warm_up() -> None:
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
        job = json.loads(line)
        protocol.write(json.dumps(run_job(job)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else []))
