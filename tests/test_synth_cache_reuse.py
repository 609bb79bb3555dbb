"""Loading synth-pedes from a cache entry that already holds it: the damage check's reading
of reid_raw.json and of the image folders is the reading the dataset is built from (the
file is parsed once, no image is looked up twice), the dataset is the one
read_dataset reads, and a damaged entry is still told to be deleted; ``wsreid data synth``
reads the file once too, with the output it had when it read it again."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import wsreid.data.synth.generate as gen
from wsreid.data import read_dataset
from wsreid.data.synth.generate import PRESETS, SynthConfig, SynthPreset, ensure_synth
from wsreid.errors import DataError
from wsreid_datasets import SynthPedes

MICRO = SynthPreset(4, 2, 3)


@pytest.fixture
def entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A generated "tiny" cache entry (a few identities) in a temporary cache."""
    monkeypatch.setitem(PRESETS, "tiny", MICRO)
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    return ensure_synth(SynthConfig(size="tiny"), workers=1)


def _load(check_images: str = "exists"):
    return SynthPedes(SynthPedes.Params(size="tiny", check_images=check_images), None).load()


def _count_reading(monkeypatch, root: Path) -> tuple[list[int], list[str]]:
    """Lists that fill as the annotation file is parsed (its record count, each time) and
    as image folders below ``root`` are listed (their paths relative to ``root``)."""
    parsed: list[int] = []
    real_loads = json.loads

    def loads(text, *a, **k):
        value = real_loads(text, *a, **k)
        if isinstance(value, list):  # the annotation file (the other files are objects)
            parsed.append(len(value))
        return value

    listed: list[str] = []
    real_listdir, real_scandir = os.listdir, os.scandir

    def listing(real):
        def list_folder(path="."):
            if "imgs" in Path(path).parts:
                listed.append(Path(path).relative_to(root).as_posix())
            return real(path)
        return list_folder

    monkeypatch.setattr(json, "loads", loads)
    monkeypatch.setattr(os, "listdir", listing(real_listdir))
    monkeypatch.setattr(os, "scandir", listing(real_scandir))
    return parsed, listed


@pytest.mark.parametrize("check_images", ["exists", "decode-eval", "none"])
def test_reused_entry_parses_its_annotations_once_and_lists_each_image_folder_once(entry, monkeypatch, check_images):
    parsed, listed = _count_reading(monkeypatch, entry)
    stat_images: list[str] = []
    real_is_file = Path.is_file

    def is_file(self):
        if "imgs" in self.parts:
            stat_images.append(self.name)
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    monkeypatch.setattr(gen, "generate_synth", lambda *a, **k: pytest.fail("regenerated"))
    splits = _load(check_images)
    images = len({p.image_id for p in splits.train}) + len(splits.val.image_paths) + len(splits.test.image_paths)
    assert parsed == [images]  # reid_raw.json: one record per image, parsed once
    assert sorted(listed) == ["imgs/test", "imgs/train", "imgs/val"]  # each folder listed once
    assert stat_images == []  # no image looked up on its own


@pytest.mark.parametrize("check_images", ["exists", "decode-eval", "none"])
def test_reused_entry_is_the_dataset_read_dataset_reads(entry, check_images):
    splits = _load(check_images)
    expected = read_dataset(entry, "cuhk-pedes", check_images=check_images)
    expected.name = "synth-pedes"
    assert splits == expected and repr(splits) == repr(expected)
    assert splits.root == entry and len(splits.train) > 0


def test_first_load_generates_then_reuses_the_same_dataset(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny", MICRO)
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    first = SynthPedes(SynthPedes.Params(size="tiny", workers=1), None).load()
    assert first == _load("decode-eval") and first.name == "synth-pedes"


@pytest.mark.parametrize("damage, expected", [
    (lambda r: (r / "reid_raw.json").write_text((r / "reid_raw.json").read_text()[:100]),
     "is damaged: reid_raw.json is not valid JSON (truncated?)"),
    (lambda r: (r / "reid_raw.json").write_text('{"a": 1}'), "is damaged: reid_raw.json is not a list of image records"),
    (lambda r: (r / "synth_attributes.json").unlink(), "is damaged: synth_attributes.json is missing"),
    (lambda r: (r / "imgs" / "val" / "00005_0.png").unlink(),
     "is damaged: image imgs/val/00005_0.png (one of the 28 it lists) is missing"),
    (lambda r: [p.unlink() for p in (r / "imgs" / "test").iterdir()],
     "is damaged: images imgs/test/00007_0.png and 7 more (of the 28 it lists) are missing"),
])
def test_damaged_entry_loaded_by_the_component_says_delete_it(entry, damage, expected):
    damage(entry)
    with pytest.raises(DataError) as info:
        _load()
    assert str(info.value) == (f"the synth-pedes cache entry {entry} {expected} "
                               f"(delete the folder {entry}; the dataset is generated there again on next use)")


STATS = ("  train      4 ids      12 images      24 captions  24.2 words/caption\n"
         "  val        2 ids       8 images      16 captions  21.9 words/caption\n"
         "  test       3 ids       8 images      16 captions  23.4 words/caption\n")


def _synth_command(out: Path, *extra: str) -> int:
    import argparse

    from wsreid.cli.data import add_data_parser

    parser = argparse.ArgumentParser(prog="wsreid")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "synth", "--out", str(out), "--size", "tiny", "--workers", "1", *extra])
    return args.func(args)


@pytest.mark.parametrize("sheet", [[], ["--no-contact-sheet"]], ids=["sheet", "no-sheet"])
def test_data_synth_reads_the_annotations_once(tmp_path, monkeypatch, capsys, sheet):
    """``wsreid data synth``, generating and then reusing a dataset: reid_raw.json is read
    and parsed once per command (the records of the damage check, or of the one reading
    after generating, give the statistics and the contact sheet), each image folder is
    listed once, and the output is what it was when the command read the file again."""
    from wsreid.data.synth import write_contact_sheet

    monkeypatch.setitem(PRESETS, "tiny", MICRO)
    out = tmp_path / "synth"
    reads: list[str] = []
    real_read_text, real_read_bytes = Path.read_text, Path.read_bytes

    def read_text(self, *a, **k):
        if self.name == "reid_raw.json":
            reads.append(self.name)
        return real_read_text(self, *a, **k)

    def read_bytes(self):
        if self.name == "reid_raw.json":
            reads.append(self.name)
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    parsed, listed = _count_reading(monkeypatch, out)
    for first, state in ((True, r"generated in \d+\.\d s"), (False, "already present")):
        reads.clear(), parsed.clear(), listed.clear()
        assert _synth_command(out, *sheet) == 0
        text = capsys.readouterr().out
        assert reads == ["reid_raw.json"] and parsed == [28]  # 28 records: the file is read and parsed once
        if sheet and first:  # without a contact sheet, a fresh dataset's images are not looked up
            assert listed == []
        else:  # the damage check of a reused dataset, or the contact sheet's check
            assert sorted(listed) == ["imgs/test", "imgs/train", "imgs/val"]  # each folder listed once
        head, _, rest = text.partition("\n")
        assert re.fullmatch(rf"synth-pedes tiny \(seed 0\) {state}: {re.escape(str(out))}", head), head
        assert rest == STATS + ("" if sheet else f"contact sheet: {out / 'contact_sheet.png'}\n")
    if not sheet:  # the sheet drawn from the records given is the sheet drawn from the file
        again = write_contact_sheet(out, tmp_path / "again.png")
        assert (out / "contact_sheet.png").read_bytes() == again.read_bytes()
