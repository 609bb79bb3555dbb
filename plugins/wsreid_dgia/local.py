"""Local association ``lrc``: in-batch cross-modal relations (docs/method.md; Eq. 3-10).

With ``view: base`` its relation feeds ``L_rc_b``; with ``view: asymmetric`` (the
information-asymmetric pairs of the ``iasc`` pair construction) it feeds the consistency
term ``L_rc_h`` (Eq. 21). The loss itself is the standard ``sdm`` objective pointed at
this association's label.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Literal

import torch
from pydantic import Field

from wsreid.api import (Batch, BuildContext, LocalAssociation, Params, ParamsCheckWarning, Relation, StepContext,
                        ViewFeatures)
from wsreid.errors import TrainingError

from wsreid_dgia.functional import lrc_relation_and_thresholds


#: ``related_share`` (%) at or above which LRC has stopped selecting neighbours: nearly every
#: pair of a batch counts as one person, so its SDM term only smooths the ITC labels. The
#: component prints one warning line (main process, once per run) the first epoch that
#: reaches it (docs/results.md, "The default: the learning rate": the runaway of the 0.7
#: thresholds at lr 3e-4 and 4e-4).
RUNAWAY_SHARE = 90.0


class LrcParams(Params):
    """Parameters of LRC; defaults as in the authors' code."""

    threshold_image: float = Field(0.7, ge=-1.0, le=1.0, description="image-image cosine threshold th of A_v (Eq. 4)")
    threshold_text: float = Field(0.7, ge=-1.0, le=1.0, description="text-text cosine threshold th of A_t (Eq. 5)")
    relation_weight: float = Field(
        0.1, gt=0.0, le=1.0, description="lambda of Eq. 7: relation value of related pairs (the diagonal stays 1)"
    )
    modalities: Literal["image+text", "image", "text"] = Field(
        "image+text",
        description="which agreement makes a pair related: both modalities (LRC), image only (LRC-I) or text only (LRC-T)",
    )
    view: str = Field("base", description="view whose features are related: 'base' (L_rc_b) or 'asymmetric' (L_rc_h)")
    threshold_percentile: float | None = Field(
        None,
        gt=0.0,
        lt=100.0,
        description="not in the paper: raise each modality's threshold, per batch, to this percentile of the "
        "batch's off-diagonal cosines (at most 100 - p % of the pairs pass each test); null keeps the fixed thresholds",
    )


class LocalRelationConstruction(LocalAssociation):
    """LRC: pairs whose images AND texts are both similar are the same person (Eq. 3-7).

    ``relate`` returns a Relation over the view's B batch rows with B x B weights
    ``R = I + lambda (A_v * A_t - I)``. Stats: ``related_pairs`` (ordered off-diagonal
    pairs). Diagnostics per epoch (identity ids, never a loss): ``related_pairs_per_batch``,
    ``related_share`` (% of the batches' ordered off-diagonal pairs that are related; near
    100 the thresholds have stopped selecting - see :data:`RUNAWAY_SHARE`) and
    ``relation_precision`` (% of related pairs that are truly the same person),
    ``relation_precision_other_images`` (the same over related pairs of two different
    images: two captions of one image are trivially the same person); with
    ``threshold_percentile`` also ``threshold_image`` and ``threshold_text``, the mean
    thresholds applied (each at least the fixed one).

    State (checkpoints): whether the runaway warning was printed, so a resumed run does not
    print it again.
    """

    Params = LrcParams

    @classmethod
    def check_params(cls, params: LrcParams) -> None:
        """A percentile written as a fraction (0.9 for 90 %): its threshold lies far below
        the fixed ones, which it only ever raises, so it changes nothing - a warning."""
        p = params.threshold_percentile
        if p is not None and p <= 1:
            warnings.warn(ParamsCheckWarning(
                "threshold_percentile", f"{p:g} is the {p:g}th percentile of the batch's cosines, not {100 * p:g} %: "
                f"so low a percentile stays under the fixed thresholds (image {params.threshold_image:g}, text "
                f"{params.threshold_text:g}), which it only raises, and most likely changes nothing (write a "
                f"percentage, e.g. {100 * p:g})"))

    def __init__(self, params: LrcParams, context: BuildContext):
        super().__init__(params, context)
        self._reset()
        self._epoch = 0
        self._is_main = True
        self._runaway_warned = False

    def _reset(self) -> None:
        self._batches = 0
        self._related = 0
        self._pairs = 0
        self._correct = 0
        self._related_other = 0
        self._correct_other = 0
        self._threshold_sums = [0.0, 0.0]

    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation:
        p = self.params
        self._epoch = ctx.epoch
        self._is_main = ctx.dist is None or ctx.dist.is_main
        feats = features[p.view]
        weights, threshold_image, threshold_text = lrc_relation_and_thresholds(
            feats.image, feats.text, p.threshold_image, p.threshold_text, p.relation_weight, p.modalities,
            p.threshold_percentile,
        )  # fmt: skip
        self._threshold_sums[0] += threshold_image
        self._threshold_sums[1] += threshold_text
        related = weights > 0
        related.fill_diagonal_(False)
        count = int(related.sum())
        if batch.person_id.numel() == weights.shape[0]:
            pid = batch.person_id.to(weights.device)
            correct = int((related & (pid[:, None] == pid[None, :])).sum())
            self._correct += correct
            if batch.image_id.numel() == weights.shape[0]:
                # a related pair of one image is right (an image shows one person): leave them out
                iid = batch.image_id.to(weights.device)
                same_image = int((related & (iid[:, None] == iid[None, :])).sum())
                self._related_other += count - same_image
                self._correct_other += correct - same_image
        self._related += count
        self._pairs += weights.shape[0] * (weights.shape[0] - 1)
        self._batches += 1
        return Relation(image=feats.image, text=feats.text, weights=weights, view=p.view, stats={"related_pairs": float(count)})

    def _warn_runaway(self, share: float) -> None:
        self._runaway_warned = True
        if self._is_main:
            p = self.params
            print(f"warning: epoch {self._epoch}: lrc (view {p.view}, thresholds {p.threshold_image} / "
                  f"{p.threshold_text}) related {share:.1f} % of each batch's pairs: it no longer selects "
                  "neighbours and its objective only smooths the labels; a lower train.lr, higher thresholds or a "
                  "threshold_percentile keep it selective (docs/results.md, \"The default: the learning rate\")",
                  file=sys.stderr, flush=True)

    def diagnostics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._batches:
            out["related_pairs_per_batch"] = self._related / self._batches
        if self._pairs:
            out["related_share"] = 100.0 * self._related / self._pairs
            if out["related_share"] >= RUNAWAY_SHARE and not self._runaway_warned:
                self._warn_runaway(out["related_share"])
        if self._related:
            out["relation_precision"] = 100.0 * self._correct / self._related
        if self._related_other:
            out["relation_precision_other_images"] = 100.0 * self._correct_other / self._related_other
        if self.params.threshold_percentile is not None and self._batches:
            out["threshold_image"] = self._threshold_sums[0] / self._batches
            out["threshold_text"] = self._threshold_sums[1] / self._batches
        self._reset()
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"runaway_warned": torch.tensor([int(self._runaway_warned)], dtype=torch.long)}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if not tensors:  # a fresh run, or a checkpoint written before this state existed
            return
        if set(tensors) != {"runaway_warned"}:
            raise TrainingError(f"lrc state holds {sorted(tensors)}, expected ['runaway_warned']")
        self._runaway_warned = bool(int(tensors["runaway_warned"].reshape(-1)[0]))
