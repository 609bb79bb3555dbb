"""Ablation studies (the library behind ``wsreid ablate STUDY.yaml``): run every variant x
seed of a study, then tabulate.

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
function as ``wsreid run`` (:func:`wsreid.engine.session.run_recipe`; ``--subprocess``: one ``python -m wsreid run`` per run, which
isolates crashes and memory; ``--jobs N``: N such processes at once; a stop signal to the study is passed on to
them, :class:`ChildProcesses`). Resumable: a run whose directory holds ``metrics.json`` is
not redone, an interrupted one is resumed from its last checkpoint (restarted when it has
none), and an unfinished run whose recipe changed since is started again (a finished one
only with ``rerun_outdated``: ``--rerun-outdated``). The recipe of every run to do
is loaded and validated before the first one trains: an invalid one (a typo in a variant's
or a command-line override) stops the study with a user error, nothing trained or written.
A run that fails while running (a user error or any exception) is recorded in the status
column and the other runs go on. The outputs
``results.md``, ``results.csv`` and ``results.png`` are made by :mod:`wsreid.ablate_table`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from wsreid.engine import signals
from wsreid.engine.rundir import IN_USE, RUN_LOCK, RunMode, RunState, same_recipe
from wsreid.errors import ExitCode, RecipeError, StudyError, UserError
from wsreid.launcher import STUDY_PID_ENV
from wsreid.recipe.model import MAX_SEED
from wsreid.recipe.yamlio import override_text

__all__ = [
    "StudyError",
    "Variant",
    "Study",
    "LoadedStudy",
    "PlannedRun",
    "study_json_schema",
    "RunOutcome",
    "load_study",
    "plan_runs",
    "run_state",
    "run_study",
    "check_runs",
    "collect_outcomes",
    "execute_in_process",
    "execute_subprocess",
    "ChildProcesses",
    "StudyReport",
    "ablation_study",
    "stopped_run_note",
    "read_run_metrics",
]

#: the test metrics a run's metrics.json holds (wsreid.evaluation), in table order
METRICS = ["R1", "R5", "R10", "mAP", "mINP"]
STATE_DONE, STATE_RESUME, STATE_RESTART, STATE_NEW = (RunState.DONE.value, RunState.RESUME.value,
                                                      RunState.RESTART.value, RunState.NEW.value)
#: the outcome of a finished run whose saved recipe no longer matches its variant
STATE_OUTDATED = "outdated"
#: such a run tabulated all the same (``--report-only --include-outdated``)
STATE_OUTDATED_INCLUDED = "outdated-included"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: a mapping of dotted recipe keys to values; ``overrides:`` with every line commented
#: out (YAML null) is no override
Overrides = Annotated[dict[str, Any], BeforeValidator(lambda value: {} if value is None else value)]


class Variant(_Strict):
    """One row of the table: a label and recipe overrides (dotted key -> value; null removes
    a key, e.g. a component)."""

    label: str = Field(min_length=1, description="the variant's row in the table and its directory runs/<label>")
    overrides: Overrides = Field(default_factory=dict)
    note: str | None = None


class Study(_Strict):
    """The study file's content (paths as written)."""

    base: str = Field(description="the recipe every run trains, relative to the study file")
    variants: list[Variant] = Field(min_length=1, description="the rows of the table: each a label and its "
                                                              "overrides (docs/ablations.md)")
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]] = Field(default_factory=lambda: [0], min_length=1)
    overrides: Overrides = Field(default_factory=dict)
    reference: str | None = None
    output_dir: str | None = None
    metrics: list[str] = Field(default_factory=lambda: list(METRICS), min_length=1)
    plot_metrics: list[str] = Field(default_factory=lambda: ["R1", "mAP"])
    title: str | None = None


def study_json_schema() -> dict[str, Any]:
    """JSON schema of a study file (``wsreid schema --study``; for editors). Variant
    overrides are dotted recipe keys, checked when the study is planned."""
    from wsreid.recipe.reference import JSON_SCHEMA_DIALECT

    return {"$schema": JSON_SCHEMA_DIALECT, **Study.model_json_schema(), "title": "wsreid ablation study"}


@dataclass
class LoadedStudy:
    """A validated study: ``base`` resolved against the study file, ``reference`` filled in."""

    study: Study
    path: Path
    base: Path
    reference: str
    #: where each key of the study file is (file:line), for messages about its overrides
    locations: Any = field(default=None, repr=False, compare=False)

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
    #: override text -> where the study file writes it (``study.yaml:12: variant 'x'``)
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class RunOutcome:
    """What happened to a planned run in this invocation: ``status`` is ``done`` (finished
    earlier), ``ran``, ``failed`` (``error`` holds the one-line message), ``outdated``
    (finished, but with a recipe other than the study's now; ``error`` says what to do; not
    tabulated) or ``planned``."""

    run: PlannedRun
    status: str
    error: str | None = None
    metrics: dict[str, Any] | None = field(default=None, repr=False)


def _slug(label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "_", label).strip("_")
    return "variant" if set(slug) <= {"."} else slug  # '.' and '..' would leave runs/


#: recipe keys a study sets for each run itself -> what to do instead, in the study file
#: and on the command line
_STUDY_SETS = {"train.seed": ("list the seeds in the study's 'seeds:'", "give --seeds"),
               "output_dir": ("each run goes to <output_dir>/runs/<label>/seed-<S>: set the study's 'output_dir:'",
                              "each run goes to <output_dir>/runs/<label>/seed-<S>: give --output-dir")}


def _sets_per_run_key(key: str, value: Any) -> str | None:
    """The per-run key of :data:`_STUDY_SETS` that the override ``key: value`` sets (a
    ``train: {seed: ...}`` mapping too), else None."""
    if key in _STUDY_SETS:
        return key
    if key == "train" and isinstance(value, dict) and "seed" in value:
        return "train.seed"
    return None


def load_study(path: str | Path) -> LoadedStudy:
    """Read and check a study file; raises :class:`StudyError` (one line)."""
    from wsreid.recipe import read_yaml_file

    path = Path(path)
    try:
        tree, locations = read_yaml_file(path, kind="study")
    except RecipeError as exc:
        raise StudyError(str(exc)) from None
    recipe_keys = [k for k in ("extends", "data", "encoder", "objectives", "train") if k in tree]
    if recipe_keys and "base" not in tree and "variants" not in tree:
        raise StudyError(f"{path}: this looks like a recipe, not a study (it has {', '.join(recipe_keys)}; a study "
                         "has base and variants)", hint="train a recipe with 'wsreid run', or write a study whose "
                         "base is this recipe (docs/ablations.md)")
    try:
        study = Study.model_validate(tree)
    except ValidationError as exc:
        raise _study_file_error(exc, tree, locations) from None
    base = (path.parent / Path(study.base).expanduser()).resolve()  # ~ expanded, as in extends
    if not base.is_file():
        raise StudyError(f"{locations.find(('base',))}: base: {study.base!r} not found (looked for {base})",
                         hint="the path is relative to the study file")
    labels = [v.label for v in study.variants]
    slugs: dict[str, str] = {}
    for i, label in enumerate(labels):
        if _slug(label) in slugs:
            other = slugs[_slug(label)]
            first = labels.index(other)
            raise StudyError(f"{locations.find(('variants', i, 'label'))}: variants: "
                             + (f"label {label!r} is used twice (the variant at line "
                                f"{locations.find(('variants', first, 'label')).line} has it too)" if other == label else
                                f"labels {other!r} and {label!r} give the same directory name"),
                             hint="give every variant its own label")
        slugs[_slug(label)] = label
    for prefix, overrides in [(("overrides",), study.overrides)] + [
            (("variants", i, "overrides"), v.overrides) for i, v in enumerate(study.variants)]:
        for key, value in overrides.items():
            per_run = _sets_per_run_key(key, value)
            if per_run is not None:
                raise StudyError(f"{locations.find(prefix + (key,))}: {'.'.join(map(str, prefix + (key,)))}: the study "
                                 f"sets {per_run} for each run, so this value would be replaced without a word",
                                 hint=_STUDY_SETS[per_run][0])
    if len(set(study.seeds)) != len(study.seeds):
        raise StudyError(f"{locations.find(('seeds',))}: seeds: {study.seeds} repeats a seed", hint="list each seed once")
    _check_metric_names(study, locations)
    reference = study.reference or labels[0]
    if reference not in labels:
        raise StudyError(f"{locations.find(('reference',))}: reference: no variant is labelled {reference!r}",
                         hint=f"labels: {', '.join(labels)}")
    if "plot_metrics" not in study.model_fields_set:  # the default: those of R1 and mAP the table has
        study.plot_metrics = [m for m in study.plot_metrics if m in study.metrics] or study.metrics[:2]
    for name in [m for m in study.plot_metrics if m not in study.metrics]:
        raise StudyError(f"{locations.find(('plot_metrics',))}: plot_metrics: {name!r} is not in metrics",
                         hint=f"metrics: {', '.join(study.metrics)}")
    return LoadedStudy(study, path, base, reference, locations)


def _study_file_error(exc: ValidationError, tree: dict[str, Any], locations) -> StudyError:
    """The one line of a study file that does not validate, worded as a recipe's error is
    (the recipe's own translation of pydantic's errors: ``unknown key 'seed' (did you mean
    'seeds'?)``, ``... (got 'zero')``, a missing key with what it is for)."""
    from wsreid.recipe.build import validation_error

    return StudyError(str(validation_error(exc, tree, locations, Study)))


def _check_metric_names(study: Study, locations) -> None:
    """Every name in ``metrics`` must be a metric of metrics.json (:data:`METRICS`); a
    misspelt one would tabulate as a column of '-'."""
    import difflib

    for i, name in enumerate(study.metrics):
        if name in METRICS:
            continue
        by_case = {m.lower(): m for m in METRICS}
        close = [by_case[name.lower()]] if name.lower() in by_case else \
            [by_case[m] for m in difflib.get_close_matches(name.lower(), list(by_case), n=1)]
        raise StudyError(f"{locations.find(('metrics', i))}: metrics: {name!r} is not a metric of metrics.json",
                         hint=(f"did you mean {close[0]!r}? " if close else "") + f"metrics: {', '.join(METRICS)}")


def default_output_dir(loaded: LoadedStudy) -> Path:
    """The study's ``output_dir``, else ``runs/ablations/<study file name>``."""
    return Path(loaded.study.output_dir or f"runs/ablations/{loaded.path.stem}").expanduser()


def plan_runs(loaded: LoadedStudy, output_dir: Path, cli_overrides: list[str] = ()) -> list[PlannedRun]:
    """Every variant x seed, in study order (variants outer, seeds inner). A command-line
    override of a key the study sets per run (``train.seed``, ``output_dir``) is a
    :class:`~wsreid.errors.UserError`."""
    from wsreid.recipe.merge import parse_override

    for text in cli_overrides:
        parts, value = parse_override(text)
        per_run = _sets_per_run_key(".".join(parts), value)
        if per_run is not None:
            raise UserError(f"-o {text}: the study sets {per_run} for each run, so this value would be replaced "
                            "without a word", hint=_STUDY_SETS[per_run][1])
    where = loaded.locations.find if loaded.locations is not None else (lambda key: str(loaded.path))
    shared = [override_text(k, v) for k, v in loaded.study.overrides.items()]
    sources = {text: f"{where(('overrides', k))}: overrides"
               for text, k in zip(shared, loaded.study.overrides)}
    runs = []
    for i, variant in enumerate(loaded.study.variants):
        own = [override_text(k, v) for k, v in variant.overrides.items()]
        mine = dict(sources)
        mine.update({text: f"{where(('variants', i, 'overrides', k))}: variant {variant.label!r}"
                     for text, k in zip(own, variant.overrides)})
        for seed in loaded.study.seeds:
            run_dir = output_dir / "runs" / _slug(variant.label) / f"seed-{seed}"
            tail = [override_text("train.seed", seed), override_text("output_dir", str(run_dir))]
            runs.append(PlannedRun(variant.label, seed, run_dir, shared + own + list(cli_overrides) + tail, mine))
    return runs


def _in_study_terms(run: PlannedRun, message: str) -> str:
    """A recipe error about an override the study file writes, said where the study file
    writes it: ``override -o train.lrr=1: ...`` -> ``study.yaml:12: variant 'x', override
    train.lrr=1: ...``. Other messages (a command-line ``-o``) are left as they are."""
    for text, where in run.sources.items():
        if message.startswith(f"override -o {text}: "):
            return f"{where}, override {text}: {message[len(f'override -o {text}: '):]}"
    return message


class UnreadableMetrics(Exception):
    """A run's metrics.json that is not JSON or not what a finished run writes; the message
    is the run's one-line status."""


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """The content of ``run_dir/metrics.json``, checked: a JSON object whose ``test`` maps
    metric names to numbers. Raises :class:`UnreadableMetrics` (``unreadable metrics.json
    (PATH): why``) for a truncated, corrupt or unexpected file."""
    import math

    path = run_dir / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
        raise UnreadableMetrics(_unreadable(path, why)) from None
    test = data.get("test") if isinstance(data, dict) else None
    if not isinstance(test, dict):
        raise UnreadableMetrics(_unreadable(path, "no 'test' metrics"))
    for name, value in test.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UnreadableMetrics(_unreadable(path, f"test.{name} is {json.dumps(value)}, not a number"))
    return data


def _unreadable(path: Path, why: str) -> str:
    return f"unreadable metrics.json ({path}): {why}; delete it and run the study again to redo this run"


def _finished(run: PlannedRun, status: str) -> RunOutcome:
    """The outcome of a run that wrote metrics.json: ``status`` with its metrics, or
    ``failed`` when the file cannot be read."""
    try:
        return RunOutcome(run, status, metrics=read_run_metrics(run.run_dir))
    except UnreadableMetrics as exc:
        return RunOutcome(run, "failed", error=str(exc))


def run_state(run_dir: Path) -> str:
    """``done`` (metrics.json present), ``resume`` (a wsreid run with a checkpoint),
    ``restart`` (a wsreid run without one) or ``new`` (:func:`wsreid.engine.rundir.run_state`)."""
    from wsreid.engine.rundir import run_state as state_of

    return state_of(run_dir).value


def _decide(loaded: LoadedStudy, run: PlannedRun, disabled: list[str],
            warn: Callable[[PlannedRun, list[str]], None] | None = None,
            trained: dict[str, Any] | None = None, replaced: list[str] | None = None) -> str:
    """The state of ``run``, with ``restart`` for a run whose recipe has changed since.
    Loading the recipe here also reports an invalid variant before anything runs, and
    hands its schedule warnings (:attr:`wsreid.recipe.LoadedRecipe.warnings`: a component
    that never runs, a warm-up the run never ends) to ``warn``. ``trained``, when given,
    receives the resolved recipe without its ``output_dir`` (what the run trains);
    ``replaced``, for a FINISHED wsreid run (recipe.yaml beside metrics.json) that would be
    started again, the first key that
    differs (``"key: <value> in the run, <value> now"``, between the saved recipe.yaml
    loaded again and the recipe now)."""
    from wsreid.engine.rundir import recipe_differences
    from wsreid.recipe import dump_resolved_yaml, load_recipe

    from wsreid.engine.run import check_precision

    state = run_state(run.run_dir)
    resolved = load_recipe(loaded.base, run.overrides, disabled=disabled)
    if state != STATE_DONE:  # as run_recipe refuses it before the run starts (fp16 without a GPU)
        check_precision(resolved.recipe, resolved.locations)
    if warn is not None and resolved.warnings:
        warn(run, resolved.warnings)
    if trained is not None:
        trained.update({k: v for k, v in resolved.resolved.items() if k != "output_dir"})
    if state in (STATE_DONE, STATE_RESUME) and not same_recipe(run.run_dir, dump_resolved_yaml(resolved), disabled,
                                                               resolved.resolved):
        if state == STATE_DONE and replaced is not None and (run.run_dir / "recipe.yaml").exists():
            try:  # loaded again, so that an option added since at its default is no difference
                saved = load_recipe(run.run_dir / "recipe.yaml", disabled=disabled).resolved
                replaced.extend(recipe_differences(saved, resolved.resolved, limit=1) or ["its recipe"])
            except Exception:  # a recipe.yaml that no longer loads: the run is replaced all the same
                replaced.append("its recipe.yaml no longer loads")
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


#: the run mode for a run in each state (a finished run is not run again)
_MODES = {STATE_NEW: RunMode.NEW, STATE_RESUME: RunMode.RESUME, STATE_RESTART: RunMode.OVERWRITE}


def execute_in_process(loaded: LoadedStudy, run: PlannedRun, state: str, disabled: list[str]) -> None:
    """Run one planned run in this process through
    :func:`wsreid.engine.session.run_recipe`, the function behind ``wsreid run``; raises on
    failure (a ``RunInterrupted`` on Ctrl-C, with ``study_run``: this run). The run's own
    line (``resume with: wsreid run ...``) is not printed: the study's stop line
    (:func:`stopped_run_note`) says what to do, running the same study command again."""
    import gc

    from wsreid.engine.session import RunInterrupted, run_recipe
    from wsreid.recipe import load_recipe

    try:
        recipe = load_recipe(loaded.base, run.overrides, disabled=disabled)
        run_recipe(recipe, None, _MODES[state])
    except RunInterrupted as exc:
        exc.study_run = run  # type: ignore[attr-defined]
        raise
    finally:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def stopped_run_note(exc: BaseException) -> str:
    """What running the study again does with the runs a stop interrupted, as the study's
    stop line ends: `` (it resumes A seed 0 from its last complete checkpoint)``, one clause
    a run, joined by '; ' (``--jobs N`` stops several); '' when no run was going (a stop
    between runs). The runs are marked on the exception: ``study_run`` (one run, in this
    process or a ``--subprocess`` child), ``study_runs`` (the children of ``--jobs N``)."""
    runs = getattr(exc, "study_runs", None) or [r for r in [getattr(exc, "study_run", None)] if r is not None]
    clauses = []
    for run in runs:
        which = f"{run.label} seed {run.seed}"
        try:
            state = run_state(run.run_dir)
        except Exception:  # an unreadable directory: the next invocation says what it is
            continue
        clause = {STATE_RESUME: f"it resumes {which} from its last complete checkpoint",
                  STATE_RESTART: f"it starts {which} again: no checkpoint was written yet",
                  STATE_NEW: f"it starts {which} from the beginning",
                  STATE_DONE: f"{which} had finished and is kept"}.get(state)
        if clause is not None:
            clauses.append(clause)
    return f" ({'; '.join(clauses)})" if clauses else ""


#: seconds a study waits for its child ``wsreid run`` processes to stop after passing them
#: its stop signal (each keeps its last checkpoint, says where to resume and exits); the
#: ones still running then are killed
CHILD_STOP_S = 30.0
#: seconds the output of a stopped child is still passed on once it has ended (a
#: DataLoader worker of a killed child can hold the pipe open a while)
_OUTPUT_GRACE_S = 5.0


class ChildProcesses:
    """The ``wsreid run`` processes a study has running (one; ``--jobs N``: up to N), so
    that the study's stop signal reaches them when it alone gets one (a scheduler's SIGTERM
    to its process): :meth:`stop` passes the signal on, waits for them and kills the
    ones that outlast :data:`CHILD_STOP_S`; none is started afterwards."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set = set()
        #: the signal the study was stopped by, once :meth:`stop` was called
        self.stopped: int | None = None

    def start(self, popen: Callable[[], Any]):
        """``popen()`` (a started ``subprocess.Popen``), recorded; raises
        :class:`~wsreid.engine.signals.Stopped` instead once the study was stopped."""
        with self._lock:
            if self.stopped is not None:
                raise signals.Stopped(self.stopped)
            proc = popen()
            self._running.add(proc)
            return proc

    def ended(self, proc) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop(self, signum: int, log: Callable[[str], None] | None = None) -> None:
        """Pass ``signum`` to every running child and wait for them (at most
        :data:`CHILD_STOP_S` seconds, less on another stop signal); kill and reap what still
        runs. Returns once none is left."""
        import subprocess

        with self._lock:
            self.stopped = signum
            procs = list(self._running)
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:  # ended in between
                    pass
        deadline = time.monotonic() + CHILD_STOP_S
        late = []
        try:
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    late.append(proc)
        except KeyboardInterrupt:  # stopped again while waiting: end them now
            late = [proc for proc in procs if proc.poll() is None]
        for proc in procs:
            _kill(proc)
        for proc in late:
            (log or _log_line)(f"wsreid run (process {proc.pid}) did not stop within {CHILD_STOP_S:g} s of "
                               f"{_signal_name(signum)}; killed it")


def _kill(proc) -> None:
    """Kill ``proc`` if it still runs, and reap it, whatever signal comes meanwhile."""
    while True:
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            return
        except KeyboardInterrupt:
            continue


def _stop_signal_of(code: int) -> int | None:
    """The stop signal (SIGINT, SIGTERM, SIGHUP: :data:`wsreid.engine.signals.HANDLED`) that
    ended a child ``wsreid run`` with exit status ``code`` - caught by its handler (``wsreid
    run`` then exits with 128 + the signal) or killing it (a negative ``returncode``) - or
    None."""
    stops = {int(signum) for signum, _ in signals.HANDLED}
    for signum in (-code, code - 128):
        if signum in stops:
            return signum
    return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _pass_output(stream, out, errors: list[str]) -> None:
    """Copy the child's stderr ``stream`` to ``out``, keeping its ``error:`` lines. Once
    ``out`` cannot be written (closed after a stop, or its terminal gone: SIGHUP) the
    stream is still read to its end, so that the child never waits on a full pipe."""
    try:
        for line in stream:
            if out is not None:
                try:
                    out.write(line)
                except (OSError, ValueError):
                    out = None
            if line.startswith("error: "):
                errors.append(line[len("error: "):].strip())
    except (OSError, ValueError):  # the stream closed
        pass


def execute_subprocess(argv: list[str], *, log_file: Path | None = None, threads: int | None = None,
                       children: ChildProcesses | None = None, on_start: Callable[[], None] | None = None) -> None:
    """Run ``python -m wsreid <argv>`` in a child process; its last ``error:`` line becomes
    the failure message. Its stderr is passed through, or written to ``log_file`` (parallel
    studies, whose progress bars would interleave); the log is created when the child
    starts, so a run that never started (the study stopped first, or the child could not be
    started) leaves none, and the log of its previous attempt is kept. ``threads`` sets the
    child's ``OMP_NUM_THREADS`` unless the environment already does. ``children``: the
    study's running children (``--jobs N``), which a stop of the study stops. ``on_start``
    is called just before the child starts (the progress line of a run that does start).

    A child ended by a stop signal (exit status 128 + SIGINT, SIGTERM or SIGHUP, or killed
    by one) stops the study: :class:`~wsreid.engine.signals.Stopped` with that signal;
    killed by another signal it failed. A stop signal that reaches this process while it
    waits (SIGTERM to the study alone) is passed on to the child, which stops as ``wsreid
    run`` does; the same signal is raised here once it has ended (:meth:`ChildProcesses.stop`)."""
    import os
    import subprocess

    children = children if children is not None else ChildProcesses()
    env = dict(os.environ)
    env[STUDY_PID_ENV] = str(os.getpid())  # the child ends with this process (wsreid.cli.end_with_the_study)
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    sink = None

    def start():
        """The child, its log opened for it; called once the study is known not to be stopped."""
        nonlocal sink
        if on_start is not None:
            on_start()
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            sink = log_file.open("w")
        try:
            return subprocess.Popen([sys.executable, "-m", "wsreid", *argv], stderr=subprocess.PIPE, text=True,
                                    stdout=sink, env=env)
        except BaseException:  # not started: no log of a run that never ran
            if sink is not None:
                sink.close()
                sink = None
                log_file.unlink(missing_ok=True)
            raise

    errors: list[str] = []
    try:
        proc = children.start(start)
        reader = threading.Thread(target=_pass_output, args=(proc.stderr, sink or sys.stderr, errors), daemon=True)
        reader.start()
        try:
            code = _wait_awake(proc)
        except KeyboardInterrupt as exc:  # the main thread: the stop signal came to this process
            children.stop(signals.signal_of(exc))
            reader.join(_OUTPUT_GRACE_S)
            raise
        finally:
            children.ended(proc)
        reader.join(_OUTPUT_GRACE_S if children.stopped is not None else None)
    finally:
        if sink is not None:
            sink.close()
    if children.stopped is not None:  # --jobs N: the study was stopped while this child ran
        raise signals.Stopped(children.stopped)
    stop = _stop_signal_of(code)
    if stop is not None:
        raise signals.Stopped(stop)
    last_error = errors[-1] if errors else None
    if code == ExitCode.USER_ERROR and last_error:
        raise UserError(last_error)
    if code:
        where = f" (log: {log_file})" if log_file is not None else ""
        what = f"wsreid run was killed by {_signal_name(-code)}" if code < 0 else f"wsreid run exited with code {code}"
        raise RunFailed((last_error or what) + where)


#: seconds the main thread sleeps at most while it waits for a child or a training thread:
#: a stop signal that the system gave to another thread of the study is handled (Python
#: runs handlers in the main thread) within this time, not when the awaited run ends
_AWAKE_S = 0.2


def _wait_awake(proc) -> int:
    """``proc.wait()``, waking every :data:`_AWAKE_S` so that a stop signal is handled."""
    import subprocess

    while True:
        try:
            return proc.wait(timeout=_AWAKE_S)
        except subprocess.TimeoutExpired:
            continue


def _result_awake(future):
    """``future.result()``, waking every :data:`_AWAKE_S` so that a stop signal is handled."""
    while True:
        try:
            return future.result(timeout=_AWAKE_S)
        except TimeoutError:
            if future.done():  # the training itself raised a TimeoutError
                return future.result()


class RunFailed(RuntimeError):
    """A ``wsreid run`` child that failed otherwise than with a user error (its message
    says how: its last error line, its exit code or the signal that killed it)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (UserError, RunFailed)) else f"{type(exc).__name__}: {text}"


def _log_line(line: str) -> None:
    """One progress line on stderr in a single write: ``-j N`` logs from N threads, and
    ``print``'s separate writes of the text and the newline could interleave. A stderr
    that cannot be written (its terminal closed: SIGHUP) loses the line; the study goes on
    stopping."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def run_study(loaded: LoadedStudy, runs: list[PlannedRun], *, disabled: list[str] = (),
              execute: Callable[..., None] | None = None, dry_run: bool = False,
              jobs: int = 1, log_dir: Path | None = None,
              log: Callable[[str], None] = _log_line,
              states: dict[int, str] | None = None, rerun_outdated: bool = False) -> list[RunOutcome]:
    """Run (or, ``dry_run``, list) every planned run; never stops on a failing run. A dry
    run lists a finished run whose recipe differs as ``outdated`` (its outcome too): refused
    without ``rerun_outdated``, else trained again (``restart``).
    ``states``: the state of each run (numbered from 1) as :func:`check_runs` found it;
    the others are decided here, and a finished run they would replace (its recipe
    differs) is refused before anything runs unless ``rerun_outdated``, as by :func:`check_runs`.

    ``jobs > 1`` runs that many trainings at once, each in its own ``python -m wsreid run``
    process with ``OMP_NUM_THREADS = cpus // jobs`` (unless set) and its output in
    ``log_dir/<label>-seed-<S>.log``; ``execute`` is then not used. Outcomes keep the order
    of ``runs`` either way. ``execute(loaded, run, state, disabled)`` runs one training in
    this process (default :func:`execute_in_process`). A KeyboardInterrupt stops the study
    (the outcomes so far are kept on the exception as ``outcomes``); a stop signal is passed
    on to the ``wsreid run`` processes running (:class:`ChildProcesses`), which stop with it."""
    disabled = list(disabled)
    execute = execute or execute_in_process
    outcomes: dict[int, RunOutcome] = {}
    pending: list[tuple[int, PlannedRun, str, str]] = []
    replacing: list[tuple[PlannedRun, str]] = []
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.label} seed {run.seed}"
        try:
            replaced: list[str] = []
            state = states[i] if states is not None and i in states else _decide(loaded, run, disabled,
                                                                                replaced=replaced)
            if replaced and not dry_run:
                replacing.append((run, replaced[0]))
            elif replaced:
                state = STATE_OUTDATED
        except KeyboardInterrupt as exc:
            exc.outcomes = [outcomes[k] for k in sorted(outcomes)]  # type: ignore[attr-defined]
            raise
        except Exception as exc:  # an invalid variant must not stop the study
            message = _in_study_terms(run, _one_line(exc))
            log(f"{head}: FAILED: {message}")
            outcomes[i] = RunOutcome(run, "failed", error=message)
            continue
        if dry_run and state == STATE_OUTDATED:  # what the study would do with it
            outdated = "finished with another recipe than the study asks for now"
            if rerun_outdated:
                log(f"{head}: {STATE_RESTART} -> {run.run_dir}\n    wsreid "
                    + shlex.join(_argv(loaded, run, STATE_RESTART, disabled)))
                outcomes[i] = RunOutcome(run, STATE_OUTDATED, error=f"{outdated}; trained again (--rerun-outdated)")
            else:
                log(f"{head}: outdated, refused without --rerun-outdated -> {run.run_dir}")
                outcomes[i] = RunOutcome(run, STATE_OUTDATED, error=f"{outdated}; the study refuses to replace it "
                                                                    "without --rerun-outdated")
        elif dry_run:
            log(f"{head}: {state} -> {run.run_dir}\n    wsreid " + shlex.join(_argv(loaded, run, state, disabled)))
            outcomes[i] = RunOutcome(run, STATE_DONE if state == STATE_DONE else "planned")
        elif state == STATE_DONE:
            log(f"{head}: finished earlier, kept ({run.run_dir})")
            outcomes[i] = RunOutcome(run, STATE_DONE)
        else:
            pending.append((i, run, state, head))

    if replacing and not rerun_outdated:
        raise _outdated_refusal(replacing)
    children = ChildProcesses()  # --jobs N: the trainings running, for a stop to reach them

    def one(item: tuple[int, PlannedRun, str, str]) -> RunOutcome:
        i, run, state, head = item
        argv = _argv(loaded, run, state, disabled)

        def announce() -> None:
            log(f"{head}: {'resuming' if state == STATE_RESUME else 'running'} -> {run.run_dir}")

        try:
            if jobs > 1:  # said once the child starts: a run queued when the study stops never does
                log_file = (log_dir or run.run_dir.parent) / f"{_slug(run.label)}-seed-{run.seed}.log"
                execute_subprocess(argv, log_file=log_file, threads=_threads_per_job(jobs), children=children,
                                   on_start=announce)
            else:
                announce()
                execute(loaded, run, state, disabled)
        except KeyboardInterrupt as exc:
            if jobs <= 1:  # the run it stopped, for the study's stop line (a --subprocess child's says only what was kept)
                exc.study_run = getattr(exc, "study_run", run)  # type: ignore[attr-defined]
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
                outcomes[i] = _result_awake(future)
        except KeyboardInterrupt as exc:
            try:
                children.stop(signals.signal_of(exc), log)  # a stop signal that came to this process alone too
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                exc.outcomes = [outcomes[k] for k in sorted(outcomes)]  # type: ignore[attr-defined]
                exc.study_runs = [item[1] for future, item in zip(futures, pending)  # type: ignore[attr-defined]
                                  if future.done() and not future.cancelled()
                                  and isinstance(future.exception(), KeyboardInterrupt)]
            raise
        pool.shutdown(wait=True)
    ordered = [outcomes[k] for k in sorted(outcomes)]
    for k, outcome in enumerate(ordered):
        metrics_file = outcome.run.run_dir / "metrics.json"
        if (outcome.status == "failed" and IN_USE in (outcome.error or "") and metrics_file.exists()
                and not (outcome.run.run_dir / RUN_LOCK).exists()):  # refused as in use, since finished by its holder
            ordered[k] = collect_outcomes([outcome.run], loaded, disabled)[0]  # its recipe checked as any other's
            if ordered[k].status == STATE_DONE:
                log(f"{outcome.run.label} seed {outcome.run.seed}: finished by another process meanwhile, kept")
        elif outcome.status in (STATE_DONE, "ran") and metrics_file.exists():
            ordered[k] = _finished(outcome.run, outcome.status)
            if ordered[k].status == "failed":
                log(f"{outcome.run.label} seed {outcome.run.seed}: FAILED: {ordered[k].error}")
        elif outcome.status == "ran":
            outcome.status, outcome.error = "failed", "the run ended without metrics.json"
    return ordered


def check_runs(loaded: LoadedStudy, runs: list[PlannedRun], *, disabled: list[str] = (),
               log: Callable[[str], None] = _log_line, strict: bool = True,
               rerun_outdated: bool = False, outdated: list[tuple[PlannedRun, str]] | None = None) -> dict[int, str]:
    """Load and validate the recipe of every planned run before any of them trains: the
    state of each valid run (numbered from 1, as in the progress lines). Prints the
    schedule warnings once per variant, and a warning for two variants that train the
    same recipe. With ``strict`` (a study about to run) raises :class:`StudyError` when
    some run is invalid, after one ``FAILED`` line each, so that a typo in the last variant
    or in a command-line ``-o`` stops the study before anything is trained or written;
    without (``--dry-run``, which lists the invalid runs itself) leaves them out. A
    FINISHED run whose recipe differs from what the study asks for now (another study in
    the same directory, a mistaken ``-o``) would be deleted and trained again: with
    ``strict`` that is refused (a :class:`StudyError` naming the first such run and key)
    unless ``rerun_outdated``; without ``strict`` (``--dry-run``) a ``note:`` line says so,
    such a run's state is ``outdated`` (listed as such by :func:`run_study`) and ``outdated``,
    when given, receives (run, the first key that differs) of each, for the caller to say
    what the study would do (:func:`_outdated_refusal`)."""
    disabled = list(disabled)
    states: dict[int, str] = {}
    replacing: list[tuple[PlannedRun, str]] = []
    invalid = 0
    variants_warned: dict[str, list[str]] = {}  # a warning line -> the variants it concerns
    warned_same: set[tuple[str, str]] = set()

    def warn(run: PlannedRun, lines: list[str]) -> None:  # once per variant: its seeds share the schedule
        for line in lines:
            labels = variants_warned.setdefault(line, [])
            if run.label not in labels:
                labels.append(run.label)

    first_of: dict[str, str] = {}  # what a run trains -> the first variant that trains it
    for i, run in enumerate(runs, 1):
        trained: dict[str, Any] = {}
        replaced: list[str] = []
        try:
            states[i] = _decide(loaded, run, disabled, warn, trained, replaced)
            if replaced:
                replacing.append((run, replaced[0]))
                if not strict:
                    states[i] = STATE_OUTDATED
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            invalid += 1
            if strict:
                log(f"[{i}/{len(runs)}] {run.label} seed {run.seed}: FAILED: {_in_study_terms(run, _one_line(exc))}")
            continue
        first = first_of.setdefault(json.dumps(trained, sort_keys=True, default=str), run.label)
        if first != run.label and (first, run.label) not in warned_same:
            warned_same.add((first, run.label))
            log(f"warning: variants {first!r} and {run.label!r} train the same recipe (seed {run.seed}): the "
                "overrides that tell them apart change nothing, so their rows will be the same")
    # one line per warning (a warning of the base recipe, e.g. a smoke run's -o train.epochs, is
    # every variant's: named once, not once per variant)
    labels = [variant.label for variant in loaded.study.variants]  # the study's, not only those checked now
    for line, warned in variants_warned.items():
        who = "every variant" if len(labels) > 1 and warned == labels else ", ".join(warned)
        log(f"warning: {who}: {line}")
    if invalid and strict:
        raise StudyError(f"{loaded.path}: {invalid} of {len(runs)} planned runs are invalid (their FAILED lines "
                         "above say why); nothing was run", hint="fix them, then run the study")
    if not strict:
        for run, difference in replacing:
            log(f"note: {run.label} seed {run.seed} finished with another recipe than the study asks for now "
                f"({difference}): running the study replaces it "
                + ("(--rerun-outdated)" if rerun_outdated else "only with --rerun-outdated"))
    if outdated is not None:
        outdated.extend(replacing)
    if replacing and strict and not rerun_outdated:
        raise _outdated_refusal(replacing)
    return states


def _outdated_refusal(replacing: list[tuple[PlannedRun, str]]) -> StudyError:
    """The error of finished runs a study would delete and train again (its recipe
    differs; (run, the first difference) each), naming the first."""
    run, difference = replacing[0]
    study_dir = run.run_dir.parents[2]  # OUTPUT_DIR/runs/LABEL/seed-S
    return StudyError(f"{study_dir}: {len(replacing)} finished run(s) were trained with "
                      f"another recipe than the study asks for now ({run.label} seed {run.seed}: {difference}); "
                      "running would delete them and train them again; nothing was run",
                      hint="add --rerun-outdated to do so, or --report-only --include-outdated to tabulate them "
                           "as they are, or give another --output-dir")


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


def _parse_seeds(text: str | Iterable[int] | None) -> list[int] | None:
    """``--seeds`` ("0,1") or, from code, a list of integers -> the seeds; None for all."""
    if text is None:
        return None
    if not isinstance(text, str):  # a library caller's list
        if not isinstance(text, Iterable):
            raise TypeError(f"seeds takes a list of integers or a string '0,1', got {text!r}: write [{text!r}]")
        items = list(text)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in items):
            raise TypeError(f"seeds takes a list of integers or a string '0,1', got {items!r}")
        text = ",".join(str(s) for s in items)
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise UserError(f"--seeds {text!r}: no seed given", hint="e.g. --seeds 0 or --seeds 0,1")
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise UserError(f"--seeds {text}: expected comma-separated integers", hint="e.g. --seeds 0 or --seeds 0,1") from None
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UserError(f"--seeds {text}: seed {repeated[0]} is given twice", hint="list each seed once")
    outside = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if outside:
        raise UserError(f"--seeds {text}: seed {outside[0]} is " + ("negative" if outside[0] < 0 else
                                                                    f"over {MAX_SEED} (2**32 - 1)"),
                        hint=f"a training seed is an integer from 0 to {MAX_SEED}, e.g. --seeds 0 or --seeds 0,1")
    return seeds


def _threads_per_job(jobs: int) -> int:
    import os

    return max(1, (os.cpu_count() or 1) // jobs)


def collect_outcomes(runs: list[PlannedRun], loaded: LoadedStudy | None = None,
                     disabled: list[str] = (), rerun: list[str] | None = None) -> list[RunOutcome]:
    """Outcomes from what the run directories hold, running nothing: ``done`` with the
    metrics where metrics.json exists, ``planned`` (not run) otherwise; ``failed`` for an
    unreadable metrics.json. With ``loaded``, a finished run that saved its recipe.yaml is
    checked as a study invocation checks it before running (:func:`_decide`): one whose
    saved recipe differs from what its variant asks for now is ``outdated`` (the next
    invocation would run it again; its message names the command that does, ``rerun``
    followed by ``--variant LABEL``), one whose variant no longer loads is ``failed``; a
    run directory without recipe.yaml (metrics.json alone) is taken as it is."""
    outcomes = []
    for run in runs:
        if not (run.run_dir / "metrics.json").exists():
            earlier = read_failures(run.run_dir.parents[2], run).get(_failure_key(run))
            outcomes.append(RunOutcome(run, "failed", error=earlier + EARLIER_FAILURE) if earlier
                            else RunOutcome(run, "planned"))
            continue
        if loaded is not None and (run.run_dir / "recipe.yaml").exists():
            try:
                state = _decide(loaded, run, list(disabled))
            except Exception as exc:  # the variant no longer makes a valid recipe
                outcomes.append(RunOutcome(run, "failed", error=_one_line(exc)))
                continue
            if state == STATE_RESTART:
                command = shlex.join([*(rerun or ["wsreid", "ablate", str(loaded.path)]), "--variant", run.label,
                                      "--rerun-outdated"])
                outcomes.append(RunOutcome(run, STATE_OUTDATED, error=(
                    f"its recipe.yaml differs from what the study asks for now; rerun the variant: {command}")))
                continue
        outcomes.append(_finished(run, STATE_DONE))
    return outcomes


#: the study directory's record of runs that failed (label/seed-S -> the message and the
#: run's overrides): a failed run leaves no directory, so a later report would otherwise
#: say "not run"
FAILURES_FILE = "failures.json"
#: what a report adds to such a message
EARLIER_FAILURE = " (when it last ran)"


def _failure_key(run: PlannedRun) -> str:
    return f"{_slug(run.label)}/seed-{run.seed}"


def _failure_records(output_dir: Path) -> dict[str, dict[str, Any]]:
    """``failures.json`` as key -> {"error", "overrides"}; a record of an earlier version
    (key -> message) has overrides None. Empty when missing or unreadable."""
    try:
        data = json.loads((output_dir / FAILURES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): {"error": str(v["error"]), "overrides": v.get("overrides")} if isinstance(v, dict) and "error" in v
            else {"error": str(v), "overrides": None} for k, v in data.items()}


def read_failures(output_dir: Path, run: PlannedRun | None = None) -> dict[str, str]:
    """The failures recorded in ``output_dir`` (key -> message; empty when none, or
    unreadable); with ``run``, only a failure of that run's overrides as planned now: the
    message of a variant since changed (fixed) is not its."""
    return {k: v["error"] for k, v in _failure_records(output_dir).items()
            if run is None or v["overrides"] is None or _same_overrides(v["overrides"], run.overrides)}


def _same_overrides(recorded: Any, planned: list[str]) -> bool:
    """Whether the ``-o`` texts a failure was recorded with set what ``planned`` sets, compared
    as the values they are read as: a record written when a value was written otherwise
    (JSON: ``output_dir="runs/x"``) is still that run's."""
    from wsreid.recipe.merge import parse_override

    if not isinstance(recorded, list) or len(recorded) != len(planned):
        return False
    try:
        return [parse_override(str(text)) for text in recorded] == [parse_override(text) for text in planned]
    except RecipeError:
        return False


def record_failures(output_dir: Path, outcomes: list[RunOutcome]) -> None:
    """Keep the messages of the runs that failed in this invocation in
    :data:`FAILURES_FILE`, with the overrides they ran with, forget those of runs that
    finished since (written atomically; removed when empty)."""
    failures = _failure_records(output_dir)
    for o in outcomes:
        if o.status == "failed" and o.error and not (o.run.run_dir / "metrics.json").exists():
            failures[_failure_key(o.run)] = {"error": o.error.removesuffix(EARLIER_FAILURE),
                                             "overrides": list(o.run.overrides)}
        elif (o.run.run_dir / "metrics.json").exists():
            failures.pop(_failure_key(o.run), None)
    path = output_dir / FAILURES_FILE
    if not failures:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(failures, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _prepare_output_dir(output_dir: Path, where: str, *, create: bool) -> None:
    """Check that the study directory can be used, before anything runs: create it
    (``create``), else (a dry run, which creates nothing) check that it is a directory or
    could be made. Raises :class:`StudyError` naming ``where`` the path came from."""
    hint = "give a directory that exists or can be created"
    if output_dir.exists() and not output_dir.is_dir():
        raise StudyError(f"{where} {output_dir}: exists and is not a directory", hint=hint)
    if create:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudyError(f"{where} {output_dir}: cannot create the study directory: "
                             f"{exc.strerror or exc}", hint=hint) from None
        return
    for parent in output_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StudyError(f"{where} {output_dir}: cannot create the study directory: {parent} is not a "
                                 "directory", hint=hint)
            break


@dataclass
class StudyReport:
    """What :func:`ablation_study` did: the outcomes (every run of the study, in order),
    the output paths (``md``, ``csv``, ``png``; empty on a dry run), whether nothing was
    run (``dry_run``) and the table's rows (``rows``: one
    :class:`~wsreid.ablate_table.VariantRow` per variant, in the study's order - mean,
    std, delta to the reference and the paired-by-seed deltas per metric, as results.md
    and results.csv show them; empty on a dry run)."""

    outcomes: list[RunOutcome]
    paths: dict[str, Path]
    dry_run: bool = False
    rows: list = field(default_factory=list)
    #: a dry run: the error the study would stop with before running anything (finished runs
    #: it would replace, refused without ``rerun_outdated``); None when it would run
    refused: StudyError | None = None

    @property
    def failed(self) -> bool:
        """Whether some run of the study failed."""
        return any(o.status == "failed" for o in self.outcomes)


def ablation_study(study: str | Path, *, output_dir: str | Path | None = None, overrides: list[str] = (),
                   seeds: str | Iterable[int] | None = None, variants: list[str] = (), subprocess: bool = False, jobs: int = 1,
                   disabled: list[str] = (), dry_run: bool = False, report_only: bool = False,
                   include_outdated: bool = False, rerun_outdated: bool = False,
                   log: Callable[[str], None] = _log_line) -> StudyReport:
    """Run (or continue) an ablation study and write its table, CSV and chart
    (:mod:`wsreid.ablate_table`). ``seeds`` ("0,1" or [0, 1]) and ``variants`` (exact labels) select
    the runs to do now; the table still covers every run of the study. ``report_only``:
    run nothing, tabulate the finished runs. ``include_outdated``: tabulate a finished run
    whatever recipe it was trained with (runs copied in from another study to pair by seed),
    instead of marking it ``outdated``. ``rerun_outdated``: delete and train again the finished
    runs whose recipe differs from what the study asks for now (refused otherwise:
    :func:`check_runs`). ``subprocess``: each run in its own
    ``python -m wsreid run`` process. A KeyboardInterrupt carries the outcomes so far as
    ``outcomes``."""
    from wsreid.ablate_table import aggregate, write_outputs
    from wsreid.launcher import launched_processes
    from wsreid.recipe import parse_override
    from wsreid.errors import check_strings

    if launched_processes() > 1:  # each process would plan and start the study's runs on its own: a hang
        raise StudyError("wsreid ablate runs under one process only: it starts its trainings itself (-j N for N at "
                         "once), and under torchrun every process would start them on its own",
                         hint="run it without torchrun; train one recipe on several processes with torchrun ... -m "
                              "wsreid run RECIPE")
    if not isinstance(study, (str, os.PathLike)):
        raise TypeError(f"ablation_study takes the path of a study file, got a {type(study).__name__}")
    overrides = check_strings("overrides", overrides)
    variants = check_strings("variants", variants)
    disabled = check_strings("disabled", disabled)
    loaded = load_study(study)
    for text in overrides:
        parse_override(text)  # fail before any run on a malformed override
    if output_dir is not None and not os.fspath(output_dir):
        raise UserError("output_dir '': an empty path (an unset variable?) would mean the study's own directory",
                        hint="name the directory, or pass None for the study's output_dir")
    where = "--output-dir" if output_dir else f"{loaded.path}: output_dir"
    output_dir = Path(output_dir).expanduser() if output_dir else default_output_dir(loaded)
    chosen = _parse_seeds(seeds)
    wanted = _check_variants(list(variants), loaded)
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise TypeError(f"jobs takes a whole number (trainings at once), got {jobs!r} ({type(jobs).__name__})")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1", hint="give the number of trainings to run at once")
    _prepare_output_dir(output_dir, where, create=False)
    if chosen is not None:
        extra = [s for s in chosen if s not in loaded.study.seeds]
        if extra:  # seeds beyond the study's: plan them too (the table shows them as well)
            loaded.study.seeds = list(loaded.study.seeds) + extra
    runs = plan_runs(loaded, output_dir, overrides)
    selected = [r for r in runs if (chosen is None or r.seed in chosen) and (wanted is None or r.label in wanted)]
    # every run to do now is validated before the first trains (as --dry-run does): a typo
    # in the last variant or in a command-line -o must not surface after hours of training
    outdated: list[tuple[PlannedRun, str]] = []  # finished runs the study would replace
    states = None if report_only else check_runs(loaded, selected, disabled=list(disabled), log=log,
                                                 strict=not dry_run, rerun_outdated=rerun_outdated,
                                                 outdated=outdated)
    if report_only and not (output_dir / "runs").is_dir():  # a mistyped --output-dir: no empty table written there
        raise StudyError(f"--report-only: {output_dir} holds no run of a study (no runs/ folder); nothing written",
                         hint=f"check {where}" + (f" (the study's own is {default_output_dir(loaded)})"
                                                  if where == "--output-dir" else "") + ", or run the study first")
    if not dry_run:
        _prepare_output_dir(output_dir, where, create=True)
    rerun = ["wsreid", "ablate", str(study), *(x for text in overrides for x in ("-o", text)),
             *(["--output-dir", str(output_dir)] if where == "--output-dir" else []),
             *(x for name in disabled for x in ("--disable-plugin", name))]
    def collected(planned: list[PlannedRun]) -> list[RunOutcome]:
        """The outcomes of finished runs not run now; outdated ones (their recipe differs
        from what the study asks for now) are found either way, to say so, and with
        ``include_outdated`` tabulated, their row's status saying so."""
        found = collect_outcomes(planned, loaded, list(disabled), rerun)
        return [_finished(o.run, STATE_OUTDATED_INCLUDED) if include_outdated and o.status == STATE_OUTDATED else o
                for o in found]

    if report_only:
        outcomes = collected(runs)
        outdated = sum(o.status == STATE_OUTDATED for o in outcomes)
        if outdated and not any(o.metrics is not None for o in outcomes):
            given = " ".join(f"-o {text}" for text in overrides)
            raise StudyError(f"--report-only{' ' + given if given else ''}: no finished run matches what the study "
                             f"asks for now ({outdated} of {len(outcomes)} outdated), so the table would be empty; "
                             f"nothing written, the results in {output_dir} are kept",
                             hint="drop the -o that changes the runs" if given else
                             "rerun the variants, or add --include-outdated to tabulate them as they are")
    else:
        try:
            outcomes = run_study(loaded, selected, disabled=list(disabled),
                                 execute=_execute_in_subprocess if subprocess else None, dry_run=dry_run,
                                 jobs=jobs, log_dir=output_dir / "logs", log=log, states=states,
                                 rerun_outdated=rerun_outdated)
        except KeyboardInterrupt as exc:
            exc.total = len(runs)  # type: ignore[attr-defined]
            raise
        if len(selected) < len(runs) and not dry_run:  # the table covers every run of the study
            done = {(o.run.label, o.run.seed): o for o in outcomes}
            outcomes = [done.get((r.label, r.seed)) or collected([r])[0] for r in runs]
    if dry_run:
        return StudyReport(outcomes, {}, dry_run=True,
                           refused=_outdated_refusal(outdated) if outdated and not rerun_outdated else None)
    if not report_only:
        try:
            record_failures(output_dir, outcomes)
        except OSError:  # the table below says the same; its own write reports a full disk
            pass
    rows = aggregate(loaded, outcomes)
    earlier = [name for name in ("results.md", "results.csv", "results.png") if (output_dir / name).is_file()]
    try:
        paths = write_outputs(loaded, rows, output_dir, list(overrides))
    except OSError as exc:
        from wsreid.fileio import disk_full, permission_refused, write_failure

        reason = write_failure(exc) if disk_full(exc) or not exc.filename else f"{exc.filename}: {write_failure(exc)}"
        kept = f"the previous {', '.join(earlier)} kept as they were" if earlier else "nothing written"
        fix = "free space" if disk_full(exc) else "fix the permissions" if permission_refused(exc) else "fix that"
        raise StudyError(f"{output_dir}: cannot write the study's results: {reason}; {kept}",
                         hint=f"{fix}, then run with --report-only") from None
    return StudyReport(outcomes, paths, rows=rows)


def _execute_in_subprocess(loaded: LoadedStudy, run: PlannedRun, state: str, disabled: list[str]) -> None:
    """``--subprocess``: one ``python -m wsreid run`` per run, one after another."""
    execute_subprocess(_argv(loaded, run, state, disabled))
