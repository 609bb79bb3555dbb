"""A wsreid plugin: the ``knn`` local association (mutual k nearest neighbours in the batch)."""

from wsreid import hookimpl

from wsreid_knn.association import KnnAssociation, knn_relation

__all__ = ["KnnAssociation", "knn_relation"]


@hookimpl
def wsreid_register(registry):
    """Register this package's components under the names recipes use."""
    registry.add("local_association", "knn", KnnAssociation)
