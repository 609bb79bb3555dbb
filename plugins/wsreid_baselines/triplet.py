"""Objective ``triplet``: cross-modal hardest-negative triplet loss over a relation (docs/ablations.md).

For the relation's Q query rows and N candidate columns, with s = cosine similarity:

* image -> text: for query image v_i, positives are texts t_j with R_ij > 0 (the paired
  text t_i among them), negatives those with R_ij = 0;
  l_i = relu(margin + max_{j: R_ij = 0} s(v_i, t_j) - s_pos(i)),
  s_pos(i) = s(v_i, t_i) ("paired") or min_{j: R_ij > 0} s(v_i, t_j) ("hardest");
* text -> image: the same with the roles of images and texts swapped;
* loss = mean_i l_i (image -> text) + mean_i l_i (text -> image), each mean over the rows
  that have at least one negative (a direction without any is 0).

Reduction: the per-direction MEANS are added. ICPG's ``compute_chm`` instead SUMS the
hinges of each direction over the batch and halves the total, (sum + sum) / 2, which is
B / 2 times this loss when every row has a negative (the usual case): 32x at B = 64.
The baseline's description does not fix the reduction; for ICPG's scale set the objective's ``weight`` to
B / 2 (``weight: 32`` at ``train.batch_size: 64``; B is the global batch the relation
covers). The default keeps the mean, whose size does not depend on the batch.

Schedule: ``start_epoch`` is the first epoch (1-based) with the loss, as everywhere in the
framework. The default 21 is "after epoch 20" (docs/ablations.md, "Triplet schedule"; ICPG:
``epoch > 20`` with 1-based epochs, of 60).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from wsreid.api import Batch, Objective, Params, Relation, StepContext, ViewFeatures

__all__ = ["Triplet", "hardest_negative_triplet"]


def _one_direction(similarity: torch.Tensor, related: torch.Tensor, margin: float, positive: str) -> torch.Tensor:
    """similarity, related: Q x N; returns the mean hinge over rows with a negative."""
    lowest = torch.finfo(similarity.dtype).min
    negatives = similarity.masked_fill(related, lowest)
    hardest_negative = negatives.max(dim=1).values
    if positive == "paired":
        s_pos = similarity.diagonal()
    else:
        s_pos = similarity.masked_fill(~related, torch.finfo(similarity.dtype).max).min(dim=1).values
    has_negative = (~related).any(dim=1)
    hinge = torch.relu(margin + hardest_negative - s_pos) * has_negative
    return hinge.sum() / has_negative.sum().clamp(min=1)


def hardest_negative_triplet(
    image: torch.Tensor,
    text: torch.Tensor,
    weights: torch.Tensor,
    margin: float = 0.3,
    positive: Literal["paired", "hardest"] = "paired",
) -> torch.Tensor:
    """Bidirectional hardest-negative triplet loss (module docstring).

    image, text: N x d L2-normalised; weights: Q x N relation (Q <= N, row i is candidate
    i, > 0 = related, diagonal related). Returns a scalar.
    """
    q = weights.shape[0]
    related = weights > 0
    related = related | torch.eye(q, weights.shape[1], dtype=torch.bool, device=weights.device)
    image_to_text = image[:q] @ text.T
    text_to_image = text[:q] @ image.T
    return _one_direction(image_to_text, related, margin, positive) + _one_direction(
        text_to_image, related, margin, positive
    )


class Triplet(Objective):
    """Hardest-negative triplet loss in both directions over a relation (docs/ablations.md).

    Reads ``relations[relation]`` (e.g. the cluster pseudo labels); returns None before
    ``start_epoch`` or when that relation is absent this step. The two directions' mean
    hinges are added; ICPG sums the hinges and halves the sum, B / 2 times as large
    (``weight: 32`` at B = 64 gives its scale; module docstring).
    """

    class Params(Params):
        relation: str = Field(description="label of the association whose relation defines positives/negatives")
        margin: float = Field(0.3, ge=0.0, description="triplet margin on cosine similarity")
        start_epoch: int = Field(
            21, ge=1, description="first epoch (1-based) with this loss; 21 = after epoch 20, as ICPG (epoch > 20 of 60)"
        )
        positive: Literal["paired", "hardest"] = Field(
            "paired", description="positive similarity: the paired item, or the least similar related item"
        )

    def loss(
        self,
        features: dict[str, ViewFeatures],
        relations: dict[str, Relation],
        batch: Batch,
        ctx: StepContext,
    ) -> torch.Tensor | None:
        if ctx.epoch < self.params.start_epoch:
            return None
        relation = relations.get(self.params.relation)
        if relation is None:
            return None
        return hardest_negative_triplet(
            relation.image, relation.text, relation.weights, self.params.margin, self.params.positive
        )
