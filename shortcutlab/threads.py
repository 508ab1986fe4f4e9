"""How many threads torch uses in a notebook kernel: one core fewer than the machine gives this process (at least one).

torch starts one thread per core. A notebook is rarely alone on its machine (the browser, the Jupyter server,
another kernel), and when another process holds a core, each of torch's parallel steps waits for the thread that
lost it: on 2 cores with one busy neighbour, lesson 03's first run (training its models) took 186 s with 2 threads
and 23 s with 1 (benchmarks/bench_notebooks.py --neighbour busy). Leaving a core free costs a little when the
machine is idle and avoids that stall. An explicit ``OMP_NUM_THREADS`` always wins; scripts, tests and the grader
(not kernels) are left alone.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says, else the machine's count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def kernel_threads(cores: int | None = None) -> int:
    """Torch threads for a notebook kernel on ``cores`` cores (default: ``available_cores()``): cores - 1, at least 1."""
    return max(1, (available_cores() if cores is None else cores) - 1)


def use_kernel_threads() -> int | None:
    """In a Jupyter kernel without ``OMP_NUM_THREADS``, set torch's thread count to ``kernel_threads()`` (if that is
    fewer than it has) and return it; elsewhere change nothing and return None."""
    if "ipykernel" not in sys.modules or os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    threads = min(kernel_threads(), torch.get_num_threads())
    torch.set_num_threads(threads)
    return threads


@contextmanager
def one_thread() -> Iterator[None]:
    """Run checks on one torch thread, as the grader does: their tensors are tiny, and on a busy machine
    several threads make them many times slower."""
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch and previous:
            torch.set_num_threads(previous)
