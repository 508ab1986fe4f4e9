"""One mistake, one penalty: run a student's function or class with another graded function replaced by the
library's reference, so a wrong or missing dependency costs points on its own checks only."""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

_ABSENT = object()


def _globals_of(student: object) -> list[dict]:
    """The global namespaces the student's function (or the methods of the student's class) read names from;
    never a module of the library or of torch (the reference itself, or a class derived from theirs)."""
    found = []
    if isinstance(student, type):
        for klass in student.__mro__:
            if str(getattr(klass, "__module__", "")).startswith(("shortcutlab", "torch", "builtins")):
                continue
            for value in vars(klass).values():
                value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                found += [value.fget, value.fset, value.fdel] if isinstance(value, property) else [value]
    else:
        try:
            found.append(inspect.unwrap(student))  # the grader may hand the check a recording wrapper
        except (TypeError, ValueError):
            found.append(student)
    spaces: list[dict] = []
    for function in found:
        space = getattr(function, "__globals__", None)
        if (isinstance(space, dict) and not str(space.get("__name__", "")).startswith(("shortcutlab", "torch"))
                and all(space is not seen for seen in spaces)):
            spaces.append(space)
    return spaces


@contextlib.contextmanager
def with_reference(student: object, name: str, reference: object) -> Iterator[None]:
    """While the block runs, the graded function ``name`` means the library's ``reference`` in the student's code
    (it is looked up in the submission's globals at each call); restored after. One mistake, one penalty: a wrong
    or missing ``name`` costs points on its own checks, not also on those of the function that calls it."""
    saved = []
    for space in _globals_of(student):
        if space.get(name, _ABSENT) is not reference:
            saved.append((space, space.get(name, _ABSENT)))
            space[name] = reference
    try:
        yield
    finally:
        for space, value in reversed(saved):
            if value is _ABSENT:
                space.pop(name, None)
            else:
                space[name] = value
