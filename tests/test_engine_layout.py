"""Can a newcomer read the grading engine? Its packages import in one direction only (core <- engine <- store <-
outputs <- integrations), no module imports another that imports it back, and no module reaches for another's
private names. Imports are read from the source (``ast``), those inside functions included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shortcutlab

PACKAGE = Path(shortcutlab.__file__).resolve().parent
# Each layer may import its own and the ones before it; the top-level modules of shortcutlab.grading are the core
# (the check-author API, statuses, results, wording) that every layer shares.
LAYERS = ("core", "engine", "store", "outputs", "integrations")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import of a shortcutlab module in ``name``'s source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("shortcutlab")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if not base.startswith("shortcutlab"):
                continue
            names = [alias.name for alias in node.names]
            submodules = [n for n in names if f"{base}.{n}" in MODULES]
            found += [(f"{base}.{n}", [], node.lineno) for n in submodules]
            found.append((base, [n for n in names if n not in submodules], node.lineno))
    return found


def _edges(prefix: str = "shortcutlab.grading") -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name) if target.startswith(prefix) and target != name
                   and target in MODULES}
            for name in MODULES if name.startswith(prefix)}


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[2] if len(parts) > 3 else "core"


def test_the_grading_engine_has_one_module_per_layer_package():
    packages = {_layer(name) for name in MODULES if name.startswith("shortcutlab.grading.")}
    assert packages == set(LAYERS)


def test_no_grading_module_imports_a_later_layer():
    upward = []
    for name, targets in _edges().items():
        if name == "shortcutlab.grading":  # the public face: lazy re-exports of check_in_notebook and grade
            continue
        for target in targets:
            if LAYERS.index(_layer(target)) > LAYERS.index(_layer(name)):
                upward.append(f"{name} ({_layer(name)}) imports {target} ({_layer(target)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_grading_modules():
    edges = _edges()
    cycles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges.get(name, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("root", ["shortcutlab"])
def test_no_module_imports_another_modules_private_names(root):
    private = [f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} takes {', '.join(n for n in names if n.startswith('_'))} from {target}"
               for name in MODULES if name.startswith(root)
               for target, names, line in _imports(name) if any(n.startswith("_") and n != "__version__" for n in names)]
    assert not private, "\n".join(private)


def test_the_layer_rules_see_a_backward_import_and_a_cycle(tmp_path, monkeypatch):
    """The checks above would catch an engine module importing an output, and two modules importing each other."""
    (tmp_path / "engine_mod.py").write_text("def f():\n    from shortcutlab.grading.outputs.report import render_json\n")
    (tmp_path / "output_mod.py").write_text("from shortcutlab.grading.engine.bad import f\n")
    monkeypatch.setitem(MODULES, "shortcutlab.grading.engine.bad", tmp_path / "engine_mod.py")
    monkeypatch.setitem(MODULES, "shortcutlab.grading.outputs.report", tmp_path / "output_mod.py")
    with pytest.raises(AssertionError, match="engine.bad \\(engine\\) imports shortcutlab.grading.outputs.report"):
        test_no_grading_module_imports_a_later_layer()
    with pytest.raises(AssertionError, match="engine.bad -> shortcutlab.grading.outputs.report -> "):
        test_no_import_cycle_between_grading_modules()
