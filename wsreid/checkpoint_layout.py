"""Which files a run's checkpoints are made of, and which checkpoint a run directory stands
for: file names only, nothing read but the ``latest`` pointer, no torch.

The engine writes and loads checkpoints by these rules (:mod:`wsreid.engine.checkpoint`);
``wsreid validate`` judges an ``init.run`` by them (:mod:`wsreid.recipe.build`) without
importing the engine. Layout of ``RUN/checkpoints/``::

    epoch-0003/     a checkpoint: every file of FILES (``epoch-0003.tmp``: being written)
    latest          the name of the newest complete checkpoint folder
    best/           model.safetensors + state.json of the best-by-selection epoch
    best.old        the previous best, for the instant between save_best's two renames
"""

from __future__ import annotations

from pathlib import Path

from wsreid.errors import TrainingError

__all__ = ["RUN_MARKER", "CHECKPOINTS", "FILES", "WEIGHTS", "POINTER", "BEST", "BEST_OLD", "checkpoint_name",
           "latest_checkpoint", "newest_complete_checkpoint", "best_checkpoint"]

#: The file that marks a directory as a wsreid run directory: JSON {created, recipe}, where
#: ``recipe`` is the resolved recipe the run was started with (``output_dir`` aside), the
#: record ``--resume`` compares with (recipe.yaml may be edited; runs made before wsreid
#: recorded it hold no ``recipe``).
RUN_MARKER = ".wsreid-run"
#: the folder of a run directory holding its checkpoints
CHECKPOINTS = "checkpoints"
#: the encoder's weights, in a checkpoint folder and in ``best``
WEIGHTS = "model.safetensors"
#: the files of a complete checkpoint folder
FILES = (WEIGHTS, "optimizer.safetensors", "components.safetensors", "rng.safetensors", "state.json")
#: the file naming the newest complete checkpoint folder
POINTER = "latest"
#: the folder of the best-by-selection weights, and where the previous one waits while it is replaced
BEST, BEST_OLD = "best", "best.old"

_EPOCH_PREFIX = "epoch-"


def checkpoint_name(epoch: int) -> str:
    """The folder name of the checkpoint written after ``epoch``: ``epoch-0003``."""
    return f"{_EPOCH_PREFIX}{epoch:04d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint directory of ``run_dir`` (None when there is none):
    the one ``checkpoints/latest`` names; without that pointer (a run stopped between the
    rename of its first checkpoint and the pointer's write, or the pointer deleted), the
    newest ``epoch-XXXX`` directory holding every file. The pointer must hold the name of
    an ``epoch-NNNN`` folder of the run's own ``checkpoints/`` that exists: a pointer edited
    to lead elsewhere (another run, ``..``, an absolute path) or naming a missing folder
    is a :class:`~wsreid.errors.TrainingError` naming the file and what it holds."""
    pointer = run_dir / CHECKPOINTS / POINTER
    try:
        held = pointer.read_bytes().decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        return newest_complete_checkpoint(run_dir)
    except OSError as exc:
        raise TrainingError(f"cannot read the checkpoint pointer {pointer}: {exc.strerror or exc}",
                            hint="check its permissions, or delete it to use the newest complete checkpoint") from None
    if not _is_checkpoint_name(held):
        newest = newest_complete_checkpoint(run_dir)
        example = f", e.g. {newest.name}" if newest is not None else ""
        raise TrainingError(f"checkpoint pointer {pointer} holds {held[:80]!r}, not the name of an epoch-NNNN folder "
                            f"in {run_dir / CHECKPOINTS}",
                            hint=f"write the name of one into it{example}, or delete it to use the newest complete "
                                 "checkpoint")
    path = run_dir / CHECKPOINTS / held
    if not path.is_dir():
        raise TrainingError(f"checkpoint pointer {pointer} names {path.name}, which does not exist",
                            hint="the run directory was modified; delete the pointer to use the newest complete "
                                 "checkpoint")
    return path


def _is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` is the folder name of a checkpoint, as :func:`checkpoint_name`
    writes it (``epoch-0003``): no path, no other folder."""
    number = name.removeprefix(_EPOCH_PREFIX)
    return number != name and number.isascii() and number.isdigit() and checkpoint_name(int(number)) == name


def newest_complete_checkpoint(run_dir: Path) -> Path | None:
    """The ``checkpoints/epoch-XXXX`` directory of the highest epoch that holds every
    checkpoint file (``*.tmp`` directories are unfinished), or None."""
    root = run_dir / CHECKPOINTS
    found = []
    for path in root.glob(f"{_EPOCH_PREFIX}*") if root.is_dir() else ():
        number = path.name[len(_EPOCH_PREFIX):]
        if number.isdigit() and path.is_dir() and all((path / f).is_file() for f in FILES):
            found.append((int(number), path))
    return max(found)[1] if found else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The folder that holds the best weights of ``run_dir``: ``checkpoints/best`` when it
    exists, else ``best.old`` when it holds the weights (a run stopped between the two
    renames of a new best; the engine moves it back, :func:`wsreid.engine.checkpoint.recover_best`),
    else None. Nothing is moved here."""
    root = run_dir / CHECKPOINTS
    best, old = root / BEST, root / BEST_OLD
    if best.exists():
        return best
    if (old / WEIGHTS).exists():
        return old
    return None
