"""Same behaviour, same grade: does a grade depend only on what the graded code does?

Every mutant of tests/mutants/ (one graded function broken) and every correct submission is graded twice per seed,
as it is and as a variant that differs only in comments and local names (``variant_source``), under the base seeds
0-9. Each must get one score per seed whichever file it is, and each check the same verdict under every seed: a
check decides on enough inputs that its outcome never depends on the seed, for correct code or any mutant. And
every mutant, under every seed, loses points on its broken function and keeps them on every other one.

This is the heaviest proof of the suite (about 2,500 gradings, some 15 minutes on 2 cores): it runs with
``make test-slow`` (and in CI), not with ``make test``. The variant maker itself has fast tests here.
"""
from __future__ import annotations

import ast
import hashlib
import os
from collections import defaultdict
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.engine.runner import grade

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT / "course.yml")
MUTANTS = sorted((ROOT / "tests" / "mutants").glob("*/*.py"))
CORRECT = sorted(p for p in (ROOT / "tests" / "submissions").glob("*.py") if p.stem in COURSE.lesson_ids)
SEEDS = tuple(range(int(os.environ.get("SHORTCUTLAB_FAIRNESS_SEEDS", "10"))))


class _Renamer(ast.NodeTransformer):
    """Renames the local variables of one function (not its parameters, globals or nonlocals) throughout its body,
    nested functions and comprehensions included, unless a nested scope takes the same name as a parameter."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.names:
            node.id = self.names[node.id]
        return node


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = node.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
    return {a.arg for a in names}


def _locals(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names a function binds by assignment, loops, ``with ... as`` and comprehensions, less what it declares global
    or nonlocal and what any nested function or lambda takes as a parameter (renaming those would change them)."""
    bound, declared, shadowed = set(), set(), set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared |= set(node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and node is not function:
            shadowed |= _parameters(node)
            if not isinstance(node, ast.Lambda):
                shadowed.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            shadowed.add(node.name)  # `except E as e` is a name ast.Name does not carry
    return bound - declared - shadowed - _parameters(function)


def variant_source(source: str, salt: str = "v") -> str:
    """``source`` with every comment gone, a comment of its own at the top and each function's local variables
    renamed: the same behaviour written differently (what two students sharing an idea hand in)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = {name: f"{name}_{hashlib.sha256((salt + name).encode()).hexdigest()[:6]}"
                     for name in sorted(_locals(node))}
            for statement in node.body:
                _Renamer(names).visit(statement)
    return f"# my own work, written {salt}\n" + ast.unparse(tree) + "\n"


def test_a_variant_renames_locals_and_drops_comments_but_not_parameters_or_globals():
    source = ("import torch\nSCALE = 2  # a global\n\n\ndef f(x, k=1):\n    total = x * k  # local\n"
              "    for item in range(2):\n        total = total + item\n    return total * SCALE\n")
    variant = variant_source(source)
    assert "# a global" not in variant and "# local" not in variant and variant.startswith("# my own work")
    names = {node.id for node in ast.walk(ast.parse(variant)) if isinstance(node, ast.Name)}
    assert {"x", "k", "SCALE", "range"} <= names and not {"total", "item"} & names
    assert "def f(x, k=1):" in variant
    namespace: dict = {}
    exec(compile(variant, "variant", "exec"), namespace)  # noqa: S102 - the test's own code
    assert namespace["f"](3, 2) == (3 * 2 + 0 + 1) * 2


def test_a_variant_of_every_mutant_compiles_and_differs_from_it():
    for path in MUTANTS + CORRECT:
        source = path.read_text(encoding="utf-8")
        variant = variant_source(source)
        compile(variant, str(path), "exec")
        assert variant != source, path


def test_a_variant_keeps_a_closure_and_a_nested_parameter_working():
    source = ("def outer(x):\n    scale = 3\n    def inner(y, scale=None):\n        return y\n"
              "    hook = lambda v: v * 2\n    try:\n        raise ValueError\n    except ValueError as err:\n"
              "        kept = err\n    return [inner(i) * 2 for i in range(x)], hook(scale), type(kept)\n")
    namespace: dict = {}
    exec(compile(variant_source(source), "variant", "exec"), namespace)  # noqa: S102 - the test's own code
    assert namespace["outer"](3) == ([0, 2, 4], 6, ValueError)


@pytest.mark.heavy
def test_the_same_behaviour_gets_the_same_grade_and_no_verdict_depends_on_the_seed(tmp_path):
    originals = MUTANTS + CORRECT
    variants = []
    for path in originals:
        variant = tmp_path / path.parent.name / f"{path.stem}.py"  # the same lesson and name, elsewhere
        variant.parent.mkdir(parents=True, exist_ok=True)
        variant.write_text(variant_source(path.read_text(encoding="utf-8"), salt=path.stem), encoding="utf-8")
        variants.append(variant)
    twin = {str(v): str(p) for p, v in zip(originals, variants)}
    verdicts: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    different: list[str] = []
    missed: list[str] = []
    for seed in SEEDS:
        report = grade(originals + variants, jobs=2, seed=seed, course=COURSE, warn=lambda message: None)
        by_path = {r.path: r for r in report.submissions}
        for path in MUTANTS:  # one mistake, one penalty (tests/test_mutants.py's rule, for every mutant and seed)
            scores = by_path[str(path)].function_scores()
            function = path.stem.partition("__")[0]
            got, most = scores[function]
            lost = {name: s for name, s in scores.items() if name != function and s[0] < s[1]}
            if got >= most or lost:
                missed.append(f"{path.parent.name}/{path.stem} seed {seed}: {got:g}/{most:g} on {function}"
                              + (f", lost points on {lost}" if lost else ""))
        for variant, original in twin.items():
            mine, theirs = by_path[variant], by_path[original]
            if [(c.name, c.status, c.score) for c in mine.checks] != [(c.name, c.status, c.score)
                                                                     for c in theirs.checks]:
                different.append(f"{Path(original).parent.name}/{Path(original).stem} seed {seed}: "
                                 f"{theirs.score:g} as written, {mine.score:g} with other comments and names")
            for check in theirs.checks:
                verdicts[original][check.name].add(str(check.status))
    assert not missed, "mutants not caught on their function alone:\n" + "\n".join(missed)
    assert not different, "the same code written differently got another grade:\n" + "\n".join(different)
    flips = [f"{Path(path).parent.name}/{Path(path).stem}: {name} {sorted(statuses)}"
             for path, checks in verdicts.items() for name, statuses in checks.items() if len(statuses) > 1]
    assert not flips, f"verdicts that depend on the seed (seeds {SEEDS[0]}-{SEEDS[-1]}):\n" + "\n".join(flips)
    for path in CORRECT:
        assert verdicts[str(path)] and all(statuses == {"passed"} for statuses in verdicts[str(path)].values()), \
            f"{path.stem} is not at full marks under every seed: {dict(verdicts[str(path)])}"
