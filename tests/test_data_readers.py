"""Readers of CUHK-PEDES, ICFG-PEDES and RSTPReid on small fabricated datasets in each
exact format, and every bad-input case raising a one-line DataError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from wsreid.data import (
    check_dataset,
    format_report,
    load_image,
    read_cuhk_pedes,
    read_dataset,
    read_icfg_pedes,
    read_rstpreid,
    same_identity_pair_rate,
)
from wsreid.data.readers import detect_format
from wsreid.errors import DataError, UserError

ANNOTATION = {"cuhk-pedes": "reid_raw.json", "icfg-pedes": "ICFG-PEDES.json", "rstpreid": "data_captions.json"}
PATH_KEY = {"cuhk-pedes": "file_path", "icfg-pedes": "file_path", "rstpreid": "img_path"}


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), colour).save(path)


def make_dataset(root: Path, fmt: str, *, annotation: str | None = None) -> list[dict]:
    """A tiny dataset in ``fmt``: per split, persons with 2 images; captions per image:
    2 (CUHK-PEDES, RSTPReid) or 1 (ICFG-PEDES). Returns the records written."""
    splits = {"cuhk-pedes": {"train": 3, "val": 2, "test": 2}, "icfg-pedes": {"train": 3, "test": 2}, "rstpreid": {"train": 3, "val": 2, "test": 2}}[fmt]
    records = []
    pid = 1
    for split, n_ids in splits.items():
        for _ in range(n_ids):
            for k in range(2):
                rel = f"{split}/p{pid:03d}/{k}.png" if fmt != "cuhk-pedes" else f"CUHK0{k + 1}/{pid:04d}{k}.png"
                _png(root / "imgs" / rel, (pid * 20 % 256, k * 90, 50))
                n_caps = 1 if fmt == "icfg-pedes" else 2
                caps = [f"person {pid} image {k} caption {c} wearing a red shirt" for c in range(n_caps)]
                rec = {"id": pid, PATH_KEY[fmt]: rel, "captions": caps, "split": split}
                if fmt != "rstpreid":
                    rec["processed_tokens"] = [c.split() for c in caps]
                records.append(rec)
            pid += 1
    (root / (annotation or ANNOTATION[fmt])).write_text(json.dumps(records))
    return records


def _rewrite(root: Path, fmt: str, records) -> None:
    (root / ANNOTATION[fmt]).write_text(json.dumps(records))


READERS = {"cuhk-pedes": read_cuhk_pedes, "icfg-pedes": read_icfg_pedes, "rstpreid": read_rstpreid}


@pytest.mark.parametrize("fmt", list(ANNOTATION))
def test_reader_builds_caption_level_pairs_and_eval_splits(tmp_path: Path, fmt: str) -> None:
    records = make_dataset(tmp_path, fmt)
    splits = READERS[fmt](tmp_path)
    caps = 1 if fmt == "icfg-pedes" else 2
    # train: 3 persons x 2 images x caps captions, indices 0..N-1 in file order
    assert len(splits.train) == 3 * 2 * caps
    assert [p.index for p in splits.train] == list(range(len(splits.train)))
    train_records = [r for r in records if r["split"] == "train"]
    expected = [(c, r["id"]) for r in train_records for c in r["captions"]]
    assert [(p.caption, p.person_id) for p in splits.train] == expected
    # image ids: one per image in first-appearance order; both captions of an image share it
    assert [p.image_id for p in splits.train] == [i for i in range(6) for _ in range(caps)]
    assert splits.train[0].image_path == tmp_path / "imgs" / train_records[0][PATH_KEY[fmt]]
    # test split: every caption is a query, every image once in the gallery
    assert len(splits.test.captions) == 2 * 2 * caps and len(splits.test.image_paths) == 4
    assert sorted(set(splits.test.image_person_ids)) == sorted(set(splits.test.caption_person_ids))
    assert set(splits.test.image_person_ids).isdisjoint({p.person_id for p in splits.train})
    if fmt == "icfg-pedes":
        assert splits.val is None
    else:
        assert splits.val is not None and len(splits.val.image_paths) == 4 and len(splits.val.captions) == 8
    assert splits.name == fmt and splits.root == tmp_path


def test_icfg_accepts_underscore_file_name(tmp_path: Path) -> None:
    make_dataset(tmp_path, "icfg-pedes", annotation="ICFG_PEDES.json")
    assert len(read_icfg_pedes(tmp_path).train) == 6
    assert detect_format(tmp_path) == "icfg-pedes"


def test_detect_format_and_missing_file(tmp_path: Path) -> None:
    make_dataset(tmp_path, "rstpreid")
    assert detect_format(tmp_path) == "rstpreid"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no annotation file"):
        detect_format(empty)


def test_a_parent_folder_or_another_format_is_pointed_at_the_dataset(tmp_path: Path) -> None:
    """``wsreid data check PARENT`` (format detected) and ``--format cuhk-pedes`` on an
    RSTPReid folder say which folder, or which format, it is."""
    make_dataset(tmp_path / "RSTPReid", "rstpreid")
    with pytest.raises(DataError) as info:
        detect_format(tmp_path)
    assert str(info.value) == (f"no annotation file found in {tmp_path} (did you mean the dataset folder inside it, "
                               f"'{(tmp_path / 'RSTPReid').as_posix()}'?)")
    with pytest.raises(DataError) as info:
        check_dataset(tmp_path, "rstpreid")
    assert str(info.value) == (f"rstpreid annotation file {tmp_path / 'data_captions.json'} not found (did you mean "
                               f"the dataset folder inside it, '{(tmp_path / 'RSTPReid').as_posix()}'?)")
    assert _error(tmp_path / "RSTPReid", "cuhk-pedes") == (
        f"cuhk-pedes annotation file {tmp_path / 'RSTPReid' / 'reid_raw.json'} not found "
        "(it holds data_captions.json, the rstpreid format)")


def _error(root: Path, fmt: str) -> str:
    with pytest.raises(DataError) as info:
        read_dataset(root, fmt)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, UserError)
    return message


@pytest.mark.parametrize("fmt", list(ANNOTATION))
def test_missing_annotation_file(tmp_path: Path, fmt: str) -> None:
    msg = _error(tmp_path, fmt)
    assert ANNOTATION[fmt] in msg and "not found" in msg


def test_missing_root(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope", "cuhk-pedes")
    assert "nope" in msg and "not a directory" in msg


@pytest.mark.parametrize("fmt", list(ANNOTATION))
def test_invalid_json_names_line(tmp_path: Path, fmt: str) -> None:
    make_dataset(tmp_path, fmt)
    path = tmp_path / ANNOTATION[fmt]
    path.write_text(path.read_text()[:-40])  # truncated
    msg = _error(tmp_path, fmt)
    assert str(path) in msg and "invalid JSON at line 1" in msg
    assert msg.endswith("(the file ends before the data is complete: it may be truncated; restore it from the "
                        "original archive)")


def test_invalid_json_hint_fits_the_mistake(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    path = tmp_path / "reid_raw.json"
    path.write_text(json.dumps(records, indent=1)[:-2] + ",\n]")  # a trailing comma after the last record
    lines = path.read_text().splitlines()
    assert _error(tmp_path, "cuhk-pedes") == (
        f"{path}: invalid JSON at line {len(lines)} column 1: Expecting value (remove the trailing comma before "
        "the closing bracket (JSON allows none))")
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(records).encode())  # saved "as UTF-8 with BOM"
    assert _error(tmp_path, "cuhk-pedes") == (
        f"{path}: invalid JSON at line 1 column 1: Unexpected UTF-8 BOM (decode using utf-8-sig) (the file starts "
        "with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM)")
    path.write_text(json.dumps(records).replace('"split"', "'split'", 1))
    assert _error(tmp_path, "cuhk-pedes").endswith("(JSON strings and keys need double quotes)")


def test_top_level_must_be_a_list(tmp_path: Path) -> None:
    (tmp_path / "reid_raw.json").write_text('{"split": "train"}')
    assert "expected a JSON list" in _error(tmp_path, "cuhk-pedes")


@pytest.mark.parametrize("fmt", list(ANNOTATION))
@pytest.mark.parametrize("key", ["split", "captions", "id", "path"])
def test_record_missing_key(tmp_path: Path, fmt: str, key: str) -> None:
    records = make_dataset(tmp_path, fmt)
    key = PATH_KEY[fmt] if key == "path" else key
    del records[4][key]
    _rewrite(tmp_path, fmt, records)
    msg = _error(tmp_path, fmt)
    assert "record 4" in msg and f"missing key '{key}'" in msg and ANNOTATION[fmt] in msg


@pytest.mark.parametrize("fmt", list(ANNOTATION))
def test_empty_caption_list(tmp_path: Path, fmt: str) -> None:
    records = make_dataset(tmp_path, fmt)
    records[2]["captions"] = []
    _rewrite(tmp_path, fmt, records)
    msg = _error(tmp_path, fmt)
    assert "record 2" in msg and "caption list is empty" in msg and records[2][PATH_KEY[fmt]] in msg


def test_blank_or_non_string_caption(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    records[1]["captions"] = ["fine", "   "]
    _rewrite(tmp_path, "cuhk-pedes", records)
    assert "caption 1 is empty" in _error(tmp_path, "cuhk-pedes")
    records[1]["captions"] = "a string, not a list"
    _rewrite(tmp_path, "cuhk-pedes", records)
    assert "'captions' must be a list" in _error(tmp_path, "cuhk-pedes")


@pytest.mark.parametrize("bad_id, ok", [(7, True), ("7", True), (True, False), ("seven", False), (None, False),
                                        (7.5, False)])
def test_id_must_be_integer(tmp_path: Path, bad_id, ok: bool) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    records[0]["id"] = records[1]["id"] = bad_id
    _rewrite(tmp_path, "cuhk-pedes", records)
    if ok:
        assert read_cuhk_pedes(tmp_path).train[0].person_id == 7
    else:
        error = _error(tmp_path, "cuhk-pedes")
        # the value as the file holds it ('true' was shown as None)
        shown = {True: "true", None: "null", "seven": "'seven'", 7.5: "7.5"}[bad_id]
        assert "record 0" in error and f"'id' must be an integer, found {shown} " in error


def test_an_image_folder_without_read_permission_is_not_called_missing(tmp_path: Path, monkeypatch) -> None:
    """A folder that cannot be listed was reported as missing images ('check that the
    image archive was extracted completely')."""
    import os

    import wsreid.data.images as images

    records = make_dataset(tmp_path, "cuhk-pedes")
    locked = (tmp_path / "imgs" / records[0]["file_path"]).parent
    real_scandir = os.scandir

    def scandir(folder):
        if Path(folder) == locked:  # as os.scandir fails in a folder without read permission
            raise PermissionError(13, "Permission denied", str(folder))
        return real_scandir(folder)

    monkeypatch.setattr(images.os, "scandir", scandir)
    msg = _error(tmp_path, "cuhk-pedes")
    assert msg.endswith(f"image {locked / Path(records[0]['file_path']).name} cannot be read: its folder {locked} "
                        "cannot be listed (Permission denied) (give the folder read permission)"), msg


@pytest.mark.parametrize("fmt", list(ANNOTATION))
def test_missing_image(tmp_path: Path, fmt: str) -> None:
    records = make_dataset(tmp_path, fmt)
    (tmp_path / "imgs" / records[5][PATH_KEY[fmt]]).unlink()
    msg = _error(tmp_path, fmt)
    assert "record 5" in msg and "does not exist" in msg and records[5][PATH_KEY[fmt]] in msg
    # the cheap check can be turned off; the full check then still finds it
    assert len(read_dataset(tmp_path, fmt, check_images="none").train) > 0
    with pytest.raises(DataError, match="record 5"):
        check_dataset(tmp_path, fmt)


@pytest.mark.parametrize("fmt", list(ANNOTATION))
def test_missing_images_are_counted_not_only_the_first(tmp_path: Path, fmt: str) -> None:
    records = make_dataset(tmp_path, fmt)
    paths = [r[PATH_KEY[fmt]] for r in records]
    gone = [paths[5], paths[7], paths[8]]
    assert len(set(gone)) == 3
    for rel in gone:
        (tmp_path / "imgs" / rel).unlink()
    msg = _error(tmp_path, fmt)
    assert f"record 5 ({PATH_KEY[fmt]} {paths[5]!r}): image {tmp_path / 'imgs' / paths[5]} does not exist; 2 more " \
           "image(s) of later records are missing too (" in msg
    with pytest.raises(DataError, match=r"record 5 .*; 2 more image\(s\) of later records are missing too"):
        check_dataset(tmp_path, fmt)
    (tmp_path / "imgs" / paths[5]).write_bytes((tmp_path / "imgs" / paths[6]).read_bytes())
    assert "record 7" in _error(tmp_path, fmt) and "; 1 more image(s)" in _error(tmp_path, fmt)


def test_missing_image_folder(tmp_path: Path) -> None:
    make_dataset(tmp_path, "rstpreid")
    (tmp_path / "imgs").rename(tmp_path / "images")
    assert "image folder" in _error(tmp_path, "rstpreid")


_ESCAPES = "escapes the dataset root {imgs} (image paths must be relative to imgs/ and must not contain '..')"
_EMPTY = "is empty or not a string (give a path relative to imgs/)"


@pytest.mark.parametrize("fmt", list(ANNOTATION))
@pytest.mark.parametrize("bad_path, problem", [
    pytest.param("../outside.png", _ESCAPES, id="dotdot"),
    pytest.param("a/../../outside.png", _ESCAPES, id="inner-dotdot"),
    pytest.param("/etc/passwd", _ESCAPES, id="absolute"),
    pytest.param("", _EMPTY, id="empty"),
])
def test_path_escaping_root_or_empty_gets_its_own_whole_message(tmp_path: Path, fmt: str, bad_path: str, problem: str) -> None:
    """A path that leaves imgs/ (``..``, absolute) is reported as escaping the root, an empty
    path as empty; the whole one-line message (file, record, key, path, hint) is compared."""
    root = tmp_path / "ds"
    records = make_dataset(root, fmt)
    _png(tmp_path / "outside.png", (1, 2, 3))
    records[3][PATH_KEY[fmt]] = bad_path
    _rewrite(root, fmt, records)
    expected = (f"{root / ANNOTATION[fmt]} record 3 ({PATH_KEY[fmt]} {bad_path!r}): "
                f"image path {bad_path!r} " + problem.format(imgs=root / "imgs"))
    assert _error(root, fmt) == expected


@pytest.mark.parametrize("fmt, split", [("cuhk-pedes", "val"), ("cuhk-pedes", "test"), ("icfg-pedes", "train"), ("rstpreid", "val")])
def test_split_without_records(tmp_path: Path, fmt: str, split: str) -> None:
    records = make_dataset(tmp_path, fmt)
    _rewrite(tmp_path, fmt, [r for r in records if r["split"] != split])
    msg = _error(tmp_path, fmt)
    assert f"split '{split}' has no records" in msg


def test_unknown_split_names_allowed_ones(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "icfg-pedes")
    records[0]["split"] = "val"  # ICFG-PEDES has no val split
    _rewrite(tmp_path, "icfg-pedes", records)
    msg = _error(tmp_path, "icfg-pedes")
    assert "record 0" in msg and "unknown split 'val'" in msg and "train, test" in msg


def test_image_in_two_splits_or_with_two_ids(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    records[7]["file_path"] = records[0]["file_path"]  # a test record reusing a train image
    _rewrite(tmp_path, "cuhk-pedes", records)
    assert "record 7" in _error(tmp_path, "cuhk-pedes")
    records = make_dataset(tmp_path, "cuhk-pedes")
    records[2]["file_path"] = records[0]["file_path"]  # same split, different person
    _rewrite(tmp_path, "cuhk-pedes", records)
    assert "has id 2 but record 0 gives it id 1" in _error(tmp_path, "cuhk-pedes")


@pytest.mark.parametrize("alias", ["./CUHK01/00010.png", "CUHK01/00010.png", "CUHK01//00010.png", "CUHK01/./00010.png"])
def test_one_image_however_its_path_is_spelled(tmp_path: Path, alias: str) -> None:
    """``./a.png``, ``a//b.png`` and ``a/./b.png`` name the file ``a.png`` / ``a/b.png``:
    a test record naming a train image in another spelling is refused (a training image
    in the test gallery), and in one split the two spellings give one image."""
    records = make_dataset(tmp_path, "cuhk-pedes")
    train_path = records[0]["file_path"]
    assert train_path == "CUHK01/00010.png"
    test_index = next(i for i, r in enumerate(records) if r["split"] == "test")
    records[test_index]["file_path"] = alias
    records[test_index]["id"] = records[0]["id"]
    _rewrite(tmp_path, "cuhk-pedes", records)
    msg = _error(tmp_path, "cuhk-pedes")
    assert f"record {test_index}: image {alias!r} is in split 'test' but record 0 puts it in 'train'" in msg
    if alias != train_path:
        assert f"(written {train_path!r} there: the same file)" in msg
    with pytest.raises(DataError, match=f"record {test_index}"):
        check_dataset(tmp_path, "cuhk-pedes")
    # in one split: one image (one image_id, one gallery entry), counted once by data check
    records = make_dataset(tmp_path, "cuhk-pedes")
    extra = dict(records[0], file_path=alias, captions=["another caption of the first image"])
    test_extra = dict(records[test_index], file_path="./" + records[test_index]["file_path"], captions=["one more test caption"])
    _rewrite(tmp_path, "cuhk-pedes", records + [extra, test_extra])
    splits = read_cuhk_pedes(tmp_path)
    assert splits.train[-1].image_id == splits.train[0].image_id == 0
    assert len({p.image_id for p in splits.train}) == 6
    assert len(splits.test.image_paths) == 4 and len(splits.test.captions) == 9
    stats = {s.split: s for s in check_dataset(tmp_path, "cuhk-pedes").splits}
    assert (stats["train"].images, stats["test"].images) == (6, 4)


def test_duplicate_image_same_person_shares_image_id(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    extra = dict(records[0], captions=["a third caption of the first image"])
    _rewrite(tmp_path, "cuhk-pedes", records + [extra])
    splits = read_cuhk_pedes(tmp_path)
    assert splits.train[-1].image_id == splits.train[0].image_id == 0
    assert len({p.image_id for p in splits.train}) == 6


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "ok.png"
    _png(good, (10, 20, 30))
    img = load_image(good)
    assert img.mode == "RGB" and img.size == (8, 16) and img.getpixel((0, 0)) == (10, 20, 30)
    with pytest.raises(DataError, match=r"missing\.png.*does not exist"):
        load_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:30])
    with pytest.raises(DataError, match=r"broken\.png.*cannot be decoded") as info:
        load_image(broken)
    assert "\n" not in str(info.value)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.jpg.*cannot be decoded"):
        load_image(text)


def _portrait(width: int = 6, height: int = 10) -> Image.Image:
    """An upright RGB picture whose every pixel differs from its mirror images."""
    import numpy as np

    rows, cols = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([rows * 20, cols * 40, rows * 3 + cols * 7], axis=-1).astype(np.uint8), "RGB")


@pytest.mark.parametrize("orientation, stored_as", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                    (3, Image.Transpose.ROTATE_180),
                                                    (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_an_exif_orientation_is_applied_as_viewers_show_the_photo(tmp_path: Path, orientation, stored_as) -> None:
    """A phone stores a portrait photo sideways with EXIF orientation 6 (or 8); the image
    read is the upright one a viewer shows, not the stored pixels."""
    upright = _portrait()
    exif = Image.Exif()
    exif[274] = orientation
    path = tmp_path / "phone.png"  # PNG: lossless, so the pixels compare exactly
    upright.transpose(stored_as).save(path, exif=exif)
    assert Image.open(path).size == upright.transpose(stored_as).size  # stored turned
    img = load_image(path)
    assert img.mode == "RGB" and img.size == upright.size
    assert img.tobytes() == upright.tobytes()


def test_a_16_bit_grey_image_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    import numpy as np

    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    img = load_image(tmp_path / "grey16.png")
    assert img.mode == "RGB" and [img.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (1, 1, 1),
                                                                               (128, 128, 128), (255, 255, 255)]
    Image.fromarray(np.array([[0, 7, 200]], dtype=np.int32), "I").save(tmp_path / "small32.tif")
    assert [load_image(tmp_path / "small32.tif").getpixel((x, 0))[0] for x in range(3)] == [0, 7, 200]


def test_an_image_over_pils_pixel_limit_is_named_as_such(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "large.png"
    _portrait(60, 40).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2,400 pixels: over twice the limit -> PIL's error
    with pytest.raises(DataError) as info:
        load_image(path)
    assert str(info.value) == (f"image {path} has more pixels than PIL opens (2,400 pixels, the limit 2,000; PIL's "
                               "guard against decompression bombs) (downscale the file (a person image needs a few "
                               "hundred pixels a side), or raise PIL.Image.MAX_IMAGE_PIXELS in a script that trusts "
                               "its files)")


@pytest.mark.parametrize("kind", ["folder", "broken link"])
def test_a_folder_or_a_broken_link_is_not_an_image_at_load(tmp_path: Path, kind: str) -> None:
    """The existence check reads directory listings: a folder or a symbolic link to a
    missing file is listed like an image, and used to pass until training read it. Now
    the load names the record and what the path is; load_image says the same."""
    records = make_dataset(tmp_path, "rstpreid")
    target = tmp_path / "imgs" / records[1]["img_path"]
    target.unlink()
    if kind == "folder":
        target.mkdir()
        what = "is a folder, not an image file"
    else:
        target.symlink_to(tmp_path / "elsewhere.png")
        what = f"is a symbolic link to {tmp_path / 'elsewhere.png'}, which does not exist"
    expected = (f"{tmp_path / 'data_captions.json'} record 1 (img_path {records[1]['img_path']!r}): "
                f"image {target} {what} (the record must name an image file; fix the path or the file)")
    assert _error(tmp_path, "rstpreid") == expected
    with pytest.raises(DataError) as info:
        check_dataset(tmp_path, "rstpreid", decode=False)
    assert str(info.value) == expected
    with pytest.raises(DataError) as info:
        load_image(target, where="split train, training pair 2")
    assert str(info.value).startswith(f"image {target} (split train, training pair 2) {what} (")
    # a link to an existing image is an image
    if kind == "broken link":
        _png(tmp_path / "elsewhere.png", (1, 2, 3))
        assert len(read_rstpreid(tmp_path).train) == 12


@pytest.mark.parametrize(("written", "on_disk", "hint"), [
    ("train\\p001\\0.png", "train/p001/0.png",
     "the path is written with backslashes; write it with '/': 'train/p001/0.png' exists"),
    ("train/p001/0.png ", "train/p001/0.png", "the path has spaces around it; remove them: 'train/p001/0.png' exists"),
    ("imgs/train/p001/0.png", "train/p001/0.png",
     "paths are relative to imgs/ already; remove the leading 'imgs/': 'train/p001/0.png' exists"),
    ("train/p001/Cafe\u0301.png", "train/p001/Caf\u00e9.png",
     "the file name is written in another Unicode form (NFC); write it as the file system has it: "
     "'train/p001/Caf\u00e9.png' exists"),
    ("train/p001/0.PNG", "train/p001/0.png",
     "the file name differs in letter case from '0.png' in {imgs}/train/p001; file names are case-sensitive"),
    ("train/p001/9.png", "train/p001/0.png", "check that the image archive was extracted completely"),
])
def test_a_missing_image_gets_the_path_that_exists(tmp_path: Path, written: str, on_disk: str, hint: str) -> None:
    """A path that misses its image by a spelling mistake (Windows separators, a leading
    imgs/, a trailing space, the Unicode form or letter case of the name) is told the
    spelling that exists."""
    records = make_dataset(tmp_path, "rstpreid")
    assert records[0]["img_path"] == "train/p001/0.png"
    (tmp_path / "imgs" / "train/p001/0.png").rename(tmp_path / "imgs" / on_disk)
    records[0]["img_path"] = written
    _rewrite(tmp_path, "rstpreid", records)
    message = _error(tmp_path, "rstpreid")
    assert message.startswith(f"{tmp_path / 'data_captions.json'} record 0 (img_path {written!r}): image ")
    assert message.endswith(f" does not exist ({hint.format(imgs=tmp_path / 'imgs')})")


def test_check_dataset_decodes_and_reports(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    report = check_dataset(tmp_path, "cuhk-pedes", workers=2)
    stats = {s.split: (s.ids, s.images, s.captions) for s in report.splits}
    assert stats == {"train": (3, 6, 12), "val": (2, 4, 8), "test": (2, 4, 8)}
    assert report.decoded_images == 14 and report.image_sizes == {(8, 16): 14} and report.shared_ids == 0
    assert report.splits[0].words_per_caption == pytest.approx(10.0)
    text = format_report(report)
    assert "train" in text and "all 14 images decode" in text
    # two corrupt images: the error names the first (file and record) and counts the rest
    for i in (3, 9):
        (tmp_path / "imgs" / records[i]["file_path"]).write_bytes(b"\x89PNG\r\n garbage")
    with pytest.raises(DataError) as info:
        check_dataset(tmp_path, "cuhk-pedes", workers=2)
    msg = str(info.value)
    assert records[3]["file_path"].split("/")[-1] in msg and "record 3" in msg and "1 more image" in msg


def test_check_lists_records_that_repeat_an_earlier_one(tmp_path: Path) -> None:
    """An exact repeat of a record (a file concatenated twice, a merge gone wrong) is
    valid, but doubles its pairs and queries: data check lists it. A second record of an
    image with other captions, or the same path spelled another way with other captions,
    is not a repeat."""
    records = make_dataset(tmp_path, "cuhk-pedes")
    report = check_dataset(tmp_path, "cuhk-pedes", decode=False)
    assert report.repeated_records == () and "repeating" not in format_report(report)
    extra = [dict(records[2]), dict(records[9]), dict(records[2], captions=["another caption"]),
             dict(records[2], file_path="./" + records[2]["file_path"])]
    _rewrite(tmp_path, "cuhk-pedes", records + extra)
    n = len(records)
    report = check_dataset(tmp_path, "cuhk-pedes", decode=False)
    assert report.repeated_records == ((n, 2), (n + 1, 9), (n + 3, 2))
    assert format_report(report).splitlines()[-1] == (
        f"records repeating an earlier record exactly (their pairs and queries count twice): 3 "
        f"(record {n} = record 2; record {n + 1} = record 9; record {n + 3} = record 2)")


def test_check_counts_identities_shared_between_splits(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "rstpreid")
    records[-1]["id"] = records[-3]["id"] = 1  # a test person reusing a train id
    _rewrite(tmp_path, "rstpreid", records)
    report = check_dataset(tmp_path, "rstpreid", decode=False)
    assert report.shared_ids == 1 and report.shared_id_splits == {1: ("train", "test")}
    assert format_report(report).splitlines()[-1] == "identities in more than one split: 1 (id 1 in train, test)"
    records[-4]["id"] = 4  # and a val person in test too
    _rewrite(tmp_path, "rstpreid", records)
    report = check_dataset(tmp_path, "rstpreid", decode=False)
    assert report.shared_id_splits == {1: ("train", "test"), 4: ("val", "test")}
    assert format_report(report).splitlines()[-1] == (
        "identities in more than one split: 2 (id 1 in train, test; id 4 in val, test)")


def test_same_identity_pair_rate_counts_ordered_distinct_pairs():
    # persons a (3 items), b (2), c (1): same-person ordered pairs 3*2 + 2*1 = 8 of 6*5 = 30
    assert same_identity_pair_rate(["a", "b", "a", "c", "b", "a"]) == pytest.approx(8 / 30)
    assert same_identity_pair_rate([7, 8, 9]) == 0.0
    # items 0 and 2 are two captions of image "x": their 2 ordered pairs leave both counts
    assert same_identity_pair_rate(["a", "b", "a", "c", "b", "a"], ["x", "y", "x", "z", "w", "v"]) == pytest.approx(6 / 28)
    with pytest.raises(ValueError, match="every pair"):
        same_identity_pair_rate(["a", "a"], ["x", "x"])
    assert same_identity_pair_rate(iter([1, 1])) == 1.0
    with pytest.raises(ValueError, match="at least 2 items"):
        same_identity_pair_rate([1])


def test_same_identity_pair_rate_matches_the_pair_mask():
    # the value the threshold and calibration scripts read: mean of the off-diagonal mask
    import torch

    ids = torch.randint(0, 9, (41,), generator=torch.Generator().manual_seed(3))
    same = ids[:, None] == ids[None, :]
    off = ~torch.eye(len(ids), dtype=torch.bool)
    assert same_identity_pair_rate(ids.tolist()) == pytest.approx(float(same[off].float().mean()), abs=1e-7)
