"""Reading a recipe: ``extends`` chain, overrides, plugins list, validation, and the
resolved recipe written into a run directory. Merge rules: :mod:`wsreid.recipe.merge`.

Two steps, because the registry a recipe is validated against depends on the recipe's own
``plugins:`` list::

    tree, locations = read_recipe_tree(path, overrides)       # no validation
    plugins = load_plugins(recipe_plugin_modules(tree, locations))
    loaded = load_recipe(path, overrides, registry=plugins.registry)

:func:`load_recipe` without a registry does all three, and is the one loader every
command, the engine and the tests use.
"""

from __future__ import annotations

import copy
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from wsreid.errors import RecipeError, check_strings
from wsreid.fileio import write_atomically
from wsreid.recipe.build import (check_absent_deletions, check_external_paths, check_initial_encoder, recorded_encoder,
                                 schedule_warnings, validate_recipe)
from wsreid.recipe.locations import Location, Locations, dotted
from wsreid.recipe.merge import apply_overrides, empty_overlays, merge, null_deletions
from wsreid.recipe.model import COMPONENT_SECTIONS, RecipeBase
from wsreid.recipe.yamlio import display_path, dump_yaml_text, flow_text, read_yaml_file
from wsreid.registry import Registry

__all__ = [
    "LoadedRecipe",
    "read_recipe_tree",
    "recipe_plugin_modules",
    "load_recipe",
    "resolve_relative_paths",
    "resolved_recipe",
    "dump_resolved_yaml",
]

RecipeSource = str | os.PathLike[str] | Mapping[str, Any]


@dataclass
class LoadedRecipe:
    """A validated recipe.

    ``recipe``: the typed model instance; ``resolved``: plain values after extends and
    overrides with every default filled in (what :func:`dump_resolved_yaml` writes);
    ``source``: the recipe file (None for a tree given in code); ``tree``: the merged
    tree before validation; ``locations``: where each key of ``tree`` came from;
    ``plugins``: the plugin set loaded for it when ``load_recipe`` loaded one itself;
    ``data_recipe``: the recipe whose data block replaced this one's (``load_recipe(...,
    data_recipe=...)``, cross-dataset evaluation), else None; ``warnings``: parts of the
    schedule the run never reaches
    (:func:`~wsreid.recipe.build.schedule_warnings`) and what the components' checks warn
    of (:class:`~wsreid.errors.ParamsCheckWarning`: e.g. a hub model that is not cached
    while the hub cannot be reached), one line each citing the recipe line, which ``wsreid
    validate`` and ``wsreid run`` print after ``warning:``.
    """

    recipe: RecipeBase
    resolved: dict[str, Any]
    source: Path | None
    tree: dict[str, Any] = field(repr=False, default_factory=dict)
    locations: Locations | None = field(repr=False, default=None)
    plugins: Any = field(repr=False, default=None)
    warnings: list[str] = field(repr=False, default_factory=list)
    data_recipe: Path | None = field(repr=False, default=None)

    def changed_keys(self) -> list[tuple[str, Any, Any]]:
        """(dotted key, value as loaded, value now) for every value of the typed
        ``recipe`` assigned to since it was loaded (``resolved`` still holds the loaded
        ones): empty for a recipe used as loaded."""
        return _differences(self.resolved, resolved_recipe(self.recipe))

    def check_unchanged(self) -> None:
        """Refuse a typed recipe assigned to after loading (``loaded.recipe.train.epochs =
        1``): the run would train it but record, and resume against, the recipe as loaded,
        and the checks of the whole recipe would not have seen the new value. One-line
        :class:`RecipeError` naming the keys and the override that does the same."""
        changed = self.changed_keys()
        if not changed:
            return
        shown = ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        overrides = ", ".join(repr(f"{key}={flow_text(new)}") for key, _, new in changed[:3])
        raise RecipeError(f"{self.source or '<recipe>'}: the typed recipe was changed after load_recipe ({shown}{more})",
                          hint=f"pass the change to load_recipe as overrides, e.g. load_recipe(path, [{overrides}]), "
                               "so that it is validated with the whole recipe and recorded in the run's recipe.yaml")


def _differences(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The leaves of two resolved trees that differ, as (dotted key, before, after)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in list(before) + [k for k in after if k not in before]:
            out += _differences(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if before == after else [(prefix, before, after)]


def _read_chain(path: Path, chain: list[Path]) -> tuple[dict[str, Any], Locations]:
    """Read ``path`` and everything it extends; ``chain`` holds the files that extend it."""
    tree, locations = read_yaml_file(path)
    if "extends" not in tree:
        return tree, locations
    target_name = tree.pop("extends")
    where = locations.find(("extends",))
    if not isinstance(target_name, str) or not target_name.strip():
        raise RecipeError(f"{where}: extends: expected a recipe file name, got {target_name!r}", hint="e.g. 'extends: base.yaml'")
    target = (path.parent / Path(target_name).expanduser()).resolve()  # ~ expanded, as in data.root and init
    seen = [p.resolve() for p in chain] + [path.resolve()]
    if target in seen:
        cycle = " -> ".join(display_path(p) for p in seen[seen.index(target) :] + [target])
        if target == path.resolve():
            raise RecipeError(f"{where}: extends: {display_path(path)} extends itself", hint="remove the 'extends' line")
        raise RecipeError(f"{where}: extends: cycle {cycle}", hint="remove one 'extends' of this chain")
    if not target.is_file():
        raise RecipeError(
            f"{where}: extends: {target_name!r} not found (looked for {display_path(target)})",
            hint="the path is relative to the extending file",
        )
    base, base_locations = _read_chain(target, chain + [path])
    merged = merge(base, tree)
    locations.note_deletions(*null_deletions(base, tree), locations.find)
    locations.empty_overlays += [(p, locations.find(p)) for p in empty_overlays(base, tree)]
    out = Locations(locations.root)
    out.update(base_locations)
    out.update(locations)
    out.prune(merged)
    return merged, out


def read_recipe_tree(source: RecipeSource, overrides: Iterable[str] = ()) -> tuple[dict[str, Any], Locations]:
    """Resolve ``extends`` and apply ``overrides`` without validating.

    ``source`` is a recipe file or a mapping (whose ``extends`` is relative to the working
    directory). Returns the merged tree and where each of its keys came from.
    """
    check_source(source)
    if isinstance(source, Mapping):
        tree = _plain_paths(copy.deepcopy(dict(source)))
        locations = Locations(Location("<recipe>"))
        if "extends" in tree:
            holder = Path.cwd() / "<recipe>"
            target = tree.pop("extends")
            base, base_locations = _read_chain(_check_target(target, holder), [])
            own = Locations(locations.root)
            for key, value in tree.items():  # the mapping's own keys are its own, not the base file's
                own.set_subtree((key,), value, locations.root)
            locations.note_deletions(*null_deletions(base, tree), lambda path: locations.root)
            locations.empty_overlays += [(p, locations.root) for p in empty_overlays(base, tree)]
            tree = merge(base, tree)
            locations.update(base_locations)
            locations.update(own)
            locations.prune(tree)
    else:
        tree, locations = _read_chain(Path(source), [])
    tree = apply_overrides(tree, overrides, locations)
    return tree, locations


def check_source(source: Any) -> None:
    """A ``TypeError`` in one line when ``source`` is not a recipe file or mapping (a
    library caller's mistake: the command line always passes a path)."""
    if isinstance(source, (Mapping, str, os.PathLike)) and not isinstance(source, bytes):
        return
    what = "a LoadedRecipe (already loaded: use it as it is)" if isinstance(source, LoadedRecipe) else \
        f"{type(source).__name__} {source!r}"[:80]
    raise TypeError(f"a recipe is a file path (str or pathlib.Path) or a mapping of recipe keys, got {what}")


def _plain_paths(value: Any) -> Any:
    """A recipe mapping written in code, with ``pathlib.Path`` values as strings (a recipe
    file can only hold strings)."""
    if isinstance(value, dict):
        return {k: _plain_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_paths(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _check_target(target: Any, holder: Path) -> Path:
    if not isinstance(target, str) or not target.strip():
        raise RecipeError(f"<recipe>: extends: expected a recipe file name, got {target!r}")
    path = holder.parent / Path(target).expanduser()
    if not path.is_file():
        raise RecipeError(f"<recipe>: extends: {target!r} not found (looked for {display_path(path)})")
    return path


def recipe_plugin_modules(tree: Mapping[str, Any], locations: Locations | None = None) -> list[str]:
    """The recipe's ``plugins:`` list (importable module names), checked."""
    locations = locations if locations is not None else Locations(Location("<recipe>"))
    modules = tree.get("plugins", [])
    if modules is None:
        return []
    if not isinstance(modules, list) or not all(isinstance(m, str) and m.strip() for m in modules):
        raise RecipeError(
            f"{locations.find(('plugins',))}: plugins: expected a list of module names, got {modules!r}",
            hint="e.g. 'plugins: [my_package.wsreid_plugin]'",
        )
    return list(modules)


def load_recipe(
    source: RecipeSource,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
    *,
    disabled: Iterable[str] = (),
    data_recipe: str | os.PathLike[str] | None = None,
    plugins: Any = None,
    trains: bool = True,
) -> LoadedRecipe:
    """THE recipe loader, used by every command, the engine and the tests.

    Reads ``source`` (a file, or a mapping), resolves ``extends``, takes the ``data``
    block (and the plugins) of ``data_recipe`` when given (cross-dataset evaluation,
    ``wsreid eval --data``), applies ``overrides`` (``key=value``, last), loads the plugins
    (entry points plus the recipe's ``plugins:``, minus ``disabled``) unless ``plugins``
    (a :class:`~wsreid.pluginmanager.Plugins` from
    :func:`~wsreid.pluginmanager.load_plugins`, e.g. with components registered in code)
    or a ``registry`` is given, validates, makes relative paths absolute
    (:func:`resolve_relative_paths`) and checks that what the recipe names outside itself
    exists (:func:`validate_tree`). The result carries the plugin set in ``plugins``; a
    recipe validated against a bare ``registry`` has none, so it validates but cannot run
    or be evaluated. ``trains=False`` loads a recipe to evaluate or search with
    (``wsreid eval``, ``wsreid search``, zero-shot included): what only a training run
    would do wrong (every objective weighing 0) is not refused. Raises a one-line
    :class:`RecipeError` citing the file and line of the offending key, and a
    ``TypeError`` for arguments of the wrong type.
    """
    check_source(source)
    overrides = check_strings("overrides", overrides)
    disabled = check_strings("disabled", disabled)
    if plugins is not None:
        if registry is not None and registry is not plugins.registry:
            raise TypeError("load_recipe: pass plugins or registry, not both")
        registry = plugins.registry
    tree, locations = read_recipe_tree(source)
    if data_recipe is not None:
        other, other_locations = read_recipe_tree(data_recipe)
        if not isinstance(other.get("data"), dict):
            study = _looks_like_study(other)
            raise RecipeError(f"--data {data_recipe}: " + ("this is an ablation study, not a recipe" if study else
                                                           "the recipe has no data block"),
                              hint="pass a recipe with 'data:'" + (f", such as the study's base recipe {other['base']} "
                                                                   "(its path is relative to the study file)"
                                                                   if study else ""))
        tree["data"] = other["data"]
        locations.replace_subtree(("data",), other_locations)
        modules = list(dict.fromkeys(recipe_plugin_modules(tree, locations)
                                     + recipe_plugin_modules(other, other_locations)))
        if modules:
            tree["plugins"] = modules
    tree = apply_overrides(tree, overrides, locations)
    if registry is None:
        from wsreid.pluginmanager import load_plugins

        where = locations.find(("plugins",)) if locations is not None else None
        plugins = load_plugins(recipe_plugin_modules(tree, locations), disabled=disabled,
                               modules_from=f"{where}: plugins" if where is not None else "recipe 'plugins:'")
        registry = plugins.registry
    path = None if isinstance(source, Mapping) else Path(source)
    loaded = validate_tree(tree, locations, registry, path, plugins, trains=trains)
    loaded.data_recipe = None if data_recipe is None else Path(data_recipe)
    return loaded


#: Recipe keys holding a path that is resolved against the file that names it.
RELATIVE_PATH_KEYS: tuple[tuple[str, str], ...] = (("init", "recipe"), ("init", "run"), ("data", "root"))


def resolve_relative_paths(loaded: LoadedRecipe) -> dict[tuple[str, str], str]:
    """Make the paths of :data:`RELATIVE_PATH_KEYS` absolute, relative to the recipe file
    that names them (to the working directory for ``-o`` overrides and recipes given as a
    mapping; ``~`` is expanded), in the typed recipe and in its resolved tree, so that the
    resolved recipe a run saves works from any directory. THE resolution of recipe paths:
    ``wsreid validate``'s checks and the run both see its result. Returns the keys it
    changed -> their value as written."""
    written: dict[tuple[str, str], str] = {}
    for section, key in RELATIVE_PATH_KEYS:
        block = getattr(loaded.recipe, section, None)
        value = getattr(block, key, None) if block is not None else None
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            where = loaded.locations.find((section, key)) if loaded.locations is not None else None
            base = Path(where.source).parent if where is not None and where.line is not None else Path.cwd()
            path = (base / path).resolve()
        if str(path) == str(value):
            continue
        written[(section, key)] = str(value)
        setattr(block, key, str(path))
        loaded.resolved.setdefault(section, {})[key] = str(path)
    return written


def layer_warnings(tree: Mapping[str, Any], locations: Locations | None) -> list[str]:
    """What an extending recipe wrote that does not do what it reads as, one line each: an
    empty mapping over a non-empty one (``local_associations: {}`` kept every association
    of the extended recipe: an "ITC only" row trained DGIA), and ``output_dir`` removed by
    a null - ``output_dir: ~`` is YAML's null, not the home folder, and the run went to the
    default ``runs/run``."""
    if locations is None:
        return []
    lines = [f"{where}: {dotted(path)}: {{}} changes nothing: mappings merge key by key, so every key the extended "
             f"recipe gives it stays (remove one with {dotted(path)}.<key>: null)"
             for path, where in locations.empty_overlays]
    if "output_dir" not in tree:  # removed, and no later layer or -o set it again
        lines += [f"{where}: output_dir: null (or ~, which YAML reads as null) removes it, so without --output-dir the "
                  f"run goes to the default {RecipeBase.model_fields['output_dir'].default!r} (for the home folder "
                  "write a path: '~/runs/name')"
                  for path, where in locations.deletions if path == ("output_dir",)]
    return lines


def validate_tree(tree: dict[str, Any], locations: Locations, registry: Registry, path: Path | None = None,
                  plugins: Any = None, *, trains: bool = True) -> LoadedRecipe:
    """Validate a tree from :func:`read_recipe_tree` (possibly edited, with its locations
    kept in step) -> :class:`LoadedRecipe`: :func:`~wsreid.recipe.build.validate_recipe`
    (``trains`` as for :func:`load_recipe`),
    then :func:`resolve_relative_paths`, then
    :func:`~wsreid.recipe.build.check_external_paths` on the resolved paths, then the
    ``init.recipe`` it names, loaded in turn (no cycle of init recipes). Errors cite the
    file and line of each key; the schedule's warnings
    (:func:`~wsreid.recipe.build.schedule_warnings`) and the components' checks'
    (:class:`~wsreid.errors.ParamsCheckWarning`) are kept in ``warnings``."""
    if _looks_like_study(tree) and "data" not in tree:
        shown = display_path(path) if path is not None else "<recipe>"
        raise RecipeError(f"{shown}: this looks like an ablation study, not a recipe (it has base and "
                          "variants; a recipe has data, encoder, objectives, ... or extends one)",
                          hint=f"check a study with wsreid ablate {shlex.quote(str(shown))} --dry-run, "
                               "and validate its base recipe with wsreid validate")
    recipe = validate_recipe(tree, registry, locations, trains=trains)
    if locations is not None:
        check_absent_deletions(tree, locations, registry)
    loaded = LoadedRecipe(recipe, resolved_recipe(recipe), path, tree, locations, plugins,
                          layer_warnings(tree, locations) + schedule_warnings(recipe, locations, registry))
    written = resolve_relative_paths(loaded)
    locations = locations or Locations(Location("<recipe>"))
    loaded.warnings.extend(check_external_paths(loaded.recipe, registry, locations, written))
    init = loaded.recipe.init
    if init is not None:
        if init.recipe is not None:
            shown = written.get(("init", "recipe"), init.recipe)
            source = _check_init_recipe(Path(init.recipe), str(locations.find(("init", "recipe"))), shown)
            initial, encoder = f"init.recipe {shown!r}", source.recipe.encoder
        else:
            initial = f"init.run {written.get(('init', 'run'), init.run)!r}"
            encoder = recorded_encoder(Path(init.run), registry)
        if encoder is not None:
            check_initial_encoder(loaded.recipe, encoder, registry, locations, initial)
    return loaded


def _looks_like_study(tree: Mapping[str, Any]) -> bool:
    """Whether a YAML mapping given as a recipe is an ablation study (``base`` and ``variants``)."""
    return "variants" in tree and "base" in tree


#: the init recipes being validated, outermost first (a cycle of init recipes would train forever)
_INIT_CHAIN: list[Path] = []


class _InitCycle(RecipeError):
    """A cycle of init recipes: reported as found, not wrapped by each recipe on the way out."""


def _check_init_recipe(target: Path, where: str, shown: str) -> LoadedRecipe:
    """The recipe an ``init.recipe`` names loads and validates (it is trained first when
    its run is not cached), and its own init chain comes back to no recipe of the chain;
    returns it loaded."""
    target = target.resolve()
    if target in _INIT_CHAIN:
        chain = " -> ".join(p.name for p in [*_INIT_CHAIN[_INIT_CHAIN.index(target):], target])
        raise _InitCycle(f"{where}: init.recipe: {shown!r} starts a cycle of initial encoders ({chain})",
                         hint="an init recipe must not start, directly or through its own init, "
                         "from the recipe that names it")
    _INIT_CHAIN.append(target)
    try:
        return load_recipe(str(target))
    except _InitCycle:
        raise
    except RecipeError as exc:
        raise RecipeError(f"{where}: init.recipe {shown!r} does not load: {exc}") from None
    finally:
        _INIT_CHAIN.pop()


def _block_first(block: dict[str, Any]) -> dict[str, Any]:
    head = [k for k in ("name", "weight") if k in block]
    return {**{k: block[k] for k in head}, **{k: v for k, v in block.items() if k not in head}}


def resolved_recipe(recipe: RecipeBase) -> dict[str, Any]:
    """The validated recipe as plain JSON-compatible values, every default written out;
    component blocks list ``name`` (and ``weight``) first."""
    data = recipe.model_dump(mode="json")
    for section, (_, multi) in COMPONENT_SECTIONS.items():
        value = data.get(section)
        if multi and isinstance(value, dict):
            data[section] = {label: _block_first(b) if isinstance(b, dict) else b for label, b in value.items()}
        elif isinstance(value, dict):
            data[section] = _block_first(value)
    return data


#: Comment at the top of a resolved recipe. It does not name the source file, so the text
#: is the same whether a run is started from the original recipe or from its copy.
RESOLVED_HEADER = (
    "Resolved recipe: extends and overrides applied, every default written out (YAML 1.2).\n"
    "Run it again with: wsreid run <this file>"
)


def dump_resolved_yaml(loaded: LoadedRecipe, path: str | os.PathLike[str] | None = None) -> str:
    """The resolved recipe as YAML 1.2 text; also written to ``path`` when given
    (atomically: temp file + rename, with a plain write's permissions). Loading that text again gives the same recipe."""
    text = dump_yaml_text(loaded.resolved, RESOLVED_HEADER)
    if path is None:
        return text
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, text)
    return text
