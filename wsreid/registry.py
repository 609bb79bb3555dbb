"""The component registry: kind -> name -> component class, with its provider."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Iterator

from wsreid.api import (
    COMPONENT_KINDS,
    Component,
    DatasetComponent,
    EncoderComponent,
    GlobalAssociation,
    LocalAssociation,
    Objective,
    PairConstruction,
    Params,
)
from wsreid.errors import PluginError, RecipeError

BASE_CLASSES: dict[str, type[Component]] = {
    "dataset": DatasetComponent,
    "encoder": EncoderComponent,
    "pair_construction": PairConstruction,
    "local_association": LocalAssociation,
    "global_association": GlobalAssociation,
    "objective": Objective,
}


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
        return self.cls.Params

    @property
    def provided_by(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return self.provider


class Registry:
    """Holds every component registered by plugins of one plugin manager."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in COMPONENT_KINDS}
        self._current_provider: tuple[str, str | None, str | None] = ("<unknown>", None, None)

    # -- registration --------------------------------------------------------------
    def add(self, kind: str, name: str, cls: type[Component], *, summary: str | None = None) -> None:
        """Register ``cls`` as component ``name`` of ``kind``."""
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
            raise PluginError(
                f"{kind} {name!r} is registered twice: by {existing.provided_by} ({existing.provider}) "
                f"and by {dist or provider} ({provider})",
                hint="disable one of them with --disable-plugin or WSREID_DISABLE_PLUGINS",
            )
        doc = (cls.__doc__ or "").strip().splitlines()
        self._entries[kind][name] = Entry(
            kind, name, cls, provider, dist, version, summary if summary is not None else (doc[0] if doc else "")
        )

    def set_provider(self, provider: str, distribution: str | None = None, version: str | None = None) -> None:
        self._current_provider = (provider, distribution, version)

    # -- lookup --------------------------------------------------------------------
    def get(self, kind: str, name: str, *, where: str | None = None) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            pass
        names = sorted(self._entries.get(kind, {}))
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        elsewhere = [k for k, v in self._entries.items() if name in v and k != kind]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known {kind} names: {', '.join(names) or 'none'}"
        if elsewhere:
            hint += f"; {name!r} is a {elsewhere[0]}"
        loc = f"{where}: " if where else ""
        raise RecipeError(f"{loc}unknown {kind} {name!r}", hint=hint)

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries[kind] if fnmatch.fnmatch(n, pattern))

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        kinds = [kind] if kind else list(COMPONENT_KINDS)
        for k in kinds:
            for name in sorted(self._entries[k]):
                yield self._entries[k][name]

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._entries.get(kind, {})
