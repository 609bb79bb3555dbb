"""The outputs of an ablation study: one row per variant, mean +- std over seeds.

``results.md`` (Markdown), ``results.csv`` (one column per number) and ``results.png``
(grouped bars with std error bars) in the study directory. Per metric: the mean over the
seeds whose run finished, the sample standard deviation (n - 1 in the denominator; none
for a single run) and the delta of the mean to the reference variant's mean. Beside them,
the deltas paired by seed: variant minus reference on the same seed (the same
initialisation and, until the methods diverge, the same batches), their mean and sample
std and the per-seed values - seed-to-seed variation common to both cancels. A variant
that used true identity labels (``weakly_supervised: false`` in a run's metrics.json) is
marked "NOT weakly supervised" in every output.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Sequence

from wsreid.fileio import write_atomically, write_atomically_together

if TYPE_CHECKING:  # pragma: no cover
    from wsreid.ablate import LoadedStudy, RunOutcome

__all__ = ["VariantRow", "aggregate", "paired_summary", "markdown_table", "csv_text", "write_csv", "write_chart", "write_outputs"]

NOT_WEAK = "NOT weakly supervised"


@dataclass
class VariantRow:
    """Aggregated numbers of one variant. ``mean``/``std``/``delta`` map metric -> value
    (std and delta None where undefined); ``status`` is ``ok`` or a one-line summary of
    what failed, is outdated (finished with another recipe; not in the numbers) or was
    not run; ``weakly_supervised`` is None when no run finished."""

    label: str
    runs_total: int
    runs_done: int
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    delta: dict[str, float | None] = field(default_factory=dict)
    #: metric -> [(seed, variant - reference on that seed)] over the seeds both finished
    paired: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: metric -> the seeds whose runs enter ``mean``
    seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    status: str = "ok"
    weakly_supervised: bool | None = None
    note: str | None = None
    is_reference: bool = False


def _status(outcomes: list["RunOutcome"]) -> str:
    failed = [o for o in outcomes if o.status == "failed"]
    outdated = [o for o in outcomes if o.status == "outdated"]
    missing = [o for o in outcomes if o.metrics is None and o.status not in ("failed", "outdated")]
    parts = []
    if failed:
        first = failed[0]
        parts.append(f"{len(failed)}/{len(outcomes)} failed (seed {first.run.seed}: {first.error})")
    if outdated:  # finished with another recipe than the study's now: not in the numbers
        seeds = ", ".join(str(o.run.seed) for o in outdated)
        parts.append(f"{len(outdated)}/{len(outcomes)} outdated (seed{'s' if len(outdated) > 1 else ''} {seeds}: "
                     f"{outdated[0].error})")
    if missing:
        parts.append(f"{len(missing)}/{len(outcomes)} not run")
    included = [o for o in outcomes if o.status == "outdated-included"]
    if included:  # in the numbers although their recipe differs from the study's now
        seeds = ", ".join(str(o.run.seed) for o in included)
        parts.append(f"{len(included)}/{len(outcomes)} outdated, included (seed{'s' if len(included) > 1 else ''} "
                     f"{seeds}: their recipe.yaml differs from what the study asks for now)")
    return "; ".join(parts) or "ok"


def aggregate(loaded: "LoadedStudy", outcomes: list["RunOutcome"]) -> list[VariantRow]:
    """One :class:`VariantRow` per variant, in study order, from the runs' metrics.json."""
    metrics = loaded.study.metrics
    rows = []
    by_seed: dict[str, dict[int, dict]] = {}
    for variant in loaded.study.variants:
        own = [o for o in outcomes if o.run.label == variant.label]
        finished = [o.metrics for o in own if o.metrics is not None]
        by_seed[variant.label] = {o.run.seed: o.metrics for o in own if o.metrics is not None}
        row = VariantRow(variant.label, len(own), len(finished), status=_status(own), note=variant.note,
                         is_reference=variant.label == loaded.reference)
        if finished:
            row.weakly_supervised = all(m.get("weakly_supervised", True) for m in finished)
            if not row.weakly_supervised:
                notes = [m["note"] for m in finished if m.get("note")]
                row.note = "; ".join(x for x in [row.note, notes[0] if notes else NOT_WEAK] if x)
        for name in metrics:
            values = [float(m["test"][name]) for m in finished if name in m.get("test", {})]
            row.seeds[name] = tuple(sorted(s for s, m in by_seed[variant.label].items() if name in m.get("test", {})))
            if values:
                row.mean[name] = statistics.fmean(values)
                row.std[name] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    reference = next(r for r in rows if r.is_reference)
    for row in rows:
        for name in metrics:
            ok = name in row.mean and name in reference.mean
            row.delta[name] = row.mean[name] - reference.mean[name] if ok else None
            ref_runs, own_runs = by_seed[reference.label], by_seed[row.label]
            row.paired[name] = [
                (seed, float(own_runs[seed]["test"][name]) - float(ref_runs[seed]["test"][name]))
                for seed in sorted(set(own_runs) & set(ref_runs))
                if name in own_runs[seed].get("test", {}) and name in ref_runs[seed].get("test", {})
            ]
    return rows


def paired_summary(row: VariantRow, name: str) -> tuple[float, float | None, list[tuple[int, float]]] | None:
    """(mean, sample std or None, per-seed deltas) of ``row``'s paired deltas for metric
    ``name``; None for the reference or when no seed finished for both."""
    deltas = row.paired.get(name) or []
    if row.is_reference or not deltas:
        return None
    values = [d for _, d in deltas]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), deltas


def _label(row: VariantRow) -> str:
    tags = [" (reference)" if row.is_reference else "", f" [{NOT_WEAK}]" if row.weakly_supervised is False else ""]
    return row.label.replace("|", "\\|") + "".join(tags)  # a '|' of the label would split its cell


def _cell(row: VariantRow, name: str, reference: VariantRow) -> str:
    if name not in row.mean:
        return "-"
    std = row.std.get(name)
    text = f"{row.mean[name]:.2f} ± {std:.2f}" if std is not None else f"{row.mean[name]:.2f}"
    delta = row.delta.get(name)
    if delta is not None and not row.is_reference:
        text += f" ({delta:+.2f}{OTHER_SEEDS if _other_seeds(row, name, reference) else ''})"
    return text


#: marks a delta of two means over different seed sets
OTHER_SEEDS = "*"


def _other_seeds(row: VariantRow, name: str, reference: VariantRow) -> bool:
    return row.seeds.get(name) != reference.seeds.get(name)


def _what_was_run(loaded: "LoadedStudy", overrides: Sequence[str]) -> str:
    """``Base recipe `B` ... with the study's overrides `-o ...` and the command line's `-o
    ...``: the base as the study file writes it, and every override each run got besides
    its variant's (a smoke study's table must not read like the full one's)."""
    from wsreid.recipe.yamlio import override_text

    base = loaded.study.base
    shown = f"`{base}`" if Path(base).expanduser().is_absolute() else f"`{base}` (relative to the study file)"
    given = []
    if loaded.study.overrides:
        texts = [override_text(key, value) for key, value in loaded.study.overrides.items()]
        given.append(f"the study's overrides `{' '.join(f'-o {text}' for text in texts)}`")
    if overrides:
        given.append(f"the command line's `{' '.join(f'-o {text}' for text in overrides)}`")
    return f"Base recipe {shown}" + (" with " + " and ".join(given) if given else "")


def markdown_table(loaded: "LoadedStudy", rows: list[VariantRow], overrides: Sequence[str] = ()) -> str:
    """The Markdown text of ``results.md``; ``overrides``: the command line's ``-o``, which
    every run of the study got. The header names them, the study file's own ``overrides:``
    and the base recipe as the study file writes it (:func:`_what_was_run`)."""
    study = loaded.study
    metrics = study.metrics
    title = study.title or f"Ablation study {loaded.path.name}"
    seeds = ", ".join(str(s) for s in study.seeds)
    lines = [
        f"# {title}",
        "",
        f"{_what_was_run(loaded, overrides)}, seeds {seeds}; test split of each run's selected checkpoint "
        f"(metrics.json), %, mean ± sample std over the finished seeds, (delta) to the reference "
        f"`{loaded.reference}`.",
        "",
        "| variant | runs | " + " | ".join(metrics) + " | status |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    reference = next(r for r in rows if r.is_reference)
    for row in rows:
        cells = [_label(row), f"{row.runs_done}/{row.runs_total}", *(_cell(row, m, reference) for m in metrics),
                 row.status.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    if any(not r.is_reference and r.delta.get(m) is not None and _other_seeds(r, m, reference)
           for r in rows for m in metrics):
        lines += ["", f"{OTHER_SEEDS} the two means are over different seeds (a run is missing): the delta mixes "
                  "seed-to-seed variation in; the paired table below compares on the common seeds."]
    paired_rows = [row for row in rows if any(paired_summary(row, m) for m in metrics)]
    if paired_rows:
        lines += [
            "",
            f"Paired by seed: variant minus `{loaded.reference}` on the same seed, mean ± sample std "
            "[per seed, in seed order].",
            "",
            "| variant | seeds | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics),
        ]
        for row in paired_rows:
            cells = []
            for name in metrics:
                summary = paired_summary(row, name)
                if summary is None:
                    cells.append("-")
                    continue
                mean, std, deltas = summary
                head = f"{mean:+.2f} ± {std:.2f}" if std is not None else f"{mean:+.2f}"
                cells.append(head + " [" + " / ".join(f"{d:+.2f}" for _, d in deltas) + "]")
            seeds_used = ", ".join(str(s) for s, _ in next(row.paired[m] for m in metrics if row.paired.get(m)))
            lines.append("| " + " | ".join([_label(row), seeds_used, *cells]) + " |")
    notes = [f"- {row.label}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, loaded: "LoadedStudy", rows: list[VariantRow]) -> None:
    """Write :func:`csv_text` to ``path`` (atomically)."""
    write_atomically(path, csv_text(loaded, rows))


def csv_text(loaded: "LoadedStudy", rows: list[VariantRow]) -> str:
    """``results.csv``: label, status, runs, weakly_supervised, then per metric mean, std,
    delta of the means, and the mean and std of the deltas paired by seed."""
    metrics = loaded.study.metrics
    header = ["variant", "reference", "status", "runs_done", "runs_total", "weakly_supervised"]
    for name in metrics:
        header += [f"{name}_mean", f"{name}_std", f"{name}_delta", f"{name}_paired_delta", f"{name}_paired_std"]
    header.append("note")

    def num(value: float | None) -> str:
        return "" if value is None else repr(float(value))

    f = io.StringIO(newline="")
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
        ws = "" if row.weakly_supervised is None else str(row.weakly_supervised).lower()
        line = [row.label, str(row.is_reference).lower(), row.status, row.runs_done, row.runs_total, ws]
        for name in metrics:
            summary = paired_summary(row, name)
            paired = (None, None) if summary is None else summary[:2]
            line += [num(row.mean.get(name)), num(row.std.get(name)), num(row.delta.get(name)), *map(num, paired)]
        line.append(row.note or "")
        writer.writerow(line)
    return f.getvalue()


def write_chart(path: Path | BinaryIO, loaded: "LoadedStudy", rows: list[VariantRow]) -> None:
    """``results.png`` (to a path, or a binary file): for each plotted metric a bar per
    variant (mean, std error bar); hatched bars and a '*' mark runs that are not weakly
    supervised."""
    from matplotlib.figure import Figure  # not pyplot: the caller's backend and figures stay as they are

    names = loaded.study.plot_metrics or loaded.study.metrics[:1]
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2))
    ax = fig.subplots()
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
    fig.savefig(path, dpi=100, format="png")


def write_outputs(loaded: "LoadedStudy", rows: list[VariantRow], output_dir: Path,
                  overrides: Sequence[str] = ()) -> dict[str, Path]:
    """Write results.md, results.csv and results.png into ``output_dir``, as one set: all
    three are written before any replaces its old version, so a failure (a full disk)
    keeps the previous set whole (:func:`wsreid.fileio.write_atomically_together`).
    ``overrides``: the command line's ``-o``, named in results.md."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": output_dir / "results.md", "csv": output_dir / "results.csv", "png": output_dir / "results.png"}
    write_atomically_together({paths["md"]: markdown_table(loaded, rows, overrides), paths["csv"]: csv_text(loaded, rows),
                               paths["png"]: lambda out: write_chart(out, loaded, rows)})
    return paths
