"""course.yml: the course manifest (lessons, graded functions, points, hidden checks, limits), validated on load.

A bad file raises ``CourseError`` listing every problem with the key's path and what is allowed there.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import sys
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from shortcutlab.errors import ShortcutlabError
from shortcutlab.timestamps import normalize_timestamp

COURSE_FILE = "course.yml"
COURSE_ENV = "SHORTCUTLAB_COURSE"
LESSON_ID = re.compile(r"^\d{2}_[a-z0-9]+(?:_[a-z0-9]+)*$")
DEFAULT_PRELOAD = ("numpy", "torch", "torch.nn.functional", "shortcutlab.data", "shortcutlab.models",
                   "shortcutlab.train")


class CourseError(ShortcutlabError):
    """course.yml is missing, unreadable or invalid, or disagrees with the check files."""


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `point:` must not silently give 0 points.
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionSpec(_Strict):
    """One graded function: its points (split equally over its checks) and its library reference."""

    points: float = Field(gt=0, description="points of the function, split equally over its checks")
    reference: str = Field(description="dotted path of the library's reference, e.g. shortcutlab.data.colorize")
    timeout: float | None = Field(default=None, gt=0, description="seconds per check (overrides the lesson's)")

    @field_validator("reference")
    @classmethod
    def _dotted(cls, value: str) -> str:
        parts = value.replace(":", ".").split(".")
        if len(parts) < 2 or not all(p.isidentifier() for p in parts):
            raise ValueError(f"must be a dotted path module.name such as shortcutlab.data.colorize, got {value!r}")
        return value


class AnswerSpec(_Strict):
    """One written answer to a "What you found" question: an nbgrader manually graded cell ``answer_<id>``."""

    points: float = Field(gt=0, description="points an instructor can give the answer")


class LatePenaltySpec(_Strict):
    """How late hand-ins lose points (grades.csv's late_submission_penalty): a share of the lesson's points per started
    day past its due time (course.yml ``grading.due``), after a grace period, up to a cap."""

    per_day: float = Field(default=0.0, ge=0, le=1, description="share of the lesson's points (code and written "
                           "answers) taken per started day late, e.g. 0.1")
    max: float = Field(default=1.0, ge=0, le=1, description="the largest share a late hand-in can lose")
    grace_minutes: float = Field(default=0.0, ge=0, description="minutes after the due time still counted on time")
    flagged_days: float = Field(default=1.0, ge=0, description="days late counted for a hand-in the LMS marks late "
                                "without saying when it came (Canvas's LATE in a download's file name)")


class GradingSpec(_Strict):
    """Limits of the grader, for every lesson unless a lesson overrides them."""

    timeout: float = Field(default=60, gt=0, description="seconds per check")
    load_timeout: float = Field(default=120, gt=0, description="seconds to run a submission's setup and graded cells")
    memory_mb: int = Field(default=4096, ge=256, description="memory cap of a submission's process (MiB)")
    output_limit: int = Field(default=4000, ge=200, description="characters of output kept per check")
    allow_reference: bool = Field(default=False, description="let a graded function be, or call, the library's "
                                                             "reference for itself (self-study); by default "
                                                             "such a function scores 0 on its checks")
    preload: tuple[str, ...] = Field(default=DEFAULT_PRELOAD,
                                     description="modules the grading server imports once, before any submission")
    derive_timeouts: bool = Field(default=True, description="time each check on the reference (once, cached) and "
                                  "give a check whose function and lesson set no timeout max(timeout_floor, "
                                  "timeout_factor x that time), at most `timeout`")
    timeout_floor: float = Field(default=10, gt=0, description="seconds: the least a derived timeout may be")
    timeout_factor: float = Field(default=20, gt=0, description="a derived timeout is this many times the "
                                                                "reference's own time")
    submission_budget: float | None = Field(default=None, gt=0, description="seconds one submission may take in "
                                            "all, loading and checks; then its remaining checks time out "
                                            "(default: load_timeout + twice the longest check timeout of each "
                                            "graded function, at most 900)")
    require_sandbox: bool = Field(default=False, description="refuse to grade where the OS sandbox (bubblewrap) "
                                                             "cannot run")
    roster: str | None = Field(default=None, description="the class roster, a CSV file relative to course.yml with a "
                               "student_id column and optional name (or first_name, last_name) and email columns")
    due: dict[str, str] = Field(default_factory=dict, description="due time per lesson id, e.g. '2025-03-01 23:59 "
                                "Europe/Berlin' (an offset, a zone name, or none for UTC)")
    late_penalty: LatePenaltySpec = LatePenaltySpec()
    similarity_threshold: float = Field(default=0.75, ge=0, le=1, description="flag two submissions of a lesson (or a "
                                        "submission and the reference or a known outside solution) sharing at least "
                                        "this fraction of the smaller one's code (similarity.csv); measured: "
                                        "independent correct solutions share at most 0.63, renamed and pasted copies "
                                        "at least 0.83")

    @field_validator("due", mode="before")
    @classmethod
    def _due_as_text(cls, value: object) -> object:
        """YAML reads ``2025-03-01 23:59:00`` as a datetime (a naive one: UTC, as nbgrader takes it): keep it as text."""
        if isinstance(value, dict):
            return {key: when.isoformat(sep=" ") if hasattr(when, "hour") else str(when) if when is not None else ""
                    for key, when in value.items()}
        return value
    seed: int | None = Field(default=None, ge=0, lt=2**31, description="base seed of the checks' inputs (default: a "
                             "secret drawn at random by each gradebook, nbgrader export or Gradescope bundle; set it "
                             "only where students cannot read course.yml)")


class StudentEditionSpec(_Strict):
    """What students install where shortcutlab is missing: each lesson's first cell installs it from ``url``."""

    url: str | None = Field(default=None, description="the edition's wheel: a URL (https://...) or a path on the "
                            "students' machines; none: the first cell tells a student without shortcutlab what to do")
    shared: list[str] = Field(default_factory=list, description="library definitions a reference uses that every "
                              "edition ships all the same: the lessons' vocabulary (a result type, a device "
                              "helper), which computes no answer ('module.name' or 'module:Class.method')")
    models: list[str] = Field(default_factory=list, description="study models the lessons load with "
                              "shortcutlab.pretrained: a student edition ships each, trained on the embedded digits, "
                              "as an exported program (never its class's source)")
    same_computation: dict[str, str] = Field(default_factory=dict, description="library code holding a graded "
                                             "function's computation inline ('module.name' -> '<lesson id>."
                                             "<function>'): withheld from every edition that withholds that function")


class PathsSpec(_Strict):
    """Folders relative to course.yml."""

    solutions: str = "solutions"
    lessons: str = "lessons"
    autograder: str = "autograder"


class LessonSpec(_Strict):
    """One lesson: its notebook, graded functions and limits."""

    id: str
    title: str = Field(min_length=1)
    notebook: str = Field(description="file name of the notebook in solutions/ and lessons/")
    checks: str | None = Field(default=None, description="check file relative to course.yml "
                                                         "(default: <autograder>/test_<id>.py)")
    timeout: float | None = Field(default=None, gt=0, description="seconds per check")
    load_timeout: float | None = Field(default=None, gt=0)
    functions: dict[str, FunctionSpec] = Field(min_length=1)
    hidden: tuple[str, ...] = Field(default=(), description="names of checks hidden from students, in addition "
                                                            "to those marked @check(..., hidden=True)")
    answers: dict[str, AnswerSpec] = Field(default_factory=dict, description="written answers graded by hand, "
                                                                           "by question id (q1, q2, ...)")

    @field_validator("id")
    @classmethod
    def _lesson_id(cls, value: str) -> str:
        if not LESSON_ID.match(value):
            raise ValueError(f"lesson id must be two digits, an underscore and lowercase words joined by "
                             f"underscores, e.g. 03_gradcam; got {value!r}")
        return value

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, value: str) -> str:
        if not value.endswith(".ipynb") or "/" in value or "\\" in value:
            raise ValueError(f"must be a notebook file name ending in .ipynb (no folder), got {value!r}")
        return value

    @field_validator("functions")
    @classmethod
    def _function_names(cls, value: dict[str, FunctionSpec]) -> dict[str, FunctionSpec]:
        bad = [name for name in value if not name.isidentifier()]
        if bad:
            raise ValueError(f"function names must be Python identifiers, got {', '.join(map(repr, bad))}")
        return value

    @field_validator("answers")
    @classmethod
    def _answer_ids(cls, value: dict[str, AnswerSpec]) -> dict[str, AnswerSpec]:
        bad = [name for name in value if not re.fullmatch(r"q[1-9][0-9]*", name)]
        if bad:
            raise ValueError(f"answer ids are q1, q2, ... (the question's number), got {', '.join(map(repr, bad))}")
        return value

    @field_validator("hidden")
    @classmethod
    def _hidden_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not name.isidentifier()]
        if bad:
            raise ValueError(f"hidden lists check function names (Python identifiers), got {', '.join(map(repr, bad))}")
        return value


class Course(_Strict):
    """The validated course manifest; paths resolve against the folder holding course.yml."""

    version: Literal[1]
    title: str = Field(min_length=1)
    paths: PathsSpec = PathsSpec()
    grading: GradingSpec = GradingSpec()
    student_edition: StudentEditionSpec = StudentEditionSpec()
    lessons: tuple[LessonSpec, ...] = Field(min_length=1)
    _root: Path = PrivateAttr(default=Path("."))
    _file: Path = PrivateAttr(default=Path(COURSE_FILE))

    @model_validator(mode="after")
    def _unique_ids(self) -> "Course":
        seen: set[str] = set()
        for lesson in self.lessons:
            if lesson.id in seen:
                raise ValueError(f"lesson id {lesson.id!r} appears twice; each lesson needs its own id")
            seen.add(lesson.id)
        return self

    @model_validator(mode="after")
    def _due_times(self) -> "Course":
        for lesson_id, when in self.grading.due.items():
            if lesson_id not in self.lesson_ids:
                raise ValueError(f"grading.due names lesson {lesson_id!r}, which is not in the course (its lessons: "
                                 f"{', '.join(self.lesson_ids)})")
            if not normalize_timestamp(str(when)):
                raise ValueError(f"grading.due for {lesson_id} is {when!r}, not a time; write e.g. '2025-03-01 "
                                 "23:59', '2025-03-01 23:59 +01:00' or '2025-03-01 23:59 Europe/Berlin'")
        return self

    @model_validator(mode="after")
    def _same_computation_targets(self) -> "Course":
        graded = {f"{lesson.id}.{name}" for lesson in self.lessons for name in lesson.functions}
        for code, target in self.student_edition.same_computation.items():
            if target not in graded:
                raise ValueError(f"student_edition.same_computation maps {code!r} to {target!r}, which is no graded "
                                 f"function; write '<lesson id>.<function>', e.g. {sorted(graded)[0]!r}")
        return self

    def due(self, lesson: LessonSpec | str) -> str:
        """The lesson's due time in UTC (nbgrader's format), '' if course.yml sets none."""
        lesson_id = lesson if isinstance(lesson, str) else lesson.id
        when = self.grading.due.get(lesson_id)
        return normalize_timestamp(str(when)) if when else ""

    @property
    def roster_file(self) -> Path | None:
        """course.yml's ``grading.roster``, resolved against its folder."""
        return (self._root / self.grading.roster) if self.grading.roster else None

    @property
    def root(self) -> Path:
        return self._root

    @property
    def file(self) -> Path:
        """The file this course was read from (what export-nbgrader and the Gradescope bundle copy)."""
        return self._file

    @property
    def lesson_ids(self) -> tuple[str, ...]:
        return tuple(lesson.id for lesson in self.lessons)

    @property
    def graded_names(self) -> tuple[str, ...]:
        """Every lesson's graded functions and classes, in course order, each once (check titles spell them)."""
        return tuple(dict.fromkeys(name for lesson in self.lessons for name in lesson.functions))

    def lesson(self, lesson_id: str) -> LessonSpec:
        """The lesson with this id; CourseError naming the known ids otherwise."""
        for lesson in self.lessons:
            if lesson.id == lesson_id:
                return lesson
        raise CourseError(f"no lesson {lesson_id!r} in {self._root / COURSE_FILE}; choose one of: "
                          f"{', '.join(self.lesson_ids)}")

    def check_file(self, lesson: LessonSpec | str) -> Path:
        """The lesson's check file, autograder/test_<id>.py unless course.yml says otherwise."""
        lesson = self.lesson(lesson) if isinstance(lesson, str) else lesson
        relative = lesson.checks or f"{self.paths.autograder}/test_{lesson.id}.py"
        return (self._root / relative).resolve()

    def solution_notebook(self, lesson: LessonSpec | str) -> Path:
        lesson = self.lesson(lesson) if isinstance(lesson, str) else lesson
        return self._root / self.paths.solutions / lesson.notebook

    def lesson_notebook(self, lesson: LessonSpec | str) -> Path:
        lesson = self.lesson(lesson) if isinstance(lesson, str) else lesson
        return self._root / self.paths.lessons / lesson.notebook

    def timeout(self, lesson: LessonSpec, function: str | None = None) -> float:
        """Seconds one check may run: the function's, else the lesson's, else the course default."""
        spec = lesson.functions.get(function) if function else None
        if spec is not None and spec.timeout is not None:
            return spec.timeout
        return lesson.timeout if lesson.timeout is not None else self.grading.timeout

    def load_timeout(self, lesson: LessonSpec) -> float:
        return lesson.load_timeout if lesson.load_timeout is not None else self.grading.load_timeout

    def function(self, lesson_id: str, function: str) -> FunctionSpec:
        """A lesson's graded function; CourseError naming the lesson's functions otherwise."""
        lesson = self.lesson(lesson_id)
        if function not in lesson.functions:
            raise CourseError(f"lesson {lesson_id} grades {', '.join(lesson.functions)}; it has no function "
                              f"{function!r}")
        return lesson.functions[function]


def import_object(dotted: str) -> Any:
    """The object at a dotted path (``pkg.module.name`` or ``pkg.module:name``)."""
    module_name, _, attr = dotted.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CourseError(f"reference {dotted!r} in course.yml cannot be imported ({exc}); fix the dotted path") \
            from exc
    if not hasattr(module, attr):
        raise CourseError(f"reference {dotted!r} in course.yml cannot be imported (module {module_name} has no "
                          f"attribute {attr}); fix the dotted path")
    return getattr(module, attr)


# Values that are never callable, whatever they hold: `name = [..]`, `name = 3`, ...
_NOT_CALLABLE = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.SetComp, ast.DictComp,
                 ast.GeneratorExp, ast.JoinedStr)


def _top_level_binding(tree: ast.Module, name: str) -> str | None:
    """How a module's source binds ``name`` at top level: "callable" (def, class), "other" (a literal, a
    module), "unknown" (``from m import name``, an assignment of some expression, ``import *``, a module
    ``__getattr__``), None (not at all)."""
    found: str | None = None
    statements = list(tree.body)
    while statements:
        node = statements.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return "callable"
            if node.name == "__getattr__":
                found = found or "unknown"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    found = found or "unknown"
                elif (alias.asname or alias.name.split(".")[0]) == name:
                    return "unknown" if isinstance(node, ast.ImportFrom) else "other"
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if name in names and node.value is not None:
                found = "other" if isinstance(node.value, _NOT_CALLABLE) else "unknown"
        elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    statements.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return found


def reference_problem(dotted: str) -> str | None:
    """Why the reference ``dotted`` cannot be used (None: it imports and is callable).

    A module already imported is asked directly; otherwise its source is read with ``ast``, not imported, so
    loading the course never imports torch (the grading parent must not). Modules without Python source are
    imported.
    """
    module_name, _, attr = dotted.replace(":", ".").rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError) as exc:  # a parent package that is missing, or a bad name
            spec, why = None, str(exc)
        else:
            why = f"no module named {module_name}"
        if spec is None:
            return f"{dotted} does not exist ({why})"
        origin = spec.origin if spec.has_location else None
        if origin and origin.endswith(".py"):
            try:
                tree = ast.parse(Path(origin).read_text(encoding="utf-8"), origin)
            except (OSError, SyntaxError, ValueError) as exc:
                return f"{dotted} cannot be imported ({module_name} cannot be read: {exc})"
            binding = _top_level_binding(tree, attr)
            if binding is None:
                return f"{dotted} does not exist (module {module_name} has no attribute {attr})"
            if binding == "other":
                return f"{dotted} is not callable; name the library's function or class"
            return None
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the course's problem to report
            return f"{dotted} cannot be imported ({type(exc).__name__}: {exc})"
    if not hasattr(module, attr):
        return f"{dotted} does not exist (module {module_name} has no attribute {attr})"
    if not callable(getattr(module, attr)):
        return f"{dotted} is not callable (it is a {type(getattr(module, attr)).__name__}); name the library's " \
               f"function or class"
    return None


def _reference_problems(course: "Course") -> list[str]:
    lines = []
    for index, lesson in enumerate(course.lessons):
        for name, spec in lesson.functions.items():
            problem = reference_problem(spec.reference)
            if problem:
                lines.append(f"lessons[{index}] ({lesson.id}).functions.{name}.reference: {problem}")
    return lines


# ----------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise CourseError(f"line {line}: key {key!r} appears twice in the same mapping (first on line "
                              f"{seen[key]}); keep one")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _walk(loc: tuple, raw: Any) -> tuple[Any, Any, str]:
    """(annotation holding the last key, annotation at ``loc``, readable path with lesson ids named)."""
    parent: Any = None
    here: Any = Course
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            node = node[item] if isinstance(node, list) and item < len(node) else None
            lesson_id = node.get("id") if isinstance(node, dict) else None
            parts.append(f"[{item}]" + (f" ({lesson_id})" if isinstance(lesson_id, str) else ""))
        else:
            node = node.get(item) if isinstance(node, dict) else None
            parts.append(("." if parts else "") + str(item))
        parent, here = here, _step(here, item)
    return parent, here, "".join(parts) or "(top level)"


def _step(annotation: Any, item: Any) -> Any:
    """Follow one loc element through the annotations (model field, list/tuple item, dict value)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(item) if isinstance(item, str) else None
        return _unwrap(field.annotation) if field else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(annotation: Any) -> Any:
    """X for ``X | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return args[0]
    return annotation


def _keys(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ", ".join(annotation.model_fields)
    return "?"


_TYPE_WORDS = {
    "float_type": "a number", "float_parsing": "a number", "int_type": "a whole number",
    "int_parsing": "a whole number", "int_from_float": "a whole number", "string_type": "text (a string)",
    "tuple_type": "a list", "list_type": "a list", "dict_type": "a mapping", "bool_type": "true or false",
}


def _describe(error: dict, raw: Any) -> str | None:
    """One line per pydantic error: the key's path, what is wrong, and what is allowed (None: not worth saying)."""
    loc = tuple(error["loc"])
    kind, got, ctx = error["type"], error.get("input"), error.get("ctx", {})
    parent, here, path = _walk(loc, raw)
    if kind == "extra_forbidden":
        return f"{path}: unknown key; allowed keys here: {_keys(parent)}"
    if kind == "missing":
        return f"{path}: required key is missing (keys here: {_keys(parent)})"
    if kind == "literal_error":
        return f"{path}: must be {ctx['expected']}, got {got!r}"
    if kind in ("greater_than", "greater_than_equal"):
        op, limit = (">", ctx["gt"]) if kind == "greater_than" else (">=", ctx["ge"])
        return f"{path}: must be a number {op} {limit:g}, got {got!r}"
    if kind in ("too_short", "string_too_short"):
        # pydantic also reports a list as too short when only its items were invalid: say nothing then
        if kind == "too_short" and hasattr(got, "__len__") and len(got) >= ctx.get("min_length", 1):
            return None
        return f"{path}: must not be empty"
    if kind == "value_error":
        return f"{path}: {error['msg'].removeprefix('Value error, ')}"
    if kind in ("model_type", "model_attributes_type"):
        return f"{path}: must be a mapping with keys {_keys(here)}; got {type(got).__name__} {got!r}"
    if kind in _TYPE_WORDS:
        return f"{path}: must be {_TYPE_WORDS[kind]}, got {type(got).__name__} {got!r}"
    return f"{path}: {error['msg'][:1].lower()}{error['msg'][1:]}, got {got!r}"


def parse_course(text: str, where: str | Path = COURSE_FILE, root: Path | None = None) -> Course:
    """Validate course.yml text; ``where`` names the file in messages, ``root`` anchors relative paths."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except CourseError as exc:
        raise CourseError(f"{where} {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CourseError(f"{where}{at}: not valid YAML ({problem}); fix the indentation or quoting there") \
            from None
    if not isinstance(raw, dict):
        raise CourseError(f"{where}: must be a mapping with keys {_keys(Course)}, got "
                          f"{type(raw).__name__}")
    try:
        course = Course.model_validate(raw)
    except ValidationError as exc:
        lines = [line for line in (_describe(error, raw) for error in exc.errors()) if line]
        count = f"{len(lines)} problem" + ("s" if len(lines) != 1 else "")
        raise CourseError(f"{where} is invalid ({count}):\n  - " + "\n  - ".join(lines)) from None
    # Every reference must import and be callable: a typo would silently switch off the "calls the reference"
    # rule and leave the pytest fixtures without a default.
    lines = _reference_problems(course)
    if lines:
        count = f"{len(lines)} problem" + ("s" if len(lines) != 1 else "")
        raise CourseError(f"{where} is invalid ({count}):\n  - " + "\n  - ".join(lines))
    course._root = (root if root is not None else Path(where).resolve().parent)
    course._file = Path(where) if Path(where).is_absolute() else course._root / Path(where).name
    return course


def find_course_file(path: str | os.PathLike | None = None) -> Path:
    """course.yml: ``path``, else $SHORTCUTLAB_COURSE, else the repository root, else the packaged copy."""
    if path is not None:
        chosen = Path(path)
        if chosen.is_dir():
            chosen = chosen / COURSE_FILE
        if not chosen.is_file():
            raise CourseError(f"no course file at {chosen}; pass the path of a course.yml")
        return chosen.resolve()
    env = os.environ.get(COURSE_ENV)
    if env:
        if not Path(env).is_file():
            raise CourseError(f"${COURSE_ENV} points at {env}, which is not a file; fix or unset it")
        return Path(env).resolve()
    package = Path(__file__).resolve().parent
    candidates = [package.parent / COURSE_FILE, package / COURSE_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CourseError(f"no course.yml found (looked at {', '.join(map(str, candidates))}); pass --course PATH or "
                      f"set ${COURSE_ENV}")


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int, size: int) -> Course:
    return parse_course(path.read_text(encoding="utf-8"), where=path, root=path.parent)


def load_course(path: str | os.PathLike | None = None) -> Course:
    """The validated course (cached until the file changes); see ``find_course_file`` for the search order."""
    found = find_course_file(path)
    stat = found.stat()
    return _load_cached(found, stat.st_mtime_ns, stat.st_size)
