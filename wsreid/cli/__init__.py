"""The ``wsreid`` command line: commands that parse their arguments, call the library and
print. Nothing outside this package imports it (tests/test_layering.py).

    wsreid run RECIPE [-o key=value ...] [--output-dir DIR] [--resume | --overwrite]
    wsreid eval RUN_DIR_OR_CHECKPOINT [--recipe RECIPE] [--split test|val] [--data RECIPE]
                [--query-mask-ratio R,...] [--show N]
    wsreid eval --zero-shot --recipe RECIPE
    wsreid search RUN_DIR "a description" [...] --images FILE_OR_FOLDER [...] [--top-k K]
    wsreid ablate STUDY.yaml [-o key=value ...] [--dry-run]
    wsreid validate RECIPE [-o key=value ...]
    wsreid schema
    wsreid plugins
    wsreid data synth|check ...
    wsreid convert-weights IN.pt OUT_DIR [--tokenizer BPE_FILE]

One module per command group: :mod:`wsreid.cli.run` (run, validate), :mod:`wsreid.cli.eval`,
:mod:`wsreid.cli.search`, :mod:`wsreid.cli.ablate`, :mod:`wsreid.cli.plugins` (plugins, schema),
:mod:`wsreid.cli.data`, :mod:`wsreid.cli.convert` (convert-weights). User errors print one
line ``error: ...`` and exit with :attr:`~wsreid.errors.ExitCode.USER_ERROR` (2);
``--debug`` (before or after the command) shows the traceback. Argument mistakes too:
``error: <argparse's message> (see wsreid COMMAND --help)``
(:class:`~wsreid.cli.common.ArgumentParser`).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from wsreid.cli import ablate, convert, data, eval, plugins, run, search
from wsreid.cli.common import ArgumentParser, add_debug, say_error, say_stop
from wsreid.engine import signals
from wsreid.errors import ExitCode, UserError, debug_requested

__all__ = ["build_parser", "main", "entry"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command; each leaf sets ``func(args) -> exit code``.
    Every parser, sub-commands' included, is a :class:`~wsreid.cli.common.ArgumentParser`:
    an argument mistake is one line ``error: ... (see wsreid COMMAND --help)``, exit 2."""
    from wsreid import __version__

    parser = ArgumentParser(prog="wsreid", description="Weakly-supervised text-to-person re-identification")
    parser.add_argument("--version", action="version", version=f"wsreid {__version__}")
    add_debug(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parsers(sub)
    eval.add_parsers(sub)
    search.add_parsers(sub)
    ablate.add_parsers(sub)
    plugins.add_parsers(sub)
    data.add_data_parser(sub)
    convert.add_parsers(sub)
    return parser


def _permission_denied(exc: PermissionError) -> str:
    """The one line of a file or folder this user may not open (read, or write where the
    command writes)."""
    what = f"cannot open {exc.filename}" if exc.filename is not None else "a file cannot be opened"
    return (f"{what}: permission denied (give this user read permission on it, and write permission where the "
            "command writes, or run the command as the user that owns it; --debug shows the traceback)")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code.
    A :class:`~wsreid.errors.UserError` becomes one line on stderr (one for all the
    processes of a multi-process launch that meet it, :func:`~wsreid.cli.common.say_error`;
    ``--debug``: the traceback); a closed output pipe (``wsreid plugins | head``) ends quietly, an output that
    cannot be written (``> file`` on a full disk) is one line, exit 2. While the
    command runs, Ctrl-C, SIGTERM and SIGHUP stop it the same way
    (:mod:`wsreid.engine.signals`): one line (one for all the processes of a multi-process
    launch, :func:`~wsreid.cli.common.say_stop`), exit status 128 + the signal's number
    (130, 143, 129); the previous handlers are back when it returns."""
    from wsreid.pluginmanager import forget_printed_warnings

    forget_printed_warnings()  # this command's plugin warnings, once each
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    if not [arg for arg in given if arg != "--debug"]:  # `wsreid` alone asks what it can do: its help
        parser.print_help()
        return ExitCode.OK
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or debug_requested()
    with signals.stop_on_signals():
        try:
            if sys.stdout is not None:  # None: started with standard output closed
                sys.stdout = _GuardedOutput(sys.stdout)
            end_with_the_study()
            _check_single_process(args.command)
            code = int(args.func(args) or 0)
        except UserError as exc:
            if debug:
                raise
            if not getattr(exc, "printed_by_main_process", False):  # one line for all the processes
                say_error(f"error: {exc}")
            return exc.exit_code
        except PermissionError as exc:  # a file or folder of another user (a run trained under umask 077, ...)
            if debug:
                raise
            say_error(f"error: {_permission_denied(exc)}")
            return ExitCode.USER_ERROR
        except KeyboardInterrupt as exc:
            signum = signals.signal_of(exc)
            say_stop(signals.describe(signum))
            return signals.exit_code(signum)
        except BrokenPipeError:
            _quiet_closed_pipe()
            return ExitCode.OK
        except _OutputFailed as exc:
            if debug:  # the traceback, and the exit status of a user error as without --debug
                traceback.print_exc()
            return _output_failed(exc.cause)
        finally:
            if isinstance(sys.stdout, _GuardedOutput):
                sys.stdout = sys.stdout.stream
        signum = signals.received()
        if signum is not None and code != signals.exit_code(signum):  # swallowed after the engine's last check
            say_stop(f"{signals.describe(signum)} (after the command had finished)")
            return signals.exit_code(signum)
        return code


def end_with_the_study() -> None:
    """A ``wsreid run`` that ``wsreid ablate`` started (its process id in
    :data:`~wsreid.launcher.STUDY_PID_ENV`; :data:`~wsreid.launcher.started_by_a_study`) ends with the study:
    on Linux the kernel sends it SIGTERM when the study's process ends, even by SIGKILL or
    the out-of-memory killer (``PR_SET_PDEATHSIG``), and it stops as on any SIGTERM - its
    last checkpoint kept, the run resumable by the study's next invocation. An orphan
    trained on and held its run directory, so that the study started again refused that run
    as in use. A study that ended before this process asked is that stop at once. Elsewhere:
    nothing."""
    from wsreid import launcher

    study = os.environ.pop(launcher.STUDY_PID_ENV, None)  # not for the processes this one starts
    launcher.started_by_a_study = study is not None
    if study is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):  # no C library to ask
        return
    if str(os.getppid()) != study:  # the study ended already (this process was handed to init)
        signal.raise_signal(signal.SIGTERM)


#: commands that do their whole work in each process they run in: under a multi-process
#: launch each process would repeat it (and print it), or, for ablate, start the study's runs
SINGLE_PROCESS_COMMANDS = ("eval", "search", "ablate", "data", "convert-weights")


def _check_single_process(name: str) -> None:
    """A single-process command started by a launcher for several processes (torchrun:
    ``WORLD_SIZE`` > 1 with its ``MASTER_ADDR``) is a user error; a ``WORLD_SIZE`` left in
    the shell alone is no launch, and the command runs."""
    from wsreid.launcher import launched_processes

    processes = launched_processes()
    if name in SINGLE_PROCESS_COMMANDS and processes > 1:
        raise UserError(f"wsreid {name} runs in one process: this one was launched as one of {processes} (WORLD_SIZE "
                        "and MASTER_ADDR are set), and each would do all of it",
                        hint=f"run wsreid {name} without torchrun (from a job script that exports the launcher's "
                             f"variables: env -u WORLD_SIZE wsreid {name} ...); only wsreid run trains on several "
                             "processes")


class _OutputFailed(BaseException):
    """Writing the command's output to standard output failed (``cause``: the OSError). A
    BaseException, so that no ``except Exception`` on the way (a component's fault
    wrapper around a plugin that prints) takes it for an error of its own."""

    def __init__(self, cause: OSError):
        super().__init__(str(cause))
        self.cause = cause


class _GuardedOutput:
    """Standard output while a command runs: a write or flush that fails (a full disk
    under ``> file``), a closed pipe aside, raises :class:`_OutputFailed`, which
    :func:`main` tells from the command's own file errors. Everything else is the stream's."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self._guarded(self.stream.write, text)

    def flush(self) -> None:
        self._guarded(self.stream.flush)

    @staticmethod
    def _guarded(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputFailed(exc) from exc

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _output_failed(exc: OSError) -> int:
    """Standard output could not be written (a full disk under ``> file``): one error
    line, the rest of the output dropped, exit 2."""
    from wsreid.fileio import write_failure

    print(f"error: cannot write the output to standard output: {write_failure(exc)} (free space where it goes, or "
          "send it elsewhere)", file=sys.stderr)
    _quiet_closed_pipe()  # what stays buffered is dropped, not flushed again at exit
    return ExitCode.USER_ERROR


def _quiet_closed_pipe() -> None:
    """The reader of our output went away: point stdout at /dev/null so that the flush at
    interpreter exit does not raise again (the Python documentation's recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
        pass


def flush_open_files() -> None:
    """Before ``os._exit`` (a process of a multi-process run): write out every file object
    still open for writing in this process, as interpreter exit does for those it finalizes
    - a plugin's log opened in ``wsreid_run_start`` and never closed. Compressed files
    (gzip, bz2, lzma) are closed, which writes their end marker; every other one is
    flushed. ``os._exit`` drops what Python still buffers. Never raises (a file that cannot
    be written keeps its error to itself, as at interpreter exit)."""
    import bz2
    import gc
    import gzip
    import io
    import lzma

    keep = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    # issubclass on the type: an isinstance ABC check would ask every object its __class__
    files = [obj for obj in gc.get_objects() if issubclass(type(obj), io.IOBase) and id(obj) not in keep]
    compressed = (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)

    def each(action, only=None) -> None:
        for obj in files:
            try:
                if not obj.closed and obj.writable() and (only is None or isinstance(obj, only)):
                    action(obj)
            except Exception:  # a closed pipe, a full disk
                pass

    # a file object may stand on another (text on a buffer on a raw file, text on a gzip
    # file): flushed as often as they can be stacked, in no particular order, each layer's
    # data reaches the one below; then the compressed files' end markers, flushed down too
    for _ in range(3):
        each(lambda obj: obj.flush())
    each(lambda obj: obj.close(), compressed)
    for _ in range(3):
        each(lambda obj: obj.flush())


def entry() -> None:
    """Console-script and ``python -m wsreid`` entry: :func:`main`, then exit.

    A process that took part in a multi-process run has written and closed every file
    when :func:`main` returns; it ends with ``os._exit`` so that gloo's threads are not
    torn down during interpreter finalization (see :func:`wsreid.distributed.left_process_group`),
    once the files plugins left open are flushed (:func:`flush_open_files`)."""
    try:
        code = main()
    except UserError as exc:  # --debug: main raised it for its traceback; the exit status stays a user error's
        traceback.print_exc()
        code = exc.exit_code
    from wsreid.distributed import left_process_group

    if left_process_group():
        sys.stdout.flush()
        sys.stderr.flush()
        flush_open_files()
        os._exit(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_pipe()
    except OSError as exc:  # the output of a short command, held until here
        code = _output_failed(exc)
    sys.exit(code)
