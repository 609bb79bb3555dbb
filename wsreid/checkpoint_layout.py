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

__all__ = ["CHECKPOINTS", "FILES", "WEIGHTS", "POINTER", "BEST", "BEST_OLD", "checkpoint_name",
           "latest_checkpoint", "newest_complete_checkpoint", "best_checkpoint"]

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
    newest ``epoch-XXXX`` directory holding every file. A pointer naming a folder that does
    not exist is a :class:`~wsreid.errors.TrainingError`."""
    pointer = run_dir / CHECKPOINTS / POINTER
    if not pointer.exists():
        return newest_complete_checkpoint(run_dir)
    path = run_dir / CHECKPOINTS / pointer.read_text().strip()
    if not path.is_dir():
        raise TrainingError(f"checkpoint pointer {pointer} names {path.name}, which does not exist",
                            hint="the run directory was modified; start again with --overwrite")
    return path


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
