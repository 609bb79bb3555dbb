"""User-facing errors and exit codes.

Every failure a user can cause (bad recipe, missing data, broken plugin, a component that
breaks its contract) is raised as a :class:`UserError` or one of its subclasses, all
defined here. The command line prints ``error: <message>`` on one line and exits with
:attr:`ExitCode.USER_ERROR` (2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from enum import IntEnum
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable

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
    "ParamsCheckError",
    "ParamsCheckWarning",
    "DEBUG_ENV",
    "debug_requested",
    "report_user_errors",
    "check_strings",
    "one_line",
    "faults_named",
]

#: Environment variable: ``1`` shows the traceback of a :class:`UserError` instead of its line.
DEBUG_ENV = "WSREID_DEBUG"


class ExitCode(IntEnum):
    """Exit status of a ``wsreid`` command."""

    OK = 0
    #: ``wsreid ablate``: the study ran, but some of its runs failed (see the status column)
    RUNS_FAILED = 1
    #: a :class:`UserError`: one line on stderr says what, where and what to do
    USER_ERROR = 2
    #: stopped by SIGHUP (the terminal or ssh session closed: 128 + 1); as INTERRUPTED otherwise
    HANGUP = 129
    #: interrupted (Ctrl-C, SIGINT: 128 + 2); a run can be resumed from its last checkpoint
    INTERRUPTED = 130
    #: stopped by SIGTERM (a scheduler, ``timeout``: 128 + 15); as INTERRUPTED otherwise
    TERMINATED = 143


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is a single line: what, where, what to do."""

    exit_code = ExitCode.USER_ERROR

    def __init__(self, message: str, *, hint: str | None = None):
        message = " ".join(_unwrap_worker_message(type(self), str(message)).split())  # force a single line
        if hint:
            message = f"{message} ({' '.join(hint.split())})"
        super().__init__(message)


def _unwrap_worker_message(cls: type, message: str) -> str:
    """The message a :class:`UserError` raised in a DataLoader worker was raised with.

    torch re-raises a worker's exception in the main process as ``cls(text)``, where text is
    ``"Caught <cls> in DataLoader worker process N.\nOriginal Traceback ...`` and ends with the
    line ``<module>.<cls>: <message>`` (a UserError's message is one line). Any other
    message is returned as it is."""
    if not message.startswith(f"Caught {cls.__name__} ") or "Original Traceback" not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return message


class MainProcessError(UserError):
    """The user error the main process of a multi-process launch met and printed, as
    another process learns it (:func:`wsreid.distributed.wait_for_run_dir`): the command
    line exits with its status without printing the line a second time."""

    printed_by_main_process = True


class RecipeError(UserError):
    """A recipe failed to load or validate, or a value of it does not fit what a run
    found (the data, the model's parameters).

    ``key``: the recipe key at fault (``("train", "batch_size")``), where the error is
    raised during a run and cannot cite its line itself: :func:`wsreid.engine.session.run_recipe`
    puts the file and line that set it (or the override) in front of the message, as
    ``wsreid validate`` cites its own errors."""

    def __init__(self, message: str, *, hint: str | None = None, key: tuple[str, ...] | None = None):
        super().__init__(message, hint=hint)
        self.key = key

    def cite(self, locations) -> "RecipeError":
        """Put the file and line (or the override) that set :attr:`key` (``locations``: a
        :class:`wsreid.recipe.locations.Locations`) in front of the message, as ``wsreid
        validate`` cites its errors: ``recipe.yaml:4: train.batch_size 100000 exceeds ...``.
        A key no layer wrote is cited where its nearest written parent is; an error without
        key, or one cited already (an init pretraining's, by its own recipe), is left as it
        is. Returns this error."""
        if self.key is not None and locations is not None and not getattr(self, "cited", False):
            self.args = (f"{locations.find(tuple(self.key))}: {self.args[0]}", *self.args[1:])
            self.cited = True
        return self


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


class ParamsCheckError(ValueError):
    """Raised by :meth:`wsreid.api.Component.check_params` for a parameter
    whose value is valid in itself but does not fit the machine (a folder that does not
    exist, a missing file), or by :meth:`wsreid.api.Component.check_recipe` for one that
    does not fit the rest of the recipe, or by a component's ``__init__`` for one that does not
    fit what only the run knows (the size of the training set). Not a :class:`UserError`
    itself: ``wsreid validate`` and the run turn it into a :class:`RecipeError` that cites the
    recipe line setting the parameter.

    ``key``: the parameter's name (a dotted path for nested parameters, e.g.
    ``"vision.patch_size"``); ``message``: what is wrong, in a few words; ``hint``: what to
    do (optional)."""

    def __init__(self, key: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.key, self.message, self.hint = key, message, hint


class ParamsCheckWarning(UserWarning):
    """Issued by :meth:`wsreid.api.Component.check_params` (``warnings.warn(
    ParamsCheckWarning(key, message))``) for a parameter that may work where the run
    starts but not here (a hub model not cached, the hub unreachable now). The recipe
    loader keeps it as one of the recipe's warnings, citing the recipe line that sets the
    parameter (:attr:`wsreid.recipe.LoadedRecipe.warnings`; ``wsreid validate`` and
    ``wsreid run`` print it as a ``warning:`` line); the recipe stays valid.

    ``key``: the parameter's name, as for :class:`ParamsCheckError`; ``message``: what may
    not work and what to do, in one line."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


def debug_requested() -> bool:
    """Whether ``WSREID_DEBUG=1`` asks for tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV) == "1"


def report_user_errors(main: Callable[[], int]) -> int:
    """Run ``main`` (a script's entry point) and return its exit code; a :class:`UserError`
    it raises becomes ``error: <message>`` on stderr and :attr:`ExitCode.USER_ERROR`, as on
    the command line (``WSREID_DEBUG=1``: the traceback instead)."""
    try:
        return main()
    except UserError as exc:
        if debug_requested():
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def check_strings(name: str, values: Any) -> list[str]:
    """``values`` as a list of strings; a ``TypeError`` in one line for a single string
    (it would be read character by character) or an item that is not a string."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} takes a list of strings, got the single string {values!r}: write [{values!r}]")
    if isinstance(values, Mapping):
        raise TypeError(f"{name} takes a list of strings, got a mapping ({type(values).__name__})"
                        + (" (overrides are 'key=value' strings, e.g. ['train.epochs=1'])" if name == "overrides" else ""))
    items = list(values)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} takes a list of strings, got {item!r} ({type(item).__name__}) in it")
    return items


def one_line(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


@contextmanager
def faults_named(fault: Callable[[Exception], UserError]):
    """Around a call into a plugin's code (a built component, a component's own recipe
    check): an exception other than a UserError (which already says what to do) or running
    out of memory (the machine's, not the plugin's) becomes ``fault(exc)``, one line naming
    the component."""
    try:
        yield
    except (UserError, MemoryError):
        raise
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch's: the machine, not the plugin
            raise
        raise fault(exc) from exc
