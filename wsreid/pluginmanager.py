"""Plugin discovery: one pluggy PluginManager per run, no module-global state.

Plugins come from the entry-point group ``wsreid`` (installed packages, including the
shipped ones) and from a recipe's ``plugins:`` list of importable modules. A plugin that
fails to import is recorded as broken (reported by ``wsreid plugins`` and in errors about
unknown components) and the rest keep working; a recipe plugin that fails to import is an
error, since the recipe needs it. Plugins can be disabled by name with ``--disable-plugin``
or the ``WSREID_DISABLE_PLUGINS`` environment variable (comma separated).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable

import pluggy

from wsreid import hookspecs
from wsreid.errors import PluginError
from wsreid.registry import Registry

ENTRY_POINT_GROUP = "wsreid"
DISABLE_ENV = "WSREID_DISABLE_PLUGINS"


@dataclass
class BrokenPlugin:
    name: str
    distribution: str | None
    error: str

    def describe(self) -> str:
        who = f"plugin {self.name!r}" + (f" from distribution {self.distribution!r}" if self.distribution else "")
        return f"{who} failed to load: {self.error}"


@dataclass
class Plugins:
    """A loaded plugin set: the pluggy manager, the registry it filled, and failures."""

    manager: pluggy.PluginManager
    registry: Registry
    broken: list[BrokenPlugin] = field(default_factory=list)
    disabled: set[str] = field(default_factory=set)

    @property
    def hook(self):
        return self.manager.hook


def disabled_from_env() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _error_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def load_plugins(
    modules: Iterable[str] = (),
    *,
    disabled: Iterable[str] = (),
    entry_points: bool = True,
    objects: Iterable[tuple[str, object]] = (),
) -> Plugins:
    """Create a plugin manager, load plugins and fill a registry.

    ``modules``: importable module names (a recipe's ``plugins:``); ``objects``:
    (name, plugin object) pairs registered directly (tests, embedding).
    """
    disabled_set = set(disabled) | disabled_from_env()
    pm = pluggy.PluginManager("wsreid")
    pm.add_hookspecs(hookspecs)
    broken: list[BrokenPlugin] = []
    providers: dict[str, tuple[str | None, str | None]] = {}

    if entry_points:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in disabled_set or pm.has_plugin(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party package must not take the rest down
                broken.append(BrokenPlugin(ep.name, dist, _error_line(exc)))
                continue
            pm.register(plugin, name=ep.name)
            providers[ep.name] = (dist, version)

    for modname in modules:
        if modname in disabled_set or pm.has_plugin(modname):
            continue
        try:
            plugin = importlib.import_module(modname)
        except Exception as exc:
            raise PluginError(
                f"plugin module {modname!r} (recipe 'plugins:') failed to import: {_error_line(exc)}",
                hint="check that it is installed or on PYTHONPATH",
            ) from exc
        pm.register(plugin, name=modname)
        providers[modname] = (None, None)

    for name, obj in objects:
        if name not in disabled_set:
            pm.register(obj, name=name)
            providers[name] = (None, None)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin_name!r} implements an unknown hook: {exc}") from exc

    registry = Registry()
    for impl in reversed(pm.hook.wsreid_register.get_hookimpls()):
        dist, version = providers.get(impl.plugin_name, (None, None))
        registry.set_provider(impl.plugin_name, dist, version)
        try:
            impl.function(registry=registry)
        except PluginError:
            raise
        except Exception as exc:
            who = f"{impl.plugin_name!r}" + (f" (distribution {dist!r})" if dist else "")
            raise PluginError(f"plugin {who} failed while registering components: {_error_line(exc)}") from exc
    registry.set_provider("<unknown>")
    for b in broken:
        print(f"warning: {b.describe()}", file=sys.stderr)
    return Plugins(pm, registry, broken, disabled_set)
