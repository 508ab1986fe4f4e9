"""The events a grading server's forked processes send it: one JSON line each, on a pipe of their own.

The submission's process reports its cells (``CellStarted``), the end of loading (``Loaded``) and the process it forked
for a function (``FunctionStarted``); each function's process reports a check it starts (``Start``) and its
outcome (``Result``, with the record of its calls when it passed); the judge reports its verdict (``Verified``).
``serving.send`` stamps each with the job's token; the server drops an event whose token is not the job's.

Kept apart from protocol.py: that is the contract between the grading parent (runner.py) and a server, both
written by the grader; these events never leave a server, and all but ``Verified`` come from processes where
student code runs and can write to the same pipe. So each is validated as it is read: ``decode`` returns None for a
line of an unknown kind or with a field of the wrong type, and the reader ignores it, as it ignores a line that is
not JSON (``processes.Lines`` hands those over as ``{"event": "garbage"}``). Two kinds are read leniently, as the
server always read them: a ``CellStarted``'s file name is taken as text and a missing or odd index as 0; a ``Loaded``'s
notes that are not a list as none, and what it printed as text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from shortcutlab.grading.registry import SLIP_ID


class MalformedEvent(ValueError):
    """An event line of an unknown kind or with a field of the wrong type."""


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{key} is not a string")
    return value


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _slip(data: dict) -> str | None:
    """A slip id (registry.SLIP_ID) or None; anything else is malformed."""
    value = data.get("slip")
    if value is not None and not (isinstance(value, str) and SLIP_ID.match(value)):
        raise MalformedEvent("slip is not a slip id")
    return value


def _token(data: dict) -> str | None:
    value = data.get("token")
    if value is not None and not isinstance(value, str):
        raise MalformedEvent("token is not a string")
    return value


@dataclass(frozen=True)
class _Event:
    """What every event has: its kind (``event`` in JSON) and the job's token (None until ``serving.send``
    stamps it, or when a line came without one)."""

    kind: ClassVar[str] = ""
    token: str | None = field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: ``event`` and every field, leaving out a token or an optional field that is None."""
        data: dict[str, Any] = {"event": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.default is not None:
                data[f.name] = value
        return data

    def to_json(self) -> str:
        """One line of JSON, without its newline."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class CellStarted(_Event):
    """The submission's process is about to run cell ``index`` of ``filename``."""

    kind: ClassVar[str] = "cell"
    filename: str
    index: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> CellStarted:
        index = data.get("index")
        return cls(str(data.get("filename", "")), index if _integer(index) else 0, token=_token(data))


@dataclass(frozen=True)
class Loaded(_Event):
    """The submission's cells ran: the notes of those that failed (``CellNote.to_dict()``) and what they printed."""

    kind: ClassVar[str] = "loaded"
    notes: tuple = ()
    printed: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "notes": list(self.notes)}  # as JSON has it

    @classmethod
    def from_dict(cls, data: dict) -> Loaded:
        notes = data.get("notes", [])
        return cls(tuple(notes) if isinstance(notes, list) else (), str(data.get("printed", "")), token=_token(data))


@dataclass(frozen=True)
class FunctionStarted(_Event):
    """The submission's process forked ``pid`` (a process group) for a function's checks."""

    kind: ClassVar[str] = "function"
    pid: int

    @classmethod
    def from_dict(cls, data: dict) -> FunctionStarted:
        pid = data.get("pid")
        if not _integer(pid):
            raise MalformedEvent("pid is not an integer")
        return cls(pid, token=_token(data))


@dataclass(frozen=True)
class Start(_Event):
    """A function's process starts check ``name``."""

    kind: ClassVar[str] = "start"
    name: str

    @classmethod
    def from_dict(cls, data: dict) -> Start:
        return cls(_text(data, "name"), token=_token(data))


@dataclass(frozen=True)
class Result(_Event):
    """Check ``name`` ended with ``status`` after ``seconds``; a passed check comes with the record of its calls
    (``replay.Recorder.transcript()``, checked by replay.py when the judge reads it) and what the runner's process
    replaced of the grader, if anything (``guard.Snapshot.changed()``)."""

    kind: ClassVar[str] = "result"
    name: str
    status: str
    output: str
    seconds: float
    transcript: Any = None
    tampered: str | None = None
    slip: str | None = None  # the mistake the check diagnosed, if it failed naming one

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        seconds = data.get("seconds")
        if not (_integer(seconds) or isinstance(seconds, float)):
            raise MalformedEvent("seconds is not a number")
        tampered = data.get("tampered")
        if tampered is not None and not isinstance(tampered, str):
            raise MalformedEvent("tampered is not a string")
        return cls(_text(data, "name"), _text(data, "status"), _text(data, "output"), seconds,
                   data.get("transcript"), tampered, _slip(data), token=_token(data))


@dataclass(frozen=True)
class Verified(_Event):
    """The judge's re-run of check ``name``: its status and output, and whether its verdict relied on what the
    runner's process observed (model states, probe data) rather than on recorded answers alone."""

    kind: ClassVar[str] = "verified"
    name: str
    status: str
    output: str
    observed: bool = False
    slip: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Verified:
        observed = data.get("observed")
        if not isinstance(observed, bool):
            raise MalformedEvent("observed is not a boolean")
        return cls(_text(data, "name"), _text(data, "status"), _text(data, "output"), observed, _slip(data),
                   token=_token(data))


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
