"""Writing files: checks for the files a user names for wsreid to write (a figure, a
contact sheet, a converted model, a dataset folder) - whether a file can be created there,
and whether a failed write ran out of disk space; each command words its own message from
them - and :func:`write_atomically`, which replaces a file so that a reader sees the old
content or the new, never a part."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Union

__all__ = ["nearest_existing", "cannot_create_in", "disk_full", "write_failure", "permission_refused",
           "write_atomically", "write_atomically_together"]

#: What :func:`write_atomically` writes: bytes, text (written as UTF-8), or a function
#: that writes to the binary file it is given (e.g. ``lambda f: image.save(f, format="PNG")``).
Content = Union[bytes, str, Callable[[BinaryIO], None]]


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


def write_failure(exc: BaseException) -> str:
    """Why a write failed, in words for a one-line error: "no space left on the device"
    for a full disk (:func:`disk_full`), else the system's reason."""
    if disk_full(exc):
        return "no space left on the device"
    return getattr(exc, "strerror", None) or type(exc).__name__


def write_fix(exc: OSError) -> str:
    """What to do about a failed write of a run's files, in words for a hint: free disk
    space (:func:`disk_full`), fix the permissions of the run directory
    (:func:`permission_refused`), else fix the cause."""
    if disk_full(exc):
        return "free disk space"
    return "fix the permissions of the run directory" if permission_refused(exc) else "fix the cause"


def permission_refused(exc: BaseException) -> bool:
    """Whether a failed write was refused by permissions or a read-only file system
    (EACCES, EPERM, EROFS): the fix is the folder's permissions, not space."""
    return getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS)


def write_atomically(path: str | Path, content: Content, *, fsync: bool = False) -> Path:
    """Write ``content`` to ``path`` (its folder must exist) so that a reader sees the old
    file or the new one, never a part: it is written to a temporary file
    ``.<name>.<random>.tmp`` in the same folder, flushed to the disk when ``fsync``, and
    renamed over ``path``. On any failure (an OSError, text that cannot be encoded, an
    exception of ``content``, Ctrl-C) the temporary file is removed, ``path`` is left as it
    was and the exception propagates. The new file has the permissions a plain write would
    give it: those of the file it replaces (read, write, execute), else read-write as the
    process's umask allows.
    Returns ``path``."""
    write_atomically_together({path: content}, fsync=fsync)
    return Path(path)


def write_atomically_together(files: Mapping[str | Path, Content], *, fsync: bool = False) -> None:
    """Write several files (path -> content, as :func:`write_atomically`) as one set: each
    is written to its temporary file first, and only when all of them are written are they
    renamed over their paths. A failure while writing (a full disk half way through the
    last one) leaves every path as it was - the old set, not a new table beside an old
    chart - and removes the temporary files. A path that a rename could not replace (a
    folder) is an ``IsADirectoryError`` before anything is written; a rename that fails
    all the same (a file system error) may leave the paths renamed before it new."""
    for path in files:
        if Path(path).is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder stands where the file goes", str(path))
    staged: list[tuple[str, Path]] = []
    try:
        for path, content in files.items():
            staged.append((_stage(Path(path), content, fsync), Path(path)))
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:  # renamed already, or gone
                pass
        raise


def _stage(target: Path, content: Content, fsync: bool) -> str:
    """``content`` written to a new temporary file beside ``target``, with the permissions
    a plain write of ``target`` would give; its path. Removed again on failure."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) & 0o777  # as a write would, without set-id bits
    except OSError:  # no file to replace (or none that can be looked at): a new file's permissions
        mode = None
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as out:
            fd = -1  # the file object closes it now
            if isinstance(data, bytes):
                out.write(data)
            else:
                data(out)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return tmp


def _create_beside(target: Path) -> tuple[int, str]:
    """A new, empty temporary file in ``target``'s folder, opened for writing: its
    descriptor and path. Created with mode 0o666 so that the umask applies as it does to
    any new file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name for a temporary file", str(target.parent))
