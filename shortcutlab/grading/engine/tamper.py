"""Tampering: what student code replaced of the grader, its checks and the libraries they rely on.

A ``Snapshot`` is taken in the grading server before any student code of a job runs; a check that passed in the
student's process reports what ``changed()`` (events.Result's ``tampered``), and verdict.judge refuses a pass that
relied on what that process observed. A cheap second line behind the judge's re-run (judge.py), not a defence
against code written to defeat it (docs/threat-model.md).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from shortcutlab.grading.registry import CHECK_MODULE_PREFIX


WATCHED_MODULES = ("builtins", "torch", "torch.testing", "torch.nn.functional", "numpy", "__main__")


def _watched() -> list[tuple[str, Any]]:
    return [(name, module) for name, module in list(sys.modules.items())
            if module is not None and (name in WATCHED_MODULES or name == "shortcutlab"
                                       or name.startswith(("shortcutlab.", CHECK_MODULE_PREFIX)))]


class Snapshot:
    """The functions, classes and modules the grader and its checks rely on, taken before any student code
    runs; ``changed()`` names one that student code replaced (a module attribute, a method, a function's code).

    A cheap second line for checks that cannot be re-run where no student code ran: it runs in the student's
    process, so it stops monkeypatching, not code written to defeat it."""

    KINDS = (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType, types.MethodType)

    def __init__(self) -> None:
        self.items: list[tuple[str, Any, str, Any]] = []  # (where, namespace, name, object it held)
        self.classes: list[tuple[str, type, frozenset]] = []  # (where, class, names it defined itself)
        for name, module in _watched():
            space = getattr(module, "__dict__", None)
            if not isinstance(space, dict):
                continue
            own = name.startswith("shortcutlab") or name == "__main__"
            for attr, value in list(space.items()):
                if not isinstance(value, self.KINDS):
                    continue
                self.items.append((f"{name}.{attr}", space, attr, value))
                if own and isinstance(value, types.FunctionType):
                    self.items.append((f"{name}.{attr}.__code__", value, "__code__", value.__code__))
                if own and isinstance(value, type) and getattr(value, "__module__", "") == name:
                    self._class(f"{name}.{attr}", value)
        torch = sys.modules.get("torch")
        if torch is not None:
            self._class("torch.Tensor", torch.Tensor)
        for key in ("excepthook", "displayhook"):
            self.items.append((f"sys.{key}", sys, key, getattr(sys, key)))

    def _class(self, where: str, cls: type) -> None:
        """A class's own methods, and the names it defines (a new one may override a base class's)."""
        own = dict(vars(cls))
        self.classes.append((where, cls, frozenset(own)))
        for key, member in own.items():
            if isinstance(member, (types.FunctionType, staticmethod, classmethod, property)) or callable(member):
                self.items.append((f"{where}.{key}", cls, key, member))

    def changed(self) -> str | None:
        """The first watched name that no longer holds its object, or None."""
        for where, cls, names in self.classes:
            for key in vars(cls).keys() - names:
                if any(key in vars(base) for base in cls.__mro__[1:]):
                    return f"{where}.{key}"
        for where, space, name, value in self.items:
            try:
                now = space.get(name, _GONE) if isinstance(space, dict) else (
                    vars(space).get(name, _GONE) if isinstance(space, type) else getattr(space, name, _GONE))
            except Exception:  # noqa: BLE001 - a namespace student code broke is itself a change
                return where
            if now is not value:
                return where
        return None


_GONE = object()
