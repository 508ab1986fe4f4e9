"""Visible checks without the answer key: a student edition's check files call recorded reference values.

At release, each visible check runs in the full library, on the reference itself, under a few fixed seeds
(``VISIBLE_SEEDS``), with every answer the check file holds (its references, and other withheld library code it
builds inputs with) wrapped by the engine's call ``Recorder``: arguments' digests, answers, in-place changes,
random state, backward passes. The edition's check file binds each such name to a ``RecordedReference``, which
answers a call whose arguments it has seen, in any order, from that record (``replay.Replayer``'s machinery).
A call it has not seen (arguments that depend on a student's answer, another seed) cannot be checked in the edition
and says so. Graded checks never use these seeds' inputs: grading draws its base seed in secret.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcutlab.grading.engine.codec import qualified_name, tensor_bytes
from shortcutlab.grading.engine.replay import Recorder, Replayer, Transcript, fingerprint
from shortcutlab.grading.registry import CHECK_MODULE_PREFIX, CheckFailure, NotReplayable

RECORD_SUFFIX = ".recorded.json"  # beside the edition's check file: {"seeds": [...], "calls": ..., "blobs": ...}
VISIBLE_SEEDS = (101, 202, 303)  # the base seeds a student edition's check cells draw from
RECORD_BUDGET = 256 * 2**20  # bytes of recorded tensors per lesson at most


class NotRecorded(NotReplayable):
    """A call of a recorded reference with arguments the release never saw: the check cannot decide (unverified)."""


def call_key(args: tuple, kwargs: dict) -> str:
    """A digest of what a reference's answer depends on: tensors' and arrays' values, models' parameters, buffers
    and modes, generators' states, optimizers' settings, other objects' public attributes; not gradients already
    accumulated, hooks or object identities, which a correct student function may leave otherwise than the
    reference did before the check calls the reference."""
    digest = hashlib.sha256()
    _feed(digest, (tuple(args), {k: kwargs[k] for k in sorted(kwargs)}), 0, set())
    return digest.hexdigest()


def _kind(kind: type) -> str:
    """A class's name as equal in the release's process and a student's: a check file's classes live in modules
    named after where the file was imported from."""
    module = getattr(kind, "__module__", "") or ""
    return kind.__qualname__ if module.startswith(CHECK_MODULE_PREFIX) else qualified_name(kind)


def _feed(digest: Any, value: Any, depth: int, seen: set[int]) -> None:  # noqa: C901 - one case per kind of value
    import numpy as np
    import torch

    def put(text: str) -> None:
        digest.update(text.encode() + b"\0")

    if depth > 8:
        return put("deep")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return put(f"{type(value).__name__}:{value!r}")
    if isinstance(value, torch.Tensor):
        put(f"tensor:{value.dtype}:{tuple(value.shape)}:{value.requires_grad}")
        return digest.update(tensor_bytes(value.detach().cpu()))
    if isinstance(value, np.ndarray):
        put(f"array:{value.dtype}:{value.shape}")
        return digest.update(np.ascontiguousarray(value).tobytes())
    if isinstance(value, torch.Generator):
        put("generator")
        return digest.update(tensor_bytes(value.get_state()))
    if isinstance(value, (list, tuple)):
        put(f"{type(value).__name__}:{len(value)}")
        for item in value:
            _feed(digest, item, depth + 1, seen)
        return None
    if isinstance(value, dict):
        put(f"dict:{len(value)}")
        for key in sorted(value, key=repr):
            put(repr(key))
            _feed(digest, value[key], depth + 1, seen)
        return None
    if isinstance(value, type):
        return put(f"class:{_kind(value)}")
    if hasattr(value, "__code__") or callable(value) and not hasattr(value, "__dict__"):
        return put(f"callable:{_kind(type(value)) if not hasattr(value, '__qualname__') else value.__qualname__}")
    if id(value) in seen:
        return put("again")
    seen.add(id(value))
    if isinstance(value, torch.nn.Module):
        put(f"module:{_kind(type(value))}:" + "".join("1" if m.training else "0" for m in value.modules()))
        return _feed(digest, value.state_dict(), depth + 1, seen)
    if isinstance(value, torch.optim.Optimizer):
        put(f"optimizer:{_kind(type(value))}")
        groups = [{k: v for k, v in group.items() if k != "params"} for group in value.param_groups]
        return _feed(digest, [groups, [group["params"] for group in value.param_groups]], depth + 1, seen)
    put(f"object:{_kind(type(value))}")
    attributes = getattr(value, "__dict__", {})
    _feed(digest, {k: v for k, v in attributes.items() if not k.startswith("_")}, depth + 1, seen)
    return None


class RecordedReference(Replayer):
    """Stands in for a reference in a student edition's check file: the recorded answer of a call whose arguments
    have the same ``call_key``, whichever check or order made it."""

    def __init__(self, name: str, calls: list, blobs: list[bytes]) -> None:
        super().__init__(name, calls, blobs)
        self.by_key: dict[str, dict] = {}
        for call in calls:
            if isinstance(call, dict) and isinstance(call.get("key"), str):
                self.by_key.setdefault(call["key"], call)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = self.by_key.get(call_key(args, kwargs))
        if call is None:
            raise NotRecorded(f"this edition cannot check this: {self.name} was recorded on the checks' own inputs, "
                              f"and here it is asked about others (they depend on your function's answer, or on a "
                              f"seed the release did not record); grading checks it")
        _, encoder = fingerprint(args, kwargs, strict=False)  # the arguments' leaves and gradient sources
        # a call may be replayed more than once: each replay consumes its own copy of the backward passes
        return self._replay({**call, "backward": list(call.get("backward") or [])}, encoder)


@functools.lru_cache(maxsize=16)
def _record(path: str) -> tuple[Transcript, tuple[int, ...]]:
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckFailure(f"cannot read the recorded reference values {path} ({exc}); reinstall the course's wheel") \
            from None
    return Transcript(payload), tuple(int(s) for s in payload.get("seeds", ()))


def record_path(check_file: str | Path) -> Path:
    """The recorded values beside a student edition's check file."""
    check_file = Path(check_file)
    return check_file.with_name(check_file.stem + RECORD_SUFFIX)


def recorded(check_file: str, name: str) -> RecordedReference:
    """The stand-in a student edition's check file binds to ``name`` (called with its own ``__file__``)."""
    transcript, _ = _record(str(record_path(check_file)))
    calls = transcript.calls.get(name)
    return RecordedReference(name, calls if isinstance(calls, list) else [], transcript.blobs)


def recorded_seeds(check_file: str | Path) -> tuple[int, ...]:
    """The base seeds a student edition recorded its visible checks under (none where nothing was recorded)."""
    path = record_path(check_file)
    return _record(str(path))[1] if path.is_file() else ()


def recording(recorder: Recorder, name: str, function: Any) -> Any:
    """``function`` with each call recorded by ``recorder`` under ``name``, its ``call_key`` taken before the call
    changes its arguments: what a ``RecordedReference`` answers from."""
    calls = recorder.calls.setdefault(name, [])
    recorded_call = recorder.wrap(name, function)

    def keyed(*args: Any, **kwargs: Any) -> Any:
        key, index = call_key(args, kwargs), len(calls)
        try:
            return recorded_call(*args, **kwargs)
        finally:
            calls[index]["key"] = key

    return keyed


def record_visible_checks(course: Any, lesson: Any, names: Sequence[str],
                          seeds: Sequence[int] = VISIBLE_SEEDS) -> dict:
    """Run ``lesson``'s visible checks on the references under ``seeds`` with the check file's ``names`` (those
    bound to withheld library code) recorded; the record a ``RecordedReference`` reads."""
    from shortcutlab.course import import_object
    from shortcutlab.grading.engine.execute import CheckContext, run_check
    from shortcutlab.grading.registry import check_seed, collect_checks, import_check_file, plan_checks
    from shortcutlab.threads import one_thread

    module = import_check_file(course.check_file(lesson), fresh=True)  # never the copy grading uses
    recorder = Recorder(budget=RECORD_BUDGET)
    for name in names:
        setattr(module, name, recording(recorder, name, getattr(module, name)))
    checks = collect_checks(module)
    namespace = {function: import_object(spec.reference) for function, spec in lesson.functions.items()}
    limit = course.grading.output_limit
    with one_thread():
        for planned in plan_checks(course, lesson):
            if planned.hidden:
                continue
            for seed in seeds:
                run_check(checks[planned.name], CheckContext(dict(namespace)), check_seed(seed, lesson.id, planned.name),
                          None, planned.function, limit)
    return {"seeds": list(seeds), **recorder.transcript()}
