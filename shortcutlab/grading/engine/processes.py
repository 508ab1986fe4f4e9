"""Processes and pipes of a grading server: JSON-line events read with a deadline, forking into process groups,
killing and reaping them, a process's last output, and removing a scratch folder whatever student code did to it.
Nothing here knows about checks, submissions (job.py, judge.py) or what an event holds (events.py)."""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable

from shortcutlab.grading.engine.environment import ENGINE_DIR
from shortcutlab.grading.engine.limits import GRACE, MAX_LINE


class Lines:
    """JSON lines read from a pipe with a deadline; a line longer than ``max_line`` bytes is dropped."""

    def __init__(self, fd: int, max_line: int = MAX_LINE) -> None:
        self.fd, self.buffer, self.closed, self.max_line = fd, bytearray(), False, max_line
        self.scanned, self.skipping = 0, False

    def next(self, deadline: float) -> dict | None:
        """The next event; None at end of file; TimeoutError once ``deadline`` (time.monotonic) passes."""
        while True:
            end = self.buffer.find(b"\n", self.scanned)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                self.scanned = 0
                if self.skipping:  # the tail of an over-long line
                    self.skipping = False
                    continue
                break
            self.scanned = len(self.buffer)
            if len(self.buffer) > self.max_line:
                self.buffer.clear()
                self.scanned, self.skipping = 0, True
                return {"event": "garbage"}
            if self.closed:
                if self.buffer.strip() and not self.skipping:
                    line = bytes(self.buffer)
                    self.buffer.clear()
                    break
                return None
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                self.closed = True
            self.buffer += chunk
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, an over-long integer
            return {"event": "garbage"}
        return event if isinstance(event, dict) else {"event": "garbage"}

    def close(self) -> None:
        os.close(self.fd)


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


def fork_reporting(body: Callable[[int], None], close_in_child: tuple[int, ...] = ()) -> tuple[int, Lines]:
    """Fork a process group whose child runs ``body(fd)`` (after closing ``close_in_child``) and ends there
    (``run_child``), writing its events to ``fd``; the parent gets the child's pid and the reader of that pipe."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = fork_group()
    if pid == 0:
        os.close(r)
        for fd in close_in_child:
            os.close(fd)
        run_child(lambda: body(w))
    os.close(w)
    return pid, Lines(r)


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


def crash_summary(tail: str) -> str:
    """The end of a process's output; of a crash dump (faulthandler), the error and the student's frames."""
    start = tail.rfind("Fatal Python error")
    if start < 0:
        return tail[-1500:]
    lines = tail[start:].splitlines()
    frames = [line for line in lines[1:] if line.strip().startswith('File "') and ENGINE_DIR not in line
              and "<frozen" not in line and "site-packages" not in line]
    return "\n".join([lines[0], *frames[:10]])


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies, so none outlives the grader."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def parent_of(pid: int) -> int | None:
    """The parent process id of ``pid`` (Linux /proc), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def remove_tree(path: str) -> None:
    """Delete a scratch folder whatever its content (student code may have made folders unreadable, or, in a
    process the kernel is killing along with its parent, still be writing for a moment)."""
    for attempt in range(3):
        for root, dirs, _files in os.walk(path, topdown=True, onerror=lambda exc: None):
            for name in dirs:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    try:
                        os.chmod(full, 0o700)
                    except OSError:
                        pass
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05 * (attempt + 1))
