"""shortcutlab.tolerance: tolerances that follow from the dtype, the magnitude and the operations accumulated."""
from __future__ import annotations

import math

import pytest
import torch

from shortcutlab.grading import CheckFailure, expect_close, expect_range
from shortcutlab.tolerance import SAFETY, float_tolerance, tolerance_for

EPS32 = torch.finfo(torch.float32).eps


def _passes(actual: torch.Tensor, expected: torch.Tensor, ops: int) -> bool:
    return bool(torch.allclose(actual, expected, **tolerance_for(expected, ops=ops)))


def test_the_absolute_tolerance_scales_with_the_magnitude_and_the_relative_one_does_not():
    rtol_1, atol_1 = float_tolerance(torch.float32, 1.0, ops=100)
    rtol_k, atol_k = float_tolerance(torch.float32, 1000.0, ops=100)
    assert rtol_k == rtol_1
    assert atol_k == pytest.approx(1000 * atol_1)


def test_the_tolerance_follows_the_precision_of_the_dtype():
    tolerances = {dtype: float_tolerance(dtype, 1.0, ops=10)[0]
                  for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16)}
    assert tolerances[torch.float64] < tolerances[torch.float32] < tolerances[torch.float16] < tolerances[torch.bfloat16]
    for dtype, rtol in tolerances.items():
        assert rtol / torch.finfo(dtype).eps == pytest.approx(SAFETY * math.sqrt(10))


def test_the_tolerance_grows_like_the_square_root_of_the_operations_accumulated():
    one, hundred = float_tolerance(torch.float32, 1.0, ops=1), float_tolerance(torch.float32, 1.0, ops=100)
    assert one == (SAFETY * EPS32, SAFETY * EPS32)
    assert hundred[0] == pytest.approx(10 * one[0])


def test_a_float32_sum_in_another_order_passes():
    # The same 4096-term dot products in float32, by BLAS and by a sequential sum in reverse order.
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 4096, generator=generator), torch.randn(4096, generator=generator)
    blas = a @ b
    sequential = torch.zeros(64)
    for k in reversed(range(4096)):
        sequential += a[:, k] * b[k]
    assert not torch.equal(blas, sequential)  # the orders really round differently
    assert _passes(sequential, blas, ops=4096)


def test_a_few_ulp_perturbation_of_a_many_op_result_passes():
    expected = torch.linspace(-3.0, 3.0, 1001)
    signs = torch.randn(1001, generator=torch.Generator().manual_seed(2)).sign()
    perturbed = expected + 8 * EPS32 * expected.abs().max() * signs
    assert _passes(perturbed, expected, ops=125)


@pytest.mark.parametrize("ops", [1, 125, 2_000])  # from one rounding to a small CNN's forward and backward
def test_a_relative_error_of_1e_3_fails_in_float32_at_magnitude_one(ops: int):
    expected = torch.rand(100, generator=torch.Generator().manual_seed(1)) + 0.5
    assert not _passes(expected * (1 + 1e-3), expected, ops=ops)
    wrong_at_one_element = expected.clone()
    wrong_at_one_element[17] += 1e-3
    assert not _passes(wrong_at_one_element, expected, ops=ops)


def test_the_reported_amd_grad_cam_difference_is_well_inside_the_grad_cam_tolerance():
    # Issue 12: an AMD EPYC CPU's batched and one-by-one Grad-CAM maps (magnitude 1, ~125 roundings) differed by 1.9e-6.
    _, atol = float_tolerance(torch.float32, 1.0, ops=27 + 36 + 5 + 49 + 4 + 4)
    assert atol > 10 * 1.9e-6
    assert atol < 1e-3  # a real bug (no ReLU, another normalisation) still fails


def test_tolerance_for_takes_the_magnitude_and_dtype_from_the_expected_values():
    assert tolerance_for(torch.tensor([0.5, -4.0, float("nan")]), ops=9) == dict(
        zip(("rtol", "atol"), float_tolerance(torch.float32, 4.0, ops=9)))
    assert tolerance_for(torch.zeros(3))["atol"] == float_tolerance(torch.float32, 1.0)[1]  # no scale: that of 1
    assert tolerance_for(torch.tensor([2, 3]))["atol"] == float_tolerance(torch.float32, 3.0)[1]  # integers: float32
    assert tolerance_for(0.25)["rtol"] == float_tolerance(torch.float32)[0]
    assert tolerance_for(torch.ones(2, dtype=torch.float64))["rtol"] == float_tolerance(torch.float64)[0]
    assert tolerance_for(torch.ones(2, dtype=torch.float64), dtype=torch.float32)["rtol"] == float_tolerance()[0]
    assert tolerance_for(torch.zeros(2), magnitude=7.0)["atol"] == float_tolerance(torch.float32, 7.0)[1]


@pytest.mark.parametrize("kwargs", [{"dtype": torch.int64}, {"ops": 0}, {"magnitude": -1.0},
                                    {"magnitude": float("inf")}])
def test_float_tolerance_rejects_meaningless_arguments(kwargs: dict):
    with pytest.raises(ValueError):
        float_tolerance(**kwargs)


def test_expect_close_defaults_to_one_rounding_of_the_expected_values():
    expected = torch.tensor([1000.0, 1.0, 0.0])
    expect_close(expected + torch.tensor([2 * 1000 * EPS32, 0.0, 1000 * EPS32]), expected, "x")
    with pytest.raises(CheckFailure, match=r"tolerance atol=0\.0038.*, rtol=3\.8.*e-06"):
        expect_close(expected * (1 + 1e-4), expected, "x")
    with pytest.raises(CheckFailure):  # float64 results are held to float64 roundings
        expect_close(torch.ones(2, dtype=torch.float64) + 1e-12, torch.ones(2, dtype=torch.float64), "x")


def test_expect_range_allows_one_rounding_at_the_bounds():
    expect_range(torch.tensor([0.0, 1.0 + EPS32]), 0.0, 1.0, "x")
    with pytest.raises(CheckFailure):
        expect_range(torch.tensor([0.0, 1.0 + 1e-4]), 0.0, 1.0, "x")
