"""A wsreid plugin: the ``mutual-knn-memory`` global association, the ``vse-triplet``
objective and the ``loss_log`` observer."""

from wsreid import hookimpl

from wsreid_memory.memory import MutualKnnMemory, mutual_neighbours
from wsreid_memory.observer import LossLogSettings, wsreid_after_step
from wsreid_memory.triplet import VseTriplet, hardest_negative_triplet

__all__ = ["MutualKnnMemory", "VseTriplet", "LossLogSettings", "hardest_negative_triplet", "mutual_neighbours",
           "wsreid_after_step"]


@hookimpl
def wsreid_register(registry):
    """Register the components and the observer's settings."""
    registry.add("global_association", "mutual-knn-memory", MutualKnnMemory)
    registry.add("objective", "vse-triplet", VseTriplet)
    registry.add_settings("loss_log", LossLogSettings)
