"""Objective ``vse-triplet``: the VSE++ triplet loss with the hardest negative in the batch."""

import torch
from pydantic import Field

from wsreid.api import Objective, Params


def hardest_negative_triplet(image, text, margin=0.2, same_person=None):
    """VSE++ loss of B matched pairs (``image``, ``text``: B x d, L2-normalised).

    s = image @ text.T; for each pair i, the hardest negative caption max_j s_ij and the
    hardest negative image max_j s_ji over j != i (and, when ``same_person`` (B x B bool)
    is given, over the j it does not mark). Loss = mean over i of
    [margin - s_ii + max_j s_ij]_+ + [margin - s_ii + max_j s_ji]_+.
    """
    similarity = image @ text.T
    positive = similarity.diagonal()
    negative = ~torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    if same_person is not None:
        negative &= ~same_person
    masked = similarity.masked_fill(~negative, float("-inf"))
    caption_term = (margin - positive + masked.max(dim=1).values).clamp(min=0)
    image_term = (margin - positive + masked.max(dim=0).values).clamp(min=0)
    return (caption_term + image_term).mean()


class TripletParams(Params):
    """Parameters of the VSE++ triplet loss."""

    margin: float = Field(0.2, gt=0.0, description="margin between a positive pair and its hardest negative")
    relation: str | None = Field(
        None, description="association label: pairs it relates are not negatives (None: only i itself is positive)"
    )
    view: str = Field("base", description="view whose features are compared")


class VseTriplet(Objective):
    """VSE++ triplet loss with the hardest in-batch negative (Faghri et al., 2018).

    Reads the B x d features of ``view``. With ``relation``, the batch pairs that relation
    relates are left out of the negatives, and the step is skipped (``None``) while that
    association gives no relation (e.g. while its memory fills).
    """

    Params = TripletParams

    def loss(self, features, relations, batch, ctx):
        p = self.params
        view = features[p.view]
        same_person = None
        if p.relation is not None:
            relation = relations.get(p.relation)
            if relation is None:
                return None
            b = len(view.image)
            same_person = relation.weights[:b, :b] > 0
        return hardest_negative_triplet(view.image, view.text, p.margin, same_person)
