"""Probes: the part of a check that runs a student *class*, handing back plain data for the check to judge.

A check of a class cannot be re-run from recorded calls the way a function's can: what it does with an instance
(forward passes, training steps, reading parameters) is the check's own code. So a check of a class puts that code
in a ``@probe`` function, which takes the class and returns plain data (tensors, numbers, strings, tuples, lists,
dicts of them); the rest of the check judges that data::

    @probe
    def _shapes(SimpleCNN, images):                 # runs where the student's code runs
        model = SimpleCNN()
        return {"logits": model(images).detach(), "names": [n for n, _ in model.named_parameters()]}

    @check("SimpleCNN")
    def test_simple_cnn_maps_images_to_ten_logits(SimpleCNN, seed):
        got = _shapes(SimpleCNN, _images(seed))      # judged here
        expect_shape(got["logits"], (4, 10), "the logits")

In a notebook and under plain pytest a probe is just called. While a submission is graded, the process that runs
the student's code runs each probe and records what it returned (``replay.Recorder``); the judge, where no student
code runs, hands the check a ``StudentClass`` token instead of the class and gives back the recorded data for
each probe call whose arguments match. A check that uses the class outside a probe cannot be judged that way
(``NotReplayable``).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

from shortcutlab.grading.registry import NotReplayable

_SESSION: _Session | None = None  # set while the engine grades a check; None in notebooks and plain pytest


class StudentClass:
    """Stands for a student class in the judge: probes take it, nothing can instantiate it."""

    def __init__(self, name: str) -> None:
        self.name = self.__name__ = self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotReplayable(f"it uses the student class {self.name} outside a @probe function")

    def __getattr__(self, name: str) -> Any:
        raise NotReplayable(f"it reads {self.name}.{name} outside a @probe function")

    def __repr__(self) -> str:
        return f"<student class {self.name}>"


class _Session:
    """How probe calls run during one check: ``call(key, args, kwargs, run)`` records or replays."""

    def __init__(self, classes: dict[str, Any], call: Callable[[str, tuple, dict, Callable], Any]) -> None:
        self.classes, self._call = classes, call

    def call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        def plain(value: Any) -> Any:  # the class (or its token) travels as its name, the same in both processes
            for name, obj in self.classes.items():
                if value is obj:
                    return f"<student class {name}>"
            return value

        key = f"probe:{fn.__qualname__}"
        return self._call(key, tuple(plain(a) for a in args), {k: plain(v) for k, v in kwargs.items()},
                          lambda: fn(*args, **kwargs))


def probe(fn: Callable) -> Callable:
    """Mark a check-file function that runs a student class and returns plain data (see the module's doc)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        session = _SESSION
        if session is None:
            return fn(*args, **kwargs)
        return session.call(fn, args, kwargs)

    return run


@contextlib.contextmanager
def recording(recorder: Any, classes: dict[str, Any]) -> Iterator[None]:
    """Run probes for real, recording each call's result with ``recorder`` (a ``replay.Recorder``)."""

    def call(key: str, args: tuple, kwargs: dict, run: Callable) -> Any:
        return recorder.wrap(key, lambda *a, **k: run())(*args, **kwargs)

    with _session(_Session(classes, call)):
        yield


@contextlib.contextmanager
def replaying(stand_in: Callable[[str], Callable], classes: dict[str, StudentClass]) -> Iterator[None]:
    """Give back recorded probe results: ``stand_in(key)`` is the replayer of that probe's calls."""

    def call(key: str, args: tuple, kwargs: dict, run: Callable) -> Any:
        return stand_in(key)(*args, **kwargs)

    with _session(_Session(classes, call)):
        yield


@contextlib.contextmanager
def _session(session: _Session) -> Iterator[None]:
    global _SESSION
    previous, _SESSION = _SESSION, session
    try:
        yield
    finally:
        _SESSION = previous
