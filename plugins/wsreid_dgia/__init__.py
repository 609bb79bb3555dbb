"""DGIA (Dual-Granularity Cross-Modal Identity Association) as wsreid components.

- ``local_association: lrc`` - LRC, in-batch relations (docs/method.md);
- ``global_association: gsrc-fr`` - GSRC-FR, memory banks and neighbour mining (3.4);
- ``pair_construction: iasc`` - information-asymmetric pairs (3.5).

The losses are the standard ``itc`` and ``sdm`` objectives (plugin ``wsreid_standard``):
``L_rc_b``, ``L_rc_g`` and ``L_rc_h`` are ``sdm`` objectives pointed at the labels of an
``lrc`` (view ``base``), a ``gsrc-fr`` and an ``lrc`` (view ``asymmetric``) association.
Pure tensor functions live in :mod:`wsreid_dgia.functional` and :mod:`wsreid_dgia.augment`.
"""

from __future__ import annotations

from wsreid import hookimpl

from wsreid_dgia.local import LocalRelationConstruction
from wsreid_dgia.memory import GlobalRelationConstruction
from wsreid_dgia.pairs import InformationAsymmetricPairs

__all__ = ["LocalRelationConstruction", "GlobalRelationConstruction", "InformationAsymmetricPairs"]


@hookimpl
def wsreid_register(registry) -> None:
    registry.add("local_association", "lrc", LocalRelationConstruction)
    registry.add("global_association", "gsrc-fr", GlobalRelationConstruction)
    registry.add("pair_construction", "iasc", InformationAsymmetricPairs)
