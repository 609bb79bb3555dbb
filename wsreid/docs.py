"""Generated reference documents: docs/hooks.md (from the hook specifications),
docs/recipes.md (from the recipe schema and the shipped components) and
docs/components.md (from the component API, :mod:`wsreid.api`).

    python -m wsreid.docs            # rewrite the three files under ./docs
    python -m wsreid.docs --check    # exit 1 and name the files that are out of date

Only the plugins shipped with wsreid are documented, whatever else is installed, and
``WSREID_DISABLE_PLUGINS`` is ignored, so the output is the same on every machine.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wsreid import hookspecs

__all__ = [
    "GENERATED",
    "HookDoc",
    "hook_doc_problems",
    "hook_specifications",
    "parse_hook_doc",
    "hooks_reference_markdown",
    "recipes_reference_markdown",
    "nested_recipe_models",
    "nested_models_markdown",
    "components_reference_markdown",
    "api_doc_problems",
    "shipped_registry",
    "main",
]

#: Distribution whose entry points are the shipped plugins.
SHIPPED_DISTRIBUTION = "wsreid"


def hook_specifications() -> dict[str, Callable]:
    """Every hook specification in :mod:`wsreid.hookspecs`, in source order."""
    specs = [
        obj for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, "wsreid_spec") and name.startswith("wsreid_")
    ]  # fmt: skip
    specs.sort(key=lambda f: f.__code__.co_firstlineno)
    return {f.__name__: f for f in specs}


def _signature(func: Callable) -> str:
    """``name(arg, ...)`` of a hook specification."""
    params = ", ".join(inspect.signature(func).parameters)
    return f"{func.__name__}({params})"


def hooks_reference_markdown() -> str:
    """docs/hooks.md: the module introduction, then one section per hook with its
    signature and docstring."""
    intro = inspect.cleandoc(hookspecs.__doc__ or "")
    out = [
        "# Hook reference",
        "",
        "Generated from `wsreid/hookspecs.py` by `python -m wsreid.docs`; do not edit by hand.",
        "",
        intro,
        "",
        "Implement a hook with a function of the same name decorated by `wsreid.hookimpl`:",
        "",
        "```python",
        "from wsreid import hookimpl",
        "",
        "",
        "@hookimpl",
        "def wsreid_epoch_end(run, epoch, logs):",
        "    if run.dist.is_main:",
        '        print(epoch, logs["loss/total"])',
        "```",
        "",
        "| hook | summary |",
        "|---|---|",
    ]
    specs = hook_specifications()
    for name, func in specs.items():
        summary = inspect.getdoc(func).splitlines()[0] if func.__doc__ else ""
        out.append(f"| [`{name}`](#{name}) | {summary} |")
    out.append("")
    for name, func in specs.items():
        out += [f"## {name}", "", "```python", f"@hookimpl\ndef {_signature(func)}: ...", "```", ""]
        out += [_docstring_markdown(inspect.getdoc(func) or ""), ""]
    return _rst_to_markdown("\n".join(out).rstrip() + "\n")


def _rst_to_markdown(text: str) -> str:
    """Docstring markup as markdown: ``code`` -> `code`, :role:`target` -> `target`."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"(?<!`)``([^`]+)``(?!`)", r"`\1`", text)


@dataclass
class HookDoc:
    """A hook docstring split into its parts: ``summary`` (the text before the first
    section), ``sections`` (section title -> text, lines joined) and ``arguments``
    (argument name -> description, from the ``Arguments:`` section)."""

    summary: str
    sections: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, str] = field(default_factory=dict)
    #: item lists of the sections in :data:`ITEM_SECTIONS` (title -> name -> description)
    items: dict[str, dict[str, str]] = field(default_factory=dict)


#: Sections whose body is a list of ``name: description`` items.
ITEM_SECTIONS = ("Arguments", "Fields", "Attributes")


def parse_hook_doc(doc: str) -> HookDoc:
    """Split a hook docstring (the format described in :mod:`wsreid.hookspecs`).

    A section starts with an unindented ``Title:`` line; its body is indented. In
    ``Arguments:``, each ``name: description`` line one level in starts an argument and
    deeper lines continue it.
    """
    summary: list[str] = []
    sections: dict[str, list[str]] = {}
    items: dict[str, dict[str, list[str]]] = {}
    current: list[str] = summary
    title = ""
    argument: list[str] | None = None
    for raw in inspect.cleandoc(doc).splitlines():
        text = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if indent == 0 and re.fullmatch(r"[A-Z][A-Za-z ]*:", text):
            title = text[:-1]
            current = sections.setdefault(title, [])
            argument = None
            continue
        current.append(text)
        if current is not summary and title in ITEM_SECTIONS and text:
            match = re.match(r"^(\w+):\s*(.*)$", text) if indent == 4 else None
            if match:
                argument = items.setdefault(title, {}).setdefault(match.group(1), [])
                argument.append(match.group(2))
            elif argument is not None:
                argument.append(text)
    joined = {t: {name: _join(body) for name, body in entries.items()} for t, entries in items.items()}
    return HookDoc(
        _join(summary),
        {t: _join(body) for t, body in sections.items()},
        joined.get("Arguments", {}),
        joined,
    )


#: Sections every hook docstring has.
REQUIRED_SECTIONS = ("Called", "Arguments", "Returns")


def hook_doc_problems(func: Callable) -> list[str]:
    """What a hook specification's docstring lacks (empty when it is documented): a
    summary, the sections ``Called:``, ``Arguments:`` and ``Returns:``, and in
    ``Arguments:`` exactly the hook's parameters, each with a description."""
    name = getattr(func, "__name__", repr(func))
    if not (func.__doc__ or "").strip():
        return [f"{name}: no docstring"]
    parsed = parse_hook_doc(func.__doc__)
    problems = [] if parsed.summary else [f"{name}: no summary line"]
    problems += [f"{name}: no '{s}:' section" for s in REQUIRED_SECTIONS if not parsed.sections.get(s)]
    params = list(inspect.signature(func).parameters)
    problems += [f"{name}: argument {p!r} is not documented" for p in params if p not in parsed.arguments]
    problems += [f"{name}: documents {a!r}, which is not an argument" for a in parsed.arguments if a not in params]
    problems += [f"{name}: argument {a!r} has no description" for a, text in parsed.arguments.items() if not text]
    return problems


def _join(lines: list[str]) -> str:
    """Lines -> paragraphs: consecutive lines joined by spaces, blank lines kept."""
    paragraphs = "\n".join(lines).strip().split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _docstring_markdown(doc: str, skip: tuple[str, ...] = ()) -> str:
    """A hook (or method) docstring as markdown: the summary, then each section under a
    bold title, item sections as lists; sections named in ``skip`` are left out."""
    parsed = parse_hook_doc(doc)
    out = [parsed.summary, ""]
    for title, body in parsed.sections.items():
        if title in skip:
            continue
        out += [f"**{title}**", ""]
        if title in ITEM_SECTIONS and parsed.items.get(title):
            out += [f"- `{name}`: {text}" for name, text in parsed.items[title].items()]
        else:
            out.append(body)
        out.append("")
    return "\n".join(out).strip()


def shipped_registry():
    """The registry filled by the shipped plugins only (entry points of the ``wsreid``
    distribution), ignoring ``WSREID_DISABLE_PLUGINS``."""
    from wsreid.pluginmanager import load_plugins

    return load_plugins(distributions=[SHIPPED_DISTRIBUTION], use_env=False).registry


def recipes_reference_markdown() -> str:
    """docs/recipes.md: :func:`wsreid.recipe.recipe_reference_markdown` of the shipped
    components, then a section for every nested parameter model its tables name as a
    key's type (:func:`nested_models_markdown`)."""
    from wsreid.recipe import recipe_reference_markdown

    registry = shipped_registry()
    text = recipe_reference_markdown(registry)
    nested = nested_models_markdown(registry)
    return text if not nested else text.rstrip() + "\n\n" + nested


def _models_in(annotation) -> list[type]:
    """The pydantic models an annotation names (through ``X | None``, ``Annotated``,
    ``list[X]``, ``dict[str, X]``, ...), in the order written."""
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _slug(heading: str) -> str:
    """The anchor a markdown renderer (GitHub's) gives a heading: lower case, characters
    other than word characters, spaces and hyphens dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _tables_of_recipe_reference(registry) -> list[tuple[str, type, tuple[str, ...]]]:
    """The field tables of docs/recipes.md in page order, as (heading of the table's
    section, model, keys left out): what :func:`wsreid.recipe.recipe_reference_markdown`
    renders. Top-level keys shown with a section of their own (``train``, ``eval``,
    ``settings``, the component sections) are left out: their type column names no
    model."""
    from wsreid.recipe.build import build_recipe_model
    from wsreid.recipe.model import COMPONENT_SECTIONS, EvalConfig, TrainConfig
    from wsreid.recipe.reference import _SECTION_TYPES

    model = build_recipe_model(registry)
    tables = [("Top-level keys", model, tuple(_SECTION_TYPES)), ("`train`", TrainConfig, ()), ("`eval`", EvalConfig, ())]
    tables += [(f"settings `{entry.key}`", entry.model, ()) for entry in registry.settings_entries()]
    for kind, _ in COMPONENT_SECTIONS.values():
        for entry in registry.entries(kind):
            tables.append((f"{kind} `{entry.name}`", model.component_models[kind][entry.name], ("name",)))
    return tables


def nested_recipe_models(registry) -> dict[type, list[tuple[str, str | type]]]:
    """Every pydantic model that a table of docs/recipes.md names as the type of a key
    (``init: InitConfig | null``, the clip encoder's ``vision: VisionParams``), and the
    models their fields name in turn, in the order the page first names them (tables in
    page order, keys in table order; the models a nested model names after it), each with
    the places naming it: (key, heading of the table's section, or the nested model whose
    table it is). ``TrainConfig`` and ``EvalConfig`` are left out: they are the sections
    ``train`` and ``eval``."""
    from wsreid.recipe.model import EvalConfig, TrainConfig

    documented = {TrainConfig, EvalConfig}
    used: dict[type, list[tuple[str, str | type]]] = {}
    queue: list[tuple[str | type, type, tuple[str, ...]]] = list(_tables_of_recipe_reference(registry))
    while queue:
        where, model, skip = queue.pop(0)
        for key, info in model.model_fields.items():
            if key in skip:
                continue
            for nested in _models_in(info.annotation):
                if nested in documented:
                    continue
                if nested not in used:
                    used[nested] = []
                    queue.append((nested, nested, ()))
                used[nested].append((key, where))
    return used


def nested_models_markdown(registry) -> str:
    """The section "Nested blocks" of docs/recipes.md: for every model of
    :func:`nested_recipe_models`, a heading of its own (its class name, qualified by its
    module when two have the same name), the keys whose type it is, its docstring, and the
    table of its keys (type, constraints, default, description) as the other sections
    have it. Empty when no table names a model."""
    from wsreid.recipe.reference import _field_table

    used = nested_recipe_models(registry)
    if not used:
        return ""
    short = [model.__name__ for model in used]
    heading = {model: model.__name__ if short.count(model.__name__) == 1 else f"{model.__module__}.{model.__name__}"
               for model in used}
    out = ["## Nested blocks", "",
           "Keys whose type is a model, a mapping of keys of its own: every model named in a table of this page, "
           "with its keys.", ""]
    for model, places in used.items():
        links = []
        for key, where in places:
            title = f"`{heading[where]}`" if isinstance(where, type) else where
            links.append(f"`{key}` in [{title}](#{_slug(title)})")
        doc = _join((inspect.getdoc(model) or "").splitlines())
        out += [f"### `{heading[model]}`", "", f"The type of {', '.join(links)}.", ""]
        if doc:
            out += [doc, ""]
        out += [*_field_table(model), ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- component API

#: The documented classes of :mod:`wsreid.api`, by section of docs/components.md.
API_SECTIONS: dict[str, tuple[str, ...]] = {
    "Component base classes": ("Component", "DatasetComponent", "EncoderComponent", "PairConstruction",
                               "LocalAssociation", "GlobalAssociation", "Objective"),
    "What components receive": ("Batch", "ViewFeatures", "Relation", "BuildContext", "StepContext",
                                "EpochContext"),
    "Data records": ("PairRecord", "EvalSplit", "DatasetSplits", "View"),
    "Parameters": ("Params", "ParamsCheckError"),
}


def api_classes() -> dict[str, type]:
    """Every class of :data:`API_SECTIONS`, by name, in page order."""
    from wsreid import api

    return {name: getattr(api, name) for names in API_SECTIONS.values() for name in names}


def api_methods(cls: type) -> dict[str, Callable]:
    """The methods ``cls`` itself defines that a plugin implements or calls: public ones
    (and ``__init__`` of components), in source order."""
    from wsreid import api

    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") and not (name == "__init__" and issubclass(cls, api.Component)):
            continue
        func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if inspect.isfunction(func):
            out.append((func.__code__.co_firstlineno, name, func))
    return {name: func for _, name, func in sorted(out)}


def _parameters(func: Callable) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]


def api_doc_problems() -> list[str]:
    """What the component API's docstrings lack (empty when complete): every class a
    summary; every method of :func:`api_methods` the sections ``Called:``,
    ``Arguments:`` (exactly its parameters) and ``Returns:``; every dataclass each field
    in ``Fields:``; every ``Attributes:`` entry an attribute of the class."""
    import dataclasses

    problems = []
    for name, cls in api_classes().items():
        parsed = parse_hook_doc(cls.__doc__ or "")
        if not parsed.summary:
            problems.append(f"{name}: no summary")
        if dataclasses.is_dataclass(cls):
            fields = [f.name for f in dataclasses.fields(cls)]
            documented = parsed.items.get("Fields", {})
            problems += [f"{name}: field {f!r} is not documented" for f in fields if not documented.get(f)]
            problems += [f"{name}: documents field {f!r}, which it does not have" for f in documented if f not in fields]
        for attribute in parsed.items.get("Attributes", {}):
            if not hasattr(cls, attribute):
                problems.append(f"{name}: documents attribute {attribute!r}, which it does not have")
        for method, func in api_methods(cls).items():
            where = f"{name}.{method}"
            if not (func.__doc__ or "").strip():
                problems.append(f"{where}: no docstring")
                continue
            doc = parse_hook_doc(func.__doc__)
            problems += [f"{where}: no '{s}:' section" for s in REQUIRED_SECTIONS if not doc.sections.get(s)]
            params = _parameters(func)
            problems += [f"{where}: argument {p!r} is not documented" for p in params if p not in doc.arguments]
            problems += [f"{where}: documents {a!r}, which is not an argument" for a in doc.arguments if a not in params]
    return problems


def _literal_blocks(doc: str) -> str:
    """A module docstring as markdown: each ``::`` literal block becomes a fenced block
    (``python`` when it looks like code)."""

    def fence(match: re.Match) -> str:
        body = inspect.cleandoc(match.group(1))
        lang = "python" if re.search(r"^(from|import|def) ", body, flags=re.M) else ""
        return f":\n\n```{lang}\n{body}\n```\n\n"

    return re.sub(r"::\n\n((?:    .*\n|\n)+)", fence, inspect.cleandoc(doc) + "\n").rstrip()


def _anchor(name: str) -> str:
    return name.lower().replace(".", "").replace("_", "-")


def _method_signature(func: Callable) -> str:
    """``name(arg: type, ...) -> type`` without ``self`` / ``cls`` and quotes."""
    params = [p for name, p in inspect.signature(func).parameters.items() if name not in ("self", "cls")]
    signature = inspect.signature(func).replace(parameters=params)
    return f"{func.__name__}{signature}".replace("'", "")


def components_reference_markdown() -> str:
    """docs/components.md: the component API of :mod:`wsreid.api` (every base class with
    each method: signature, when and where it is called, arguments with shapes, what it
    returns; every type a component receives with its fields), then the rules of the
    conformance kit (:mod:`wsreid.testing`)."""
    import dataclasses

    from wsreid import api, testing

    intro = _literal_blocks(api.__doc__ or "")
    out = [
        "# Component API reference",
        "",
        "Generated from `wsreid/api.py` (and the conformance kit's rules from `wsreid/testing/__init__.py`) "
        "by `python -m wsreid.docs`; do not edit by hand. The tutorial is docs/plugins.md; hooks are in "
        "docs/hooks.md; recipe keys of the shipped components in docs/recipes.md.",
        "",
        intro,
        "",
    ]
    classes = api_classes()
    for section, names in API_SECTIONS.items():
        out += [f"- {section}: " + ", ".join(f"[`{n}`](#{_anchor(n)})" for n in names)]
    out += ["- [Conformance kit](#conformance-kit)", ""]
    for section, names in API_SECTIONS.items():
        out += [f"## {section}", ""]
        for name in names:
            cls = classes[name]
            parsed = parse_hook_doc(cls.__doc__ or "")
            bases = [b.__name__ for b in cls.__bases__ if b.__module__ == api.__name__]
            out += [f"### {name}", ""]
            if getattr(cls, "kind", ""):
                out += [f"Kind `{cls.kind}`" + (f"; derives from `{'`, `'.join(bases)}`." if bases else "."), ""]
            elif bases:
                out += [f"Derives from `{'`, `'.join(bases)}`.", ""]
            out += [_docstring_markdown(cls.__doc__ or "", skip=("Fields",)), ""]
            if dataclasses.is_dataclass(cls):
                fields = parsed.items.get("Fields", {})
                out += ["| field | type | description |", "|---|---|---|"]
                for f in dataclasses.fields(cls):
                    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                    kind = kind.replace("|", "\\|")
                    text = fields.get(f.name, "").replace("|", "\\|")
                    out.append(f"| `{f.name}` | `{kind}` | {text} |")
                out.append("")
            for method, func in api_methods(cls).items():
                out += [f"#### `{name}.{method}`", "", "```python", _method_signature(func), "```", ""]
                out += [_docstring_markdown(func.__doc__ or ""), ""]
    out += ["## Conformance kit", "", _literal_blocks(testing.__doc__ or ""), ""]
    return _rst_to_markdown("\n".join(out).rstrip() + "\n")


#: File name under the docs directory -> the function that generates it.
GENERATED: dict[str, Callable[[], str]] = {
    "hooks.md": hooks_reference_markdown,
    "recipes.md": recipes_reference_markdown,
    "components.md": components_reference_markdown,
}


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the generated documents; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m wsreid.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="docs directory (default: ./docs)")
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    out = Path(args.out)
    stale = []
    for name, generate in GENERATED.items():
        path = out / name
        text = generate()
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(path))
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (regenerate with: python -m wsreid.docs --out {out})", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
