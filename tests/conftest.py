"""Test-wide setup: a private cache folder, no network, one torch thread per xdist worker, and the study's
models trained once per test run (shared by every xdist worker)."""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch

# Set before shortcutlab is imported anywhere: tests never touch the network or the user's cache.
os.environ["SHORTCUTLAB_OFFLINE"] = "1"
os.environ.setdefault("SHORTCUTLAB_CACHE", tempfile.mkdtemp(prefix="shortcutlab-test-cache-"))
os.environ.pop("SHORTCUTLAB_DATA", None)
# Each xdist worker is one process on a small machine: more torch threads than cores slows every worker.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    torch.set_num_threads(1)

# Every model a lesson loads and the references `reproduce --quick` adds, the longest to train first (adversarial
# about 30 s on one thread, cheater 3 s): two workers then train the long one and all the others side by side,
# instead of one waiting for the last long one.
STUDY_MODEL_NAMES = ("adversarial", "consistency", "augmentation", "grl", "unbiased", "grayscale", "cheater")
# The slowest modules, slowest first (summed --durations=0 on 2 cores). `make test` runs xdist with
# --no-loadscope-reorder, so workers take modules in this order and the long ones never start last, while one
# worker waits for the other to finish; the rest follow in file order.
SLOWEST_FIRST = ("test_mutants", "test_notebooks", "test_widgets", "test_cli", "test_grading", "test_readme",
                 "test_sandbox", "test_nbgrader_export", "test_grading_hostile", "test_time_budgets", "test_sweep",
                 "test_seeds", "test_visible_checks", "test_edition", "test_dashboard_browser", "test_gradebook", "test_gradescope",
                 "test_stub_gating", "test_class_report", "test_pytest_autograder", "test_roster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: a module's tests keep their order



def sandbox_warnings_dropped(text_or_lines):
    """stderr text (or a list of warnings) without the warning that grading runs without the OS sandbox, which a
    machine without bubblewrap (most newcomers' laptops) prints on every run; everything else is kept as it was."""
    from shortcutlab.grading.engine.runner import NO_SANDBOX

    if isinstance(text_or_lines, str):
        return "".join(line for line in text_or_lines.splitlines(keepends=True) if NO_SANDBOX not in line)
    return [line for line in text_or_lines if NO_SANDBOX not in line]


def processes_named(names: Iterable[str]) -> list[tuple[int, str]]:
    """(pid, name) of every process called one of ``names`` (its /proc comm, at most 15 characters)."""
    names = set(names)
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm in names:
            found.append((int(entry), comm))
    return found


def processes_left(names: Iterable[str], seconds: float = 5.0) -> list[tuple[int, str]]:
    """``processes_named(names)`` once none is left or ``seconds`` have passed: a killed process may take a moment
    to leave /proc (a bounded poll)."""
    names = tuple(names)
    deadline = time.monotonic() + seconds
    while (found := processes_named(names)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found

@pytest.fixture(scope="session")
def study_artifacts(tmp_path_factory) -> Path:
    """An artifacts folder whose models/ holds the study's models, controls and references, trained on the embedded
    digits once per test run (about 1.5 minutes) whatever the number of xdist workers. Read-only: tests that write copy
    models/."""
    from filelock import FileLock

    from shortcutlab.study import pretrained

    # The run's base folder, shared by all xdist workers (each worker's own basetemp is a child of it).
    run_root = tmp_path_factory.getbasetemp().parent if WORKER else tmp_path_factory.getbasetemp()
    out = run_root / "shared-study-artifacts"
    locks = {name: FileLock(str(run_root / f"shared-study-{name}.lock")) for name in STUDY_MODEL_NAMES}
    waiting = []
    # One lock per model: a worker that finds a model being trained trains the next one meanwhile, so two workers
    # that both need the models train them side by side instead of one waiting for all three.
    for name in STUDY_MODEL_NAMES:
        try:
            locks[name].acquire(timeout=0)
        except TimeoutError:
            waiting.append(name)
            continue
        try:  # loads what another worker trained; trains only what is missing
            pretrained(name, data="embedded", out=out, quiet=True, device="cpu")
        finally:
            locks[name].release()
    for name in waiting:
        with locks[name]:
            pretrained(name, data="embedded", out=out, quiet=True, device="cpu")
    return out


@pytest.fixture(scope="session")
def study_models(study_artifacts):
    """The study's cheater and consistency models (CPU), loaded from the run's shared study artifacts."""
    from shortcutlab.study import pretrained

    return {name: pretrained(name, data="embedded", out=study_artifacts, quiet=True, device="cpu")
            for name in ("cheater", "consistency")}


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


def write_idx(path, array, gz: bool) -> None:
    """Write a uint8 array as an MNIST IDX file (images magic 2051 for 3-D, labels 2049 for 1-D)."""
    import gzip

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = (2051 if array.ndim == 3 else 2049).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_fake_mnist(root, n_train: int = 300, n_test: int = 100, gz: bool = True, seed: int = 0):
    """A torchvision-layout MNIST folder (root/MNIST/raw) of blocky synthetic digits; returns root."""
    import numpy as np

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            row = 4 + 2 * label
            images[i, row:row + 4, 6:22] = rng.integers(180, 256)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return root


@pytest.fixture
def fake_mnist(tmp_path):
    return make_fake_mnist(tmp_path / "data")


# ----------------------------------------------------------------------------- the toy course of the grading tests

TOY_COURSE_YML = """\
version: 1
title: Toy course
grading: {timeout: 5, load_timeout: 20, preload: []}
lessons:
  - id: 90_toy
    title: Adding and scaling
    notebook: 90_toy.ipynb
    functions:
      add: {points: 3, reference: operator.add}
      scale: {points: 2, reference: operator.mul}
    hidden: [test_scale_big]
"""

TOY_CHECKS = '''
import random
from shortcutlab.grading import check, CheckFailure


@check("add")
def test_add_small_numbers(add, seed):
    rng = random.Random(seed)
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    got = add(a, b)
    if got != a + b:
        raise CheckFailure(f"add({a}, {b}) should be {a + b}, got {got}")


@check("add", hidden=True)
def test_add_negative_numbers(add, seed):
    assert add(-seed, 1) == 1 - seed, f"secret input {seed}"


@check("scale")
def test_scale_small(scale):
    assert scale(3, 2) == 6, "scale(3, 2) should be 6"


@check("scale")
def test_scale_big(scale):
    assert scale(1000, 1000) == 10**6, "the secret big case"
'''

TOY_CORRECT = "def add(a, b):\n    return a + b\n\ndef scale(x, k):\n    return x * k\n"


def toy_course_yml(timeout: float = 5, more_lessons: str = "") -> str:
    """The toy course's course.yml (90_toy: ``add`` 3 points, ``scale`` 2, one check of each hidden), with each
    function's ``timeout`` and any further lessons (YAML list items) appended."""
    return TOY_COURSE_YML.replace("timeout: 5,", f"timeout: {timeout:g},") + more_lessons


def make_toy_course(root: Path, timeout: float = 5, more_lessons: str = "",
                    more_checks: dict[str, str] | None = None) -> Path:
    """The toy course in ``root`` (course.yml, autograder/test_90_toy.py and ``more_checks`` by file name), the one
    course the grading, gradebook, Gradescope and nbgrader tests share; its course.yml."""
    (root / "autograder").mkdir(parents=True, exist_ok=True)
    (root / "course.yml").write_text(toy_course_yml(timeout, more_lessons))
    for name, text in {"test_90_toy.py": TOY_CHECKS, **(more_checks or {})}.items():
        (root / "autograder" / name).write_text(text)
    return root / "course.yml"


# ----------------------------------------------------------------------------- a toy class for grading outputs

TOY_CLASS_COURSE = """\
version: 1
title: Toy class
grading: {timeout: 5, load_timeout: 20, preload: [], derive_timeouts: false}
lessons:
  - id: 95_sums
    title: Sums
    notebook: 95_sums.ipynb
    functions:
      add: {points: 3, reference: operator.add}
      twice: {points: 2, reference: operator.neg}
    answers: {q1: {points: 2}}
"""

TOY_CLASS_CHECKS = '''
import random
from shortcutlab.grading import CheckFailure, Slip, check, expect_true


@check("add")
def test_add_random_numbers(add, seed):
    """Core: sums of random numbers; a difference or an off-by-one is named as the slip it is."""
    rng = random.Random(seed)
    for _ in range(20):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        got = add(a, b)
        if got == a + b:
            continue
        hint = Slip("subtracts", "that is a - b") if got == a - b else \\
            Slip("off_by_one", "one too many") if got == a + b + 1 else "add the two numbers"
        raise CheckFailure(f"add({a}, {b}) should be {a + b}, got {got}. Hint: {hint}", hint=hint)


@check("add", kind="property")
def test_add_returns_an_int(add):
    expect_true(isinstance(add(2, 3), int), "add should return an int")


@check("add", hidden=True, kind="property")
def test_add_negative_numbers(add):
    expect_true(add(-4, -5) == -9, "negative numbers")


@check("twice")
def test_twice(twice, seed):
    expect_true(twice(seed % 100) == 2 * (seed % 100), "twice(x) should be 2 * x")
'''

TOY_CLASS_SOLUTION_CELLS = (
    ("def add(a, b):\n    return a + b\n", "add"),
    ("def twice(x):\n    return 2 * x\n", "twice"),
)


def toy_class_notebook(add: str = "return a + b", twice: str = "return 2 * x", answer: str = "") -> str:
    """A 95_sums notebook: the two graded cells (their bodies given) and the written answer cell."""
    import json

    def code(source: str, grade_id: str) -> dict:
        return {"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
                "metadata": {"nbgrader": {"solution": True, "grade": False, "grade_id": grade_id, "locked": False}}}

    cells = [code(f"def add(a, b):\n    {add}\n", "add"), code(f"def twice(x):\n    {twice}\n", "twice"),
             {"cell_type": "markdown", "metadata": {}, "source": "**Q1.** Why?"},
             {"cell_type": "markdown", "source": answer or "*Your answer here.*",
              "metadata": {"nbgrader": {"solution": True, "grade": True, "grade_id": "answer_q1", "points": 2,
                                        "locked": False}}}]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def make_toy_class_course(folder: Path, timeout: float = 1.5) -> Path:
    """A one-lesson course (95_sums: add, twice, one written answer) whose core check names two slips, in
    ``folder``; its course.yml. The solution notebook holds the model answer."""
    root = folder / "toy-class"
    (root / "autograder").mkdir(parents=True)
    (root / "solutions").mkdir()
    (root / "course.yml").write_text(TOY_CLASS_COURSE.replace("timeout: 5,", f"timeout: {timeout:g},"))
    (root / "autograder" / "test_95_sums.py").write_text(TOY_CLASS_CHECKS)
    (root / "solutions" / "95_sums.ipynb").write_text(toy_class_notebook(answer="Because sums add up."))
    return root / "course.yml"


@pytest.fixture()
def toy_class_course(tmp_path) -> Path:
    """``make_toy_class_course`` in this test's own folder."""
    return make_toy_class_course(tmp_path, timeout=5)
