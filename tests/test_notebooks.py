"""Does every solution notebook run top to bottom, headless, offline, on a fresh python3 kernel?"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from shortcutlab.cells import EXAMPLE_TAG
from shortcutlab.release import EXPECTED_SUMMARY

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell; a whole notebook takes well under a minute
PARALLEL = max(1, min(2, os.cpu_count() or 1))


def test_the_python3_kernel_runs_this_interpreter():
    """nbclient's kernel must see the venv's packages (jupyter_client maps a bare `python` to sys.executable)."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv
    assert spec.argv[1:3] == ["-m", "ipykernel_launcher"]


def kernel_env(artifacts: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SHORTCUTLAB_OFFLINE="1",
        SHORTCUTLAB_ARTIFACTS=str(artifacts),
        # Kernels run side by side on few cores; more torch threads than cores slow each one several-fold.
        OMP_NUM_THREADS="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


async def execute(name: str, env: dict[str, str], workdir: Path, gate: asyncio.Semaphore
                  ) -> tuple[str | None, float, dict[str, str]]:
    """(error message or None, seconds, what each example cell printed by cell id) of running
    solutions/<name>.ipynb in ``workdir``."""
    from nbclient import NotebookClient

    nb = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)
    async with gate:
        start = time.perf_counter()
        client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=False,
                                resources={"metadata": {"path": str(workdir)}})
        try:
            await client.async_execute(env=env)
        except Exception as exc:  # noqa: BLE001 - reported per notebook below
            return f"{type(exc).__name__}: {exc}", time.perf_counter() - start, {}
        printed = {cell.id: "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
                   for cell in nb.cells if EXAMPLE_TAG in cell.metadata.get("tags", [])}
        return None, time.perf_counter() - start, printed


@pytest.fixture(scope="module")
def executed(request, tmp_path_factory, study_artifacts) -> dict[str, tuple[str | None, float, dict[str, str]]]:
    """Run the selected notebooks, PARALLEL at a time, sharing the run's pre-trained study models (a copy)."""
    selected = sorted({item.callspec.params["name"] for item in request.session.items
                       if getattr(item, "originalname", "") in ("test_solution_notebook_runs",
                                                                "test_the_expected_outputs_are_what_the_examples_print")})
    artifacts = tmp_path_factory.mktemp("artifacts")
    # Trained before the kernels start, so no two kernels write a model at the same time.
    shutil.copytree(study_artifacts / "models", artifacts / "models")
    env = kernel_env(artifacts)

    async def run_all():
        gate = asyncio.Semaphore(PARALLEL)
        jobs = [execute(name, env, tmp_path_factory.mktemp(name), gate) for name in selected]
        return dict(zip(selected, await asyncio.gather(*jobs)))

    return asyncio.run(run_all())


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solution_notebook_runs(name, executed, request):
    error, seconds, _ = executed[name]
    request.node.user_properties.append(("seconds", round(seconds, 1)))
    assert error is None, f"solutions/{name}.ipynb failed after {seconds:.0f} s:\n{error}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n[:2].isdigit()])
def test_the_expected_outputs_are_what_the_examples_print(name, executed):
    """The lesson shows, after each example, exactly what the example prints in a fresh kernel running the solution
    (release computes it in its own process: the two must agree)."""
    error, _, printed = executed[name]
    assert error is None, error
    lesson = nbformat.read(ROOT / "lessons" / f"{name}.ipynb", as_version=4).cells
    shown = {cell.id.removesuffix("-expected"): cell.source for cell in lesson if cell.id.endswith("-expected")}
    assert printed and sorted(shown) == sorted(printed)
    for cell_id, text in printed.items():
        assert shown[cell_id] == f"<details>\n<summary>{EXPECTED_SUMMARY}</summary>\n\n```\n{text.rstrip()}\n```\n\n</details>"
