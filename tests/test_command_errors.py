"""User errors of the commands around a run (docs/reliability.md, "Bad input"): each is
one line naming what and where and what to do, exit code 2, and leaves nothing
half-written - the dataset cache and data.root, `wsreid data synth`, `wsreid eval
--figure`, `wsreid convert-weights`, plugins that exit on import, and `wsreid validate`
catching what `wsreid run` would refuse. Unit-level: a full disk or a folder without write
permission is simulated (the suite may run as root)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import wsreid.data.synth.generate as gen
from wsreid.cli import main
from wsreid.data.synth.generate import PRESETS, SynthConfig, SynthPreset, ensure_synth
from wsreid.errors import DataError

MICRO = SynthPreset(4, 2, 3)


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> None:
    """The "tiny" preset as a few identities: a dataset in a fraction of a second."""
    monkeypatch.setitem(PRESETS, "tiny", MICRO)


def _one_line_error(capsys, code: int) -> str:
    """The command's single ``error:`` line, after checking exit code 2 and no traceback."""
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- dataset cache and data.root


def _refuse(monkeypatch, errno_: int, strerror: str, *, on: str = "mkdir") -> None:
    """Make the generator's directory work (``mkdir``) or its image writes (``write``)
    fail as a read-only folder or a full disk makes them fail."""
    if on == "mkdir":
        real = Path.mkdir

        def mkdir(self, *a, **k):
            if ".partial-" in self.name or self.name == "synth-pedes":
                raise OSError(errno_, strerror, str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        def write(job):
            raise OSError(errno_, strerror)

        monkeypatch.setattr(gen, "_write_image", write)


def test_cache_that_is_a_file_names_the_path_and_wsreid_cache(tmp_path, micro, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "afile"))
    with pytest.raises(DataError) as info:
        ensure_synth(SynthConfig(size="tiny"))
    assert str(info.value) == (
        f"cannot create the synth-pedes folder {tmp_path}/afile/synth-pedes/tiny-seed0-v{gen.GENERATOR_VERSION}: "
        f"{tmp_path}/afile is a file, not a folder (set WSREID_CACHE to a folder you can write to, or data.root "
        "to where the dataset should go)")
    with pytest.raises(DataError, match=rf"^cannot create the synth-pedes folder {tmp_path}/afile/sub: {tmp_path}/afile "
                                        r"is a file, not a folder \(set data.root to a new or empty folder"):
        ensure_synth(SynthConfig(size="tiny"), tmp_path / "afile" / "sub")


@pytest.mark.parametrize("cached", [True, False])
def test_read_only_cache_or_root_names_the_folder_and_what_to_set(tmp_path, micro, monkeypatch, cached):
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    _refuse(monkeypatch, errno.EACCES, "Permission denied")
    root = None if cached else tmp_path / "ro" / "x"
    (tmp_path / "ro").mkdir()
    with pytest.raises(DataError) as info:
        ensure_synth(SynthConfig(size="tiny"), root)
    message = str(info.value)
    where = tmp_path / "cache" if cached else tmp_path / "ro"
    assert f"{where} is not writable (Permission denied)" in message
    assert ("(set WSREID_CACHE to a folder you can write to" if cached else "(set data.root to") in message


@pytest.mark.parametrize("cached", [True, False])
def test_full_disk_while_generating_leaves_nothing_and_names_the_folder(tmp_path, micro, monkeypatch, cached):
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    _refuse(monkeypatch, errno.ENOSPC, "No space left on device", on="write")
    root = None if cached else tmp_path / "data" / "x"
    with pytest.raises(DataError) as info:
        ensure_synth(SynthConfig(size="tiny"), root, workers=1)
    target = tmp_path / "cache" / "synth-pedes" / f"tiny-seed0-v{gen.GENERATOR_VERSION}" if cached else root
    assert str(info.value).startswith(f"cannot write the synth-pedes dataset to {target}: no space left on the device "
                                      "(free space there, or set ")
    assert _leftovers(target.parent) == []  # no .partial folder, no half-written dataset


def test_data_synth_out_problems_are_one_line(tmp_path, micro, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    line = _one_line_error(capsys, main(["data", "synth", "--size", "tiny", "--out", str(tmp_path / "afile" / "sub")]))
    assert line == (f"error: cannot create the synth-pedes folder {tmp_path}/afile/sub: {tmp_path}/afile is a file, "
                    "not a folder (set --out to a new or empty folder you can write to)")
    _refuse(monkeypatch, errno.ENOSPC, "No space left on device", on="write")
    line = _one_line_error(capsys, main(["data", "synth", "--size", "tiny", "--workers", "1",
                                         "--out", str(tmp_path / "full" / "out")]))
    assert "no space left on the device" in line and _leftovers(tmp_path / "full") == []


@pytest.mark.parametrize("damage, expected", [
    (lambda r: (r / "synth_meta.json").unlink(), "is incomplete (no synth_meta.json)"),
    (lambda r: (r / "reid_raw.json").write_text((r / "reid_raw.json").read_text()[:100]),
     "is damaged: reid_raw.json is not valid JSON (truncated?)"),
    (lambda r: next((r / "imgs").rglob("*.png")).unlink(), "is damaged: image imgs/"),
    (lambda r: (r / "synth_meta.json").write_text("{"), "is damaged: its synth_meta.json does not match its name"),
])
def test_damaged_cache_entry_says_delete_it_to_regenerate(tmp_path, micro, monkeypatch, damage, expected):
    """Not the hints meant for a real dataset (restore the archive, choose another
    directory): a cache entry is regenerated once deleted."""
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    entry = ensure_synth(SynthConfig(size="tiny"), workers=1)
    damage(entry)
    with pytest.raises(DataError) as info:
        ensure_synth(SynthConfig(size="tiny"))
    message = str(info.value)
    assert message.startswith(f"the synth-pedes cache entry {entry} {expected}")
    assert message.endswith(f"(delete the folder {entry}; the dataset is generated there again on next use)")
    assert "archive" not in message and "data.root, --out" not in message


# --------------------------------------------------------------------------- wsreid eval --figure


def test_figure_without_show_is_refused(tmp_path, capsys):
    line = _one_line_error(capsys, main(["eval", str(tmp_path / "no-run"), "--figure", str(tmp_path / "a.png")]))
    assert line == (f"error: --figure {tmp_path}/a.png: the figure is drawn only with --show N (add --show N (the "
                    "number of queries to draw), or leave --figure out)")


def test_unwritable_figure_path_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    import tempfile

    if Path("/proc").is_dir():
        line = _one_line_error(capsys, main(["eval", str(tmp_path / "no-run"), "--show", "2", "--figure", "/proc/x.png"]))
        assert line.startswith("error: --figure /proc/x.png: cannot write in /proc: ")

    def refused(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)  # a folder without write permission
    line = _one_line_error(capsys, main(["eval", str(tmp_path / "no-run"), "--show", "2",
                                         "--figure", str(tmp_path / "sub" / "x.png")]))
    assert line == (f"error: --figure {tmp_path}/sub/x.png: cannot write in {tmp_path}: Permission denied "
                    "(name a path in a folder you can write to)")


def test_figure_on_a_full_disk_is_one_line_and_keeps_the_old_figure(tmp_path):
    from PIL import Image

    from wsreid.errors import UserError
    from wsreid.showcase import save_figure

    target = tmp_path / "fig.png"
    save_figure(Image.new("RGB", (4, 4), "white"), target)
    before = target.read_bytes()

    class FullDisk:
        def save(self, fp, format):
            fp.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError) as info:
        save_figure(FullDisk(), target)
    assert str(info.value) == (f"--figure {target}: cannot write the figure: no space left on the device (free space, "
                               "or name a path in a folder you can write to)")
    assert target.read_bytes() == before and _leftovers(tmp_path) == ["fig.png"]


# --------------------------------------------------------------------------- wsreid data synth --contact-sheet


def test_contact_sheet_path_problems_are_one_line_before_generating(tmp_path, micro, capsys, monkeypatch):
    (tmp_path / "sheets").mkdir()
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "data"
    for sheet, says in [(tmp_path / "sheets", f"contact sheet {tmp_path}/sheets is a folder (name the PNG file"),
                        (tmp_path / "afile" / "s.png", f"{tmp_path}/afile is a file, not a folder")]:
        line = _one_line_error(capsys, main(["data", "synth", "--size", "tiny", "--out", str(out),
                                             "--contact-sheet", str(sheet)]))
        assert says in line, line
    assert not out.exists() and _leftovers(tmp_path) == ["afile", "sheets"]  # refused before generating


def test_contact_sheet_on_a_full_disk_leaves_no_partial_file(tmp_path, micro, monkeypatch):
    from PIL import Image

    from wsreid.data.synth import write_contact_sheet

    root = ensure_synth(SynthConfig(size="tiny"), tmp_path / "data", workers=1)

    def full_disk(self, fp, format=None, **k):  # the sheet is saved into the open temporary file
        fp.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(DataError) as info:
        write_contact_sheet(root, tmp_path / "sheets" / "s.png")
    assert str(info.value) == (f"cannot write the contact sheet {tmp_path}/sheets/s.png: no space left on the device "
                               "(free space, or give --contact-sheet a PNG path in a folder you can write to, or "
                               "--no-contact-sheet)")
    assert _leftovers(tmp_path / "sheets") == []
