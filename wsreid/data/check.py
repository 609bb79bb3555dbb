"""Dataset validation and statistics (``wsreid data check``).

:func:`check_dataset` parses the annotation file like the readers do, then decodes every
image (the costly part the dataset components skip) and returns per-split statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Iterable

from wsreid.data.images import decode_images, is_empty_file
from wsreid.data.readers import FORMATS, ImageRecord, build_splits, read_records
from wsreid.errors import DataError

__all__ = ["SplitStats", "DatasetReport", "split_statistics", "same_identity_pair_rate", "check_dataset", "format_report"]


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
    than one split (0 for the standard benchmarks); ``repeated_records`` lists records
    that repeat an earlier one exactly (none in the standard benchmarks)."""

    format: str
    annotation_file: Path
    splits: tuple[SplitStats, ...]
    decoded_images: int
    shared_ids: int
    image_sizes: dict[tuple[int, int], int]  # (width, height) -> number of images
    #: person id -> the splits it appears in, for every id in more than one split
    shared_id_splits: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: (record, earlier record it repeats exactly: split, id, image and captions), in file order
    repeated_records: tuple[tuple[int, int], ...] = ()


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
                images=len({r.image_key for r in recs}),
                captions=len(captions),
                words_per_caption=words / len(captions),
            )
        )
    return tuple(out)


def same_identity_pair_rate(person_ids: Iterable[Hashable], image_ids: Iterable[Hashable] | None = None) -> float:
    """Share of the ordered pairs of distinct items (``i != j``) that show one person: the
    precision a relation picking pairs at random would have (the "base rate" against which
    docs/results.md reads LRC's relation precision). Items are image-caption pairs, one
    identity label each; with ``n`` items and ``c_p`` items of person ``p`` it is
    ``sum_p c_p (c_p - 1) / (n (n - 1))``. With ``image_ids`` (one per item, in the same
    order) the pairs of two items of one image (two captions of it) are left out of both
    counts: the base rate of ``relation_precision_other_images``. Raises ``ValueError`` for
    fewer than 2 items, or no pair of two images."""
    persons = list(person_ids)
    counts = Counter(persons)
    n = len(persons)
    if n < 2:
        raise ValueError(f"same_identity_pair_rate needs at least 2 items, got {n}")
    same_person = sum(c * (c - 1) for c in counts.values())
    pairs = n * (n - 1)
    if image_ids is not None:
        images = list(image_ids)
        if len(images) != n:
            raise ValueError(f"same_identity_pair_rate: {len(images)} image ids for {n} items")
        # pairs of one image show one person (one image, one person), so they leave both counts
        same_image = sum(c * (c - 1) for c in Counter(images).values())
        same_person -= same_image
        pairs -= same_image
        if pairs == 0:
            raise ValueError("same_identity_pair_rate: every pair of items shows one image")
    return same_person / pairs


def check_dataset(
    root: str | Path,
    fmt: str,
    *,
    decode: bool = True,
    workers: int = 4,
    progress: Callable[[int, int, int], None] | None = None,
) -> DatasetReport:
    """Validate the dataset at ``root`` in format ``fmt`` and return its statistics.

    Raises :class:`DataError` on the first structural problem (as the readers do) or, after
    decoding every image (without ``decode``: sizing every image file), naming the first
    undecodable (empty) image and how many failed. ``progress(done, total, failed)`` is
    called while decoding (``(done, total)`` for a callback of two arguments).
    """
    path, records = read_records(root, fmt, check_images="exists")
    build_splits(fmt, path, records, has_val=False)  # cross-record checks (one split and one id per image)
    unique: dict[Path, ImageRecord] = {}
    for r in records:
        unique.setdefault(r.image_path, r)
    sizes: dict[tuple[int, int], int] = {}
    failures: list[str] = []
    if decode:
        items = [(r.image_path, f"{path.name} record {r.record}") for r in unique.values()]
        sizes, failures = decode_images(items, workers=workers, progress=progress)
    else:  # existence is known; an empty file (a copy that never got its data) is cheap to find too
        failures = [f"image {r.image_path} ({path.name} record {r.record}) is empty (0 bytes) (replace the file with "
                    "an intact copy or remove its record)" for r in unique.values() if is_empty_file(r.image_path)]
    if failures:
        more = f"; {len(failures) - 1} more image(s) fail too" if len(failures) > 1 else ""
        raise DataError(f"{failures[0]}{more}")
    splits_of_id: dict[int, list[str]] = {}
    for split in FORMATS[fmt].splits:
        for pid in sorted({r.person_id for r in records if r.split == split}):
            splits_of_id.setdefault(pid, []).append(split)
    shared = {pid: tuple(s) for pid, s in sorted(splits_of_id.items()) if len(s) > 1}
    first_of: dict[tuple, int] = {}
    repeated = []
    for r in records:
        earlier = first_of.setdefault((r.split, r.person_id, r.image_key, r.captions), r.record)
        if earlier != r.record:
            repeated.append((r.record, earlier))
    return DatasetReport(
        format=fmt,
        annotation_file=path,
        splits=split_statistics(records, FORMATS[fmt].splits),
        decoded_images=len(unique) if decode else 0,
        shared_ids=len(shared),
        image_sizes=dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        shared_id_splits=shared,
        repeated_records=tuple(repeated),
    )


#: Shared identities named in :func:`format_report` (the rest are counted).
SHARED_IDS_SHOWN = 10


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
    line = f"identities in more than one split: {report.shared_ids}"
    if report.shared_id_splits:
        shown = list(report.shared_id_splits.items())[:SHARED_IDS_SHOWN]
        line += " (" + "; ".join(f"id {pid} in {', '.join(splits)}" for pid, splits in shown)
        more = report.shared_ids - len(shown)
        line += f"; {more} more)" if more > 0 else ")"
    lines.append(line)
    if report.repeated_records:
        shown = report.repeated_records[:SHARED_IDS_SHOWN]
        more = len(report.repeated_records) - len(shown)
        lines.append(f"records repeating an earlier record exactly (their pairs and queries count twice): "
                     f"{len(report.repeated_records)} (" + "; ".join(f"record {r} = record {e}" for r, e in shown)
                     + (f"; {more} more)" if more > 0 else ")"))
    return "\n".join(lines)
