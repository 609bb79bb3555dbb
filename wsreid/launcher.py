"""This process's place in a multi-process launch, read in one place from the variables
the launcher (``torchrun``, ``accelerate launch``) sets: ``RANK`` and ``WORLD_SIZE``.

Without a launcher (neither variable set, or empty) the process is rank 0 of 1. The module
does not import torch, so the command line can ask "am I the process that prints?" before
the engine is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from wsreid.errors import UserError

#: the environment variable by which a ``wsreid run`` that ``wsreid ablate`` started learns
#: the study's process id (:func:`wsreid.cli.end_with_the_study`)
STUDY_PID_ENV = "WSREID_STUDY_PID"
#: whether this process is a ``wsreid run`` that a study started (``wsreid ablate
#: --subprocess`` or ``--jobs N``): set by :func:`wsreid.cli.end_with_the_study`, which takes
#: :data:`STUDY_PID_ENV` out of the environment
started_by_a_study = False


@dataclass(frozen=True)
class Launch:
    """``rank`` of this process among ``world_size`` (0 of 1 without a launcher)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that prints and writes the run directory (rank 0)."""
        return self.rank == 0

    @property
    def multi_process(self) -> bool:
        return self.world_size > 1


def launched_processes(environ: Mapping[str, str] | None = None) -> int:
    """How many processes a launcher (torchrun, accelerate launch) started this one among:
    ``WORLD_SIZE`` with the launcher's ``MASTER_ADDR``; 1 without a launch, or for a
    ``WORLD_SIZE`` left in the shell without it (which :func:`launch_from_env` refuses
    for a run)."""
    environ = os.environ if environ is None else environ
    return launch_from_env(environ).world_size if _launcher_address(environ) else 1


def _launcher_address(environ: Mapping[str, str]) -> bool:
    """Whether the launcher's ``MASTER_ADDR`` is set (a ``WORLD_SIZE`` without it is no launch)."""
    return bool((environ.get("MASTER_ADDR") or "").strip())


def _number(environ: Mapping[str, str], name: str, default: int) -> int | None:
    raw = environ.get(name, "") or ""
    if not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def launch_from_env(environ: Mapping[str, str] | None = None, *, strict: bool = False) -> Launch:
    """The :class:`Launch` that ``environ`` (default: ``os.environ``) describes.

    ``WORLD_SIZE`` must be a whole number of at least 1 and ``RANK`` one in
    ``0 .. WORLD_SIZE - 1``, and several processes need the launcher's ``MASTER_ADDR``
    (a ``WORLD_SIZE`` left in the shell is not a launch). With ``strict`` other values are a
    :class:`~wsreid.errors.UserError` naming the variable (a run checks them before it
    prepares its directory); without it they read as one process (for the printing of a
    stop line or a warning, which must never fail)."""
    environ = os.environ if environ is None else environ
    world_size = _number(environ, "WORLD_SIZE", 1)
    rank = _number(environ, "RANK", 0)
    if world_size is None or world_size < 1:
        if strict:
            raise UserError(f"WORLD_SIZE={environ.get('WORLD_SIZE')!r} is not a number of processes",
                            hint="the launcher (torchrun, accelerate launch) sets it; unset it to run in one process")
        return Launch()
    if rank is None or not 0 <= rank < world_size:
        if strict:
            raise UserError(f"RANK={environ.get('RANK')!r} is not a process of WORLD_SIZE={world_size} "
                            f"(0 .. {world_size - 1})",
                            hint="the launcher (torchrun, accelerate launch) sets both; unset them to run in one process")
        return Launch()
    if strict and world_size > 1 and not _launcher_address(environ):
        raise UserError(f"WORLD_SIZE={world_size} is set but no launcher started this process (MASTER_ADDR, which "
                        "torchrun and accelerate launch set, is not)",
                        hint="unset WORLD_SIZE (a value left in the shell or script) to run in one process, or start "
                             "the processes with torchrun; see docs/distributed.md")
    return Launch(rank, world_size)
