"""User-facing errors.

Every failure a user can cause (bad recipe, missing data, broken plugin) is raised as a
:class:`UserError`. The CLI prints ``error: <message>`` on one line and exits with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is a single line: what, where, what to do."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        message = " ".join(str(message).split())  # force a single line
        if hint:
            message = f"{message} ({' '.join(hint.split())})"
        super().__init__(message)


class RecipeError(UserError):
    """A recipe failed to load or validate."""


class DataError(UserError):
    """A dataset is missing, malformed, or references files that do not exist."""


class PluginError(UserError):
    """A plugin failed to load or registered something invalid."""


class TrainingError(UserError):
    """Training cannot continue (non-finite loss, bad resume state, ...)."""
