"""Standard pair construction and objectives."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from pydantic import Field

from wsreid.api import (Batch, EncoderComponent, Objective, PairConstruction, Params, ParamsCheckWarning, Relation,
                        StepContext, View, ViewFeatures)
from wsreid.losses import bidirectional_sdm_loss, itc_loss


class IdentityParams(Params):
    """No parameters."""


class IdentityPairs(PairConstruction):
    """One view, ``base``: the batch exactly as loaded."""

    Params = IdentityParams

    def views(self, batch: Batch, encoder: EncoderComponent) -> dict[str, View]:
        return {"base": View(images=batch.images, input_ids=batch.input_ids, attention_mask=batch.attention_mask)}


class ItcParams(Params):
    """Parameters of ITC; defaults as in the authors' code."""

    temperature: float = Field(0.02, gt=0.0, description="tau: logits are cosine / tau (0.02 = logit scale 50)")
    reduction: Literal["mean_of_directions", "sum"] = Field(
        "mean_of_directions",
        description="combine the two directions as their mean (code) or their sum (paper Eq. 2)",
    )
    view: str = Field("base", description="view whose image/text features are contrasted")


def warn_of_a_logit_scale(temperature: float) -> None:
    """A temperature above 1 is most likely a logit scale written as tau (CLIP's 50 for the
    authors' 0.02): the logits then stay within +-1/50 and the loss barely moves - a
    warning, citing the recipe line."""
    if temperature > 1:
        warnings.warn(ParamsCheckWarning(
            "temperature", f"{temperature:g} is tau, the divisor of the cosines, so the logits stay within "
            f"+-{1 / temperature:.3g} and the loss barely moves; a logit scale of {temperature:g} is temperature "
            f"{1 / temperature:.3g} (the authors': 0.02, a scale of 50)"))


class ItcObjective(Objective):
    """Image-text contrastive loss, InfoNCE in both directions (Eq. 1-2): the paired item
    is the only positive. Reads the B x d features of ``view``; returns a scalar."""

    Params = ItcParams

    @classmethod
    def check_params(cls, params: ItcParams) -> None:
        warn_of_a_logit_scale(params.temperature)

    def loss(
        self, features: dict[str, ViewFeatures], relations: dict[str, Relation], batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        p = self.params
        feats = features[p.view]
        return itc_loss(feats.image, feats.text, p.temperature, p.reduction)


class SdmParams(Params):
    """Parameters of SDM against a relation; defaults as in the authors' code."""

    relation: str = Field(
        ..., description="label of the association (local or global) whose relation gives the targets"
    )
    temperature: float = Field(0.02, gt=0.0, description="tau of the predicted distributions")
    eps: float = Field(1e-6, gt=0.0, description="added to the target before its logarithm")


class SdmObjective(Objective):
    """SDM against the relation named by ``relation`` (docs/method.md; Eq. 8-10, 16-18, 21).

    For a Relation with N rows and Q x N weights: ``sdm(text[:Q] -> image[:N]) +
    sdm(image[:Q] -> text[:N])``, targets from the weights (softmax over related entries,
    0 elsewhere), a scalar. Returns None when the association produced no relation this
    step (e.g. a memory still filling). The engine checks that ``relation`` names an
    association of the recipe.
    """

    Params = SdmParams

    @classmethod
    def check_params(cls, params: SdmParams) -> None:
        warn_of_a_logit_scale(params.temperature)

    def loss(
        self, features: dict[str, ViewFeatures], relations: dict[str, Relation], batch: Batch, ctx: StepContext
    ) -> torch.Tensor | None:
        p = self.params
        rel = relations.get(p.relation)
        if rel is None:
            return None
        return bidirectional_sdm_loss(rel.image, rel.text, rel.weights, p.temperature, p.eps)
