"""YAML 1.2 reading and writing for recipes (ruamel.yaml).

YAML 1.2 core schema: ``1e-5`` is a float, ``on``/``yes``/``no`` are strings, ``012`` is
the integer 12. Files are read with ruamel's round-trip loader so that every mapping key
and list item keeps its line; the result is converted to plain Python values (dict, list,
str, int, float, bool, None) together with a :class:`Locations` map.
"""

from __future__ import annotations

import datetime as _dt
import enum
import io
import json
import math
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from wsreid.errors import RecipeError
from wsreid.recipe.locations import Location, Locations
from wsreid.recipe.locations import Path as KeyPath
from wsreid.recipe.locations import dotted


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as shown in messages: relative to the working directory when below it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _loader() -> YAML:
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    return yaml


def _yaml_error(source: str, exc: YAMLError, with_line: bool = True) -> RecipeError:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None and with_line else source
        what = " ".join(p for p in (exc.context, exc.problem) if p)
    else:
        where, what = source, str(exc)
    return RecipeError(f"{where}: invalid YAML: {what}", hint="check indentation, quoting and brackets")


def parse_yaml_text(text: str, source: str, *, with_lines: bool = True) -> tuple[Any, Locations]:
    """Parse YAML 1.2 ``text`` into plain values and their locations (``source``: the
    name shown in messages, followed by the line of invalid YAML unless ``with_lines`` is
    False)."""
    try:
        with warnings.catch_warnings():  # YAML 1.2 lets an anchor name be given again: the alias takes the latest
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            data = _loader().load(text)
    except YAMLError as exc:
        raise _yaml_error(source, exc, with_lines) from None
    except (ValueError, OverflowError) as exc:  # a scalar of a known form that does not convert: 2023-02-30, ._
        raise RecipeError(f"{source}: invalid YAML: a value could not be read ({exc})",
                          hint="quote a value that is meant as a string, e.g. \"2023-02-30\"") from None
    if "*" in text:  # an alias: none may point at a mapping or list that contains it
        _check_recursive_aliases(text, source)
    locations = Locations(Location(source))
    tree = _to_plain(data, (), source, locations, 1)
    return tree, locations


class _Open:
    """A mapping or list being read by :func:`_check_recursive_aliases`: its anchor, and
    where in it the next node goes (a mapping: the current key, and whether a key or a
    value comes next; a list: the next item's index)."""

    def __init__(self, anchor: str | None, mapping: bool):
        self.anchor, self.mapping = anchor, mapping
        self.key: str | int = 0
        self.expect_key = mapping

    def done(self, node: Any = None, scalar: bool = False) -> None:
        """A node inside this collection ended: a key (``node``, its text when ``scalar``),
        a value, or a list item."""
        if not self.mapping:
            self.key = int(self.key) + 1
        elif self.expect_key:
            self.key, self.expect_key = (str(node) if scalar else "?"), False
        else:
            self.expect_key = True


def _check_recursive_aliases(text: str, source: str) -> None:
    """Refuse an alias that names a mapping or list it is inside (``a: &x [*x]``): the
    loader would read it as null, or recurse forever. One :class:`RecipeError` naming
    ``source``, the alias's line and the key it stands under."""
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, MappingStartEvent, ScalarEvent

    opened: list[_Open] = []
    named: dict[str, Any] = {}  # anchor -> the node it names now (an anchor may be defined again)
    for event in _loader().parse(text):
        if isinstance(event, AliasEvent) and any(o is named.get(event.anchor) for o in opened):
            path = tuple(o.key for o in opened if not (o.mapping and o.expect_key))
            kind = "mapping" if named[event.anchor].mapping else "list"
            where = f"{source}:{event.start_mark.line + 1}" + (f": {dotted(path)}" if path else "")
            raise RecipeError(f"{where}: the alias *{event.anchor} stands inside the {kind} it names "
                              f"(&{event.anchor}): a value cannot contain itself",
                              hint=f"point *{event.anchor} at a value outside it, or write the value out")
        if isinstance(event, CollectionStartEvent):
            opened.append(_Open(event.anchor, isinstance(event, MappingStartEvent)))
            if event.anchor is not None:
                named[event.anchor] = opened[-1]
        elif isinstance(event, CollectionEndEvent):
            opened.pop()
            if opened:
                opened[-1].done()
        elif isinstance(event, (ScalarEvent, AliasEvent)):
            if isinstance(event, ScalarEvent) and event.anchor is not None:
                named[event.anchor] = event
            if opened:
                opened[-1].done(getattr(event, "value", None), scalar=isinstance(event, ScalarEvent))


#: what the first line of an empty or malformed file's hint shows, per kind of file
_EXAMPLES = {
    "recipe": "a recipe is a YAML mapping such as 'data: {name: synth-pedes}'",
    "study": "a study is a YAML mapping with 'base: RECIPE' and 'variants: [{label: ...}]' (docs/ablations.md)",
}


def read_yaml_file(path: str | os.PathLike[str], kind: str = "recipe") -> tuple[dict[str, Any], Locations]:
    """Read a recipe file (or another ``kind`` of YAML file, named so in the messages: a
    ``study``): a YAML 1.2 mapping. Raises :class:`RecipeError` (one line) for a missing or
    unreadable file, invalid YAML (with its line), or a top level that is not a mapping."""
    source = display_path(path)
    p = Path(path)
    if not p.is_file():
        hint = f"it is a directory; give the {kind} file inside it" if p.is_dir() else "check the path"
        if kind == "recipe" and (p / "recipe.yaml").is_file():
            from wsreid.checkpoint_layout import RUN_MARKER

            inside = shlex.quote(str(Path(source) / "recipe.yaml"))
            if (p / RUN_MARKER).is_file():  # a run directory: the recipe it was started with
                hint = (f"it is a directory; the recipe of the run in it is {inside}; to resume that run: wsreid "
                        f"run {inside} --output-dir {shlex.quote(source)} --resume")
            else:
                hint = f"it is a directory; give the recipe file inside it: {inside}"
        raise RecipeError(f"{source}: {kind} file not found", hint=hint)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{source}: cannot read {kind} file: {exc}", hint="it must be a UTF-8 text file") from None
    tree, locations = parse_yaml_text(text, source)
    if tree is None:
        raise RecipeError(f"{source}: {kind} file is empty", hint=_EXAMPLES.get(kind, _EXAMPLES["recipe"]))
    if not isinstance(tree, dict):
        raise RecipeError(
            f"{source}:1: the top level of a {kind} must be a mapping of keys, not a {_kind(tree)}",
            hint="write 'key: value' lines at the top level",
        )
    return tree, locations


def parse_flow_value(text: str, source: str = "<value>") -> Any:
    """Parse one YAML 1.2 value (``2e-5``, ``image``, ``[1, 2]``, ``{name: itc}``, ``null``);
    invalid YAML names ``source`` without a line number (the value is one line:
    ``override -o train.lr=[1,2: invalid YAML: ...``)."""
    tree, _ = parse_yaml_text(text, source, with_lines=False)
    return tree


#: characters that end or structure a plain (unquoted) string inside a flow collection
_FLOW_INDICATORS = set(",[]{}:#")


def flow_text(value: Any, *, inside: bool = False) -> str:
    """``value`` as a recipe writes it, in YAML 1.2 flow syntax that
    :func:`parse_flow_value` reads back as the same value: ``null``, ``true``, ``0.5``,
    ``small``, ``[384, 128]``, ``{hidden: 768, layers: 12}``, ``.inf``; a string YAML would
    read as something else (``'null'``, ``'1e-5'``, ``a, b`` inside a list) in double
    quotes. Pydantic models and enums are written by their values. ``inside``: the value
    sits in a flow collection (where commas and brackets end a plain string)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow_text(str(key), inside=True)}: {flow_text(item, inside=True)}"
                               for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow_text(item, inside=True) for item in value) + "]"
    text = str(value)
    plain = text.isprintable() and text.strip() == text  # no invisible characters, written as escapes
    plain = plain and not (inside and _FLOW_INDICATORS & set(text))
    if plain:  # read back as the same string, alone or as a flow item and key: no quotes needed
        readings = [(text, text)] if not inside else [(f"[{text}]", [text]), (f"{{{text}: 0}}", {text: 0})]
        try:
            plain = all(parse_flow_value(written) == expected for written, expected in readings)
        except RecipeError:  # not valid YAML unquoted
            plain = False
    return text if plain else _double_quoted(text)


def _double_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted string, in ASCII: JSON's escapes, which YAML shares,
    except that a character beyond U+FFFF is one ``\\U`` escape (YAML reads JSON's surrogate
    pair as two characters)."""

    def joined(pair: re.Match[str]) -> str:
        high, low = int(pair.group(2), 16), int(pair.group(3), 16)
        return f"{pair.group(1)}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    # a pair's first backslash is not the second half of an escaped backslash
    pairs = r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})"
    return re.sub(pairs, joined, json.dumps(text))


def override_text(key: str, value: Any) -> str:
    """``key`` and a YAML value -> the ``key=value`` of an ``-o`` override, the value written
    by :func:`flow_text` (``data.size=tiny``, ``local_associations.lrc={name: true-identity}``),
    which an override reads back exactly: the commands a study prints and runs."""
    return f"{key}={flow_text(value)}"


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


def _to_plain(node: Any, path: KeyPath, source: str, locations: Locations, line: int) -> Any:
    """Convert a round-trip node to plain values, recording the line of each key/item."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            key_line = _line(node.lc.key, key, line)
            name = _plain_key(key, path, source, key_line)
            locations[path + (name,)] = Location(source, key_line)
            out[name] = _to_plain(value, path + (name,), source, locations, key_line)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            item_line = _line(node.lc.item, i, line)
            locations[path + (i,)] = Location(source, item_line)
            items.append(_to_plain(value, path + (i,), source, locations, item_line))
        return items
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, str):
        return str(node)  # drops ruamel's string subclasses (quoting style)
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (_dt.date, _dt.datetime)):
        return node.isoformat()
    where = f"{source}:{line}" + (f": {dotted(path)}" if path else "")
    raise RecipeError(f"{where}: unsupported YAML value {node!r}", hint="use plain strings, numbers, booleans, lists and mappings")


def _line(getter: Any, key: Any, fallback: int) -> int:
    try:
        return int(getter(key)[0]) + 1
    except (KeyError, IndexError, TypeError):  # keys merged in through '<<' have no line
        return fallback


def _plain_key(key: Any, path: KeyPath, source: str, line: int) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, int) and not isinstance(key, (bool, ScalarBoolean)):
        return str(int(key))
    where = f"{source}:{line}" + (f": {dotted(path)}" if path else "")
    raise RecipeError(f"{where}: mapping key {key!r} is not a string", hint="quote the key")


#: Strings that a YAML 1.1 reader would take for a boolean or null; quoted on output so
#: the file reads the same everywhere (YAML 1.2 readers take them as strings anyway).
_YAML11_SPECIAL = re.compile(r"^(y|n|yes|no|on|off|true|false|null|~)$", re.IGNORECASE)


def _quote_ambiguous(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _quote_ambiguous(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quote_ambiguous(v) for v in value]
    if isinstance(value, str) and _YAML11_SPECIAL.match(value):
        return SingleQuotedScalarString(value)
    return value


class _NullWrittenOut(RoundTripRepresenter):
    """ruamel's round-trip representer with ``None`` written as ``null`` (it writes nothing).
    A class of its own: ``add_representer`` on the YAML object's representer changes its
    class for every ruamel user in the process (benchmarks/sweeps/make_gpu_sweep.py wrote
    ``null`` or nothing depending on whether a recipe had been written before)."""


_NullWrittenOut.add_representer(
    type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))


def dump_yaml_text(data: Any, header: str = "") -> str:
    """YAML 1.2 text for plain ``data`` (block style, keys in the given order, ``null``
    written out); ``header`` lines become comments at the top."""
    yaml = YAML(typ="rt")
    yaml.Representer = _NullWrittenOut
    yaml.version = (1, 2)
    yaml.default_flow_style = False
    yaml.width = 4096
    stream = io.StringIO()
    if header:
        stream.write("".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()))
    yaml.dump(_quote_ambiguous(data), stream)
    return stream.getvalue()
