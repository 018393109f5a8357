"""User-facing errors.

Every failure a user can cause (bad file, wrong model, bad option) is raised as :class:`FommError`
with a one-line message that names the problem and what to do. The CLI and the Blender worker print
that line alone (no traceback) and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FommError(Exception):
    """An expected failure with a one-line, user-readable message."""

    def __init__(self, message: str) -> None:
        message = " ".join(str(message).split())  # always one line
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Cancelled(KeyboardInterrupt):
    """Raised when a ``cancel`` callback asks to stop; handled like Ctrl-C (nothing is written)."""
