"""The outputs of an ablation study: one row per variant, mean +- std over seeds.

``results.md`` (Markdown), ``results.csv`` (one column per number) and ``results.png``
(grouped bars with std error bars) in the study directory. Per metric: the mean over the
seeds whose run finished, the sample standard deviation (n - 1 in the denominator; none
for a single run) and the delta of the mean to the reference variant's mean. A variant
that used true identity labels (``weakly_supervised: false`` in a run's metrics.json) is
marked "NOT weakly supervised" in every output.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from wsreid.ablate import LoadedStudy, RunOutcome

__all__ = ["VariantRow", "aggregate", "markdown_table", "write_csv", "write_chart", "write_outputs"]

NOT_WEAK = "NOT weakly supervised"


@dataclass
class VariantRow:
    """Aggregated numbers of one variant. ``mean``/``std``/``delta`` map metric -> value
    (std and delta None where undefined); ``status`` is ``ok`` or a one-line summary of
    what failed; ``weakly_supervised`` is None when no run finished."""

    label: str
    runs_total: int
    runs_done: int
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    delta: dict[str, float | None] = field(default_factory=dict)
    status: str = "ok"
    weakly_supervised: bool | None = None
    note: str | None = None
    is_reference: bool = False


def _status(outcomes: list["RunOutcome"]) -> str:
    failed = [o for o in outcomes if o.status == "failed"]
    missing = [o for o in outcomes if o.metrics is None and o.status != "failed"]
    parts = []
    if failed:
        first = failed[0]
        parts.append(f"{len(failed)}/{len(outcomes)} failed (seed {first.run.seed}: {first.error})")
    if missing:
        parts.append(f"{len(missing)}/{len(outcomes)} not run")
    return "; ".join(parts) or "ok"


def aggregate(loaded: "LoadedStudy", outcomes: list["RunOutcome"]) -> list[VariantRow]:
    """One :class:`VariantRow` per variant, in study order, from the runs' metrics.json."""
    metrics = loaded.study.metrics
    rows = []
    for variant in loaded.study.variants:
        own = [o for o in outcomes if o.run.label == variant.label]
        finished = [o.metrics for o in own if o.metrics is not None]
        row = VariantRow(variant.label, len(own), len(finished), status=_status(own), note=variant.note,
                         is_reference=variant.label == loaded.reference)
        if finished:
            row.weakly_supervised = all(m.get("weakly_supervised", True) for m in finished)
            if not row.weakly_supervised:
                notes = [m["note"] for m in finished if m.get("note")]
                row.note = "; ".join(x for x in [row.note, notes[0] if notes else NOT_WEAK] if x)
        for name in metrics:
            values = [float(m["test"][name]) for m in finished if name in m.get("test", {})]
            if values:
                row.mean[name] = statistics.fmean(values)
                row.std[name] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    reference = next(r for r in rows if r.is_reference)
    for row in rows:
        for name in metrics:
            ok = name in row.mean and name in reference.mean
            row.delta[name] = row.mean[name] - reference.mean[name] if ok else None
    return rows


def _label(row: VariantRow) -> str:
    tags = [" (reference)" if row.is_reference else "", f" [{NOT_WEAK}]" if row.weakly_supervised is False else ""]
    return row.label + "".join(tags)


def _cell(row: VariantRow, name: str) -> str:
    if name not in row.mean:
        return "-"
    std = row.std.get(name)
    text = f"{row.mean[name]:.2f} ± {std:.2f}" if std is not None else f"{row.mean[name]:.2f}"
    delta = row.delta.get(name)
    if delta is not None and not row.is_reference:
        text += f" ({delta:+.2f})"
    return text


def markdown_table(loaded: "LoadedStudy", rows: list[VariantRow]) -> str:
    """The Markdown text of ``results.md``."""
    study = loaded.study
    metrics = study.metrics
    title = study.title or f"Ablation study {loaded.path.name}"
    seeds = ", ".join(str(s) for s in study.seeds)
    lines = [
        f"# {title}",
        "",
        f"Base recipe `{loaded.base.name}`, seeds {seeds}; test split, %, mean ± sample std over the finished "
        f"seeds, (delta) to the reference `{loaded.reference}`.",
        "",
        "| variant | runs | " + " | ".join(metrics) + " | status |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for row in rows:
        cells = [_label(row), f"{row.runs_done}/{row.runs_total}", *(_cell(row, m) for m in metrics),
                 row.status.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {row.label}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, loaded: "LoadedStudy", rows: list[VariantRow]) -> None:
    """``results.csv``: label, status, runs, weakly_supervised, then mean/std/delta per metric."""
    metrics = loaded.study.metrics
    header = ["variant", "reference", "status", "runs_done", "runs_total", "weakly_supervised"]
    for name in metrics:
        header += [f"{name}_mean", f"{name}_std", f"{name}_delta"]
    header.append("note")

    def num(value: float | None) -> str:
        return "" if value is None else repr(float(value))

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            ws = "" if row.weakly_supervised is None else str(row.weakly_supervised).lower()
            line = [row.label, str(row.is_reference).lower(), row.status, row.runs_done, row.runs_total, ws]
            for name in metrics:
                line += [num(row.mean.get(name)), num(row.std.get(name)), num(row.delta.get(name))]
            line.append(row.note or "")
            writer.writerow(line)


def write_chart(path: Path, loaded: "LoadedStudy", rows: list[VariantRow]) -> None:
    """``results.png``: for each plotted metric a bar per variant (mean, std error bar);
    hatched bars and a '*' mark runs that are not weakly supervised."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = loaded.study.plot_metrics or loaded.study.metrics[:1]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(rows))]
        means = [row.mean.get(name, math.nan) for row in rows]
        errs = [row.std.get(name) or 0.0 for row in rows]
        bars = ax.bar(xs, means, width, yerr=errs, capsize=3, label=name)
        for bar, row in zip(bars, rows):
            if row.weakly_supervised is False:
                bar.set_hatch("//")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([row.label + ("*" if row.weakly_supervised is False else "") for row in rows],
                       rotation=30, ha="right")
    ax.set_ylabel("test, %")
    ax.set_title(loaded.study.title or loaded.path.stem)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # outside: never over a bar
    if any(row.weakly_supervised is False for row in rows):
        fig.text(0.01, 0.01, f"* {NOT_WEAK} (true identity labels)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(loaded: "LoadedStudy", rows: list[VariantRow], output_dir: Path) -> dict[str, Path]:
    """Write results.md, results.csv and results.png into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": output_dir / "results.md", "csv": output_dir / "results.csv", "png": output_dir / "results.png"}
    paths["md"].write_text(markdown_table(loaded, rows))
    write_csv(paths["csv"], loaded, rows)
    write_chart(paths["png"], loaded, rows)
    return paths
