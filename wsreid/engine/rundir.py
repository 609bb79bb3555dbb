"""The run directory: what marks one, when it may be (re)used, what it holds.

A run directory holds ``recipe.yaml`` (the resolved recipe), ``versions.json``, the marker
file :data:`RUN_MARKER`, ``logs/``, ``checkpoints/`` and, once finished, ``metrics.json``
(docs/architecture.md, "A run directory"). The rules, in one place:

* a new run needs an empty or missing directory (:func:`prepare_run_dir`);
* :attr:`RunMode.OVERWRITE` replaces a wsreid run (never a foreign directory); its marker
  is deleted last, so a run that cannot be deleted entirely stays a wsreid run;
* :attr:`RunMode.RESUME` continues a wsreid run, with the recipe it was started with
  (:func:`check_resume_recipe`; ``output_dir`` aside), which the marker records;
* a start that fails early leaves the directory as it found it (:func:`discard_run_dir`):
  one it created is removed, one that existed is emptied and kept;
* a run in progress holds the lock file :data:`RUN_LOCK` (:func:`lock_run_dir`): another
  run is refused there - ``--overwrite`` would delete it, ``--resume`` would train it
  twice - until it ends; a lock left by a process that no longer runs is taken over;
* the weights of a run are its best checkpoint, else its latest (:func:`run_weights`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import shutil
import socket
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Iterable

from wsreid.checkpoint_layout import CHECKPOINTS, RUN_MARKER
from wsreid.errors import TrainingError, UserError
from wsreid.fileio import cannot_create_in

__all__ = [
    "RUN_MARKER",
    "RUN_LOCK",
    "RunMode",
    "RunState",
    "FreshRunDir",
    "prepare_run_dir",
    "discard_run_dir",
    "recorded_recipe",
    "strip_output_dir",
    "check_resume_recipe",
    "check_resume_target",
    "command",
    "recipe_differences",
    "same_recipe",
    "run_state",
    "run_weights",
    "weights_of",
    "write_run_files",
    "check_not_in_use",
    "lock_run_dir",
    "unlock_run_dir",
]


#: The file a run in progress holds in its directory: JSON {pid, host, started}.
RUN_LOCK = ".wsreid-lock"


class RunMode(str, Enum):
    """How a run treats its output directory: ``new`` (it must be empty or missing),
    ``resume`` (continue the run in it), ``overwrite`` (replace the run in it)."""

    NEW = "new"
    RESUME = "resume"
    OVERWRITE = "overwrite"

    @classmethod
    def _missing_(cls, value):
        """A string in another case names the same mode (``"RESUME"``); anything else is
        a ``ValueError`` that lists the modes."""
        if isinstance(value, str) and value.lower() in {m.value for m in cls}:
            return cls(value.lower())
        raise ValueError(f"mode {value!r} is not a run mode: use one of {', '.join(repr(m.value) for m in cls)} "
                         "(or RunMode.NEW / RESUME / OVERWRITE)")


class RunState(str, Enum):
    """What a run directory holds, as :func:`run_state` reads it."""

    DONE = "done"  # metrics.json present
    RESUME = "resume"  # a wsreid run with a checkpoint
    RESTART = "restart"  # a wsreid run without one
    NEW = "new"  # not a wsreid run (missing or foreign)


class FreshRunDir(Enum):
    """How :func:`prepare_run_dir` made a directory ready for a new run, which says what a
    start that fails early discards (:func:`discard_run_dir`)."""

    CREATED = "created"  # it did not exist: the whole directory goes
    EXISTING = "existing"  # it existed, empty or emptied for --overwrite: its contents go, it stays


def check_resume_target(run_dir: Path, is_main: bool = True) -> None:
    """What ``--resume`` needs of ``run_dir`` before anything else is looked at (its
    recipe, its data): a directory holding a wsreid run with a complete checkpoint. Raises
    the :class:`UserError` that says which option works - a folder that is no run was told
    its recipe.yaml was missing and to use --overwrite, which refuses it; a run without a
    checkpoint was refused only after its data were loaded and its encoder built; a run in
    progress is said to be one, by the main process (``is_main``) only (it was told to
    start again with --overwrite, which refuses a directory in use; the other processes
    of a launch may find the main process's own lock)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--resume: {run_dir} is a file, not a run directory", hint="check --output-dir / output_dir")
    if not (run_dir / RUN_MARKER).exists():
        raise UserError(f"--resume: {run_dir} holds no wsreid run", hint="check --output-dir / output_dir")
    if is_main:  # another process of this launch may find the main one's lock: the main process judges
        check_not_in_use(run_dir)  # a run in its first epoch has no checkpoint yet, and --overwrite would be refused
    from wsreid.checkpoint_layout import latest_checkpoint

    try:
        found = latest_checkpoint(run_dir)
    except TrainingError:  # a pointer naming no checkpoint: said with its fix when the run restores
        return
    if found is None:
        raise UserError(f"--resume: {run_dir} holds no checkpoint yet (its first epoch did not finish), so there "
                        "is nothing to resume", hint="start it again in place with --overwrite")


def _entries(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` other than a run's lock file and its temporary copies (a
    process killed between taking the lock and writing its marker leaves them alone)."""
    return [e.name for e in run_dir.iterdir() if not e.name.startswith(RUN_LOCK)]


def prepare_run_dir(run_dir: Path, mode: RunMode) -> FreshRunDir | bool:
    """Check (and, for ``overwrite``, empty) the output directory for ``mode``. Returns
    False for ``resume`` (the run's files stay, whatever happens), else how the directory
    was made ready (:class:`FreshRunDir`, truthy), so that a failure before the first
    checkpoint can discard this start (:func:`discard_run_dir`). Raises a
    :class:`UserError` that says which option to use, or why the run cannot be deleted."""
    mode = RunMode(mode)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output directory {run_dir} is a file", hint="choose another --output-dir")
    check_not_in_use(run_dir)
    existed = run_dir.is_dir()
    exists = existed and bool(_entries(run_dir))
    if mode is RunMode.RESUME:
        if not (run_dir / RUN_MARKER).exists():
            raise UserError(f"--resume: {run_dir} holds no wsreid run", hint="check --output-dir / output_dir")
        checkpoints = run_dir / CHECKPOINTS
        problem = cannot_create_in(checkpoints, "checkpoint") if checkpoints.is_dir() else None
        if problem is not None:  # found now, not after an epoch of training
            raise UserError(f"--resume: {checkpoints} cannot be written: {problem.strerror or problem}",
                            hint="fix its permissions; the run writes its next checkpoint there")
        return False
    if exists:
        if not (run_dir / RUN_MARKER).exists():
            raise UserError(f"output directory {run_dir} exists and is not a wsreid run",
                            hint="choose another --output-dir; wsreid never deletes foreign directories")
        if mode is not RunMode.OVERWRITE:
            from wsreid.checkpoint_layout import newest_complete_checkpoint

            resumable = newest_complete_checkpoint(run_dir) is not None
            raise UserError(f"output directory {run_dir} already holds a run" + ("" if resumable else
                                                                                " that has no checkpoint yet"),
                            hint="pass --resume to continue it or --overwrite to start it again" if resumable
                            else "pass --overwrite to start it again, or choose another --output-dir")
        _delete_run(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output directory {run_dir} cannot be created: {exc.strerror or exc}",
                        hint="choose another --output-dir") from None
    return FreshRunDir.EXISTING if existed else FreshRunDir.CREATED


def _delete_run(run_dir: Path) -> None:
    """Empty ``run_dir`` for ``--overwrite``, its marker last: a run that cannot be deleted
    entirely (a read-only file system, a folder that cannot be removed) stays a wsreid run,
    so the same command can be run again. Raises a :class:`UserError` naming what could
    not be deleted."""
    try:
        for entry in sorted(run_dir.iterdir(), key=lambda p: p.name == RUN_MARKER):
            _delete(entry)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise UserError(f"cannot delete the run in {run_dir} for --overwrite: {where}{exc.strerror or exc}",
                        hint="part of it may be deleted; it is still a wsreid run: make it writable and run the same "
                             "command again, or choose another --output-dir") from None


def _delete(path: Path) -> None:
    """Remove ``path``: a file or link, or a folder with everything in it. The ``OSError``
    of what cannot be removed names it (``filename``)."""
    if path.is_dir() and not path.is_symlink():
        for entry in path.iterdir():
            _delete(entry)
        path.rmdir()
    else:
        path.unlink()


def discard_run_dir(run_dir: Path, fresh: FreshRunDir) -> None:
    """Discard what a start that failed before its first checkpoint wrote into ``run_dir``:
    remove the directory when it created it (``fresh`` from :func:`prepare_run_dir`),
    else empty it and keep it (a directory made beforehand keeps its permissions); its
    marker goes only once everything else is gone. The run's lock is left to
    :func:`unlock_run_dir`. Nothing is raised: what cannot be deleted stays."""
    if fresh is FreshRunDir.CREATED:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    if not run_dir.is_dir():
        return
    emptied = True
    for entry in run_dir.iterdir():
        if entry.name not in (RUN_MARKER, RUN_LOCK):
            try:
                _delete(entry)
            except OSError:
                emptied = False
    if emptied:
        try:
            (run_dir / RUN_MARKER).unlink(missing_ok=True)
        except OSError:
            pass


def _lock_holder(run_dir: Path) -> dict | None:
    """The lock of ``run_dir`` when a process that may still run holds it: another live
    process on this host, or any process on another host (it cannot be asked). None when
    there is no lock, or the process is gone (killed) - or is this one."""
    try:
        holder = json.loads((run_dir / RUN_LOCK).read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):  # no lock, or unreadable: no process can be named
        return None
    if host != socket.gethostname():
        return holder
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return holder


#: what the error of a run directory held by another run says (a study reads it in a child's error line)
IN_USE = "is in use by the run of wsreid process"


def check_not_in_use(run_dir: Path) -> None:
    """Raise a :class:`UserError` when a run in progress holds ``run_dir``."""
    holder = _lock_holder(run_dir)
    if holder is not None:
        raise UserError(f"output directory {run_dir} {IN_USE} {holder['pid']} on "
                        f"{holder['host']} (started {holder.get('started', '?')})",
                        hint=f"wait for it to end or stop it; if it no longer runs, delete {run_dir / RUN_LOCK}")


def lock_run_dir(run_dir: Path) -> None:
    """Take the lock of ``run_dir`` for this process (a stale one is replaced); raises a
    :class:`UserError` when a run in progress holds it."""
    lock = run_dir / RUN_LOCK
    tmp = run_dir / f"{RUN_LOCK}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    except OSError as exc:
        raise _unwritable(run_dir, exc) from None
    try:
        try:
            os.link(tmp, lock)  # atomic, and only where there is no lock
        except OSError:  # a lock exists (stale, or taken since), or the file system has no hard links
            check_not_in_use(run_dir)
            os.replace(tmp, lock)
    finally:
        tmp.unlink(missing_ok=True)


def _unwritable(run_dir: Path, exc: OSError) -> UserError:
    return UserError(f"output directory {run_dir} cannot be written: {exc.strerror or exc}",
                     hint="check its permissions and free space, or choose another --output-dir")


def unlock_run_dir(run_dir: Path) -> None:
    """Release the lock of ``run_dir`` when this process holds it."""
    lock = run_dir / RUN_LOCK
    try:
        if int(json.loads(lock.read_text())["pid"]) == os.getpid():
            lock.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass


def strip_output_dir(text: str) -> str:
    """A resolved recipe's text without its ``output_dir`` line (where a run is written
    does not make it another recipe)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("output_dir:"))


def command(*args: str | os.PathLike[str]) -> str:
    """A command line to copy and paste: every argument shell-quoted (a path with a space
    stays one argument)."""
    return shlex.join(str(a) for a in args)


def check_resume_recipe(run_dir: Path, resolved_yaml: str, resolved: dict | None = None,
                        disabled: Iterable[str] = (), source: Path | None = None) -> None:
    """``--resume`` continues a run only with the recipe it was started with: the recipe
    its marker records (:func:`recorded_recipe`; a run made before wsreid recorded it has
    none) and its saved recipe.yaml must both resolve to ``resolved_yaml``, ``output_dir``
    aside. Each is loaded again (so an option added since at its default is no change) and
    values are compared (so a comment or the layout of recipe.yaml is no change either).
    Otherwise a :class:`UserError` names the first keys that differ, and says when
    recipe.yaml itself was edited since the run started. ``resolved``: the plain values of
    ``resolved_yaml`` (read from the text when not given); ``disabled``: the plugins left
    out; ``source``: the recipe file the run is resumed with (the hint does not repeat a
    command that was just refused)."""
    saved = run_dir / "recipe.yaml"
    if not saved.is_file():
        raise UserError(f"--resume: {run_dir} holds no recipe.yaml, so the recipe the run was started with is unknown",
                        hint="restore that file, or start the run again with --overwrite")
    try:
        text = saved.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--resume: cannot read {saved}: {getattr(exc, 'strerror', None) or exc}",
                        hint="check the file's permissions") from None
    now = resolved if resolved is not None else _yaml_tree(resolved_yaml)
    recorded, marker = recorded_recipe(run_dir), run_dir / RUN_MARKER
    # a settings block the recipe resumed with has not: no loaded plugin declares it (a loaded one's is
    # filled with its defaults); an observer's, left out (-o settings.KEY=null): not a change of the training
    left_out = sorted(set((recorded or _yaml_tree(text)).get("settings") or {}) - set(now.get("settings") or {}))
    if left_out:
        recorded = None if recorded is None else {
            **recorded, "settings": {k: v for k, v in (recorded.get("settings") or {}).items() if k not in left_out}}
        print(f"note: --resume: {', '.join(f'settings.{k}' for k in left_out)} left out (no plugin loaded now declares "
              f"{'it' if len(left_out) == 1 else 'them'}): the run goes on without that observer", file=sys.stderr)
    with _not_loading("the recipe the run was started with", marker):
        recorded_differences = _recorded_recipe_differences(recorded, now, disabled)
    with _not_loading("the recipe the run was started with" if recorded is None else "its recipe.yaml", saved):
        saved_values = _saved_recipe_values(saved, text, resolved_yaml, disabled, left_out)
    saved_differences = [] if saved_values is None else recipe_differences(saved_values, now)
    if recorded_differences and not _holds_recorded_recipe(text, recorded, disabled):
        raise UserError(f"--resume: the recipe differs from the one {run_dir} was started with (recorded in "
                        f"{marker}): {_shown(recorded_differences)}",
                        hint=f"{saved} was edited since the run started and no longer holds its recipe: undo that "
                             "edit, or start a new run in another --output-dir")
    if recorded is not None and not recorded_differences and saved_differences:
        # the recipe resumed with is the recorded one; recipe.yaml was edited away from it
        raise UserError(f"--resume: {saved} was edited since the run started and no longer holds its recipe: "
                        f"{_shown(recipe_differences(now, saved_values))}",
                        hint="undo that edit; the recipe you resume with is the one the run was started with")
    differences = recorded_differences or saved_differences
    if not differences:
        return
    same_file = source is not None and Path(source).resolve() == saved.resolve()
    if same_file:  # the saved recipe itself: the changes came with -o (or a plugin left out)
        hint = "resume without -o overrides and with the plugins the run was started with, or start a new run " \
               "in another --output-dir"
    else:
        hint = f"resume with the recipe the run was started with: {command('wsreid', 'run', saved, '--output-dir', run_dir, '--resume')}; " \
               "or start a new run in another --output-dir"
    raise UserError(f"--resume: the recipe differs from the one {run_dir} was started with ({saved}): "
                    f"{_shown(differences)}", hint=hint)


def _shown(differences: list[str]) -> str:
    """The first three differences of :func:`recipe_differences`, and how many more."""
    return "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")


@contextmanager
def _not_loading(what: str, where: Path):
    """Around loading a run's recipe again for ``--resume``: its :class:`UserError` (a
    plugin gone, a key no longer valid) becomes the line that says so."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"--resume: {what} ({where}) does not load any more: {exc}",
                        hint="restore the plugins it was run with (versions.json), or start the run again "
                             "with --overwrite") from None


def recorded_recipe(run_dir: Path) -> dict | None:
    """The values of the resolved recipe the run in ``run_dir`` was started with, as its
    marker records them (:func:`write_run_files`); None for a run made before wsreid
    recorded it, or a marker that cannot be read."""
    try:
        text = json.loads((run_dir / RUN_MARKER).read_text())["recipe"]
        values = _yaml_tree(text)
    except Exception:  # no marker, no record, or a damaged one: as a run without a record
        return None
    return values if isinstance(values, dict) else None


def _holds_recorded_recipe(text: str, recorded: dict, disabled: Iterable[str]) -> bool:
    """Whether a run's recipe.yaml (``text``) holds the recipe its marker records: the
    same values, or the recorded ones once loaded again (recipe.yaml is written again at
    each start, so it may hold an option added to wsreid since, at its default)."""
    try:
        values = _yaml_tree(text)
        if not recipe_differences(recorded, values, limit=1):
            return True
        from wsreid.recipe import load_recipe

        return not recipe_differences(load_recipe(recorded, disabled=list(disabled)).resolved, values, limit=1)
    except Exception:  # a recipe.yaml that no longer reads, or a record that no longer loads: not the record
        return False


def _yaml_tree(text: str) -> dict:
    """A resolved recipe's text as plain values."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    return yaml.load(text) or {}


def recipe_differences(before: dict, after: dict, limit: int = 1000) -> list[str]:
    """The keys (dotted, ``output_dir`` aside) whose values differ between two resolved
    recipes, as ``"key: <before> in the run, <after> now"``, in the order of ``after``
    (then keys only in ``before``); at most ``limit``."""
    missing = object()
    found: list[str] = []

    def short(value) -> str:
        if value is missing:
            return "absent"
        text = " ".join(json.dumps(value, default=str).split())
        return text if len(text) <= 40 else text[:37] + "..."

    def walk(a, b, path: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*b, *(k for k in a if k not in b)]:
                if not path and key == "output_dir":
                    continue
                walk(a.get(key, missing), b.get(key, missing), f"{path}.{key}" if path else str(key))
        elif a != b:
            found.append(f"{path}: {short(a)} in the run, {short(b)} now")

    walk(before, after, "")
    return found


def same_recipe(run_dir: Path, resolved_yaml: str, disabled: Iterable[str] = (), resolved: dict | None = None) -> bool:
    """Whether the run in ``run_dir`` was made with this recipe, by the rule of
    :func:`check_resume_recipe`: the recipe its marker records (when it records one) and
    its saved recipe.yaml, each loaded again (so a comment, the order of keys or labels,
    or an option added since at its default, is no change), have the values of
    ``resolved_yaml``, ``output_dir`` aside. ``resolved``: the plain values of
    ``resolved_yaml`` (read from the text when not given); ``disabled``: the plugins left
    out. A run without recipe.yaml, or whose recipe no longer loads, was not."""
    saved = run_dir / "recipe.yaml"
    if not saved.exists():
        return False
    try:
        now = resolved if resolved is not None else _yaml_tree(resolved_yaml)
        if _recorded_recipe_differences(recorded_recipe(run_dir), now, disabled, limit=1):
            return False
        saved_values = _saved_recipe_values(saved, saved.read_text(), resolved_yaml, disabled)
        return saved_values is None or not recipe_differences(saved_values, now, limit=1)
    except Exception:  # a recipe that no longer validates is a changed recipe
        return False


def _recorded_recipe_differences(recorded: dict | None, now: dict, disabled: Iterable[str],
                                 limit: int = 1000) -> list[str]:
    """The keys (:func:`recipe_differences`) whose values differ between the recipe a
    run's marker records (:func:`recorded_recipe`; None: no record, no difference) and the
    resolved values ``now``; the record is loaded again (options added since take their
    defaults) only when its values differ. Raises the :class:`UserError` of a record that
    does not load."""
    if recorded is None or not recipe_differences(recorded, now, limit=1):
        return []
    from wsreid.recipe import load_recipe

    return recipe_differences(load_recipe(recorded, disabled=list(disabled)).resolved, now, limit)


def _saved_recipe_values(saved: Path, text: str, resolved_yaml: str, disabled: Iterable[str],
                         left_out: Iterable[str] = ()) -> dict | None:
    """The values of a run's recipe.yaml at ``saved`` (its text ``text``), loaded again
    without the settings blocks ``left_out``; None when the text is ``resolved_yaml``
    (``output_dir`` aside): the same recipe, nothing to load. Raises the
    :class:`UserError` of a recipe that does not load."""
    from wsreid.recipe import load_recipe

    if strip_output_dir(text) == strip_output_dir(resolved_yaml):
        return None
    return load_recipe(saved, [f"settings.{key}=null" for key in left_out], disabled=list(disabled)).resolved


def run_state(run_dir: Path) -> RunState:
    """``done`` (metrics.json present), ``resume`` (a wsreid run with a checkpoint),
    ``restart`` (a wsreid run without one) or ``new``."""
    if (run_dir / "metrics.json").exists():
        return RunState.DONE
    if (run_dir / RUN_MARKER).exists():
        from wsreid.engine.checkpoint import newest_complete_checkpoint

        resumable = (run_dir / "checkpoints" / "latest").exists() or newest_complete_checkpoint(run_dir) is not None
        return RunState.RESUME if resumable else RunState.RESTART
    return RunState.NEW


def run_weights(run_dir: Path) -> Path | None:
    """The weights a finished (or interrupted) run stands for: its best checkpoint, else
    its latest one; None when it holds none. Reads only: a best checkpoint left as
    ``best.old`` (a run stopped inside the swap of a new best) is read where it is - the
    engine puts it back when the run resumes - so evaluating a read-only run works."""
    from wsreid.checkpoint_layout import best_checkpoint
    from wsreid.engine.checkpoint import latest_checkpoint

    best = best_checkpoint(run_dir)
    if best is not None and (best / "model.safetensors").exists():
        return best / "model.safetensors"
    last = latest_checkpoint(run_dir)
    return last / "model.safetensors" if last else None


def weights_of(run_dir: Path, checkpoint: str) -> Path:
    """The weights of ``run_dir`` named by ``checkpoint`` (``best``: the best, else the
    latest; ``last``: the latest). Raises a :class:`TrainingError` when there are none."""
    from wsreid.engine.checkpoint import latest_checkpoint

    if checkpoint == "best":
        found = run_weights(run_dir)
    else:
        last = latest_checkpoint(run_dir)
        found = last / "model.safetensors" if last else None
    if found is None:
        raise TrainingError(f"init: {run_dir} holds no checkpoint", hint="train it first or name another run")
    return found


def write_run_files(run_dir: Path, resolved_yaml: str, versions: dict) -> None:
    """Create the run directory with its recipe.yaml, versions.json and marker; the
    marker records the resolved recipe (``output_dir`` aside) when the run is created -
    or first resumed by a wsreid that records it -, so that ``--resume`` compares with
    what the run was trained with even when recipe.yaml is edited (:func:`check_resume_recipe`)."""
    from wsreid.engine.checkpoint import atomic_write_text

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # atomic: under --resume the other processes read recipe.yaml while the first rewrites it
        atomic_write_text(run_dir / "recipe.yaml", resolved_yaml)
        (run_dir / "versions.json").write_text(json.dumps(versions, indent=1))
        marker = run_dir / RUN_MARKER
        if not marker.exists() or recorded_recipe(run_dir) is None:
            try:
                fields = json.loads(marker.read_text()) if marker.exists() else {}
            except (OSError, ValueError):
                fields = {}
            fields = fields if isinstance(fields, dict) else {}
            fields.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
            fields["recipe"] = strip_output_dir(resolved_yaml)
            atomic_write_text(marker, json.dumps(fields, indent=1))
    except OSError as exc:
        raise _unwritable(run_dir, exc) from None
