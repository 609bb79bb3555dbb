"""Stop signals (Ctrl-C's SIGINT, a scheduler's or ``timeout``'s SIGTERM, the SIGHUP of a
terminal or ssh session that closed) that stop a run the same way, and are never lost.

The command line runs each command under :func:`stop_on_signals`: while it runs, SIGINT,
SIGTERM and SIGHUP record their number and raise :class:`Stopped`, a ``KeyboardInterrupt``,
where the program is, so every ``except KeyboardInterrupt`` path (a run keeping its last
checkpoint, or removing a directory with nothing to resume; a study keeping its finished
runs) handles each of them. Python drops an exception raised inside a finalizer or a weakref
callback (it prints "Exception ignored in ...") and the program goes on; the engine calls
:func:`check` at step and epoch boundaries and before it writes a run's final files, which
raises the recorded signal again there. Library users' processes are left as they are:
without :func:`stop_on_signals` nothing is recorded and :func:`check` does nothing.

A stop signal that comes within :data:`REPEAT_S` seconds of the one being handled is the
same stop delivered twice and is dropped: a terminal's Ctrl-C (or ``kill`` of a process
group) reaches a ``wsreid run`` that ``wsreid ablate --subprocess`` started both directly
and through the study, which passes its stop signals on to its child; a second exception
raised into the run's own stop handling (its resume line, the directory it removes) would
cut that short. A later one raises again.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from wsreid.errors import ExitCode

__all__ = ["Stopped", "stop_on_signals", "check", "received", "signal_of", "describe", "exit_code"]

#: the signals handled while a command runs, each with the disposition it must have for
#: the handler to be installed (an ignored signal - SIGHUP under ``nohup``, SIGINT in a
#: background job of a script - stays ignored). SIGHUP exists on POSIX systems only.
HANDLED = ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)) + (
    ((signal.SIGHUP, signal.SIG_DFL),) if hasattr(signal, "SIGHUP") else ())

#: seconds after a stop signal during which another one is the same stop, dropped
REPEAT_S = 2.0

_received: int | None = None
_received_at: float | None = None


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where the program was when it came (or at the engine's next
    :func:`check`); ``signum``: its number."""

    def __init__(self, signum: int):
        super().__init__(describe(signum))
        self.signum = signum


def received() -> int | None:
    """The stop signal received while the current command runs (the last one), or None."""
    return _received


def check() -> None:
    """Raise :class:`Stopped` when a stop signal was received: the handler's own exception
    was swallowed (raised inside a finalizer, or caught by code that went on). One global
    read when none was: called at every training step."""
    if _received is not None:
        raise Stopped(_received)


def signal_of(exc: BaseException | None = None) -> int:
    """The signal that stopped the program with ``exc`` (a ``KeyboardInterrupt``): its own
    ``signum``, else the one received, else SIGINT (a ``KeyboardInterrupt`` raised by
    Python's default handler, or by a test)."""
    signum = getattr(exc, "signum", None)
    if signum is None:
        signum = _received
    return int(signum) if signum is not None else int(signal.SIGINT)


def describe(signum: int) -> str:
    """How a message names the stop: ``interrupted`` (Ctrl-C), ``stopped by SIGTERM``,
    ``stopped by SIGHUP``."""
    if signum == signal.SIGINT:
        return "interrupted"
    try:
        return f"stopped by {signal.Signals(signum).name}"
    except ValueError:
        return f"stopped by signal {signum}"


def exit_code(signum: int) -> int:
    """The conventional exit status of a program stopped by ``signum``: 128 + its number,
    the :class:`~wsreid.errors.ExitCode` where it has one (SIGINT:
    :attr:`~wsreid.errors.ExitCode.INTERRUPTED`, SIGTERM: :attr:`~wsreid.errors.ExitCode.TERMINATED`,
    SIGHUP: :attr:`~wsreid.errors.ExitCode.HANGUP`)."""
    code = 128 + int(signum)
    try:
        return ExitCode(code)
    except ValueError:
        return code


def _handle(signum: int, frame) -> None:
    global _received, _received_at
    now = time.monotonic()
    if _received is not None and _received_at is not None and now - _received_at < REPEAT_S:
        return  # the stop being handled, delivered twice
    _received, _received_at = signum, now
    raise Stopped(signum)


def _unraisable(previous):
    """A ``sys.unraisablehook`` that, once a stop signal was received, drops what Python
    cannot propagate (an exception in a finalizer or a weakref callback, printed as
    "Exception ignored in ..."): the :class:`Stopped` itself, recorded for :func:`check`,
    or a consequence of the stop, such as a DataLoader iterator's finalizer finding its
    workers ended by the same SIGTERM. Before a stop, everything goes to ``previous``."""

    def hook(args) -> None:
        if _received is not None:
            return
        previous(args)

    return hook


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs: SIGINT, SIGTERM and SIGHUP (:data:`HANDLED`) raise
    :class:`Stopped` and are recorded (:func:`check`); once one was, exceptions Python
    cannot propagate print nothing. Afterwards the previous handlers are back and nothing
    is recorded. Only in the main thread (the only one signals reach); a signal that is
    ignored (SIGHUP under ``nohup``), or has a handler of someone else's, is left alone."""
    global _received, _received_at
    ours = any(signal.getsignal(signum) is _handle for signum, _ in HANDLED)
    if ours or threading.current_thread() is not threading.main_thread():  # nested: the outer block handles them
        yield
        return
    previous = {}
    for signum, expected in HANDLED:
        if signal.getsignal(signum) is expected:
            previous[signum] = signal.signal(signum, _handle)
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    _received = _received_at = None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        _received = _received_at = None
