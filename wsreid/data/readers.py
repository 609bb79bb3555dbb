"""Readers of the real text-person datasets into wsreid's record model.

Formats (docs/datasets.md); in every format images live under ``ROOT/imgs/`` and the
annotation file is a JSON list of records, one per image:

- ``cuhk-pedes``: ``ROOT/reid_raw.json``; record keys ``split`` (train|val|test),
  ``captions`` (list of str), ``file_path`` (relative to imgs/), ``id`` (int);
  ``processed_tokens`` is ignored.
- ``icfg-pedes``: ``ROOT/ICFG-PEDES.json`` (or ``ICFG_PEDES.json``); same keys, splits
  train|test only (``val`` is None).
- ``rstpreid``: ``ROOT/data_captions.json``; keys ``id``, ``img_path`` (relative to
  imgs/), ``captions``, ``split`` (train|val|test).

Training items are caption-level pairs in file order (an image with two captions gives
two :class:`~wsreid.api.PairRecord` with consecutive indices); evaluation splits list
every caption as a query and every distinct image once in the gallery.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Literal

from wsreid.api import DatasetSplits, EvalSplit, PairRecord
from wsreid.data.images import ExistenceIndex, decode_images, resolve_image_path
from wsreid.errors import DataError

__all__ = [
    "DatasetFormat",
    "FORMATS",
    "ImageRecord",
    "find_annotation_file",
    "dataset_root_problem",
    "detect_format",
    "read_records",
    "parse_records",
    "build_splits",
    "read_dataset",
    "dataset_of_records",
    "decode_records",
    "read_cuhk_pedes",
    "read_icfg_pedes",
    "read_rstpreid",
]

ImageCheck = Literal["exists", "none"]
#: What :func:`read_dataset` checks of the images: ``exists`` (every image file exists),
#: ``decode-eval`` (that, and every val/test image decodes: an evaluation split is read
#: only when it is evaluated, so a broken file would otherwise surface after training),
#: ``decode`` (every image decodes, as ``wsreid data check``), ``none``.
DatasetImageCheck = Literal["exists", "decode-eval", "decode", "none"]


@dataclass(frozen=True)
class DatasetFormat:
    """How one annotation format is laid out."""

    name: str
    annotation_files: tuple[str, ...]  # accepted file names, first found wins
    path_key: str  # record key of the image path (relative to imgs/)
    splits: tuple[str, ...]  # split names allowed in the file
    required_splits: tuple[str, ...]  # splits that must have at least one record


FORMATS: dict[str, DatasetFormat] = {
    "cuhk-pedes": DatasetFormat("cuhk-pedes", ("reid_raw.json",), "file_path", ("train", "val", "test"), ("train", "val", "test")),
    "icfg-pedes": DatasetFormat("icfg-pedes", ("ICFG-PEDES.json", "ICFG_PEDES.json"), "file_path", ("train", "test"), ("train", "test")),
    "rstpreid": DatasetFormat("rstpreid", ("data_captions.json",), "img_path", ("train", "val", "test"), ("train", "val", "test")),
}


@dataclass(frozen=True)
class ImageRecord:
    """One validated annotation record: an image with its captions.

    ``record`` is the 0-based position in the annotation file; ``relative_path`` is as
    written in the file; ``image_path`` is ``root/imgs/relative_path``, normalised
    (``./a.jpg``, ``a//b.jpg`` name ``a.jpg``, ``a/b.jpg``).
    """

    record: int
    split: str
    person_id: int
    relative_path: str
    image_path: Path
    captions: tuple[str, ...]

    @cached_property
    def image_key(self) -> str:
        """The image's path relative to imgs/ in one spelling (POSIX, without ``.``
        components or repeated slashes): two records name one file exactly when their
        keys are equal, however the paths are written. Computed once per record; a path
        already in that spelling (nearly all) is its own key."""
        rel = self.relative_path
        if "//" not in rel and "./" not in rel and not rel.endswith(("/", "/.")):
            return rel
        return PurePosixPath(rel).as_posix()


def _format(fmt: str) -> DatasetFormat:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise DataError(f"unknown dataset format {fmt!r}", hint=f"formats are: {', '.join(FORMATS)}") from None


#: The original CUHK-PEDES annotation: the records without their train/val/test split
#: (docs/datasets.md, "Real datasets").
CAPTION_ALL = "caption_all.json"
CAPTION_ALL_HINT = ("wsreid reads reid_raw.json, the annotation with the train/val/test split that the published methods "
                    "use: get it from the CUHK-PEDES authors, Person-Search-with-Natural-Language-Description on "
                    "GitHub, and put it next to imgs/; renaming caption_all.json does not work")


def _caption_all_problem(folder: Path) -> str | None:
    """What to say of ``folder`` when it holds CUHK-PEDES's ``caption_all.json`` (and no
    ``reid_raw.json``), else None."""
    if not (folder / CAPTION_ALL).is_file():
        return None
    return f"{folder} holds {CAPTION_ALL}, the original CUHK-PEDES annotation, which has no train/val/test split"


def _is_annotation_file(path: Path) -> bool:
    """Whether ``path`` is a file named as an annotation file (given instead of its folder)."""
    names = {n for spec in FORMATS.values() for n in spec.annotation_files} | {CAPTION_ALL}
    return path.name in names and path.is_file()


def find_annotation_file(root: str | Path, fmt: str) -> Path:
    """The annotation file of a dataset in format ``fmt`` under ``root`` (DataError if none)."""
    spec = _format(fmt)
    root = Path(root).expanduser()
    if _is_annotation_file(root):
        raise DataError(f"{spec.name} dataset root {root} is the annotation file, not its folder",
                        hint=f"set data.root to its folder, {root.parent}")
    if not root.is_dir():
        raise DataError(f"{spec.name} dataset root {root} is not a directory", hint="set data.root to the folder holding the annotation file and imgs/")
    for name in spec.annotation_files:
        candidate = root / name
        if candidate.is_file():
            return candidate
    caption_all = _caption_all_problem(root) if spec.name == "cuhk-pedes" else None
    if caption_all is not None:
        raise DataError(caption_all, hint=CAPTION_ALL_HINT)
    names = " or ".join(spec.annotation_files)
    hint = f"expected {names} in {root}"
    inside = dataset_folders_inside(root, fmt)
    other = _other_format(root)
    if inside:
        hint = f"did you mean the dataset folder inside it, {inside[0].as_posix()!r}?"
    elif other is not None:
        hint = f"it holds {other[1]}, the {other[0]} format"
    raise DataError(f"{spec.name} annotation file {root / spec.annotation_files[0]} not found", hint=hint)


def annotation_files_in(folder: Path) -> list[tuple[str, str]]:
    """(format, annotation file name) of each format whose annotation file is in
    ``folder`` (the first name found per format)."""
    found = []
    for spec in FORMATS.values():
        name = next((n for n in spec.annotation_files if (folder / n).is_file()), None)
        if name is not None:
            found.append((spec.name, name))
    return found


def formats_in(folder: Path) -> list[str]:
    """The formats whose annotation file is in ``folder``."""
    return [fmt for fmt, _ in annotation_files_in(folder)]


def _other_format(folder: Path) -> tuple[str, str] | None:
    """(format, annotation file name) of the first format whose file is in ``folder``."""
    return next(iter(annotation_files_in(folder)), None)


def dataset_folders_inside(folder: Path, fmt: str | None = None) -> list[Path]:
    """The folders directly inside ``folder`` holding an annotation file (of ``fmt``, or
    of any format), sorted; empty when ``folder`` cannot be listed."""
    try:
        inside = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p for p in inside if (fmt in formats_in(p) if fmt else formats_in(p))]


def dataset_root_problem(root: str | Path, fmt: str) -> tuple[str, str] | None:
    """What is wrong with ``root`` as the dataset folder of format ``fmt``, as (what, what
    to do), or None when its annotation file is there. A root that holds the dataset
    folder one level down (the parent folder was given) gets that folder suggested, and
    one holding another format's annotation file that format's dataset."""
    spec = _format(fmt)
    path = Path(root).expanduser()
    names = " or ".join(spec.annotation_files)
    if not path.exists():
        return f"folder {root} does not exist", f"set it to the {spec.name} folder holding {names} and imgs/"
    if _is_annotation_file(path):
        return f"{root} is the annotation file, not its folder", f"set it to its folder, {Path(root).parent}"
    if not path.is_dir():
        return f"{root} is a file, not a folder", f"set it to the {spec.name} folder holding {names} and imgs/"
    if any((path / n).is_file() for n in spec.annotation_files):
        return None
    caption_all = _caption_all_problem(path) if spec.name == "cuhk-pedes" else None
    if caption_all is not None:
        return caption_all, CAPTION_ALL_HINT
    inside = dataset_folders_inside(path, fmt)
    if inside:
        found = next(n for n in spec.annotation_files if (inside[0] / n).is_file())
        suggestion = (Path(root) / inside[0].name).as_posix()
        return (f"{root} has no {names}",
                f"did you mean the dataset folder inside it, {suggestion!r} (it holds {found})?")
    other = _other_format(path)
    if other is not None:
        return (f"{root} has no {names}",
                f"it holds {other[1]} (the {other[0]} format): use the dataset {other[0]!r} (data.name: {other[0]})")
    return f"{root} has no {names}", f"set it to the {spec.name} folder holding {names} and imgs/"


def detect_format(root: str | Path) -> str:
    """The format whose annotation file exists under ``root`` (DataError if none or several)."""
    root = Path(root).expanduser()
    if _is_annotation_file(root):
        raise DataError(f"dataset root {root} is the annotation file, not its folder", hint=f"give its folder, {root.parent}")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a directory", hint="give the folder holding the annotation file and imgs/")
    found = formats_in(root)
    if len(found) == 1:
        return found[0]
    files = ", ".join(n for spec in FORMATS.values() for n in spec.annotation_files)
    caption_all = None if found else _caption_all_problem(root)
    if caption_all is not None:
        raise DataError(caption_all, hint=CAPTION_ALL_HINT)
    if not found:
        inside = dataset_folders_inside(root)
        if inside:
            listed = " or ".join(repr(p.as_posix()) for p in inside[:3])
            raise DataError(f"no annotation file found in {root}", hint=f"did you mean the dataset folder inside it, {listed}?")
        raise DataError(f"no annotation file found in {root}", hint=f"expected one of {files}, or give --format")
    raise DataError(f"{root} holds annotation files of several formats ({', '.join(found)})", hint="give --format")


def json_error_hint(text: str, exc: json.JSONDecodeError) -> str:
    """What to do about a JSON syntax error, from what is found where it happened: a
    byte-order mark, a comma before a closing bracket, an end before the data is complete,
    or else a generic pointer."""
    if text.startswith("\ufeff"):
        return "the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM"
    before = text[: exc.pos].rstrip()
    after = text[exc.pos :].lstrip()
    if before.endswith(",") and after[:1] in ("]", "}"):
        return "remove the trailing comma before the closing bracket (JSON allows none)"
    unterminated = exc.msg.startswith("Unterminated string") and '"' not in text[exc.pos + 1 :]
    if not after or unterminated:
        return "the file ends before the data is complete: it may be truncated; restore it from the original archive"
    if after[:1] == "'" or (exc.msg.startswith("Expecting property name") and after[:1] not in ("}", '"')):
        return "JSON strings and keys need double quotes"
    return "fix the JSON syntax at that position"


def _load_json(path: Path) -> list:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror}") from None
    if _is_utf16(data):  # read as UTF-8 it fails at its byte-order mark, or at its zero bytes as JSON
        raise DataError(f"{path} is saved as UTF-16 text, not UTF-8", hint="save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start})", hint="is it the right file?") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            hint=json_error_hint(text, exc),
        ) from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, found a {type(data).__name__}")
    return data


def _is_utf16(data: bytes) -> bool:
    """Whether ``data`` reads as UTF-16 text: a UTF-16 byte-order mark, or a JSON file's
    first character (``[``, ``{`` or white space) next to a zero byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    return data[:2] in {c + b"\x00" for c in (b"[", b"{", b" ", b"\n", b"\r", b"\t")} | \
        {b"\x00" + c for c in (b"[", b"{", b" ", b"\n", b"\r", b"\t")}


def _person_id(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    shown = json.dumps(value) if isinstance(value, bool) or value is None else repr(value)  # as the file writes it
    raise DataError(f"{where}: 'id' must be an integer, found {shown}", hint="fix or remove the record")


def _captions(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DataError(f"{where}: 'captions' must be a list of strings, found {type(value).__name__}", hint="fix or remove the record")
    if not value:
        raise DataError(f"{where}: the caption list is empty", hint="add at least one caption or remove the record")
    out = []
    for k, caption in enumerate(value):
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{where}: caption {k} is empty or not a string ({caption!r})", hint="fix or remove the caption")
        out.append(caption.strip())
    return tuple(out)


def read_records(root: str | Path, fmt: str, *, check_images: ImageCheck = "exists") -> tuple[Path, list[ImageRecord]]:
    """Parse and validate the annotation file of ``root``; returns (file, records).

    Every record is checked for its keys, split, id, captions and image path (relative,
    inside the root). With ``check_images="exists"`` each referenced image must exist
    (one directory listing per folder; decoding is left to ``check_dataset``). Any
    problem raises :class:`DataError` naming the file and the record.
    """
    path = find_annotation_file(root, fmt)
    return path, parse_records(path, _load_json(path), fmt, check_images=check_images)


def parse_records(path: Path, raw: list, fmt: str, *, check_images: ImageCheck = "exists") -> list[ImageRecord]:
    """Validate ``raw``, the parsed annotation file ``path`` of format ``fmt`` (a JSON
    list), as :func:`read_records` does; returns its records."""
    spec = _format(fmt)
    image_dir = path.parent / "imgs"
    if check_images == "exists" and raw and not image_dir.is_dir():
        raise DataError(f"image folder {image_dir} not found (next to {path.name})", hint="extract the images into imgs/ under the dataset root")
    required = ("split", "captions", spec.path_key, "id")
    index = ExistenceIndex()
    records: list[ImageRecord] = []
    for i, rec in enumerate(raw):
        where = f"{path} record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, found {type(rec).__name__}")
        rel = rec.get(spec.path_key)
        if isinstance(rel, str):
            where = f"{where} ({spec.path_key} {rel!r})"
        missing = [k for k in required if k not in rec]
        if missing:
            _check_records_format(path, raw, spec)
            raise DataError(f"{where}: missing key {', '.join(repr(k) for k in missing)}", hint="fix or remove the record")
        split = rec["split"]
        if split not in spec.splits:
            hint = f"{spec.name} splits are {', '.join(spec.splits)}"
            if spec.name == "icfg-pedes" and split == "val" and _splits_of(raw) == {"train", "val", "test"}:
                hint += ("; a file with records in train, val and test is in the cuhk-pedes format: if it is "
                         "CUHK-PEDES, rename it to reid_raw.json")
            raise DataError(f"{where}: unknown split {split!r}", hint=hint)
        person_id = _person_id(rec["id"], where)
        captions = _captions(rec["captions"], where)
        image_path = resolve_image_path(image_dir, rel, where=where)
        problem = index.problem(image_path) if check_images == "exists" else None
        if problem == "does not exist":
            from wsreid.data.synth.damage import damaged_image  # here: wsreid.data.synth reads datasets with this module

            gone = _missing_images_after(raw, i, spec.path_key, image_dir, index, image_path)
            more = f"; {len(gone) - 1} more image(s) of later records are missing too" if len(gone) > 1 else ""
            hint = missing_image_hint(index, image_dir, rel)
            if hint == MISSING_IMAGE_HINT:  # no other spelling exists: say which folders are missing
                folders, hint = _missing_folders(gone, image_dir, index)
                more += folders
            raise damaged_image(image_path, f" ({path.name} record {i}) is missing") or DataError(
                f"{where}: image {image_path} does not exist{more}", hint=hint)
        if problem is not None:  # a folder, a broken symbolic link, an unreadable folder: it would fail in training
            raise DataError(f"{where}: image {image_path} {problem}",
                            hint="give the folder read permission" if problem.startswith("cannot be read") else
                            "the record must name an image file; fix the path or the file")
        records.append(ImageRecord(i, split, person_id, rel, image_path, captions))
    counts = {s: 0 for s in spec.splits}
    for r in records:
        counts[r.split] += 1
    for split in spec.required_splits:
        if counts[split] == 0:
            hint = f"a {spec.name} file needs records in {', '.join(spec.required_splits)}"
            if spec.name == "cuhk-pedes" and split == "val":
                hint += ("; one with train and test only is in the icfg-pedes format: if it is ICFG-PEDES, rename "
                         "it to ICFG-PEDES.json")
            raise DataError(f"{path}: split {split!r} has no records", hint=hint)
    return records


def _splits_of(raw: list) -> set:
    """The split names the records of ``raw`` give (hashable ones)."""
    return {r.get("split") for r in raw if isinstance(r, dict) and isinstance(r.get("split"), str)}


def _check_records_format(path: Path, raw: list, spec: DatasetFormat) -> None:
    """Raise the right error when no record of ``raw`` has a key format ``spec`` needs
    because the file is in another format: another format's image path key
    (``img_path`` for ``file_path``), or CUHK-PEDES's ``caption_all.json`` (no ``split``)
    under the name ``reid_raw.json``. A key only some records lack is left to the
    per-record message."""
    objects = [r for r in raw if isinstance(r, dict)]
    if not objects or len(objects) != len(raw):
        return
    if all(spec.path_key not in r for r in objects):
        for key in sorted({f.path_key for f in FORMATS.values()} - {spec.path_key}):
            if all(key in r for r in objects):
                others = [f for f in FORMATS.values() if f.path_key == key]
                if len(others) > 1:  # cuhk-pedes and icfg-pedes: told apart by the val split
                    others = [f for f in others if ("val" in f.splits) == ("val" in _splits_of(raw))] or others
                other = others[0]
                raise DataError(f"{path}: the records have {key!r}, not {spec.path_key!r}: this is the {other.name} "
                                f"format", hint=f"rename the file to {other.annotation_files[0]}")
    if spec.name == "cuhk-pedes" and all("split" not in r for r in objects):
        raise DataError(f"{path}: no record has a 'split': this is CUHK-PEDES's {CAPTION_ALL}, the original "
                        "annotation without the train/val/test split", hint=CAPTION_ALL_HINT)


def _missing_images_after(raw: list, first: int, path_key: str, image_dir: Path, index: ExistenceIndex,
                          found: Path) -> list[Path]:
    """``found`` and the other images the records after ``raw[first]`` name that do not
    exist (each image once; records with other problems are left to be reported once
    these are fixed), so that one load says how many are missing, not only the first."""
    missing: dict[Path, None] = {found: None}
    for rec in raw[first + 1:]:
        rel = rec.get(path_key) if isinstance(rec, dict) else None
        try:
            image_path = resolve_image_path(image_dir, rel, where="")
        except DataError:
            continue
        if image_path not in missing and index.problem(image_path) == "does not exist":
            missing[image_path] = None
    return list(missing)


#: Missing folders named in the message of a missing image (the rest are counted).
MISSING_FOLDERS_SHOWN = 5


def _missing_folders(images: list[Path], image_dir: Path, index: ExistenceIndex) -> tuple[str, str]:
    """(text added to the message, hint) for missing ``images``: the topmost folders
    under ``image_dir`` that do not exist, written from the dataset root, and how many
    of the images they hold (``; folders imgs/Market, imgs/train_query do not exist (16
    images)``: the part of the archive to fetch); ("", the generic hint) when every
    folder exists."""
    folders: dict[Path, int] = {}
    for image in images:
        folder = image_dir
        for part in image.relative_to(image_dir).parts[:-1]:
            if part not in index.names(folder):
                folders[folder / part] = folders.get(folder / part, 0) + 1
                break
            folder = folder / part
    if not folders:
        return "", MISSING_IMAGE_HINT
    names = [(Path(image_dir.name) / f.relative_to(image_dir)).as_posix() for f in folders]
    shown = ", ".join(names[:MISSING_FOLDERS_SHOWN])
    if len(names) > MISSING_FOLDERS_SHOWN:
        shown += f" and {len(names) - MISSING_FOLDERS_SHOWN} more"
    held = sum(folders.values())
    what = f"folder {shown} does not exist" if len(names) == 1 else f"folders {shown} do not exist"
    which = "that folder" if len(names) == 1 else "those folders"
    first = next(iter(folders))
    same_but_case = sorted(n for n in index.names(first.parent) if n.lower() == first.name.lower())
    hint = (f"the folder name differs in letter case from {same_but_case[0]!r} in {first.parent}; file names are "
            "case-sensitive") if same_but_case else \
        f"check that the image archive was extracted completely and holds {which}"
    return f"; {what} ({held} image{'s' if held != 1 else ''})", hint


#: The hint for a missing image when no other spelling of its path exists.
MISSING_IMAGE_HINT = "check that the image archive was extracted completely"

#: Spelling mistakes of a record's image path: (whether it applies, the path fixed, what
#: is wrong, what to do, the advice when it is the only mistake); tried alone and together
#: (docs/datasets.md).
_PATH_FIXES = (
    (lambda rel: "\\" in rel, lambda rel: rel.replace("\\", "/"), "is written with backslashes", "write it with '/'",
     "the path is written with backslashes; write it with '/'"),
    (lambda rel: rel != rel.strip(), lambda rel: rel.strip(), "has spaces around it", "remove them",
     "the path has spaces around it; remove them"),
    (lambda rel: rel.startswith(("imgs/", "./imgs/")), lambda rel: rel.split("imgs/", 1)[-1],
     "starts with 'imgs/', to which paths are relative already", "remove the leading 'imgs/'",
     "paths are relative to imgs/ already; remove the leading 'imgs/'"),
)


def _path_variants(relative: str) -> list[tuple[str, str]]:
    """(path, advice) for each single spelling fix of ``relative`` (the advice as it has
    always read), then each combination of them, applied in order."""
    variants = []
    for size in range(1, len(_PATH_FIXES) + 1):
        for chosen in itertools.combinations(_PATH_FIXES, size):
            path = relative
            for applies, fix, *_ in chosen:
                if not applies(path):
                    break
                path = fix(path)
            else:
                advice = chosen[0][4] if size == 1 else \
                    f"the path {' and '.join(c[2] for c in chosen)}; {' and '.join(c[3] for c in chosen)}"
                variants.append((path, advice))
    return variants


def missing_image_hint(index: ExistenceIndex, image_dir: Path, relative: str) -> str:
    """What to do about a record whose image ``image_dir/relative`` does not exist: when
    a file exists under a likely variant of the path (backslashes, a leading ``imgs/``,
    spaces around it, those together, another Unicode normalisation or letter case of its
    name, or a file whose name holds the path with backslashes: a Windows archive
    extracted by a tool that kept them), the variant; else :data:`MISSING_IMAGE_HINT`."""
    def found(candidate: str) -> Path | None:
        try:
            target = resolve_image_path(image_dir, candidate, where="")
        except DataError:
            return None
        return target if index.exists(target) else None

    variants = [(True, path, advice) for path, advice in _path_variants(relative)]
    for form in ("NFC", "NFD"):
        variant = unicodedata.normalize(form, relative)
        variants.append((variant != relative, variant,
                         f"the file name is written in another Unicode form ({form}); write it as the file system has it"))
    for applies, variant, advice in variants:
        if applies and found(variant) is not None:
            return f"{advice}: {variant!r} exists"
    posix = PurePosixPath(relative.strip().replace("\\", "/")).as_posix()
    windows = posix.replace("/", "\\")
    for folder, name in ((image_dir, windows), (image_dir.parent, f"{image_dir.name}\\{windows}")):
        if "\\" in name and index.exists(folder / name):
            return (f"the files were extracted with '\\' in their names ('{name}' exists in {folder}); re-extract the "
                    "image archive with unzip")
    target = resolve_image_path(image_dir, relative, where="")
    listing = index.names(target.parent)
    same_but_case = sorted(n for n in listing if n.lower() == target.name.lower()) if listing else []
    if same_but_case:
        return f"the file name differs in letter case from {same_but_case[0]!r} in {target.parent}; file names are case-sensitive"
    return MISSING_IMAGE_HINT


def _check_images_unique(path: Path, records: list[ImageRecord]) -> None:
    """One split and one id per image, the image named however its path is spelled
    (``./a.jpg`` and ``a.jpg`` are one file: a test image written both ways would
    otherwise be trained on and searched for)."""
    seen: dict[str, ImageRecord] = {}
    for r in records:
        first = seen.setdefault(r.image_key, r)
        if first is r:
            continue
        spelled = "" if first.relative_path == r.relative_path else f" (written {first.relative_path!r} there: the same file)"
        if first.split != r.split:
            raise DataError(
                f"{path} record {r.record}: image {r.relative_path!r} is in split {r.split!r} but record {first.record} puts it in {first.split!r}{spelled}",
                hint="an image must belong to one split",
            )
        if first.person_id != r.person_id:
            raise DataError(
                f"{path} record {r.record}: image {r.relative_path!r} has id {r.person_id} but record {first.record} gives it id {first.person_id}{spelled}",
                hint="an image shows one person",
            )


def _eval_split(records: list[ImageRecord]) -> EvalSplit:
    captions, caption_ids, image_paths, image_ids = [], [], [], []
    seen: set[str] = set()
    for r in records:
        captions.extend(r.captions)
        caption_ids.extend([r.person_id] * len(r.captions))
        if r.image_key not in seen:
            seen.add(r.image_key)
            image_paths.append(r.image_path)
            image_ids.append(r.person_id)
    return EvalSplit(captions, caption_ids, image_paths, image_ids)


def build_splits(name: str, path: Path, records: list[ImageRecord], *, has_val: bool) -> DatasetSplits:
    """Turn validated records into :class:`DatasetSplits`.

    Train: one PairRecord per caption, ``index`` 0..N-1 in file order, ``image_id`` 0..M-1
    by first appearance of each image. ``val`` is None when ``has_val`` is False.
    """
    _check_images_unique(path, records)
    train: list[PairRecord] = []
    image_ids: dict[str, int] = {}
    for r in records:
        if r.split != "train":
            continue
        image_id = image_ids.setdefault(r.image_key, len(image_ids))
        for caption in r.captions:
            train.append(PairRecord(len(train), r.image_path, caption, image_id, r.person_id))
    test = _eval_split([r for r in records if r.split == "test"])
    val = _eval_split([r for r in records if r.split == "val"]) if has_val else None
    return DatasetSplits(name=name, train=train, test=test, val=val, root=path.parent)


def read_dataset(root: str | Path, fmt: str, *, check_images: DatasetImageCheck = "exists", name: str | None = None,
                 workers: int = 4) -> DatasetSplits:
    """Read a dataset in format ``fmt`` (a key of :data:`FORMATS`) from ``root``.

    ``check_images`` (:data:`DatasetImageCheck`): with ``decode-eval`` or ``decode`` the
    images of the evaluation splits (or of every split) are decoded with ``workers``
    threads, and the first that fails raises :class:`DataError` naming the file, its
    record and how many more fail."""
    path, records = read_records(root, fmt, check_images="none" if check_images == "none" else "exists")
    return dataset_of_records(path, records, fmt, check_images=check_images, name=name, workers=workers)


def dataset_of_records(path: Path, records: list[ImageRecord], fmt: str, *, check_images: DatasetImageCheck = "exists",
                       name: str | None = None, workers: int = 4) -> DatasetSplits:
    """The :class:`DatasetSplits` of ``records`` (read from the annotation file ``path``
    of format ``fmt``, their images' existence already checked as ``check_images`` asks):
    the rest of :func:`read_dataset`, decoding what ``check_images`` asks to decode."""
    spec = _format(fmt)
    if check_images in ("decode-eval", "decode"):
        decode_records(path, records, None if check_images == "decode" else ("val", "test"), workers=workers)
    return build_splits(name or spec.name, path, records, has_val="val" in spec.splits)


def decode_records(path: Path, records: list[ImageRecord], splits: tuple[str, ...] | None, *, workers: int = 4) -> int:
    """Decode the image of every record in ``splits`` (every split when None), each file
    once; returns how many were decoded. Raises :class:`DataError` on the first failure."""
    seen: dict[Path, ImageRecord] = {}
    for r in records:
        if splits is None or r.split in splits:
            seen.setdefault(r.image_path, r)
    items = [(r.image_path, f"{path.name} record {r.record}, split {r.split}") for r in seen.values()]
    _, failures = decode_images(items, workers=workers)
    if failures:
        more = f"; {len(failures) - 1} more image(s) fail too" if len(failures) > 1 else ""
        raise DataError(f"{failures[0]}{more}")
    return len(items)


def read_cuhk_pedes(root: str | Path, *, check_images: ImageCheck = "exists") -> DatasetSplits:
    """CUHK-PEDES (``reid_raw.json`` + ``imgs/``) as :class:`DatasetSplits`."""
    return read_dataset(root, "cuhk-pedes", check_images=check_images)


def read_icfg_pedes(root: str | Path, *, check_images: ImageCheck = "exists") -> DatasetSplits:
    """ICFG-PEDES (``ICFG-PEDES.json`` or ``ICFG_PEDES.json`` + ``imgs/``); ``val`` is None."""
    return read_dataset(root, "icfg-pedes", check_images=check_images)


def read_rstpreid(root: str | Path, *, check_images: ImageCheck = "exists") -> DatasetSplits:
    """RSTPReid (``data_captions.json`` + ``imgs/``) as :class:`DatasetSplits`."""
    return read_dataset(root, "rstpreid", check_images=check_images)
