"""No credit for doing nothing: a stub of the right shape earns 0 on its function (issue 10, item 4).

A ``@check(..., kind="property")`` check counts only once every core check of its function passed
(shortcutlab/grading/engine/gating.py). The fast tests cover the decorator, the plan-time validation and the gating
in every place points are computed (``shortcutlab grade``, nbgrader's autograde cells, the notebook report).
The slow test grades, in one batch, stubs made from the correct submissions tests/submissions/<lesson>.py
with ONE graded function replaced by one that does nothing useful.

A stub learns its output's shape and dtype at run time from the correct implementation it replaces (the one in
the same submission: the library reference's twin, so no reference is imported by student code), called on
deep copies of the arguments (so a training step trains nothing and generators do not advance) with the global
RNG restored afterwards; then it returns, in that shape and dtype:

- ``zeros``: zeros (a float 0.0; a class's forward: zeros; a loss stays attached to the graph, with zero
  gradients: ``loss * 0``, and so do the other kinds' losses);
- ``constant``: 0.5 (1 for integer tensors, True for booleans);
- ``input``: its first tensor argument, unchanged (mean-reduced or broadcast to the output's shape where it
  differs; an attack result's images are the unmoved inputs, the rest zeros);
- ``random``: seeded uniform values in [0, 1) (integers in [0, 10), booleans at random).
Every stub must earn exactly 0 on its function (every function of every lesson) and leave full marks on the
others; a property check that passed for a stub says "not counted until ...".
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.engine.gating import NOT_COUNTED, PENDING_EXPLANATION, gated, gated_output
from shortcutlab.grading.registry import PROPERTY, CheckFileError, check, parse_check_file, plan_checks
from shortcutlab.grading.outputs.report import render_details
from shortcutlab.grading.engine.runner import grade

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT / "course.yml")
SEED = int(os.environ.get("SHORTCUTLAB_TEST_SEED", "20241128"))

KINDS = ("zeros", "constant", "input", "random")
# For the suite's time, each function gets one kind, in turn (so every kind is graded on about a quarter of the
# functions, and grad_cam gets zeros); SHORTCUTLAB_STUB_KINDS=all grades every kind of every function (run it after
# changing a check's kind).
ALL_KINDS = os.environ.get("SHORTCUTLAB_STUB_KINDS", "") == "all"

_STUB = '''

# ---- stub (tests/stubs.py): {name} returns {kind!r} values of the right shape
import copy as _stub_copy
import dataclasses as _stub_dataclasses
import functools as _stub_functools
import torch as _stub_torch

_stub_correct = {name}
_STUB_KIND = {kind!r}


def _stub_leaf(value, first):
    if isinstance(value, bool):
        return {{"zeros": False, "constant": True, "random": True, "input": False}}[_STUB_KIND]
    if isinstance(value, (int, float)):
        kind = {{"zeros": 0, "constant": 0.5, "random": 0.8444218515250481, "input": 0}}[_STUB_KIND]
        return type(value)(kind) if isinstance(value, float) else int(kind > 0)
    if not isinstance(value, _stub_torch.Tensor):
        return value
    shape, dtype = value.shape, value.dtype
    generator = _stub_torch.Generator().manual_seed(0)
    if _STUB_KIND == "input" and first is not None:
        x = first.detach()
        while x.dim() > len(shape) and x.dim() > 1:
            x = x.float().mean(dim=1)
        try:
            out = x.expand(shape).clone() if x.shape != shape else x.clone()
        except RuntimeError:
            out = None
        if out is not None:
            out = out.to(dtype)
            return out.requires_grad_() if value.requires_grad and out.is_floating_point() else out
    if _STUB_KIND == "constant":
        out = _stub_torch.full(shape, 0.5 if dtype.is_floating_point else 1, dtype=dtype)
    elif _STUB_KIND == "random":
        if dtype == _stub_torch.bool:
            out = _stub_torch.rand(shape, generator=generator) > 0.5
        elif dtype.is_floating_point:
            out = _stub_torch.rand(shape, generator=generator).to(dtype)
        else:
            out = _stub_torch.randint(0, 10, shape, generator=generator).to(dtype)
    else:
        out = _stub_torch.zeros(shape, dtype=dtype)
    return out.requires_grad_() if value.requires_grad and out.is_floating_point() else out


def _stub_like(value, first):
    if isinstance(value, (tuple, list)):
        return type(value)(_stub_like(v, first) for v in value)
    if _stub_dataclasses.is_dataclass(value) and not isinstance(value, type):
        # An attack result "input": the fields shaped like the input are the input, the rest zeros.
        fields = {{}}
        for f in _stub_dataclasses.fields(value):
            v = getattr(value, f.name)
            same = isinstance(v, _stub_torch.Tensor) and first is not None and v.shape == first.shape
            fields[f.name] = _stub_leaf(v, first if same or _STUB_KIND != "input" else None)
        return _stub_dataclasses.replace(value, **fields)
    return _stub_leaf(value, first)


def _stub_first_tensor(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, _stub_torch.Tensor):
            return value
    return None


def _stub_reference_output(function, args, kwargs):
    state = _stub_torch.random.get_rng_state()
    try:
        try:
            args, kwargs = _stub_copy.deepcopy((args, kwargs))
        except Exception:  # non-leaf tensors cannot be deep-copied: a pure function, called as it is
            pass
        return function(*args, **kwargs)
    finally:
        _stub_torch.random.set_rng_state(state)


if isinstance(_stub_correct, type):
    class {name}(_stub_correct):
        pass

    for _stub_method in ("forward", "encode", "decode"):
        if hasattr(_stub_correct, _stub_method):
            def _stub_make(method):
                @_stub_functools.wraps(method)
                def stub(self, *args, **kwargs):
                    with _stub_torch.no_grad():
                        out = method(self, *args, **kwargs)
                    return _stub_like(out, _stub_first_tensor(args, kwargs))
                return stub
            setattr({name}, _stub_method, _stub_make(getattr(_stub_correct, _stub_method)))
    {name}.__qualname__ = {name}.__name__ = {name!r}
else:
    @_stub_functools.wraps(_stub_correct)
    def {name}(*args, **kwargs):
        out = _stub_like(_stub_reference_output(_stub_correct, args, kwargs), _stub_first_tensor(args, kwargs))
        if isinstance(out, _stub_torch.Tensor) and out.requires_grad:
            # A loss: the stub's value, still attached to the graph (backward reaches the inputs with zero
            # gradients), from the correct function called on the real arguments (a loss changes nothing).
            state = _stub_torch.random.get_rng_state()
            try:
                live = _stub_correct(*args, **kwargs)
            finally:
                _stub_torch.random.set_rng_state(state)
            if isinstance(live, _stub_torch.Tensor) and live.requires_grad and live.shape == out.shape:
                out = live * 0 + out.detach()
        return out
'''


def _input_applies(source: str, name: str) -> bool:
    """An ``input`` stub needs a tensor argument and a tensor-like result (a class: its forward's)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            forward = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "forward"]
            return bool(forward) and _input_applies_to(forward[0])
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return _input_applies_to(node)
    raise LookupError(f"{name} is not defined at the top level of the submission")


def _input_applies_to(node: ast.FunctionDef) -> bool:
    annotations = [ast.unparse(a.annotation) for a in (*node.args.args, *node.args.kwonlyargs) if a.annotation]
    returns = ast.unparse(node.returns) if node.returns else ""
    return any("Tensor" in a for a in annotations) and returns not in ("", "float", "int", "None")


def write_stubs(submission: Path, functions: list[str], folder: Path) -> dict[Path, tuple[str, str]]:
    """Each applicable stub of each of ``functions`` as ``folder/<lesson>/<function>__<kind>.py``, by path:
    (function, kind)."""
    source = submission.read_text(encoding="utf-8")
    out: dict[Path, tuple[str, str]] = {}
    (folder / submission.stem).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(functions):
        kinds = [k for k in KINDS if k != "input" or _input_applies(source, name)]
        if not ALL_KINDS:
            kinds = [kinds[(index + len(submission.stem)) % len(kinds)]]
        for kind in kinds:
            path = folder / submission.stem / f"{name}__{kind}.py"
            path.write_text(source + _STUB.format(name=name, kind=kind), encoding="utf-8")
            out[path] = (name, kind)
    return out


# ----------------------------------------------------------------------------- the rule, on a toy course

TOY_COURSE = """\
version: 1
title: Toy course
grading: {timeout: 5, load_timeout: 20, preload: []}
lessons:
  - id: 90_toy
    title: Plain Python
    notebook: 90_toy.ipynb
    functions:
      add: {points: 3, reference: operator.add}
      scale: {points: 2, reference: operator.mul}
"""

TOY_CHECKS = '''
from shortcutlab.grading import check, CheckFailure


@check("add")
def test_add_small_numbers(add):
    if add(2, 3) != 5:
        raise CheckFailure(f"add(2, 3) gave {add(2, 3)!r}, expected 5")


@check("add", kind="property")
def test_add_returns_an_int(add):
    if not isinstance(add(2, 3), int):
        raise CheckFailure("add should return an int")


@check("add", hidden=True, kind="property")
def test_add_is_symmetric(add):
    if add(2, 3) != add(3, 2):
        raise CheckFailure("add(2, 3) != add(3, 2)")


@check("scale")
def test_scale_small(scale):
    if scale(2, 3) != 6:
        raise CheckFailure("scale(2, 3) != 6")
'''


@pytest.fixture()
def toy(tmp_path) -> Path:
    (tmp_path / "course.yml").write_text(TOY_COURSE)
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "test_90_toy.py").write_text(TOY_CHECKS)
    return tmp_path


def test_the_kind_is_read_statically_and_defaults_to_core(toy):
    planned = {c.name: c.kind for c in plan_checks(load_course(toy / "course.yml"), "90_toy")}
    assert planned == {"test_add_small_numbers": "core", "test_add_returns_an_int": "property",
                       "test_add_is_symmetric": "property", "test_scale_small": "core"}


@pytest.mark.parametrize("source, error, message", [
    ('@check("add", kind="propery")\ndef test_a(add): ...\n', CheckFileError, "unknown check kind 'propery'"),
    ('@check("add", kind=KIND)\ndef test_a(add): ...\n', CheckFileError, "literal arguments"),
])
def test_a_bad_kind_is_a_clear_error(tmp_path, source, error, message):
    path = tmp_path / "test_bad.py"
    path.write_text(source)
    with pytest.raises(error, match=message):
        parse_check_file(path)
    with pytest.raises(ValueError, match="unknown check kind 'bogus'"):
        check("add", kind="bogus")


def test_a_function_with_property_checks_only_is_an_error_at_plan_time(toy):
    path = toy / "autograder" / "test_90_toy.py"
    path.write_text(TOY_CHECKS.replace('@check("scale")', '@check("scale", kind="property")'))
    with pytest.raises(CheckFileError, match="every check of scale is a kind=\"property\" check; a function needs "
                                             "at least one core check"):
        plan_checks(load_course(toy / "course.yml"), "90_toy")


def test_gating_names_the_core_checks_that_must_pass_first(toy):
    planned = plan_checks(load_course(toy / "course.yml"), "90_toy")
    every = {c.name: "passed" for c in planned}
    assert gated(planned, every) == {}
    sentences = gated(planned, {**every, "test_add_small_numbers": "failed"})
    assert sentences == {"test_add_returns_an_int": f'{NOT_COUNTED} "small numbers" passes',
                         "test_add_is_symmetric": f'{NOT_COUNTED} "small numbers" passes'}
    # A property check that failed on its own stays as it is; a hidden core check is named as such.
    hidden = [c if c.name != "test_add_small_numbers" else type(c)(**{**c.__dict__, "hidden": True}) for c in planned]
    assert gated(hidden, {**every, "test_add_small_numbers": "timeout", "test_add_is_symmetric": "failed"}) == \
        {"test_add_returns_an_int": f"{NOT_COUNTED} a hidden check passes"}


def test_grade_gives_a_gated_check_zero_and_says_why(toy):
    from shortcutlab.grading.engine.protocol import JobResult
    from shortcutlab.grading.engine.runner import _assemble, _Work

    course = load_course(toy / "course.yml")
    planned = plan_checks(course, "90_toy")
    raw = {"results": {c.name: {"status": "passed", "output": ""} for c in planned}}
    raw["results"]["test_add_small_numbers"] = {"status": "failed", "output": "add(2, 3) gave 0, expected 5"}
    result = _assemble(_Work(0, toy / "90_toy.py", "90_toy", None, planned), JobResult.from_dict(raw), 4000, 0.1,
                       course)
    checks = {c.name: c for c in result.checks}
    assert result.function_scores() == {"add": (0.0, 3.0), "scale": (2.0, 2.0)}
    for name in ("test_add_returns_an_int", "test_add_is_symmetric"):
        assert checks[name].score == 0 and checks[name].status == "failed"
        assert checks[name].output == gated_output(f'{NOT_COUNTED} "small numbers" passes')
    assert f'{NOT_COUNTED} "small numbers" passes' in "\n".join(render_details(result))


def test_the_notebook_report_and_nbgrader_autograde_say_it_too(toy, capsys):
    import nbformat

    from shortcutlab.grading.engine.protocol import JobResult
    from shortcutlab.grading.engine.runner import _assemble, _Work
    from shortcutlab.grading.integrations.nbgrader import fill_check_cells
    from shortcutlab.grading.integrations.notebook import ChecksFailed, check_in_notebook

    def zero(a, b):
        return 0

    with pytest.raises(ChecksFailed):
        check_in_notebook("90_toy.add", zero, course=toy / "course.yml", seed=1)
    shown = capsys.readouterr().out
    assert "add: 0/2 checks passed" in shown and f'{NOT_COUNTED} "small numbers" passes' in shown
    # nbgrader autograde: the engine's result (here a stub's: the core check failed, the properties passed) fills
    # the check cell, with the same report
    course = load_course(toy / "course.yml")
    planned = plan_checks(course, "90_toy")

    def check_cell(statuses: dict[str, str]) -> nbformat.NotebookNode:
        raw = {"results": {c.name: {"status": statuses.get(c.name, "passed"), "output": ""} for c in planned}}
        result = _assemble(_Work(0, toy / "90_toy.py", "90_toy", None, planned), JobResult.from_dict(raw), 4000,
                           0.1, course)
        cell = nbformat.v4.new_code_cell('shortcutlab.check("90_toy.add", add)')
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "check_add", "points": 3}
        notebook = nbformat.v4.new_notebook(cells=[cell])
        fill_check_cells(notebook, result, course)
        return notebook.cells[0]

    cell = check_cell({"test_add_small_numbers": "failed"})
    shown = cell.outputs[0]["text"]
    assert "add: 0/3 checks passed, 2 pending, 0/3 points" in shown and shown.count(NOT_COUNTED) == 1
    assert "… hidden check (passed, pending a core check)" in shown and shown.count(PENDING_EXPLANATION) == 1
    assert cell.outputs[1]["data"]["text/plain"] == "0.0"
    assert check_cell({}).outputs[1]["data"]["text/plain"] == "3.0"


# ----------------------------------------------------------------------------- stubs of every graded function

READY = [lesson.id for lesson in COURSE.lessons if COURSE.check_file(lesson).exists()]


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> dict[Path, tuple[str, str, str]]:
    folder = tmp_path_factory.mktemp("stubs")
    made: dict[Path, tuple[str, str, str]] = {}
    for lesson in READY:
        written = write_stubs(ROOT / "tests" / "submissions" / f"{lesson}.py", list(COURSE.lesson(lesson).functions),
                              folder)
        made.update({path: (lesson, *what) for path, what in written.items()})
    return made


LYING_TENSOR = '''
import torch


class Liar(torch.Tensor):
    """Answers every comparison a check could make with 'equal'."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("allclose", "equal"):
            return True
        if name in ("isclose", "eq", "__eq__"):
            return torch.ones((), dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})


def grad_cam(model, layer, images, targets=None):
    return torch.full((images.shape[0], images.shape[2], images.shape[3]), 0.01){wrap}
'''


@pytest.fixture(scope="module")
def others(tmp_path_factory) -> dict[str, Path]:
    """Graded in the stubs' batch: a correct submission, and a grad_cam returning a near-blank map as a tensor
    subclass that answers every comparison with 'equal' (and the same map as a plain tensor)."""
    folder = tmp_path_factory.mktemp("others") / "03_gradcam"
    folder.mkdir()
    paths = {"correct": folder / "correct.py", "liar": folder / "liar.py", "plain": folder / "plain.py"}
    paths["correct"].write_bytes((ROOT / "tests" / "submissions" / "03_gradcam.py").read_bytes())
    paths["liar"].write_text(LYING_TENSOR.replace("{wrap}", ".as_subclass(Liar)"))
    paths["plain"].write_text(LYING_TENSOR.replace("{wrap}", ""))
    return paths


@pytest.fixture(scope="module")
def graded_stubs(stubs, others) -> dict[Path, object]:
    """Every stub of every lesson and ``others``, graded in one batch (2 at a time)."""
    report = grade([*stubs, *others.values()], course=COURSE, jobs=2, seed=SEED)
    return {Path(result.path): result for result in report.submissions}


@pytest.mark.slow
def test_the_correct_submission_in_the_stubs_batch_gets_full_marks_every_check_judged(others, graded_stubs):
    result = graded_stubs[others["correct"]]
    assert result.error is None and result.score == result.max_score and all(c.judged for c in result.checks)


@pytest.mark.slow
def test_a_lying_tensor_subclass_earns_zero_like_the_plain_tensor_it_wraps(others, graded_stubs):
    """A grad_cam whose (near-blank) map is a tensor subclass answering every comparison with 'equal' earns 0, as
    the same map as a plain tensor does: the judge never sees the subclass (answers travel as data, and a subclass
    is "cannot compare"), the runner runs checks with subclass overrides switched off, and property checks count
    only once the values are right."""
    lying, honest = graded_stubs[others["liar"]], graded_stubs[others["plain"]]
    assert lying.error is None and honest.error is None
    assert [c.status for c in lying.checks] == [c.status for c in honest.checks] == ["failed"] * len(lying.checks)
    assert lying.score == honest.score == 0
    assert any("cannot compare" in c.output for c in lying.checks)


@pytest.mark.slow
def test_a_stub_of_the_right_shape_earns_nothing_on_its_function_and_costs_nothing_elsewhere(stubs, graded_stubs):
    problems, gated_seen = [], 0
    kinds = {c.name: c.kind for lesson in READY for c in plan_checks(COURSE, lesson)}
    for path, (lesson, function, kind) in sorted(stubs.items()):
        result = graded_stubs[path]
        if result.error:
            problems.append(f"{path.name}: {result.error}")
            continue
        scores = result.function_scores()
        got, most = scores[function]
        if got != 0:
            earned = [c.name for c in result.checks if c.function == function and c.score]
            problems.append(f"{lesson}/{path.stem} earns {got:.3f}/{most:g} on {function} from {earned}")
        lost = {name: s for name, s in scores.items() if name != function and s[0] < s[1]}
        if lost:
            problems.append(f"{lesson}/{path.stem} broke only {function} but lost points on {lost}")
        for c in result.checks:
            if NOT_COUNTED in c.output:
                gated_seen += 1
                if c.score or kinds[c.name] != PROPERTY or c.function != function:
                    problems.append(f"{path.stem}: {c.name} is gated but is no property check of {function} at 0")
    assert not problems, f"seed {SEED}:\n" + "\n".join(problems)
    stub = graded_stubs[next(p for p, w in stubs.items() if w[:2] == ("03_gradcam", "grad_cam"))]
    said = [c.output for c in stub.checks if NOT_COUNTED in c.output]
    assert said and all('not counted until "matches reference on random batch"' in o for o in said), said
    assert gated_seen >= len(stubs) // 2
