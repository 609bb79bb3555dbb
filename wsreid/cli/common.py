"""Options shared by several commands (each defined once here)."""

from __future__ import annotations

import argparse


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
