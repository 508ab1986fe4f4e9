"""The events a grading server's forked processes send it: one JSON line each, on a pipe of their own.

The submission's process reports its cells (``CellStarted``), the end of loading (``Loaded``) and the process it forked
for a function (``FunctionStarted``); each function's process reports a check it starts (``Start``) and its
outcome (``Result``, with the record of its calls when it passed); the judge reports its verdict (``Verified``).
``serving.send`` stamps each with the job's token; the server drops an event whose token is not the job's.

Kept apart from protocol.py: that is the contract between the grading parent (runner.py) and a server, both
written by the grader; these events never leave a server, and all but ``Verified`` come from processes where
student code runs and can write to the same pipe. So each is validated as it is read (pydantic dataclasses, strict
types: no bool for an int, no text for a number): ``decode`` returns None for a line of an unknown kind or with a
field of the wrong type, and the reader ignores it, as it ignores a line that is not JSON (``processes.Lines`` hands
those over as ``{"event": "garbage"}``). Two kinds are read leniently, as the server always read them: a
``CellStarted``'s file name is taken as text and a missing or odd index as 0; a ``Loaded``'s notes that are not a
list as none, and what it printed as text.
"""
from __future__ import annotations

import json
from dataclasses import field, fields
from typing import Annotated, Any, ClassVar, Optional

from pydantic import BeforeValidator, Strict, ValidationError
from pydantic.dataclasses import dataclass

from shortcutlab.grading.registry import SLIP_ID


class MalformedEvent(ValueError):
    """An event line of an unknown kind or with a field of the wrong type."""


def _slip_id(value: Any) -> Any:
    if value is not None and not (isinstance(value, str) and SLIP_ID.match(value)):
        raise ValueError("not a slip id")
    return value


Text = Annotated[str, Strict()]
Integer = Annotated[int, Strict()]  # a bool is not one
Number = Annotated[float, Strict()]  # an int or a float, never a bool or text
Flag = Annotated[bool, Strict()]
Slip = Annotated[Optional[str], BeforeValidator(_slip_id)]  # a slip id (registry.SLIP_ID) or None
AnyText = Annotated[str, BeforeValidator(str)]  # whatever came, as text
CellIndex = Annotated[int, BeforeValidator(lambda v: v if isinstance(v, int) and not isinstance(v, bool) else 0)]
Notes = Annotated[tuple, BeforeValidator(lambda v: tuple(v) if isinstance(v, list | tuple) else ())]


@dataclass(frozen=True)
class _Event:
    """What every event has: its kind (``event`` in JSON) and the job's token (None until ``serving.send``
    stamps it, or when a line came without one)."""

    kind: ClassVar[str] = ""
    token: Optional[Text] = field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: ``event`` and every field, leaving out a token or an optional field that is None."""
        data: dict[str, Any] = {"event": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.default is not None:
                data[f.name] = list(value) if isinstance(value, tuple) else value  # as JSON has it
        return data

    def to_json(self) -> str:
        """One line of JSON, without its newline."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> _Event:
        """The event ``data`` holds (its ``event`` key is not looked at); MalformedEvent names a wrong field."""
        try:
            return cls.__pydantic_validator__.validate_python(data)
        except ValidationError as exc:
            raise MalformedEvent("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) \
                from None


@dataclass(frozen=True)
class CellStarted(_Event):
    """The submission's process is about to run cell ``index`` of ``filename``."""

    kind: ClassVar[str] = "cell"
    filename: AnyText = ""
    index: CellIndex = 0


@dataclass(frozen=True)
class Loaded(_Event):
    """The submission's cells ran: the notes of those that failed (``CellNote.to_dict()``) and what they printed."""

    kind: ClassVar[str] = "loaded"
    notes: Notes = ()
    printed: AnyText = ""


@dataclass(frozen=True)
class FunctionStarted(_Event):
    """The submission's process forked ``pid`` (a process group) for a function's checks."""

    kind: ClassVar[str] = "function"
    pid: Integer


@dataclass(frozen=True)
class Start(_Event):
    """A function's process starts check ``name``."""

    kind: ClassVar[str] = "start"
    name: Text


@dataclass(frozen=True)
class Result(_Event):
    """Check ``name`` ended with ``status`` after ``seconds``; a passed check comes with the record of its calls
    (``replay.Recorder.transcript()``, checked by replay.py when the judge reads it) and what the runner's process
    replaced of the grader, if anything (``tamper.Snapshot.changed()``)."""

    kind: ClassVar[str] = "result"
    name: Text
    status: Text
    output: Text
    seconds: Number
    transcript: Any = None
    tampered: Optional[Text] = None
    slip: Slip = None  # the mistake the check diagnosed, if it failed naming one


@dataclass(frozen=True)
class Verified(_Event):
    """The judge's re-run of check ``name``: its status and output, and whether its verdict relied on what the
    runner's process observed (model states, probe data) rather than on recorded answers alone."""

    kind: ClassVar[str] = "verified"
    name: Text
    status: Text
    output: Text
    observed: Flag
    slip: Slip = None


Event = CellStarted | Loaded | FunctionStarted | Start | Result | Verified
KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (CellStarted, Loaded, FunctionStarted, Start, Result, Verified)}


def decode(data: dict) -> Event | None:
    """The event a line read by ``processes.Lines`` holds; None for one of an unknown kind or a malformed one."""
    cls = KINDS.get(data.get("event")) if isinstance(data.get("event"), str) else None
    if cls is None:
        return None
    try:
        return cls.from_dict(data)
    except MalformedEvent:
        return None
