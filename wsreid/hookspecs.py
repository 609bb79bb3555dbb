"""Hook specifications. Their docstrings are the reference: docs/hooks.md is generated
from them (``python -m wsreid.docs``), and a test fails when a hook is undocumented.

A plugin is a module (or object) with functions decorated by ``wsreid.hookimpl`` whose
names match these specifications; an implementation may accept any subset of a hook's
arguments, by name. Components are registered in ``wsreid_register``; the other hooks
observe a run. Each hook is called for every plugin that implements it; the order across
plugins is not defined, so never rely on it - recipes select components by name.

Every docstring below has the same sections: a summary, ``Called:`` (when, and on which
processes), ``Arguments:`` (each argument, with shapes and types) and ``Returns:``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - for type checkers only: no import cycle at run time
    from wsreid.engine.run import Run
    from wsreid.registry import Registry

hookspec = pluggy.HookspecMarker("wsreid")
hookimpl = pluggy.HookimplMarker("wsreid")

__all__ = ["hookspec", "hookimpl"]


@hookspec
def wsreid_register(registry: "Registry") -> None:
    """Register components: the one hook every component plugin implements.

    Called:
        once per plugin manager (:func:`wsreid.pluginmanager.load_plugins`), right after
        the plugins are loaded and before any recipe is validated; in every process.

    Arguments:
        registry: the :class:`wsreid.registry.Registry` of this plugin manager. Call
            ``registry.add(kind, name, cls)`` once per component, where ``kind`` is one
            of ``wsreid.api.COMPONENT_KINDS`` and ``cls`` subclasses that kind's base
            class in :mod:`wsreid.api` and declares a ``Params`` model deriving from
            :class:`wsreid.api.Params`. ``name`` is what recipes write; it must be
            unique per kind across all installed plugins. A plugin with settings (e.g.
            an observer) declares them with ``registry.add_settings(key, Model)``:
            recipes then accept a validated block ``settings: {<key>: {...}}``, handed to
            every lifecycle hook as ``run.recipe.settings[key]`` (docs/plugins.md).

    Returns:
        nothing. An exception raised here marks an installed plugin as broken (its
        components are withdrawn, the other plugins keep working); registering a name
        that another plugin registered is an error naming both distributions.
    """


@hookspec
def wsreid_run_start(run: "Run") -> None:
    """A training run starts.

    Called:
        by ``wsreid run`` after every component is built (and, with ``--resume``, after
        the checkpoint is restored), before the first epoch; in every process.

    Arguments:
        run: the :class:`wsreid.engine.run.Run` (its phases: docs/architecture.md). Useful
            attributes: ``recipe`` (the validated recipe; ``recipe.settings[key]`` is the
            settings block a plugin declared with ``registry.add_settings``, defaults filled
            in), ``run_dir`` (:class:`pathlib.Path`), ``components``
            (``dataset``, ``encoder``, ``pair_construction`` and the label -> component
            dicts ``local_associations``, ``global_associations``, ``objectives``),
            ``dist`` (``rank``, ``world_size``, ``is_main``), ``epoch`` (0, or the
            restored epoch) and ``step`` (optimizer steps done).

    Returns:
        nothing; the return value is ignored. An exception stops the run.
    """


@hookspec
def wsreid_epoch_start(run: "Run", epoch: int) -> None:
    """An epoch starts.

    Called:
        at the start of every epoch, after the global associations ran their
        ``epoch_start`` (e.g. clustering) and before the first step; in every process.

    Arguments:
        run: the :class:`wsreid.engine.run.Run` (see ``wsreid_run_start``).
        epoch: the epoch that starts, 1-based (``1 .. recipe.train.epochs``).

    Returns:
        nothing; the return value is ignored. An exception stops the run (the last
        complete checkpoint can be resumed).
    """


@hookspec
def wsreid_after_step(run: "Run", epoch: int, step: int, losses: dict[str, float]) -> None:
    """An optimizer step finished.

    Called:
        after every optimizer step (backward, optimizer and scheduler step, and the
        global associations' ``after_step``); in every process, with the same losses.

    Arguments:
        run: the :class:`wsreid.engine.run.Run` (see ``wsreid_run_start``).
        epoch: the current epoch, 1-based.
        step: optimizer steps done so far over the whole run, counting from 1 (this step
            included).
        losses: ``"loss/<objective label>"`` -> that objective's weighted loss over the
            global batch (all processes together; objectives skipped this step are
            absent), plus ``"loss/total"``, their sum; Python floats.

    Returns:
        nothing; the return value is ignored. An exception stops the run.
    """


@hookspec
def wsreid_epoch_end(run: "Run", epoch: int, logs: dict[str, float]) -> None:
    """An epoch ended.

    Called:
        after the epoch's evaluation (when one was due) and before its checkpoint is
        written; in every process.

    Arguments:
        run: the :class:`wsreid.engine.run.Run` (see ``wsreid_run_start``).
        epoch: the epoch that ended, 1-based.
        logs: the row written to ``logs/epochs.csv``: mean ``"loss/<label>"`` and
            ``"loss/total"`` over the epoch's steps (an objective's mean over the steps
            it returned a loss on), ``"lr"`` (the learning rate of the first parameter
            group that the epoch's last step trained with; each row of
            ``logs/steps.csv`` gives its own step's), ``"seconds"``,
            ``"diag/<label>/<name>"`` for component diagnostics, and ``"val/<metric>"``
            (and ``"test/<metric>"`` when selecting on test) when the epoch was evaluated.

    Returns:
        nothing; the return value is ignored. An exception stops the run.
    """


@hookspec
def wsreid_after_evaluation(run: "Run", split: str, epoch: int, metrics: dict[str, float]) -> None:
    """A split was evaluated.

    Called:
        after each evaluation during training (every ``eval.every`` epochs and at the
        last) and after the final test evaluation of the selected checkpoint; in every
        process, each with the same metrics.

    Arguments:
        run: the :class:`wsreid.engine.run.Run` (see ``wsreid_run_start``).
        split: ``"val"`` or ``"test"``.
        epoch: the epoch just trained, 1-based (for the final test evaluation: the last
            epoch, while the weights are those of the selected checkpoint).
        metrics: ``"R1"``, ``"R5"``, ``"R10"``, ``"mAP"``, ``"mINP"`` in percent, as
            returned by :func:`wsreid.evaluation.retrieval_metrics`.

    Returns:
        nothing; the return value is ignored. An exception stops the run.
    """


@hookspec
def wsreid_run_end(run: "Run", metrics: dict[str, Any]) -> None:
    """A training run finished.

    Called:
        once at the end of ``wsreid run``, after the final test evaluation and after
        ``metrics.json`` was written; in every process.

    Arguments:
        run: the :class:`wsreid.engine.run.Run` (see ``wsreid_run_start``).
        metrics: the content of ``metrics.json``: ``"test"`` (metric -> value),
            ``"best_epoch"``, ``"selection"``, ``"weakly_supervised"``, ``"history"``
            (one dict per epoch), ``"dataset"``, ``"seed"``, ``"epochs"``,
            ``"data_counts"`` (split -> ``ids`` / ``images`` / ``captions``, and for
            val / test ``ids_in_train``, their ids that are training ids too) and, for runs
            that read true identities, ``"note"``.

    Returns:
        nothing; the return value is ignored. An exception is the plugin's fault: one
        line naming it and the hook, exit 2, the run's results already written.
    """
