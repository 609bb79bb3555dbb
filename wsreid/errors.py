"""User-facing errors and exit codes.

Every failure a user can cause (bad recipe, missing data, broken plugin, a component that
breaks its contract) is raised as a :class:`UserError` or one of its subclasses, all
defined here. The command line prints ``error: <message>`` on one line and exits with
:attr:`ExitCode.USER_ERROR` (2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ExitCode",
    "UserError",
    "RecipeError",
    "DataError",
    "PluginError",
    "DuplicateComponentError",
    "ComponentError",
    "TrainingError",
    "StudyError",
]


class ExitCode(IntEnum):
    """Exit status of a ``wsreid`` command."""

    OK = 0
    #: ``wsreid ablate``: the study ran, but some of its runs failed (see the status column)
    RUNS_FAILED = 1
    #: a :class:`UserError`: one line on stderr says what, where and what to do
    USER_ERROR = 2
    #: interrupted (Ctrl-C); a run can be resumed from its last checkpoint
    INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is a single line: what, where, what to do."""

    exit_code = ExitCode.USER_ERROR

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


class DuplicateComponentError(PluginError):
    """Two plugins registered the same kind and name (the message names both providers)."""


class ComponentError(PluginError):
    """A component or hook of a plugin failed or broke its contract during a run (the
    message names the component's recipe label or the hook, and the plugin)."""


class TrainingError(UserError):
    """Training cannot continue (non-finite loss, bad resume state, ...)."""


class StudyError(UserError):
    """An ablation study file is missing or invalid."""
