"""Loading synth-pedes from a cache entry that already holds it: the damage check's reading
of reid_raw.json and of the image folders is the reading the dataset is built from (the
file is parsed once, no image is looked up twice), the dataset is the one
read_dataset reads, and a damaged entry is still told to be deleted."""

from __future__ import annotations

import json
import os
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


@pytest.mark.parametrize("check_images", ["exists", "decode-eval", "none"])
def test_reused_entry_parses_its_annotations_once_and_lists_each_image_folder_once(entry, monkeypatch, check_images):
    parsed: list[int] = []
    real_loads = json.loads

    def loads(text, *a, **k):
        out = real_loads(text, *a, **k)
        if isinstance(out, list):  # the annotation file (the other files are objects)
            parsed.append(len(out))
        return out

    listed: list[str] = []
    real_listdir = os.listdir

    def listdir(path="."):
        listed.append(Path(path).relative_to(entry).as_posix())
        return real_listdir(path)

    stat_images: list[str] = []
    real_is_file = Path.is_file

    def is_file(self):
        if "imgs" in self.parts:
            stat_images.append(self.name)
        return real_is_file(self)

    monkeypatch.setattr(json, "loads", loads)
    monkeypatch.setattr(os, "listdir", listdir)
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
