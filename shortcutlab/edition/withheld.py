"""What stands where a student edition withholds an answer: a function that raises ``Withheld``, or a class that
cannot be instantiated, each naming the lesson whose exercise it is and what to use instead. Ships in every
student edition (the full edition never uses it)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from shortcutlab.errors import ShortcutlabError


class Withheld(ShortcutlabError, NotImplementedError):
    """Raised by library code this edition of the course does not hold: an exercise's answer, or code containing
    it. A NotImplementedError, as a stub's, so code that treats a stub as unimplemented treats this the same."""

    def __init__(self, name: str, lesson: str, function: str) -> None:
        self.name, self.lesson, self.function = name, lesson, function
        super().__init__(f"{name} is not in this edition of shortcutlab: it holds the answer of {function}, an "
                         f"exercise of lesson {lesson}. Use your own {function} from that lesson's notebook (pass it "
                         f"in where a function takes one), or ask your instructor for the edition released through "
                         f"lesson {lesson}.")


def withheld(name: str, lesson: str, function: str) -> Callable[..., NoReturn]:
    """A stand-in function for ``name`` that raises ``Withheld`` whatever it is called with."""

    def stand_in(*args: Any, **kwargs: Any) -> NoReturn:
        raise Withheld(name, lesson, function)

    stand_in.__name__ = stand_in.__qualname__ = name.rpartition(":")[2].rpartition(".")[2]
    stand_in._withheld = (name, lesson, function)
    stand_in.__doc__ = f"Not in this edition: {name} holds the answer of lesson {lesson}'s {function}."
    return stand_in


class WithheldClass:
    """Base of a stand-in class: instantiating it raises ``Withheld`` (``_withheld`` holds name, lesson, function)."""

    _withheld: tuple[str, str, str] = ("", "", "")

    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise Withheld(*cls._withheld)


def is_withheld(obj: object) -> bool:
    """Whether ``obj`` is a stand-in of this module (a withheld function or class)."""
    if isinstance(obj, type):
        return issubclass(obj, WithheldClass)
    return callable(obj) and isinstance(getattr(obj, "_withheld", None), tuple)
