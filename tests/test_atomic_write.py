"""Atomic file replacement (wsreid.fileio.write_atomically) and its users: the checkpoint
pointer and run files (atomic_write_text), the eval --figure PNG (save_figure) and the
contact sheet. A failed write leaves the old file as it was and no temporary file; a new
file gets the permissions a plain write gives it."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from wsreid.engine.checkpoint import atomic_write_text
from wsreid.errors import DataError, UserError
from wsreid.fileio import write_atomically


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomically_writes_bytes_text_and_what_a_writer_writes(tmp_path):
    assert write_atomically(tmp_path / "b", b"\x00\x01") == tmp_path / "b"
    write_atomically(tmp_path / "t", "größe\n")
    write_atomically(tmp_path / "w", lambda out: out.write(b"written"), fsync=True)
    assert (tmp_path / "b").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t").read_bytes() == "größe\n".encode("utf-8")
    assert (tmp_path / "w").read_bytes() == b"written"
    write_atomically(tmp_path / "t", "new")
    assert (tmp_path / "t").read_text() == "new" and _names(tmp_path) == ["b", "t", "w"]


def _fail_in_writer(monkeypatch):
    def writer(out):
        out.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")
    return writer


def _fail_at_fsync(monkeypatch):
    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "fsync", fsync)
    return b"new content"


def _fail_at_rename(monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    monkeypatch.setattr(os, "replace", replace)
    return b"new content"


def _interrupted(monkeypatch):
    def writer(out):
        out.write(b"half")
        raise KeyboardInterrupt
    return writer


@pytest.mark.parametrize("failure", [_fail_in_writer, _fail_at_fsync, _fail_at_rename, _interrupted])
@pytest.mark.parametrize("existing", [None, b"old content"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch, failure, existing):
    target = tmp_path / "out.bin"
    if existing is not None:
        target.write_bytes(existing)
    content = failure(monkeypatch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        write_atomically(target, content, fsync=True)
    if existing is None:
        assert _names(tmp_path) == []
    else:
        assert _names(tmp_path) == ["out.bin"] and target.read_bytes() == existing


def test_a_new_file_follows_the_umask_and_a_replaced_file_keeps_its_permissions(tmp_path, umask_027):
    from PIL import Image

    from wsreid.showcase import save_figure

    write_atomically(tmp_path / "new", b"x")
    atomic_write_text(tmp_path / "latest", "epoch-0001\n")
    save_figure(Image.new("RGB", (4, 4), "white"), tmp_path / "fig.png")
    assert [_mode(tmp_path / n) for n in ("new", "latest", "fig.png")] == [0o640, 0o640, 0o640]
    for name in ("latest", "fig.png"):
        (tmp_path / name).chmod(0o604)
    atomic_write_text(tmp_path / "latest", "epoch-0002\n")
    save_figure(Image.new("RGB", (4, 4), "black"), tmp_path / "fig.png")
    assert [_mode(tmp_path / n) for n in ("latest", "fig.png")] == [0o604, 0o604]
    assert (tmp_path / "latest").read_text() == "epoch-0002\n"
    assert _names(tmp_path) == ["fig.png", "latest", "new"]


# --------------------------------------------------------------------------- the users


def test_atomic_write_text_that_fails_leaves_the_old_text_and_no_temporary_file(tmp_path, monkeypatch):
    pointer = tmp_path / "latest"
    atomic_write_text(pointer, "epoch-0001\n")
    with pytest.raises(UnicodeEncodeError):  # text that cannot be written as UTF-8
        atomic_write_text(pointer, "epoch-0002\udc80\n")
    assert _names(tmp_path) == ["latest"] and pointer.read_text() == "epoch-0001\n"
    _fail_at_rename(monkeypatch)
    with pytest.raises(OSError):
        atomic_write_text(pointer, "epoch-0002\n")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "metrics.json", "{}")
    assert _names(tmp_path) == ["latest"] and pointer.read_text() == "epoch-0001\n"


def test_a_figure_that_cannot_be_renamed_into_place_leaves_the_old_one(tmp_path, monkeypatch):
    from PIL import Image

    from wsreid.showcase import save_figure

    target = tmp_path / "fig.png"
    save_figure(Image.new("RGB", (4, 4), "white"), target)
    before = target.read_bytes()
    _fail_at_rename(monkeypatch)
    with pytest.raises(UserError) as info:
        save_figure(Image.new("RGB", (4, 4), "black"), target)
    assert str(info.value) == (f"--figure {target}: cannot write the figure: Invalid cross-device link "
                               "(free space, or name a path in a folder you can write to)")
    assert _names(tmp_path) == ["fig.png"] and target.read_bytes() == before


def test_a_contact_sheet_that_cannot_be_renamed_into_place_leaves_nothing(tmp_path, monkeypatch):
    from wsreid.data.synth import SynthConfig, ensure_synth, write_contact_sheet
    from wsreid.data.synth.generate import PRESETS, SynthPreset

    monkeypatch.setitem(PRESETS, "tiny", SynthPreset(4, 2, 3))  # a few identities: a dataset in a moment
    root = ensure_synth(SynthConfig(size="tiny"), tmp_path / "data", workers=1)
    out = tmp_path / "sheets" / "s.png"
    _fail_at_rename(monkeypatch)
    with pytest.raises(DataError) as info:
        write_contact_sheet(root, out)
    assert str(info.value) == (f"cannot write the contact sheet {out}: Invalid cross-device link (give "
                               "--contact-sheet a PNG path in a folder you can write to, or --no-contact-sheet)")
    assert _names(tmp_path / "sheets") == []
