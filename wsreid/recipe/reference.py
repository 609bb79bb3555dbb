"""The recipe reference (docs/recipes.md) and the JSON schema (``wsreid schema``), both
generated from the schema models and the registry so they cannot drift from the code."""

from __future__ import annotations

import importlib
import inspect
import json
import types
import typing
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from wsreid.recipe.build import LABEL_PATTERN, build_recipe_model
from wsreid.recipe.model import COMPONENT_SECTIONS, EvalConfig, RecipeBase, TrainConfig
from wsreid.registry import Registry

__all__ = ["recipe_reference_markdown", "recipe_json_schema"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def recipe_json_schema(registry: Registry) -> dict[str, Any]:
    """JSON schema of every recipe valid with ``registry`` (for editors). Adds the
    ``extends`` key, which is resolved before validation."""
    schema = build_recipe_model(registry).model_json_schema()
    schema = {"$schema": JSON_SCHEMA_DIALECT, **schema}
    schema["title"] = "wsreid recipe"
    properties = schema.setdefault("properties", {})
    properties["extends"] = {
        "type": "string",
        "description": "recipe file this one is laid over (path relative to this file)",
    }
    for section, (_, multi) in COMPONENT_SECTIONS.items():
        block = properties.get(section, {}).get("additionalProperties") if multi else None
        if isinstance(block, dict):  # 'label: null' removes a component of the extended recipe
            properties[section]["additionalProperties"] = {"anyOf": [block, {"type": "null"}]}
    return schema


# --------------------------------------------------------------------------- markdown


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in args)}]"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<"))


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(item, cls):
                parts.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"length >= {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"length <= {item.max_length}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default if field.default_factory is None else field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(see below)"
    try:
        return f"`{json.dumps(value if not isinstance(value, tuple) else list(value))}`"
    except (TypeError, ValueError):
        return f"`{value!r}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _field_table(model: type[BaseModel], skip: tuple[str, ...] = (), types_: dict[str, str] | None = None) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        kind = (types_ or {}).get(name) or _type_name(field.annotation)
        bounds = _constraints(field)
        if bounds:
            kind += f" ({bounds})"
        rows.append(f"| `{name}` | {_cell(kind)} | {_cell(_default(field))} | {_cell(field.description or '')} |")
    if len(rows) == 2:
        rows.append("| - | - | - | no parameters |")
    return rows


_SECTION_TYPES = {
    section: ("mapping: label -> component block" if multi else "component block")
    for section, (_, multi) in COMPONENT_SECTIONS.items()
} | {"train": "mapping (see `train`)", "eval": "mapping (see `eval`)",
     "settings": "mapping: plugin key -> settings block (see `settings`)"}

_SECTION_HELP = {
    "data": "the dataset: `data: {name: <dataset>, <parameters>}`",
    "encoder": "the image and text encoder: `encoder: {name: <encoder>, <parameters>}`",
    "pair_construction": "how views of a batch are built: `pair_construction: {name: <name>, <parameters>}`",
    "local_associations": "label -> in-batch association: `local_associations: {<label>: {name: <name>, <parameters>}}`",
    "global_associations": "label -> association over the training set: `global_associations: {<label>: {name: <name>, ...}}`",
    "objectives": "label -> objective; the total loss is the sum of each loss times its `weight`: "
    "`objectives: {<label>: {name: <name>, weight: 1.0, <parameters>}}`",
}


def recipe_reference_markdown(registry: Registry) -> str:
    """Markdown reference of every recipe key: top-level keys, ``train`` and ``eval``,
    the merge rules, and for each component kind every registered component with its
    parameters (type, constraints, default, description)."""
    model = build_recipe_model(registry)
    out = [
        "# Recipe reference",
        "",
        "Generated from the recipe schema and the registered components "
        "(`wsreid.recipe.recipe_reference_markdown`); do not edit by hand.",
        "",
        "A recipe is a YAML 1.2 file: `1e-5` is a float and `on`/`yes`/`no` are strings, so a "
        "text value such as `no` stays as written (YAML 1.1 would make it a boolean). A value "
        "is then converted to its key's type where the conversion is exact: a boolean key "
        "takes `true`/`false` and also `on`/`off`, `yes`/`no`, `1`/`0`; a number key takes a "
        "number in quotes (`'2e-4'`); an integer key takes `2.0` but refuses `2.5`. Every "
        "mapping rejects unknown keys; errors name the file, line and dotted key.",
        "",
        "## Merge rules: `extends` and overrides",
        "",
        _merge_rules_text(),
        "",
        "## Top-level keys",
        "",
        *_field_table(model, types_=_SECTION_TYPES),
        "",
        f"Labels of associations and objectives match `{LABEL_PATTERN.pattern}`; association "
        "labels are unique across `local_associations` and `global_associations` (objectives "
        "refer to relations by these labels).",
        "",
    ]
    for title, section_model in (("train", TrainConfig), ("eval", EvalConfig)):
        out += [f"## `{title}`", "", (section_model.__doc__ or "").strip(), "", *_field_table(section_model), ""]
    out += ["## `settings`", "", "Settings blocks of plugins (observers): `settings: {<key>: {<field>: <value>}}`. "
            "A plugin declares its block with `registry.add_settings(key, Model)` (docs/plugins.md); every field "
            "has a default, so a recipe may leave the block out. Its hooks read the validated block as "
            "`run.recipe.settings[key]`.", ""]
    settings = registry.settings_entries()
    if not settings:
        out += ["No plugin documented here declares settings.", ""]
    for entry in settings:
        out += [f"### settings `{entry.key}`", "", entry.summary, "", f"Provided by `{entry.provided_by}`.", "",
                *_field_table(entry.model), ""]
    for section, (kind, _) in COMPONENT_SECTIONS.items():
        out += [f"## `{section}`", "", _SECTION_HELP[section] + ".", ""]
        default = RecipeBase.model_fields[section].get_default(call_default_factory=True)
        if isinstance(default, dict) and default.get("name"):
            out += [f"Default: `{json.dumps(default)}`.", ""]
        entries = list(registry.entries(kind))
        if not entries:
            out += [f"No {kind} component is registered.", ""]
        for entry in entries:
            member = model.component_models[kind][entry.name]
            out += [f"### {kind} `{entry.name}`", ""]
            description = _description(entry)
            if description:
                out += [description, ""]
            out += [f"Provided by `{entry.provided_by}`.", ""]
            if not entry.cls.weakly_supervised:
                out += ["Reads true identity labels: runs using it are labelled *not weakly supervised*.", ""]
            out += [*_field_table(member, skip=("name",)), ""]
    return "\n".join(out).rstrip() + "\n"


def _description(entry: Any) -> str:
    """The first paragraph of the component's docstring when the registered summary is
    its first line (the usual case), else the summary."""
    doc = inspect.getdoc(entry.cls) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    summary = " ".join((entry.summary or "").split())
    return paragraph if summary and paragraph.startswith(summary) else summary


def _merge_rules_text() -> str:
    doc = importlib.import_module("wsreid.recipe.merge").__doc__ or ""
    return doc.strip()
