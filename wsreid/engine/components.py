"""Components of a run, built by name from the registry; provenance of a run."""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import dataclass, field
from typing import Any

from wsreid.api import BuildContext, Component
from wsreid.pluginmanager import Plugins

SECTIONS = {
    "local_associations": "local_association",
    "global_associations": "global_association",
    "objectives": "objective",
}


@dataclass
class Components:
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

    def stateful(self) -> dict[str, Component]:
        out = {f"pair_construction/{type(self.pair_construction).__name__}": self.pair_construction}
        for section in SECTIONS:
            for label, comp in getattr(self, section).items():
                out[f"{section}/{label}"] = comp
        return out

    @property
    def weakly_supervised(self) -> bool:
        return not self.supervised_settings and all(
            type(c).weakly_supervised for c in [self.dataset, self.encoder, *self.stateful().values()])

    def supervised_names(self) -> list[str]:
        """What reads true identities: non-weakly-supervised components, then settings."""
        return [k for k, c in self.stateful().items() if not type(c).weakly_supervised] + self.supervised_settings


def build_component(plugins: Plugins, kind: str, spec, context: BuildContext, where: str):
    """Instantiate the registered component ``spec.name`` of ``kind`` with its params."""
    entry = plugins.registry.get(kind, spec.name, where=where)
    data = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
    for common in ("name", "weight", "start_epoch"):
        if common not in entry.params_model.model_fields:
            data.pop(common, None)
    params = entry.params_model.model_validate(data)
    return entry.cls(params, context)


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
    from wsreid.recipe.model import COMPONENT_SECTIONS

    used = set()
    for section, (kind, multi) in COMPONENT_SECTIONS.items():
        value = resolved.get(section)
        blocks = value.values() if multi and isinstance(value, dict) else [value]
        used.update((kind, b["name"]) for b in blocks if isinstance(b, dict) and isinstance(b.get("name"), str))
    return used
