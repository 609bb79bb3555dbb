"""The typed recipe model, built from the registry, and validation with one-line errors.

Each component section is typed as a pydantic discriminated union on ``name`` over every
registered component of its kind; each member derives from the component's ``Params``
with ``name: Literal[<name>]`` added (objectives also get ``weight: float = 1.0``).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
import warnings
import weakref
from typing import Annotated, Any, Callable, Literal, Mapping, Union

from pathlib import Path as FilePath

from pydantic import BaseModel, Field, ValidationError, create_model

from wsreid import checkpoint_layout as layout
from wsreid.api import Params
from wsreid.errors import (ComponentError, ParamsCheckError, ParamsCheckWarning, RecipeError, UserError, faults_named,
                           one_line)
from wsreid.fileio import nearest_existing
from wsreid.recipe.locations import Location, Locations
from wsreid.recipe.locations import Path as KeyPath
from wsreid.recipe.locations import dotted, value_at
from wsreid.recipe.model import COMPONENT_SECTIONS, ComponentSpec, PluginSettings, RecipeBase
from wsreid.registry import SHIPPED_DISTRIBUTION, Entry, Registry

__all__ = ["build_recipe_model", "component_model", "validate_recipe", "check_references", "check_across_sections",
           "check_external_paths",
           "schedule_warnings", "LABEL_PATTERN", "START_EPOCH_FIELD"]

#: Labels of associations and objectives: usable as dotted override keys and log names.
LABEL_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

WEIGHT_DESCRIPTION = ("factor of this loss in the total loss, and of its logged value (0: computed, logged as 0, "
                      "and adding nothing; not every objective of a recipe can be 0)")
#: Parameters of a component that name the first epoch in which it acts (``start_epoch``,
#: ``<something>_start_epoch``, ``first_epoch``, ...): :func:`schedule_warnings` compares
#: them with ``train.epochs``.
START_EPOCH_FIELD = re.compile(r"^(?:.*_)?(?:start|first|begin)_epoch$")

START_EPOCH_DESCRIPTION = ("first epoch (1-based) in which this objective contributes; before it the engine skips "
                           "it (after train.epochs it never runs: a warning)")


def _class_name(entry: Entry) -> str:
    kind = "".join(part.title() for part in entry.kind.split("_"))
    return f"{kind}_{re.sub(r'[^0-9A-Za-z_]', '_', entry.name)}"


def component_model(entry: Entry) -> type[Params]:
    """The model one component block is validated with: the component's ``Params`` plus
    ``name: Literal[entry.name]`` (and ``weight``, ``start_epoch`` for objectives), unknown keys forbidden."""
    fields: dict[str, Any] = {
        "name": (Literal[entry.name], Field(description=f"selects {entry.kind} {entry.name!r}")),
    }
    if entry.kind == "objective" and "weight" not in entry.params_model.model_fields:
        fields["weight"] = (float, Field(1.0, ge=0, description=WEIGHT_DESCRIPTION))
    if entry.kind == "objective" and "start_epoch" not in entry.params_model.model_fields:
        fields["start_epoch"] = (int, Field(1, ge=1, description=START_EPOCH_DESCRIPTION))
    return create_model(
        _class_name(entry),
        __base__=entry.params_model,
        __module__=__name__,
        __doc__=entry.summary or entry.params_model.__doc__,
        __cls_kwargs__={"extra": "forbid"},
        **fields,
    )


#: Typed models per registry, rebuilt when the registry's content changes; one model per
#: registry keeps recipes validated against it comparable with ``==``.
_MODELS: "weakref.WeakKeyDictionary[Registry, tuple[tuple[Any, ...], type[RecipeBase]]]" = weakref.WeakKeyDictionary()


def build_recipe_model(registry: Registry) -> type[RecipeBase]:
    """A subclass of :class:`RecipeBase` whose component sections are typed by ``registry``.

    Its ``component_models`` class attribute maps kind -> name -> member model. The same
    registry with the same content gives the same class.
    """
    signature = tuple((e.kind, e.name, e.cls) for e in registry.entries()) + tuple(
        ("settings", e.key, e.model) for e in registry.settings_entries())
    cached = _MODELS.get(registry)
    if cached is not None and cached[0] == signature:
        return cached[1]
    model = _build(registry)
    _MODELS[registry] = (signature, model)
    return model


def _build(registry: Registry) -> type[RecipeBase]:
    members: dict[str, dict[str, type[Params]]] = {}
    fields: dict[str, Any] = {}
    for section, (kind, multi) in COMPONENT_SECTIONS.items():
        members[kind] = {e.name: component_model(e) for e in registry.entries(kind)}
        models = tuple(members[kind].values())
        block: Any = Annotated[Union[models], Field(discriminator="name")] if models else ComponentSpec
        base_field = RecipeBase.model_fields[section]
        kwargs: dict[str, Any] = {"description": base_field.description, "validate_default": True}
        if base_field.default_factory is not None:
            kwargs["default_factory"] = base_field.default_factory
        elif not base_field.is_required():
            kwargs["default"] = base_field.default
        fields[section] = (dict[str, block] if multi else block, Field(**kwargs))
    settings_fields: dict[str, Any] = {
        e.key: (e.model, Field(default_factory=e.model, description=f"{e.summary} (from {e.provided_by})".strip()))
        for e in registry.settings_entries()
    }
    settings = create_model("Settings", __base__=PluginSettings, __module__=__name__,
                            __doc__=PluginSettings.__doc__, **settings_fields)
    fields["settings"] = (settings, Field(default_factory=settings, description=RecipeBase.model_fields["settings"].description))
    model = create_model("Recipe", __base__=RecipeBase, __module__=__name__, __doc__=RecipeBase.__doc__, **fields)
    model.component_models = members
    return model


# --------------------------------------------------------------------------- validation


def validate_recipe(
    tree: Mapping[str, Any],
    registry: Registry,
    locations: Locations | None = None,
    model: type[RecipeBase] | None = None,
    *,
    trains: bool = True,
) -> RecipeBase:
    """Validate a merged recipe tree (no ``extends``) against the registry: types and
    values, then the names that point elsewhere in the recipe (:func:`check_references`).
    What the recipe names outside itself (folders, files) is checked by the recipe loader
    once it has made relative paths absolute (:func:`check_external_paths`). Then, unless
    ``trains`` is False (a recipe to evaluate with), that it trains something.

    Raises :class:`RecipeError` with one line for the first problem:
    ``<file>:<line>: <dotted.key>: <what is wrong> (<what to do>)``.
    """
    locations = locations if locations is not None else Locations(Location("<recipe>"))
    model = model or build_recipe_model(registry)
    if not isinstance(tree, Mapping):
        raise RecipeError(f"{locations.root}: the recipe must be a mapping, not {type(tree).__name__}")
    tree = dict(tree)
    _check_components(tree, registry, locations)
    try:
        recipe = model.model_validate(tree)
    except ValidationError as exc:
        raise validation_error(exc, tree, locations, model) from exc
    except (UserError, MemoryError):
        raise
    except Exception as exc:
        fault = _validator_fault(exc, tree, registry, locations)
        if fault is None:
            raise
        raise fault from exc
    check_references(recipe, registry, locations)
    check_across_sections(recipe, registry, locations)
    if trains:  # a recipe loaded to evaluate with trains nothing (wsreid eval --zero-shot)
        _check_something_trains(recipe, locations)
    return recipe


def _check_something_trains(recipe: RecipeBase, locations: Locations) -> None:
    """Objectives that all weigh 0 train nothing: the run went on, its losses logged as 0,
    while the optimizer's weight decay alone moved the weights (validation R@1 11.7 -> 2.1
    over 8 epochs of ITC at weight 0), exit 0."""
    weighted = [(label, block) for label, block in recipe.objectives.items() if block is not None]
    if weighted and all(getattr(block, "weight", 1.0) == 0 for _, block in weighted):
        key = ("objectives", weighted[0][0], "weight")
        raise RecipeError(f"{locations.find(key)}: every objective has weight 0 "
                          f"({', '.join(label for label, _ in weighted)}), so the run would train nothing (the "
                          "optimizer's weight decay alone would move the weights)",
                          hint="give an objective a weight above 0; to score the encoder as it is, use wsreid eval "
                               "--zero-shot")


def check_across_sections(recipe: RecipeBase, registry: Registry, locations: Locations) -> None:
    """Every component's :meth:`~wsreid.api.Component.check_recipe`: its parameters
    against the rest of the recipe. A :class:`ParamsCheckError` becomes a
    :class:`RecipeError` citing the line of the parameter it names."""
    for path, kind, block in _component_blocks(recipe):
        entry = registry.get(kind, block.name)
        with faults_named(lambda exc: _check_fault(entry, path, locations, "check_recipe()", exc)):
            try:
                entry.cls.check_recipe(block, recipe)
            except ParamsCheckError as exc:
                raise _params_check_failure(exc, path, locations) from None


def _parameter_path(component: KeyPath, key: str) -> KeyPath:
    """The recipe key of a component's parameter named ``key`` (dotted for a nested one;
    empty: the component's block itself), as a :class:`ParamsCheckError` or
    :class:`ParamsCheckWarning` names it."""
    return component + tuple(key.split(".")) if key else component


def params_check_error(exc: ParamsCheckError, component: KeyPath) -> RecipeError:
    """The RecipeError of a ParamsCheckError of the component at ``component``, keyed by
    the parameter's recipe key (``RecipeError.cite`` puts the line that set it in front):
    raised by a component's checks here, or by a component built in a run."""
    key = _parameter_path(component, exc.key)
    return RecipeError(f"{dotted(key)}: {exc.message}", hint=exc.hint, key=key)


def _params_check_failure(exc: ParamsCheckError, component: KeyPath, locations: Locations) -> RecipeError:
    """The RecipeError of a component check's ParamsCheckError, citing the parameter's line."""
    return params_check_error(exc, component).cite(locations)


def _check_fault(entry: Entry, component: KeyPath, locations: Locations, method: str,
                 exc: Exception) -> ComponentError:
    """The one-line error of a component's own check (``check_params()``,
    ``check_recipe()``, ...) that raised something else than a ParamsCheckError - a bug in
    the plugin, not a mistake in the recipe: the recipe line and key, the component and
    its plugin, and the exception."""
    return ComponentError(f"{locations.find(component)}: {dotted(component)} ({entry.kind} {entry.name!r} from plugin "
                          f"{entry.provider!r}): {method} failed: {one_line(exc)}",
                          hint=f"a fault of plugin {entry.provider!r}; fix it, or leave the component out; --debug "
                               "shows the traceback")


def _validator_fault(exc: Exception, tree: Mapping[str, Any], registry: Registry,
                     locations: Locations) -> ComponentError | None:
    """A component's ``Params`` validator raising something pydantic does not turn into a
    validation error (an AttributeError, a KeyError: a bug in the plugin): the component
    block that raises it again when validated alone, named with its recipe key and line
    (:func:`_check_fault`); None when no block does."""
    for section, (kind, multi) in COMPONENT_SECTIONS.items():
        value = tree.get(section)
        if multi:
            blocks = [((section, label), block) for label, block in value.items()] if isinstance(value, Mapping) else []
        else:
            blocks = [((section,), value)]
        for path, block in blocks:
            if not isinstance(block, Mapping) or not isinstance(block.get("name"), str):
                continue
            try:
                entry = registry.get(kind, block["name"])
            except RecipeError:
                continue
            try:
                component_model(entry).model_validate(dict(block))
            except (ValidationError, UserError, MemoryError):
                continue
            except Exception as again:  # noqa: BLE001 - the bug of the plugin, whatever its kind
                if type(again) is type(exc):
                    return _check_fault(entry, path, locations, "a Params validator", again)
    return None


def check_absent_deletions(tree: Mapping[str, Any], locations: Locations, registry: Registry) -> None:
    """A ``null`` that deleted nothing (the key was not in the layers below) must name a
    key the recipe could have: a component label present in the section, or a key of the
    schema (which the default then fills). Otherwise it is a misspelling that would leave
    the recipe unchanged - an ablation row identical to its base - and it is an error
    naming where the null was written: ``override -o objectives.sdm_asymetric=null:
    objectives.sdm_asymetric: no objective is labelled 'sdm_asymetric', nothing to remove
    (did you mean 'sdm_asymmetric'?)``."""
    model = build_recipe_model(registry)
    missing = object()
    for path, where in locations.absent_deletions:
        # the first key of the path that the recipe does not have, below the mapping ``node``
        i = next((k for k in range(len(path)) if value_at(tree, path[: k + 1], missing) is missing), None)
        node = value_at(tree, path[:i]) if i is not None else None
        if not isinstance(node, dict):
            continue  # set again by a later layer, or below a value that is not a mapping
        key = path[i]
        section = COMPONENT_SECTIONS.get(path[0]) if i == 1 else None
        if section is not None and section[1]:
            labels = [str(k) for k in node]
            close = difflib.get_close_matches(str(key), labels, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else (f"labels here: {', '.join(labels)}" if labels else None)
            raise RecipeError(f"{where}: {dotted(path[: i + 1])}: no {section[0].replace('_', ' ')} is labelled "
                              f"{key!r}, nothing to remove", hint=hint)
        parent = _model_at(model, path[:i], dict(tree))
        if parent is None or key in parent.model_fields:
            continue
        valid = list(parent.model_fields)
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else f"valid keys here: {', '.join(valid)}" if valid else None)
        raise RecipeError(f"{where}: {dotted(path[: i + 1])}: unknown key {key!r}, nothing to remove", hint=hint)


# --------------------------------------------------------------------------- cross-checks


def _component_blocks(recipe: RecipeBase) -> typing.Iterator[tuple[KeyPath, str, Any]]:
    """(key path, kind, block) of every component block of a validated recipe."""
    for section, (kind, multi) in COMPONENT_SECTIONS.items():
        value = getattr(recipe, section)
        if not multi:
            yield (section,), kind, value
            continue
        for label, block in value.items():
            if block is not None:
                yield (section, label), kind, block


def check_references(recipe: RecipeBase, registry: Registry, locations: Locations) -> None:
    """Names that point elsewhere in the recipe: an objective's ``relation`` must be the
    label of an association, and the ``view`` of an association or objective a view that
    the pair construction declares (:meth:`wsreid.api.PairConstruction.declared_views`).
    Only parameters named exactly ``relation`` and ``view`` (strings) are checked."""
    labels = sorted(
        label
        for section in ("local_associations", "global_associations")
        for label, block in getattr(recipe, section).items()
        if block is not None
    )
    pairs = recipe.pair_construction
    pair_entry = registry.get("pair_construction", pairs.name)
    with faults_named(lambda exc: _check_fault(pair_entry, ("pair_construction",), locations, "declared_views()", exc)):
        views = tuple(pair_entry.cls.declared_views(pairs))
    for path, kind, block in _component_blocks(recipe):
        if kind == "objective":
            wanted = getattr(block, "relation", None)
            if isinstance(wanted, str) and wanted not in labels:
                key = path + ("relation",)
                close = difflib.get_close_matches(wanted, labels, n=1, cutoff=0.5)
                removed = [where for p, where in locations.deletions
                           if tuple(p) in (("local_associations", wanted), ("global_associations", wanted))]
                if removed:  # the association was there: what removed it is the likelier mistake
                    raise RecipeError(f"{locations.find(key)}: {dotted(key)}: no association is labelled {wanted!r}: "
                                      f"{removed[-1]} removed it", hint=f"remove {dotted(path)} too (e.g. "
                                      f"{dotted(path)}: null), or keep the association")
                if close:
                    hint = f"did you mean {close[0]!r}?"
                elif labels:
                    hint = f"association labels: {', '.join(labels)}"
                else:
                    hint = "the recipe has no association; add one under local_associations or global_associations"
                raise RecipeError(f"{locations.find(key)}: {dotted(key)}: no association is labelled {wanted!r}", hint=hint)
        if kind in ("local_association", "global_association", "objective"):
            view = getattr(block, "view", None)
            if isinstance(view, str) and view not in views:
                key = path + ("view",)
                producers = [e.name for e in registry.entries("pair_construction") if view in e.cls.view_names]
                hint = f"its views: {', '.join(views)}"
                if producers:
                    hint += f"; {view!r} comes from pair_construction {' or '.join(repr(p) for p in producers)}"
                raise RecipeError(
                    f"{locations.find(key)}: {dotted(key)}: pair construction {pairs.name!r} produces no view {view!r}",
                    hint=hint,
                )


def _epoch_fields(block: Any, path: KeyPath) -> typing.Iterator[tuple[KeyPath, int]]:
    """(key path, value) of every start-epoch parameter (:data:`START_EPOCH_FIELD`) of a
    component block, nested parameter blocks included."""
    if not isinstance(block, BaseModel):
        return
    for name in type(block).model_fields:
        value = getattr(block, name, None)
        if START_EPOCH_FIELD.match(name) and isinstance(value, int) and not isinstance(value, bool):
            yield path + (name,), value
        elif isinstance(value, BaseModel):
            yield from _epoch_fields(value, path + (name,))


def schedule_warnings(recipe: RecipeBase, locations: Locations | None = None,
                      registry: Registry | None = None) -> list[str]:
    """Parts of the schedule that a run of ``recipe`` never reaches, one line each
    (``<file>:<line>: <dotted.key>: <what> (<what to do>)``; the caller prints them after
    ``warning: ``):

    * a component whose start-epoch parameter (:data:`START_EPOCH_FIELD`: an objective's
      ``start_epoch``, an association's own ``start_epoch``, ...) lies after
      ``train.epochs``: it never acts, and the run trains as if it were left out;
    * ``train.warmup_epochs`` that is not shorter than the run: the learning rate never
      reaches ``train.lr`` (:func:`wsreid.engine.optim.lr_factor`);
    * ``train.instances_per_identity`` set to another value than its default with a
      sampler other than ``identity``;
    * an association that no objective reads (no objective's ``relation`` names it), when
      every objective is a shipped one (given ``registry``; another plugin's objective may
      read relations its own way): it is computed at every step and changes nothing (an
      ablation row meant to leave it out would still pay for it);
    * a view the pair construction builds that no association or objective reads, when
      every component is a shipped one (:func:`_unread_views`).

    Warnings, not errors: a short smoke run of a full recipe (``-o train.epochs=1``) is
    legitimate (docs/reliability.md, bad input)."""
    locations = locations if locations is not None else Locations(Location("<recipe>"))
    train = recipe.train
    epochs = train.epochs
    lines: list[str] = []
    for path, kind, block in _component_blocks(recipe):
        for key, start in _epoch_fields(block, path):
            if start <= epochs:
                continue
            what = kind.replace("_", " ")
            lines.append(
                f"{locations.find(key)}: {dotted(key)}: {what} {block.name!r} never runs (starts at epoch {start}, "
                f"the run ends at epoch {epochs}) (raise train.epochs to at least {start}, or lower {key[-1]})")
    # (with lr_schedule_unit epoch, warmup_epochs is a whole number: TrainConfig refuses others)
    if 0 < train.warmup_epochs and train.warmup_epochs >= epochs:
        key = ("train", "warmup_epochs")
        lines.append(
            f"{locations.find(key)}: {dotted(key)}: the learning rate never reaches train.lr (warm-up of "
            f"{train.warmup_epochs:g} epochs, the run ends at epoch {epochs}) (make train.warmup_epochs shorter "
            f"than train.epochs)")
    default_k = type(train).model_fields["instances_per_identity"].default  # a resolved recipe writes the default
    if train.sampler != "identity" and train.instances_per_identity != default_k:
        key = ("train", "instances_per_identity")
        lines.append(f"{locations.find(key)}: {dotted(key)}: {train.instances_per_identity} is read by "
                     f"train.sampler: identity only, and the sampler is {train.sampler!r}: it changes nothing (set "
                     "train.sampler: identity for batches of P people x K pairs, or remove it)")
    objectives = [block for _, kind, block in _component_blocks(recipe) if kind == "objective"]
    used = {getattr(block, "relation", None) for block in objectives}
    # a shipped objective reads a relation through its ``relation`` only; another plugin's
    # objective may read any, so with one in the recipe nothing is said
    shipped = registry is not None and all(
        registry.get("objective", block.name).distribution == SHIPPED_DISTRIBUTION for block in objectives)
    for section in ("local_associations", "global_associations") if shipped else ():
        for label, block in getattr(recipe, section).items():
            if block is not None and label not in used:
                key = (section, label)
                lines.append(f"{locations.find(key)}: {dotted(key)}: no objective reads this association (none has "
                             f"relation: {label}), yet it is computed at every step (remove it with "
                             f"{dotted(key)}: null, or add an objective with relation: {label})")
    lines += _unread_views(recipe, locations, registry)
    return lines


def _unread_views(recipe: RecipeBase, locations: Locations, registry: Registry | None) -> list[str]:
    """A view the pair construction builds (augments and encodes at every step) that no
    association or objective reads - IASC on the ITC baseline trained exactly as ITC, at
    1.6x the step time. Said only when every component is a shipped one, which read views
    through their ``view`` parameter alone."""
    if registry is None:
        return []
    blocks = [(kind, block) for _, kind, block in _component_blocks(recipe)]
    if not all(registry.get(kind, block.name).distribution == SHIPPED_DISTRIBUTION for kind, block in blocks):
        return []
    pairs = recipe.pair_construction
    read = {getattr(block, "view", None) for kind, block in blocks if kind in ("local_association",
                                                                              "global_association", "objective")}
    declared = registry.get("pair_construction", pairs.name).cls.declared_views(pairs)
    key = ("pair_construction",)
    return [f"{locations.find(key)}: pair_construction: {pairs.name!r} builds the view {view!r}, which no association "
            f"or objective reads, yet it is made and encoded at every step (use pair_construction: {{name: "
            f"identity}}, or add a component with view: {view})"
            for view in declared if view != "base" and view not in read]


def check_external_paths(recipe: RecipeBase, registry: Registry, locations: Locations,
                         written: Mapping[KeyPath, str] | None = None) -> list[str]:
    """What the recipe names outside itself exists: every component's
    :meth:`~wsreid.api.Component.check_params` (dataset folders, pretrained weights) and
    the ``init`` recipe or run.

    Called by the recipe loader after it made the recipe's relative paths absolute
    (:func:`wsreid.recipe.loader.resolve_relative_paths`), so a path is checked where the
    run will look for it; ``written`` maps a resolved key to its value as the recipe
    wrote it, for the message. Returns the :class:`~wsreid.errors.ParamsCheckWarning`
    lines the checks issued, each citing its parameter's line
    (``<file>:<line>: <dotted.key>: <message>``)."""
    written = written or {}
    lines: list[str] = []
    for path, kind, block in _component_blocks(recipe):
        entry = registry.get(kind, block.name)
        with faults_named(lambda exc: _check_fault(entry, path, locations, "check_params()", exc)):
            try:
                with warnings.catch_warnings(record=True) as issued:
                    warnings.simplefilter("always", ParamsCheckWarning)
                    entry.cls.check_params(block)
            except ParamsCheckError as exc:
                raise _params_check_failure(exc, path, locations) from None
        for item in issued:
            warning = item.message
            if isinstance(warning, ParamsCheckWarning):
                key = _parameter_path(path, warning.key)
                lines.append(f"{locations.find(key)}: {dotted(key)}: {' '.join(warning.message.split())}")
            else:  # another warning passes on as it was issued
                warnings.warn_explicit(warning, item.category, item.filename, item.lineno, source=item.source)
    _check_data_root(recipe, locations, written)
    init = recipe.init
    if init is None:
        return lines
    for key, value in (("recipe", init.recipe), ("run", init.run)):
        if value is None:
            continue
        where = locations.find(("init", key))
        target = FilePath(value)
        shown = written.get(("init", key), value)
        if key == "recipe" and not target.is_file():
            raise RecipeError(f"{where}: init.recipe: recipe file {shown!r} not found (looked for {target})",
                              hint="the path is relative to the file that names it")
        if key == "run" and not (target / "recipe.yaml").is_file():
            what = "is not a wsreid run directory (no recipe.yaml)" if target.is_dir() else "does not exist"
            raise RecipeError(f"{where}: init.run: {shown!r} {what} (looked for {target})",
                              hint="name a run directory written by 'wsreid run'; the path is relative to the file that names it")
        problem = _checkpoint_problem(target, init.checkpoint) if key == "run" else None
        if problem is not None:
            raise RecipeError(f"{where}: init.run: {shown!r} {problem[0]}", hint=problem[1])
    return lines


def recorded_encoder(run_dir: FilePath, registry: Registry) -> Params | None:
    """The encoder block of the recipe.yaml a run recorded, validated by its component's
    parameter model; None when it cannot be read so (a component this registry lacks, a
    file of another version): the weights' shapes are then checked when they load."""
    from wsreid.recipe.yamlio import read_yaml_file

    try:
        tree, _ = read_yaml_file(run_dir / "recipe.yaml")
        block = tree["encoder"]
        return build_recipe_model(registry).component_models["encoder"][block["name"]].model_validate(block)
    except (RecipeError, KeyError, TypeError, ValueError):
        return None


def check_initial_encoder(recipe: RecipeBase, source: Params, registry: Registry, locations: Locations,
                          initial: str) -> None:
    """The encoder of the initial run (``init``; ``initial`` names it, e.g. ``init.run
    'runs/a'``), whose parameters are ``source``, must be this recipe's component, and its
    :meth:`~wsreid.api.EncoderComponent.check_initial_weights` must pass: a
    :class:`RecipeError` citing the encoder parameter's line otherwise."""
    block = recipe.encoder
    if source.name != block.name:
        raise RecipeError(f"{locations.find(('encoder', 'name'))}: encoder.name: {block.name!r}, but the initial run "
                          f"({initial}) trained the encoder {source.name!r}, whose weights do not load into it",
                          hint=f"set encoder.name: {source.name} with the initial run's parameters, or remove init")
    entry = registry.get("encoder", block.name)
    with faults_named(lambda exc: _check_fault(entry, ("encoder",), locations, "check_initial_weights()", exc)):
        try:
            entry.cls.check_initial_weights(block, source)
        except ParamsCheckError as exc:
            key = _parameter_path(("encoder",), exc.key)
            raise RecipeError(f"{locations.find(key)}: {dotted(key)} does not fit the initial run ({initial}): "
                              f"{exc.message}", hint=exc.hint) from None


def _check_data_root(recipe: RecipeBase, locations: Locations, written: Mapping[KeyPath, str]) -> None:
    """A ``data.root`` that does not exist yet (a dataset generated there on first use) must
    not lie below a regular file: no folder can be created there. Runs after the dataset
    component's own check, which judges a root that exists."""
    root = getattr(recipe.data, "root", None)
    if not isinstance(root, str) or FilePath(root).exists():
        return
    above = nearest_existing(root)
    if above.is_dir():
        return
    shown = written.get(("data", "root"), root)
    raise RecipeError(f"{locations.find(('data', 'root'))}: data.root: {shown!r} lies below {above}, which is a file, "
                      "not a folder", hint="set data.root to a new folder, or to the folder holding the dataset")


def _checkpoint_problem(run_dir: FilePath, which: str) -> tuple[str, str] | None:
    """Why the engine would find no weights for ``init.checkpoint: which`` in the run
    ``run_dir``, as (what, what to do); None when it finds some. The engine's own rule
    (:func:`wsreid.engine.rundir.weights_of`), from :mod:`wsreid.checkpoint_layout`:
    ``best`` takes ``checkpoints/best`` (or the ``best.old`` the engine would put back) when
    it holds model.safetensors, then, as ``last`` does, the latest checkpoint - the folder
    ``checkpoints/latest`` names, else the newest ``epoch-XXXX`` folder holding every
    checkpoint file. File names only: no weights are read, nothing is moved."""
    root = run_dir / layout.CHECKPOINTS
    if which == "best":
        best = layout.best_checkpoint(run_dir)
        if best is not None and (best / layout.WEIGHTS).is_file():
            return None
    try:
        last = layout.latest_checkpoint(run_dir)
    except (UserError, OSError):  # a pointer naming a folder that is gone, or no pointer file
        last = None
    if last is not None and (last / layout.WEIGHTS).is_file():
        return None
    pointer = root / layout.POINTER
    if pointer.exists():
        return (f"has a checkpoint pointer {pointer} naming a checkpoint that is missing or holds no {layout.WEIGHTS}",
                "restore that checkpoint, or name another run")
    return (f"holds no complete checkpoint yet (looked in {root})",
            "train it first (a run writes a checkpoint at each train.checkpoint_every epochs), or name another run")


def _check_components(tree: dict[str, Any], registry: Registry, locations: Locations) -> None:
    """Check every component block's ``name`` against the registry (suggesting close
    names), labels, and that some objective is left."""
    labels: dict[str, str] = {}
    for section, (kind, multi) in COMPONENT_SECTIONS.items():
        if section not in tree:
            default = RecipeBase.model_fields[section].get_default(call_default_factory=True)
            if isinstance(default, dict) and "name" in default:
                registry.get(kind, default["name"], where=f"{locations.root}: {section} (default)")
            continue
        value = tree[section]
        if not multi:
            _check_block(value, (section,), kind, registry, locations)
            continue
        if not isinstance(value, dict):
            continue  # pydantic reports the wrong type
        for label, block in value.items():
            path = (section, label)
            if not LABEL_PATTERN.match(label):
                raise RecipeError(
                    f"{locations.find(path)}: {dotted(path)}: label {label!r} is not a plain name",
                    hint="use letters, digits, '_' and '-', starting with a letter or '_'",
                )
            if section != "objectives":
                if label in labels:
                    raise RecipeError(
                        f"{locations.find(path)}: {dotted(path)}: label {label!r} is also used in {labels[label]}",
                        hint="association labels name relations and must be unique; rename one",
                    )
                labels[label] = section
            _check_block(block, path, kind, registry, locations)
    objectives = tree.get("objectives")
    if isinstance(objectives, dict) and not objectives:
        raise RecipeError(
            f"{locations.find(('objectives',))}: objectives: no objective is left",
            hint="a recipe needs at least one, e.g. 'objectives: {itc: {name: itc}}'",
        )


def _check_block(block: Any, path: KeyPath, kind: str, registry: Registry, locations: Locations) -> None:
    known = ", ".join(registry.names(kind)) or "none registered"
    if not isinstance(block, dict):
        raise RecipeError(
            f"{locations.find(path)}: {dotted(path)}: expected a component block {{name: ..., <parameters>}}, "
            f"got {_short(block)}",
            hint=f"{kind} names: {known}",
        )
    if "name" not in block:
        raise RecipeError(f"{locations.find(path)}: {dotted(path)}: missing 'name'", hint=f"{kind} names: {known}")
    name = block["name"]
    name_path = path + ("name",)
    if not isinstance(name, str):
        raise RecipeError(
            f"{locations.find(name_path)}: {dotted(name_path)}: a name must be a string, got {_short(name)}",
            hint=f"{kind} names: {known}",
        )
    registry.get(kind, name, where=f"{locations.find(name_path)}: {dotted(name_path)}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean_path(loc: tuple[Any, ...], model: type[RecipeBase]) -> KeyPath:
    """A pydantic error location as a recipe key path: drops the union tag (the
    component's name) that pydantic inserts after a component block, and '[key]'."""
    parts = [p for p in loc if p != "[key]"]
    if parts and parts[0] in COMPONENT_SECTIONS:
        kind, multi = COMPONENT_SECTIONS[parts[0]]
        tag_at = 2 if multi else 1
        if getattr(model, "component_models", {}).get(kind) and len(parts) > tag_at:
            del parts[tag_at]
    return tuple(parts)


def _first_in(annotation: Any, pick: Callable[[Any], Any]) -> Any:
    """``pick(annotation)``, or else the first non-None ``pick`` of a member of a union,
    Optional or Annotated annotation (depth first); None when none gives one."""
    found = pick(annotation)
    if found is None and typing.get_origin(annotation) in (Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _first_in(arg, pick)
            if found is not None:
                break
    return found


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation validates a mapping with (``X``, ``X | None``, ...)."""
    return _first_in(annotation, lambda a: a if isinstance(a, type) and issubclass(a, BaseModel) else None)


def _model_at(model: type[RecipeBase], path: KeyPath, tree: dict[str, Any]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` (None where it is not a model)."""
    cls: type[BaseModel] | None = model
    i = 0
    while i < len(path) and cls is not None:
        part = path[i]
        if cls is model and part in COMPONENT_SECTIONS:
            kind, multi = COMPONENT_SECTIONS[part]
            block: Any = tree.get(part)
            if multi:
                if i + 1 >= len(path) or not isinstance(block, dict):
                    return None
                block = block.get(path[i + 1])
                i += 1
            name = block.get("name") if isinstance(block, dict) else None
            cls = model.component_models.get(kind, {}).get(name) if isinstance(name, str) else None
        else:
            field = cls.model_fields.get(part) if isinstance(part, str) else None
            item = _list_item(field.annotation) if field is not None else None
            if item is not None and i + 1 < len(path) and isinstance(path[i + 1], int):
                cls = _model_in(item)  # an item of a list of mappings (a study's variants.0)
                i += 1
            else:
                cls = _model_in(field.annotation) if field is not None else None
        i += 1
    return cls


def _list_item(annotation: Any) -> Any:
    """The item type of a ``list[X]`` annotation (also inside Optional / Annotated);
    None for any other."""
    return _first_in(annotation, lambda a: (typing.get_args(a) or (None,))[0] if typing.get_origin(a) is list else None)


_OVERRIDE = "override -o "


def _overrides_behind(path: KeyPath, message: str, locations: Locations) -> str | None:
    """Where a check of the mapping at ``path`` (a check across its keys, such as "batch_size
    is not a multiple of instances_per_identity") should point when command-line overrides
    set keys inside it: the overrides whose key the message names (dotted, or its last
    part), else, below the recipe's top level, every override inside the section. None
    when no override is to blame (the file's line stands)."""
    behind: dict[str, bool] = {}  # override text -> whether the message names its key
    for key, loc in locations.under(path):
        if loc.line is None and loc.source.startswith(_OVERRIDE) and len(key) > len(path):
            named = any(re.search(rf"(?<![\w.]){re.escape(str(part))}(?!\w)", message)
                        for part in (dotted(key), key[-1]))
            behind[loc.source] = behind.get(loc.source, False) or named
    named = [text for text, hit in behind.items() if hit]
    chosen = named or (list(behind) if path else [])
    if not chosen:
        return None
    return "override " + " ".join(text[len("override "):] for text in chosen)


def _named_key_line(path: KeyPath, message: str, tree: dict[str, Any], locations: Locations) -> str | None:
    """The location of the first key below ``path`` that a check's message names in full
    (``train.batch_size 1: ...`` -> the line of batch_size), when the recipe writes it."""
    names = re.findall(r"(?<![\w.])([A-Za-z_]\w*(?:\.\w+)+)", message)
    for name in names:
        key = tuple(name.split("."))
        if key[:len(path)] == tuple(path) and value_at(tree, key) is not None:
            return str(locations.find(key))
    return None


def _first_error(errors: list[dict[str, Any]], model: type[RecipeBase]) -> dict[str, Any]:
    """The error the line reports: the first, except that a required key missing beside
    an unknown key close to its name (``objective:`` for ``objectives:``) is that typo."""
    first = errors[0]
    if first["type"] == "missing":
        missing = _clean_path(first["loc"], model)
        for err in errors:
            path = _clean_path(err["loc"], model)
            if (err["type"] == "extra_forbidden" and path[:-1] == missing[:-1]
                    and difflib.get_close_matches(str(path[-1]), [str(missing[-1])], n=1, cutoff=0.6)):
                return err
    return first


def _tuple_in(annotation: Any) -> Any:
    """The ``tuple[...]`` inside an annotation (``tuple[int, int] | None``), else None."""
    if typing.get_origin(annotation) is tuple:
        return annotation
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is tuple:
            return arg
    return None


def _described_choice(word: str, description: str | None, choices: list[str]) -> list[str]:
    """The choice a field's description quotes just after naming ``word`` (``eval.select:
    best`` -> 'val', described as "best validation R1 ('val', ..."): a word of the meaning
    before a near spelling ('best' is one letter from 'test')."""
    if not description or not word.strip():
        return []
    found = re.search(rf"\b{re.escape(word)}\b[^'()]{{0,40}}\('([^']*)'", description, re.IGNORECASE)
    return [found.group(1)] if found and found.group(1) in choices else []


def validation_error(exc: ValidationError, tree: dict[str, Any], locations: Locations,
                     model: type[RecipeBase]) -> RecipeError:
    """The :class:`RecipeError` (one line) of pydantic's first error validating ``tree``
    against ``model`` (a recipe model, or another file's model with an empty
    ``component_models``, as the study file's): the key's file and line, ``unknown key 'x'
    (did you mean 'y'?)``, the value given."""
    err = _first_error(exc.errors(include_url=False), model)
    path = _clean_path(err["loc"], model)
    key = path[-1] if path else ""
    kind = err["type"]
    where = locations.find(path)
    hint: str | None = None
    settings_block = kind == "extra_forbidden" and path[:-1] == ("settings",)  # a plugin's settings key
    if kind == "extra_forbidden":
        parent = _model_at(model, path[:-1], tree)
        valid = list(parent.model_fields) if parent is not None else []
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        if settings_block and not close:  # a plugin's block, that plugin not loaded
            message = f"no plugin loaded now declares settings {key!r}"
            declared = f"the declared ones: {', '.join(valid)}" if valid else "none is declared now"
            hint = (f"install or enable the plugin that declares them ({declared}; wsreid plugins lists them), or "
                    f"leave the block out (-o settings.{key}=null)")
        elif close:
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
        elif valid == ["name"]:  # a component block whose component declares no parameter
            hint = (f"{_short(value_at(tree, path[:-1] + ('name',)))} takes no parameters: remove the key; in a "
                    "plugin, a component declares its parameters with a Params model on its class (class "
                    "Params(wsreid.api.Params): ..., or Params = MyParams)")
        elif valid:
            hint = f"valid keys here: {', '.join(valid)}"
    elif kind == "missing" and isinstance(key, int) and isinstance(value_at(tree, path[:-1]), list):
        # a position of a fixed-length list ([H, W]) that the list does not have
        given = value_at(tree, path[:-1])
        path = path[:-1]
        where = locations.find(path)
        parent = _model_at(model, path[:-1], tree)
        field = parent.model_fields.get(str(path[-1])) if parent is not None and path else None
        wanted = [a for a in typing.get_args(_tuple_in(field.annotation)) if a is not Ellipsis] if field else []
        needs = f"needs {len(wanted)} values" if wanted else "needs more values"
        message = f"{needs}, got {len(given)} ({_short(given)})"
        hint = field.description if field is not None and field.description else None
    elif kind == "missing":
        where = locations.find(path[:-1])
        message = f"required key {key!r} is missing"
        parent = _model_at(model, path[:-1], tree)
        field = parent.model_fields.get(str(key)) if parent is not None else None
        hint = f"add it: {field.description}" if field is not None and field.description else "add it"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{_short(err['input'])} is not one of {expected}"
        choices = re.findall(r"'([^']*)'", expected)
        same_letters = [c for c in choices if c.lower() == str(err["input"]).lower()]  # AdamW -> adamw
        parent = _model_at(model, path[:-1], tree) if path else None
        field = parent.model_fields.get(str(path[-1])) if parent is not None else None
        described = _described_choice(str(err["input"]), field.description if field is not None else None, choices)
        close = same_letters or described or difflib.get_close_matches(str(err["input"]), choices, n=1, cutoff=0.5)
        if close:
            hint = f"did you mean {close[0]!r}?"
    elif kind in ("model_type", "dict_type") and not isinstance(err.get("input"), dict):
        # a section or block given a value where its keys go (-o train=5)
        parent = _model_at(model, path, tree) if path else None
        message = f"takes a mapping of keys, got {_short(err.get('input'))}"
        keys = ", ".join(parent.model_fields) if parent is not None else ""
        hint = (f"set one of its keys, e.g. {dotted(path)}.KEY=VALUE" if str(where).startswith(_OVERRIDE)
                else "write its keys below it") + (f"; its keys: {keys}" if keys else "")
    else:
        message = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
        message = message[:1].lower() + message[1:]
        if not isinstance(err.get("input"), dict):
            message += f" (got {_short(err.get('input'))})"
        else:  # a check of the whole section: blame the overrides that set keys it names; a check
            # of the whole recipe (which has no line of its own) the first key the message names
            where = (_overrides_behind(path, message, locations)
                     or (_named_key_line(path, message, tree, locations) if not path else None) or where)
    error = RecipeError(f"{where}: {dotted(path) or 'recipe'}: {message}", hint=hint)
    if settings_block:  # the block no loaded plugin declares (read by wsreid.engine.offline_eval)
        error.undeclared_settings = str(key)
    return error
