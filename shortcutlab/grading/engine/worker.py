"""The grading server: ``python -m shortcutlab.grading.engine.worker PRELOAD_JSON``.

It imports torch and the check files once, then answers each job (one ``Job`` JSON line on stdin) with one
``JobResult`` line on stdout (protocol.py), grading it in processes it forks for the job (job.py).
"""
from __future__ import annotations

import importlib
import json
import os
import sys

from shortcutlab.grading.engine.job import run_job
from shortcutlab.grading.engine.protocol import Job
from shortcutlab.grading.engine.serving import STATE, warm_up


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


def serve(modules: list[str]) -> int:
    """Answer jobs from stdin until it closes."""
    STATE.protocol_fd = os.dup(1)
    protocol = os.fdopen(STATE.protocol_fd, "w", buffering=1)
    # Anything else printed here (a noisy import, a warning) goes to stderr, never into the protocol.
    os.dup2(2, 1)
    failed = preload(modules)
    protocol.write(json.dumps({"ready": True, "failed_preload": failed}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        protocol.write(run_job(Job.from_dict(json.loads(line))).to_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else []))
