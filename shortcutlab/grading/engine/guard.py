"""Finding a graded function that is, or calls, the library's reference for that same function.

Two rules, applied while a check runs in the student's process: the student's object is the reference (the
same object, a wrapper or partial of it, a copy of its code, or a subclass of a reference class); or the
reference's code starts running while a frame of the student's code is on the stack between it and the
check (however it was reached: ``from shortcutlab.data import colorize``, ``shortcutlab.data.colorize``,
``importlib``, ``getattr``, ``__import__``). The check calling the reference itself, to compute the value
it compares with, is not a use. Code is the reference's if it is the same code object or the same code read from
the library's text at run time (``normalized``: ``inspect.getsource`` or the module's file, ``exec``-ed under any
name). Meant to catch a student delegating to the library, not a student attacking the grader: code that switches
off the profiler, hides its frames or rewrites the reference's text can evade it (docs/threat-model.md).
"""
from __future__ import annotations

import functools
import inspect
import sys
import threading
import types
from typing import Any

from shortcutlab.grading.engine.environment import ENGINE_DIR


def reference_codes(reference: Any) -> set[types.CodeType]:
    """The code objects of ``reference``: a function's own (decorators unwrapped), a class's methods
    (those it defines itself, not those of its bases such as nn.Module)."""
    codes: set[types.CodeType] = set()

    def add(obj: Any) -> None:
        inner = _unwrap(obj)
        home = getattr(getattr(inner, "__code__", None), "co_filename", None)
        for candidate in (obj, inner):
            code = getattr(candidate, "__code__", None)
            # A decorator's wrapper defined elsewhere (torch.no_grad's decorate_context) is shared by every function
            # it decorates, the student's too: only code from the reference's own file is the reference's.
            if isinstance(code, types.CodeType) and code.co_filename == home:
                codes.add(code)

    if isinstance(reference, type):
        for value in vars(reference).values():
            if isinstance(value, (staticmethod, classmethod)):
                add(value.__func__)
            elif isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    if accessor is not None:
                        add(accessor)
            elif isinstance(value, (types.FunctionType, functools.partial)) or callable(value):
                add(value)
    else:
        add(reference)
    return codes


def normalized(code: types.CodeType) -> types.CodeType:
    """``code`` with what says where it came from (its name, file and first line, and those of the code nested in it)
    made the same for all: two code objects compare equal after this if and only if they compute the same way from
    the same text (instructions, constants, names, variables, relative line layout). So the reference's source
    read at run time (``inspect.getsource``, its file) and ``exec``-ed under another name is still the reference."""
    consts = tuple(normalized(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    changes: dict[str, Any] = {"co_name": "_", "co_filename": "_", "co_firstlineno": 1, "co_consts": consts}
    if hasattr(code, "co_qualname"):  # Python 3.11+
        changes["co_qualname"] = "_"
    return code.replace(**changes)


def _unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj)
    except (ValueError, TypeError):
        return obj


def _normalized_all(codes: set[types.CodeType]) -> set[types.CodeType]:
    return {normalized(code) for code in codes}


def is_reference(obj: Any, reference: Any, codes: set[types.CodeType]) -> bool:
    """``obj`` is the reference, wraps it, shares its code, or (for a class) derives from it."""
    shapes: set[types.CodeType] | None = None  # the codes normalized, once, if a code is met at all
    for _ in range(16):
        if obj is None:
            return False
        if obj is reference:
            return True
        if isinstance(reference, type) and isinstance(obj, type):
            try:
                if issubclass(obj, reference):
                    return True
            except TypeError:
                pass
        code = getattr(obj, "__code__", None)
        if isinstance(code, types.CodeType):
            shapes = _normalized_all(codes) if shapes is None else shapes
            if code in codes or normalized(code) in shapes:
                return True
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        else:
            wrapped = getattr(obj, "__wrapped__", None)
            obj = wrapped if wrapped is not obj else None
    return False


class ReferenceGuard:
    """Context manager around one check: ``violation`` names the reference if the student's code used it."""

    def __init__(self, function: str, reference: Any, dotted: str, student_files: set[str],
                 stop_files: set[str] = frozenset(), codes: set[types.CodeType] | None = None) -> None:
        self.function, self.reference, self.dotted = function, reference, dotted
        self.codes = codes if codes is not None else reference_codes(reference)
        self.shapes = _normalized_all(self.codes)
        self._seen: dict[types.CodeType, bool] = {}  # each code object met while guarding: is it the reference's?
        self.student_files = set(student_files)
        self.stop_files = set(stop_files)
        self.violation: str | None = None
        self._previous: Any = None

    def message(self, how: str) -> str:
        return (f"{self.function} {how} the shortcutlab reference `{self.dotted}`; write your own implementation "
                "(this check gives no points for the library's code)")

    def check_object(self, obj: Any) -> str | None:
        """The violation message if the student's object itself is the reference."""
        if is_reference(obj, self.reference, self.codes):
            self.violation = self.message("is")
        return self.violation

    def _from_student(self, frame: Any) -> bool:
        caller = frame.f_back
        while caller is not None:
            filename = caller.f_code.co_filename
            if filename in self.student_files:
                return True
            if filename in self.stop_files or filename.startswith(ENGINE_DIR):
                return False
            caller = caller.f_back
        return False

    def _is_reference_code(self, code: types.CodeType) -> bool:
        known = self._seen.get(code)
        if known is None:
            known = self._seen[code] = code in self.codes or normalized(code) in self.shapes
        return known

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call" and self.violation is None and self._is_reference_code(frame.f_code) \
                and self._from_student(frame):
            self.violation = self.message("calls")

    def _tampered(self, function: Any) -> None:
        """``sys.setprofile`` while guarding: whoever turns the profiler off or over would hide a call (setting the
        guard's own hook, as a thread started during the check does, hides nothing)."""
        if self.violation is None and function != self._profile:
            self.violation = (f"{self.function} changes the profiler (sys.setprofile) while it is checked, which hides "
                              "calls from the check that the reference is not used; remove it")
        self._setprofile(function)

    def __enter__(self) -> "ReferenceGuard":
        if self.codes:
            self._previous = sys.getprofile()
            self._setprofile = sys.setprofile
            sys.setprofile(self._profile)
            threading.setprofile(self._profile)
            sys.setprofile = self._tampered  # restored on exit; the check's own code never calls it
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.codes:
            sys.setprofile = self._setprofile
            if sys.getprofile() != self._profile and self.violation is None:  # switched off by other means
                self.violation = (f"{self.function} switched the profiler off while it was checked, which hides calls "
                                  "from the check that the reference is not used; remove that")
            sys.setprofile(self._previous)
            threading.setprofile(None)
