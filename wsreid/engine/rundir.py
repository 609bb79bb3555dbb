"""The run directory: what marks one, when it may be (re)used, what it holds.

A run directory holds ``recipe.yaml`` (the resolved recipe), ``versions.json``, the marker
file :data:`RUN_MARKER`, ``logs/``, ``checkpoints/`` and, once finished, ``metrics.json``
(docs/architecture.md, "A run directory"). The rules, in one place:

* a new run needs an empty or missing directory (:func:`prepare_run_dir`);
* :attr:`RunMode.OVERWRITE` replaces a wsreid run (never a foreign directory);
* :attr:`RunMode.RESUME` continues a wsreid run, with the recipe it was started with
  (:func:`check_resume_recipe`; ``output_dir`` aside);
* a run in progress holds the lock file :data:`RUN_LOCK` (:func:`lock_run_dir`): another
  run is refused there - ``--overwrite`` would delete it, ``--resume`` would train it
  twice - until it ends; a lock left by a process that no longer runs is taken over;
* the weights of a run are its best checkpoint, else its latest (:func:`run_weights`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import time
from enum import Enum
from pathlib import Path
from typing import Iterable

from wsreid.errors import TrainingError, UserError

__all__ = [
    "RUN_MARKER",
    "RUN_LOCK",
    "RunMode",
    "RunState",
    "prepare_run_dir",
    "strip_output_dir",
    "check_resume_recipe",
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

#: The file that marks a directory as a wsreid run directory.
RUN_MARKER = ".wsreid-run"

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


def prepare_run_dir(run_dir: Path, mode: RunMode) -> bool:
    """Check (and, for ``overwrite``, empty) the output directory for ``mode``; returns
    True when the run about to start creates the directory (so that a failure before the
    first epoch can remove it). Raises a :class:`UserError` that says which option to use."""
    mode = RunMode(mode)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output directory {run_dir} is a file", hint="choose another --output-dir")
    check_not_in_use(run_dir)
    exists = run_dir.exists() and any(run_dir.iterdir())
    if mode is RunMode.RESUME:
        if not (run_dir / RUN_MARKER).exists():
            raise UserError(f"--resume: {run_dir} holds no wsreid run", hint="check --output-dir / output_dir")
        return False
    if exists:
        if not (run_dir / RUN_MARKER).exists():
            raise UserError(f"output directory {run_dir} exists and is not a wsreid run",
                            hint="choose another --output-dir; wsreid never deletes foreign directories")
        if mode is not RunMode.OVERWRITE:
            raise UserError(f"output directory {run_dir} already holds a run",
                            hint="pass --resume to continue it or --overwrite to start it again")
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output directory {run_dir} cannot be created: {exc.strerror or exc}",
                        hint="choose another --output-dir") from None
    return True


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


def check_not_in_use(run_dir: Path) -> None:
    """Raise a :class:`UserError` when a run in progress holds ``run_dir``."""
    holder = _lock_holder(run_dir)
    if holder is not None:
        raise UserError(f"output directory {run_dir} is in use by the run of wsreid process {holder['pid']} on "
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
    """``--resume`` continues a run only with the recipe it was started with: its saved
    recipe.yaml, loaded again (so a comment, or an option added since at its default, is
    no change), must resolve to ``resolved_yaml``, ``output_dir`` aside. Otherwise a
    :class:`UserError` names the first keys that differ. ``resolved``: the plain values of
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
    try:
        differences = _saved_recipe_differences(saved, text, resolved_yaml, resolved, disabled)
    except UserError as exc:
        raise UserError(f"--resume: the recipe the run was started with ({saved}) does not load any more: {exc}",
                        hint="restore the plugins it was run with (versions.json), or start the run again "
                             "with --overwrite") from None
    if not differences:
        return
    shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
    same_file = source is not None and Path(source).resolve() == saved.resolve()
    if same_file:  # the saved recipe itself: the changes came with -o (or a plugin left out)
        hint = "resume without -o overrides and with the plugins the run was started with, or start a new run " \
               "in another --output-dir"
    else:
        hint = f"resume with the recipe the run was started with: {command('wsreid', 'run', saved, '--output-dir', run_dir, '--resume')}; " \
               "or start a new run in another --output-dir"
    raise UserError(f"--resume: the recipe differs from the one {run_dir} was started with ({saved}): {shown}",
                    hint=hint)


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
    :func:`check_resume_recipe`: its saved recipe.yaml, loaded again (so a comment, the
    order of keys or labels, or an option added since at its default, is no change), has
    the values of ``resolved_yaml``, ``output_dir`` aside. ``resolved``: the plain values
    of ``resolved_yaml`` (read from the text when not given); ``disabled``: the plugins
    left out. A run without recipe.yaml, or whose recipe no longer loads, was not."""
    saved = run_dir / "recipe.yaml"
    if not saved.exists():
        return False
    text = saved.read_text()
    try:
        return not _saved_recipe_differences(saved, text, resolved_yaml, resolved, disabled, limit=1)
    except Exception:  # a recipe that no longer validates is a changed recipe
        return False


def _saved_recipe_differences(saved: Path, text: str, resolved_yaml: str, resolved: dict | None,
                              disabled: Iterable[str], limit: int = 1000) -> list[str]:
    """The one rule of "the same recipe": the keys (:func:`recipe_differences`) whose
    values differ between the recipe saved at ``saved`` (its text ``text``), loaded again,
    and ``resolved_yaml`` (``resolved``: its values, or None); empty when the two are the
    same recipe. Raises the :class:`UserError` of a saved recipe that does not load."""
    from wsreid.recipe import load_recipe

    if strip_output_dir(text) == strip_output_dir(resolved_yaml):
        return []
    again = load_recipe(saved, disabled=list(disabled))
    return recipe_differences(again.resolved, resolved if resolved is not None else _yaml_tree(resolved_yaml), limit)


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
    its latest one; None when it holds none."""
    from wsreid.engine.checkpoint import latest_checkpoint, recover_best

    best = recover_best(run_dir)
    if best is not None and (best / "model.safetensors").exists():
        return best / "model.safetensors"
    last = latest_checkpoint(run_dir)
    return last / "model.safetensors" if last else None


def weights_of(run_dir: Path, checkpoint: str) -> Path:
    """The weights of ``run_dir`` named by ``checkpoint`` (``best``: the best, else the
    latest; ``latest``: the latest). Raises a :class:`TrainingError` when there are none."""
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
    """Create the run directory with its recipe.yaml, versions.json and marker."""
    from wsreid.engine.checkpoint import atomic_write_text

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # atomic: under --resume the other processes read recipe.yaml while the first rewrites it
        atomic_write_text(run_dir / "recipe.yaml", resolved_yaml)
        (run_dir / "versions.json").write_text(json.dumps(versions, indent=1))
        marker = run_dir / RUN_MARKER
        if not marker.exists():
            marker.write_text(json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    except OSError as exc:
        raise _unwritable(run_dir, exc) from None
