"""A retrieval figure: query captions beside their top-k gallery images (``wsreid eval --show``).

Layout (pixels): one row per query, ``MARGIN`` around and between everything. A row is a
caption panel ``CAPTION_WIDTH`` wide, then k thumbnails of ``THUMB_H x THUMB_W`` each in a
frame ``FRAME`` wide (green: the image shows the query's person; red: it does not), with
the rank and cosine similarity written in a ``LABEL_H`` strip under each thumbnail. The
figure size is :func:`figure_size`.

Queries are spread evenly over the split (caption indices ``round(i * (Q - 1) / (N - 1))``),
so the figure shows a deterministic cross-section of the queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = [
    "CAPTION_WIDTH",
    "THUMB_H",
    "THUMB_W",
    "FRAME",
    "LABEL_H",
    "MARGIN",
    "MATCH_COLOUR",
    "MISS_COLOUR",
    "RetrievedImage",
    "figure_size",
    "query_indices",
    "top_k_rows",
    "draw_retrieval_figure",
    "write_retrieval_figure",
    "save_figure",
    "FIGURE_FORMATS",
    "figure_format",
]

CAPTION_WIDTH = 320
THUMB_H, THUMB_W = 128, 64
FRAME = 4
LABEL_H = 14
MARGIN = 8
MATCH_COLOUR = (0, 170, 0)
MISS_COLOUR = (210, 0, 0)


#: the image formats (PIL's names) a figure can be written in, chosen by the file's suffix
#: (any PIL knows for the format), each with the suffix a message suggests
FIGURE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}


def figure_format(path, name: str = "--figure ") -> str:
    """The PIL format the suffix of ``path`` names (``.jpg`` -> ``"JPEG"``; no suffix:
    ``"PNG"``), one of :data:`FIGURE_FORMATS` this PIL can write; another suffix is a
    :class:`~wsreid.errors.UserError` that lists the ones it can. ``name`` prefixes the
    path in the message."""
    from PIL import Image

    from wsreid.errors import UserError

    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    Image.init()  # every format plugin: their suffixes and writers
    writable = {ext: fmt for ext, fmt in Image.registered_extensions().items()
                if fmt in FIGURE_FORMATS and fmt in Image.SAVE}
    if suffix not in writable:
        known = [ext for fmt, ext in FIGURE_FORMATS.items() if fmt in Image.SAVE]
        raise UserError(f"{name}{path}: cannot write {suffix} images",
                        hint=f"name a {', '.join(known[:-1])} or {known[-1]} file")
    return writable[suffix]


@dataclass(frozen=True)
class RetrievedImage:
    """One retrieved gallery image: its path, 1-based rank, similarity, and whether it
    shows the query's person."""

    path: Path
    rank: int
    score: float
    match: bool


def figure_size(num_queries: int, k: int) -> tuple[int, int]:
    """(width, height) of a figure with ``num_queries`` rows of ``k`` images."""
    cell_w = THUMB_W + 2 * FRAME
    row_h = THUMB_H + 2 * FRAME + LABEL_H
    width = MARGIN + CAPTION_WIDTH + k * (MARGIN + cell_w) + MARGIN
    height = MARGIN + num_queries * (row_h + MARGIN)
    return width, height


def query_indices(num_captions: int, n: int) -> list[int]:
    """``n`` caption indices spread evenly over ``0..num_captions-1`` (fewer when there
    are fewer captions)."""
    n = min(n, num_captions)
    if n <= 0:
        return []
    if n == 1:
        return [0]
    return sorted({round(i * (num_captions - 1) / (n - 1)) for i in range(n)})


def top_k_rows(text, image, caption_person_ids: Sequence[int], image_person_ids: Sequence[int],
               image_paths: Sequence[Path], queries: Sequence[int], k: int) -> list[list[RetrievedImage]]:
    """For each query index, its top-``k`` gallery images by cosine similarity (text: Q x d,
    image: G x d, both L2-normalised; ties keep gallery order)."""
    import torch

    k = min(k, image.shape[0])
    rows = []
    for q in queries:
        scores = (text[q : q + 1] @ image.T).flatten().cpu()
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        rows.append([
            RetrievedImage(Path(image_paths[g]), rank + 1, float(scores[g]),
                           image_person_ids[g] == caption_person_ids[q])
            for rank, g in enumerate(order.tolist())
        ])
    return rows


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return lines + ([current] if current else [])


def draw_retrieval_figure(captions: Sequence[str], rows: Sequence[Sequence[RetrievedImage]], k: int):
    """A PIL image of the figure (``captions[i]`` is the caption of ``rows[i]``)."""
    from PIL import Image, ImageDraw, ImageFont

    from wsreid.data.images import load_image

    width, height = figure_size(len(rows), k)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    row_h = THUMB_H + 2 * FRAME + LABEL_H
    for i, (caption, retrieved) in enumerate(zip(captions, rows)):
        top = MARGIN + i * (row_h + MARGIN)
        line_h = 12
        lines = _wrap(draw, caption, font, CAPTION_WIDTH - 4)
        for j, line in enumerate(lines[: row_h // line_h]):
            draw.text((MARGIN, top + j * line_h), line, fill="black", font=font)
        for j, item in enumerate(retrieved[:k]):
            left = MARGIN + CAPTION_WIDTH + MARGIN + j * (MARGIN + THUMB_W + 2 * FRAME)
            colour = MATCH_COLOUR if item.match else MISS_COLOUR
            draw.rectangle([left, top, left + THUMB_W + 2 * FRAME - 1, top + THUMB_H + 2 * FRAME - 1], fill=colour)
            thumb = load_image(item.path).convert("RGB").resize((THUMB_W, THUMB_H), Image.BICUBIC)
            canvas.paste(thumb, (left + FRAME, top + FRAME))
            draw.text((left, top + THUMB_H + 2 * FRAME + 1), f"{item.rank}: {item.score:.2f}", fill="black", font=font)
    return canvas


def write_retrieval_figure(path, text, image, split, n: int, k: int) -> Path:
    """Write the figure of ``n`` evenly spread queries of ``split`` (an EvalSplit) with
    their top-``k`` images to ``path`` (in the format its suffix names, :func:`figure_format`;
    PNG without one); returns the path. The PNG is written to a
    temporary file beside ``path`` and renamed into place, so a full disk or a stop
    leaves no truncated figure (an existing one is kept); a path that cannot be written
    is a :class:`~wsreid.errors.UserError` naming it."""
    queries = query_indices(len(split.captions), n)
    k = min(k, len(split.image_paths))
    rows = top_k_rows(text, image, split.caption_person_ids, split.image_person_ids, split.image_paths, queries, k)
    figure = draw_retrieval_figure([split.captions[q] for q in queries], rows, k)
    return save_figure(figure, path)


def save_figure(figure, path) -> Path:
    """Save the PIL image ``figure`` at ``path``, in the format its suffix names
    (:func:`figure_format`: ``.png``, ``.jpg``, ...; PNG without one), through a temporary file in the
    same folder (created if missing) and a rename
    (:func:`~wsreid.fileio.write_atomically`, flushed to the disk); raises
    :class:`~wsreid.errors.UserError` (``--figure PATH: cannot write it: why``) on an
    OSError, with nothing left behind."""
    from wsreid.errors import UserError
    from wsreid.fileio import write_atomically, write_failure

    target = Path(path)
    fmt = figure_format(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda out: figure.save(out, format=fmt), fsync=True)
    except OSError as exc:
        raise UserError(f"--figure {target}: cannot write the figure: {write_failure(exc)}",
                        hint="free space, or name a path in a folder you can write to") from None
    return target
