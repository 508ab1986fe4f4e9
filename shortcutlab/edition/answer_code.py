"""The answer key inside the library, read from the modules' text (nothing is imported): for each graded
function, its reference and every library definition the reference uses, followed to the end, plus the library
code that holds the same computation inline (course.yml ``student_edition.same_computation``), less the names the
lessons use as plain vocabulary (``student_edition.shared``).

A definition is named ``module:qualname`` (``shortcutlab.data:colorize``, ``shortcutlab.data:ColoredMNIST.render``)
and belongs to the first lesson, in course order, whose answer holds it.
"""
from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.course import Course, CourseError

PACKAGE = "shortcutlab"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def first_line(node: ast.stmt) -> int:
    """The 1-based line a statement starts on, its decorators included."""
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])


@dataclass(frozen=True)
class ParsedModule:
    """A library module read as text: its source, its top-level functions and classes by name, and the names it
    imports from other library modules (local name -> (module, name))."""

    name: str
    path: Path
    text: str
    definitions: dict[str, Definition]
    imported: dict[str, tuple[str, str]]

    def definition(self, qualname: str) -> Definition | None:
        """The function or class at ``qualname`` ("f", "Class", "Class.method"); None if there is none."""
        head, _, rest = qualname.partition(".")
        node = self.definitions.get(head)
        for part in rest.split(".") if rest else ():
            members = {child.name: child for child in getattr(node, "body", ())
                       if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            node = members.get(part)
        return node

    def source(self, node: Definition) -> str:
        """The text of ``node``, decorators included."""
        return "\n".join(self.text.splitlines()[first_line(node) - 1:node.end_lineno])


def module_path(package_dir: Path, module: str) -> Path | None:
    """The source file of shortcutlab module ``module`` under ``package_dir``, found by path (nothing is imported)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class LibraryText:
    """shortcutlab's modules as found under ``package_dir`` (the installed package by default), parsed once each."""

    def __init__(self, package_dir: str | Path = PACKAGE_DIR) -> None:
        self.package_dir = Path(package_dir)
        self.module = functools.lru_cache(maxsize=None)(self._module)

    def _module(self, name: str) -> ParsedModule | None:
        path = module_path(self.package_dir, name)
        if path is None:
            return None
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
        definitions = {node.name: node for node in tree.body
                       if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        imported = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE \
                    and not node.level:
                for alias in node.names:
                    imported[alias.asname or alias.name] = (node.module, alias.name)
        return ParsedModule(name, path, text, definitions, imported)

    def modules(self) -> Iterator[ParsedModule]:
        """Every module of the package, in path order."""
        for path in sorted(self.package_dir.rglob("*.py")):
            relative = path.relative_to(self.package_dir).with_suffix("")
            parts = [PACKAGE, *relative.parts]
            if parts[-1] == "__init__":
                parts.pop()
            parsed = self.module(".".join(parts))
            if parsed is not None:
                yield parsed

    def locate(self, dotted: str) -> tuple[str, str]:
        """``dotted`` ("pkg.module.name", "pkg.module:Class.method") as (module, qualname) of a definition here."""
        if ":" in dotted:
            module, qualname = dotted.split(":", 1)
        else:
            module, _, qualname = dotted.rpartition(".")
        parsed = self.module(module)
        if parsed is None or parsed.definition(qualname) is None:
            if parsed is not None and qualname in parsed.imported:
                return self.locate(".".join(parsed.imported[qualname]))
            raise CourseError(f"{dotted!r} names no function or class in the library's source; fix course.yml")
        return module, qualname

    def uses(self, dotted: str, depth: int | None = None) -> list[tuple[str, str]]:
        """``dotted`` and the library definitions its code names (a class's methods included), followed ``depth``
        calls deep (None: to the end), as (module, qualname) in the order found; none for code outside the library
        (a course may take a reference from elsewhere: no edition of the library holds it)."""
        if dotted.replace(":", ".").split(".")[0] != PACKAGE:
            return []
        found: list[tuple[str, str]] = []
        frontier = [self.locate(dotted)]
        level = 0
        while frontier and (depth is None or level <= depth):
            following = []
            for module, qualname in frontier:
                if (module, qualname) in found:
                    continue
                parsed = self.module(module)
                node = parsed.definition(qualname) if parsed else None
                if node is None:
                    continue
                found.append((module, qualname))
                own = qualname.split(".")[0]
                for used in sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {own}):
                    if used in parsed.definitions:
                        following.append((module, used))
                    elif used in parsed.imported:
                        target, name = parsed.imported[used]
                        try:
                            following.append(self.locate(f"{target}.{name}"))
                        except CourseError:
                            continue  # a constant or module imported by name: data, not code
            frontier = following
            level += 1
        return found

    def source(self, module: str, qualname: str) -> str:
        parsed = self.module(module)
        node = parsed.definition(qualname) if parsed else None
        if node is None:
            raise CourseError(f"{module}:{qualname} is not in the library's source")
        return parsed.source(node)


def normalized(node: Definition) -> str:
    """``node`` as a comparable text: its AST without positions, docstrings or its own name, so the same code
    defined under another name, elsewhere or with other documentation compares equal."""
    copy = ast.parse(ast.unparse(node)).body[0]
    for inner in ast.walk(copy):
        body = getattr(inner, "body", None)
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            inner.body = body[1:] or [ast.Pass()]
    copy.name = "_"
    return ast.dump(copy, annotate_fields=False)


@dataclass(frozen=True)
class AnswerDefinition:
    """A library definition that computes (part of) the answer of ``lesson``'s graded ``function``."""

    module: str
    qualname: str
    lesson: str
    function: str

    @property
    def name(self) -> str:
        return f"{self.module}:{self.qualname}"


def answer_definitions(course: Course, library: LibraryText | None = None) -> list[AnswerDefinition]:
    """Every definition holding a graded function's answer, each once, owned by the first lesson whose answer
    holds it (course order), in that order."""
    library = library or LibraryText()
    edition = course.student_edition
    shared = {library.locate(name) for name in edition.shared}
    inline: dict[str, list[tuple[str, str]]] = {}
    for name, graded in edition.same_computation.items():
        inline.setdefault(graded, []).append(library.locate(name))
    owned: dict[tuple[str, str], AnswerDefinition] = {}
    for lesson in course.lessons:
        for function, spec in lesson.functions.items():
            found = library.uses(spec.reference)
            found += inline.get(f"{lesson.id}.{function}", [])  # itself only: what it calls is not the answer
            for key in found:
                if key not in shared and key not in owned:
                    owned[key] = AnswerDefinition(key[0], key[1], lesson.id, function)
    return list(owned.values())
