"""Re-running a check where no student code ever ran, with the student's recorded answers.

The process that runs a submission's checks records each call a check makes to a student function: a digest
of the arguments, the result, every change the call made to its arguments (tensors, arrays, generators, and the
observable state of models, optimizers and the check's own objects: parameters, gradients, modes, hooks, plain
attributes), the global random state and grad mode it left, and, for an answer the check differentiates, each
backward pass through it (the incoming gradient's digest and the gradients it produced for the call's arguments).
A process forked from the grading server (which never runs student code) then runs the same check again with
stand-ins that check the arguments against the digest, apply the recorded changes to the judge's own objects and
give back the recorded answers, as plain tensors whose backward gives back the recorded gradients. The verdict, and
every reference value it compares with, come from that process: the student's process only supplies answers, as
data (``codec.py``, never pickle), so nothing it patches, prints or writes can make a check pass.

A check that hands a student function something that is not carried as data, or that takes a student class,
cannot be replayed: ``NotReplayable`` says so, and its verdict is the one of the process that ran it (see the
README's "Threat model").
"""
from __future__ import annotations

import base64
import binascii
import builtins
import functools
import hashlib
import sys
from collections.abc import Callable
from typing import Any

from shortcutlab.grading.engine.codec import (DecodeError, Encoder, TooBig, apply_state, decode, has_opaque, is_plain_value, shift, signature, tensor_bytes)
from shortcutlab.grading.engine.limits import RECORD_BYTES
from shortcutlab.grading.registry import CHECK_MODULE_PREFIX, CheckFailure, NotReplayable

__all__ = ["NotReplayable", "Recorder", "Replayer", "Transcript", "fingerprint", "replayers"]


def fingerprint(args: tuple, kwargs: dict, strict: bool) -> tuple[str, Encoder]:
    """A digest of a call's arguments (equal in every process for equal values), and the encoder that
    holds its mutable leaves and gradient sources. ``strict``: NotReplayable for anything not carried as data."""
    encoder = Encoder(strict)
    try:
        tree = encoder.encode((tuple(args), {k: kwargs[k] for k in sorted(kwargs)}), leaf=True)
    except TooBig:
        if strict:
            raise NotReplayable("its arguments are too large to replay") from None
        return "too_big", encoder
    return signature(tree, encoder.blobs).hex(), encoder


def gradient_digest(gradient: Any) -> str:
    """A digest of the gradient flowing into an answer during a backward pass (dtype, shape and bytes)."""
    digest = hashlib.sha256(f"{gradient.dtype}{tuple(gradient.shape)}".encode())
    digest.update(tensor_bytes(gradient))
    return digest.hexdigest()


# ----------------------------------------------------------------------------- recording (student process)


class Recorder:
    """Wraps a check's student functions so that each call is recorded; ``transcript()`` is JSON-able."""

    def __init__(self, budget: int = RECORD_BYTES) -> None:
        self.calls: dict[str, list[dict]] = {}
        self.blobs: list[bytes] = []
        self.budget = budget

    def _keep(self, encoder: Encoder, tree: Any) -> Any:
        """Move ``encoder``'s blobs into the transcript, renumbering ``tree``'s blob indexes."""
        size = sum(len(b) for b in encoder.blobs)
        if size > self.budget:
            return {"too_big": size}
        self.budget -= size
        offset = len(self.blobs)
        self.blobs.extend(encoder.blobs)
        return shift(tree, offset) if offset else tree

    def _encode(self, value: Any, taps: dict[int, int] | None = None) -> Any:
        encoder = Encoder(strict=False, budget=self.budget, taps=taps)
        try:
            tree = encoder.encode(value, leaf=False)
        except TooBig:
            return {"too_big": True}
        return self._keep(encoder, tree)

    def wrap(self, name: str, obj: Any) -> Any:
        """A stand-in for ``obj`` (a callable) that records its calls under ``name``."""
        calls = self.calls.setdefault(name, [])

        def recorded(*args: Any, **kwargs: Any) -> Any:
            entry: dict[str, Any] = {"digest": None, "result": None, "raised": None, "changed": [], "backward": []}
            calls.append(entry)
            digest, before = fingerprint(args, kwargs, strict=False)
            entry["digest"] = digest
            torch = sys.modules.get("torch")
            random_state = torch.get_rng_state() if torch is not None else None
            try:
                result = obj(*args, **kwargs)
            except BaseException as exc:
                entry["raised"] = {"type": type(exc).__name__, "module": type(exc).__module__,
                                   "message": str(exc)[:4000]}
                self._after(entry, before, random_state)
                raise
            self._after(entry, before, random_state)
            result, taps = self._tap(result, before.sources, entry)
            entry["result"] = self._encode(result, taps)
            return result

        try:
            functools.update_wrapper(recorded, obj)
        except (AttributeError, TypeError):
            pass
        return recorded

    def _after(self, entry: dict, before: Encoder, random_state: Any) -> None:
        """Record what the call changed: its arguments, the global random state, the grad mode."""
        for index, (leaf, old) in enumerate(zip(before.leaves, before.leaf_signatures)):
            encoder = Encoder(strict=False, budget=self.budget)
            try:
                tree = encoder.encode(leaf, leaf=False)
            except TooBig:
                entry["changed"].append([index, {"too_big": True}])
                continue
            if signature(tree, encoder.blobs) != old:
                entry["changed"].append([index, self._keep(encoder, tree)])
        torch = sys.modules.get("torch")
        if torch is not None:
            state = torch.get_rng_state()
            if random_state is None or not torch.equal(state, random_state):
                entry["random_state"] = self._encode(state)
            entry["grad_enabled"] = torch.is_grad_enabled()

    def _tap(self, result: Any, sources: list, entry: dict) -> tuple[Any, dict[int, int]]:
        """``result`` with each answer tensor the check may differentiate routed through a tap that records every
        backward pass (``entry["backward"]``); the taps by tensor id."""
        torch = sys.modules.get("torch")
        taps: dict[int, int] = {}
        if torch is None or not sources:
            return result, taps

        def visit(value: Any, depth: int) -> Any:
            if type(value) is torch.Tensor and value.requires_grad and value.is_floating_point():
                index = len(taps)
                tapped = _recording_tap(torch, value, sources, index, self, entry)
                taps[id(tapped)] = index
                return tapped
            if depth < 4 and type(value) in (tuple, list):
                items = [visit(v, depth + 1) for v in value]
                return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
            if depth < 4 and type(value) is dict:
                items = {k: visit(v, depth + 1) for k, v in value.items()}
                return value if all(items[k] is value[k] for k in value) else items
            return value

        return visit(result, 0), taps

    def transcript(self) -> dict:
        return {"calls": self.calls, "blobs": [base64.b64encode(b).decode("ascii") for b in self.blobs]}


def _recording_tap(torch: Any, answer: Any, sources: list, index: int, recorder: Recorder, entry: dict) -> Any:
    """``answer``'s value as a new tensor whose backward passes through the student's graph to ``sources`` (as
    usual) and records the incoming gradient's digest and the gradients it hands on."""

    class Tap(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *inputs: Any) -> Any:
            return answer.detach().clone()

        @staticmethod
        def backward(ctx: Any, gradient: Any) -> Any:
            with torch.enable_grad():
                grads = torch.autograd.grad(answer, sources, gradient, retain_graph=True, allow_unused=True)
            entry["backward"].append({"tap": index, "digest": gradient_digest(gradient),
                                      "grads": [None if g is None else recorder._encode(g) for g in grads]})
            return grads

    return Tap.apply(*sources)


# ----------------------------------------------------------------------------- replaying (trusted process)


def _student_exception(raised: dict) -> BaseException:
    """The exception a recorded call raised: the builtin type of that name, or the check file's own exception that
    it let through (a check's model that fails on purpose), else a generic error."""
    name, message = str(raised.get("type", "Exception"))[:100], str(raised.get("message", ""))[:4000]
    module = str(raised.get("module", ""))
    if module == CheckFailure.__module__ and name == CheckFailure.__name__:
        return CheckFailure(message)  # a probe's own verdict that the class failed (it can only cost points)
    home = sys.modules.get(module) if module.startswith(CHECK_MODULE_PREFIX) else builtins
    kind = getattr(home, name, None) if name.isidentifier() else None
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
        # True once a replayed call handed over a live object (a model, an optimizer, a check's own object) or ran a
        # probe: its recorded state was observed by the student's process, so a process that tampered with the
        # grader cannot be trusted on it.
        self.observed = name.startswith("probe:")

    def _unverifiable(self, why: str) -> CheckFailure:
        return CheckFailure(f"the grader could not verify this check: {why}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        digest, encoder = fingerprint(args, kwargs, strict=True)
        self.observed = self.observed or any(not is_plain_value(leaf) for leaf in encoder.leaves)
        if self.count >= len(self.calls):
            raise self._unverifiable(f"the process that ran {self.name} reported no answer for its call number "
                                     f"{self.count + 1} (it stopped early, or was tampered with)")
        call = self.calls[self.count]
        self.count += 1
        if not isinstance(call, dict) or call.get("digest") != digest:
            raise self._unverifiable(
                f"{self.name} was called with other arguments in the process that ran it than in the grader's "
                f"own re-run (call number {self.count}). Does your code reseed the random number generator, or "
                "change the checks' inputs in a way it does not undo?")
        return self._replay(call, encoder)

    def _replay(self, call: dict, encoder: Any) -> Any:
        """``call``'s recorded effects on this call's arguments (``encoder``'s leaves) and its answer."""
        try:
            problem = f"{self.name} changed one of its arguments in place in a way the grader cannot replay"
            for change in call.get("changed") or []:
                if not (isinstance(change, list) and len(change) == 2 and type(change[0]) is int
                        and 0 <= change[0] < len(encoder.leaves)):
                    raise DecodeError("bad change record")
                try:
                    apply_state(encoder.leaves[change[0]], change[1], self.blobs, problem)
                except ValueError:
                    raise CheckFailure(problem) from None
            self._restore_globals(call)
            if call.get("raised") is not None:
                raise _student_exception(call["raised"] if isinstance(call["raised"], dict) else {})
            backward = call.get("backward") if isinstance(call.get("backward"), list) else []
            result = decode(call.get("result"), self.blobs,
                            tap=lambda index, value, rg: self._tap(index, value, rg, encoder.sources, backward))
        except DecodeError as exc:
            raise self._unverifiable(f"the answer recorded for {self.name} is malformed ({exc})") from None
        opaque = has_opaque(result)
        if opaque is not None:
            raise CheckFailure(f"{self.name} returned {opaque!r}, which the grader cannot compare; return tensors, "
                               "numbers, or tuples/lists/dicts of them")
        return result

    def _restore_globals(self, call: dict) -> None:
        torch = sys.modules.get("torch")  # recorded only where torch was loaded; never imported here (seconds)
        if torch is None:
            return
        if "random_state" in call:
            state = decode(call["random_state"], self.blobs)
            if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
                raise DecodeError("bad random state")
            try:
                torch.set_rng_state(state)
            except (RuntimeError, ValueError):
                raise DecodeError("bad random state") from None
        if isinstance(call.get("grad_enabled"), bool):
            torch.set_grad_enabled(call["grad_enabled"])

    def _tap(self, index: int, value: Any, requires_grad: bool, sources: list, backward: list) -> Any:
        """The recorded answer ``value``; differentiable to ``sources`` (the judge's own arguments) through the
        gradients recorded for it, one backward pass after another."""
        import torch

        if not requires_grad or not sources:
            return value.requires_grad_(requires_grad)
        passes = [p for p in backward if isinstance(p, dict) and p.get("tap") == index]
        name, blobs, unverifiable = self.name, self.blobs, self._unverifiable

        class ReplayedAnswer(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, *inputs: Any) -> Any:
                return value.clone()

            @staticmethod
            def backward(ctx: Any, gradient: Any) -> Any:
                if not passes:
                    raise unverifiable(f"no gradient of {name}'s answer was recorded for this backward pass")
                recorded = passes.pop(0)
                if recorded.get("digest") != gradient_digest(gradient):
                    raise unverifiable(f"the gradient flowing into {name}'s answer differs from the one in the "
                                       "process that ran it")
                grads = recorded.get("grads")
                if not isinstance(grads, list) or len(grads) != len(sources):
                    raise unverifiable(f"the gradients recorded for {name}'s answer are malformed")
                malformed = unverifiable(f"the gradients recorded for {name}'s answer are malformed")
                out = []
                for source, node in zip(sources, grads):
                    try:
                        grad = None if node is None else decode(node, blobs)
                    except DecodeError:
                        raise malformed from None
                    if grad is not None and not (isinstance(grad, torch.Tensor) and grad.shape == source.shape
                                                 and grad.dtype == source.dtype):
                        raise malformed
                    out.append(None if grad is None else grad.detach())
                return tuple(out)

        return ReplayedAnswer.apply(*sources)


class Transcript:
    """A transcript sent by the student's process, read once (blobs decoded once), with one stand-in per recorded
    name, made on first use: the graded functions and the probes a check calls."""

    def __init__(self, transcript: Any) -> None:
        self.calls: dict = {}
        self.blobs: list[bytes] = []
        if isinstance(transcript, dict):
            self.calls = transcript.get("calls") if isinstance(transcript.get("calls"), dict) else {}
            raw = transcript.get("blobs") if isinstance(transcript.get("blobs"), list) else []
            try:
                self.blobs = [base64.b64decode(b, validate=True) for b in raw if isinstance(b, str)]
            except (binascii.Error, ValueError):
                self.blobs = []
        self.stand_ins: dict[str, Replayer] = {}

    def replayer(self, name: str) -> Replayer:
        """The stand-in for ``name``, the same one on every call."""
        if name not in self.stand_ins:
            calls = self.calls.get(name)
            self.stand_ins[name] = Replayer(name, calls if isinstance(calls, list) else [], self.blobs)
        return self.stand_ins[name]

    def observed(self) -> bool:
        """Whether a replayed call relied on what the student's process observed (``Replayer.observed``)."""
        return any(r.observed for r in self.stand_ins.values())


def replayers(transcript: Any, names: list[str]) -> dict[str, Callable]:
    """Stand-ins for the student objects ``names`` from a transcript sent by the student's process."""
    recorded = Transcript(transcript)
    return {name: recorded.replayer(name) for name in names}
