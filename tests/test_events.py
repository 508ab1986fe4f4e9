"""The events a grading server's forked processes send it (engine/events.py): each kind survives a trip through
a pipe, and the server ignores a line it must not trust (wrong types, unknown kind, missing or wrong token), as it
always did."""
from __future__ import annotations

import json
import os
import time

import pytest

from shortcutlab.grading.engine.events import (KINDS, CellStarted, FunctionStarted, Loaded, MalformedEvent, Result, Start,
                                               Verified, decode)
from shortcutlab.grading.engine.processes import Lines
from shortcutlab.grading.engine.serving import STATE, job_event, send

TOKEN = "ab" * 16

EXAMPLES = [
    CellStarted("lesson.ipynb", 3),
    Loaded(({"filename": "lesson.ipynb", "name": "f", "kind": "cell", "error": "boom", "status": "error",
             "index": 1},), "printed while loading"),
    FunctionStarted(4242),
    Start("colorize_shape"),
    Result("colorize_shape", "failed", "expected (2, 3)", 0.125),
    Result("colorize_shape", "passed", "", 1.5, transcript={"calls": [{"name": "colorize"}], "blobs": ["AAE="]},
           tampered="shortcutlab.data.colorize"),
    Result("colorize_shape", "timeout", "stopped", 30),
    Verified("colorize_shape", "passed", "", True),
    Verified("colorize_shape", "unverified", "not replayable", False),
]


@pytest.fixture
def job_token(monkeypatch):
    monkeypatch.setattr(STATE, "token", TOKEN)
    return TOKEN


def _through_a_pipe(*events) -> list:
    r, w = os.pipe()
    for event in events:
        send(w, event)
    os.close(w)
    lines = Lines(r)
    got = []
    while (line := lines.next(time.monotonic() + 5)) is not None:
        got.append(line)
    os.close(r)
    return got


def test_every_kind_has_an_example():
    assert {type(e) for e in EXAMPLES} == set(KINDS.values())
    assert set(KINDS) == {"cell", "loaded", "function", "start", "result", "verified"}


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: f"{e.kind}")
def test_each_event_survives_a_round_trip(event):
    assert decode(json.loads(event.to_json())) == event
    assert type(event).from_dict(event.to_dict()) == event
    assert event.to_dict()["event"] == event.kind
    stamped = json.loads(json.dumps({**event.to_dict(), "token": TOKEN}))
    assert decode(stamped).token == TOKEN


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: f"{e.kind}")
def test_send_stamps_the_jobs_token_and_the_server_reads_it_back(event, job_token):
    [line] = _through_a_pipe(event)
    assert line["token"] == job_token
    got = job_event(line)
    assert got is not None and got.token == job_token
    assert type(got)(**{**got.__dict__, "token": None}) == event


def test_send_keeps_a_token_an_event_came_with(job_token):
    """A relayed result (the function's process -> the submission's process -> the server) keeps its own token,
    so one with a forged token is still dropped by the server."""
    [line] = _through_a_pipe(Result("c", "passed", "", 0.0, token="0" * 32))
    assert line["token"] == "0" * 32 and job_event(line) is None


def test_a_passed_result_carries_its_transcript_and_others_leave_the_optional_fields_out():
    assert set(Result("c", "failed", "", 0.0).to_dict()) == {"event", "name", "status", "output", "seconds"}
    passed = Result("c", "passed", "", 0.0, transcript={"calls": []}).to_dict()
    assert passed["transcript"] == {"calls": []} and "tampered" not in passed and "token" not in passed


@pytest.mark.parametrize("line", [
    {"event": "start"},  # no name
    {"event": "start", "name": ["unhashable"]},
    {"event": "start", "name": 7},
    {"event": "function", "pid": "123"},
    {"event": "function", "pid": True},
    {"event": "function"},
    {"event": "result", "name": "c", "status": "passed", "output": ""},  # no seconds
    {"event": "result", "name": "c", "status": "passed", "output": "", "seconds": "1"},
    {"event": "result", "name": "c", "status": 1, "output": "", "seconds": 0.0},
    {"event": "result", "name": "c", "status": "passed", "output": None, "seconds": 0.0},
    {"event": "result", "name": "c", "status": "passed", "output": "", "seconds": 0.0, "tampered": 5},
    {"event": "verified", "name": "c", "status": "passed", "output": ""},  # no observed
    {"event": "verified", "name": "c", "status": "passed", "output": "", "observed": "yes"},
    {"event": "start", "name": "c", "token": 12345},
    {"event": "passed", "name": "c"},  # unknown kind
    {"event": ["start"], "name": "c"},
    {"event": None},
    {"name": "c", "status": "passed"},  # no kind at all
    {"event": "garbage"},  # what processes.Lines hands over for a line that is not a JSON object
    {"id": 0, "error": None, "results": {"c": {"status": "passed"}}},  # a forged server answer
])
def test_a_malformed_or_unknown_event_is_ignored(line, job_token):
    assert decode(line) is None
    assert job_event({"token": job_token, **line}) is None


def test_from_dict_says_what_is_wrong():
    with pytest.raises(MalformedEvent, match="seconds"):
        Result.from_dict({"name": "c", "status": "passed", "output": "", "seconds": None})


@pytest.mark.parametrize("token", [None, "0" * 32, TOKEN.upper()])
def test_an_event_without_the_jobs_token_is_dropped_by_the_server(token, job_token):
    line = {**Result("c", "passed", "", 0.0).to_dict(), **({"token": token} if token is not None else {})}
    assert decode(line) is not None  # well-formed: only the token is wrong
    assert job_event(line) is None
    assert job_event({**line, "token": job_token}) == Result("c", "passed", "", 0.0, token=job_token)


def test_a_cell_and_loaded_event_are_read_as_leniently_as_the_server_always_did():
    assert decode({"event": "cell"}) == CellStarted("", 0)
    assert decode({"event": "cell", "filename": 5, "index": "2"}) == CellStarted("5", 0)
    assert decode({"event": "cell", "filename": "a.py", "index": 2}) == CellStarted("a.py", 2)
    assert decode({"event": "loaded"}) == Loaded((), "")
    assert decode({"event": "loaded", "notes": {"not": "a list"}, "printed": 12}) == Loaded((), "12")


def test_lines_that_are_not_json_objects_reach_the_server_as_ignored_events(job_token):
    r, w = os.pipe()
    os.write(w, b"not json\n[1, 2]\n" + (Start("c").to_json()[:-1] + f', "token": "{job_token}"}}').encode() + b"\n")
    os.close(w)
    lines = Lines(r)
    got = [job_event(lines.next(time.monotonic() + 5)) for _ in range(3)]
    os.close(r)
    assert got == [None, None, Start("c", token=job_token)]
