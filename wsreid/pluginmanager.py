"""Plugin discovery: one pluggy PluginManager per run; no module-global state but the
record of the missing-``@hookimpl`` warnings already printed (once per process).

Plugins come from the entry-point group ``wsreid`` (installed packages, including the
shipped ones) and from a recipe's ``plugins:`` list of importable modules.

Safety rules:

* an installed plugin that fails to import, implements a hook that does not exist (a
  typo would never be called) or with arguments it does not have, or fails inside its
  ``wsreid_register`` hook, is recorded as broken (:class:`BrokenPlugin`: its entry-point
  name, distribution and error, reported by ``wsreid plugins``, as a warning, and in
  errors about unknown components); its components are withdrawn and the rest keep
  working;
* a recipe plugin (or an object passed in) with any of these faults is an error, since the
  recipe needs it;
* two plugins registering the same kind and name is an error naming both distributions;
* plugins can be disabled by entry-point or distribution name with ``--disable-plugin``
  or the ``WSREID_DISABLE_PLUGINS`` environment variable (comma separated); a name that
  matches no plugin gets a warning;
* a plugin defining a hook function without ``@hookimpl`` (never called) gets a warning,
  once per process for each plugin and hook.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as md
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pluggy

from wsreid import hookspecs
from wsreid.errors import PluginError, check_strings
from wsreid.registry import SHIPPED_DISTRIBUTION, DuplicateComponentError, Registry, ShippedNameTaken

__all__ = ["ENTRY_POINT_GROUP", "DISABLE_ENV", "BrokenPlugin", "Plugins", "disabled_from_env", "load_plugins"]

ENTRY_POINT_GROUP = "wsreid"
DISABLE_ENV = "WSREID_DISABLE_PLUGINS"


@dataclass
class BrokenPlugin:
    """An installed plugin that could not be used: ``name`` (entry-point name),
    ``distribution`` (None when unknown) and ``error`` (one line)."""

    name: str
    distribution: str | None
    error: str

    def describe(self) -> str:
        """One line: which plugin failed and why."""
        who = f"plugin {self.name!r}" + (f" from distribution {self.distribution!r}" if self.distribution else "")
        return f"{who} failed to load: {self.error}"


@dataclass
class Plugins:
    """A loaded plugin set: the pluggy manager, the registry it filled, broken plugins,
    the names asked to be disabled, and those of them that matched no plugin."""

    manager: pluggy.PluginManager
    registry: Registry
    broken: list[BrokenPlugin] = field(default_factory=list)
    disabled: set[str] = field(default_factory=set)
    unmatched_disabled: set[str] = field(default_factory=set)
    #: plugin name -> (distribution, version), both None for recipe modules and objects
    providers: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def hook(self):
        """``manager.hook``: call lifecycle hooks as ``plugins.hook.wsreid_epoch_end(...)``."""
        return self.manager.hook

    def observers(self) -> list[dict[str, object]]:
        """Every plugin implementing a lifecycle hook (any hook but ``wsreid_register``):
        ``{"plugin", "hooks", "distribution", "version"}``, by plugin name. They are
        called in every run."""
        hooks: dict[str, list[str]] = {}
        for name in (n for n in hookspecs.__dict__ if n.startswith("wsreid_") and n != "wsreid_register"):
            caller = getattr(self.manager.hook, name, None)
            for impl in caller.get_hookimpls() if caller is not None else []:
                hooks.setdefault(impl.plugin_name, []).append(name)
        out = []
        for plugin in sorted(hooks):
            dist, version = self.providers.get(plugin, (None, None))
            out.append({"plugin": plugin, "hooks": hooks[plugin], "distribution": dist, "version": version})
        return out


def disabled_from_env() -> set[str]:
    """Plugin names listed in ``WSREID_DISABLE_PLUGINS`` (comma separated)."""
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _normalise(name: str) -> str:
    """Distribution names compare case-insensitively with ``-``, ``_`` and ``.`` alike."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _error_line(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split()) if str(exc) else type(exc).__name__


def _import_error_line(exc: BaseException) -> str:
    """:func:`_error_line` and where the plugin's code raised it: ``at FILE:LINE`` (the
    innermost frame outside the import machinery; a SyntaxError's own file and line)."""
    return f"{_error_line(exc)} (at {error_location(exc)})" if error_location(exc) else _error_line(exc)


#: wsreid's own source folder: its frames (the import call) are never the plugin's fault
_OWN_SOURCE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def error_location(exc: BaseException) -> str | None:
    """``FILE:LINE`` where ``exc`` was raised, skipping the import machinery and wsreid's
    own frames; a SyntaxError's file and line. None when unknown (a module that does not
    exist has no line of its own)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    where = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if (not filename.startswith("<frozen") and "importlib" not in filename
                and not os.path.abspath(filename).startswith(_OWN_SOURCE)):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def load_plugins(
    modules: Iterable[str] = (),
    *,
    disabled: Iterable[str] = (),
    entry_points: bool = True,
    objects: Iterable[tuple[str, object]] = (),
    distributions: Iterable[str] | None = None,
    use_env: bool = True,
    modules_from: str = "recipe 'plugins:'",
) -> Plugins:
    """Create a plugin manager, load plugins and fill a registry.

    ``modules``: importable module names (a recipe's ``plugins:``); ``objects``: (name,
    plugin object) pairs registered directly (tests, embedding); ``disabled``: entry-point,
    module or distribution names to skip (plus ``WSREID_DISABLE_PLUGINS`` when
    ``use_env``); ``distributions``: when given, only entry points of these distributions
    are loaded (e.g. ``["wsreid"]`` for the shipped plugins alone); ``modules_from``: where
    ``modules`` came from, as a module that fails to import names it (``--module`` for
    ``wsreid plugins --module``).

    While plugins are imported and register, standard output goes to standard error: what
    a plugin prints then (a greeting, a version banner) must not come before a command's
    own output, such as the JSON of ``wsreid schema`` or of ``wsreid eval``.
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _load_plugins(modules, disabled, entry_points, objects, distributions, use_env, modules_from)


def _load_plugins(modules, disabled, entry_points, objects, distributions, use_env, modules_from) -> Plugins:
    """:func:`load_plugins`'s work."""
    modules = check_strings("modules", modules)
    disabled_set = set(check_strings("disabled", disabled)) | (disabled_from_env() if use_env else set())
    disabled_norm = {_normalise(d) for d in disabled_set}
    matched: set[str] = set()
    wanted = None if distributions is None else {_normalise(d) for d in distributions}
    pm = pluggy.PluginManager("wsreid")
    pm.add_hookspecs(hookspecs)
    broken: list[BrokenPlugin] = []
    providers: dict[str, tuple[str | None, str | None]] = {}

    def skip(*names: str | None) -> bool:
        hits = {n for n in names if n and _normalise(n) in disabled_norm}
        matched.update(_normalise(n) for n in hits)
        return bool(hits)

    if entry_points:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if wanted is not None and (dist is None or _normalise(dist) not in wanted):
                continue
            if skip(ep.name, dist, ep.module) or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a broken third-party package must not take the rest down
                broken.append(BrokenPlugin(ep.name, dist, _import_error_line(exc)))
                continue
            if pm.is_registered(plugin):
                continue  # the same module under a second entry-point name
            try:
                _register(pm, plugin, ep.name)
            except PluginError as exc:
                broken.append(BrokenPlugin(ep.name, dist, str(exc)))
                continue
            providers[ep.name] = (dist, version)

    for modname in modules:
        if skip(modname):
            continue
        if "/" in modname or "\\" in modname or modname.startswith(".") or modname.endswith(".py"):
            given = Path(modname)
            name = (given.parent.name if given.stem == "__init__" else given.stem).lstrip(".") or "my_plugin"
            raise PluginError(f"plugin module {modname!r} ({modules_from}) is a path; a module name is needed",
                              hint=f"give the module's import name, e.g. {name}, with its folder on PYTHONPATH")
        try:
            plugin = importlib.import_module(modname)
        except (Exception, SystemExit) as exc:  # a module that calls sys.exit() on import is broken too
            if isinstance(exc, ModuleNotFoundError) and exc.name == modname and pm.has_plugin(modname):
                continue  # the name of an installed plugin's entry point, loaded above
            raise PluginError(
                f"plugin module {modname!r} ({modules_from}) failed to import: {_import_error_line(exc)}",
                hint="check that it (and what it imports) is installed or on PYTHONPATH"
                if isinstance(exc, ModuleNotFoundError) else "fix the error in the plugin's code",
            ) from exc
        if pm.is_registered(plugin):
            continue  # already loaded through its entry point
        if pm.has_plugin(modname):
            if not _defines_hooks(plugin):
                continue  # the entry point of that name, loaded above (a same-named module of no plugin is not meant)
            raise PluginError(
                f"plugin module {modname!r} ({modules_from}) has the name of the installed plugin {modname!r} "
                f"({_plugin_origin(pm.get_plugin(modname))}), so it would not be loaded",
                hint=f"rename the module, e.g. my_{modname.rsplit('.', 1)[-1]}")
        _register(pm, plugin, modname)
        providers[modname] = (None, None)

    for name, obj in objects:
        if not skip(name) and not pm.is_registered(obj):
            _register(pm, obj, name)
            providers[name] = (None, None)

    _check_hook_names(pm, providers, broken)

    registry = _register_components(pm, providers, broken)
    for b in broken:
        registry.note_unavailable(b.describe())
    for name in sorted(disabled_set):
        if _normalise(name) in matched:
            registry.note_unavailable(f"plugin {name!r} is disabled (--disable-plugin or {DISABLE_ENV})")
    unmatched = {d for d in disabled_set if _normalise(d) not in matched}
    for entry in registry.settings_entries():  # settings are read by lifecycle hooks (docs/hooks.md)
        plugin = pm.get_plugin(entry.provider)
        if plugin is not None and all(caller.name == "wsreid_register" for caller in pm.get_hookcallers(plugin) or []):
            _warn_once(f"plugin {entry.provider!r} declares the settings block {entry.key!r} but implements no "
                       "lifecycle hook, so nothing reads it (import the module holding its hooks, decorated with "
                       "@hookimpl, in the plugin's entry-point module)")
    for b in broken:
        _warn_once(b.describe())
    if unmatched:
        _warn_once(f"no plugin named {', '.join(sorted(unmatched))} to disable "
                   "(use an entry-point or distribution name shown by 'wsreid plugins')")
    return Plugins(pm, registry, broken, disabled_set, unmatched, dict(providers))


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """``pm.register`` with pluggy's validation errors (e.g. a hook implementation asking
    for an argument its hook does not have) as one-line :class:`PluginError`."""
    if pm.has_plugin(name):
        raise PluginError(f"plugin name {name!r} is taken by the installed plugin {name!r} "
                          f"({_plugin_origin(pm.get_plugin(name))})",
                          hint="register yours under another name")
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise _validation_error(pm, plugin, name, exc) from exc


def _defines_hooks(module: object) -> bool:
    """Whether ``module`` defines a wsreid hook function (``wsreid_register``, a lifecycle
    hook), decorated or not: a plugin module."""
    return any(callable(getattr(module, name, None)) for name in dir(hookspecs) if name.startswith("wsreid_"))


def _plugin_origin(plugin: object) -> str:
    """Where a registered plugin comes from, for a message: its module's name."""
    if isinstance(plugin, types.ModuleType):
        return f"module {plugin.__name__}"
    return f"an object from {type(plugin).__module__}"


def _validation_error(pm: pluggy.PluginManager, plugin: object, name: str, exc: Exception) -> PluginError:
    """One line for a hook implementation pluggy refuses: for arguments the hook does not
    pass, the implementation's signature, the unknown names and the hook's own arguments
    (with the closest one); else pluggy's text."""
    import difflib
    import inspect

    for hook_name, spec in ((n, getattr(pm.hook, n, None)) for n in dir(pm.hook) if n.startswith("wsreid_")):
        impl = getattr(plugin, hook_name, None)
        if spec is None or impl is None or spec.spec is None:
            continue
        wanted = list(spec.spec.argnames)
        try:
            given = [p for p in inspect.signature(impl).parameters if p != "self"]
        except (TypeError, ValueError):
            continue
        unknown = [a for a in given if a not in wanted]
        if unknown:
            close = [c for a in unknown for c in difflib.get_close_matches(a, wanted, n=1, cutoff=0.3)]
            hint = (f"did you mean {', '.join(repr(c) for c in close)}? " if close else "") + \
                f"{hook_name} is called with {', '.join(wanted) or 'no arguments'}; an implementation may take any " \
                "of them, by name (docs/hooks.md)"
            return PluginError(f"plugin {name!r}: {hook_name}({', '.join(given)}) asks for "
                               f"{', '.join(repr(a) for a in unknown)}, which the hook does not pass", hint=hint)
    return PluginError(f"plugin {name!r}: {' '.join(str(exc).split())}", hint="hook arguments are listed in docs/hooks.md")


def _check_hook_names(
    pm: pluggy.PluginManager, providers: dict[str, tuple[str | None, str | None]], broken: list[BrokenPlugin]
) -> None:
    """A hook implementation whose name matches no specification would never be called:
    an installed plugin with one is unregistered and recorded as broken, a recipe or
    embedded one is an error. Both messages suggest the closest hook name."""
    specified = sorted(n for n, c in vars(pm.hook).items() if isinstance(c, pluggy.HookCaller) and c.has_spec())
    for name, caller in sorted(vars(pm.hook).items()):
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            close = difflib.get_close_matches(name, specified, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + "hook names are listed in docs/hooks.md"
            dist = providers.get(impl.plugin_name, (None, None))[0]
            if dist is None:
                raise PluginError(f"plugin {impl.plugin_name!r} implements an unknown hook {name!r}", hint=hint)
            broken.append(BrokenPlugin(impl.plugin_name, dist, f"implements an unknown hook {name!r} ({hint})"))
            pm.unregister(name=impl.plugin_name)
            providers.pop(impl.plugin_name, None)
    pm.check_pending()
    for plugin_name, plugin in pm.list_name_plugin():  # a hook function without its marker is never called
        for hook in specified:
            function = getattr(plugin, hook, None)
            if callable(function) and getattr(function, "wsreid_impl", None) is None:
                _warn_once(f"plugin {plugin_name!r} defines {hook} without @hookimpl, so it is never called "
                           "(decorate it: from wsreid import hookimpl)")


#: the plugin warnings already printed: each is printed once per process, not once per
#: load (a study, or a script calling load_recipe again, loads the plugins every time)
_WARNED: set[str] = set()


def forget_printed_warnings() -> None:
    """Print the plugin warnings again at the next load (a command starts with this: it
    shows the warnings of its own loads, once each)."""
    _WARNED.clear()


def _warn_once(line: str) -> None:
    """Print ``warning: <line>`` to stderr, unless this process printed it already."""
    if line not in _WARNED:
        _WARNED.add(line)
        print(f"warning: {line}", file=sys.stderr)


def _register_components(
    pm: pluggy.PluginManager, providers: dict[str, tuple[str | None, str | None]], broken: list[BrokenPlugin]
) -> Registry:
    """Call every plugin's ``wsreid_register`` with one registry.

    An installed plugin (one with a distribution) that fails here is unregistered, its
    partial registrations are removed and it is recorded in ``broken``; a duplicate name
    or a failing recipe/embedded plugin is an error.
    """
    registry = Registry()
    impls = list(reversed(pm.hook.wsreid_register.get_hookimpls()))
    # the shipped plugins first, so that a third-party plugin reusing one of their names is
    # the one left out (ShippedNameTaken) whichever entry-point name sorts first
    impls.sort(key=lambda impl: providers.get(impl.plugin_name, (None, None))[0] != SHIPPED_DISTRIBUTION)
    for impl in impls:
        name = impl.plugin_name
        dist, version = providers.get(name, (None, None))
        registry.set_provider(name, dist, version)
        try:
            impl.function(registry=registry)
        except ShippedNameTaken as exc:
            registry.discard_provider(name)
            pm.unregister(name=name)
            broken.append(BrokenPlugin(name, dist, str(exc)))
            continue
        except DuplicateComponentError:
            raise
        except (Exception, SystemExit) as exc:
            who = f"{name!r}" + (f" (distribution {dist!r})" if dist else "")
            if dist is None:
                if isinstance(exc, PluginError):
                    raise
                raise PluginError(f"plugin {who} failed while registering components: {_import_error_line(exc)}") from exc
            registry.discard_provider(name)
            pm.unregister(name=name)
            broken.append(BrokenPlugin(name, dist, f"while registering components: {_import_error_line(exc)}"))
    registry.set_provider("<unknown>")
    return registry
