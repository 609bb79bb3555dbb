"""Local association ``knn``: batch items that are each other's nearest neighbours are
taken to show the same person."""

import torch
import torch.nn.functional as F
from pydantic import Field

from wsreid.api import LocalAssociation, Params, Relation


def knn_relation(image, text, k=2, mutual=True, min_similarity=0.5, relation_weight=0.1):
    """B x B relation from the batch's image and text features (B x d each).

    s_ij is the mean of the image-image and text-text cosine similarities. Item j is a
    neighbour of i when it is among the k most similar other items and s_ij exceeds
    ``min_similarity``; i and j are related when both are neighbours of each other
    (``mutual``) or either one is. R = 1 on the diagonal, ``relation_weight`` for related
    pairs, exactly 0 elsewhere; no gradient.
    """
    with torch.no_grad():
        image, text = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
        similarity = (image @ image.T + text @ text.T) / 2
        b = similarity.shape[0]
        others = similarity.masked_fill(torch.eye(b, dtype=torch.bool, device=similarity.device), float("-inf"))
        nearest = others.topk(min(k, b - 1), dim=1).indices
        neighbour = torch.zeros(b, b, dtype=torch.bool, device=similarity.device)
        neighbour.scatter_(1, nearest, True)
        neighbour &= others > min_similarity
        related = neighbour & neighbour.T if mutual else neighbour | neighbour.T
        weights = related.float() * relation_weight
        weights.fill_diagonal_(1.0)
    return weights


class KnnParams(Params):
    """Parameters of the kNN association."""

    k: int = Field(2, ge=1, description="neighbours per item (the item itself excluded)")
    mutual: bool = Field(True, description="relate two items only when each is a neighbour of the other")
    min_similarity: float = Field(0.5, ge=-1.0, le=1.0, description="a neighbour's mean cosine similarity must exceed it")
    relation_weight: float = Field(0.1, gt=0.0, le=1.0, description="relation value of related pairs (the diagonal stays 1)")
    view: str = Field("base", description="view whose features are related")


class KnnAssociation(LocalAssociation):
    """Mutual k-nearest-neighbour relations inside the batch.

    ``relate`` returns a Relation over the view's B batch rows with B x B weights from
    :func:`knn_relation`. Diagnostics per epoch (true identities, never used by a loss):
    ``related_pairs_per_batch`` and ``relation_precision`` (% of related pairs that show
    the same person).
    """

    Params = KnnParams

    def __init__(self, params, context):
        super().__init__(params, context)
        self.batches = self.related = self.correct = 0

    def relate(self, features, batch, ctx):
        p = self.params
        view = features[p.view]
        weights = knn_relation(view.image, view.text, p.k, p.mutual, p.min_similarity, p.relation_weight)
        related = (weights > 0) & ~torch.eye(len(weights), dtype=torch.bool, device=weights.device)
        person = batch.person_id.to(weights.device)
        self.batches += 1
        self.related += int(related.sum())
        self.correct += int((related & (person[:, None] == person[None, :])).sum())
        return Relation(image=view.image, text=view.text, weights=weights, view=p.view,
                        stats={"related_pairs": float(related.sum())})

    def diagnostics(self):
        out = {}
        if self.batches:
            out["related_pairs_per_batch"] = self.related / self.batches
        if self.related:
            out["relation_precision"] = 100.0 * self.correct / self.related
        self.batches = self.related = self.correct = 0
        return out
