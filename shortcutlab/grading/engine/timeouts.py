"""Checks' default timeouts, derived from the reference's own measured time.

A check whose function and lesson set no ``timeout`` in course.yml gets ``max(timeout_floor, timeout_factor x
the time the check takes on the library's reference)``, rounded up to whole seconds and at most
``grading.timeout`` (the keys and their help text: ``shortcutlab.course.GradingSpec``). The reference is timed once,
in a process of its own (no student code), and the times are cached by the lesson's checks version
(``versions.checks_version``), so a course is measured once per change. A check the reference does not pass in time
gets ``grading.timeout``.

``python -m shortcutlab.grading.engine.timeouts JOB_JSON`` is that measuring process: it prints ``{check: seconds or
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

from shortcutlab.grading.engine.environment import server_env
from shortcutlab.grading.engine.limits import MEASURE_SLACK
from shortcutlab.grading.engine.versions import checks_version
from shortcutlab.grading.registry import check_seed
from shortcutlab.user_cache import cache_dir


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
    job = {"check_file": str(course.check_file(lesson)), "preload": list(course.grading.preload),
           "references": {name: spec.reference for name, spec in lesson.functions.items()},
           "checks": [{"name": n, "seed": check_seed(0, lesson.id, n)} for n in names], "timeout": ceiling}
    with tempfile.TemporaryDirectory(prefix="shortcutlab-measure-") as scratch:
        try:
            done = subprocess.run([sys.executable, "-m", "shortcutlab.grading.engine.timeouts", json.dumps(job)],
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


def _main(job: dict) -> dict[str, float | None]:
    """Run each check on the references (they are the "student's" objects) and time the passing ones."""
    import importlib

    from shortcutlab.course import import_object
    from shortcutlab.grading.engine.execute import PASSED, CheckContext, run_check
    from shortcutlab.grading.registry import collect_checks, import_check_file

    for name in job.get("preload", []):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional module may be absent
            pass
    if "torch" in sys.modules:
        from shortcutlab.grading.engine.serving import warm_up

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
