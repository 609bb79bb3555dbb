"""Conformance kit: check that a registered component keeps the contract of its kind.

Use it from a plugin's own test suite::

    from wsreid.testing import check_component

    def test_my_association_conforms():
        check_component("local_association", "knn", {"k": 2})

One function per kind takes the same arguments: ``check_dataset``, ``check_encoder``,
``check_pair_construction``, ``check_local_association``, ``check_global_association``,
``check_objective`` (``name, params=None, registry=None``); ``check_relation(relation,
batch_size, where)`` checks a single relation.

Each check builds the component by name from a registry (by default the one filled by
every installed plugin), runs it on small random inputs with a known structure and raises
:class:`ConformanceError` (an ``AssertionError``, so pytest shows it as a failure) whose
message names the component and what breaks the contract:

* every kind: a strict parameter model (unknown keys rejected at every level), each field
  described, values that survive a YAML 1.2 round trip, a recipe block and JSON schema;
  ``load_state_tensors({})`` works on a fresh instance (a resume from a checkpoint
  without its state) and ``state_tensors()`` round trips into another fresh instance;
  ``diagnostics()`` are finite numbers;
* ``local_association`` / ``global_association``: relations as in
  :func:`check_relation` (Q x N weights in [0, 1] without gradient, 1 on the diagonal,
  exactly 0 where unrelated, batch rows with their gradient); permuting the batch permutes
  the relation; a global association is driven through epochs of ``epoch_start``,
  ``relate`` and ``after_step``, and an instance restored from its ``state_tensors()``
  relates exactly as the original (so keep everything ``relate`` reads in the state);
* ``objective``: a finite, differentiable scalar, unchanged when the batch is permuted,
  for in-batch and memory-enlarged relations;
* ``pair_construction``: the views it declares (``view_names``), of agreeing sizes,
  per-sample randomness, exact resume;
* ``encoder``: tokenizer and feature shapes (B x embed_dim), gradient, equivariance,
  ``state_dict`` restore;
* ``dataset``: indices, captions, files and evaluation splits (pass ``params`` with the
  dataset's root).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from wsreid.api import COMPONENT_KINDS
from wsreid.errors import UserError
from wsreid.registry import Entry, Registry
from wsreid.testing.contracts import (
    ConformanceError,
    check_diagnostics,
    check_params_model,
    check_relation,
    check_state_round_trip,
)
from wsreid.testing.inputs import (
    CAPTIONS,
    StubEncoder,
    group_relation,
    grouped_features,
    permute_batch,
    permute_features,
    permute_relation,
    random_batch,
    step_context,
)
from wsreid.testing.kinds import (
    check_global_association_entry,
    check_local_association_entry,
    check_objective_entry,
)
from wsreid.testing.pipeline import check_dataset_entry, check_encoder_entry, check_pair_construction_entry

__all__ = [
    "CAPTIONS",
    "ConformanceError",
    "StubEncoder",
    "check_component",
    "check_dataset",
    "check_diagnostics",
    "check_encoder",
    "check_global_association",
    "check_local_association",
    "check_objective",
    "check_pair_construction",
    "check_params_model",
    "check_relation",
    "check_state_round_trip",
    "group_relation",
    "grouped_features",
    "permute_batch",
    "permute_features",
    "permute_relation",
    "random_batch",
    "step_context",
]

_CHECKS: dict[str, Callable[..., None]] = {
    "dataset": check_dataset_entry,
    "encoder": check_encoder_entry,
    "pair_construction": check_pair_construction_entry,
    "local_association": check_local_association_entry,
    "global_association": check_global_association_entry,
    "objective": check_objective_entry,
}


def _entry(kind: str, name: str, registry: Any) -> Entry:
    """The registry entry of ``name`` of ``kind`` (every installed plugin when
    ``registry`` is None), or a :class:`ConformanceError`."""
    if kind not in COMPONENT_KINDS:
        raise ConformanceError(f"unknown component kind {kind!r}; kinds are: {', '.join(COMPONENT_KINDS)}")
    if registry is None:
        from wsreid.pluginmanager import load_plugins

        registry = load_plugins().registry
    registry = getattr(registry, "registry", registry)  # a Plugins object works too
    if not isinstance(registry, Registry):
        raise ConformanceError(f"registry must be a wsreid Registry (or Plugins), got {type(registry).__name__}")
    try:
        return registry.get(kind, name)
    except UserError as exc:
        raise ConformanceError(f"{kind} {name!r} is not registered: {exc}") from None


def check_component(kind: str, name: str, params: Mapping[str, Any] | None = None, registry: Any = None,
                    **options: Any) -> None:
    """Check component ``name`` of ``kind`` against its kind's contract.

    ``params``: parameter values as a recipe block would give them (``name``, ``weight``
    and ``start_epoch`` are accepted); defaults when None. ``registry``: a
    :class:`wsreid.registry.Registry` or the result of ``load_plugins``; None loads every
    installed plugin. ``options`` go to the kind's check (e.g. ``batch_size``, ``seed``;
    ``encoder=`` for a pair construction). Raises :class:`ConformanceError`.
    """
    entry = _entry(kind, name, registry)
    _CHECKS[kind](entry, params, **options)


def check_dataset(name: str, params: Mapping[str, Any] | None = None, registry: Any = None, **options: Any) -> None:
    """:func:`check_component` for a ``dataset`` (``params`` usually gives its root)."""
    check_component("dataset", name, params, registry, **options)


def check_encoder(name: str, params: Mapping[str, Any] | None = None, registry: Any = None, **options: Any) -> None:
    """:func:`check_component` for an ``encoder`` (pass small sizes in ``params``)."""
    check_component("encoder", name, params, registry, **options)


def check_pair_construction(name: str, params: Mapping[str, Any] | None = None, registry: Any = None,
                            **options: Any) -> None:
    """:func:`check_component` for a ``pair_construction``."""
    check_component("pair_construction", name, params, registry, **options)


def check_local_association(name: str, params: Mapping[str, Any] | None = None, registry: Any = None,
                            **options: Any) -> None:
    """:func:`check_component` for a ``local_association``."""
    check_component("local_association", name, params, registry, **options)


def check_global_association(name: str, params: Mapping[str, Any] | None = None, registry: Any = None,
                             **options: Any) -> None:
    """:func:`check_component` for a ``global_association``."""
    check_component("global_association", name, params, registry, **options)


def check_objective(name: str, params: Mapping[str, Any] | None = None, registry: Any = None, **options: Any) -> None:
    """:func:`check_component` for an ``objective``."""
    check_component("objective", name, params, registry, **options)
