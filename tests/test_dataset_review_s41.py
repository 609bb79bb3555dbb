"""The real-dataset review of session s41: a file of another format under this format's
name, whole image folders missing, CUHK-PEDES's caption_all.json, path spellings together
and files extracted with backslashes in their names, data check's progress lines, the
documented CUHK-PEDES counts, and the annotation file given as the root, an empty image
and a UTF-16 annotation file (docs/datasets.md, "What is checked, and when")."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from test_data_cli import _run
from test_data_readers import ANNOTATION, _error, _rewrite, make_dataset
from wsreid.data import check_dataset
from wsreid.data.check import DatasetReport, SplitStats, format_report
from wsreid.data.readers import dataset_root_problem, detect_format
from wsreid.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _detect_error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        detect_format(root)
    return str(info.value)


# --------------------------------------------------------------------------- 2: another format's file


@pytest.mark.parametrize(("content", "named", "message"), [
    ("rstpreid", "cuhk-pedes", "the records have 'img_path', not 'file_path': this is the rstpreid format "
                               "(rename the file to data_captions.json)"),
    ("rstpreid", "icfg-pedes", "the records have 'img_path', not 'file_path': this is the rstpreid format "
                               "(rename the file to data_captions.json)"),
    ("cuhk-pedes", "rstpreid", "the records have 'file_path', not 'img_path': this is the cuhk-pedes format "
                               "(rename the file to reid_raw.json)"),
    ("icfg-pedes", "rstpreid", "the records have 'file_path', not 'img_path': this is the icfg-pedes format "
                               "(rename the file to ICFG-PEDES.json)"),
])
def test_a_file_of_another_format_names_that_format(tmp_path: Path, content: str, named: str, message: str) -> None:
    """Every record having another format's image key is the file, not one record, to fix
    (it read "record 0: missing key 'file_path' (fix or remove the record)")."""
    make_dataset(tmp_path, content)
    (tmp_path / ANNOTATION[content]).rename(tmp_path / ANNOTATION[named])
    assert _error(tmp_path, named) == f"{tmp_path / ANNOTATION[named]}: {message}"


def test_a_key_only_some_records_lack_keeps_the_record_message(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    records[3]["img_path"] = records[3].pop("file_path")
    _rewrite(tmp_path, "cuhk-pedes", records)
    assert _error(tmp_path, "cuhk-pedes") == (f"{tmp_path / 'reid_raw.json'} record 3: missing key 'file_path' "
                                              "(fix or remove the record)")


def test_cuhk_and_icfg_files_under_each_others_name_get_the_name_to_use(tmp_path: Path) -> None:
    cuhk, icfg = tmp_path / "cuhk", tmp_path / "icfg"
    make_dataset(cuhk, "cuhk-pedes")
    (cuhk / "reid_raw.json").rename(cuhk / "ICFG-PEDES.json")
    assert _error(cuhk, "icfg-pedes") == (
        f"{cuhk / 'ICFG-PEDES.json'} record 6 (file_path 'CUHK01/00040.png'): unknown split 'val' (icfg-pedes splits "
        "are train, test; a file with records in train, val and test is in the cuhk-pedes format: if it is "
        "CUHK-PEDES, rename it to reid_raw.json)")
    make_dataset(icfg, "icfg-pedes")
    (icfg / "ICFG-PEDES.json").rename(icfg / "reid_raw.json")
    assert _error(icfg, "cuhk-pedes") == (
        f"{icfg / 'reid_raw.json'}: split 'val' has no records (a cuhk-pedes file needs records in train, val, test; "
        "one with train and test only is in the icfg-pedes format: if it is ICFG-PEDES, rename it to ICFG-PEDES.json)")


# --------------------------------------------------------------------------- 3: missing folders


def test_missing_image_folders_are_named(tmp_path: Path) -> None:
    """A copy of CUHK-PEDES without some of its image folders: the message names them (it
    gave the first image and a count)."""
    make_dataset(tmp_path, "cuhk-pedes")
    shutil.rmtree(tmp_path / "imgs" / "CUHK02")
    assert _error(tmp_path, "cuhk-pedes") == (
        f"{tmp_path / 'reid_raw.json'} record 1 (file_path 'CUHK02/00011.png'): image {tmp_path}/imgs/CUHK02/00011.png "
        "does not exist; 6 more image(s) of later records are missing too; folder imgs/CUHK02 does not exist "
        "(7 images) (check that the image archive was extracted completely and holds that folder)")


def test_missing_folders_at_any_depth_are_named_topmost_first_found(tmp_path: Path) -> None:
    make_dataset(tmp_path, "icfg-pedes")
    shutil.rmtree(tmp_path / "imgs" / "test")
    shutil.rmtree(tmp_path / "imgs" / "train" / "p002")
    (tmp_path / "imgs" / "train" / "p001" / "1.png").unlink()  # in a folder that exists: counted, not named
    assert _error(tmp_path, "icfg-pedes") == (
        f"{tmp_path / 'ICFG-PEDES.json'} record 1 (file_path 'train/p001/1.png'): image "
        f"{tmp_path}/imgs/train/p001/1.png does not exist; 6 more image(s) of later records are missing too; folders "
        "imgs/train/p002, imgs/test do not exist (6 images) (check that the image archive was extracted completely "
        "and holds those folders)")


def test_a_missing_folder_of_another_letter_case_is_told_so(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "rstpreid")
    records[0]["img_path"] = "TRAIN/p001/0.png"
    _rewrite(tmp_path, "rstpreid", records)
    assert _error(tmp_path, "rstpreid").endswith(
        "does not exist; folder imgs/TRAIN does not exist (1 image) (the folder name differs in letter case from "
        f"'train' in {tmp_path / 'imgs'}; file names are case-sensitive)")


# --------------------------------------------------------------------------- 4: caption_all.json

CAPTION_ALL_HINT = ("wsreid reads reid_raw.json, the annotation with the train/val/test split that the published "
                    "methods use: get it from the CUHK-PEDES authors, Person-Search-with-Natural-Language-Description "
                    "on GitHub, and put it next to imgs/; renaming caption_all.json does not work")


def test_caption_all_json_is_recognised(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    for record in records:
        del record["split"]
    (tmp_path / "reid_raw.json").unlink()
    (tmp_path / "caption_all.json").write_text(json.dumps(records))
    what = f"{tmp_path} holds caption_all.json, the original CUHK-PEDES annotation, which has no train/val/test split"
    assert _detect_error(tmp_path) == f"{what} ({CAPTION_ALL_HINT})"
    assert _error(tmp_path, "cuhk-pedes") == f"{what} ({CAPTION_ALL_HINT})"
    assert dataset_root_problem(tmp_path, "cuhk-pedes") == (what, CAPTION_ALL_HINT)
    shutil.copy(tmp_path / "caption_all.json", tmp_path / "reid_raw.json")  # renamed: no split either
    assert _error(tmp_path, "cuhk-pedes") == (
        f"{tmp_path / 'reid_raw.json'}: no record has a 'split': this is CUHK-PEDES's caption_all.json, the original "
        f"annotation without the train/val/test split ({CAPTION_ALL_HINT})")


# --------------------------------------------------------------------------- 5: path spellings


def test_path_spelling_mistakes_together_get_the_path_that_exists(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "rstpreid")
    for record in records:
        record["img_path"] = "imgs\\" + record["img_path"].replace("/", "\\")
    _rewrite(tmp_path, "rstpreid", records)
    assert _error(tmp_path, "rstpreid").endswith(
        "does not exist; 13 more image(s) of later records are missing too (the path is written with backslashes and "
        "starts with 'imgs/', to which paths are relative already; write it with '/' and remove the leading 'imgs/': "
        "'train/p001/0.png' exists)")


@pytest.mark.parametrize("in_root", [False, True])
def test_files_extracted_with_backslashes_in_their_names_are_found(tmp_path: Path, in_root: bool) -> None:
    """A Windows zip extracted by a tool that keeps the '\\' of its names: imgs/ holds
    'train\\p001\\0.png' (or the root 'imgs\\train\\p001\\0.png')."""
    records = make_dataset(tmp_path, "icfg-pedes")
    for record in records:
        name = record["file_path"].replace("/", "\\")
        (tmp_path / "imgs" / record["file_path"]).rename(tmp_path / ("imgs\\" + name) if in_root else
                                                           tmp_path / "imgs" / name)
    shutil.rmtree(tmp_path / "imgs" / "train")
    shutil.rmtree(tmp_path / "imgs" / "test")
    shown, folder = ("imgs\\train\\p001\\0.png", tmp_path) if in_root else ("train\\p001\\0.png", tmp_path / "imgs")
    assert _error(tmp_path, "icfg-pedes") == (
        f"{tmp_path / 'ICFG-PEDES.json'} record 0 (file_path 'train/p001/0.png'): image {tmp_path}/imgs/train/p001/0.png "
        f"does not exist; 9 more image(s) of later records are missing too (the files were extracted with '\\' in "
        f"their names ('{shown}' exists in {folder}); re-extract the image archive with unzip)")


# --------------------------------------------------------------------------- 6: progress of data check


def _break_two_images(root: Path) -> None:
    for rel in ("train/p001/0.png", "test/p007/1.png"):
        (root / "imgs" / rel).write_bytes(b"not a png")


def test_data_check_progress_counts_failures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_dataset(tmp_path, "rstpreid")
    _break_two_images(tmp_path)
    with pytest.raises(DataError, match="; 1 more image"):
        _run(["data", "check", str(tmp_path), "--workers", "1"])
    assert capsys.readouterr().err == "  read 14/14 images (2 failed)\n"  # was "decoded 14/14 images"


def test_a_progress_callback_of_two_arguments_still_works(tmp_path: Path) -> None:
    """check_dataset and decode_images are public: a callback written for
    ``progress(done, total)`` failed with a TypeError once the failures were passed too."""
    from wsreid.data import check_dataset

    make_dataset(tmp_path, "rstpreid")
    two, three = [], []
    check_dataset(tmp_path, "rstpreid", workers=1, progress=lambda done, total: two.append((done, total)))
    check_dataset(tmp_path, "rstpreid", workers=1, progress=lambda *args: three.append(args))
    assert two == [(14, 14)] and three == [(14, 14, 0)]


def test_data_check_progress_is_at_most_ten_lines_or_one_on_a_terminal(tmp_path: Path, monkeypatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    import wsreid.data.images as images

    monkeypatch.setattr(images, "PROGRESS_EVERY", 1)  # as if 14 images were many thousands
    make_dataset(tmp_path, "rstpreid")
    assert _run(["data", "check", str(tmp_path), "--workers", "1"]) == 0
    # one line every ceil(14 / 9) = 2 images, the last at the end: 7 lines (it was one per 1000 images)
    assert capsys.readouterr().err == "".join(f"  read {n}/14 images\n" for n in range(2, 15, 2))
    _break_two_images(tmp_path)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with pytest.raises(DataError) as caught:
        _run(["data", "check", str(tmp_path), "--workers", "1"])
    first = tmp_path / "imgs" / "train" / "p001" / "0.png"
    assert str(caught.value) == (
        f"image {first} (data_captions.json record 0) cannot be decoded (UnidentifiedImageError: cannot identify "
        f"image file '{first}') (replace the file with an intact copy or remove its record); 1 more image(s) fail too")
    assert capsys.readouterr().err == ("\r  read 2/14 images (1 failed)" + "".join(
        f"\r  read {n}/14 images ({1 if n < 14 else 2} failed)" for n in range(4, 15, 2)) + "\n")


# --------------------------------------------------------------------------- 7: documented counts


def test_documented_cuhk_pedes_check_shows_the_published_counts() -> None:
    """docs/datasets.md showed 68108 training captions; CUHK-PEDES has 68,126."""
    splits = (SplitStats("train", 11003, 34054, 68126, 0.0), SplitStats("val", 1000, 3078, 6158, 0.0),
              SplitStats("test", 1000, 3074, 6156, 0.0))
    report = format_report(DatasetReport("cuhk-pedes", Path("/data/CUHK-PEDES/reid_raw.json"), splits, 40206, 0, {}))
    docs = (REPO / "docs" / "datasets.md").read_text().splitlines()
    assert report.splitlines()[1] in docs  # the header
    for line in report.splitlines()[2:5]:  # the splits, words/caption written "..."
        counts = line[: -len(" words/caption")]
        assert any(d.startswith(counts) and d.endswith(" ...") and not d[len(counts):-3].strip() for d in docs), counts
    assert "68108" not in "\n".join(docs)  # the count the transcript showed before


# --------------------------------------------------------------------------- 8: root, empty file, UTF-16


def test_the_annotation_file_given_as_the_root_gets_its_folder(tmp_path: Path) -> None:
    make_dataset(tmp_path, "cuhk-pedes")
    given = tmp_path / "reid_raw.json"
    assert _detect_error(given) == f"dataset root {given} is the annotation file, not its folder (give its folder, {tmp_path})"
    assert _error(given, "cuhk-pedes") == (f"cuhk-pedes dataset root {given} is the annotation file, not its folder "
                                           f"(set data.root to its folder, {tmp_path})")
    assert dataset_root_problem(given, "cuhk-pedes") == (f"{given} is the annotation file, not its folder",
                                                         f"set it to its folder, {tmp_path}")


def test_an_empty_image_file_is_called_empty_also_without_decoding(tmp_path: Path) -> None:
    records = make_dataset(tmp_path, "cuhk-pedes")
    image = tmp_path / "imgs" / records[2]["file_path"]
    image.write_bytes(b"")
    expected = (f"image {image} (reid_raw.json record 2) is empty (0 bytes) (replace the file with an intact copy or "
                "remove its record)")
    for decode in (True, False):
        with pytest.raises(DataError) as info:
            check_dataset(tmp_path, "cuhk-pedes", decode=decode, workers=1)
        assert str(info.value) == expected


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_annotation_file_is_called_utf16(tmp_path: Path, encoding: str) -> None:
    records = make_dataset(tmp_path, "rstpreid")
    path = tmp_path / "data_captions.json"
    path.write_text(json.dumps(records), encoding=encoding)
    assert _error(tmp_path, "rstpreid") == f"{path} is saved as UTF-16 text, not UTF-8 (save it as UTF-8)"
    Image.new("RGB", (2, 2)).save(path, format="PNG")  # another binary file: as before
    assert _error(tmp_path, "rstpreid") == f"{path} is not UTF-8 text (byte 0) (is it the right file?)"
