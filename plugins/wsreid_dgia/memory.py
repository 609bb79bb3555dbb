"""Global association ``gsrc-fr``: memory banks, neighbour mining and the enlarged batch
(docs/method.md; Eq. 11-18)."""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from pydantic import Field

from wsreid.api import BASE_VIEW, Batch, BuildContext, GlobalAssociation, Params, Relation, StepContext, ViewFeatures
from wsreid.errors import TrainingError

from wsreid_dgia.functional import enlarged_features, group_relation, mine_neighbours, momentum_update, neighbour_weights

_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


class GsrcParams(Params):
    """Parameters of GSRC-FR; defaults as in the authors' code."""

    top_k: int = Field(3, ge=1, description="k: neighbours considered per anchor (ranks 2..k+1 of the memory ranking)")
    threshold: float = Field(0.7, ge=-1.0, le=1.0, description="th_g: a neighbour's cosine similarity must exceed it")
    momentum: float = Field(
        0.9, gt=0.0, le=1.0, description="alpha of the memory update; weight of the NEW feature: B = a f + (1-a) B"
    )
    gamma: float = Field(1.0, description="gamma of Eq. 14 (the code's soft_scale): w = 1 - softmax(gamma [1, s])[1:]")
    start_epoch: int = Field(2, ge=2, description="first epoch with a global loss; earlier epochs only fill the banks")
    anchor: Literal["image", "text", "both"] = Field(
        "image",
        description="mining anchor: image memory (GSRC), text memory (GSRC-T), or image ranking plus a text test (GSRC-IT)",
    )
    query_rows: Literal["all", "batch"] = Field(
        "all", description="query rows of the SDM: every row of the enlarged batch (code, B1 x B1) or the batch (paper, B x B1)"
    )
    self_match: Literal["skip_first_rank", "skip_own_index"] = Field(
        "skip_first_rank",
        description="how the sample itself is left out: drop rank 1 (code) or drop its own memory row",
    )
    memory_dtype: Literal["fp16", "fp32"] = Field("fp16", description="storage precision of the memory banks (code: fp16)")
    view: str = Field(
        "base", description="view whose batch features are related to memory (memory always stores the base view)"
    )
    mining_chunk_rows: int = Field(65536, ge=1, description="memory rows scored at once during neighbour mining")


class GlobalRelationConstruction(GlobalAssociation):
    """GSRC-FR: memory banks, neighbour mining and an enlarged batch (Eq. 11-18).

    Image and text memory banks hold one row per caption-level training pair; the batch is
    enlarged with its mined memory neighbours, related by group.

    ``relate`` returns None before ``start_epoch``; afterwards a Relation over B1 rows
    (batch, then memory neighbours) with Q x B1 weights. ``after_step`` writes the detached
    batch features at their dataset indices (overwrite before ``start_epoch``, momentum
    from then on). State: ``image_memory``, ``text_memory`` (N x d), ``written`` (N bool),
    ``person_ids`` (N, diagnostics only). Diagnostics per epoch: ``relation_accuracy``
    (% of neighbour links whose person id equals the anchor's, paper Fig. 4),
    ``neighbours_per_item`` and ``items_with_neighbours`` (%).
    """

    Params = GsrcParams

    def __init__(self, params: GsrcParams, context: BuildContext):
        super().__init__(params, context)
        self.image_memory: torch.Tensor | None = None
        self.text_memory: torch.Tensor | None = None
        self.written: torch.Tensor | None = None
        self.person_ids: torch.Tensor | None = None
        self._reset_diagnostics()

    # -- memory ------------------------------------------------------------------------
    def _allocate(self, dim: int, device: torch.device) -> None:
        n = self.context.num_train
        if n is None:
            raise TrainingError("gsrc-fr needs the number of training pairs (BuildContext.num_train) to size its memory")
        dtype = _DTYPES[self.params.memory_dtype]
        self.image_memory = torch.zeros(n, dim, dtype=dtype, device=device)
        self.text_memory = torch.zeros(n, dim, dtype=dtype, device=device)
        self.written = torch.zeros(n, dtype=torch.bool, device=device)
        self.person_ids = torch.full((n,), -1, dtype=torch.long, device=device)

    def _to(self, device: torch.device) -> None:
        if self.image_memory is not None and self.image_memory.device != device:
            self.image_memory = self.image_memory.to(device)
            self.text_memory = self.text_memory.to(device)
            self.written = self.written.to(device)
            self.person_ids = self.person_ids.to(device)

    def after_step(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> None:
        feats = features[BASE_VIEW]  # memory always holds un-augmented features
        if self.image_memory is None:
            self._allocate(feats.image.shape[1], feats.image.device)
        self._to(feats.image.device)
        index = batch.index.to(feats.image.device).long()
        if ctx.epoch < self.params.start_epoch:
            overwrite = torch.ones_like(index, dtype=torch.bool)
        else:  # rows never written (e.g. dropped by drop_last in epoch 1) are filled as they come
            overwrite = ~self.written[index]
        momentum_update(self.image_memory, index, feats.image, self.params.momentum, overwrite)
        momentum_update(self.text_memory, index, feats.text, self.params.momentum, overwrite)
        self.written[index] = True
        if batch.person_id.numel() == index.numel():
            self.person_ids[index] = batch.person_id.to(index.device).long()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.image_memory is None:
            return {}
        return {
            "image_memory": self.image_memory,
            "text_memory": self.text_memory,
            "written": self.written,
            "person_ids": self.person_ids,
        }

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if not tensors:
            return
        expected = {"image_memory", "text_memory", "written", "person_ids"}
        if set(tensors) != expected:
            raise TrainingError(f"gsrc-fr state holds {sorted(tensors)}, expected {sorted(expected)}")
        n = self.context.num_train
        if n is not None and tensors["image_memory"].shape[0] != n:
            raise TrainingError(
                f"gsrc-fr memory has {tensors['image_memory'].shape[0]} rows but the dataset has {n} training pairs"
            )
        dtype, device = _DTYPES[self.params.memory_dtype], self.context.device
        self.image_memory = tensors["image_memory"].to(device, dtype).clone()
        self.text_memory = tensors["text_memory"].to(device, dtype).clone()
        self.written = tensors["written"].to(device, torch.bool).clone()
        self.person_ids = tensors["person_ids"].to(device, torch.long).clone()

    # -- relation ----------------------------------------------------------------------
    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:
        p = self.params
        if ctx.epoch < p.start_epoch or self.image_memory is None:
            return None
        feats = features[p.view]
        self._to(feats.image.device)
        index = batch.index.to(feats.image.device).long()
        nb = mine_neighbours(
            feats.image, feats.text, self.image_memory, self.text_memory,
            k=p.top_k, threshold=p.threshold, anchor=p.anchor, self_match=p.self_match,
            batch_index=index, usable=self.written, chunk_rows=p.mining_chunk_rows,
        )  # fmt: skip
        weights = neighbour_weights(nb.similarity, nb.valid, p.gamma)
        _, relation = group_relation(nb.valid, weights, p.query_rows)
        image, text = enlarged_features(feats.image, feats.text, self.image_memory, self.text_memory, nb)
        count = nb.count
        self._record(nb.index, nb.valid, count, batch)
        stats = {"neighbours": float(count.sum()), "items_with_neighbours": float((count > 0).sum())}
        return Relation(image=image, text=text, weights=relation, view=p.view, stats=stats)

    # -- diagnostics -------------------------------------------------------------------
    def _reset_diagnostics(self) -> None:
        self._items = 0
        self._with_neighbours = 0
        self._links = 0
        self._correct_links = 0

    def _record(self, index: torch.Tensor, valid: torch.Tensor, count: torch.Tensor, batch: Batch) -> None:
        self._items += int(count.numel())
        self._with_neighbours += int((count > 0).sum())
        self._links += int(count.sum())
        if batch.person_id.numel() == count.numel():
            anchor_pid = batch.person_id.to(index.device).long()[:, None]
            same = (self.person_ids[index] == anchor_pid) & valid
            self._correct_links += int(same.sum())

    def diagnostics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._items:
            out["neighbours_per_item"] = self._links / self._items
            out["items_with_neighbours"] = 100.0 * self._with_neighbours / self._items
        if self._links:
            out["relation_accuracy"] = 100.0 * self._correct_links / self._links
        self._reset_diagnostics()
        return out
