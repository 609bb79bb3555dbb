"""Local association ``true-identity``: the supervised upper bound (docs/ablations.md).

NOT weakly supervised: it reads the true person identities of the batch
(``batch.person_id``), which a weakly supervised method must never see. Runs that use it
are reference numbers only (IRRA's identity relation paired with the ``sdm`` objective).
"""

from __future__ import annotations

from pydantic import Field

from wsreid.api import Batch, LocalAssociation, Params, Relation, StepContext, ViewFeatures

__all__ = ["TrueIdentity"]


class TrueIdentity(LocalAssociation):
    """True-identity relation (supervised reference, NOT weakly supervised: reads person ids).

    R_ij = 1 when batch items i and j show the same person (the diagonal always), else 0.
    """

    weakly_supervised = False

    class Params(Params):
        view: str = Field("base", description="view whose features the relation carries")

    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation:
        view = features[self.params.view]
        person = batch.person_id.to(view.image.device)
        weights = (person[:, None] == person[None, :]).to(view.image.dtype)
        related = float((weights.sum() - weights.shape[0]) / max(weights.shape[0], 1))
        return Relation(
            image=view.image, text=view.text, weights=weights, view=self.params.view, stats={"related_per_row": related}
        )
