"""Running student code and checks in the current process: time limits, captured output, outcomes.

Used by the grading worker (inside a forked process per submission) and by ``shortcutlab.check`` in a
notebook. Nothing here isolates processes; see ``job.py`` for that.
"""
from __future__ import annotations

import ast
import inspect
import io
import linecache
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext as _nothing
from dataclasses import dataclass, field
from typing import Any

from shortcutlab.grading.engine.environment import ENGINE_DIR
from shortcutlab.grading.registry import NotReplayable
from shortcutlab.grading.status import Status

PASSED, FAILED, ERROR, TIMEOUT, UNVERIFIED = (Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT,
                                              Status.UNVERIFIED)  # short names used throughout the engine


class CheckTimeout(BaseException):
    """Code ran past its time limit (BaseException, so student ``except Exception`` does not swallow it)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise CheckTimeout in this thread after ``seconds`` (SIGALRM; a no-op off the main thread)."""
    usable = seconds and seconds > 0 and hasattr(signal, "setitimer") and \
        threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class BoundedText(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.kept, self.dropped = limit, [], 0, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = max(self.limit - self.kept, 0)
        self.parts.append(text[:room])
        self.kept += min(len(text), room)
        self.dropped += max(len(text) - room, 0)
        return len(text)

    def getvalue(self) -> str:
        value = "".join(self.parts)
        return value + (f"\n... ({self.dropped} more characters not shown)" if self.dropped else "")


@contextmanager
def captured_output(limit: int) -> Iterator[BoundedText]:
    """Send print() and sys.stderr writes of the block into a bounded buffer."""
    sink = BoundedText(limit)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    try:
        yield sink
    finally:
        sys.stdout, sys.stderr = saved


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters not shown)"


# ----------------------------------------------------------------------------- describing errors


def _student_frames(tb: Any, student_files: set[str]) -> list[traceback.FrameSummary]:
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames if f.filename in student_files]
    if mine:
        return mine
    # Not raised in student code (e.g. by a check helper): show the innermost frames outside this package.
    return [f for f in frames if not f.filename.startswith(ENGINE_DIR)][-2:]


def describe_exception(exc: BaseException, student_files: set[str] = frozenset()) -> str:
    """``Type: message`` and the student-code lines it went through (innermost last)."""
    lines = [f"{type(exc).__name__}: {exc}".rstrip(": ") if str(exc) else type(exc).__name__]
    for frame in _student_frames(exc.__traceback__, set(student_files)):
        where = frame.filename if frame.filename.startswith("<") else os.path.basename(frame.filename)
        code = f": {frame.line.strip()}" if frame.line else ""
        lines.append(f"  in {where}, line {frame.lineno}, in {frame.name}{code}")
    return "\n".join(lines)


def _assertion_message(exc: AssertionError) -> str:
    """The assertion's message, or for a bare ``assert`` the failing line of the check."""
    if str(exc):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    line = frames[-1].line if frames else ""
    return f"assertion failed: {line.strip()}" if line else "assertion failed"


# ----------------------------------------------------------------------------- running student code


@dataclass
class CellNote:
    """A cell (or a .py statement) that raised while the submission was being loaded."""

    filename: str
    name: str
    kind: str
    error: str
    status: str = ERROR  # ERROR (it raised) or TIMEOUT (stopped by a time limit, or not run for want of time)
    index: int = 0  # the cell's number in the notebook (1-based; 0 for a .py statement)

    def to_dict(self) -> dict:
        return {"filename": self.filename, "name": self.name, "kind": self.kind, "error": self.error,
                "status": self.status, "index": self.index}


def register_source(filename: str, source: str) -> None:
    """Let tracebacks show lines of code that has no file on disk (notebook cells)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)


def _units(cell: dict) -> list[Any]:
    """Code objects to run for a cell: the whole cell, or each top-level statement of a .py file."""
    source, filename = cell["source"], cell["filename"]
    register_source(filename, source)
    if cell["kind"] != "file":
        return [compile(source, filename, "exec", dont_inherit=True)]
    tree = ast.parse(source, filename)
    return [compile(ast.Module(body=[node], type_ignores=[]), filename, "exec", dont_inherit=True)
            for node in tree.body]


def exec_cells(cells: Sequence[dict], namespace: dict, cell_timeout: float | None, budget: float | None,
               limit: int, on_cell: Callable[[dict], None] | None = None) -> tuple[list[CellNote], str]:
    """Run cells into ``namespace``, each within ``cell_timeout`` s and all within ``budget`` s; an error in one
    cell is noted and the next cell still runs. Returns (notes, printed output)."""
    notes: list[CellNote] = []
    start = time.monotonic()
    student_files = {c["filename"] for c in cells}
    with captured_output(limit) as printed:
        for cell in cells:
            if on_cell is not None:
                on_cell(cell)

            def note(error: str, status: str = ERROR) -> None:
                notes.append(CellNote(cell["filename"], cell["name"], cell["kind"], error, status,
                                      int(cell.get("index") or 0)))

            left = None if budget is None else budget - (time.monotonic() - start)
            if left is not None and left <= 0:
                note(f"not run: loading the submission used up its {budget:g} s", TIMEOUT)
                continue
            limit_s = min(t for t in (cell_timeout, left) if t is not None) if (cell_timeout or left) else None
            try:
                units = _units(cell)
                with time_limit(limit_s):
                    for code in units:
                        exec(code, namespace)  # noqa: S102 - running the submission is the point
            except CheckTimeout:
                note(f"did not finish within {limit_s:g} s and was stopped", TIMEOUT)
            except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included
                note(describe_exception(exc, student_files))
    return notes, printed.getvalue()


# ----------------------------------------------------------------------------- running checks


@dataclass
class Outcome:
    status: str
    message: str = ""
    printed: str = ""
    seconds: float = 0.0
    slip: str | None = None  # the mistake a failing check diagnosed (CheckFailure.slip), if it named one

    def output(self, limit: int) -> str:
        """The text shown for the check: its message, then what the code printed."""
        text = self.message
        if self.printed.strip() and self.status != PASSED:
            text += ("\n" if text else "") + "--- printed output ---\n" + self.printed
        return truncate(text, limit)


@dataclass
class CheckContext:
    """What a check needs from the submission: its namespace, files (for tracebacks) and load notes."""

    namespace: dict
    student_files: set[str] = field(default_factory=set)
    notes: list[CellNote] = field(default_factory=list)


def missing_message(name: str, context: CheckContext) -> str:
    """Why ``name`` is not in the submission, and what to do."""
    text = (f"`{name}` is not defined in your submission. Keep the name {name!r} exactly, and make sure the cell "
            f"that defines it runs without errors.")
    own = [n for n in context.notes if n.name == name]
    if own:
        text += f"\nIts cell ({own[0].filename}) raised:\n{own[0].error}"
    setup = [n for n in context.notes if n.kind == "setup"]
    if setup:
        text += f"\nA setup cell ({setup[0].filename}) raised:\n{setup[0].error}"
    return text


def reset_global_state(seed: int) -> None:
    """Same starting point for every check: seeded RNGs, gradients on, float32 default."""
    import random

    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % 2**32)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.manual_seed(seed)
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)


def _memory_note(exc: BaseException) -> str:
    """A hint when an exception is the memory cap at work."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "Cannot allocate memory" in text:
        return "\n(the grader caps the memory of each submission; allocate less)"
    return ""


def _no_tensor_subclass_overrides():
    """While a check runs, tensor subclasses' ``__torch_function__`` is not called: a student's tensor subclass
    cannot answer the check's comparisons (``isclose`` all True) for it; plain tensors are unaffected."""
    torch = sys.modules.get("torch")
    return torch._C.DisableTorchFunctionSubclass() if torch is not None else _nothing()


def run_check(fn: Callable, context: CheckContext, seed: int, timeout: float | None, function: str,
              limit: int, *, wrap: Callable[[str, Any], Any] | None = None, guard: Any = None) -> Outcome:
    """Call one check with the student's objects (by parameter name) and ``seed``; classify what happens.

    ``wrap(name, obj)`` may replace each student object handed to the check (to record its calls);
    ``guard`` (a ReferenceGuard) fails the check if the graded function is, or calls, its library reference.
    """
    kwargs: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.name == "seed":
            kwargs[param.name] = seed
        elif param.name in context.namespace:
            kwargs[param.name] = context.namespace[param.name]
        elif param.default is inspect.Parameter.empty:
            return Outcome(ERROR, missing_message(param.name, context))
    if guard is not None and function in kwargs and guard.check_object(kwargs[function]):
        return Outcome(FAILED, guard.violation)
    if wrap is not None:
        kwargs = {name: value if name == "seed" else wrap(name, value) for name, value in kwargs.items()}
    reset_global_state(seed)
    start = time.monotonic()
    with captured_output(limit) as printed:
        try:
            with time_limit(timeout), (guard if guard is not None else _nothing()), _no_tensor_subclass_overrides():
                fn(**kwargs)
            outcome = Outcome(PASSED)
        except NotReplayable as exc:
            outcome = Outcome(UNVERIFIED, f"not replayable: {exc}")
        except CheckTimeout:
            outcome = Outcome(TIMEOUT, f"{function} did not finish within {timeout:g} s: look for an endless loop "
                                       "or far more work than needed")
        except NotImplementedError as exc:
            detail = f" ({exc})" if str(exc) else ""
            outcome = Outcome(FAILED, f"{function} is not implemented yet: it raises NotImplementedError{detail}")
        except AssertionError as exc:
            slip = getattr(exc, "slip", None)
            outcome = Outcome(FAILED, _assertion_message(exc), slip=slip if isinstance(slip, str) else None)
        except BaseException as exc:  # noqa: BLE001 - a student's SystemExit must not end the grading
            outcome = Outcome(ERROR, f"an error was raised while checking {function}:\n"
                                     f"{describe_exception(exc, context.student_files)}{_memory_note(exc)}")
    if guard is not None and guard.violation:
        outcome = Outcome(FAILED, guard.violation)
    outcome.printed = printed.getvalue()
    outcome.seconds = time.monotonic() - start
    return outcome
