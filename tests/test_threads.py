"""Torch threads in a notebook kernel: one core fewer than the process may use, never set outside a kernel or
against an explicit OMP_NUM_THREADS."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from shortcutlab import threads


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_a_kernel_leaves_one_core_free_and_keeps_at_least_one_thread(cores, expected):
    assert threads.kernel_threads(cores) == expected


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_outside_a_kernel_nothing_changes(monkeypatch, torch_threads):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.use_kernel_threads() is None and torch.get_num_threads() == torch_threads


def test_an_explicit_omp_num_threads_wins_in_a_kernel(monkeypatch, torch_threads):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.use_kernel_threads() is None and torch.get_num_threads() == torch_threads


def test_in_a_kernel_torch_runs_on_one_core_fewer_never_more_than_it_had(monkeypatch, torch_threads):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    torch.set_num_threads(4)
    assert threads.use_kernel_threads() == 3 and torch.get_num_threads() == 3
    torch.set_num_threads(2)
    assert threads.use_kernel_threads() == 2 and torch.get_num_threads() == 2  # never raised
