"""Re-running a check where no student code ever ran, with the student's recorded answers.

The process that runs a submission's checks records each call a check makes to a student function: a digest
of the arguments, the result, and every change the call made to its tensor, array and generator arguments.
A process forked from the grading server (which never runs student code) then runs the same check again
with stand-ins that check the arguments against the digest and give back the recorded answers. The verdict,
and every reference value it compares with, come from that process: the student's process only supplies
answers, as data (decoded here without pickle), so nothing it patches, prints or writes can make a check pass.

A check that hands a student function something that is not plain data (a model, an optimizer, a tensor that
needs gradients) or that takes a student class cannot be replayed: ``NotReplayable`` says so, and its verdict
is the one of the process that ran it (see the README's "Threat model").
"""
from __future__ import annotations

import base64
import binascii
import builtins
import functools
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

from shortcutlab.grading.registry import CheckFailure

MAX_BYTES = 32 << 20  # tensor bytes one check may record (answers of the lessons are a few kB)
MAX_NODES = 100_000  # containers and scalars in one recorded value
MAX_DEPTH = 32


class NotReplayable(BaseException):
    """The check cannot be re-run from recorded answers (BaseException: no check's ``except`` catches it)."""


class _Skip(Exception):
    """A value the encoder does not carry (recorded as opaque unless strict)."""


class Opaque:
    """Stands for a recorded value of a type the grader does not carry between processes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind} object>"


class _Encoder:
    """Values to JSON-able trees plus byte blobs; ``leaves`` collects the mutable values met (tensors,
    arrays, generators) in order, with their bytes, so a call's in-place changes can be found and replayed."""

    def __init__(self, strict: bool, budget: int = MAX_BYTES) -> None:
        self.strict, self.budget = strict, budget
        self.blobs: list[bytes] = []
        self.leaves: list[Any] = []
        self.leaf_bytes: list[bytes] = []
        self.nodes = 0

    def _blob(self, data: bytes) -> int:
        self.budget -= len(data)
        if self.budget < 0:
            raise _Skip("too_big")
        self.blobs.append(data)
        return len(self.blobs) - 1

    def _opaque(self, value: Any, why: str = "") -> dict:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        if self.strict:
            raise NotReplayable(why or f"it is given a {kind}")
        return {"opaque": kind}

    def encode(self, value: Any, depth: int = 0, leaf: bool = True) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            if self.strict:
                raise NotReplayable("its arguments are too large or too deeply nested")
            raise _Skip("too_big")
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return {"float": repr(value)}
        if kind is tuple:
            return {"t": [self.encode(v, depth + 1) for v in value]}
        if kind is list:
            return {"l": [self.encode(v, depth + 1) for v in value]}
        if kind is dict:
            if not all(type(k) is str for k in value):
                return self._opaque(value, "it is given a dict with keys that are not strings")
            return {"d": [[k, self.encode(v, depth + 1)] for k, v in value.items()]}
        torch = sys.modules.get("torch")
        if torch is not None:
            if kind is torch.Size:
                return {"size": [int(s) for s in value]}
            if kind is torch.dtype:
                return {"dtype": str(value).removeprefix("torch.")}
            if kind is torch.device:
                return {"device": str(value)}
            if isinstance(value, torch.Tensor):
                return self._tensor(torch, value, leaf)
            if kind is torch.Generator:
                if value.device.type != "cpu":
                    return self._opaque(value)
                index = self._blob(value.get_state().numpy().tobytes())
                if leaf:
                    self.leaves.append(value)
                    self.leaf_bytes.append(self.blobs[index])
                return {"gen": index}
        np = sys.modules.get("numpy")
        if np is not None:
            if kind is np.ndarray or isinstance(value, np.generic):
                array = np.asarray(value)
                if array.dtype.kind not in "biufc" or array.dtype.hasobject:
                    return self._opaque(value)
                data = np.ascontiguousarray(array).tobytes()
                index = self._blob(data)
                if leaf and kind is np.ndarray:
                    self.leaves.append(value)
                    self.leaf_bytes.append(data)
                return {"nd": index, "dtype": array.dtype.str, "shape": list(array.shape),
                        "scalar": kind is not np.ndarray}
        return self._opaque(value)

    def _tensor(self, torch: Any, value: Any, leaf: bool) -> dict:
        if self.strict and value.requires_grad:
            raise NotReplayable("it is given a tensor that requires gradients")
        if type(value) not in (torch.Tensor, torch.nn.Parameter) or value.layout != torch.strided or \
                value.device.type != "cpu" or value.is_quantized:
            return self._opaque(value)
        tensor = value.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
        data = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        index = self._blob(data)
        if leaf:
            self.leaves.append(value)
            self.leaf_bytes.append(data)
        return {"tensor": index, "dtype": str(value.dtype).removeprefix("torch."), "shape": list(value.shape),
                "rg": bool(value.requires_grad)}


def fingerprint(args: tuple, kwargs: dict, strict: bool) -> tuple[str, _Encoder]:
    """A digest of a call's arguments (equal in every process for equal values), and the encoder that
    holds its mutable leaves. ``strict``: NotReplayable for anything but plain data."""
    encoder = _Encoder(strict)
    try:
        tree = encoder.encode((tuple(args), {k: kwargs[k] for k in sorted(kwargs)}), leaf=True)
    except _Skip:
        if strict:
            raise NotReplayable("its arguments are too large to replay") from None
        return "too_big", encoder
    digest = hashlib.sha256(json.dumps(tree, sort_keys=True).encode())
    for blob in encoder.blobs:
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest(), encoder


# ----------------------------------------------------------------------------- decoding (untrusted input)


class DecodeError(Exception):
    """A recorded value is malformed (never trusted: it came from the student's process)."""


def _dtype(torch: Any, name: Any) -> Any:
    value = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(value, torch.dtype):
        raise DecodeError(f"unknown dtype {name!r}")
    return value


def _shape(shape: Any) -> list[int]:
    if not isinstance(shape, list) or len(shape) > 64 or not all(type(s) is int and s >= 0 for s in shape):
        raise DecodeError("bad shape")
    return shape


def decode(node: Any, blobs: list[bytes], depth: int = 0) -> Any:
    """The value an encoded tree stands for; DecodeError if it is malformed."""
    if depth > MAX_DEPTH + 2:
        raise DecodeError("too deep")
    if node is None or type(node) in (bool, int, str):
        return node
    if type(node) is not dict or len(node) < 1:
        raise DecodeError(f"unexpected {type(node).__name__}")

    def blob(key: str) -> bytes:
        index = node.get(key)
        if type(index) is not int or not 0 <= index < len(blobs):
            raise DecodeError("bad blob index")
        return blobs[index]

    if "float" in node:
        try:
            return float(node["float"])
        except (TypeError, ValueError):
            raise DecodeError("bad float") from None
    if "t" in node or "l" in node:
        items = node.get("t", node.get("l"))
        if not isinstance(items, list):
            raise DecodeError("bad sequence")
        values = [decode(v, blobs, depth + 1) for v in items]
        return tuple(values) if "t" in node else values
    if "d" in node:
        pairs = node["d"]
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and type(p[0]) is str
                                                  for p in pairs):
            raise DecodeError("bad mapping")
        return {k: decode(v, blobs, depth + 1) for k, v in pairs}
    if "opaque" in node:
        return Opaque(str(node["opaque"])[:200])
    if "too_big" in node:
        return Opaque("value too large to record")
    if "nd" in node:
        import numpy as np

        try:
            dtype = np.dtype(str(node.get("dtype")))
        except TypeError:
            raise DecodeError("bad array dtype") from None
        if dtype.kind not in "biufc" or dtype.hasobject:
            raise DecodeError("bad array dtype")
        shape, data = _shape(node.get("shape")), blob("nd")
        count = 1
        for s in shape:
            count *= s
        if count * dtype.itemsize != len(data):
            raise DecodeError("array size does not match its data")
        array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        return array[()] if node.get("scalar") else array
    import torch

    if "size" in node:
        return torch.Size(_shape(node["size"]))
    if "dtype" in node and len(node) == 1:
        return _dtype(torch, node["dtype"])
    if "device" in node:
        try:
            return torch.device(str(node["device"]))
        except (RuntimeError, ValueError):
            raise DecodeError("bad device") from None
    if "tensor" in node:
        dtype, shape, data = _dtype(torch, node.get("dtype")), _shape(node.get("shape")), blob("tensor")
        count = 1
        for s in shape:
            count *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if count * itemsize != len(data):
            raise DecodeError("tensor size does not match its data")
        if count == 0:
            tensor = torch.empty(shape, dtype=dtype)
        else:
            tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
        # Never requires_grad, whatever the record says: a replayed answer is plain data, so nothing the
        # student's process sends can turn a later call into one that cannot be replayed.
        return tensor
    if "gen" in node:
        generator = torch.Generator()
        try:
            generator.set_state(torch.frombuffer(bytearray(blob("gen")), dtype=torch.uint8))
        except (RuntimeError, ValueError):
            raise DecodeError("bad generator state") from None
        return generator
    raise DecodeError("unknown record")


def _has_opaque(value: Any, depth: int = 0) -> Opaque | None:
    if isinstance(value, Opaque):
        return value
    if depth < MAX_DEPTH and isinstance(value, (tuple, list, dict)):
        for item in (value.values() if isinstance(value, dict) else value):
            found = _has_opaque(item, depth + 1)
            if found is not None:
                return found
    return None


# ----------------------------------------------------------------------------- recording (student process)


class Recorder:
    """Wraps a check's student functions so that each call is recorded; ``transcript()`` is JSON-able."""

    def __init__(self, budget: int = MAX_BYTES) -> None:
        self.calls: dict[str, list[dict]] = {}
        self.blobs: list[bytes] = []
        self.budget = budget

    def _keep(self, encoder: _Encoder, tree: Any) -> Any:
        """Move ``encoder``'s blobs into the transcript, renumbering ``tree``'s blob indexes."""
        size = sum(len(b) for b in encoder.blobs)
        if size > self.budget:
            return {"too_big": size}
        self.budget -= size
        offset = len(self.blobs)
        self.blobs.extend(encoder.blobs)
        return _shift(tree, offset) if offset else tree

    def _encode(self, value: Any) -> Any:
        encoder = _Encoder(strict=False, budget=self.budget)
        try:
            tree = encoder.encode(value, leaf=False)
        except _Skip:
            return {"too_big": True}
        return self._keep(encoder, tree)

    def wrap(self, name: str, obj: Any) -> Any:
        """A stand-in for ``obj`` (a callable) that records its calls under ``name``."""
        calls = self.calls.setdefault(name, [])

        def recorded(*args: Any, **kwargs: Any) -> Any:
            entry: dict[str, Any] = {"digest": None, "result": None, "raised": None, "changed": []}
            calls.append(entry)
            digest, before = fingerprint(args, kwargs, strict=False)
            entry["digest"] = digest
            try:
                result = obj(*args, **kwargs)
            except BaseException as exc:
                entry["raised"] = {"type": type(exc).__name__, "message": str(exc)[:4000]}
                self._changes(entry, before)
                raise
            self._changes(entry, before)
            entry["result"] = self._encode(result)
            return result

        try:
            functools.update_wrapper(recorded, obj)
        except (AttributeError, TypeError):
            pass
        return recorded

    def _changes(self, entry: dict, before: _Encoder) -> None:
        for index, (leaf, old) in enumerate(zip(before.leaves, before.leaf_bytes)):
            encoder = _Encoder(strict=False, budget=self.budget)
            try:
                tree = encoder.encode(leaf, leaf=False)
            except _Skip:
                entry["changed"].append([index, {"too_big": True}])
                continue
            if encoder.blobs and encoder.blobs[0] == old and tree.get("shape", None) == _leaf_shape(leaf):
                continue
            entry["changed"].append([index, self._keep(encoder, tree)])

    def transcript(self) -> dict:
        return {"calls": self.calls, "blobs": [base64.b64encode(b).decode("ascii") for b in self.blobs]}


def _leaf_shape(leaf: Any) -> Any:
    shape = getattr(leaf, "shape", None)
    return list(shape) if shape is not None else None


def _shift(tree: Any, offset: int) -> Any:
    if isinstance(tree, list):
        return [_shift(v, offset) for v in tree]
    if isinstance(tree, dict):
        return {k: (v + offset if k in ("tensor", "gen", "nd") and type(v) is int else _shift(v, offset))
                for k, v in tree.items()}
    return tree


# ----------------------------------------------------------------------------- replaying (trusted process)


def _student_exception(raised: dict) -> BaseException:
    """The exception a recorded call raised: the builtin type of that name, else a generic error."""
    name, message = str(raised.get("type", "Exception"))[:100], str(raised.get("message", ""))[:4000]
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # noqa: BLE001 - a builtin that wants other arguments (e.g. UnicodeDecodeError)
            pass
    return SubmissionRaised(f"{name}: {message}" if message else name)


class SubmissionRaised(Exception):
    """A recorded call raised an exception that is not a builtin one."""


class Replayer:
    """Stands in for a student function in the trusted process: gives back the recorded answers in order."""

    def __init__(self, name: str, calls: list, blobs: list[bytes]) -> None:
        self.name, self.calls, self.blobs, self.count = name, calls, blobs, 0
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        digest, encoder = fingerprint(args, kwargs, strict=True)
        if self.count >= len(self.calls):
            raise CheckFailure(f"the grader could not verify this check: the process that ran {self.name} reported "
                               f"no answer for its call number {self.count + 1} (it stopped early, or was tampered "
                               "with)")
        call = self.calls[self.count]
        self.count += 1
        try:
            if not isinstance(call, dict) or call.get("digest") != digest:
                raise CheckFailure(
                    f"the grader could not verify this check: {self.name} was called with other arguments in the "
                    f"process that ran it than in the grader's own re-run (call number {self.count}). Does your code "
                    "reseed or draw from the global random number generator, or change the checks' inputs?")
            for change in call.get("changed") or []:
                self._apply(encoder.leaves, change)
            if call.get("raised") is not None:
                raise _student_exception(call["raised"] if isinstance(call["raised"], dict) else {})
            result = decode(call.get("result"), self.blobs)
        except DecodeError as exc:
            raise CheckFailure(f"the grader could not verify this check: the answer recorded for {self.name} is "
                               f"malformed ({exc})") from None
        opaque = _has_opaque(result)
        if opaque is not None:
            raise CheckFailure(f"{self.name} returned {opaque!r}, which the grader cannot compare; return tensors, "
                               "numbers, or tuples/lists/dicts of them")
        return result

    def _apply(self, leaves: list, change: Any) -> None:
        """Replay an in-place change the student's call made to one of its arguments."""
        if not (isinstance(change, list) and len(change) == 2 and type(change[0]) is int
                and 0 <= change[0] < len(leaves)):
            raise DecodeError("bad change record")
        target, new = leaves[change[0]], decode(change[1], self.blobs)
        import torch

        problem = f"{self.name} changed one of its arguments in place in a way the grader cannot replay"
        if isinstance(target, torch.Generator) and isinstance(new, torch.Generator):
            target.set_state(new.get_state())
        elif isinstance(target, torch.Tensor) and isinstance(new, torch.Tensor):
            with torch.no_grad():
                if target.shape == new.shape and target.dtype == new.dtype:
                    target.copy_(new)
                else:
                    try:
                        target.set_(new.detach().clone())
                    except RuntimeError:
                        raise CheckFailure(problem) from None
        elif type(target).__module__ == "numpy" and type(new).__module__ == "numpy" and \
                getattr(target, "shape", None) == getattr(new, "shape", None) and target.dtype == new.dtype:
            target[...] = new
        else:
            raise CheckFailure(problem)


def replayers(transcript: Any, names: list[str]) -> dict[str, Callable]:
    """Stand-ins for the student objects ``names`` from a transcript sent by the student's process."""
    calls: dict = {}
    blobs: list[bytes] = []
    if isinstance(transcript, dict):
        calls = transcript.get("calls") if isinstance(transcript.get("calls"), dict) else {}
        raw = transcript.get("blobs") if isinstance(transcript.get("blobs"), list) else []
        try:
            blobs = [base64.b64decode(b, validate=True) for b in raw if isinstance(b, str)]
        except (binascii.Error, ValueError):
            blobs = []
    return {name: Replayer(name, calls.get(name) if isinstance(calls.get(name), list) else [], blobs)
            for name in names}
