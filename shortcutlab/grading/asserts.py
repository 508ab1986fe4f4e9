"""Assertions for checks, ARENA-style: each failure says, in the student's terms, what is wrong
(shape, dtype, range, which element, expected vs got) and gives a hint. All raise ``CheckFailure``."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from shortcutlab.grading.registry import CheckFailure, Slip
from shortcutlab.tolerance import float_tolerance, tolerance_for

__all__ = ["CheckFailure", "Slip", "expect_close", "expect_dtype", "expect_equal", "expect_finite", "expect_range",
           "expect_shape", "expect_tensor", "expect_true"]


def _hint(hint: str | None) -> str:
    return f" Hint: {hint}" if hint else ""


def _num(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.6g}"


def _index(flat: int, shape: Sequence[int]) -> str:
    if not shape:
        return ""
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return "[" + ", ".join(map(str, reversed(index))) + "]"


def _shape(shape: Sequence[int | None]) -> str:
    inner = ", ".join("?" if s is None else str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def expect_tensor(value: Any, what: str, hint: str | None = None) -> torch.Tensor:
    """``value`` itself if it is a torch.Tensor; CheckFailure otherwise."""
    if not isinstance(value, torch.Tensor):
        extra = " (a NumPy array: convert with torch.from_numpy or build it with torch operations)" \
            if type(value).__module__ == "numpy" else ""
        raise CheckFailure(f"{what} should be a torch.Tensor, got {type(value).__name__}{extra}.{_hint(hint)}", hint=hint)
    return value


def expect_shape(value: Any, shape: Sequence[int | None], what: str, hint: str | None = None) -> torch.Tensor:
    """``value`` must be a tensor of ``shape`` (``None`` matches any size in that dimension)."""
    tensor = expect_tensor(value, what, hint)
    got = tuple(tensor.shape)
    if len(got) == len(shape) and all(s is None or s == g for s, g in zip(shape, got)):
        return tensor
    note = ""
    if None not in shape and sorted(got) == sorted(shape) and got != tuple(shape):
        note = " The sizes are right but in a different order: check which dimension is which."
    elif [g for g in got if g != 1] == [s for s in shape if s != 1]:
        note = " Only dimensions of size 1 differ: check squeeze/unsqueeze/keepdim."
    raise CheckFailure(f"{what} should have shape {_shape(shape)}, got {_shape(got)}.{note}{_hint(hint)}", hint=hint)


def expect_dtype(value: Any, dtype: torch.dtype, what: str, hint: str | None = None) -> torch.Tensor:
    """``value`` must be a tensor of ``dtype``."""
    tensor = expect_tensor(value, what, hint)
    if tensor.dtype != dtype:
        if hint is None:
            hint = {torch.float32: "convert with .float()", torch.int64: "convert with .long()",
                    torch.bool: "compare to get booleans, or convert with .bool()"}.get(dtype)
        raise CheckFailure(f"{what} should have dtype {dtype}, got {tensor.dtype}.{_hint(hint)}", hint=hint)
    return tensor


def expect_finite(value: Any, what: str, hint: str | None = None) -> torch.Tensor:
    """No NaN or infinity anywhere in ``value``."""
    tensor = expect_tensor(value, what, hint)
    if tensor.is_floating_point() or tensor.is_complex():
        bad = ~torch.isfinite(tensor.detach())
        if bool(bad.any()):
            first = int(bad.flatten().nonzero()[0])
            value_at = float(tensor.detach().flatten()[first])
            raise CheckFailure(f"{what} contains {int(bad.sum())} non-finite value(s) (NaN or infinity) out of "
                               f"{tensor.numel()}; the first is {_num(value_at)} at index "
                               f"{_index(first, tensor.shape) or '(scalar)'}. Look for a division by zero, a log of 0 "
                               f"or an overflow.{_hint(hint)}", hint=hint)
    return tensor


def expect_range(value: Any, low: float, high: float, what: str, hint: str | None = None,
                 atol: float | None = None) -> torch.Tensor:
    """Every element of ``value`` in [low, high] (up to ``atol``, by default one rounding of ``value``'s dtype at
    the bounds' magnitude, see shortcutlab.tolerance)."""
    tensor = expect_finite(value, what, hint)
    data = tensor.detach().double()
    if data.numel() == 0:
        return tensor
    if atol is None:
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
        atol = float_tolerance(dtype, max(abs(low), abs(high)) or 1.0)[1]
    excess = torch.maximum(low - data, data - high)
    worst = int(excess.flatten().argmax())
    if float(excess.flatten()[worst]) > atol:
        count = int((excess > atol).sum())
        raise CheckFailure(f"{what} should lie in [{_num(low)}, {_num(high)}], but {count} of {data.numel()} values "
                           f"do not; e.g. {_num(float(data.flatten()[worst]))} at index "
                           f"{_index(worst, data.shape) or '(scalar)'} (actual range [{_num(float(data.min()))}, "
                           f"{_num(float(data.max()))}]).{_hint(hint)}", hint=hint)
    return tensor


def _as_values(value: Any, what: str, hint: str | None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (bool, int, float)):
        return torch.tensor(value)
    if type(value).__module__ == "numpy":
        return torch.as_tensor(value)
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise CheckFailure(f"{what} should be a tensor or a number, got {type(value).__name__}.{_hint(hint)}", hint=hint)


def _comparable(actual: Any, expected: Any, what: str, hint: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    got, want = _as_values(actual, what, hint), _as_values(expected, what, None)
    if got.numel() == 1 and want.numel() == 1:
        return got.reshape(()), want.reshape(())  # a float, a 0-d or a 1-element tensor: all the same number
    if got.shape != want.shape:
        expect_shape(got, tuple(want.shape), what, hint)
    return got, want


def expect_close(actual: Any, expected: Any, what: str, atol: float | None = None, rtol: float | None = None,
                 hint: str | None = None) -> None:
    """``actual`` equals ``expected`` elementwise within |a - e| <= atol + rtol * |e|, NaN matching NaN (the rule of
    torch.testing.assert_close); the message names how many values differ and the worst one (index, expected, got).
    Tolerances left out are those of one rounding (``shortcutlab.tolerance.tolerance_for(expected)``); results of
    longer computations pass ``**tolerance_for(expected, ops=...)``."""
    got, want = _comparable(actual, expected, what, hint)
    if want.is_complex() or got.is_complex():
        raise CheckFailure(f"{what} should be real-valued, got complex values.{_hint(hint)}", hint=hint)
    if atol is None or rtol is None:
        floats = [t.dtype for t in (got, want) if t.is_floating_point()]
        default = tolerance_for(want, dtype=max(floats, key=lambda d: torch.finfo(d).eps, default=None))
        atol = default["atol"] if atol is None else atol
        rtol = default["rtol"] if rtol is None else rtol
    a, e = got.double(), want.double()
    # torch.isclose, not assert_close itself: its first call imports torch.distributed (a second or more),
    # which a student would wait for in the first check cell of a notebook.
    if bool(torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True).all()):
        return
    nan_mismatch = torch.isnan(a) != torch.isnan(e)
    inf_mismatch = torch.isinf(a) & (a != e)
    diff = (a - e).abs().nan_to_num(nan=0.0, posinf=math.inf)
    over = diff - (atol + rtol * e.abs().nan_to_num(nan=0.0))
    bad = (over > 0) | nan_mismatch | inf_mismatch
    score = torch.where(nan_mismatch | inf_mismatch, torch.full_like(over, math.inf), over)
    worst = int(score.flatten().argmax())
    tolerance = f"(tolerance atol={atol:g}, rtol={rtol:g})"
    exp_v, got_v = float(e.flatten()[worst]), float(a.flatten()[worst])
    if a.dim() == 0:
        message = f"{what}: expected {_num(exp_v)}, got {_num(got_v)} {tolerance}."
    else:
        message = (f"{what}: {int(bad.sum())} of {a.numel()} values differ from the expected ones {tolerance}; "
                   f"the worst is at index {_index(worst, a.shape)}: expected {_num(exp_v)}, got {_num(got_v)}.")
    if bool(torch.isnan(a).any()) and not bool(torch.isnan(e).any()):
        message += " Your result contains NaN."
    raise CheckFailure(message + _hint(hint), hint=hint)


def expect_equal(actual: Any, expected: Any, what: str, hint: str | None = None) -> None:
    """Exact elementwise equality (integer results such as counts or ids)."""
    got, want = _comparable(actual, expected, what, hint)
    if got.shape == want.shape and bool((got == want).all()):
        return
    bad = got != want
    worst = int(bad.flatten().nonzero()[0])
    where = f" at index {_index(worst, got.shape)}" if got.dim() else ""
    count = f"{int(bad.sum())} of {got.numel()} values differ; the first" if got.dim() else "the value"
    raise CheckFailure(f"{what}: {count}{where}: expected {_num(want.flatten()[worst].item())}, got "
                       f"{_num(got.flatten()[worst].item())}.{_hint(hint)}", hint=hint)


def expect_true(condition: Any, message: str, slip: str | None = None) -> None:
    """Fail with ``message`` (already in the student's terms) unless ``condition`` holds; ``slip`` names the mistake
    the failure diagnoses, if it does (see ``registry.Slip``)."""
    if not condition:
        raise CheckFailure(message, slip=slip)
