"""Evaluate every finished run of an ablation study under the supplement's two extra
protocols and tabulate them per variant (mean +- std over seeds):

- degraded queries: ``wsreid eval RUN --query-mask-ratio R,...`` (test captions with a
  share r of their word tokens masked);
- cross-dataset: ``wsreid eval RUN --data RECIPE`` (the same weights, another dataset).

    python results/eval_protocols.py STUDY.yaml --runs STUDY_OUTPUT_DIR --out DIR \\
        [--ratios 0.1,0.2,0.3,0.4,0.5] [--data recipes/synth-pedes-shifted-dgia.yaml] \\
        [--zero-shot RECIPE] [--figure PNG] [--seeds S,...] [--variant LABEL ...] [--report-only]

Each evaluation is one ``wsreid eval`` process (exactly what a user runs); its JSON goes
to ``DIR/runs/<variant>/seed-<S>/{degraded,cross}.json`` and is reused when present, so
the script resumes. ``--report-only`` evaluates nothing: the tables are written again from
the JSON files under DIR alone (the committed ``results/synth-small/*-eval`` directories
hold them without the runs' weights; their ``results.md`` names the command, to which
``--report-only`` is added). Runs without a checkpoint (not finished, or collected without
weights) are listed as missing. ``--zero-shot RECIPE`` adds a row for the encoder that
recipe starts from (``wsreid eval --zero-shot``). Each evaluation uses one thread unless
OMP_NUM_THREADS says otherwise (it can share the machine with training). Writes
``DIR/results.md``, ``DIR/results.csv`` and, with ``--figure``, R@1 against the mask ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from wsreid.ablate import load_study, plan_runs

METRICS = ["R1", "R5", "R10", "mAP", "mINP"]
#: `wsreid eval`'s diagnostics: distinct images ranked first, % of queries sent to the
#: commonest of them, mean cosine between two queries' features
HUBNESS = ["top1_images", "top1_hub_share", "query_mean_cosine"]


#: the repository's cross-dataset recipe, found from this file (not the working directory)
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "recipes" / "synth-pedes-shifted-dgia.yaml"
#: the evaluations that failed in this invocation (the script then exits 1)
FAILED: list[str] = []


def _wsreid_eval(args: list[str], out_json: Path, report_only: bool = False) -> dict | None:
    """Run ``wsreid eval ARGS --format json`` once; cache its output in ``out_json``.
    ``report_only``: the cached output or None, nothing run."""
    if out_json.exists():
        return json.loads(out_json.read_text())
    if report_only:
        return None
    cmd = [sys.executable, "-m", "wsreid", "eval", *args, "--format", "json"]
    print("  $ wsreid eval " + " ".join(args), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  failed: {tail}", flush=True)
        FAILED.append(f"wsreid eval {' '.join(args)}: {tail}")
        return None
    result = json.loads(done.stdout)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out_json)
    return result


def _has_weights(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").exists() and (run_dir / "checkpoints").is_dir()


def _row_values(degraded: dict | None, cross: dict | None, ratios: list[float]) -> dict[str, float]:
    """One run's numbers: ``clean_<m>``, ``mask<r>_<m>`` and ``cross_<m>``."""
    values: dict[str, float] = {}
    if degraded is not None:
        for m in METRICS + HUBNESS:
            values[f"clean_{m}"] = degraded[m]
        by_ratio = {round(row["ratio"], 6): row for row in degraded.get("query_mask", [])}
        for r in ratios:
            row = by_ratio.get(round(r, 6))
            if row is not None:
                for m in METRICS + HUBNESS:
                    values[f"mask{r:g}_{m}"] = row[m]
    if cross is not None:
        for m in METRICS:
            values[f"cross_{m}"] = cross[m]
    return values


def _mean_std(samples: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(samples)
    return mean, (statistics.stdev(samples) if len(samples) > 1 else None)


def _values(samples: list[dict[str, float]], key: str) -> list[float]:
    """``key`` of every run of a variant that has it."""
    return [s[key] for s in samples if s.get(key) is not None]


def _cell(samples: list[dict[str, float]], key: str, fmt: str = "{:.2f}") -> str:
    values = _values(samples, key)
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return fmt.format(mean) if std is None else f"{fmt.format(mean)} +- {fmt.format(std)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study YAML (variants, seeds)")
    parser.add_argument("--runs", required=True, help="the study's output directory (holding runs/<variant>/seed-<S>/)")
    parser.add_argument("--out", required=True, help="where the evaluations and tables go")
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="recipe whose data block is the cross-dataset "
                        "target (default: the repository's recipes/synth-pedes-shifted-dgia.yaml)")
    parser.add_argument("--zero-shot", metavar="RECIPE", help="add a zero-shot row for the encoder this recipe starts from")
    parser.add_argument("--figure", help="PNG: R@1 against the query mask ratio, one line per variant")
    parser.add_argument("--seeds", metavar="S[,S...]", help="evaluate these seeds instead of the study's "
                        "(as `wsreid ablate --seeds`, for runs trained with it)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL",
                        help="evaluate only this variant (its exact label; repeatable)")
    parser.add_argument("--report-only", action="store_true",
                        help="evaluate nothing: write the tables from the JSON files already under --out")
    args = parser.parse_args(argv)
    FAILED.clear()

    ratios = [float(x) for x in args.ratios.split(",")]
    ratio_arg = ",".join(f"{r:g}" for r in ratios)
    out = Path(args.out)
    loaded = load_study(args.study)
    if args.seeds:
        loaded.study.seeds = [int(x) for x in args.seeds.split(",")]
    unknown = [label for label in args.variant if label not in loaded.labels]
    if unknown:
        parser.error(f"--variant {unknown[0]!r}: not a variant of {args.study} (variants: {', '.join(loaded.labels)})")
    planned = plan_runs(loaded, Path(args.runs))

    rows: list[tuple[str, bool | None, list[dict[str, float]], int, int]] = []
    if args.zero_shot:
        print(f"zero-shot ({args.zero_shot})", flush=True)
        base = out / "zero-shot"
        degraded = _wsreid_eval(["--zero-shot", "--recipe", args.zero_shot, "--query-mask-ratio", ratio_arg],
                                base / "degraded.json", args.report_only)
        cross = _wsreid_eval(["--zero-shot", "--recipe", args.zero_shot, "--data", args.data], base / "cross.json",
                             args.report_only)
        values = _row_values(degraded, cross, ratios)
        if not values:
            print(f"zero-shot: no evaluation in {base}, skipped", flush=True)
        rows.append(("zero-shot (initial encoder)", True, [values] if values else [], int(bool(values)), 1))

    for label in loaded.labels:
        if args.variant and label not in args.variant:
            continue
        runs = [p for p in planned if p.label == label]
        samples, weakly = [], None
        for run in runs:
            target = out / run.run_dir.relative_to(Path(args.runs))
            if args.report_only:
                if not any((target / name).exists() for name in ("degraded.json", "cross.json")):
                    print(f"{label} seed {run.seed}: no evaluation in {target}, skipped", flush=True)
                    continue
            elif not _has_weights(run.run_dir):
                print(f"{label} seed {run.seed}: no finished run with weights in {run.run_dir}, skipped", flush=True)
                continue
            print(f"{label} seed {run.seed}", flush=True)
            degraded = _wsreid_eval([str(run.run_dir), "--query-mask-ratio", ratio_arg], target / "degraded.json",
                                    args.report_only)
            cross = _wsreid_eval([str(run.run_dir), "--data", args.data], target / "cross.json", args.report_only)
            if degraded is not None:
                weakly = degraded.get("weakly_supervised", weakly)
            values = _row_values(degraded, cross, ratios)
            if values:
                samples.append(values)
        rows.append((label, weakly, samples, len(samples), len(runs)))

    _write_tables(out, rows, ratios, args)
    if args.figure:
        _write_figure(Path(args.figure), rows, ratios)
    if FAILED:  # the tables hold what succeeded; the failures must not read as a complete table
        print(f"error: {len(FAILED)} evaluation(s) failed, their cells are '-' (first: {FAILED[0]})", file=sys.stderr)
        return 1
    return 0


def _write_tables(out: Path, rows, ratios: list[float], args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = ([f"clean_{m}" for m in METRICS + HUBNESS] + [f"mask{r:g}_{m}" for r in ratios for m in METRICS + HUBNESS]
            + [f"cross_{m}" for m in METRICS])
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["variant", "weakly_supervised", "runs_done", "runs_total"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")])
        for label, weakly, samples, done, total in rows:
            cells = []
            for k in keys:
                vals = _values(samples, k)
                mean, std = _mean_std(vals) if vals else (None, None)
                cells += ["" if mean is None else mean, "" if std is None else std]
            writer.writerow([label, weakly, done, total] + cells)

    def mark(label: str, weakly: bool | None) -> str:
        return label if weakly is not False else f"{label} (NOT weakly supervised)"

    lines = [
        f"# Extra evaluation protocols: {Path(args.study).name}",
        "",
        f"Runs: `{args.runs}`. Mean +- std over seeds; `runs` counts the seeds evaluated.",
        f"Made with `python results/eval_protocols.py {args.study} --runs {args.runs} --out {out}"
        f" --ratios {args.ratios} --data {args.data}"
        + (f" --zero-shot {args.zero_shot}" if args.zero_shot else "")
        + (f" --seeds {args.seeds}" if args.seeds else "")
        + "".join(f" --variant {shlex.quote(label)}" for label in args.variant) + "`.",
        "",
        "## Degraded queries: test R@1 with a share r of each caption's word tokens masked",
        "",
        f"The last three columns are at r={ratios[-1]:g}, clean queries in brackets. \"hub %\": the share of "
        "queries whose first result is the single most frequent first result; \"query cos\": the mean cosine "
        "between two different queries' features (1 = all queries the same).",
        "",
        "| variant | runs | clean | " + " | ".join(f"r={r:g}" for r in ratios) + " | mAP | hub % | query cos |",
        "|---|---|" + "---|" * (len(ratios) + 4),
    ]
    last = f"mask{ratios[-1]:g}"
    for label, weakly, samples, done, total in rows:
        hub = (f"{_cell(samples, f'{last}_top1_hub_share', '{:.1f}')} "
               f"({_cell(samples, 'clean_top1_hub_share', '{:.1f}')})") if samples else "-"
        cos = (f"{_cell(samples, f'{last}_query_mean_cosine', '{:.3f}')} "
               f"({_cell(samples, 'clean_query_mean_cosine', '{:.3f}')})") if samples else "-"
        lines.append(f"| {mark(label, weakly)} | {done}/{total} | {_cell(samples, 'clean_R1')} | "
                     + " | ".join(_cell(samples, f"mask{r:g}_R1") for r in ratios)
                     + f" | {_cell(samples, f'{last}_mAP')} | {hub} | {cos} |")
    lines += [
        "",
        f"## Cross-dataset: trained on the run's dataset, tested on the data block of `{args.data}`",
        "",
        "| variant | runs | in-domain R@1 | R@1 | R@5 | R@10 | mAP | mINP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, weakly, samples, done, total in rows:
        lines.append(f"| {mark(label, weakly)} | {done}/{total} | {_cell(samples, 'clean_R1')} | "
                     + " | ".join(_cell(samples, f"cross_{m}") for m in METRICS) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results.md'} and {out / 'results.csv'}")


def _write_figure(path: Path, rows, ratios: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [0.0] + ratios
    for label, weakly, samples, _, _ in rows:
        keys = ["clean_R1"] + [f"mask{r:g}_R1" for r in ratios]
        means, stds = [], []
        for k in keys:
            vals = _values(samples, k)
            mean, std = _mean_std(vals) if vals else (float("nan"), None)
            means.append(mean)
            stds.append(std or 0.0)
        style = "--" if weakly is False else "-"
        line = ax.plot(xs, means, style, marker="o", ms=3, label=label if weakly is not False else f"{label} (not weakly sup.)")[0]
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("share of query word tokens masked (r)")
    ax.set_ylabel("test R@1 (%)")
    ax.set_title("Degraded queries (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
