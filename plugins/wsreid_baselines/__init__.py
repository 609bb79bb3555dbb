"""Baselines shipped beside DGIA (docs/ablations.md).

* ``global_association`` ``cluster-pseudo-labels``: k-reciprocal Jaccard + DBSCAN pseudo
  identities per dataset index (ICPG / CMMT family);
* ``objective`` ``triplet``: bidirectional hardest-negative triplet loss over a relation;
* ``local_association`` ``true-identity``: supervised upper bound (NOT weakly supervised);
* ``objective`` ``identity-classification``: the ID loss of supervised matching, a trainable
  classifier over the true identities (NOT weakly supervised).
"""

from wsreid import hookimpl

from wsreid_baselines.identity_classification import IdentityClassification
from wsreid_baselines.pseudo_labels import ClusterPseudoLabels
from wsreid_baselines.triplet import Triplet
from wsreid_baselines.true_identity import TrueIdentity

__all__ = ["ClusterPseudoLabels", "IdentityClassification", "Triplet", "TrueIdentity", "wsreid_register"]


@hookimpl
def wsreid_register(registry) -> None:
    registry.add("global_association", "cluster-pseudo-labels", ClusterPseudoLabels)
    registry.add("objective", "triplet", Triplet)
    registry.add("local_association", "true-identity", TrueIdentity)
    registry.add("objective", "identity-classification", IdentityClassification)
