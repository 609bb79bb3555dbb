"""Hook specifications. Their docstrings are the reference (docs/hooks.md).

A plugin is a module (or object) with functions decorated by ``wsreid.hookimpl`` whose
names match these specifications. Components are registered in ``wsreid_register``; the
other hooks observe a run. Hooks are called for every plugin; order across plugins is not
defined, so never rely on it - recipes select components by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from wsreid.registry import Registry

hookspec = pluggy.HookspecMarker("wsreid")
hookimpl = pluggy.HookimplMarker("wsreid")


@hookspec
def wsreid_register(registry: "Registry") -> None:
    """Register components.

    Called once per plugin manager, right after plugins are loaded. Call
    ``registry.add(kind, name, cls)`` for each component, where ``kind`` is one of
    ``wsreid.api.COMPONENT_KINDS`` and ``cls`` subclasses that kind's base class in
    ``wsreid.api`` with a ``Params`` model. Returns nothing.
    """


@hookspec
def wsreid_run_start(run: Any) -> None:
    """A run starts: components are built, before the first epoch.

    ``run`` is the :class:`wsreid.engine.Run` (``run.recipe``, ``run.run_dir``,
    ``run.components``). Called on every process.
    """


@hookspec
def wsreid_epoch_start(run: Any, epoch: int) -> None:
    """An epoch (1-based ``epoch``) starts, after global associations refreshed. Every process."""


@hookspec
def wsreid_after_step(run: Any, epoch: int, step: int, losses: dict[str, float]) -> None:
    """After each optimizer step (``step`` counts from 1 over the run).

    ``losses`` maps each objective label (and ``"total"``) to its value on this process.
    """


@hookspec
def wsreid_epoch_end(run: Any, epoch: int, logs: dict[str, float]) -> None:
    """An epoch ended; ``logs`` holds mean losses, learning rate and diagnostics of the epoch."""


@hookspec
def wsreid_after_evaluation(run: Any, split: str, epoch: int, metrics: dict[str, float]) -> None:
    """After evaluating ``split`` ("val" or "test") at ``epoch``; ``metrics`` as in
    :func:`wsreid.evaluation.retrieval_metrics` (R1, R5, R10, mAP, mINP in percent)."""


@hookspec
def wsreid_run_end(run: Any, metrics: dict[str, Any]) -> None:
    """The run finished; ``metrics`` is the content of ``metrics.json``."""
