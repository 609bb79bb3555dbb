"""Checks for the files a user names for wsreid to write (a figure, a contact sheet, a
converted model, a dataset folder): whether a file can be created there, and whether a
failed write ran out of disk space. Each command words its own message from them."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

__all__ = ["nearest_existing", "cannot_create_in", "disk_full"]


def nearest_existing(path: str | Path, include_self: bool = False) -> Path:
    """The nearest existing folder above ``path`` (or ``path`` itself with
    ``include_self``), where missing folders would be created from; it may be a file
    standing where a folder should be - the caller checks ``is_dir()``. A relative path
    ends at ``.``, an absolute one at ``/``, which exist."""
    path = Path(path)
    for candidate in ((path,) if include_self else ()) + tuple(path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def cannot_create_in(folder: Path, name: str) -> OSError | None:
    """Why no file can be created in ``folder`` (no permission, a read-only or special file
    system such as /proc), found with a probe file named after ``name`` and removed at
    once; None when one can."""
    try:
        with tempfile.TemporaryFile(prefix=f".{name}.", dir=folder):
            pass
    except OSError as exc:
        return exc
    return None


def disk_full(exc: BaseException) -> bool:
    """Whether a failed write ran out of space (or quota): an ``OSError`` with ENOSPC or
    EDQUOT, or safetensors' own error for it (which carries no errno)."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left" in text or "StorageFull" in text
