"""The framework's standard components, written as any plugin would be.

- ``pair_construction: identity`` - the batch as it is, one view ``base``;
- ``objective: itc`` - image-text contrastive loss (docs/method.md);
- ``objective: sdm`` - similarity distribution matching against an association's
  relation (docs/method.md), both directions summed.
"""

from __future__ import annotations

from wsreid import hookimpl

from wsreid_standard.components import IdentityPairs, ItcObjective, SdmObjective

__all__ = ["IdentityPairs", "ItcObjective", "SdmObjective"]


@hookimpl
def wsreid_register(registry) -> None:
    registry.add("pair_construction", "identity", IdentityPairs)
    registry.add("objective", "itc", ItcObjective)
    registry.add("objective", "sdm", SdmObjective)
