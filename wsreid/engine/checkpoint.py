"""Checkpoints without pickle: safetensors for tensors, JSON for the rest.

Layout of ``RUN/checkpoints/``::

    epoch-0003/          one directory per checkpoint (only the newest is kept)
        model.safetensors       encoder weights
        optimizer.safetensors   optimizer tensors (state/<param id>/<key>)
        components.safetensors  component state (<section>/<label>/<key>): memory banks, pseudo-labels,
                                and the module tensors of trainable components (<section>/<label>/module.<name>)
        rng.safetensors         RNG states (torch, numpy)
        state.json              epoch, step, scheduler, param groups, python RNG, metric history
    latest               name of the newest complete checkpoint directory
    best/                model.safetensors + state.json of the best-by-selection epoch

A checkpoint is written into ``<name>.tmp`` and renamed when complete, then ``latest`` is
replaced atomically; a crash at any point leaves the previous checkpoint intact. Loading a
corrupt or truncated checkpoint raises :class:`TrainingError` - never a silent fresh start.
Which files make a checkpoint, and which one a run directory stands for (the pointer, the
newest complete folder, ``best`` or ``best.old``), is :mod:`wsreid.checkpoint_layout`'s rule,
shared with ``wsreid validate``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

# FILES, latest_checkpoint and newest_complete_checkpoint are also this module's: the engine's callers use them here
from wsreid.checkpoint_layout import (BEST, BEST_OLD, CHECKPOINTS, FILES, POINTER, WEIGHTS, best_checkpoint,
                                      checkpoint_name, latest_checkpoint, newest_complete_checkpoint)
from wsreid.errors import TrainingError
from wsreid.fileio import write_atomically, write_fix

#: the hint of a damaged checkpoint met while training (``--resume``): the run can start again
TRAINING_HINT = "restore it or start again with --overwrite"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` (UTF-8) so that a reader sees the old text or the new one, never a
    part; a failed write leaves ``path`` as it was and no temporary file
    (:func:`wsreid.fileio.write_atomically`)."""
    write_atomically(path, text)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state/{pid}/{key}"] = t.detach().cpu().contiguous().clone()
    return tensors, {"param_groups": sd["param_groups"]}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state(cuda: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """The RNG states (torch, numpy, CUDA unless ``cuda`` is false, python) as tensors plus
    JSON-able metadata."""
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    if cuda and torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = s
    py = random.getstate()
    meta = {"python": [py[0], list(py[1]), py[2]], "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return tensors, meta


def cuda_rng_states(tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The saved CUDA generator states in device order (``cuda/10`` after ``cuda/9``)."""
    return [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda/")), key=lambda k: int(k[5:]))]


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore the RNG states saved by :func:`rng_state`."""
    torch.set_rng_state(tensors["torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = cuda_rng_states(tensors)
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def callers_random_state_kept():
    """Run the block, then put back the global random generators' states (torch, numpy,
    python; CUDA's where the caller has initialised it) as they were before it: a library
    call seeds them for its own run, and the caller's streams go on as if it had not run.
    CUDA is not initialised here (that would open a context on every device)."""
    tensors, meta = rng_state(cuda=False)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        set_rng_state(tensors, meta)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    run_dir: Path,
    *,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    component_tensors: dict[str, torch.Tensor],
    state: dict,
) -> Path:
    """Write checkpoint ``epoch-XXXX`` atomically and point ``latest`` at it."""
    previous = latest_or_none(run_dir)
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(epoch)
    tmp = root / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in component_tensors.items()},
                  str(tmp / "components.safetensors"))
        rng_tensors, rng_meta = rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        full_state = dict(state, epoch=epoch, optimizer=opt_meta, scheduler=scheduler.state_dict(), rng=rng_meta)
        (tmp / "state.json").write_text(json.dumps(full_state, indent=1))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as exc:  # a stop signal too: nothing half-written is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, (OSError, SafetensorError)):  # safetensors reports a full disk as its own error
            raise
        raise TrainingError(f"could not write checkpoint {root / name}: {_write_error(exc)}",
                            hint=_after_failed_write(previous, f"the previous checkpoint {previous.name} is kept"
                                                     if previous else None, exc)) from exc
    atomic_write_text(root / POINTER, name + "\n")
    for old in root.glob("epoch-*"):
        if old.name != name and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_or_none(run_dir: Path) -> Path | None:
    """:func:`latest_checkpoint`, or None where the run directory's pointer is damaged."""
    try:
        return latest_checkpoint(run_dir)
    except TrainingError:
        return None


def _after_failed_write(resumable: Path | None, kept: str | None, exc: BaseException | None = None) -> str:
    """What to do after a checkpoint could not be written (``exc``): free disk space, or
    fix the permissions (a folder the run cannot write), then resume from ``resumable``
    (the latest complete checkpoint), or - there is none - start the run again."""
    fix = "free disk space" if exc is None or not isinstance(exc, OSError) else write_fix(exc)
    then = (f"{fix} and resume with --resume" if resumable is not None
            else f"no earlier checkpoint exists to resume from: {fix} and start the run again")
    return f"{kept}; {then}" if kept else then


def _write_error(exc: BaseException) -> str:
    """The reason of a failed checkpoint write, in one line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def recover_best(run_dir: Path) -> Path | None:
    """``checkpoints/best`` of ``run_dir``, or None. :func:`save_best` moves the previous
    best aside (``best.old``) for the instant between its two renames; a run stopped there
    gets the previous best back here."""
    found = best_checkpoint(run_dir)
    if found is not None and found.name == BEST_OLD:
        best = found.with_name(BEST)
        os.replace(found, best)
        return best
    return found


def save_best(run_dir: Path, model: torch.nn.Module, info: dict) -> None:
    """Write the best model (``checkpoints/best``) atomically."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    previous = recover_best(run_dir)
    tmp = root / f"{BEST}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_model(model, str(tmp / WEIGHTS))
        (tmp / "state.json").write_text(json.dumps(info, indent=1))
    except BaseException as exc:  # a stop signal too: nothing half-written is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, (OSError, SafetensorError)):
            raise
        raise TrainingError(f"could not write the best checkpoint {root / 'best'}: {_write_error(exc)}",
                            hint=_after_failed_write(latest_or_none(run_dir), "the previous best checkpoint is kept"
                                                     if previous is not None else None, exc)) from exc
    old = root / BEST_OLD
    shutil.rmtree(old, ignore_errors=True)
    if (root / BEST).exists():
        os.replace(root / BEST, old)
    os.replace(tmp, root / BEST)
    shutil.rmtree(old, ignore_errors=True)


def _not_readable(path: Path) -> TrainingError | None:
    """The error of a weights file this user may not read (safetensors reports it as a
    missing file, which read as a damaged checkpoint), None when it may."""
    if path.exists() and not os.access(path, os.R_OK):
        return TrainingError(f"checkpoint file {path} cannot be read by this user: permission denied",
                             hint="give this user read permission on the run's files, or run the command as the "
                                  "user that owns them")
    return None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if (refused := _not_readable(path)) is not None:
        raise refused
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise TrainingError(f"checkpoint file {path} is corrupt or truncated: {' '.join(str(exc).split())}",
                            hint=TRAINING_HINT) from exc


def _header_problem(path: Path) -> str | None:
    """Why the safetensors header of ``path`` cannot be read (or the file does not hold
    every byte it announces), in one line; None when it reads."""
    try:
        with safe_open(str(path), framework="pt"):
            return None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        return " ".join(str(exc).split())


def weights_problem(path: Path) -> str | None:
    """Why the weights file ``path`` cannot be used (missing, corrupt or truncated), in a
    few words; None when its header and every byte it announces read."""
    if not path.exists():
        return "its model.safetensors is missing"
    if _not_readable(path) is not None:
        return "its model.safetensors cannot be read by this user (permission denied)"
    problem = _header_problem(path)
    return None if problem is None else f"corrupt or truncated: {problem}"


def load_model_weights(model: torch.nn.Module, path: Path, *, hint: str | None = None) -> None:
    """Load a ``model.safetensors`` file into ``model``; a missing or corrupt file is a
    :class:`TrainingError`. ``hint``: what to do about a corrupt file; by default the
    hint of a reader of weights (``wsreid eval``, ``wsreid search``): restore it, or use
    another intact checkpoint of its run (:func:`_other_checkpoint_hint`); training passes
    :data:`TRAINING_HINT`."""
    if not path.exists():
        raise TrainingError(f"checkpoint file {path} is missing", hint="the checkpoint is incomplete")
    if (refused := _not_readable(path)) is not None:
        raise refused
    problem = _header_problem(path)  # the header, and every byte it announces, before the model
    if problem is not None:
        raise TrainingError(f"checkpoint file {path} is corrupt or truncated: {problem}",
                            hint=hint or _other_checkpoint_hint(path))
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        text = " ".join(str(exc).split())
        mismatches = text.count("size mismatch for ")
        if mismatches:
            first = text.split("size mismatch for ", 1)[1].split(". ", 1)[0]
            text = (f"{mismatches} parameters have other shapes, e.g. {first}" if mismatches > 1
                    else f"1 parameter has another shape: {first}")
        raise WeightsMismatch(f"checkpoint file {path} does not fit the model: {text}",
                              hint="check that the recipe (encoder sizes) matches the run that wrote it") from exc
    if missing or unexpected:
        raise WeightsMismatch(f"checkpoint file {path} does not fit the model ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected keys, e.g. {(list(missing) + list(unexpected))[0]})",
                              hint="check that the recipe matches the run that wrote it")


class WeightsMismatch(TrainingError):
    """A weights file that reads but whose tensors do not fit the model built (other
    names or shapes): a recipe that differs from the run's, or another version's layout."""


def _other_checkpoint_hint(weights: Path) -> str:
    """What to do about the damaged weights file ``weights`` when it is read to be used
    (evaluated, searched with): restore it, or use another checkpoint of its run - the
    latest one or the best one, whichever is another folder and reads -, which
    ``wsreid eval`` and ``wsreid search`` take as their target."""
    folder = weights.parent
    root = folder.parent
    if root.name != CHECKPOINTS or not (root.parent / "recipe.yaml").is_file():
        return "restore it"
    run_dir = root.parent
    try:
        latest = latest_checkpoint(run_dir)
    except TrainingError:
        latest = None
    for other in (latest, best_checkpoint(run_dir)):
        if other is not None and other.resolve() != folder.resolve() and (other / WEIGHTS).is_file() \
                and _header_problem(other / WEIGHTS) is None:
            return ("restore it, or evaluate another checkpoint of the run: wsreid eval and wsreid search take a "
                    f"checkpoint folder, e.g. {shlex.join(['wsreid', 'eval', str(other)])}")
    return "restore it; the run holds no other checkpoint to use instead"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read every file of a checkpoint directory; raise TrainingError when one is damaged
    (unreadable, truncated) or holds something other than what the run wrote there."""
    for f in FILES:
        if not (path / f).exists():
            raise TrainingError(f"checkpoint {path} is incomplete: {f} is missing", hint=TRAINING_HINT)
    try:
        state = json.loads((path / "state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainingError(f"checkpoint file {path / 'state.json'} is corrupt: {exc}", hint=TRAINING_HINT) from exc
    _check_state(state, path / "state.json")
    optimizer_file = path / "optimizer.safetensors"
    try:
        optimizer = _optimizer_state(_load_tensors(optimizer_file), state["optimizer"])
    except (ValueError, IndexError) as exc:  # a name that is not state/<param>/<key>
        raise _wrong_content(optimizer_file, "tensor names that are not state/<parameter>/<key>") from exc
    components = _load_tensors(path / "components.safetensors")
    odd = [name for name in components if name.count("/") < 2]
    if odd:
        raise _wrong_content(path / "components.safetensors",
                             f"the tensor {odd[0]!r}, not named <section>/<label>/<tensor>")
    rng = _load_tensors(path / "rng.safetensors")
    for key, dtype in (("torch", torch.uint8), ("numpy", torch.int64)):
        if key not in rng or rng[key].dtype != dtype or rng[key].dim() != 1:
            raise _wrong_content(path / "rng.safetensors", f"no {key} generator state ({dtype}, one dimension)")
    return {
        "state": state,
        "optimizer": optimizer,
        "components": components,
        "rng": rng,
        "model_path": path / "model.safetensors",
    }


def _wrong_content(file: Path, what: str) -> TrainingError:
    """The error of a checkpoint file that reads well but holds something else."""
    return TrainingError(f"checkpoint file {file} is not what a run writes there: it holds {what}",
                         hint=TRAINING_HINT)


def _check_state(state: Any, file: Path) -> None:
    """state.json holds what :func:`save_checkpoint` writes: epoch, step, optimizer groups,
    schedule and RNG metadata (and the history)."""
    if not isinstance(state, dict):
        raise _wrong_content(file, f"a JSON {type(state).__name__}, not an object")

    def need(key: str, kind: type | tuple[type, ...], what: str, within: dict = state) -> Any:
        value = within.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _wrong_content(file, f"no {what}")
        return value

    need("epoch", int, "epoch (an integer)")
    need("step", int, "step (an integer)")
    groups = need("param_groups", list, "optimizer parameter groups",
                  need("optimizer", dict, "optimizer groups (an object)"))
    if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise _wrong_content(file, "optimizer parameter groups without their parameters")
    need("scheduler", dict, "schedule (an object)")
    rng = need("rng", dict, "RNG states (an object)")
    python, numpy = rng.get("python"), rng.get("numpy")
    if not (isinstance(python, list) and len(python) == 3 and isinstance(numpy, list) and len(numpy) == 4):
        raise _wrong_content(file, "no python and numpy RNG states")
    if "history" in state and not isinstance(state["history"], list):
        raise _wrong_content(file, "a metric history that is not a list")
