"""Grading many submissions: plan each one's checks, send it to a grading server, score what comes back.

This side never imports torch or runs student code. Each of ``jobs`` servers (worker.py) imports torch
once and forks a fresh process per submission; a server that dies or hangs costs the submission it was
grading, and the next submission gets a new server.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from shortcutlab.course import Course, CourseError, load_course
from shortcutlab.grading.engine import sandbox, verdict
from shortcutlab.grading.engine.execute import TIMEOUT, truncate
from shortcutlab.grading.engine.environment import PACKAGE_ROOT, server_env
from shortcutlab.grading.engine.limits import SERVER_START_TIMEOUT, START_SLACK, default_budget, submission_budget
from shortcutlab.grading.engine.timeouts import apply_derived_timeouts
from shortcutlab.grading.engine.protocol import CheckJob, Job, JobResult
from shortcutlab.grading.registry import PlannedCheck, check_seed, plan_checks
from shortcutlab.grading.results import GradeReport, LoadOutcome, SubmissionResult
from shortcutlab.grading.status import LoadStatus
from shortcutlab.grading.engine.submission import Submission, SubmissionError, expand_paths, infer_lesson, load_submission
from shortcutlab.grading.engine.processes import Lines, log_tail, remove_tree



NO_SANDBOX = "grading without an OS sandbox"  # how the warning given once per run without bubblewrap starts


class GradingError(CourseError):
    """Grading cannot start (no submissions given, a grading server that cannot start)."""


class Server:
    """One grading server process, grading one job at a time; in the OS sandbox if ``mode`` is BUBBLEWRAP, with
    ``check_files`` (the course's, by path) bound read-only inside."""

    def __init__(self, preload: list[str], mode: str = sandbox.NONE, check_files: list[str] = (),
                 answer_modules: list[str] = ()) -> None:
        self.preload = preload
        self.mode = mode
        # In the sandbox, the files of these modules are readable by the server only (sandbox.answer_files).
        self.answer_files = sandbox.answer_files(PACKAGE_ROOT, answer_modules) if mode == sandbox.BUBBLEWRAP else []
        # A check file's path inside the sandbox, by its path here.
        self.check_files = {path: f"{sandbox.CHECKS_DIR}/{hashlib.sha256(path.encode()).hexdigest()[:12]}/"
                                  f"{Path(path).name}" for path in check_files} if mode == sandbox.BUBBLEWRAP else {}
        self.process: subprocess.Popen | None = None
        self.lines: Lines | None = None
        self.started: bool | None = None  # False once a start failed
        self.log = tempfile.TemporaryFile()
        # The server's TMPDIR: the submissions' scratch folders live here, removed with it even if the
        # server is killed half-way through a job.
        self.tmp: str | None = None

    def start(self) -> None:
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="shortcutlab-grading-")
        argv = [sys.executable, "-m", "shortcutlab.grading.engine.worker", json.dumps(self.preload)]
        env = {**server_env(), "TMPDIR": self.tmp}
        private: dict[str, int] = {}
        try:
            if self.mode == sandbox.BUBBLEWRAP:
                uid = sandbox.UID_BASE + secrets.randbelow(sandbox.UID_SPAN)  # this server's student uid
                private = {str(path): os.open(path, os.O_RDONLY) for path in self.answer_files}
                argv = sandbox.command(argv, sandbox.sandbox_env(server_env(), uid), PACKAGE_ROOT,
                                       {inside: outside for outside, inside in self.check_files.items()},
                                       private=private)
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                            env=env, start_new_session=True, pass_fds=tuple(private.values()))
        finally:
            for fd in private.values():
                os.close(fd)
        self.lines = Lines(self.process.stdout.fileno())
        self.started = False
        reply = self._read(time.monotonic() + SERVER_START_TIMEOUT, "start")
        if not reply.get("ready"):
            raise RuntimeError(f"the grading server sent {reply!r} instead of a ready message")
        self.started = True

    def _read(self, deadline: float, doing: str) -> dict:
        try:
            reply = self.lines.next(deadline)
        except TimeoutError:
            raise TimeoutError(f"the grading server did not {doing} in time") from None
        if reply is None:
            code = self.process.wait(timeout=10)
            raise RuntimeError(f"the grading server exited (code {code}) during {doing}: {self.log_tail()}")
        return reply

    def log_tail(self, limit: int = 800) -> str:
        return log_tail(self.log.fileno(), limit)

    def grade(self, job: Job, timeout: float) -> JobResult:
        """Send one job and wait for its raw result (TimeoutError / RuntimeError if the server fails)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        if job.check_file in self.check_files:  # the path the check file has inside the sandbox
            job = dataclasses.replace(job, check_file=self.check_files[job.check_file])
        self.process.stdin.write((job.to_json() + "\n").encode())
        self.process.stdin.flush()
        return JobResult.from_dict(self._read(time.monotonic() + timeout, "grade the submission"))

    def close(self) -> None:
        if self.log.closed:
            return
        if self.process is not None:
            try:
                os.killpg(self.process.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None
        self.log.close()
        if self.tmp is not None:
            remove_tree(self.tmp)
            self.tmp = None


@dataclass
class _Work:
    index: int
    path: Path
    lesson: str | None = None
    submission: Submission | None = None
    planned: list[PlannedCheck] | None = None
    error: str | None = None
    grader_fault: bool = False  # the error is the grader's (a check file that cannot be planned, a bug of this side)


def _plan(course: Course, lesson: str, cache: dict[str, list[PlannedCheck] | str]) -> list[PlannedCheck] | str:
    if lesson not in cache:
        try:
            cache[lesson] = apply_derived_timeouts(course, lesson, plan_checks(course, lesson))
        except CourseError as exc:
            cache[lesson] = f"grader error: {exc}"
    return cache[lesson]


def _job(work: _Work, course: Course, seed: int) -> Job:
    lesson = course.lesson(work.submission.lesson)
    return Job(
        id=work.index,
        lesson=lesson.id,
        check_file=str(course.check_file(lesson)),
        cells=tuple(cell.to_dict() for cell in work.submission.cells),
        checks=tuple(CheckJob(c.name, c.function, c.timeout, check_seed(seed, lesson.id, c.name))
                     for c in work.planned),
        load_timeout=course.load_timeout(lesson),
        cell_timeout=course.timeout(lesson),
        budget=course.grading.submission_budget or default_budget(course.load_timeout(lesson), work.planned),
        memory_mb=course.grading.memory_mb,
        output_limit=course.grading.output_limit,
        # The server resolves these before any student code runs: the reference guard and the re-run use them.
        references={name: spec.reference for name, spec in lesson.functions.items()},
        allow_reference=course.grading.allow_reference,
    )


def job_timeout(job: Job) -> float:
    """How long a server may take for a job before it is presumed stuck (limits.submission_budget + slack)."""
    return submission_budget(job) + START_SLACK


def load_outcome(raw: JobResult | None, error: str | None, limit: int) -> LoadOutcome:
    """How loading went: as the server saw it when the submission's process died; else ``not_run`` if it never
    loaded (unreadable file, grader problem), ``timeout`` or ``error`` from the notes of cells that failed (the first
    stopped one, else the first that raised, names the cell), or ``ok``."""
    raw = raw or JobResult()
    if raw.load is not None and raw.load.failed:
        return dataclasses.replace(raw.load, message=truncate(raw.load.message, limit))
    if error:
        return LoadOutcome(LoadStatus.NOT_RUN, None, truncate(error, limit))
    notes = [n for n in raw.notes if isinstance(n, dict)]
    if not notes:
        return LoadOutcome()
    worst = [n for n in notes if n.get("status") == TIMEOUT] or notes
    first = worst[0]
    lines = []
    for n in notes:
        label = str(n.get("filename") or "a cell").strip("<>")
        verb = "was stopped" if n.get("status") == TIMEOUT else "raised"
        lines.append(f"{label} {verb} while loading: {n.get('error', '')}")
    cell = first.get("index") if isinstance(first.get("index"), int) and first.get("index") else None
    return LoadOutcome(LoadStatus.TIMEOUT if first.get("status") == TIMEOUT else LoadStatus.ERROR, cell,
                       truncate("\n".join(lines), limit))


def _assemble(work: _Work, raw: JobResult | None, limit: int, seconds: float, course: Course,
              mode: str | None = None) -> SubmissionResult:
    """A submission's result from its job's raw results (verdict.score) and how loading went."""
    lesson = work.lesson
    planned = work.planned or []
    error = work.error or (raw.error if raw else None)
    results = raw.results if raw else {}
    notes = list(work.submission.notes) if work.submission else []
    checks = verdict.score(planned, results, error, notes, limit, course.graded_names)
    # Without a plan (e.g. a missing check file) the lesson's points still count, so 0/12 is not 0/0.
    max_score = sum(c.max_score for c in planned) if planned or lesson is None else \
        sum(f.points for f in course.lesson(lesson).functions.values())
    return SubmissionResult(str(work.path), lesson, error, checks, max_score, round(seconds, 3),
                            load=load_outcome(raw, error, limit), sandbox=mode,
                            grader_fault=work.grader_fault or (raw is not None and raw.grader_fault),
                            judge_seconds=raw.judge_seconds if raw else 0.0)


class _Servers:
    """The grading servers of a run, one per thread at most: a thread takes an idle one (or a new one) for a job and
    gives it back; one that failed is closed and replaced. After two failed starts in a row no job tries again."""

    def __init__(self, course: Course, mode: str, check_files: list[str]) -> None:
        answer_modules = list(dict.fromkeys(module for lesson in course.lessons for spec in lesson.functions.values()
                                            if (module := spec.reference.rpartition(".")[0]).startswith("shortcutlab.")))
        preload = list(course.grading.preload)
        if mode == sandbox.BUBBLEWRAP:  # student code cannot read their files there: the server imports them first
            preload = list(dict.fromkeys([*preload, *answer_modules]))
        self._new = lambda: Server(preload, mode, check_files, answer_modules)
        self._lock = threading.Lock()
        self._idle: list[Server] = []
        self._taken: set[Server] = set()
        self._closed = False
        self._start_failures, self._last_failure = 0, ""

    def grade(self, job: Job) -> JobResult:
        """The server's raw result, or one whose error says why the grader could not grade the job."""
        with self._lock:
            if self._closed:
                return JobResult(error="grader error: the run was stopped", grader_fault=True)
            if self._start_failures >= 2:  # a server that cannot start will not start for the next job either
                return JobResult(error=f"grader error: no grading server could start: {self._last_failure}",
                                 grader_fault=True)
            server = self._idle.pop() if self._idle else self._new()
            self._taken.add(server)
        try:
            raw = server.grade(job, job_timeout(job))
            with self._lock:
                self._start_failures = 0
        except (TimeoutError, RuntimeError, OSError) as exc:
            with self._lock:
                if server.started is False:
                    self._start_failures += 1
                self._last_failure = str(exc)
            server.close()
            raw = JobResult(error=f"grader error: {exc}", grader_fault=True)
        with self._lock:
            self._taken.discard(server)
            if self._closed or server.process is None:
                server.close()
            else:
                self._idle.append(server)
        return raw

    def close(self) -> None:
        """Close every server, busy or idle (a busy one's job then fails at once): no server outlives the run."""
        with self._lock:
            self._closed = True
            servers, self._idle = [*self._idle, *self._taken], []
        for server in servers:
            server.close()


def _choose_sandbox(course: Course, require_sandbox: bool, warn: Callable[[str], None] | None) -> str:
    """The OS sandbox mode of a run; without bubblewrap, a GradingError if one is required, else ``warn`` (default:
    stderr) is told once."""
    require = require_sandbox or course.grading.require_sandbox
    mode, why = sandbox.choose(PACKAGE_ROOT, require)
    if mode != sandbox.BUBBLEWRAP:
        if require:
            raise GradingError(f"refusing to grade without the OS sandbox (--require-sandbox): {why}")
        message = (f"{NO_SANDBOX} ({why}); submissions run with process isolation only, as you, and can read the "
                   "library's reference implementations (the answer key) at run time. For credit, grade where "
                   "bubblewrap runs, with --require-sandbox")
        if warn is not None:
            warn(message)
        else:
            print(f"shortcutlab: warning: {message}", file=sys.stderr, flush=True)
    return mode


def _prepare(files: list[Path], course: Course, lesson: str | None,
             loaded: Mapping[Path, Submission | SubmissionError] | None) -> list[_Work]:
    """Each file's lesson, plan and submission (as the caller loaded it, else read here), or why it cannot be graded;
    an unreadable file still lists its lesson's checks, at 0 points."""
    plans: dict[str, list[PlannedCheck] | str] = {}
    work: list[_Work] = []
    for index, path in enumerate(files):
        item = _Work(index, path)
        known = loaded.get(path) if loaded is not None else None
        try:
            if isinstance(known, Submission) and (lesson is None or known.lesson == lesson):
                item.lesson = known.lesson  # the caller read, parsed and placed it already
            elif not path.is_file():
                raise SubmissionError(f"no such file: {path}")
            else:
                item.lesson = infer_lesson(path, course, lesson)
            plan = _plan(course, item.lesson, plans)
            item.planned = plan if isinstance(plan, list) else None
            item.error = plan if isinstance(plan, str) else None
            item.grader_fault = isinstance(plan, str)
            if isinstance(known, SubmissionError):
                raise known
            item.submission = known if isinstance(known, Submission) and known.lesson == item.lesson else \
                load_submission(path, course, item.lesson)
        except SubmissionError as exc:
            item.error, item.grader_fault = str(exc), False
        work.append(item)
    return work


def _run(work: list[_Work], course: Course, seed: int, mode: str, jobs: int | None,
         on_result: Callable[[SubmissionResult], None] | None) -> list[SubmissionResult]:
    """Each item's result, in order: those that cannot be graded at once, the others from ``jobs`` grading servers
    at a time; ``on_result`` hears of each as it is known (in this thread)."""
    limit = course.grading.output_limit
    results: dict[int, SubmissionResult] = {}

    def done(item: _Work, result: SubmissionResult) -> None:
        results[item.index] = result
        if on_result:
            on_result(result)

    pending = [item for item in work if item.error is None]
    for item in work:
        if item.error is not None:
            done(item, _assemble(item, None, limit, 0.0, course, mode))
    if not pending:
        return [results[item.index] for item in work]
    check_files = sorted({str(course.check_file(spec)) for spec in course.lessons if course.check_file(spec).is_file()})
    servers = _Servers(course, mode, check_files)

    def grade_one(item: _Work) -> SubmissionResult:
        began = time.monotonic()
        raw = servers.grade(_job(item, course, seed))
        return _assemble(item, raw, limit, time.monotonic() - began, course, mode)

    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs or os.cpu_count() or 1, len(pending))),
                              thread_name_prefix="grading")
    try:
        futures = {pool.submit(grade_one, item): item for item in pending}
        for future in as_completed(futures):
            item = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # a bug of this side: never leave a hole in the class
                item.error = f"grader error: the submission was not graded ({type(exc).__name__}: {exc})"
                item.grader_fault = True
                result = _assemble(item, None, limit, 0.0, course, mode)
            done(item, result)
    finally:
        # On Ctrl-C no queued job starts and no server outlives the run.
        pool.shutdown(wait=False, cancel_futures=True)
        servers.close()
        pool.shutdown(wait=True)
    return [results[item.index] for item in work]


def grade(paths: list[str | Path], *, lesson: str | None = None, jobs: int | None = None, seed: int | None = None,
          course: Course | str | Path | None = None,
          on_result: Callable[[SubmissionResult], None] | None = None,
          require_sandbox: bool = False,
          warn: Callable[[str], None] | None = None,
          loaded: Mapping[Path, Submission | SubmissionError] | None = None) -> GradeReport:
    """Grade .ipynb/.py submissions (folders are searched) against their lessons' checks.

    ``lesson`` forces the lesson (else it comes from each file's name); ``jobs`` submissions are graded at
    once (default: the number of CPUs); ``seed`` fixes the random inputs (default: a fresh one per run), the same for
    every submission of a lesson.
    A submission that cannot be read or loaded gets an ``error`` and 0 points; it never stops the run.
    Submissions run in the OS sandbox (sandbox.py) where bubblewrap can run; elsewhere ``warn`` (default: stderr)
    is told once, and ``require_sandbox`` (or course.yml ``grading.require_sandbox``) makes that a GradingError.
    ``loaded``: submissions the caller has already read (``load_submission``, or the error it raised), by path, so
    no file is read twice.
    """
    start = time.monotonic()
    course = course if isinstance(course, Course) else load_course(course)
    if lesson is not None:
        course.lesson(lesson)  # an unknown --lesson is a usage error, before any work
    files = expand_paths(list(paths))
    if not files:
        raise GradingError("no submissions to grade: give .ipynb or .py files, or folders holding them")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    mode = _choose_sandbox(course, require_sandbox, warn)
    results = _run(_prepare(files, course, lesson, loaded), course, seed, mode, jobs, on_result)
    return GradeReport(seed, tuple(results), round(time.monotonic() - start, 3))
