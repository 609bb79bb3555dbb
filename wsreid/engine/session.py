"""Running a recipe: the one function behind ``wsreid run``, ``wsreid ablate`` (in-process)
and the initial-encoder pretraining (recipe key ``init``).

A newcomer follows a run through four modules::

    wsreid/cli/run.py       parse the command line, load the recipe, print the result
    wsreid/engine/session.py  run_recipe(): run directory, init weights, Run, close
    wsreid/engine/run.py    Run: build components, train epochs, evaluate and select, save
                            Run.train_step(): one step (views, encode, relate, loss, step)

:func:`run_recipe` prepares the run directory (:mod:`wsreid.engine.rundir`), writes the
resolved recipe, resolves the initial weights (training the initial run once when needed,
:func:`initial_run`), builds :class:`~wsreid.engine.run.Run` and trains it. A failure
before the first checkpoint (Ctrl-C: before the first epoch) removes the directory this
start created (a directory that existed before is emptied and kept).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from wsreid.engine import signals
from wsreid.engine.checkpoint import callers_random_state_kept
from wsreid.engine.components import package_versions
from wsreid.engine.data import listed_processes, process_counts
from wsreid.engine.init import copy_tokenizer, init_cache_dir
from wsreid.engine.run import Run, check_precision
from wsreid.engine.rundir import (
    RUN_MARKER,
    RunMode,
    check_resume_recipe,
    check_resume_target,
    command,
    discard_run_dir,
    lock_run_dir,
    prepare_run_dir,
    unlock_run_dir,
    weights_of,
    write_run_files,
)
from wsreid.distributed import peer_process_lost
from wsreid.errors import MainProcessError, RecipeError, TrainingError, UserError
from wsreid.launcher import launch_from_env

__all__ = ["RunInterrupted", "RunResult", "run_recipe", "initial_run", "init_weights", "resolved_yaml_for"]


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C, SIGTERM or SIGHUP; ``message`` says where to resume from (one
    line); ``signum``: the signal (SIGINT for a KeyboardInterrupt of unknown origin);
    ``brief``: what was kept, without the command to go on (the line of a run that a study
    started, whose own stop line says to run the study again); the message where it names
    no command or the command does more than the study would (a finished run's end)."""

    def __init__(self, run_dir: Path, message: str, signum: int = int(signal.SIGINT), brief: str | None = None):
        super().__init__(message)
        self.run_dir, self.message, self.signum = run_dir, message, signum
        self.brief = message if brief is None else brief


@dataclass
class RunResult:
    """What :func:`run_recipe` returns: the run directory, the final metrics (as written
    to ``metrics.json``) and whether this process is the main one (the one that prints)."""

    run_dir: Path
    metrics: dict[str, Any] = field(repr=False)
    is_main: bool


def check_runnable(loaded, caller: str) -> None:
    """What a library caller passes as ``loaded`` to ``caller`` (run_recipe,
    evaluate_target): a :class:`~wsreid.recipe.LoadedRecipe` with its plugin set, used as
    loaded. A ``TypeError`` in one line otherwise; a typed recipe assigned to after loading
    is a :class:`~wsreid.errors.RecipeError` (:meth:`LoadedRecipe.check_unchanged`)."""
    from wsreid.recipe.loader import LoadedRecipe

    if not isinstance(loaded, LoadedRecipe):
        hint = "load it first: loaded = wsreid.recipe.load_recipe(path_or_mapping, overrides)"
        raise TypeError(f"{caller} takes the LoadedRecipe of load_recipe, got {type(loaded).__name__} ({hint})")
    if loaded.plugins is None:
        raise TypeError(f"{caller}: this recipe was validated against a bare registry (load_recipe(..., registry=...)), "
                        "so it has no plugin set to build its components with; load it with "
                        "load_recipe(path, plugins=load_plugins(...)), or without either to load the installed plugins")
    loaded.check_unchanged()


def resolved_yaml_for(loaded, run_dir: Path) -> str:
    """The resolved recipe a run into ``run_dir`` saves as recipe.yaml: its ``output_dir``
    is the directory the run actually uses."""
    from dataclasses import replace

    from wsreid.recipe import dump_resolved_yaml

    return dump_resolved_yaml(replace(loaded, resolved={**loaded.resolved, "output_dir": str(run_dir)}))


def _prepare_run_dir_once(run_dir: Path, mode: RunMode, main_process: bool):
    """The main process prepares and locks the run directory (returns what
    :func:`prepare_run_dir` returns; False on the other processes); under torchrun it records the outcome in the launcher's
    store and the other processes wait for it (:func:`wsreid.distributed.wait_for_run_dir`),
    so a directory the main process refuses stops every process at once, its line printed
    once (:class:`~wsreid.errors.MainProcessError`) - they would otherwise wait in the process group's rendezvous until torchrun kills them."""
    from wsreid.distributed import announce_run_dir, wait_for_run_dir

    if not main_process:
        problem = wait_for_run_dir(run_dir)
        if problem is not None:
            raise MainProcessError(problem)
        return False
    try:
        created = prepare_run_dir(run_dir, mode)
        lock_run_dir(run_dir)  # a run that started here since prepare_run_dir keeps its directory
    except UserError as exc:
        announce_run_dir(run_dir, str(exc))
        raise
    except BaseException:
        announce_run_dir(run_dir, "the main process failed while preparing the run directory (its output says why)")
        raise
    announce_run_dir(run_dir, None)
    return created


@callers_random_state_kept()
def run_recipe(loaded, output_dir: str | os.PathLike[str] | None = None, mode: RunMode | str = RunMode.NEW, *,
               record_as: str | os.PathLike[str] | None = None, scratch: bool = False,
               on_prepared: Callable[[], None] | None = None) -> RunResult:
    """Train the loaded recipe (:func:`wsreid.recipe.load_recipe`) into ``output_dir``
    (default: the recipe's ``output_dir``).

    ``mode``: ``new`` (the directory must be empty or missing), ``resume`` or ``overwrite``
    (:class:`~wsreid.engine.rundir.RunMode`). Under a multi-process launcher only the first
    process prepares the directory; the others wait for it at the first barrier of
    :meth:`Run.setup`. Raises :class:`RunInterrupted` on Ctrl-C, or SIGTERM or SIGHUP under
    the command line's handlers (:mod:`wsreid.engine.signals`) (the last checkpoint is
    kept; before the first one, the message names the command that starts the run again
    in place) and :class:`~wsreid.errors.UserError` on a user mistake. A failure before
    the first checkpoint - and Ctrl-C before the first epoch - removes the directory this
    call created (empties one that existed before, and keeps it), so the same command
    runs again once the cause is fixed. ``record_as``:
    the ``output_dir`` written into the run's recipe.yaml when the directory is renamed
    afterwards (default: the run directory). ``scratch``: the caller removes the
    directory whatever happens (the initial encoder's pretraining), so no message names a
    command into it: Ctrl-C raises a plain KeyboardInterrupt. While it runs, the main
    process holds the directory's lock file; another run there is refused. ``on_prepared``:
    called once the run directory is checked and prepared, before the data and the
    encoder are built, in every process of a multi-process launch (``wsreid run`` prints
    the recipe's warnings there, from the first process only, so that a refused directory
    or ``--resume`` is one line, not the last of several)."""
    check_runnable(loaded, "run_recipe")
    mode = RunMode(mode)
    recipe, plugins = loaded.recipe, loaded.plugins
    if output_dir is not None and not os.fspath(output_dir):  # as the command line's --output-dir ''
        raise UserError("output_dir '': an empty path (an unset variable?) would mean the recipe's own directory",
                        hint="name the directory, or pass None for the recipe's output_dir")
    run_dir = Path(output_dir or recipe.output_dir).expanduser()  # ~ is the home folder, as in data.root
    resolved_yaml = resolved_yaml_for(loaded, Path(record_as) if record_as is not None else run_dir)
    if mode is RunMode.RESUME and not run_dir.exists():
        raise _no_run_to_resume(run_dir, loaded.source)
    launch = launch_from_env(strict=True)
    main_process, world_size = launch.is_main, launch.world_size
    if mode is RunMode.RESUME:
        # the directory first: a folder that is no run has no recipe to compare
        check_resume_target(run_dir, is_main=main_process)
        disabled = sorted(getattr(plugins, "disabled", ()) or ())
        resolved = {**loaded.resolved, "output_dir": str(run_dir)}
        check_resume_recipe(run_dir, resolved_yaml, resolved, disabled, loaded.source)
    if mode is not RunMode.RESUME and recipe.init is not None and recipe.init.run is not None:
        source = Path(recipe.init.run).resolve()
        if source == run_dir.resolve() or run_dir.resolve() in source.parents:
            raise UserError(f"init.run {recipe.init.run} is the output directory {run_dir} (or inside it): "
                            f"a new run there would delete the weights it starts from",
                            hint="train into another --output-dir, or copy the initial run elsewhere first")
    check_precision(loaded.recipe, loaded.locations)  # before the run directory, the data and an init pretraining
    created = _prepare_run_dir_once(run_dir, mode, main_process)
    if mode is RunMode.RESUME and main_process and (run_dir / "metrics.json").is_file():
        print(f"note: {run_dir} had finished (its metrics.json is written): --resume trains no more epochs; it "
              "evaluates the selected checkpoint again and does the end of the run again (metrics.json, "
              "curves.png, what plugins do then)", file=sys.stderr, flush=True)
    try:
        return _train(loaded, run_dir, mode, resolved_yaml, created, main_process, world_size, scratch, on_prepared)
    except RecipeError as exc:
        exc.cite(loaded.locations)  # a value found wrong during the run: the line that set it
        raise
    finally:
        if main_process:
            unlock_run_dir(run_dir)


def _no_run_to_resume(run_dir: Path, source: Path | None) -> UserError:
    """The error of ``--resume`` into a directory that does not exist. A relative
    ``output_dir`` is relative to the working directory (not to the recipe file), so the
    message says where it was looked for; when the recipe is the recipe.yaml of a run
    directory, the hint is the command that resumes that run from here."""
    where = f" (looked for {Path.cwd() / run_dir}: a relative run directory is relative to the working directory, " \
            f"not to the recipe file)" if not run_dir.is_absolute() else ""
    if source is not None and Path(source).name == "recipe.yaml" and (Path(source).parent / RUN_MARKER).is_file():
        hint = f"to resume the run that recipe belongs to: " \
               f"{command('wsreid', 'run', source, '--output-dir', Path(source).parent, '--resume')}"
    else:
        hint = "run the command from the directory the run was started in, or name the run directory with " \
               "--output-dir; to start a new run there, leave --resume out"
    return UserError(f"--resume: the run directory {run_dir} does not exist{where}", hint=hint)


def _train(loaded, run_dir: Path, mode: RunMode, resolved_yaml: str, created: bool, main_process: bool,
           world_size: int, scratch: bool, on_prepared: Callable[[], None] | None = None) -> RunResult:
    """The part of :func:`run_recipe` that runs under the run directory's lock (held by
    the main process, :func:`~wsreid.engine.rundir.lock_run_dir`)."""
    recipe, plugins = loaded.recipe, loaded.plugins
    run = None
    try:
        if on_prepared is not None:
            on_prepared()
        if main_process:
            write_run_files(run_dir, resolved_yaml, package_versions(plugins, loaded.resolved))
        weights = init_weights(recipe.init, run_dir, is_main=main_process, world_size=world_size)
        run = Run(recipe, plugins, run_dir, resolved_yaml=resolved_yaml, resume=mode is RunMode.RESUME,
                  init_weights=weights)
        run.setup()
        metrics = run.train()
    except BaseException as exc:
        # a stop signal received but swallowed, then another failure (a collective whose
        # peer process stopped, a DataLoader worker that ended): the run was stopped all the same
        interrupted = isinstance(exc, KeyboardInterrupt) or signals.received() is not None
        started = run is not None and run.training_started
        # nothing of this start is worth keeping: it failed before its first checkpoint
        # (Ctrl-C: before its first epoch; after that, it names the command to start again)
        removed = created and (not started or (not interrupted and _no_checkpoint(run_dir)))
        if run is not None and run.logger is not None:
            run.logger.close(quiet=True)  # its TensorBoard thread must not write on into a removed directory
        if removed:
            discard_run_dir(run_dir, created)
        signum = signals.signal_of(exc)
        if interrupted and not isinstance(exc, RunInterrupted) and run is not None and run.finished:
            again = command("wsreid", "run", run_dir / "recipe.yaml", "--output-dir", run_dir)
            raise RunInterrupted(run_dir, f"{signals.describe(signum)} after the run had finished (its metrics.json "
                                          "is written); curves.png or what plugins do at the run's end may be "
                                          f"missing; to do them, resume with: {again} --resume",
                                 signum) from None
        # (a process other than the main one stopped before the main one made the run directory: nothing to name)
        prepared = run_dir.is_dir()
        if interrupted and not isinstance(exc, RunInterrupted) and not removed and not scratch and prepared:
            from wsreid.engine.checkpoint import latest_checkpoint

            last = latest_checkpoint(run_dir)
            again = command("wsreid", "run", run_dir / "recipe.yaml", "--output-dir", run_dir)
            how = signals.describe(signum)
            if last is None:  # --resume needs a checkpoint: start again in place
                raise RunInterrupted(run_dir, f"{how}; no checkpoint was written yet; start again with: "
                                              f"{again} --overwrite", signum,
                                     brief=f"{how}; no checkpoint was written yet") from None
            counts = _resume_counts(recipe, run)
            resume = _resume_command(again, world_size, counts)
            if world_size > 1 and 1 not in counts:
                launched = f" (with {listed_processes(counts)}{_OTHER_COUNTS})"
            else:
                launched = (f" (in one process; or launched as before, e.g. torchrun --nproc_per_node {world_size} -m "
                            f"{again} --resume: with {listed_processes(counts)})" if world_size > 1 else "")
            raise RunInterrupted(run_dir, f"{how}; last complete checkpoint: {last.name}; resume with: "
                                          f"{resume}{launched}", signum,
                                 brief=f"{how}; last complete checkpoint: {last.name}") from None
        if interrupted and not isinstance(exc, KeyboardInterrupt):
            raise signals.Stopped(signum) from None
        if world_size > 1 and not isinstance(exc, KeyboardInterrupt) and peer_process_lost(exc):
            raise _peer_lost(run_dir, world_size, removed, _resume_counts(recipe, run)) from None
        raise
    try:
        run.close()  # its barrier fails here when the main process ended at the run's end (metrics.json, a hook)
    except Exception as exc:
        if world_size > 1 and peer_process_lost(exc):
            raise _peer_lost(run_dir, world_size, removed=False, counts=_resume_counts(recipe, run)) from None
        raise
    return RunResult(run_dir, metrics, run.dist.is_main)


#: what the resume lines say of the process counts they leave out
_OTHER_COUNTS = ": others change the steps per epoch"


def _resume_command(again: str, world_size: int, counts: list[int]) -> str:
    """The command that resumes a run of ``world_size`` processes (``again``: its ``wsreid
    run ...`` without ``--resume``): in one process when 1 is among ``counts``
    (:func:`_resume_counts`), else launched as before, with torchrun (in one process the
    steps per epoch would change)."""
    if world_size == 1 or 1 in counts:
        return f"{again} --resume"
    return f"torchrun --nproc_per_node {world_size} -m {again} --resume"


def _resume_counts(recipe, run: Run | None) -> list[int]:
    """The numbers of processes a resume of this run trains the same global batches with:
    its sampler's (:meth:`~wsreid.engine.data.PairBatchSampler.resume_counts`, the same
    steps per epoch too) once built, else those the recipe's batch size allows
    (:func:`~wsreid.engine.data.process_counts`)."""
    sampler = getattr(run, "sampler", None)
    if sampler is not None:
        return sampler.resume_counts()
    train = recipe.train
    return process_counts(train.batch_size, train.instances_per_identity if train.sampler == "identity" else 1)


def _peer_lost(run_dir: Path, world_size: int, removed: bool, counts: list[int]) -> TrainingError:
    """The error of a process whose collective failed because another process of the
    launch ended: not a fault of its own (it read as the encoder plugin's, or a traceback),
    with what to run next; ``counts``: the numbers of processes it resumes with
    (:func:`_resume_counts`)."""
    what = f"another process of this {world_size}-process launch ended during the run (its own message says why)"
    again = command("wsreid", "run", run_dir / "recipe.yaml", "--output-dir", run_dir)
    from wsreid.engine.checkpoint import latest_or_none

    last = None if removed else latest_or_none(run_dir)
    if last is not None:
        others = "" if 1 in counts else _OTHER_COUNTS
        return TrainingError(f"{what}; last complete checkpoint: {last.name}",
                             hint=f"fix what it reports, then resume (with {listed_processes(counts)}{others}): "
                                  f"{_resume_command(again, world_size, counts)}")
    return TrainingError(f"{what}; no checkpoint was written yet", hint="fix what it reports, then run the command again")


def _no_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds no complete checkpoint (a damaged pointer counts as one)."""
    from wsreid.engine.checkpoint import latest_checkpoint

    try:
        return latest_checkpoint(run_dir) is None
    except UserError:
        return False


def initial_run(init, *, world_size: int = 1) -> Path:
    """The run directory whose encoder initialises a run with this ``init`` block:
    ``init.run``, or the cached run of ``init.recipe``, trained first (in this process,
    through :func:`run_recipe`) when the cache does not hold it yet."""
    if init.run is not None:
        run_dir = Path(init.run)
        if not (run_dir / "recipe.yaml").exists():
            raise UserError(f"init.run: {run_dir} is not a wsreid run directory", hint="name a run directory")
        return run_dir
    from wsreid.recipe import load_recipe

    loaded = load_recipe(init.recipe)
    target = init_cache_dir(loaded)
    if (target / "metrics.json").exists():
        return target
    if world_size > 1:
        raise UserError(f"init: the encoder of {init.recipe} is not trained yet",
                        hint=f"train it once in a single process into the cache this run reads: "
                             f"{command('wsreid', 'run', init.recipe, '--output-dir', target)}")
    print(f"init: training the initial encoder once: {init.recipe} -> {target} (as the file is written: -o "
          "options change the recipe that names it, not this one)", file=sys.stderr)
    for line in loaded.warnings:  # what `wsreid validate` of that recipe would warn of
        print(f"warning: init: {line}", file=sys.stderr, flush=True)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        run_recipe(loaded, tmp, RunMode.NEW, record_as=target, scratch=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if (target / "metrics.json").exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):  # nothing of the pretraining is kept: no command into it
            signum = signals.signal_of(exc)
            raise RunInterrupted(tmp, f"{signals.describe(signum)} while training the initial encoder "
                                      f"({init.recipe}); nothing of it was kept: run your command again to train "
                                      f"it from the start", signum) from None
        raise
    return target


def init_weights(init, run_dir: Path | None, *, is_main: bool = True, world_size: int = 1) -> Path | None:
    """The weights file the encoder of a run with this ``init`` block starts from (None
    without ``init``); the main process first copies the initial run's tokenizer into
    ``run_dir`` (:func:`wsreid.engine.init.copy_tokenizer`)."""
    if init is None:
        return None
    source = initial_run(init, world_size=world_size)
    if is_main and run_dir is not None:
        copy_tokenizer(source, run_dir)
    return weights_of(source, init.checkpoint)
