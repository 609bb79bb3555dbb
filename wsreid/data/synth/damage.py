"""Damaged synth-pedes folders: where the cache is, how a generated dataset's folder is
recognised, and the message that says one is damaged and what to do (delete it: it is
generated again).

Apart from the generator, which imports the dataset readers, so that
:func:`wsreid.data.images.load_image` can name a damaged generated dataset when one of its
images is missing or cannot be decoded (while loading, or later in training).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wsreid.errors import DataError

__all__ = ["META_FILE", "default_cache_dir", "is_cache_entry", "regenerate_hint", "damaged", "damaged_image"]

#: a generated dataset's metadata (generator, version, settings), written last
META_FILE = "synth_meta.json"


def default_cache_dir() -> Path:
    """``$WSREID_CACHE`` or ``~/.cache/wsreid``."""
    env = os.environ.get("WSREID_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wsreid"


def is_cache_entry(root: Path) -> bool:
    """Whether ``root`` is a folder of the synth-pedes cache (``<cache>/synth-pedes/<name>``)."""
    try:
        return root.resolve().parent == (default_cache_dir() / "synth-pedes").resolve()
    except (OSError, RuntimeError):
        return False


def regenerate_hint(root: Path, *, cached: bool, root_setting: str | None = "data.root") -> str:
    """What to do about the damaged generated dataset at ``root``: a cache entry is
    generated again once deleted; another folder is too, or ``root_setting`` (the option
    that named it; None when not known) can name another."""
    if cached:
        return f"delete the folder {root}; the dataset is generated there again on next use"
    if root_setting is None:  # the reader is not known: a real format's reader (cuhk-pedes) regenerates nothing
        return (f"delete the folder {root} to have it generated again: a recipe reading it as synth-pedes does so, "
                f"else wsreid data synth --out {root} with the settings in its {META_FILE}")
    return f"delete the folder {root} to have it generated again, or set {root_setting} to another folder"


def damaged(root: Path, damage: str, *, cached: bool, root_setting: str | None = "data.root") -> DataError:
    """The error for the generated dataset at ``root`` whose ``damage`` (what is missing or
    broken, e.g. ``"reid_raw.json is missing"``) was found."""
    what = "synth-pedes cache entry" if cached else "synth-pedes dataset"
    return DataError(f"the {what} {root} is damaged: {damage}",
                     hint=regenerate_hint(root, cached=cached, root_setting=root_setting))


def _generated_root(image: Path) -> Path | None:
    """The synth-pedes folder ``ROOT`` of an image file ``ROOT/imgs/...``, or None when
    the image is not in a generated dataset (no ``imgs`` folder above it, or no synth-pedes
    metadata next to that folder)."""
    for parent in image.parents:
        if parent.name == "imgs":
            try:
                meta = json.loads((parent.parent / META_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return parent.parent if isinstance(meta, dict) and meta.get("generator") == "synth-pedes" else None
    return None


def damaged_image(image: str | os.PathLike[str], problem: str) -> DataError | None:
    """The :func:`damaged` error for an image file of a generated dataset that is missing
    or cannot be decoded (``problem`` follows the image's path, e.g. ``" is missing"``),
    or None when ``image`` is not in a generated dataset. Which option named a folder
    outside the cache is not known here: the hint names none."""
    path = Path(image)
    root = _generated_root(path)
    if root is None:
        return None
    cached = is_cache_entry(root)
    return damaged(root, f"image {path.relative_to(root).as_posix()}{problem}", cached=cached, root_setting=None)
