"""Dataset validation and statistics (``wsreid data check``).

:func:`check_dataset` parses the annotation file like the readers do, then decodes every
image (the costly part the dataset components skip) and returns per-split statistics.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wsreid.data.images import load_image
from wsreid.data.readers import FORMATS, ImageRecord, build_splits, read_records
from wsreid.errors import DataError

__all__ = ["SplitStats", "DatasetReport", "split_statistics", "check_dataset", "format_report"]


@dataclass(frozen=True)
class SplitStats:
    """Counts of one split: distinct identities, distinct images, captions (= caption-level
    pairs), and the mean caption length in whitespace-separated words."""

    split: str
    ids: int
    images: int
    captions: int
    words_per_caption: float


@dataclass(frozen=True)
class DatasetReport:
    """Result of :func:`check_dataset`. ``shared_ids`` counts identities appearing in more
    than one split (0 for the standard benchmarks)."""

    format: str
    annotation_file: Path
    splits: tuple[SplitStats, ...]
    decoded_images: int
    shared_ids: int
    image_sizes: dict[tuple[int, int], int]  # (width, height) -> number of images


def split_statistics(records: list[ImageRecord], splits: tuple[str, ...]) -> tuple[SplitStats, ...]:
    """Per-split counts of ``records`` in the order of ``splits`` (splits without records are left out)."""
    out = []
    for split in splits:
        recs = [r for r in records if r.split == split]
        if not recs:
            continue
        captions = [c for r in recs for c in r.captions]
        words = sum(len(c.split()) for c in captions)
        out.append(
            SplitStats(
                split,
                ids=len({r.person_id for r in recs}),
                images=len({r.relative_path for r in recs}),
                captions=len(captions),
                words_per_caption=words / len(captions),
            )
        )
    return tuple(out)


def check_dataset(
    root: str | Path,
    fmt: str,
    *,
    decode: bool = True,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetReport:
    """Validate the dataset at ``root`` in format ``fmt`` and return its statistics.

    Raises :class:`DataError` on the first structural problem (as the readers do) or, after
    decoding every image, naming the first undecodable image and how many failed.
    ``progress(done, total)`` is called while decoding.
    """
    path, records = read_records(root, fmt, check_images="exists")
    build_splits(fmt, path, records, has_val=False)  # cross-record checks (one split and one id per image)
    unique: dict[Path, ImageRecord] = {}
    for r in records:
        unique.setdefault(r.image_path, r)
    sizes: dict[tuple[int, int], int] = {}
    failures: list[str] = []
    if decode:
        items = list(unique.values())

        def decode_one(r: ImageRecord) -> tuple[int, int] | str:
            try:
                return load_image(r.image_path).size
            except DataError as exc:
                return f"{exc} [{path.name} record {r.record}]"

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for done, result in enumerate(pool.map(decode_one, items), 1):
                if isinstance(result, str):
                    failures.append(result)
                else:
                    sizes[result] = sizes.get(result, 0) + 1
                if progress is not None and (done % 1000 == 0 or done == len(items)):
                    progress(done, len(items))
    if failures:
        more = f"; {len(failures) - 1} more image(s) fail too" if len(failures) > 1 else ""
        raise DataError(f"{failures[0]}{more}")
    ids_by_split: dict[str, set[int]] = {}
    for r in records:
        ids_by_split.setdefault(r.split, set()).add(r.person_id)
    all_ids: dict[int, int] = {}
    for ids in ids_by_split.values():
        for pid in ids:
            all_ids[pid] = all_ids.get(pid, 0) + 1
    return DatasetReport(
        format=fmt,
        annotation_file=path,
        splits=split_statistics(records, FORMATS[fmt].splits),
        decoded_images=len(unique) if decode else 0,
        shared_ids=sum(1 for n in all_ids.values() if n > 1),
        image_sizes=dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
    )


def format_report(report: DatasetReport) -> str:
    """A human-readable table of ``report`` (several lines, no trailing newline)."""
    lines = [f"{report.format} dataset {report.annotation_file}"]
    lines.append(f"{'split':<6} {'ids':>7} {'images':>8} {'captions':>9} {'words/caption':>14}")
    for s in report.splits:
        lines.append(f"{s.split:<6} {s.ids:>7} {s.images:>8} {s.captions:>9} {s.words_per_caption:>14.1f}")
    if report.decoded_images:
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in list(report.image_sizes.items())[:3])
        lines.append(f"all {report.decoded_images} images decode; most common sizes (width x height): {common}")
    else:
        lines.append("images exist (not decoded)")
    lines.append(f"identities in more than one split: {report.shared_ids}")
    return "\n".join(lines)
