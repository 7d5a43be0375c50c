"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (bad path, bad format, a click outside the
image, a wrong checkpoint, an invalid recipe).  Command-line front ends print its message as one
line and exit non-zero, never with a traceback.  Library callers can catch it like any ValueError.
"""

from __future__ import annotations


class UserError(ValueError):
    """An error caused by the user's input; its message is shown as one line."""


class RecipeError(UserError):
    """A recipe file that does not validate (unknown key, wrong type, impossible range)."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded (truncated, wrong encoder, missing/unexpected keys)."""


class ImageReadError(UserError):
    """An image or volume that cannot be read (missing, corrupt, unsupported)."""
