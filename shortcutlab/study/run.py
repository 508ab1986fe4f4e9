"""`shortcutlab reproduce`: run the chosen tasks in order and write results.json, report.md and figures/."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from types import ModuleType

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.study import (sweep, task0_data, task1_cheater, task2_actmax, task3_gradcam, task4_debiasing,
                               task5_attacks, task6_sae)
from shortcutlab.study.context import Study, StudyConfig

# Each task module has TITLE, run(study) and report(results) -> report.md lines.
TASKS: dict[int, ModuleType] = {0: task0_data, 1: task1_cheater, 2: task2_actmax, 3: task3_gradcam,
                                4: task4_debiasing, 5: task5_attacks, 6: task6_sae}


MODEL_SELECTION = ("**Model selection on validation only.** Every training setting (epochs, learning rate and its drop, "
                   "loss weights, GRL strength) is fixed in code (`MODEL_SPECS`), set from easy-val accuracy and "
                   "training curves (the cheater's from the report); a run picks nothing: each model is its last "
                   "epoch's, with no checkpoint or strength chosen; a sweep's val split has the sweep's rate. The hard "
                   "test is only measured: its per-epoch curve is logged, never read to choose.")


def step_module(key: str) -> ModuleType:
    """The module behind a step of a run, as results.json's timing names it: task "<n>" or "sweep"."""
    return sweep if key == "sweep" else TASKS[int(key)]


def step_label(key: str) -> str:
    """How logs and report.md name a step: "task 4", "sweep"."""
    return f"task {key}" if key.isdigit() else key


def parse_tasks(text: str) -> tuple[int, ...]:
    """'0,1' -> (0, 1); ShortcutlabError naming the known tasks otherwise."""
    known = ", ".join(map(str, TASKS))
    try:
        tasks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ShortcutlabError(f"--tasks takes comma-separated task numbers from {known}; got {text!r}") from None
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise ShortcutlabError(f"unknown task(s) {unknown or text!r}; this version runs tasks {known}")
    return tasks


def render_report(results: dict) -> str:
    """report.md: each task's section (the report's numbers beside ours), every figure, and the timing."""
    lines = ["# Colored MNIST: shortcut learning, reproduced with shortcutlab", "", MODEL_SELECTION, ""]
    for task in TASKS.values():
        lines += task.report(results)
    lines += sweep.report(results)
    figures = results.get("figures", {})
    if figures:
        lines += ["## Figures", ""]
        lines += [f"### {name}\n\n![{name}]({path})\n" for name, path in figures.items()]
    timing = results.get("timing", {})
    if timing:
        per_task = ", ".join(f"{step_label(t)}: {s:.1f} s" for t, s in timing.get("tasks", {}).items())
        lines += ["## Timing", "", f"Total {timing['total_seconds']:.1f} s ({per_task}) on {timing['machine']}.", ""]
    return "\n".join(lines)


def machine_description(device: torch.device) -> str:
    """"x86_64, 2 torch threads" on a CPU; the GPU's name on CUDA."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({platform.machine()} host)"
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads"


def run_study(config: StudyConfig) -> dict:
    """Run the chosen tasks, write results.json, report.md and figures/ into ``config.out``; return results."""
    start = time.perf_counter()
    out = Path(config.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    study = Study(config)
    study.results["config"] = config.record()
    study.results["config"]["resolved_device"] = str(study.device)
    timings = {}
    for key in [str(number) for number in config.tasks] + (["sweep"] if config.dominant_rates else []):
        step = step_module(key)
        study.log(f"{step_label(key)}: {step.TITLE}")
        step_start = time.perf_counter()
        step.run(study)
        if study.device.type == "cuda":
            torch.cuda.synchronize(study.device)  # so each step's time includes its own GPU work
        timings[key] = round(time.perf_counter() - step_start, 2)
    study.results["timing"] = {"total_seconds": round(time.perf_counter() - start, 2), "tasks": timings,
                               "machine": machine_description(study.device)}
    (out / "results.json").write_text(json.dumps(study.results, indent=2))
    (out / "report.md").write_text(render_report(study.results))
    study.log(f"done in {study.results['timing']['total_seconds']:.1f} s on {study.device}: {out / 'report.md'}")
    return study.results
