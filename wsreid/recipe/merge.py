"""How recipe layers combine: ``extends`` and command-line overrides.

A recipe may start with ``extends: <file>`` (a path relative to the extending file; ``~`` is the home folder). The
file it names is read first (it may extend another one in turn), and the extending file
is laid over it, key by key. Command-line overrides (``-o train.lr=2e-5``) are laid over
the result in the order given. The rules:

- **Mappings merge** key by key, recursively: a key the upper layer does not mention keeps
  the value from below.
- **Lists and scalars replace** the value below as a whole (lists are never concatenated).
- **A component block** (a mapping with a ``name`` key: ``data``, ``encoder``,
  ``pair_construction`` and every entry of ``local_associations``,
  ``global_associations`` and ``objectives``) whose ``name`` changes is **replaced whole**:
  parameters of the old component are dropped, since they belong to another parameter
  model. A block that keeps its name, or gives none, merges like any mapping.
- **``null`` deletes** the key from the layers below, so the default applies again; this
  is how a recipe or an override removes a component (``objectives: {sdm_global: null}``,
  ``-o objectives.sdm_global=null``). In the bottom file of a chain (one that extends
  nothing) a ``null`` is kept as the value None. A ``null`` for a key that no layer below
  has deletes nothing; it must still name a key the recipe could have (a label of that
  section, or a key of the schema, whose default then applies): a misspelled one
  (``objectives.sdm_asymetric: null``) is an error at the line or override that wrote it,
  since it would leave the recipe - an ablation row "without X" - unchanged.
- **Overrides** are ``dotted.key=value`` with the value in YAML 1.2 flow syntax
  (``2e-5``, ``image``, ``'on'``, ``[1, 2]``, ``{name: itc, weight: 0.5}``, ``null``). A
  dotted key may step into a list the recipe sets by index (``train.betas.1=0.98`` once the
  recipe sets ``betas``; otherwise set the whole list, ``train.betas=[0.9, 0.98]``). Setting
  ``<block>.name`` to another name replaces that block, as above; keys that earlier
  overrides of the same list set inside the block stay (``-o data.root=/d -o
  data.name=rstpreid`` is ``-o data.name=rstpreid -o data.root=/d``).
- A file that extends itself, directly or through a cycle, is an error naming the chain.
- **Relative paths** follow two rules. ``extends``, ``init.recipe``, ``init.run`` and
  ``data.root`` name files that belong with the recipe: relative to the file that writes
  them (to the working directory when an override sets them). ``output_dir`` and the
  paths components read (``encoder.pretrained``, ``encoder.tokenizer``, a recorded-views
  file) are relative to the working directory the command runs in. A run's recipe.yaml
  stores ``data.root``, the init paths and the encoder's local folders and files
  absolute, so that the run is resumed and evaluated from any directory.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

from wsreid.errors import RecipeError
from wsreid.recipe.locations import Location, Locations
from wsreid.recipe.locations import Path as KeyPath
from wsreid.recipe.locations import value_at
from wsreid.recipe.yamlio import parse_flow_value

__all__ = ["merge", "apply_overrides", "parse_override", "is_component_block"]


def is_component_block(value: Any) -> bool:
    """A mapping with a ``name`` key."""
    return isinstance(value, dict) and "name" in value


def _without_nulls(value: Any) -> Any:
    """A deep copy of an upper-layer value with null mapping entries removed (there is
    nothing below them to delete)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)


def _set_key(mapping: dict[str, Any], key: str, value: Any) -> None:
    """Lay ``{key: value}`` over ``mapping`` in place, by the merge rules."""
    if value is None:
        mapping.pop(key, None)
    elif key == "name" and is_component_block(mapping) and mapping["name"] != value:
        mapping.clear()
        mapping["name"] = copy.deepcopy(value)
    elif key in mapping:
        mapping[key] = merge(mapping[key], value)
    else:
        mapping[key] = _without_nulls(value)


def empty_overlays(base: Any, overlay: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """The paths where ``overlay`` writes an empty mapping (``key: {}``) over a non-empty
    one of ``base``: merged key by key, it changes nothing."""
    if not isinstance(overlay, dict) or not isinstance(base, dict):
        return []
    found: list[KeyPath] = []
    for key, value in overlay.items():
        if value == {} and isinstance(base.get(key), dict) and base[key]:
            found.append(prefix + (key,))
        elif isinstance(value, dict):
            found += empty_overlays(base.get(key), value, prefix + (key,))
    return found


def null_deletions(base: Any, overlay: Any, prefix: KeyPath = ()) -> tuple[list[KeyPath], list[KeyPath]]:
    """The paths where ``overlay`` deletes (``null``) a key, as :func:`merge` would lay it
    over ``base``: (keys ``base`` does not have, keys it has). A deletion of the first kind
    does nothing, which for a misspelled key (``objectives.sdm_asymetric: null``) hides the
    mistake; one of the second kind is what a reference to the removed key is told."""
    absent: list[KeyPath] = []
    present: list[KeyPath] = []
    if not isinstance(overlay, dict):
        return absent, present
    if not isinstance(base, dict) or (is_component_block(base) and is_component_block(overlay)
                                      and base["name"] != overlay["name"]):
        base = {}  # replaced whole: nothing below to delete
    for key, value in overlay.items():
        if value is None:
            (present if key in base else absent).append(prefix + (key,))
        elif isinstance(value, dict):
            below_absent, below_present = null_deletions(base.get(key), value, prefix + (key,))
            absent += below_absent
            present += below_present
    return absent, present


_ABSENT = object()


def _path_present(tree: Any, parts: tuple[str, ...]) -> bool:
    return value_at(tree, parts, _ABSENT) is not _ABSENT


def merge(base: Any, overlay: Any) -> Any:
    """Lay ``overlay`` over ``base`` (see the module rules); returns a new value and
    leaves both arguments unchanged."""
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return _without_nulls(overlay)
    if is_component_block(base) and is_component_block(overlay) and base["name"] != overlay["name"]:
        return _without_nulls(overlay)
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        _set_key(out, key, value)
    return out


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """``"train.lr=2e-5"`` -> ``(("train", "lr"), 2e-05)``. List indices in the key become
    ints later, against the tree. Raises :class:`RecipeError` for a malformed line."""
    source = f"override -o {text}"
    if "=" not in text:
        raise RecipeError(f"{source}: expected dotted.key=value", hint="e.g. -o train.lr=2e-5; use =null to delete a key")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = tuple(key.split("."))
    if not key or any(not p or p != p.strip() for p in parts):
        raise RecipeError(f"{source}: malformed key {key!r}", hint="write dot-separated names without spaces, e.g. train.lr")
    if parts[0] == "extends":
        raise RecipeError(f"{source}: 'extends' cannot be overridden", hint="write a recipe file that extends the one you want")
    if not raw.strip():
        raise RecipeError(f"{source}: empty value", hint=f"write {key}=null to delete the key or {key}=\"''\" for an empty string")
    return parts, parse_flow_value(raw, source)


def apply_overrides(
    tree: Mapping[str, Any],
    overrides: Iterable[str],
    locations: Locations | None = None,
) -> dict[str, Any]:
    """Apply ``key=value`` overrides in order; returns a new tree (``tree`` is unchanged).

    When ``locations`` is given it is updated in place: overridden keys get the location
    ``override -o <text>`` and keys that disappeared are dropped.
    """
    out = copy.deepcopy(dict(tree))
    given: list[tuple[tuple[str, ...], Any, Location]] = []

    def lay(parts: tuple[str, ...], value: Any, source: Location) -> None:
        replaced: list[KeyPath] = []
        path = _apply_one(out, parts, value, source, replaced)
        if locations is not None and value is not None:
            for prefix in replaced:  # a value of the file that the override turned into a mapping
                locations.set_subtree(prefix, _at(out, prefix), source)
            _locate(out, path, source, locations)

    for text in overrides:
        parts, value = parse_override(text)
        source = Location(f"override -o {text}")
        if value is None and locations is not None:
            (locations.deletions if _path_present(out, parts) else locations.absent_deletions).append((parts, source))
        block = parts[:-1] if parts[-1] == "name" else parts
        before = _block_name(out, block)
        lay(parts, value, source)
        after = _block_name(out, block)
        if before is not None and after is not None and before != after:
            # the block was replaced: what earlier overrides set inside it stands (the user
            # gave it with this override, in whatever order), then this override again
            earlier = [g for g in given if len(g[0]) > len(block) and g[0][: len(block)] == block and g[0][len(block)] != "name"]
            for earlier_parts, earlier_value, earlier_source in earlier:
                lay(earlier_parts, earlier_value, earlier_source)
            if earlier and parts != block + ("name",):
                lay(parts, value, source)  # a whole block given: its own keys win over earlier ones
        given.append((parts, value, source))
    if locations is not None:
        locations.prune(out)
    return out


def _block_name(tree: Any, path: tuple[str, ...]) -> Any:
    """The ``name`` of the component block at ``path`` of ``tree``, None when there is no
    component block there."""
    node = value_at(tree, path)
    return node.get("name") if is_component_block(node) else None


def _locate(tree: dict[str, Any], path: KeyPath, source: Location, locations: Locations) -> None:
    """Record ``source`` for what one override set (and for mappings it created)."""
    for depth in range(1, len(path)):
        if path[:depth] not in locations:
            locations[path[:depth]] = source
    node = _at(tree, path[:-1])
    last = path[-1]
    if last == "name" and isinstance(node, dict) and list(node) == ["name"]:
        locations.set_subtree(path[:-1], node, source)  # the block was replaced (or created)
    elif _present(node, last):
        locations.set_subtree(path, node[last], source)


def _present(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


def _at(tree: Any, path: KeyPath) -> Any:
    node = tree
    for part in path:
        node = node[part]
    return node


def _apply_one(tree: dict[str, Any], parts: tuple[str, ...], value: Any, source: Location,
               replaced: list[KeyPath] | None = None) -> KeyPath:
    """Lay one override over ``tree`` in place; returns the path it set (with list
    indices as ints). ``replaced`` collects the paths of values the override stepped
    into and so replaced by a mapping, and of the mappings it made (a block an earlier
    ``null`` removed, written again: an error about the block names this override)."""
    replaced = [] if replaced is None else replaced
    node: Any = tree
    path: list[str | int] = []
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part, parts[: depth + 1], source)
            path.append(index)
            if last:
                node[index] = _without_nulls(value) if value is not None else None
                return tuple(path)
            if not isinstance(node[index], (dict, list)):
                node[index] = {}
                replaced.append(tuple(path))
            node = node[index]
            continue
        path.append(part)
        if last:
            _set_key(node, part, value)
            return tuple(path)
        child = node.get(part)
        if not isinstance(child, (dict, list)):
            if value is None:  # deleting below a key that is not there: nothing to do
                return tuple(path) + tuple(parts[depth + 1 :])
            if parts[depth + 1].isdigit():
                raise RecipeError(
                    f"{source}: {'.'.join(parts[: depth + 1])} is not a list in the recipe, so it has no "
                    f"index {parts[depth + 1]}",
                    hint=f"set the whole list, e.g. -o '{'.'.join(parts[: depth + 1])}=[...]'",
                )
            replaced.append(tuple(path))  # a value replaced, or a mapping made: this override's
            child = node[part] = {}
        node = child
    return tuple(path)


def _list_index(node: list[Any], part: str, key: tuple[str, ...], source: Location) -> int:
    try:
        index = int(part)
    except ValueError:
        index = -1
    if not 0 <= index < len(node):
        raise RecipeError(
            f"{source}: {'.'.join(key)}: a list of {len(node)} item(s) has no index {part!r}",
            hint=f"use an index from 0 to {len(node) - 1}, or set the whole list" if node else "set the whole list",
        )
    return index
