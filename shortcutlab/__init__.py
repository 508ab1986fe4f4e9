"""shortcutlab: a test-driven course on shortcut learning with Colored MNIST."""
from __future__ import annotations

from pathlib import Path

from shortcutlab.errors import DataError, ShortcutlabError
from shortcutlab.threads import use_kernel_threads

__version__ = "0.1.0"
PACKAGE_DIR = Path(__file__).resolve().parent  # shortcutlab/; its parent holds pyproject.toml when run from a checkout
__all__ = ["DataError", "ShortcutlabError", "__version__", "check", "pretrained"]

use_kernel_threads()  # in a notebook kernel only: leave a core free (see shortcutlab/threads.py)


def __getattr__(name: str):
    # shortcutlab.widgets is imported on first use: ipywidgets is slow to import and grading never needs it.
    if name == "widgets":
        import importlib

        return importlib.import_module("shortcutlab.widgets")
    raise AttributeError(f"module 'shortcutlab' has no attribute {name!r}")


def pretrained(name: str, **kwargs):
    """A trained study model, e.g. ``pretrained("cheater")`` (see ``shortcutlab.study.pretrained``)."""
    from shortcutlab.study import pretrained as load

    return load(name, **kwargs)


def check(name: str, function, /, **kwargs) -> None:
    """Run the visible checks of ``name`` ("<lesson id>.<function>", e.g. "03_gradcam.grad_cam") on
    ``function`` and print a short report; raises an AssertionError if any fails (see shortcutlab.grading)."""
    __tracebackhide__ = True  # noqa: F841 - IPython and pytest hide this frame in tracebacks
    from shortcutlab.grading.integrations.notebook import check_in_notebook

    return check_in_notebook(name, function, _depth=2, **kwargs)
