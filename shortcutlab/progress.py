"""Progress of long loops (training a model, an SAE): a live bar on a terminal or in a notebook, and one summary line
when the output goes to a log file or a pipe, where a bar's every refresh would be carriage-return soup."""
from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm


def interactive(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stderr) is watched live: a terminal, or a Jupyter kernel's output."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return True
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")  # a notebook's kernel (ipykernel), not a plain IPython


class Progress:
    """``total`` steps of work named ``desc``: a tqdm bar where someone watches (``interactive``), else a line
    ``desc: n/total unit in S s (postfix)`` on ``stream`` when closed; nothing at all when ``quiet``."""

    def __init__(self, total: int, desc: str, unit: str, quiet: bool = False, leave: bool = True,
                 stream: IO[str] | None = None) -> None:
        self.total, self.desc, self.unit, self.count = total, desc, unit, 0
        self.stream = sys.stderr if stream is None else stream
        self.summary = not quiet and not interactive(self.stream)
        self.closed = False
        self.postfix: dict[str, Any] = {}
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=self.stream,
                        disable=quiet or self.summary)

    def update(self, steps: int = 1) -> None:
        self.count += steps
        self.bar.update(steps)

    def set_postfix(self, **values: Any) -> None:
        """Latest figures, shown on the bar and in the summary line (e.g. ``accuracy="0.981"``)."""
        self.postfix = values
        self.bar.set_postfix(values)

    def close(self) -> None:
        """Ends the bar, or prints the summary line; closing twice does nothing more."""
        if self.closed:
            return
        self.closed = True
        self.bar.close()
        if self.summary:
            figures = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {self.count}/{self.total} {self.unit} in {time.perf_counter() - self.start:.1f} s"
                  + (f" ({figures})" if figures else ""), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
