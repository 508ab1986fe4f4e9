"""Tolerances for comparing floats that one computation gives along two code paths: batched vs one at a time,
vectorised vs per item, ours vs an oracle, a student's function vs the reference.

Two code paths round differently: another summation order, another blocking, another BLAS / oneDNN kernel (they
differ between CPU models and with the batch size), so results agree only to a few units in the last place of
what was accumulated. The tolerance therefore follows from the dtype's precision (``torch.finfo(dtype).eps``),
the magnitude of the values compared and the number of roundings accumulated into each of them (``ops``), never
from the differences one machine happens to show. It stays far below the error of a real bug (a missing ReLU, a
wrong normalisation, an off-by-one change results by 1e-2 or more), which must still fail.
"""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["SAFETY", "float_tolerance", "tolerance_for"]

SAFETY = 32.0
"""Factor over the typical rounding difference eps * sqrt(ops) of two summation orders: covers cancellation, errors
amplified by later layers and kernels less kind than a random walk. Measured on Grad-CAM maps of a 125-op net: batched
vs one at a time 25 eps (the AMD report: 16 eps) against a tolerance of 32 * sqrt(125) = 358 eps."""


def float_tolerance(dtype: torch.dtype = torch.float32, magnitude: float = 1.0, ops: int = 1) -> tuple[float, float]:
    """``(rtol, atol)`` for ``dtype`` values of size ``magnitude`` after ``ops`` accumulated roundings:
    rtol = SAFETY * eps * sqrt(ops) (rounding errors of two summation orders add up like a random walk),
    atol = rtol * magnitude (an error scales with the values accumulated, also where the result cancels to ~0).

    ``ops``: how many floating-point operations feed each compared value along the longer path, i.e. the reduction
    lengths (terms summed: in_channels * kernel area of a conv, in_features of a Linear, pixels of a mean) added up
    over the stacked layers, forward and backward, and over the steps of an iterative method.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"float_tolerance needs a floating-point dtype, got {dtype}")
    if ops < 1 or magnitude < 0 or not math.isfinite(magnitude):
        raise ValueError(f"need ops >= 1 and a finite magnitude >= 0, got ops={ops}, magnitude={magnitude}")
    rtol = SAFETY * torch.finfo(dtype).eps * math.sqrt(ops)
    return rtol, rtol * magnitude


def tolerance_for(expected: Any, *, ops: int = 1, dtype: torch.dtype | None = None,
                  magnitude: float | None = None) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` (for ``torch.testing.assert_close``, ``torch.allclose``, ``expect_close``) from
    :func:`float_tolerance`: ``magnitude`` defaults to max |expected| (1 where that is 0), pass the size of the terms
    accumulated where the result cancels below them; ``dtype`` defaults to expected's (float32 for integers), pass
    ``torch.float32`` when a float64 oracle is compared with float32 results."""
    values = torch.as_tensor(expected).detach()
    if dtype is None:
        dtype = values.dtype if values.is_floating_point() else torch.float32
    if magnitude is None:
        finite = values[torch.isfinite(values)] if values.is_floating_point() else values
        magnitude = float(finite.double().abs().max()) if finite.numel() else 0.0
        magnitude = magnitude if magnitude > 0 else 1.0
    rtol, atol = float_tolerance(dtype, magnitude, ops)
    return {"rtol": rtol, "atol": atol}
