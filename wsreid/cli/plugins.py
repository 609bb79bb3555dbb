"""``wsreid plugins`` and ``wsreid schema``: what the installed plugins register."""

from __future__ import annotations

import argparse
import json

from wsreid.cli.common import add_common
from wsreid.errors import ExitCode


def add_parsers(sub) -> None:
    """Register ``schema`` and ``plugins``."""
    p = sub.add_parser("schema", help="print the JSON schema of recipes")
    add_common(p)
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plugins", help="list registered components")
    p.add_argument("--module", action="append", default=[], help="also load this plugin module")
    add_common(p)
    p.set_defaults(func=cmd_plugins)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema of recipes for the registered components."""
    from wsreid.pluginmanager import load_plugins
    from wsreid.recipe import recipe_json_schema

    plugins = load_plugins(disabled=args.disable_plugin)
    print(json.dumps(recipe_json_schema(plugins.registry), indent=1))
    return ExitCode.OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print every registered component by kind, with its provider and parameters, then
    the plugins that failed to load or were disabled."""
    from wsreid.api import COMPONENT_KINDS
    from wsreid.pluginmanager import load_plugins

    plugins = load_plugins(args.module, disabled=args.disable_plugin)
    for kind in COMPONENT_KINDS:
        entries = list(plugins.registry.entries(kind))
        print(f"{kind}:")
        for e in entries:
            flag = "" if e.cls.weakly_supervised else "  [NOT weakly supervised]"
            print(f"  {e.name:<24} {e.provided_by} ({e.provider}){flag}")
            if e.summary:
                print(f"      {e.summary}")
            for fname, field in e.params_model.model_fields.items():
                default = field.get_default(call_default_factory=True) if not field.is_required() else "<required>"
                print(f"      {fname} = {default!r}")
    for b in plugins.broken:
        print(f"broken: {b.describe()}")
    if plugins.disabled:
        print(f"disabled: {', '.join(sorted(plugins.disabled))}")
    return ExitCode.OK
