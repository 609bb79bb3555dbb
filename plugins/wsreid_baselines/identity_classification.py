"""Objective ``identity-classification``: the ID loss of supervised text-person matching
(docs/ablations.md, "Baselines").

NOT weakly supervised: it classifies every image and every caption of the batch into its
TRUE training identity. One linear layer W (C x d, bias b), shared by both modalities, over
the C identities of the training split (``BuildContext.train_person_ids``, sorted):

    loss = ( CE(W v_i + b, y_i) + CE(W t_i + b, y_i) ) / 2,   mean over the B rows,

with v_i, t_i the image and text features of batch row i (the encoder's output as it
returned it, ``features: raw``, as IRRA's ID loss reads them; or the L2-normalised
features, ``features: normalized``) and y_i the class of its person. The layer is a
trainable component: the run's optimizer trains it with the encoder (``train.lr_factors``
name it ``objectives.<label>.*``; IRRA trains it at 5x the base rate).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from wsreid.api import Batch, BuildContext, Objective, Params, Relation, StepContext, ViewFeatures

__all__ = ["IdentityClassification", "identity_cross_entropy"]


def identity_cross_entropy(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                           classifier: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ID loss of one batch (module docstring).

    image, text: B x d features; labels: B long class indices in 0..C-1; classifier: the
    d -> C linear layer. Returns (loss, image logits B x C, text logits B x C)."""
    image_logits = classifier(image)
    text_logits = classifier(text)
    loss = 0.5 * (F.cross_entropy(image_logits, labels) + F.cross_entropy(text_logits, labels))
    return loss, image_logits, text_logits


class IdentityClassification(Objective, torch.nn.Module):
    """ID loss: one classifier of images and captions into the true training identities.

    A supervised reference (NOT weakly supervised: reads person ids) and a trainable
    component: the linear layer is trained with the encoder."""

    weakly_supervised = False

    class Params(Params):
        view: str = Field("base", description="view whose image and text features are classified")
        features: Literal["raw", "normalized"] = Field(
            "raw", description="classify the encoder's features as returned (raw, IRRA) or L2-normalised"
        )
        init_std: float = Field(0.001, gt=0.0, description="std of the normal init of the classifier weights (IRRA)")

    def __init__(self, params: Params, context: BuildContext):
        torch.nn.Module.__init__(self)
        Objective.__init__(self, params, context)
        if context.train_person_ids is None:
            raise ValueError("needs the training identities (BuildContext.train_person_ids), but none were given")
        if context.encoder is None:
            raise ValueError("needs the encoder (BuildContext.encoder) for its embed_dim, but none was given")
        dim = int(context.encoder.embed_dim)
        identities = torch.tensor(sorted(set(context.train_person_ids)), dtype=torch.long)
        self.register_buffer("identities", identities, persistent=False)
        self.classifier = torch.nn.Linear(dim, len(identities))
        generator = torch.Generator().manual_seed(context.seed)
        with torch.no_grad():
            self.classifier.weight.normal_(0.0, params.init_std, generator=generator)
            self.classifier.bias.zero_()
        self._correct = torch.zeros(2, dtype=torch.long)
        self._seen = 0

    def classes(self, person_id: torch.Tensor) -> torch.Tensor:
        """Class index of each person id (B long); an id outside the training identities
        raises ValueError."""
        identities = self.identities.to(person_id.device)
        position = torch.searchsorted(identities, person_id).clamp(max=len(identities) - 1)
        unknown = identities[position] != person_id
        if bool(unknown.any()):
            raise ValueError(f"person id {int(person_id[unknown][0])} is not a training identity")
        return position

    def loss(self, features: dict[str, ViewFeatures], relations: dict[str, Relation], batch: Batch,
             ctx: StepContext) -> torch.Tensor:
        feats = features[self.params.view]
        if self.params.features == "raw":
            if feats.image_raw is None or feats.text_raw is None:
                raise ValueError("features: raw needs the encoder's raw features (ViewFeatures.image_raw), "
                                 "which this step does not carry; use features: normalized")
            image, text = feats.image_raw, feats.text_raw
        else:
            image, text = feats.image, feats.text
        labels = self.classes(batch.person_id.to(image.device))
        loss, image_logits, text_logits = identity_cross_entropy(image, text, labels, self.classifier)
        with torch.no_grad():
            self._correct += torch.stack([(image_logits.argmax(1) == labels).sum(),
                                          (text_logits.argmax(1) == labels).sum()]).cpu()
            self._seen += int(labels.numel())
        return loss

    def diagnostics(self) -> dict[str, float]:
        """Training accuracy of the classifier over the epoch's steps, in % (image, text)."""
        if not self._seen:
            return {}
        out = {"image_accuracy": 100.0 * float(self._correct[0]) / self._seen,
               "text_accuracy": 100.0 * float(self._correct[1]) / self._seen}
        self._correct.zero_()
        self._seen = 0
        return out
