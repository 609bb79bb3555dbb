"""Components of a run, built by name from the registry; provenance of a run."""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import dataclass, field
from typing import Any

import torch

from wsreid.api import KINDS, BuildContext, Component, labelled_kinds
from wsreid.errors import ComponentError, faults_named, one_line
from wsreid.pluginmanager import Plugins

#: labelled recipe section -> component kind (associations and objectives), from
#: :data:`wsreid.api.KINDS`
SECTIONS: dict[str, str] = {k.section: k.kind for k in labelled_kinds()}


@dataclass
class Components:
    """The built components of a run, by recipe section, with the objectives' weights and
    start epochs."""

    dataset: Component
    encoder: Any
    pair_construction: Component
    local_associations: dict[str, Component] = field(default_factory=dict)
    global_associations: dict[str, Component] = field(default_factory=dict)
    objectives: dict[str, Component] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    start_epochs: dict[str, int] = field(default_factory=dict)
    #: reasons besides components why the run reads true identities (e.g. the identity sampler)
    supervised_settings: list[str] = field(default_factory=list)
    #: the pair construction's registered name (the recipe's ``pair_construction.name``)
    pair_construction_name: str = "pair_construction"

    def stateful(self) -> dict[str, Component]:
        """Components whose state a checkpoint holds, keyed ``<section>/<label>``; the pair
        construction, which has no label, by its registered name
        (``pair_construction/iasc``)."""
        out = {f"pair_construction/{self.pair_construction_name}": self.pair_construction}
        for section in SECTIONS:
            for label, comp in getattr(self, section).items():
                out[f"{section}/{label}"] = comp
        return out

    def trainable(self) -> dict[str, torch.nn.Module]:
        """The stateful components that are torch modules (associations and objectives; the
        registry refuses a module of another kind): their parameters are trained with the
        encoder's. Keyed ``<section>/<label>`` as :meth:`stateful`."""
        return {key: comp for key, comp in self.stateful().items() if isinstance(comp, torch.nn.Module)}

    def named_trainable_parameters(self):
        """``(<section>.<label>.<name>, parameter)`` of every trainable component."""
        for key, module in self.trainable().items():
            for name, param in module.named_parameters():
                yield f"{key.replace('/', '.')}.{name}", param

    @property
    def weakly_supervised(self) -> bool:
        """Whether nothing in the run reads true identity labels."""
        return not self.supervised_settings and not identity_readers(
            [("dataset", type(self.dataset)), ("encoder", type(self.encoder))]
            + [(k, type(c)) for k, c in self.stateful().items()])

    def supervised_names(self) -> list[str]:
        """What reads true identities: non-weakly-supervised components, then settings."""
        return identity_readers([(k, type(c)) for k, c in self.stateful().items()]) + self.supervised_settings


def identity_readers(parts) -> list[str]:
    """The names of ``(name, component class)`` pairs whose class reads true identity
    labels (``weakly_supervised = False``): the one weak-supervision check of the engine
    and of ``wsreid eval``."""
    return [name for name, cls in parts if not cls.weakly_supervised]


def recipe_identity_readers(recipe, registry, *, trained: bool = True) -> list[str]:
    """What reads true identity labels in a recipe, by recipe key: its dataset and encoder
    and, for a trained model (``trained``), every association and objective and the
    training settings (``train.true_identity_uses``)."""
    parts = [("data", registry.get("dataset", recipe.data.name, where="data").cls),
             ("encoder", registry.get("encoder", recipe.encoder.name, where="encoder").cls)]
    if trained:
        for section, kind in SECTIONS.items():
            for label, spec in getattr(recipe, section).items():
                if spec is not None:
                    where = f"{section}.{label}"
                    parts.append((where, registry.get(kind, spec.name, where=where).cls))
    return identity_readers(parts) + (recipe.train.true_identity_uses() if trained else [])


def build_component(plugins: Plugins, kind: str, spec, context: BuildContext, where: str):
    """Instantiate the registered component ``spec.name`` of ``kind`` with its params."""
    entry = plugins.registry.get(kind, spec.name, where=where)
    data = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
    for common in ("name", "weight", "start_epoch"):
        if common not in entry.params_model.model_fields:
            data.pop(common, None)
    params = entry.params_model.model_validate(data)
    component = entry.cls(params, context)
    check_built(component, where, f"{kind} {spec.name!r} from plugin {entry.provider!r}")
    return component


#: what a component whose ``__init__`` skips its base class's is told to do
SUPER_INIT_HINT = ("call super().__init__(params, context) in __init__, before using self.params; a torch module "
                   "calls torch.nn.Module.__init__(self) first, then the component base class's "
                   "__init__(self, params, context)")


def check_built(component: Component, where: str, origin: str) -> None:
    """A component's ``__init__`` must run its base class's (wsreid.api.Component keeps
    ``params`` and ``context``; the engine reads ``params`` of the components it built):
    one line naming the recipe key ``where`` and ``origin`` (``<kind> '<name>' from plugin
    '<plugin>'``) otherwise, rather than an AttributeError of the engine later."""
    if not (hasattr(component, "params") and hasattr(component, "context")):
        raise ComponentError(f"{where} ({origin}): its __init__ did not call super().__init__(params, context): "
                             "the component has no 'params' or 'context'", hint=SUPER_INIT_HINT)


def load_dataset(plugins: Plugins, recipe, context: BuildContext):
    """Build the recipe's dataset and load it -> (dataset component, DatasetSplits);
    fills ``context.train_captions``, ``context.num_train``, ``context.train_person_ids``
    and ``context.train_image_ids`` for the components built after it."""
    dataset = build_component(plugins, "dataset", recipe.data, context, "data")
    splits = dataset.load()
    context.train_captions = [p.caption for p in splits.train]
    context.num_train = len(splits.train)
    context.train_person_ids = tuple(p.person_id for p in splits.train)
    context.train_image_ids = tuple(p.image_id for p in splits.train)
    return dataset, splits


def build_encoder(plugins: Plugins, recipe, context: BuildContext):
    """Build the recipe's encoder (after :func:`load_dataset`); fills ``context.encoder``
    and ``context.image_size``."""
    encoder = build_component(plugins, "encoder", recipe.encoder, context, "encoder")
    context.encoder = encoder
    context.image_size = tuple(encoder.image_size)
    return encoder


#: what a recipe can do instead of a faulty component of a section it cannot leave out
_REQUIRED_SECTIONS = {"encoder": "choose another encoder", "data": "choose another dataset"}


def component_fault(origin: str, where: str, plugin: str | None, what: str, exc: Exception) -> ComponentError:
    """The one-line error of a component's exception: ``origin`` (its recipe key ``where``,
    kind, name and plugin, as :meth:`wsreid.engine.run.Run.origin` writes it), what
    failed, the exception, and the plugin to fix."""
    whose = f"plugin {plugin!r}" if plugin else "the component's plugin"
    instead = _REQUIRED_SECTIONS.get(where, "leave the component out")  # a run cannot go without these
    return ComponentError(f"{origin}: {what}: {one_line(exc)}",
                          hint=f"a fault of {whose}; fix it, or {instead}; --debug shows the traceback")


def encoder_calls(plugins: Plugins, recipe, doing: str):
    """Around calls into the built encoder outside a training run (``wsreid eval``,
    ``wsreid search``): :func:`faults_named` with the line of :func:`component_fault`,
    naming the recipe's encoder and its plugin."""
    def fault(exc: Exception) -> ComponentError:
        name = recipe.encoder.name
        provider = plugins.registry.get("encoder", name).provider
        return component_fault(f"encoder (encoder {name!r} from plugin {provider!r})", "encoder", provider,
                               f"{doing} failed", exc)

    return faults_named(fault)


def build_dataset_and_encoder(plugins: Plugins, recipe, context: BuildContext):
    """Dataset splits and encoder, built as a run builds them (same order, so with the
    same seed the same random draws) -> (dataset, splits, encoder)."""
    dataset, splits = load_dataset(plugins, recipe, context)
    return dataset, splits, build_encoder(plugins, recipe, context)


def package_versions(plugins: Plugins, resolved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of a run (``versions.json``): Python and package versions, the
    components the resolved recipe ``resolved`` uses (every registered one when None) and
    the observers (plugins implementing lifecycle hooks), each with its distribution."""
    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    pkgs = {n: version(n) for n in ("wsreid", "torch", "transformers", "accelerate", "pluggy", "pydantic", "tokenizers")}
    used = used_components(resolved) if resolved is not None else None
    comps = [
        {"kind": e.kind, "name": e.name, "provider": e.provider, "distribution": e.distribution, "version": e.version}
        for e in plugins.registry.entries()
        if used is None or (e.kind, e.name) in used
    ]
    return {"python": platform.python_version(), "packages": pkgs, "components": comps,
            "observers": plugins.observers()}


def used_components(resolved: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every component block of a resolved recipe."""
    used = set()
    for k in KINDS:
        value = resolved.get(k.section)
        blocks = value.values() if k.labelled and isinstance(value, dict) else [value]
        used.update((k.kind, b["name"]) for b in blocks if isinstance(b, dict) and isinstance(b.get("name"), str))
    return used
