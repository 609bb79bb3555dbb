"""Options shared by several commands (each defined once here), and the print of a stop's
line (:func:`say_stop`)."""

from __future__ import annotations

import argparse
import sys

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


def add_common(p: argparse.ArgumentParser) -> None:
    """``--debug`` (also accepted before the command) and ``--disable-plugin``."""
    add_debug(p, default=argparse.SUPPRESS)
    p.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                   help="do not load this plugin (repeatable; also WSREID_DISABLE_PLUGINS=a,b)")


def add_debug(p: argparse.ArgumentParser, default=False) -> None:
    """``--debug``: show tracebacks. On a sub-command its default is SUPPRESS, so that
    ``wsreid --debug COMMAND`` and ``wsreid COMMAND --debug`` both set it."""
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


def add_overrides(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """``-o/--override KEY=VALUE`` (repeatable)."""
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help=help_text or "override a recipe key, e.g. -o train.lr=2e-5 (repeatable; VALUE is YAML)")


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """A positional recipe file and its overrides."""
    p.add_argument("recipe", help="recipe YAML file")
    add_overrides(p)
