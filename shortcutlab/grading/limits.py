"""Every limit of grading, declared here: the ones a course sets (course.yml ``grading:`` keys, with their help
text in ``shortcutlab.course.GradingSpec``: ``timeout``, ``load_timeout``, ``memory_mb``, ``output_limit``,
``submission_budget``, ``derive_timeouts``, ``timeout_floor``, ``timeout_factor``, ``require_sandbox``; a lesson's
and a function's ``timeout``) and the fixed ones below; and the time limits derived from them: checks' timeouts
from the reference's own measured time, and the budget of a whole submission.

A check whose function and lesson set no ``timeout`` in course.yml gets ``max(timeout_floor, timeout_factor x
the time the check takes on the library's reference)``, rounded up to whole seconds and at most
``grading.timeout``. The reference is timed once, in a process of its own (no student code), and the times are
cached by the lesson's checks version (the check file, course.yml's lesson and grading settings, the library's
sources), so a course is measured once per change. A check the reference does not pass in time gets
``grading.timeout``.

``python -m shortcutlab.grading.limits JOB_JSON`` is that measuring process: it prints ``{check: seconds or
null}``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from shortcutlab.user_cache import cache_dir

# ---- time
BUDGET_CAP = 900.0  # seconds: the most a submission's default budget may be
MEASURE_SLACK = 120.0  # seconds the measuring process may take on top of its checks' limits (importing torch)
GRACE = 3.0  # seconds past a check's own limit (enforced in-process) before its process is killed
START_SLACK = 30.0  # seconds a fresh process may take before it starts its first check
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


def timeouts_dir() -> Path:
    """Where measured reference times are kept: grading-timeouts/ in the user's cache folder."""
    folder = cache_dir() / "grading-timeouts"
    folder.mkdir(exist_ok=True)
    return folder


def derived_timeout(seconds: float | None, floor: float, factor: float, ceiling: float) -> float:
    """``max(floor, factor x seconds)`` in whole seconds, at most ``ceiling``; ``ceiling`` if not measured."""
    if seconds is None:
        return ceiling
    return float(min(ceiling, max(floor, math.ceil(factor * max(seconds, 0.0)))))


def _measure(course: Any, lesson: Any, names: list[str], ceiling: float) -> dict[str, float | None]:
    """Time the lesson's checks ``names`` on the library's references, in a fresh process."""
    from shortcutlab.grading.registry import check_seed
    from shortcutlab.grading.runner import server_env

    job = {"check_file": str(course.check_file(lesson)), "preload": list(course.grading.preload),
           "references": {name: spec.reference for name, spec in lesson.functions.items()},
           "checks": [{"name": n, "seed": check_seed(0, lesson.id, n)} for n in names], "timeout": ceiling}
    with tempfile.TemporaryDirectory(prefix="shortcutlab-measure-") as scratch:
        try:
            done = subprocess.run([sys.executable, "-m", "shortcutlab.grading.limits", json.dumps(job)],
                                  capture_output=True, text=True, cwd=scratch, env={**server_env(), "TMPDIR": scratch},
                                  timeout=len(names) * (ceiling + 1) + MEASURE_SLACK, start_new_session=True)
            times = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            times = {}
    return {n: (float(times[n]) if isinstance(times.get(n), (int, float)) else None) for n in names}


def apply_derived_timeouts(course: Any, lesson: Any, planned: list) -> list:
    """``planned`` (registry.PlannedCheck) with each check that course.yml gives no timeout (neither its function
    nor its lesson) timed from the reference: see the module's doc."""
    grading = course.grading
    lesson = course.lesson(lesson) if isinstance(lesson, str) else lesson
    if not grading.derive_timeouts or lesson.timeout is not None or grading.timeout <= grading.timeout_floor:
        return planned
    todo = [c.name for c in planned if lesson.functions[c.function].timeout is None]
    if not todo:
        return planned
    from shortcutlab.grading.gradebook import checks_version

    path = timeouts_dir() / f"{lesson.id}-{checks_version(course, lesson)[:32]}.json"
    try:
        times = json.loads(path.read_text())
        if not isinstance(times, dict) or set(todo) - set(times):
            raise ValueError("stale")
    except (OSError, ValueError):
        times = _measure(course, lesson, todo, grading.timeout)
        try:
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(times, sort_keys=True))
            os.replace(temporary, path)
        except OSError:
            pass
    return [dataclasses.replace(c, timeout=derived_timeout(times.get(c.name), grading.timeout_floor,
                                                           grading.timeout_factor, grading.timeout))
            if c.name in todo else c for c in planned]


def default_budget(load_timeout: float, checks: list) -> float:
    """A submission's default wall budget: loading, plus twice the longest check timeout of each graded function
    (one check that runs out of time, and the rest), at most ``BUDGET_CAP`` seconds (and never less than
    loading plus one minute)."""
    longest: dict[str, float] = {}
    for c in checks:
        longest[c.function] = max(longest.get(c.function, 0.0), float(c.timeout))
    return max(min(BUDGET_CAP, load_timeout + sum(2 * t for t in longest.values())), load_timeout + 60.0)


def _main(job: dict) -> dict[str, float | None]:
    """Run each check on the references (they are the "student's" objects) and time the passing ones."""
    import importlib

    from shortcutlab.course import import_object
    from shortcutlab.grading.execute import PASSED, CheckContext, run_check
    from shortcutlab.grading.registry import collect_checks, import_check_file

    for name in job.get("preload", []):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional module may be absent
            pass
    if "torch" in sys.modules:
        from shortcutlab.grading.worker import warm_up

        warm_up()
    functions = collect_checks(import_check_file(job["check_file"]))
    namespace = {}
    for name, dotted in job["references"].items():
        try:
            namespace[name] = import_object(dotted)
        except Exception:  # noqa: BLE001 - unmeasured checks get the ceiling
            pass
    times: dict[str, float | None] = {}
    for item in job["checks"]:
        fn = functions.get(item["name"])
        if fn is None:
            times[item["name"]] = None
            continue
        outcome = run_check(fn, CheckContext(namespace), item["seed"], job["timeout"], item["name"], 400)
        times[item["name"]] = round(outcome.seconds, 4) if outcome.status == PASSED else None
    return times


if __name__ == "__main__":
    result = _main(json.loads(sys.argv[1]))
    sys.stdout.flush()
    print(json.dumps(result))
