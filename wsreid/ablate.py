"""``wsreid ablate STUDY.yaml``: run every variant x seed of a study, then tabulate.

A study file (YAML 1.2; docs/ablations.md)::

    base: ../dgia.yaml             # recipe, relative to the study file
    seeds: [0, 1, 2]               # each run gets -o train.seed=<seed>
    overrides: {train.epochs: 30}  # optional, shared by every variant
    reference: B                   # optional: the row deltas refer to (default: first variant)
    output_dir: runs/ablations/dgia   # optional (default runs/ablations/<study name>)
    variants:
      - label: B
        overrides: {local_associations.lrc: null, objectives.sdm_local: null}
      - label: full

Each run is ``wsreid run BASE -o <shared> -o <variant> -o <command line -o> -o train.seed=S``
into ``OUTPUT_DIR/runs/<label>/seed-<S>``, executed in this process through the same
function as ``wsreid run`` (``--subprocess``: one ``python -m wsreid run`` per run, which
isolates crashes and memory; ``--jobs N``: N such processes at once). Resumable: a run whose directory holds ``metrics.json`` is
not redone, an interrupted one is resumed from its last checkpoint (restarted when it has
none), and a run whose recipe changed since is started again. A failing run (a user error
or any exception) is recorded in the status column and the other runs go on. The outputs
``results.md``, ``results.csv`` and ``results.png`` are made by :mod:`wsreid.ablate_table`.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wsreid.errors import UserError

__all__ = [
    "StudyError",
    "Variant",
    "Study",
    "LoadedStudy",
    "PlannedRun",
    "RunOutcome",
    "load_study",
    "plan_runs",
    "run_state",
    "run_study",
    "collect_outcomes",
    "add_ablate_parser",
    "cmd_ablate",
]

METRICS = ["R1", "R5", "R10", "mAP", "mINP"]
STATE_DONE, STATE_RESUME, STATE_RESTART, STATE_NEW = "done", "resume", "restart", "new"


class StudyError(UserError):
    """A study file is missing or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variant(_Strict):
    """One row of the table: a label and recipe overrides (dotted key -> value; null removes
    a key, e.g. a component)."""

    label: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None


class Study(_Strict):
    """The study file's content (paths as written)."""

    base: str
    variants: list[Variant] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    reference: str | None = None
    output_dir: str | None = None
    metrics: list[str] = Field(default_factory=lambda: list(METRICS), min_length=1)
    plot_metrics: list[str] = Field(default_factory=lambda: ["R1", "mAP"])
    title: str | None = None


@dataclass
class LoadedStudy:
    """A validated study: ``base`` resolved against the study file, ``reference`` filled in."""

    study: Study
    path: Path
    base: Path
    reference: str

    @property
    def labels(self) -> list[str]:
        return [v.label for v in self.study.variants]


@dataclass
class PlannedRun:
    """One variant x seed: its run directory and the overrides laid over the base recipe."""

    label: str
    seed: int
    run_dir: Path
    overrides: list[str]


@dataclass
class RunOutcome:
    """What happened to a planned run in this invocation: ``status`` is ``done`` (finished
    earlier), ``ran``, ``failed`` (``error`` holds the one-line message) or ``planned``."""

    run: PlannedRun
    status: str
    error: str | None = None
    metrics: dict[str, Any] | None = field(default=None, repr=False)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", label).strip("_") or "variant"


def _override_text(key: str, value: Any) -> str:
    """``key`` and a YAML value -> ``key=value`` in YAML flow syntax (JSON is valid flow)."""
    return f"{key}={json.dumps(value)}"


def load_study(path: str | Path) -> LoadedStudy:
    """Read and check a study file; raises :class:`StudyError` (one line)."""
    from wsreid.recipe import read_yaml_file
    from wsreid.errors import RecipeError

    path = Path(path)
    try:
        tree, locations = read_yaml_file(path)
    except RecipeError as exc:
        raise StudyError(str(exc).replace("recipe file", "study file")) from None
    try:
        study = Study.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        where = locations.find(tuple(err["loc"]))
        raise StudyError(f"{where}: {key or 'study'}: {err['msg']}",
                         hint="a study has base, variants (label, overrides), seeds; see docs/ablations.md") from None
    base = (path.parent / study.base).resolve()
    if not base.is_file():
        raise StudyError(f"{locations.find(('base',))}: base: {study.base!r} not found (looked for {base})",
                         hint="the path is relative to the study file")
    labels = [v.label for v in study.variants]
    slugs: dict[str, str] = {}
    for label in labels:
        if _slug(label) in slugs:
            other = slugs[_slug(label)]
            raise StudyError(f"{path}: variants: labels {other!r} and {label!r} "
                             + ("repeat" if other == label else "give the same directory name"),
                             hint="give every variant its own label")
        slugs[_slug(label)] = label
    if len(set(study.seeds)) != len(study.seeds):
        raise StudyError(f"{locations.find(('seeds',))}: seeds: {study.seeds} repeats a seed", hint="list each seed once")
    reference = study.reference or labels[0]
    if reference not in labels:
        raise StudyError(f"{locations.find(('reference',))}: reference: no variant is labelled {reference!r}",
                         hint=f"labels: {', '.join(labels)}")
    for name in set(study.plot_metrics) - set(study.metrics):
        raise StudyError(f"{path}: plot_metrics: {name!r} is not in metrics", hint=f"metrics: {', '.join(study.metrics)}")
    return LoadedStudy(study, path, base, reference)


def default_output_dir(loaded: LoadedStudy) -> Path:
    return Path(loaded.study.output_dir or f"runs/ablations/{loaded.path.stem}")


def plan_runs(loaded: LoadedStudy, output_dir: Path, cli_overrides: list[str] = ()) -> list[PlannedRun]:
    """Every variant x seed, in study order (variants outer, seeds inner)."""
    shared = [_override_text(k, v) for k, v in loaded.study.overrides.items()]
    runs = []
    for variant in loaded.study.variants:
        own = [_override_text(k, v) for k, v in variant.overrides.items()]
        for seed in loaded.study.seeds:
            run_dir = output_dir / "runs" / _slug(variant.label) / f"seed-{seed}"
            tail = [_override_text("train.seed", seed), _override_text("output_dir", str(run_dir))]
            runs.append(PlannedRun(variant.label, seed, run_dir, shared + own + list(cli_overrides) + tail))
    return runs


def run_state(run_dir: Path) -> str:
    """``done`` (metrics.json present), ``resume`` (a wsreid run with a checkpoint),
    ``restart`` (a wsreid run without one) or ``new``."""
    from wsreid.cli import RUN_MARKER

    if (run_dir / "metrics.json").exists():
        return STATE_DONE
    if (run_dir / RUN_MARKER).exists():
        return STATE_RESUME if (run_dir / "checkpoints" / "latest").exists() else STATE_RESTART
    return STATE_NEW


def _same_recipe(run_dir: Path, resolved_yaml: str, disabled: list[str] = ()) -> bool:
    """Whether the run was made with this recipe: its saved recipe.yaml, validated again
    (so options added since, at their defaults, do not count as a change), resolves to the
    same text as the planned run's, ``output_dir`` aside."""
    from wsreid.cli import _strip_output_dir, load
    from wsreid.recipe import dump_resolved_yaml

    saved = run_dir / "recipe.yaml"
    if not saved.exists():
        return False
    wanted = _strip_output_dir(resolved_yaml)
    if _strip_output_dir(saved.read_text()) == wanted:
        return True
    try:
        again, _ = load(str(saved), [], list(disabled))
    except Exception:  # a recipe that no longer validates is a changed recipe
        return False
    return _strip_output_dir(dump_resolved_yaml(again)) == wanted


def _decide(loaded: LoadedStudy, run: PlannedRun, disabled: list[str]) -> str:
    """The state of ``run``, with ``restart`` for a run whose recipe has changed since.
    Loading the recipe here also reports an invalid variant before anything runs."""
    from wsreid.cli import load
    from wsreid.recipe import dump_resolved_yaml

    state = run_state(run.run_dir)
    resolved, _ = load(str(loaded.base), run.overrides, disabled)
    if state in (STATE_DONE, STATE_RESUME) and not _same_recipe(run.run_dir, dump_resolved_yaml(resolved), disabled):
        return STATE_RESTART
    return state


def _argv(loaded: LoadedStudy, run: PlannedRun, state: str, disabled: list[str]) -> list[str]:
    argv = ["run", str(loaded.base)]
    for text in run.overrides:
        argv += ["-o", text]
    argv += {STATE_RESUME: ["--resume"], STATE_RESTART: ["--overwrite"]}.get(state, [])
    for name in disabled:
        argv += ["--disable-plugin", name]
    return argv


def execute_in_process(argv: list[str]) -> None:
    """Run ``wsreid <argv>`` through the ``wsreid run`` function; raises on failure."""
    import gc

    from wsreid.cli import build_parser

    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    finally:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
    if code == 130:
        raise KeyboardInterrupt
    if code:
        raise RuntimeError(f"wsreid run exited with code {code}")


def execute_subprocess(argv: list[str], *, log_file: Path | None = None,
                       threads: int | None = None) -> None:
    """Run ``python -m wsreid <argv>`` in a child process; its last ``error:`` line becomes
    the failure message. Its stderr is passed through, or written to ``log_file`` (parallel
    studies, whose progress bars would interleave). ``threads`` sets the child's
    ``OMP_NUM_THREADS`` unless the environment already does."""
    import os
    import subprocess

    env = dict(os.environ)
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        sink = log_file.open("w")
    else:
        sink = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "wsreid", *argv], stderr=subprocess.PIPE, text=True,
                                stdout=sink if sink is not None else None, env=env)
        last_error = None
        assert proc.stderr is not None
        for line in proc.stderr:
            (sink or sys.stderr).write(line)
            if line.startswith("error: "):
                last_error = line[len("error: "):].strip()
        code = proc.wait()
    finally:
        if sink is not None:
            sink.close()
    if code == 130:
        raise KeyboardInterrupt
    if code == 2 and last_error:
        raise UserError(last_error)
    if code:
        where = f" (log: {log_file})" if log_file is not None else ""
        raise RuntimeError((last_error or f"wsreid run exited with code {code}") + where)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"


def run_study(loaded: LoadedStudy, runs: list[PlannedRun], *, disabled: list[str] = (),
              execute: Callable[[list[str]], None] = execute_in_process, dry_run: bool = False,
              jobs: int = 1, log_dir: Path | None = None,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[RunOutcome]:
    """Run (or, ``dry_run``, list) every planned run; never stops on a failing run.

    ``jobs > 1`` runs that many trainings at once, each in its own ``python -m wsreid run``
    process with ``OMP_NUM_THREADS = cpus // jobs`` (unless set) and its output in
    ``log_dir/<label>-seed-<S>.log``; ``execute`` is then not used. Outcomes keep the order
    of ``runs`` either way. A KeyboardInterrupt stops the study (the outcomes so far are kept
    on the exception as ``outcomes``)."""
    disabled = list(disabled)
    outcomes: dict[int, RunOutcome] = {}
    pending: list[tuple[int, PlannedRun, str, str]] = []
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.label} seed {run.seed}"
        try:
            state = _decide(loaded, run, disabled)
        except KeyboardInterrupt as exc:
            exc.outcomes = [outcomes[k] for k in sorted(outcomes)]  # type: ignore[attr-defined]
            raise
        except Exception as exc:  # an invalid variant must not stop the study
            message = _one_line(exc)
            log(f"{head}: FAILED: {message}")
            outcomes[i] = RunOutcome(run, "failed", error=message)
            continue
        if dry_run:
            log(f"{head}: {state} -> {run.run_dir}\n    wsreid " + shlex.join(_argv(loaded, run, state, disabled)))
            outcomes[i] = RunOutcome(run, STATE_DONE if state == STATE_DONE else "planned")
        elif state == STATE_DONE:
            log(f"{head}: finished earlier, kept ({run.run_dir})")
            outcomes[i] = RunOutcome(run, STATE_DONE)
        else:
            pending.append((i, run, state, head))

    def one(item: tuple[int, PlannedRun, str, str]) -> RunOutcome:
        i, run, state, head = item
        argv = _argv(loaded, run, state, disabled)
        log(f"{head}: {'resuming' if state == STATE_RESUME else 'running'} -> {run.run_dir}")
        try:
            if jobs > 1:
                log_file = (log_dir or run.run_dir.parent) / f"{_slug(run.label)}-seed-{run.seed}.log"
                execute_subprocess(argv, log_file=log_file, threads=_threads_per_job(jobs))
            else:
                execute(argv)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing run must not stop the study
            message = _one_line(exc)
            log(f"{head}: FAILED: {message}")
            return RunOutcome(run, "failed", error=message)
        log(f"{head}: finished")
        return RunOutcome(run, "ran")

    if jobs <= 1:
        for item in pending:
            try:
                outcomes[item[0]] = one(item)
            except KeyboardInterrupt as exc:
                exc.outcomes = [outcomes[k] for k in sorted(outcomes)]  # type: ignore[attr-defined]
                raise
    elif pending:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=jobs)
        futures = {pool.submit(one, item): item[0] for item in pending}
        try:
            for future, i in futures.items():
                outcomes[i] = future.result()
        except KeyboardInterrupt as exc:
            pool.shutdown(wait=True, cancel_futures=True)  # children got the same SIGINT
            exc.outcomes = [outcomes[k] for k in sorted(outcomes)]  # type: ignore[attr-defined]
            raise
        pool.shutdown(wait=True)
    ordered = [outcomes[k] for k in sorted(outcomes)]
    for outcome in ordered:
        metrics_file = outcome.run.run_dir / "metrics.json"
        if outcome.status in (STATE_DONE, "ran") and metrics_file.exists():
            outcome.metrics = json.loads(metrics_file.read_text())
        elif outcome.status == "ran":
            outcome.status, outcome.error = "failed", "the run ended without metrics.json"
    return ordered


def _check_variants(labels: list[str], loaded: LoadedStudy) -> set[str] | None:
    """The ``--variant`` labels, each checked against the study's labels (None: all)."""
    if not labels:
        return None
    known = [v.label for v in loaded.study.variants]
    for label in labels:
        if label not in known:
            import difflib

            close = difflib.get_close_matches(label, known, n=1)
            raise UserError(f"--variant {label!r}: {loaded.path} has no variant with this label",
                            hint=f"did you mean {close[0]!r}?" if close else "labels: " + "; ".join(known))
    return set(labels)


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds {text}: expected comma-separated integers", hint="e.g. --seeds 0 or --seeds 0,1") from None
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seed given", hint="e.g. --seeds 0 or --seeds 0,1")
    return seeds


def _threads_per_job(jobs: int) -> int:
    import os

    return max(1, (os.cpu_count() or 1) // jobs)


def collect_outcomes(runs: list[PlannedRun]) -> list[RunOutcome]:
    """Outcomes from what the run directories hold, running nothing: ``done`` with the
    metrics where metrics.json exists, ``planned`` (not run) otherwise."""
    outcomes = []
    for run in runs:
        metrics_file = run.run_dir / "metrics.json"
        if metrics_file.exists():
            outcomes.append(RunOutcome(run, STATE_DONE, metrics=json.loads(metrics_file.read_text())))
        else:
            outcomes.append(RunOutcome(run, "planned"))
    return outcomes


def add_ablate_parser(sub, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Register ``wsreid ablate`` on the CLI's subparsers (``common`` adds shared options)."""
    p = sub.add_parser("ablate", help="run an ablation study (variants x seeds) and tabulate it")
    p.add_argument("study", help="study YAML file (docs/ablations.md)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key in every run, after the study's own overrides (repeatable)")
    p.add_argument("--output-dir", help="study directory (default: the study's output_dir)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="write the table, CSV and chart from the finished runs; run nothing")
    p.add_argument("--subprocess", action="store_true",
                   help="run each training in its own `python -m wsreid run` process (isolates crashes and memory)")
    p.add_argument("--seeds", metavar="S[,S...]",
                   help="run only these seeds (a comma-separated subset or replacement of the study's seeds); "
                        "the table still covers the study's seeds, with the others shown as not run")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL",
                   help="run only this variant (its exact label; repeatable); the table still covers every "
                        "variant, with the others as they stand")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run N trainings at once, each in its own process with cpus/N threads and its output "
                        "in OUTPUT_DIR/logs/ (default 1: one after another)")
    if common is not None:
        common(p)
    else:  # pragma: no cover
        p.add_argument("--debug", action="store_true")
        p.add_argument("--disable-plugin", action="append", default=[])
    p.set_defaults(func=cmd_ablate)


def cmd_ablate(args) -> int:
    """Run the study and write the table, CSV and chart; 0 when every run finished, 1 when
    some failed, 130 when interrupted."""
    from wsreid.ablate_table import aggregate, write_outputs
    from wsreid.recipe import parse_override

    loaded = load_study(args.study)
    for text in args.override:
        parse_override(text)  # fail before any run on a malformed override
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(loaded)
    runs = plan_runs(loaded, output_dir, args.override)
    chosen = _parse_seeds(getattr(args, "seeds", None))
    if chosen is not None:
        extra = [s for s in chosen if s not in loaded.study.seeds]
        if extra:  # seeds beyond the study's: plan them too (the table shows them as well)
            loaded.study.seeds = list(loaded.study.seeds) + extra
            runs = plan_runs(loaded, output_dir, args.override)
    variants = _check_variants(getattr(args, "variant", []), loaded)
    execute = execute_subprocess if args.subprocess else execute_in_process
    disabled = getattr(args, "disable_plugin", [])
    jobs = getattr(args, "jobs", 1)
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1", hint="give the number of trainings to run at once")
    try:
        if args.report_only:
            outcomes = collect_outcomes(runs)
        else:
            selected = [r for r in runs if (chosen is None or r.seed in chosen)
                        and (variants is None or r.label in variants)]
            outcomes = run_study(loaded, selected, disabled=disabled, execute=execute, dry_run=args.dry_run,
                                 jobs=jobs, log_dir=output_dir / "logs")
            if len(selected) < len(runs) and not args.dry_run:  # the table covers every run of the study
                done = {(o.run.label, o.run.seed): o for o in outcomes}
                outcomes = [done.get((r.label, r.seed)) or collect_outcomes([r])[0] for r in runs]
    except KeyboardInterrupt as exc:
        outcomes = getattr(exc, "outcomes", [])
        print(f"\ninterrupted after {len(outcomes)} of {len(runs)} runs; run the same command again to go on",
              file=sys.stderr)
        return 130
    if args.dry_run:
        print(f"{len(outcomes)} runs ({sum(o.status == STATE_DONE for o in outcomes)} finished); nothing was run")
        return 0
    rows = aggregate(loaded, outcomes)
    paths = write_outputs(loaded, rows, output_dir)
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 1 if any(o.status == "failed" for o in outcomes) else 0
