"""Image files: decoding with clear errors, safe paths under a dataset root, and a cheap
existence index.

Images are returned as PIL images in RGB mode (``img.size == (width, height)``).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from wsreid.errors import DataError

__all__ = ["load_image", "decode_images", "resolve_image_path", "is_empty_file", "ExistenceIndex"]


def load_image(path: str | os.PathLike[str], *, where: str | None = None) -> Image.Image:
    """Open ``path`` and return it fully decoded as an RGB ``PIL.Image.Image``.

    Raises :class:`DataError` naming the file (and ``where``, e.g. the annotation record)
    when the file is missing or cannot be decoded (truncated, not an image, ...); for an
    image of a generated synth-pedes dataset, that the dataset is damaged and is to be
    deleted (it is generated again).
    """
    p = Path(path)
    loc = f" ({where})" if where else ""
    try:
        img = Image.open(p)
        try:
            img.load()  # a single-frame file opened by name is closed once loaded
        except BaseException:
            img.close()
            raise
        img = _upright(img)
        # an RGB file (JPEG, PNG) is returned as decoded, convert() would copy it; the file
        # of a multi-frame image stays open after load() and is closed by _converted
        return img if img.mode == "RGB" and getattr(img, "fp", None) is None else _converted(img)
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {p}{loc} has more pixels than PIL opens ({_pixels(exc)}; PIL's guard against "
                        "decompression bombs)",
                        hint="downscale the file (a person image needs a few hundred pixels a side), or raise "
                             "PIL.Image.MAX_IMAGE_PIXELS in a script that trusts its files") from None
    except FileNotFoundError:
        if p.is_symlink():
            raise DataError(f"image {p}{loc} is a symbolic link to {os.readlink(p)}, which does not exist",
                            hint="point the link at the image file, or replace it with the file") from None
        raise _generated_damaged(p, f"{loc} is missing") or DataError(
            f"image {p}{loc} does not exist",
            hint="check the dataset root and that the image archive was extracted completely",
        ) from None
    except IsADirectoryError:
        raise DataError(f"image {p}{loc} is a folder, not an image file",
                        hint="the record must name an image file (relative to imgs/)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        problem = "is empty (0 bytes)" if is_empty_file(p) else f"cannot be decoded ({reason})"
        raise _generated_damaged(p, f"{loc} {problem}") or DataError(
            f"image {p}{loc} {problem}",
            hint="replace the file with an intact copy or remove its record" if where
            else "replace the file with an intact copy, or leave it out",
        ) from None


def is_empty_file(path: Path) -> bool:
    """Whether ``path`` is a file of 0 bytes (a copy or download that never got its data)."""
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _generated_damaged(path: Path, problem: str) -> DataError | None:
    """The error for ``path`` when it is an image of a generated synth-pedes dataset (the
    dataset is damaged: delete it), else None."""
    from wsreid.data.synth.damage import damaged_image  # imported here: wsreid.data.synth reads datasets with this module

    return damaged_image(path, problem)


def _pixels(exc: Exception) -> str:
    """'196,000,000 pixels, the limit 178,956,970' from PIL's DecompressionBombError text."""
    numbers = [int(n) for n in re.findall(r"\d+", str(exc))]
    return f"{numbers[0]:,} pixels, the limit {numbers[1]:,}" if len(numbers) >= 2 else str(exc)


#: EXIF tag 274: how the stored pixels are turned for display (1: as stored; 2-8: mirrored
#: and/or rotated - phones store portrait photos sideways with 6 or 8).
EXIF_ORIENTATION = 274


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation tag says, as every image viewer shows it;
    unchanged without the tag (the published datasets' crops carry none) or with an
    unreadable EXIF block."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: the pixels are still the image
        return img
    if orientation not in range(2, 9):
        return img
    with img:
        return ImageOps.exif_transpose(img)


#: Modes of one-channel images with more than 8 bits; convert("RGB") clips them at 255.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _converted(img: Image.Image) -> Image.Image:
    """``img`` converted to RGB, its file closed. A 16-bit grey image is scaled to 8 bits
    (65535 -> 255): PIL's own conversion clips it, turning everything above 255 white;
    a 32-bit one ('I') is scaled the same way when its values exceed 255."""
    with img:
        if img.mode in _WIDE_MODES:
            values = np.asarray(img).astype(np.int64)
            if img.mode != "I" or values.max(initial=0) > 255:
                values = (np.clip(values, 0, 65535) * 255 + 32767) // 65535
            return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L").convert("RGB")
        return img.convert("RGB")


def decode_images(
    items: Sequence[tuple[Path, str]],
    *,
    workers: int = 4,
    progress: Callable[[int, int, int], None] | None = None,
) -> tuple[dict[tuple[int, int], int], list[str]]:
    """Decode every image of ``items`` ((path, where) pairs; ``where`` names its record
    in errors) with ``workers`` threads. Returns the image sizes ((width, height) ->
    count) and one line per image that fails, in the order of ``items``.
    ``progress(done, total, failed)`` (images read, of them failed; a callback taking two
    arguments gets ``done, total``) is called at most :data:`PROGRESS_CALLS` times, every
    1000 images or more, and at the end."""

    def decode_one(item: tuple[Path, str]) -> tuple[int, int] | str:
        try:
            return load_image(item[0], where=item[1]).size
        except DataError as exc:
            return str(exc)

    progress = _with_failures(progress)
    sizes: dict[tuple[int, int], int] = {}
    failures: list[str] = []
    every = max(PROGRESS_EVERY, -(-len(items) // (PROGRESS_CALLS - 1)))  # the end is one call
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, result in enumerate(pool.map(decode_one, items), 1):
            if isinstance(result, str):
                failures.append(result)
            else:
                sizes[result] = sizes.get(result, 0) + 1
            if progress is not None and (done % every == 0 or done == len(items)):
                progress(done, len(items), len(failures))
    return sizes, failures


def _with_failures(progress: Callable | None) -> Callable[[int, int, int], None] | None:
    """``progress`` called as ``(done, total, failed)``; one that takes two positional
    arguments (as before the count of failures was passed) gets ``(done, total)``."""
    import inspect

    if progress is None:
        return None
    try:
        params = list(inspect.signature(progress).parameters.values())
    except (TypeError, ValueError):  # a callable without a signature: called as documented
        return progress
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return progress
    return lambda done, total, failed: progress(done, total)


#: :func:`decode_images` reports progress at most this many times, at least this many
#: images apart
PROGRESS_CALLS = 10
PROGRESS_EVERY = 1000


def resolve_image_path(image_dir: Path, relative: object, *, where: str) -> Path:
    """Join a record's relative image path to ``image_dir``.

    ``relative`` must be a non-empty relative POSIX path without ``..`` components, so
    that it cannot point outside the dataset. ``where`` names the record in errors.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise DataError(f"{where}: image path {relative!r} is empty or not a string", hint="give a path relative to imgs/")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or (len(relative) > 1 and relative[1] == ":"):
        raise DataError(
            f"{where}: image path {relative!r} escapes the dataset root {image_dir}",
            hint="image paths must be relative to imgs/ and must not contain '..'",
        )
    return image_dir.joinpath(*pure.parts)


class ExistenceIndex:
    """Answers "is this an existing file?" with one directory listing per directory,
    which is much cheaper than one ``stat`` per image on large datasets and network
    drives (the listing says which entries are regular files; only symbolic links are
    followed, one ``stat`` each)."""

    def __init__(self) -> None:
        # folder -> (names of its files, names of its other entries), None if unreadable
        self._listings: dict[Path, tuple[frozenset[str], frozenset[str]] | None] = {}
        #: folders that exist but cannot be listed (no permission) -> the reason
        self.unreadable: dict[Path, str] = {}

    def _listing(self, parent: Path) -> tuple[frozenset[str], frozenset[str]] | None:
        if parent not in self._listings:
            try:
                files, others = set(), set()
                with os.scandir(parent) as entries:
                    for entry in entries:
                        try:
                            is_file = entry.is_file()  # follows a symbolic link
                        except OSError:
                            is_file = False
                        (files if is_file else others).add(entry.name)
                self._listings[parent] = (frozenset(files), frozenset(others))
            except PermissionError as exc:  # it exists: not a missing image
                self._listings[parent] = None
                self.unreadable[parent] = exc.strerror or str(exc)
            except OSError:
                self._listings[parent] = None
        return self._listings[parent]

    def exists(self, path: Path) -> bool:
        """Whether ``path`` is a file (or a symbolic link to one)."""
        listing = self._listing(path.parent)
        return listing is not None and path.name in listing[0]

    def names(self, folder: Path) -> frozenset[str]:
        """Every entry of ``folder`` (empty when it cannot be listed)."""
        listing = self._listing(folder)
        return listing[0] | listing[1] if listing is not None else frozenset()

    def problem(self, path: Path) -> str | None:
        """None when ``path`` is a file, else what it is: ``"does not exist"``, ``"is a
        folder, not an image file"``, ``"is a symbolic link to <target>, which does not
        exist"`` or, in a folder without the permission to list it, ``"cannot be read: ..."``."""
        listing = self._listing(path.parent)
        if listing is not None and path.name in listing[0]:
            return None
        if path.parent in self.unreadable:
            return f"cannot be read: its folder {path.parent} cannot be listed ({self.unreadable[path.parent]})"
        if listing is None or path.name not in listing[1]:
            return "does not exist"
        if path.is_symlink() and not path.exists():
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if path.is_dir():
            return "is a folder, not an image file"
        return "is not a regular file"
