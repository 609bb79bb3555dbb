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
import re
from dataclasses import dataclass
from typing import Annotated, Any, Iterator

import torch
from pydantic import BaseModel, TypeAdapter, ValidationError

from wsreid.api import COMPONENT_KINDS, KINDS, Component, Params
from wsreid.errors import DuplicateComponentError, PluginError, RecipeError

__all__ = ["BASE_CLASSES", "DuplicateComponentError", "Entry", "Registry", "SettingsEntry", "SETTINGS_KEY_PATTERN",
           "docstring_summary",
           "SHIPPED_DISTRIBUTION", "ShippedNameTaken",
           "accepts_unknown_keys", "invalid_default", "refuse_unknown_keys"]

#: The distribution whose plugins ship with the package: they register first, and an
#: installed plugin that registers one of their names is left out (not every command)
SHIPPED_DISTRIBUTION = "wsreid"


class ShippedNameTaken(PluginError):
    """An installed third-party plugin registered a kind and name a shipped plugin has:
    that plugin is left out as a broken one (docs/plugins.md), the rest keeps working."""


#: Keys of plugin settings blocks (``settings.<key>`` in recipes): lower-case identifiers.
SETTINGS_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

#: kind -> the base class its components derive from (from :data:`wsreid.api.KINDS`)
BASE_CLASSES: dict[str, type[Component]] = {k.kind: k.base for k in KINDS}
#: kinds whose components may not be torch modules: only the encoder and the labelled kinds
#: (associations, objectives) have their parameters trained (docs/plugins.md)
UNTRAINED_KINDS: frozenset[str] = frozenset(k.kind for k in KINDS if not k.labelled and k.kind != "encoder")


def invalid_default(model: type[BaseModel], prefix: str = "") -> str | None:
    """The first field of ``model`` (nested models included) whose default does not
    validate against the field's own type and constraints, as one line; None when all do.
    Pydantic does not validate defaults, so a wrong one would only fail when a recipe
    leaves the field out."""
    for fname, field in model.model_fields.items():
        if field.is_required():
            continue
        try:
            default = field.get_default(call_default_factory=True)
        except Exception as exc:  # a default factory that raises
            return f"the default of parameter '{prefix}{fname}' cannot be made ({type(exc).__name__}: {exc})"
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        try:
            TypeAdapter(annotation).validate_python(default)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = "".join(f".{p}" for p in err["loc"])
            message = " ".join(str(err["msg"]).split())
            return f"the default {default!r} of parameter '{prefix}{fname}{where}' is invalid: {message}"
        except Exception:  # an annotation TypeAdapter cannot handle: nothing to check here
            continue
        if isinstance(default, BaseModel):
            nested = invalid_default(type(default), f"{prefix}{fname}.")
            if nested is not None:
                return nested
    return None


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


@dataclass(frozen=True)
class SettingsEntry:
    """A plugin's settings block: recipes write it as ``settings: {<key>: {...}}`` and it
    is validated by ``model``; ``provider`` / ``distribution`` / ``version`` say who
    declared it."""

    key: str
    model: type[Params]
    provider: str
    distribution: str | None = None
    version: str | None = None
    summary: str = ""

    @property
    def provided_by(self) -> str:
        """``"<distribution> <version>"`` when installed, else the plugin name."""
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return self.provider


#: a sentence ends at . ! or ? followed by white space and a capital, a backquote or an
#: opening bracket ("Eq. 1-2" and "e.g. the" do not end one)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\[])")


def docstring_summary(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, its lines joined into one
    (the summary ``wsreid plugins`` and the generated docs show)."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = _SENTENCE_END.search(paragraph)
    return paragraph[: end.start()] if end else paragraph


def nested_models(model: type[BaseModel], path: str = "") -> list[tuple[str, type[BaseModel]]]:
    """``model`` (as ``"<params>"``) and every model reachable through its fields'
    annotations, with the dotted field path that reaches it."""
    found = [(path or "<params>", model)]
    for field_name, field in model.model_fields.items():
        for arg in _annotation_types(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg is not model:
                found += nested_models(arg, f"{path}.{field_name}" if path else field_name)
    return found


def accepts_unknown_keys(model: type[BaseModel], nested_only: bool = False) -> tuple[str, type[BaseModel]] | None:
    """The first model of :func:`nested_models` (``model`` itself first, left out with
    ``nested_only``) that accepts unknown keys - its config does not set
    ``extra="forbid"``, so a misspelt key in a recipe would be ignored - as (dotted path,
    model); None when every one rejects them."""
    for path, nested in nested_models(model)[1 if nested_only else 0:]:
        if nested.model_config.get("extra") != "forbid":
            return path, nested
    return None


def refuse_unknown_keys(model: type[BaseModel], subject: str, *, nested_only: bool = False) -> None:
    """Raise :class:`PluginError` when :func:`accepts_unknown_keys` finds a model of
    ``model`` that accepts unknown keys: one line, ``subject`` (the plugin and what it
    declares, e.g. ``plugin 'p': settings 'progress'``) first, then the block and its
    model. The rule of :meth:`Registry.add` (parameter models, the top level left out:
    its recipe block forbids unknown keys) and :meth:`Registry.add_settings` (settings
    models, the top level included); see docs/plugins.md."""
    loose = accepts_unknown_keys(model, nested_only=nested_only)
    if loose is None:
        return
    path, nested = loose
    block = "its model" if nested is model else f"its parameter block {path!r}"
    hint = ("set model_config extra='forbid' (wsreid.api.Params does; this model overrides it)"
            if issubclass(nested, Params) else "derive it from wsreid.api.Params (or set model_config extra='forbid')")
    raise PluginError(f"{subject}: {block} ({nested.__name__}) accepts unknown keys, "
                      "so a misspelt key in a recipe would be ignored", hint=hint)


def _refuse_shipped_name(existing: Entry | SettingsEntry | None, provider: str, dist: str | None, what: str,
                         hint: str) -> None:
    """Refuse a name of the shipped distribution that ``existing`` (the entry already under
    it) holds: for an installed third-party plugin (``dist``), :class:`ShippedNameTaken`
    (the plugin is left out, as broken); for a plugin without a distribution - a recipe's
    ``plugins:`` module or an object registered in code, the user's own -, a
    :class:`DuplicateComponentError` naming the plugin ``provider``. ``what``: what it
    registers (``registers objective 'itc'``)."""
    if existing is None or existing.distribution != SHIPPED_DISTRIBUTION or dist == SHIPPED_DISTRIBUTION:
        return
    if dist is None:  # a recipe's plugins: module or an object registered in code: the user's own, so an error
        raise DuplicateComponentError(f"plugin {provider!r} {what}, a name of the shipped plugin "
                                      f"{existing.provider!r}", hint=f"{hint.replace('package', 'module')}; "
                                      "shipped names cannot be taken over")
    raise ShippedNameTaken(f"it {what}, a name of the shipped plugin {existing.provider!r}, so it is not loaded",
                           hint=f"{hint}; the shipped one stays")


def _annotation_types(annotation: Any) -> list[Any]:
    """The types inside an annotation (``list[X] | None`` -> list, X, NoneType)."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [t for a in args for t in _annotation_types(a)]


class Registry:
    """Holds every component registered by plugins of one plugin manager."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in COMPONENT_KINDS}
        self._settings: dict[str, SettingsEntry] = {}
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
        field); ``summary`` defaults to the first sentence of its docstring
        (:func:`docstring_summary`). Raises
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
        if kind in UNTRAINED_KINDS and issubclass(cls, torch.nn.Module):
            raise PluginError(f"plugin {provider!r}: {kind} {name!r} is a torch.nn.Module, but only associations and "
                              "objectives are trained with the encoder (a module here would never be trained)",
                              hint="make it an objective or association, or keep the tensors as plain state")
        params = getattr(cls, "Params", None)
        if not (isinstance(params, type) and issubclass(params, Params)):
            raise PluginError(f"plugin {provider!r}: {kind} {name!r} needs a Params model deriving from wsreid.api.Params")
        if "name" in params.model_fields:
            raise PluginError(f"plugin {provider!r}: {kind} {name!r}: 'name' is reserved and cannot be a parameter")
        # the top level is validated inside its recipe block, which forbids unknown keys itself
        refuse_unknown_keys(params, f"plugin {provider!r}: {kind} {name!r}", nested_only=True)
        problem = invalid_default(params)
        if problem is not None:
            raise PluginError(f"plugin {provider!r}: {kind} {name!r} ({cls.__module__}.{cls.__qualname__}): {problem}",
                              hint="fix the default in its Params model; every default must satisfy its own field")
        existing = self._entries[kind].get(name)
        if existing is not None and existing.provider == provider:
            raise DuplicateComponentError(f"plugin {provider!r} registers {kind} {name!r} twice",
                                          hint="register each name once")
        _refuse_shipped_name(existing, provider, dist, f"registers {kind} {name!r}", "rename the component in that package "
                             "(a recipe names it by this name)")
        if existing is not None:
            newcomer = f"{dist} {version or ''}".strip() if dist else provider
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {existing.provided_by} (plugin {existing.provider!r}) "
                f"and by {newcomer} (plugin {provider!r})",
                hint=f"uninstall one, or disable one with --disable-plugin {existing.provider} or "
                f"--disable-plugin {provider} (or WSREID_DISABLE_PLUGINS)",
            )
        self._entries[kind][name] = Entry(
            kind, name, cls, provider, dist, version, summary if summary is not None else docstring_summary(cls.__doc__)
        )

    def add_settings(self, key: str, model: type[Params], *, summary: str | None = None) -> None:
        """Declare the settings block of this plugin: recipes may write
        ``settings: {<key>: {...}}``, validated by ``model`` (a :class:`wsreid.api.Params`
        subclass: unknown keys and wrong values are one-line errors citing file and line;
        every field needs a valid default, so a recipe may leave the block out). A model
        that accepts unknown keys - ``model`` itself or a model nested in its fields, such
        as a plain pydantic ``BaseModel`` - is refused as :meth:`add` refuses one
        (:func:`refuse_unknown_keys`), since a misspelt key would be ignored.

        The validated block, defaults filled in, is ``run.recipe.settings[key]`` in every
        lifecycle hook; it is written to the run's ``recipe.yaml`` and shown by ``wsreid
        plugins`` and ``wsreid schema``. ``key`` is a lower-case identifier (letters,
        digits, ``_``), unique across plugins; ``summary`` defaults to the first sentence
        of the model's docstring.
        """
        provider, dist, version = self._current_provider
        if not (isinstance(key, str) and SETTINGS_KEY_PATTERN.match(key)):
            raise PluginError(f"plugin {provider!r}: settings key {key!r} is not a lower-case identifier",
                              hint="use letters a-z, digits and '_', starting with a letter")
        if not (isinstance(model, type) and issubclass(model, Params)):
            raise PluginError(f"plugin {provider!r}: settings {key!r} need a model deriving from wsreid.api.Params")
        # the model itself too: a settings block is validated by it alone (no recipe block around it)
        refuse_unknown_keys(model, f"plugin {provider!r}: settings {key!r}")
        required = [n for n, f in model.model_fields.items() if f.is_required()]
        if required:
            raise PluginError(f"plugin {provider!r}: settings {key!r} ({model.__qualname__}): field "
                              f"{required[0]!r} has no default", hint="give every settings field a default")
        problem = invalid_default(model)
        if problem is not None:
            raise PluginError(f"plugin {provider!r}: settings {key!r} ({model.__module__}.{model.__qualname__}): "
                              f"{problem}", hint="fix the default in the settings model")
        existing = self._settings.get(key)
        _refuse_shipped_name(existing, provider, dist, f"declares settings {key!r}", "rename the settings key in that package "
                             "(a recipe writes settings.<key>)")
        if existing is not None:
            newcomer = f"{dist} {version or ''}".strip() if dist else provider
            raise DuplicateComponentError(
                f"settings {key!r} are declared twice: by {existing.provided_by} (plugin {existing.provider!r}) "
                f"and by {newcomer} (plugin {provider!r})",
                hint=f"disable one with --disable-plugin {existing.provider} or --disable-plugin {provider}",
            )
        self._settings[key] = SettingsEntry(key, model, provider, dist, version,
                                            summary if summary is not None else docstring_summary(model.__doc__))

    def settings_entries(self) -> list[SettingsEntry]:
        """Every declared settings block, by key."""
        return [self._settings[k] for k in sorted(self._settings)]

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
        for key in [k for k, e in self._settings.items() if e.provider == provider]:
            del self._settings[key]
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
        elif not close and not elsewhere:  # not a typo of a loaded name: most likely another plugin's
            hint += ("; a plugin's component needs that plugin installed (pip install it) or its module named in "
                     "the recipe's 'plugins' list")
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
