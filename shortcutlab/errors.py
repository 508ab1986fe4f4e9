"""Errors a user can cause; each message says what to do about it."""
from __future__ import annotations


class ShortcutlabError(Exception):
    """Base class of every error shortcutlab raises on purpose."""


class DataError(ShortcutlabError):
    """MNIST files are missing, unreadable or corrupted."""
