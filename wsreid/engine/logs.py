"""Run logs: CSV (steps and epochs), TensorBoard, and a PNG of the training curves.
Only the main process writes."""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from wsreid.errors import TrainingError
from wsreid.fileio import write_atomically, write_failure, write_fix


STEP_TAG_PREFIX = "train/"
"""TensorBoard tags of step values (x axis: the optimizer step); the other tags hold epoch
values (x axis: the epoch)."""


class RunLogger:
    """Step and epoch logs of a run: ``logs/steps.csv``, ``logs/epochs.csv`` and
    TensorBoard events (main process only; a no-op elsewhere). The TensorBoard writer is
    opened at the first value logged, so that a resumed run whose attempt stopped before
    logging anything adds no empty events file."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.dir = run_dir / "logs"
        self.enabled = enabled
        self._tb = None
        self._fields: dict[str, list[str]] = {}  # file name -> its header, once read
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _writer(self):
        """The TensorBoard writer, opened on first use; None without tensorboard."""
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                return None
            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        return self._tb

    def _header(self, path: Path) -> list[str]:
        """The column names of a log file: remembered after the first read, so that a step
        appends one row without reading the file again (the header alone is read once)."""
        fields = self._fields.get(path.name)
        if fields is None:
            with path.open(newline="") as f:
                fields = next(csv.reader(f), [])
            self._fields[path.name] = fields
        return fields

    def _append(self, name: str, row: dict) -> None:
        path = self.dir / name
        fields = list(row)
        if path.exists():
            old = self._header(path)
            if old and set(fields) - set(old):
                # a new column appeared (rare: DGIA's epoch 2): rewrite the file with the wider
                # header, atomically - written in place, a stop or a full disk then lost its rows
                fields = old + [k for k in fields if k not in old]
                with path.open(newline="") as f:
                    existing = list(csv.DictReader(f))
                text = io.StringIO(newline="")
                w = csv.DictWriter(text, fieldnames=fields)
                w.writeheader()
                w.writerows(existing)
                w.writerow(row)
                write_atomically(path, text.getvalue())
                self._fields[name] = fields
                return
            if old:
                with path.open("a", newline="") as f:
                    csv.DictWriter(f, fieldnames=old).writerow(row)
                return
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerow(row)
        self._fields[name] = fields

    @contextmanager
    def _writing(self, what: str):
        """Around a write of the logs: a failure to write (a full disk; TensorBoard's writer
        thread reports its own at the next call) is one :class:`TrainingError` line, not
        a traceback."""
        try:
            yield
        except OSError as exc:
            raise TrainingError(f"cannot update the run's log {self.dir / what}: {write_failure(exc)}",
                                hint=f"{write_fix(exc)}, then run the command again (with --resume once the run has a "
                                     "checkpoint: the logs are cut back to it)") from None

    def step(self, step: int, epoch: int, values: dict[str, float]) -> None:
        """Log one training step's values."""
        if not self.enabled:
            return
        with self._writing("steps.csv"):
            self._append("steps.csv", {"step": step, "epoch": epoch, **values})
        with self._writing("tensorboard"):
            tb = self._writer()
            if tb:
                for k, v in values.items():
                    tb.add_scalar(f"{STEP_TAG_PREFIX}{k}", v, step)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        """Log one epoch's values (losses, lr, evaluation, diagnostics)."""
        if not self.enabled:
            return
        with self._writing("epochs.csv"):
            self._append("epochs.csv", {"epoch": epoch, **values})
        with self._writing("tensorboard"):
            tb = self._writer()
            if tb:
                for k, v in values.items():
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        tb.add_scalar(k, v, epoch)
                tb.flush()

    def truncate(self, epoch: int, step: int) -> None:
        """Drop rows written after a checkpoint (used on resume), and the TensorBoard points
        after it: step values after ``step``, epoch values after ``epoch``
        (:func:`cut_tensorboard`; TensorBoard's own purge on restart works by one step
        number, which cannot cut both axes). A log damaged by a crash is cut back too
        (:func:`cut_log`): its unreadable rows are dropped, or, when its header is
        unreadable, it starts afresh - each with one ``warning:`` line, never an error."""
        if not self.enabled:
            return
        self._fields.clear()  # the files are rewritten below: their headers are read again
        if self._tb:
            self._tb.close()
            self._tb = None
        cuts = [(self.dir / "steps.csv", lambda path: cut_log(path, "step", step)),
                (self.dir / "epochs.csv", lambda path: cut_log(path, "epoch", epoch)),
                (self.dir / "tensorboard", lambda path: cut_tensorboard(path, epoch, step))]
        for path, cut in cuts:
            try:
                warning = cut(path)
            except OSError as exc:
                raise TrainingError(f"cannot cut the log {path} back to the checkpoint: {exc.strerror or exc}",
                                    hint="check the permissions and free space of the run directory, then "
                                         "resume again") from None
            if warning:
                print(f"warning: {warning}", file=sys.stderr, flush=True)

    def close(self, *, quiet: bool = False) -> None:
        """Close the TensorBoard writer (when it was opened). ``quiet``: a write error it
        reports is dropped (closing after another error, which is the one to report)."""
        if self._tb:
            tb, self._tb = self._tb, None
            try:
                with self._writing("tensorboard"):
                    tb.close()
            except TrainingError:
                if not quiet:
                    raise


def cut_log(path: Path, key: str, limit: int) -> str | None:
    """Keep the rows of the log CSV ``path`` whose integer column ``key`` is at most
    ``limit`` (the rows a checkpoint covers). Rows that cannot be read - a line a crash cut
    short or filled with NUL bytes, a ``key`` that is no integer, a row with another number
    of fields than the header - are dropped; a file whose header has no ``key`` column is
    moved aside to ``<name>.damaged`` and the log starts afresh. Returns the warning to
    print (one line naming the file), or None when nothing unreadable was found."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return None
    header = _csv_fields(lines[0])
    if header is None or key not in header:
        damaged = path.with_name(path.name + ".damaged")
        os.replace(path, damaged)
        return (f"{path}: its header is unreadable (no {key!r} column), so the log starts afresh; the damaged "
                f"file is kept as {damaged}")
    column = header.index(key)
    kept, unreadable = [], 0
    for line in lines[1:]:
        if not line.strip():  # a blank line holds no row (as csv.DictReader reads it)
            continue
        fields = _csv_fields(line)
        if fields is None or len(fields) != len(header) or not _is_int(fields[column]):
            unreadable += 1
        elif int(fields[column]) <= limit:
            kept.append(fields)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(kept)
    write_atomically(path, text.getvalue())
    if not unreadable:
        return None
    rows = "row" if unreadable == 1 else "rows"
    return (f"{path}: {unreadable} unreadable {rows} dropped (a line cut short or damaged, e.g. by a crash); the "
            "log goes on from the checkpoint")


def cut_tensorboard(folder: Path, epoch: int, step: int) -> str | None:
    """Drop the TensorBoard points a checkpoint does not cover from the events files in
    ``folder``: points of step tags (``train/...``) after ``step`` and of epoch tags after
    ``epoch``. When any file holds such a point, or a record that cannot be read (a file a
    crash cut short), the kept events of all the files, in order, replace the first file
    (written in full, flushed to the disk, then renamed over it: :func:`write_atomically`)
    and the other files are removed after it: a failure while writing (a full disk) raises
    and leaves every file as it was, a crash before the removals leaves points twice,
    never loses one, and the next cut keeps one of each. Like TensorBoard itself, a file
    is read up to its first unreadable record. Returns the warning to print (one line
    naming the damaged files), or None when every record could be read."""
    files = events_files_in_written_order(folder)
    paths = [path for path, _, _ in files]
    kept, cut, damaged, version = [], False, [], None
    seen: set[bytes] = set()
    for path, events, whole in files:
        if not whole:
            damaged.append(path.name)
        for event in events:
            if event.HasField("file_version"):
                version = version or event  # each file starts with one; the merged file keeps the first
                continue
            tags = [value.tag for value in event.summary.value]
            limit = step if tags and tags[0].startswith(STEP_TAG_PREFIX) else epoch
            body = event.SerializeToString()
            if (tags and event.step > limit) or body in seen:
                # (an event twice, wall time included: a cut stopped before its removals left
                # the merged file beside the files it was merged from)
                cut = True
            else:
                seen.add(body)
                kept.append(event)
    if not cut and not damaged:
        return None
    records = [version] if version is not None else []
    write_atomically(paths[0], b"".join(_record(event.SerializeToString()) for event in records + kept), fsync=True)
    for path in paths[1:]:
        path.unlink()
    if not damaged:
        return None
    return (f"{folder}: {', '.join(damaged)}: a record cannot be read (cut short or damaged, e.g. by a crash); "
            "its later points are dropped and the events go on from the checkpoint")


def _record(body: bytes) -> bytes:
    """One record of an events file (TFRecord framing, as :func:`_read_events` reads it)."""
    import struct

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    length = struct.pack("<Q", len(body))
    return length + struct.pack("<I", masked_crc32c(length)) + body + struct.pack("<I", masked_crc32c(body))


def events_files_in_written_order(folder: Path) -> list[tuple[Path, list, bool]]:
    """The events files of ``folder`` (none if it is missing), each with its events and
    whether it was read whole (:func:`_read_events`), in the order they were written
    (:func:`_events_file_order`)."""
    paths = folder.glob("events.out.tfevents.*") if folder.is_dir() else []
    return sorted(((path, *_read_events(path)) for path in paths), key=_events_file_order)


def _events_file_order(file: tuple[Path, list, bool]) -> tuple:
    """The order in which a run's events files were written: by the time of their first
    event (written when the file is opened), then by name with its numbers compared as
    numbers. The names alone (``events.out.tfevents.<seconds>.<host>.<pid>.<n>``) sort two
    files of one second by process id and by a counter as text: the 10th writer of a
    process sorted before its 9th."""
    path, events, _ = file
    opened = events[0].wall_time if events else float("inf")
    name = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.name.split("."))
    return opened, name


def _read_events(path: Path) -> tuple[list, bool]:
    """The events of a TensorBoard events file (TFRecord framing: a little-endian 8-byte
    length, its masked CRC-32C, the serialized event, its masked CRC-32C), read up to the
    first record that is cut short or fails its checksum; and whether the whole file was
    read."""
    import struct

    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data = path.read_bytes()
    events, pos = [], 0
    while pos < len(data):
        header = data[pos:pos + 12]
        if len(header) < 12 or masked_crc32c(header[:8]) != struct.unpack("<I", header[8:])[0]:
            return events, False
        (size,) = struct.unpack("<Q", header[:8])
        body, crc = data[pos + 12:pos + 12 + size], data[pos + 12 + size:pos + 16 + size]
        if len(crc) < 4 or masked_crc32c(body) != struct.unpack("<I", crc)[0]:
            return events, False
        try:
            events.append(Event.FromString(body))
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, by implementation
            return events, False
        pos += 16 + size
    return events, True


def _csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV line; None when it does not parse (a NUL byte on an older
    Python, an open quote)."""
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _is_int(text: str) -> bool:
    """Whether ``text`` is a plain integer (the step or epoch of a log row)."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a log CSV file as dicts of floats."""
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else math.nan) for k, v in r.items()})
    return rows


_RATE_WORDS = ("precision", "accuracy", "share", "items_with", "recall", "rate")


def _is_rate(key: str) -> bool:
    """Diagnostics logged in percent (precision, accuracy, shares) vs counts."""
    return any(word in key.rsplit("/", 1)[-1] for word in _RATE_WORDS)


def plot_curves(run_dir: Path, out: Path | None = None) -> Path | None:
    """Plot per-epoch losses, learning rate, validation metrics and diagnostics to PNG."""
    path = run_dir / "logs" / "epochs.csv"
    if not path.exists():
        return None
    from matplotlib.figure import Figure  # not pyplot: the caller's backend and figures stay as they are

    rows = read_csv(path)
    epochs = [r["epoch"] for r in rows]
    keys = [k for k in rows[0] if k != "epoch"] if rows else []
    panels = {
        "losses": [k for k in keys if k.startswith("loss/")],
        "validation (%)": [k for k in keys if k.startswith("val/")],
        "diagnostics (%)": [k for k in keys if k.startswith("diag/") and _is_rate(k)],
        "diagnostics (counts)": [k for k in keys if k.startswith("diag/") and not _is_rate(k)],
        "learning rate": [k for k in keys if k == "lr"],
    }
    panels = {t: ks for t, ks in panels.items() if ks}
    fig = Figure(figsize=(4.5 * max(len(panels), 1), 3.4))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)
    for ax, (title, ks) in zip(axes[0], panels.items()):
        for k in ks:
            ys = [r.get(k, math.nan) for r in rows]
            ax.plot(epochs, ys, marker=".", label=k.split("/", 1)[-1])
        ax.set_title(title)
        values = [v for k in ks for v in (r.get(k, math.nan) for r in rows) if v == v]
        if title.endswith("(counts)") and values and min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")  # e.g. related pairs per batch (thousands) beside neighbours per item (a few)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = out or run_dir / "curves.png"
    image = io.BytesIO()
    fig.savefig(image, dpi=110, format="png")
    write_atomically(out, image.getvalue())  # a stop while it was written left a truncated picture
    return out
