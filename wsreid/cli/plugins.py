"""``wsreid plugins`` and ``wsreid schema``: what the installed plugins register."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from wsreid.cli.common import add_common
from wsreid.errors import ExitCode

if TYPE_CHECKING:  # pragma: no cover
    from wsreid.pluginmanager import Plugins


def add_parsers(sub) -> None:
    """Register ``schema`` and ``plugins``."""
    p = sub.add_parser("schema", help="print the JSON schema of recipe files (for editors)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--resolved", action="store_true",
                       help="the schema of a whole merged recipe, as a run writes it (RUN/recipe.yaml): required keys "
                            "and a name in every component block")
    which.add_argument("--study", action="store_true", help="the schema of an ablation study file (wsreid ablate)")
    add_common(p)
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plugins", help="list registered components")
    p.add_argument("--module", action="append", default=[], help="also load this plugin module")
    add_common(p)
    p.set_defaults(func=cmd_plugins)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema of recipe files (one layer, as written) for the registered
    components; ``--resolved``: of a merged recipe; ``--study``: of a study file."""
    if args.study:
        from wsreid.ablate import study_json_schema

        print(json.dumps(study_json_schema(), indent=1))
        return ExitCode.OK
    from wsreid.pluginmanager import load_plugins
    from wsreid.recipe import recipe_json_schema

    plugins = load_plugins(disabled=args.disable_plugin)
    print(json.dumps(recipe_json_schema(plugins.registry, resolved=args.resolved), indent=1))
    return ExitCode.OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print every registered component by kind, with its provider and parameters, the
    declared settings blocks and the observers, then the plugins that failed to load or
    were disabled."""
    import torch

    from wsreid.api import COMPONENT_KINDS
    from wsreid.pluginmanager import load_plugins

    plugins = load_plugins(args.module, disabled=args.disable_plugin, modules_from="--module")
    for kind in COMPONENT_KINDS:
        entries = list(plugins.registry.entries(kind))
        print(f"{kind}:")
        for e in entries:
            flag = "" if e.cls.weakly_supervised else "  [NOT weakly supervised]"
            if e.kind != "encoder" and issubclass(e.cls, torch.nn.Module):
                flag += "  [trainable]"  # its parameters are trained with the encoder's
            print(f"  {e.name:<24} {e.provided_by} ({e.provider}){flag}")
            if e.summary:
                print(f"      {plain_text(e.summary)}")
            for fname, field in e.params_model.model_fields.items():
                print(f"      {fname}: {field_default(field)}")
    print_settings_and_observers(plugins)
    for b in plugins.broken:
        print(f"broken: {b.describe()}")
    disabled = plugins.disabled - plugins.unmatched_disabled  # the others were warned of: no such plugin
    if disabled:
        print(f"disabled: {', '.join(sorted(disabled))}")
    return ExitCode.OK


def field_default(field) -> str:
    """A parameter's default as a recipe writes it (:func:`~wsreid.recipe.yamlio.flow_text`),
    or ``(required)``."""
    from wsreid.recipe.yamlio import flow_text

    return "(required)" if field.is_required() else flow_text(field.get_default(call_default_factory=True))


def plain_text(docstring_text: str) -> str:
    """A docstring's sentence for the terminal: ``code`` written as `code`."""
    return docstring_text.replace("``", "`")


def print_settings_and_observers(plugins: "Plugins") -> None:
    """The part of ``wsreid plugins`` after the components: every declared settings block
    (recipe key ``settings.<key>``, its fields and defaults) and every observer with the
    hooks it implements."""
    entries = plugins.registry.settings_entries()
    print("settings:" if entries else "settings: none declared")
    for e in entries:
        print(f"  {e.key:<24} {e.provided_by} ({e.provider})")
        if e.summary:
            print(f"      {plain_text(e.summary)}")
        for fname, fld in e.model.model_fields.items():
            print(f"      {fname}: {field_default(fld)}" + (f"  # {fld.description}" if fld.description else ""))
    observers = plugins.observers()
    print("observers:" if observers else "observers: none")
    for o in observers:
        who = f"{o['distribution']} {o['version'] or ''}".strip() if o["distribution"] else o["plugin"]
        print(f"  {o['plugin']:<24} {who}: {', '.join(o['hooks'])}")
