"""A contact sheet: a PNG showing sample identities with their images and captions, so a
person can see what a dataset (synth-pedes or any CUHK-PEDES-format dataset) looks like."""

from __future__ import annotations

import errno
import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from wsreid.data.images import load_image
from wsreid.data.readers import ImageRecord, read_records
from wsreid.errors import DataError
from wsreid.fileio import cannot_create_in, disk_full, nearest_existing, write_atomically

__all__ = ["write_contact_sheet", "check_sheet_path"]

_THUMB_H, _THUMB_W = 192, 96
_TEXT_W = 620
_PAD = 10


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support
        return ImageFont.load_default()


def _pick_identities(root: Path, by_id: dict[int, list], split: str, count: int) -> list[tuple[int, str]]:
    """(person id, note) rows: near-duplicate families first (largest first), then others."""
    attrs_path = root / "synth_attributes.json"
    ids = list(by_id)
    if not attrs_path.is_file():
        return [(pid, "") for pid in ids[:count]]
    info = {i["id"]: i for i in json.loads(attrs_path.read_text(encoding="utf-8"))["identities"] if i["id"] in by_id}
    families: dict[int, list[int]] = {}
    for pid in ids:
        families.setdefault(info[pid]["family"] if pid in info else pid, []).append(pid)
    ordered = sorted(families.values(), key=lambda members: (-len(members), members[0]))
    rows: list[tuple[int, str]] = []
    for members in ordered:
        for pid in members:
            if len(rows) == count:
                return rows
            i = info.get(pid, {})
            if i.get("changed"):
                note = f"near-duplicate of id {i.get('parent', i['family'])}: changed {', '.join(i['changed'])}"
            elif len(members) > 1:
                note = "original of a near-duplicate family"
            else:
                note = ""
            rows.append((pid, note))
    return rows


def write_contact_sheet(root: str | Path, out_path: str | Path, *, identities: int = 8, split: str = "test", images_per_row: int = 6,
                        records: list[ImageRecord] | None = None) -> Path:
    """Write a PNG of ``identities`` persons of ``split`` from the CUHK-PEDES-format dataset
    at ``root``: one row per person with up to ``images_per_row`` images, the captions of
    its first image and (for synth-pedes) how near-duplicates differ. Written atomically
    (:func:`~wsreid.fileio.write_atomically`): a failed write leaves no partial file and an
    existing sheet as it was. ``records``: the dataset's records when the caller has read
    them already, their images' existence checked (as
    :func:`wsreid.data.synth.synth_records` returns them), so that the annotation file is
    not read again; None reads them from ``root`` (see docs/datasets.md)."""
    root = Path(root)
    if records is None:
        _, records = read_records(root, "cuhk-pedes", check_images="exists")
    by_id: dict[int, list] = {}
    for r in records:
        if r.split == split:
            by_id.setdefault(r.person_id, []).append(r)
    if not by_id:
        raise DataError(f"{root}: split {split!r} has no records for a contact sheet", hint="choose another split")
    rows = _pick_identities(root, by_id, split, identities)
    font, small = _font(15), _font(13)
    row_h = _THUMB_H + 2 * _PAD
    width = images_per_row * (_THUMB_W + 4) + _TEXT_W + 3 * _PAD
    height = 40 + row_h * len(rows)
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    draw.text((_PAD, 10), f"{root.name} - {split} split: {len(rows)} of {len(by_id)} identities, near-duplicate families together", fill=(0, 0, 0), font=font)
    for row, (pid, note) in enumerate(rows):
        y = 40 + row * row_h
        draw.line([(0, y), (width, y)], fill=(200, 200, 200))
        recs = by_id[pid]
        for k, r in enumerate(recs[:images_per_row]):
            img = load_image(r.image_path).resize((_THUMB_W, _THUMB_H), Image.Resampling.NEAREST)
            sheet.paste(img, (_PAD + k * (_THUMB_W + 4), y + _PAD))
        x = images_per_row * (_THUMB_W + 4) + 2 * _PAD
        lines = [(f"id {pid}: {len(recs)} images" + (f" - {note}" if note else ""), font, (0, 0, 120))]
        for caption in recs[0].captions:
            for k, part in enumerate(textwrap.wrap(caption, 78)):
                lines.append((("- " if k == 0 else "  ") + part, small, (20, 20, 20)))
        ty = y + _PAD
        for text, f, colour in lines:
            if ty > y + row_h - 18:
                break
            draw.text((x, ty), text, fill=colour, font=f)
            ty += 19
    out = Path(out_path)
    check_sheet_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, lambda f: sheet.save(f, format="PNG"))
    except OSError as exc:
        if disk_full(exc):
            raise DataError(f"cannot write the contact sheet {out}: no space left on the device",
                            hint=f"free space, or {_SHEET_HINT}") from None
        raise DataError(f"cannot write the contact sheet {out}: {exc.strerror or type(exc).__name__}",
                        hint=_SHEET_HINT) from None
    return out


_SHEET_HINT = "give --contact-sheet a PNG path in a folder you can write to, or --no-contact-sheet"


def check_sheet_path(out: str | Path) -> None:
    """The contact sheet can be written at ``out``: not a folder, no file where a folder
    should be, and a file can be created in its folder (or the nearest existing folder
    above it; missing ones are created). Raises :class:`DataError`. Cheap: called before
    a dataset is generated, so that a bad path does not wait for the rendering."""
    out = Path(out)
    if out.is_dir():
        raise DataError(f"contact sheet {out} is a folder", hint="name the PNG file, e.g. --contact-sheet sheet.png")
    folder = nearest_existing(out)
    if not folder.is_dir():
        raise DataError(f"cannot write the contact sheet {out}: {folder} is a file, not a folder", hint=_SHEET_HINT)
    exc = cannot_create_in(folder, out.name)  # no permission, a read-only or special file system
    if exc is not None:
        why = "it takes no new files" if exc.errno == errno.ENOENT else exc.strerror or type(exc).__name__
        raise DataError(f"cannot write the contact sheet {out}: cannot write in {folder}: {why}",
                        hint=_SHEET_HINT) from None
