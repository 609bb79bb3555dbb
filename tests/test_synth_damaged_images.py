"""An image of a generated synth-pedes dataset that is missing or cannot be decoded (a
truncated file) is reported as damage of that dataset, with the file and what to do (delete
the folder: it is generated again) - not with the hints for a real dataset (restore the
archive, replace the file) - wherever it is found: while loading (the val/test images are
decoded then), in training (in a DataLoader worker), by `wsreid data check`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from wsreid.cli import main
from wsreid.data import load_image
from wsreid.data.synth.generate import PRESETS, SynthConfig, SynthPreset, ensure_synth
from wsreid.errors import DataError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A "tiny" cache entry generated once for the module (copied into each test's cache)."""
    cache = tmp_path_factory.mktemp("pristine-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WSREID_CACHE", str(cache))
        return ensure_synth(SynthConfig(size="tiny"), workers=1)


@pytest.fixture
def entry(tmp_path, monkeypatch, pristine) -> Path:
    """The tiny cache entry in this test's own cache (``WSREID_CACHE``)."""
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "synth-pedes" / pristine.name
    shutil.copytree(pristine, target)
    return target


def _truncate(image: Path) -> None:
    image.write_bytes(image.read_bytes()[:200])  # a PNG cut short, as by a full disk


def _hint(entry: Path) -> str:
    return f"(delete the folder {entry}; the dataset is generated there again on next use)"


def _one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    # progress, and the schedule warnings of a one-epoch run of recipes/dgia.yaml
    lines = [line for line in captured.err.splitlines()
             if line.strip() and not line.startswith(("  read ", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("image, where, workers", [
    ("train/00001_0.png", " (split train, training pair N)", 2),  # decoded in training, in a DataLoader worker
    ("test/00061_0.png", " (reid_raw.json record 218, split test)", 0),  # decoded while loading (decode-eval)
])
def test_run_with_a_truncated_image_in_the_cache_entry_says_the_entry_is_damaged(
        make_recipe, entry, capsys, image, where, workers):
    _truncate(entry / "imgs" / image)
    recipe = make_recipe("dgia.yaml", extra={"data": {"name": "synth-pedes", "size": "tiny", "root": None}})
    code = main(["run", str(recipe), "-o", "data.size=tiny", "-o", "train.epochs=1",
                 "-o", f"train.num_workers={workers}"])
    line = _one_line_error(capsys, code)
    # the training pair is the first of the image's pairs the sampler draws: N stands for its index
    expected = f"error: the synth-pedes cache entry {entry} is damaged: image imgs/{image}{where} cannot be decoded (OSError: "
    head, n, tail = expected.partition("pair N")
    assert re.match(re.escape(head) + (r"pair \d+" + re.escape(tail) if n else ""), line), line
    assert line.endswith(f") {_hint(entry)}")
    assert "replace the file" not in line and "archive" not in line


def test_image_missing_after_the_dataset_was_loaded(entry):
    image = entry / "imgs" / "val" / "00041_0.png"
    image.unlink()
    with pytest.raises(DataError) as info:
        load_image(image)
    assert str(info.value) == f"the synth-pedes cache entry {entry} is damaged: image imgs/val/00041_0.png is missing {_hint(entry)}"


def test_data_check_of_a_cache_entry_with_a_missing_image(entry, capsys):
    (entry / "imgs" / "test" / "00061_0.png").unlink()
    line = _one_line_error(capsys, main(["data", "check", str(entry)]))
    assert line == (f"error: the synth-pedes cache entry {entry} is damaged: image imgs/test/00061_0.png "
                    f"(reid_raw.json record 218) is missing {_hint(entry)}")


def test_generated_dataset_outside_the_cache_names_no_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PRESETS, "tiny", SynthPreset(4, 2, 3))
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    root = ensure_synth(SynthConfig(size="tiny"), tmp_path / "mine", workers=1)
    _truncate(root / "imgs" / "test" / "00007_0.png")
    line = _one_line_error(capsys, main(["data", "check", str(root)]))
    assert line.startswith(f"error: the synth-pedes dataset {root} is damaged: image imgs/test/00007_0.png "
                           "(reid_raw.json record ")
    # read as cuhk-pedes (data check, or a recipe's cuhk-pedes) nothing regenerates it: the hint said it would
    assert line.endswith(f"(delete the folder {root} to have it generated again: a recipe reading it as synth-pedes "
                         f"does so, else wsreid data synth --out {root} with the settings in its synth_meta.json)")


def test_an_image_of_another_dataset_keeps_its_hints(tmp_path):
    """An imgs/ folder next to metadata that is not synth-pedes's is a dataset of the user's."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "synth_meta.json").write_text('{"generator": "other"}')
    broken = tmp_path / "imgs" / "a.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError) as info:
        load_image(broken)
    assert str(info.value).startswith(f"image {broken} cannot be decoded (UnidentifiedImageError: ")
    assert str(info.value).endswith("(replace the file with an intact copy, or leave it out)")  # no record named
    with pytest.raises(DataError) as info:
        load_image(broken, where="reid_raw.json record 0")
    assert str(info.value).endswith("(replace the file with an intact copy or remove its record)")
    with pytest.raises(DataError) as info:
        load_image(tmp_path / "imgs" / "b.png")
    assert str(info.value) == (f"image {tmp_path}/imgs/b.png does not exist (check the dataset root and that the "
                               "image archive was extracted completely)")
