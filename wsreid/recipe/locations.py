"""Where each recipe key came from: a file and line, or a command-line override.

Paths are tuples of keys (``("train", "lr")``; list items by integer index); their
dotted form (``train.lr``) is what error messages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Union

Path = tuple[Union[str, int], ...]


@dataclass(frozen=True)
class Location:
    """``source`` is a file path as shown to the user, or ``override -o key=value``;
    ``line`` is 1-based, None where there is no line (overrides, trees built in code)."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source


def dotted(path: Path) -> str:
    """``("objectives", "sdm", "weight")`` -> ``"objectives.sdm.weight"``."""
    return ".".join(str(p) for p in path)


def as_path(key: str | Path) -> Path:
    """A dotted key or a path tuple, as a path tuple."""
    if isinstance(key, tuple):
        return key
    return tuple(key.split(".")) if key else ()


class Locations:
    """Map from key path to :class:`Location`, with a root location for the whole recipe.

    ``locations["train.lr"]`` and ``locations[("train", "lr")]`` are the same entry.
    :meth:`find` returns the location of a key or of its nearest ancestor that has one,
    so a missing key is reported where its parent mapping is written.
    """

    def __init__(self, root: Location, entries: Mapping[Path, Location] | None = None):
        self.root = root
        self._entries: dict[Path, Location] = dict(entries or {})
        #: ``null`` deletions of keys that the layers below did not have (path, where the
        #: null was written), checked against the schema once the recipe is validated: a
        #: misspelled deletion would otherwise do nothing, silently
        self.absent_deletions: list[tuple[Path, Location]] = []
        #: ``null`` deletions of keys the layers below had (path, where the null was
        #: written): a reference to a removed component is told what removed it
        self.deletions: list[tuple[Path, Location]] = []
        #: empty mappings (``key: {}``) an extending layer wrote over a non-empty one: they
        #: change nothing (mappings merge key by key), while the writer meant to clear it
        self.empty_overlays: list[tuple[Path, Location]] = []

    def _key(self, key: str | Path) -> Path:
        """The stored path for ``key``: a dotted key's digit parts may be list indices."""
        path = as_path(key)
        if path not in self._entries and not isinstance(key, tuple):
            indexed = tuple(int(p) if p.isdigit() else p for p in path)
            if indexed in self._entries:
                return indexed
        return path

    def __getitem__(self, key: str | Path) -> Location:
        return self._entries[self._key(key)]

    def __setitem__(self, key: str | Path, location: Location) -> None:
        self._set(as_path(key), location)

    def _set(self, path: Path, location: Location) -> None:
        """Record ``location`` for ``path``, as the newest entry (:meth:`under` lists the
        overrides in the order they were given)."""
        self._entries.pop(path, None)
        self._entries[path] = location

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (str, tuple)) and self._key(key) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return (dotted(p) for p in self._entries)

    def get(self, key: str | Path, default: Location | None = None) -> Location | None:
        return self._entries.get(self._key(key), default)

    def items(self) -> Iterator[tuple[str, Location]]:
        return ((dotted(p), loc) for p, loc in self._entries.items())

    def find(self, key: str | Path) -> Location:
        path = as_path(key)
        if not isinstance(key, tuple):
            path = tuple(int(p) if p.isdigit() else p for p in path)
        while path:
            for candidate in (path, tuple(str(p) for p in path)):
                if candidate in self._entries:
                    return self._entries[candidate]
            path = path[:-1]
        return self.root

    def under(self, path: Path) -> list[tuple[Path, Location]]:
        """The entries of ``path`` and of every key below it, oldest first (by when each
        was last set)."""
        n = len(path)
        return [(p, loc) for p, loc in self._entries.items() if p[:n] == path]

    def note_deletions(self, absent: list[Path], present: list[Path], where: Callable[[Path], Location]) -> None:
        """Record the ``null`` deletions of one layer (:func:`wsreid.recipe.merge.null_deletions`),
        each at ``where(path)``."""
        self.absent_deletions += [(p, where(p)) for p in absent]
        self.deletions += [(p, where(p)) for p in present]

    def update(self, other: "Locations") -> None:
        self._entries.update(other._entries)
        self.absent_deletions += [d for d in other.absent_deletions if d not in self.absent_deletions]
        self.deletions += [d for d in other.deletions if d not in self.deletions]
        self.empty_overlays += [d for d in other.empty_overlays if d not in self.empty_overlays]

    def set_subtree(self, path: Path, value: Any, location: Location) -> None:
        """Give ``path`` and every key below it (when ``value`` is a mapping or list)
        the same ``location``."""
        self._set(path, location)
        if isinstance(value, dict):
            for k, v in value.items():
                self.set_subtree(path + (k,), v, location)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.set_subtree(path + (i,), v, location)

    def replace_subtree(self, path: Path, other: "Locations") -> None:
        """Forget where ``path`` and the keys below it came from; take ``other``'s entries
        for them instead (a block copied from another recipe keeps its own file and lines)."""
        n = len(path)
        self._entries = {p: loc for p, loc in self._entries.items() if p[:n] != path}
        self._entries.update({p: loc for p, loc in other._entries.items() if p[:n] == path})

    def prune(self, tree: Any) -> None:
        """Drop entries whose key no longer exists in ``tree`` (deleted or replaced)."""
        self._entries = {p: loc for p, loc in self._entries.items() if _exists(tree, p)}

    def copy(self) -> "Locations":
        out = Locations(self.root, self._entries)
        out.absent_deletions = list(self.absent_deletions)
        out.deletions = list(self.deletions)
        out.empty_overlays = list(self.empty_overlays)
        return out

    def __repr__(self) -> str:
        return f"Locations(root={self.root}, {len(self._entries)} keys)"


_MISSING = object()


def value_at(tree: Any, path: Path, default: Any = None) -> Any:
    """The value at ``path`` in a recipe tree of mappings and lists (``default`` when the
    tree has none there). A list index may be an int or, as a dotted override writes it,
    a string of digits."""
    node = tree
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, str) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return default
    return node


def _exists(tree: Any, path: Path) -> bool:
    return value_at(tree, path, _MISSING) is not _MISSING
