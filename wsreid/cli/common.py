"""Options shared by several commands (each defined once here), the parser class of every
command (:class:`ArgumentParser`: an argument mistake is one ``error:`` line), and the print
of a stop's line (:func:`say_stop`)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from wsreid.launcher import launch_from_env


def say_stop(line: str) -> None:
    """Print the one line of a stop (``interrupted; ...``, ``stopped by SIGTERM ...``) on
    stderr, after an empty line that ends a progress bar's. Under a multi-process launch
    only one process prints it (:func:`wsreid.distributed.stop_line_here`). A stderr that
    cannot be written - its terminal closed, the SIGHUP that stopped the command - loses
    the line; the exit status still tells the stop."""
    if launch_from_env().multi_process:  # only then: it imports torch
        from wsreid.distributed import stop_line_here

        if not stop_line_here():
            return
    try:
        print(f"\n{line}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # the terminal is gone (EIO), or stderr was closed
        pass


def say_error(line: str) -> None:
    """Print ``line``, a command's one line of a user error (``error: ...``), on stderr.
    Under a multi-process launch a line the main process prints too is printed once
    (:func:`wsreid.distributed.error_line_here`)."""
    if launch_from_env().multi_process:  # only then: it imports torch
        from wsreid.distributed import error_line_here

        if not error_line_here(line):
            return
    print(line, file=sys.stderr)


#: a hook of :meth:`ArgumentParser.add_error_hint`: (parser, argparse's message, the
#: arguments this parser parsed) -> (what else is wrong, what to do), or None
ErrorHint = Callable[["ArgumentParser", str, Sequence[str]], "tuple[str, str] | None"]

#: the namespace attribute on which the deepest parser that left arguments unrecognised
#: names itself for :meth:`ArgumentParser.parse_args` (removed before it returns)
_LEFT_BY = "_wsreid_unrecognized_by"


def _close_choice(message: str) -> str | None:
    """The choice closest to the one given, in argparse's ``invalid choice: 'X' (choose
    from 'a', 'b')`` message, when one is close (a typo); None otherwise."""
    import difflib
    import re

    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if found is None:
        return None
    # Python 3.12.7+ writes the choices without quotes: a, b, c
    choices = [choice.strip("'") for choice in found.group(2).split(", ")]
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
    return close[0] if close else None


class ArgumentParser(argparse.ArgumentParser):
    """The parser of ``wsreid`` and of each of its commands and sub-commands (argparse's
    sub-parsers take their parent's class): an argument mistake prints one line
    ``error: <argparse's message> (see <prog> --help)`` on stderr and exits with 2, instead
    of argparse's usage block; ``--help`` is argparse's. Arguments that no parser takes are
    reported by the command that was given them (``see wsreid eval --help``). A hook added
    with :meth:`add_error_hint` may say more about a mistake, e.g. an option with
    ``nargs="+"`` that took the arguments meant for a positional (:class:`GreedyOptionHint`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._error_hints: list[ErrorHint] = []
        self._parsed: list[str] = []

    def add_error_hint(self, hint: ErrorHint) -> None:
        """Ask ``hint`` about each argument mistake of this parser (once: a hint equal to
        one already added is ignored); the first that answers adds its (what, what to do)
        to the line."""
        if hint not in self._error_hints:
            self._error_hints.append(hint)

    def parse_known_args(self, args=None, namespace=None):
        self._parsed = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(namespace, _LEFT_BY):  # a sub-parser returns first: the deepest names itself
            setattr(namespace, _LEFT_BY, self)
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        by = vars(namespace).pop(_LEFT_BY, self)
        if extras:
            by.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def error(self, message: str):
        """Print ``error: <message> (see <prog> --help)`` and exit with 2; a choice close
        to one of the choices adds ``did you mean ...?``."""
        message = " ".join(str(message).split())
        todo = f"see {self.prog} --help"
        close = _close_choice(message)
        if close:
            todo = f"did you mean {close!r}? See {self.prog} --help"
        for hint in self._error_hints:
            said = hint(self, message, self._parsed)
            if said:
                what, do = said
                message, todo = f"{message}: {' '.join(what.split())}", f"{' '.join(do.split())}; {todo}"
                break
        self.exit(2, f"error: {message} ({todo})\n")


@dataclass(frozen=True)
class GreedyOptionHint:
    """An :meth:`ArgumentParser.add_error_hint` hook for an option of paths that takes
    every following argument (``nargs="+"``, e.g. ``--images PATH [PATH ...]``): when the
    positional ``positional`` (its metavar) is missing and the option took arguments that
    are no existing file or folder, it says that the option took them and that the
    positional goes before the option, or after ``--``."""

    option: str
    positional: str

    def __call__(self, parser: argparse.ArgumentParser, message: str, argv: Sequence[str]) -> tuple[str, str] | None:
        if not message.startswith("the following arguments are required:"):
            return None
        if self.positional not in message.partition(":")[2].replace(",", " ").split():
            return None
        taken: list[str] = []
        for i, arg in enumerate(argv):
            if arg == "--":
                break
            if arg == self.option:  # the last occurrence counts, as for argparse
                taken = []
                for value in argv[i + 1:]:
                    if value.startswith("-"):
                        break
                    taken.append(value)
        strays = [a for a in taken if not os.path.exists(os.path.expanduser(a))]
        if not strays:
            return None
        return (f"{self.option} takes every argument after it, and took {', '.join(map(repr, strays))}, "
                f"which {'is' if len(strays) == 1 else 'are'} not a file or folder",
                f"put {self.positional} before {self.option}, or after --")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``minimum``; anything else is the option's
    one-line error (``argument --workers: needs a whole number >= 1, got '0'``)."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"needs a whole number >= {minimum}, got {text!r}")
        return value

    return whole_number


#: a count of at least one (workers, threads)
positive_int = at_least(1)


def path_argument(text: str) -> str:
    """An argparse ``type`` for a path option: ``~`` is the home folder (a shell leaves
    ``--output-dir=~/x`` as it is), and an empty path is the option's one-line error (a
    script's unset variable: ``--output-dir ""`` trained into the recipe's folder,
    ``--images ""`` searched the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (is the variable meant to hold it set?)")
    return os.path.expanduser(text)


def add_common(p: argparse.ArgumentParser) -> None:
    """``--debug`` (also accepted before the command) and ``--disable-plugin``."""
    add_debug(p, default=argparse.SUPPRESS)
    p.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                   help="do not load this plugin (repeatable; also WSREID_DISABLE_PLUGINS=a,b)")


def add_debug(p: argparse.ArgumentParser, default=False) -> None:
    """``--debug``: show tracebacks. On a sub-command its default is SUPPRESS, so that
    ``wsreid --debug COMMAND`` and ``wsreid COMMAND --debug`` both set it."""
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


#: how every command's ``-o KEY=VALUE`` reads its value (the end of its help line)
OVERRIDE_VALUE_HELP = ("repeatable; VALUE is YAML; KEY=null removes the key, so its default applies, not the value "
                       "of a recipe it extends")


def add_overrides(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """``-o/--override KEY=VALUE`` (repeatable)."""
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help=help_text or f"override a recipe key, e.g. -o train.lr=2e-5 ({OVERRIDE_VALUE_HELP})")


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """A positional recipe file and its overrides."""
    p.add_argument("recipe", help="recipe YAML file")
    add_overrides(p)
