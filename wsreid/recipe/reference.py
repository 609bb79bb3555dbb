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


def recipe_json_schema(registry: Registry, *, resolved: bool = False) -> dict[str, Any]:
    """JSON schema of recipe files valid with ``registry`` (for editors; ``wsreid schema``).

    By default it describes one layer of a recipe, a file as written: ``extends``, no key
    required (the layers below may give it), a component block without ``name`` (it
    changes the extended block's parameters; its keys must be some component's), ``null``
    for any key (it deletes the value below), and the conversions the loader makes (a
    number in quotes, ``on``/``off``/``yes``/``no``/``1``/``0`` for a boolean; docs/recipes.md).
    Only what a layer cannot know is left to ``wsreid validate``: whether the merged recipe
    is complete, and its cross-checks. With ``resolved`` it describes a whole recipe after
    merging, as a run writes it (``RUN/recipe.yaml``): the required keys and a ``name`` in
    every block."""
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
    if not resolved:
        schema = _layer_schema(schema)
        schema["title"] = "wsreid recipe file (one layer: extends and overrides merge later)"
    return schema


#: a number in quotes, as the loader converts it (``'2e-4'``, ``' 1_000 '``)
NUMBER_TEXT = r"^\s*[-+]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
#: an integer in quotes or with a zero fraction (``'3'``, ``3.0``)
INTEGER_TEXT = r"^\s*[-+]?[0-9][0-9_]*(\.0*)?\s*$"
#: the words a boolean key takes besides true / false, in any case, as the loader converts
#: them (true/false, on/off, yes/no, t/f, y/n, 1/0); JSON Schema patterns have no flags
BOOLEAN_TEXT = ("^(" + "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)
                                for word in ("true", "false", "on", "off", "yes", "no", "t", "f", "y", "n", "1", "0"))
                + ")$")


def _layer_schema(node: Any) -> Any:
    """The strict (resolved-recipe) schema ``node`` loosened to one layer's: no
    ``required``, alternatives that may overlap once ``name`` is optional (``oneOf`` ->
    ``anyOf``, no discriminator), every property nullable, and the loader's conversions
    of numbers and booleans."""
    if isinstance(node, list):
        return [_layer_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("required", "discriminator"):
            continue
        if key == "properties":
            out[key] = {name: _nullable(_layer_schema(sub)) for name, sub in value.items()}
        elif key == "$defs":
            out[key] = {name: _layer_schema(sub) for name, sub in value.items()}
        else:
            out["anyOf" if key == "oneOf" else key] = _layer_schema(value)
    kind = out.get("type")
    if kind == "number":
        out["type"], out["pattern"] = ["number", "string"], NUMBER_TEXT
    elif kind == "integer":
        out["type"], out["pattern"] = ["integer", "string"], INTEGER_TEXT
    elif kind == "boolean":
        del out["type"]
        out["anyOf"] = [{"type": "boolean"}, {"enum": [0, 1]}, {"type": "string", "pattern": BOOLEAN_TEXT}]
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (a layer's ``null`` deletes the key below); its description
    stays on the outside, where editors look."""
    if schema.get("type") == "null" or {"type": "null"} in schema.get("anyOf", []):
        return schema
    outer = {k: schema[k] for k in ("title", "description") if k in schema}
    return {**outer, "anyOf": [schema, {"type": "null"}]}


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
        "mapping rejects unknown keys; errors name the file, line and dotted key. `wsreid schema` "
        "prints the JSON schema of a recipe file as written (one layer: no key required, `null` "
        "allowed, the conversions above) for editors; `wsreid schema --resolved` that of a merged "
        "recipe, `--study` that of a study file.",
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
