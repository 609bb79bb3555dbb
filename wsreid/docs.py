"""Generated reference documents: docs/hooks.md (from the hook specifications) and
docs/recipes.md (from the recipe schema and the shipped components).

    python -m wsreid.docs            # rewrite both files under ./docs
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


def parse_hook_doc(doc: str) -> HookDoc:
    """Split a hook docstring (the format described in :mod:`wsreid.hookspecs`).

    A section starts with an unindented ``Title:`` line; its body is indented. In
    ``Arguments:``, each ``name: description`` line one level in starts an argument and
    deeper lines continue it.
    """
    summary: list[str] = []
    sections: dict[str, list[str]] = {}
    arguments: dict[str, list[str]] = {}
    current: list[str] = summary
    argument: list[str] | None = None
    for raw in inspect.cleandoc(doc).splitlines():
        text = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if indent == 0 and re.fullmatch(r"[A-Z][A-Za-z ]*:", text):
            current = sections.setdefault(text[:-1], [])
            argument = None
            continue
        current.append(text)
        if current is sections.get("Arguments") and text:
            match = re.match(r"^(\w+):\s*(.*)$", text) if indent == 4 else None
            if match:
                argument = arguments.setdefault(match.group(1), [])
                argument.append(match.group(2))
            elif argument is not None:
                argument.append(text)
    return HookDoc(
        _join(summary),
        {title: _join(body) for title, body in sections.items()},
        {name: _join(body) for name, body in arguments.items()},
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


def _docstring_markdown(doc: str) -> str:
    """A hook docstring as markdown: the summary, then each section under a bold title,
    arguments as a list."""
    parsed = parse_hook_doc(doc)
    out = [parsed.summary, ""]
    for title, body in parsed.sections.items():
        out += [f"**{title}**", ""]
        if title == "Arguments":
            out += [f"- `{name}`: {text}" for name, text in parsed.arguments.items()]
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
    components."""
    from wsreid.recipe import recipe_reference_markdown

    return recipe_reference_markdown(shipped_registry())


#: File name under the docs directory -> the function that generates it.
GENERATED: dict[str, Callable[[], str]] = {
    "hooks.md": hooks_reference_markdown,
    "recipes.md": recipes_reference_markdown,
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
