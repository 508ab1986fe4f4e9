"""shortcutlab: a test-driven course on shortcut learning with Colored MNIST."""
from __future__ import annotations

from shortcutlab.errors import DataError, ShortcutlabError

__version__ = "0.1.0"
__all__ = ["DataError", "ShortcutlabError", "__version__", "pretrained"]


def pretrained(name: str, **kwargs):
    """A trained study model, e.g. ``pretrained("cheater")`` (see ``shortcutlab.study.pretrained``)."""
    from shortcutlab.study import pretrained as load

    return load(name, **kwargs)
