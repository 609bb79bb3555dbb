"""The component registry: kind -> name -> component class, with its provider.

One registry per plugin manager (:func:`wsreid.pluginmanager.load_plugins`). Plugins fill
it in their ``wsreid_register`` hook; recipes look components up by kind and name. A
lookup of an unknown name raises a one-line :class:`~wsreid.errors.RecipeError` that
suggests close names and mentions plugins that failed to load or were disabled (one of
them may be the provider the recipe expects).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Iterator

from wsreid.api import COMPONENT_KINDS, KINDS, Component, Params
from wsreid.errors import DuplicateComponentError, PluginError, RecipeError

__all__ = ["BASE_CLASSES", "DuplicateComponentError", "Entry", "Registry"]

#: kind -> the base class its components derive from (from :data:`wsreid.api.KINDS`)
BASE_CLASSES: dict[str, type[Component]] = {k.kind: k.base for k in KINDS}


@dataclass(frozen=True)
class Entry:
    """One registered component: its class and who provides it."""

    kind: str
    name: str
    cls: type[Component]
    provider: str  # plugin name (module or entry point)
    distribution: str | None = None  # distribution name, when known
    version: str | None = None
    summary: str = ""

    @property
    def params_model(self) -> type[Params]:
        """The component's parameter model (``cls.Params``)."""
        return self.cls.Params

    @property
    def provided_by(self) -> str:
        """``"<distribution> <version>"`` when the plugin came from an installed
        distribution, else the plugin name."""
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return self.provider


class Registry:
    """Holds every component registered by plugins of one plugin manager."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in COMPONENT_KINDS}
        self._current_provider: tuple[str, str | None, str | None] = ("<unknown>", None, None)
        #: One line per plugin that is not available (failed to load, disabled); shown
        #: with every unknown-component error, since the missing name may be theirs.
        self.unavailable: list[str] = []

    def note_unavailable(self, description: str) -> None:
        """Record that a plugin is not available (``description``: one line saying which
        and why); unknown-component errors will mention it."""
        line = " ".join(description.split())
        if line and line not in self.unavailable:
            self.unavailable.append(line)

    # -- registration --------------------------------------------------------------
    def add(self, kind: str, name: str, cls: type[Component], *, summary: str | None = None) -> None:
        """Register ``cls`` as component ``name`` of ``kind``.

        ``cls`` must subclass the kind's base class in :mod:`wsreid.api` and declare a
        ``Params`` model deriving from :class:`wsreid.api.Params` (without a ``name``
        field); ``summary`` defaults to the first line of its docstring. Raises
        :class:`PluginError` for an invalid registration and
        :class:`DuplicateComponentError` when the name is taken.
        """
        provider, dist, version = self._current_provider
        if kind not in self._entries:
            raise PluginError(
                f"plugin {provider!r} registers {name!r} under unknown kind {kind!r}",
                hint=f"kinds are: {', '.join(COMPONENT_KINDS)}",
            )
        base = BASE_CLASSES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"plugin {provider!r}: {kind} {name!r} must subclass wsreid.api.{base.__name__}")
        params = getattr(cls, "Params", None)
        if not (isinstance(params, type) and issubclass(params, Params)):
            raise PluginError(f"plugin {provider!r}: {kind} {name!r} needs a Params model deriving from wsreid.api.Params")
        if "name" in params.model_fields:
            raise PluginError(f"plugin {provider!r}: {kind} {name!r}: 'name' is reserved and cannot be a parameter")
        existing = self._entries[kind].get(name)
        if existing is not None:
            newcomer = f"{dist} {version or ''}".strip() if dist else provider
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {existing.provided_by} (plugin {existing.provider!r}) "
                f"and by {newcomer} (plugin {provider!r})",
                hint=f"uninstall one, or disable one with --disable-plugin {existing.provider} or "
                f"--disable-plugin {provider} (or WSREID_DISABLE_PLUGINS)",
            )
        doc = (cls.__doc__ or "").strip().splitlines()
        self._entries[kind][name] = Entry(
            kind, name, cls, provider, dist, version, summary if summary is not None else (doc[0] if doc else "")
        )

    def set_provider(self, provider: str, distribution: str | None = None, version: str | None = None) -> None:
        """Attribute the following ``add`` calls to plugin ``provider`` (and its
        distribution and version, when installed)."""
        self._current_provider = (provider, distribution, version)

    def discard_provider(self, provider: str) -> list[Entry]:
        """Remove every component registered by plugin ``provider`` (used when its
        registration fails half-way); returns the removed entries."""
        removed = []
        for entries in self._entries.values():
            for name in [n for n, e in entries.items() if e.provider == provider]:
                removed.append(entries.pop(name))
        return removed

    # -- lookup --------------------------------------------------------------------
    def get(self, kind: str, name: str, *, where: str | None = None) -> Entry:
        """The entry of component ``name`` of ``kind``.

        Raises :class:`RecipeError` (one line, prefixed by ``where``) for an unknown name:
        it suggests close names, says when the name exists under another kind (and who
        provides it there), and names plugins that failed to load or were disabled.
        """
        try:
            return self._entries[kind][name]
        except KeyError:
            pass
        names = sorted(self._entries.get(kind, {}))
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        elsewhere = [v[name] for k, v in self._entries.items() if name in v and k != kind]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known {kind} names: {', '.join(names) or 'none'}"
        if elsewhere:
            hint += f"; {name!r} is a {elsewhere[0].kind} (from {elsewhere[0].provided_by})"
        if self.unavailable:
            hint += "; it may come from a plugin that is not available: " + "; ".join(self.unavailable)
        loc = f"{where}: " if where else ""
        raise RecipeError(f"{loc}unknown {kind} {name!r}", hint=hint)

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted names of ``kind`` matching the shell-style ``pattern``."""
        return sorted(n for n in self._entries[kind] if fnmatch.fnmatch(n, pattern))

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """Entries of ``kind`` (every kind when None), by kind order then name."""
        kinds = [kind] if kind else list(COMPONENT_KINDS)
        for k in kinds:
            for name in sorted(self._entries[k]):
                yield self._entries[k][name]

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._entries.get(kind, {})
