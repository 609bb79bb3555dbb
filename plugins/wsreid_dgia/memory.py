"""Global association ``gsrc-fr``: memory banks, neighbour mining and the enlarged batch
(docs/method.md; Eq. 11-18)."""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from pydantic import Field

from wsreid.api import BASE_VIEW, Batch, BuildContext, GlobalAssociation, Params, Relation, StepContext, ViewFeatures
from wsreid.errors import TrainingError

from wsreid_dgia.functional import (
    enlarged_features,
    group_relation,
    mine_neighbours,
    momentum_update,
    neighbour_weights,
    row_norms,
    scoring_rows,
)

#: ``scoring_dtype: auto`` picks bf16 for banks of at least this many rows, on a CPU with
#: bfloat16 matrix instructions (AMX, or AVX512_BF16) and on a GPU. On a CPU with AMX the bf16
#: product pays from 4,096 rows on (docs/performance.md,
#: "Mining: which scoring precision"), but below 16,384 it saves at most about 1.3 ms a step,
#: and float32 keeps the run's result independent of the CPU: the bf16 path re-scores its
#: candidates and breaks exact ties (the rows of an image's two captions are often bit-equal)
#: in another order than float32 top-k does, so DGIA's numbers would differ between CPUs with
#: and without AMX (the embedded benchmark's 4,246-row banks did).
AUTO_BF16_MIN_ROWS = 16384
_DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_bf16_matrix_units() -> dict[str, bool | None]:
    """Whether torch sees each kind of bfloat16 matrix instructions on this CPU: ``{"AMX
    tiles": ..., "AVX512_BF16": ...}``, None where this torch lacks the probe or it fails
    (benchmarks print it: it decides which path ``scoring_dtype: auto`` takes)."""
    cpu = getattr(torch, "cpu", None)
    seen: dict[str, bool | None] = {}
    for name, probe in (("AMX tiles", "_is_amx_tile_supported"), ("AVX512_BF16", "_is_avx512_bf16_supported")):
        check = getattr(cpu, probe, None)
        try:
            seen[name] = None if check is None else bool(check())
        except Exception:  # noqa: BLE001 - a capability probe must never break a run
            seen[name] = None
    return seen


def _cpu_has_bf16_matrix_units() -> bool:
    """True on CPUs with bfloat16 matrix instructions: AMX tiles (Intel Xeon, Sapphire
    Rapids on) or AVX512_BF16 (AMD Zen 4 on, Intel Cooper Lake), where bfloat16 products
    run several times faster than float32 (mining 68k rows: 0.43x the float32 time on an
    AVX512_BF16 EPYC, docs/performance.md)."""
    return any(cpu_bf16_matrix_units().values())


class GsrcParams(Params):
    """Parameters of GSRC-FR; defaults as in the authors' code."""

    top_k: int = Field(3, ge=1, description="k: neighbours considered per anchor (ranks 2..k+1 of the memory ranking); "
                       "at most N - 1 for N training pairs (a larger k acts as N - 1: a warning at the start of the run)")
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
    scoring_dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto",
        description="precision of the normalised scoring copy of the ranking bank that mining reads; fp16/bf16 "
        "candidates are re-scored in fp32 from the stored rows (the same neighbours but at exact ties, which the two "
        "paths break in different orders). auto: bf16 for banks of at least 16,384 rows on CPUs with AMX or AVX512_BF16 "
        "and on GPUs, "
        "else fp32 (smaller banks gain little, and fp32 keeps results the same on every CPU)",
    )
    memory_features: Literal["normalised", "raw"] = Field(
        "normalised",
        description="what the banks store: L2-normalised features, or the raw features as the encoder returns "
        "them (authors' code); mining and the loss normalise rows either way, the momentum update mixes what is stored",
    )
    similarity_dtype: Literal["fp32", "fp16"] = Field(
        "fp32",
        description="precision in which the mined neighbours' cosines meet the threshold and enter the weights "
        "(Eq. 12, 14): float32, or rounded to float16, compared in float16 (0.7 then acts as 0.70019) and "
        "weighted in float16 arithmetic, as the authors' fp16 model does",
    )
    relation_dtype: Literal["fp32", "fp16"] = Field(
        "fp32",
        description="precision of the enlarged batch's relation matrix and of its SDM target (softmax and log): "
        "float32, or float16 as the authors' code builds it",
    )


class GlobalRelationConstruction(GlobalAssociation):
    """GSRC-FR: memory banks, neighbour mining and an enlarged batch (Eq. 11-18).

    Image and text memory banks hold one row per caption-level training pair; the batch is
    enlarged with its mined memory neighbours, related by group.

    ``relate`` returns None before ``start_epoch``; afterwards a Relation over B1 rows
    (batch, then memory neighbours) with Q x B1 weights. ``after_step`` writes the detached
    batch features at their dataset indices (overwrite before ``start_epoch``, momentum
    from then on). State: ``image_memory``, ``text_memory`` (N x d), ``written`` (N bool),
    ``person_ids`` (N, diagnostics only). Diagnostics per epoch:
    ``relation_accuracy`` (% of neighbour links whose person id equals the anchor's, paper
    Fig. 4); ``same_image_links`` (% of links to a row of the anchor's own image: its own row,
    which ``skip_first_rank`` keeps when another row ranks first, or another caption of its
    image - the image bank holds one row per caption, so such a row is a copy of the
    anchor's image); ``relation_accuracy_other_images`` (the accuracy over the other links,
    those that found another image; the images of the rows are the build context's
    ``train_image_ids`` - without them only the anchor's own row counts as its image);
    ``neighbours_per_item`` and ``items_with_neighbours``
    (%), counted from the kept mining results when asked (not per step);
    ``Relation.stats``: ``neighbours`` (this step).

    Mining reads a ready-for-scoring copy of the ranking bank (the image bank, the text
    bank for ``anchor: text``): its rows L2-normalised in ``scoring_dtype``, refreshed for
    the rows each ``after_step`` writes and rebuilt on ``load_state_tensors``, so no step
    re-normalises or up-casts the whole bank. The stored rows stay as written (raw or
    normalised features alike); the copy is derived state and is not checkpointed.
    """

    Params = GsrcParams

    def __init__(self, params: GsrcParams, context: BuildContext):
        super().__init__(params, context)
        self.image_memory: torch.Tensor | None = None
        self.text_memory: torch.Tensor | None = None
        self.written: torch.Tensor | None = None
        self.person_ids: torch.Tensor | None = None
        ids = context.train_image_ids  # the image of every row (fixed by the dataset), diagnostics only
        self.image_ids = None if ids is None else torch.tensor(ids, dtype=torch.long)
        self._scoring: torch.Tensor | None = None  # N x d normalised copy of the ranking bank
        self._norms: torch.Tensor | None = None  # N float32 norms of the stored ranking rows (low-precision scoring)
        self._all_written = False
        self._reset_diagnostics()
        n = context.num_train
        if n is not None and params.top_k >= n:
            context.warn(f"gsrc-fr top_k {params.top_k}: the memory holds {n} rows (one per training pair), so an "
                         f"anchor has at most {n - 1} neighbours and every row is considered: top_k acts as {n - 1} "
                         f"(lower top_k below {n})")

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
        self._scoring = torch.zeros(n, dim, dtype=self._scoring_dtype(device, n), device=device)
        self._norms = None if self._scoring.dtype == torch.float32 else torch.zeros(n, device=device)
        self._all_written = False

    def _scoring_dtype(self, device: torch.device, rows: int) -> torch.dtype:
        name = self.params.scoring_dtype
        if name == "auto":
            fast_bf16 = device.type == "cuda" or (device.type == "cpu" and _cpu_has_bf16_matrix_units())
            name = "bf16" if fast_bf16 and rows >= AUTO_BF16_MIN_ROWS else "fp32"
        return _DTYPES[name]

    def _ranking_memory(self) -> torch.Tensor:
        return self.text_memory if self.params.anchor == "text" else self.image_memory

    def _rebuild_scoring(self) -> None:
        memory = self._ranking_memory()
        self._scoring = scoring_rows(memory, self._scoring_dtype(memory.device, memory.shape[0]))
        self._norms = None if self._scoring.dtype == torch.float32 else row_norms(memory)
        self._all_written = bool(self.written.all())

    def _to(self, device: torch.device) -> None:
        if self.image_memory is not None and self.image_memory.device != device:
            self.image_memory = self.image_memory.to(device)
            self.text_memory = self.text_memory.to(device)
            self.written = self.written.to(device)
            self.person_ids = self.person_ids.to(device)
            self._scoring = self._scoring.to(device)
            if self._norms is not None:
                self._norms = self._norms.to(device)

    def after_step(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> None:
        feats = features[BASE_VIEW]  # un-augmented unless iasc.augment_base (docs/method.md)
        if self.params.memory_features == "raw":
            if feats.image_raw is None or feats.text_raw is None:
                raise TrainingError("gsrc-fr memory_features 'raw': the engine passed no raw features")
            feats = ViewFeatures(feats.image_raw, feats.text_raw)
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
        with torch.no_grad():  # keep the scoring copy of the written rows current
            rows = self._ranking_memory()[index].float()
            norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)  # once, for both: F.normalize's values
            self._scoring[index] = (rows / norms.clamp_min(1e-12)).to(self._scoring.dtype)
            if self._norms is not None:
                self._norms[index] = norms.squeeze(1)
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
        self._rebuild_scoring()

    # -- relation ----------------------------------------------------------------------
    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:
        p = self.params
        if ctx.epoch < p.start_epoch or self.image_memory is None:
            return None
        feats = features[p.view]
        self._to(feats.image.device)
        index = batch.index.to(feats.image.device).long()
        if not self._all_written:  # once every row is written the mask is dropped
            self._all_written = bool(self.written.all())
        nb = mine_neighbours(
            feats.image, feats.text, self.image_memory, self.text_memory,
            k=p.top_k, threshold=p.threshold, anchor=p.anchor, self_match=p.self_match,
            batch_index=index, usable=None if self._all_written else self.written,
            chunk_rows=p.mining_chunk_rows, scoring=self._scoring, scoring_norms=self._norms,
            similarity_dtype=_DTYPES[p.similarity_dtype],
        )  # fmt: skip
        # the weights in the arithmetic of the cosines (the authors' fp16 model: float16)
        weights = neighbour_weights(nb.similarity, nb.valid, p.gamma, _DTYPES[p.similarity_dtype])
        _, relation = group_relation(nb.valid, weights, p.query_rows)
        if p.relation_dtype == "fp16":  # the SDM then builds its target in float16 too
            relation = relation.half()
        image, text = enlarged_features(feats.image, feats.text, self.image_memory, self.text_memory, nb)
        self._record(nb.index, nb.valid, batch)
        # the enlarged batch holds the B batch rows, then one row per neighbour
        return Relation(image=image, text=text, weights=relation, view=p.view,
                        stats={"neighbours": float(image.shape[0] - index.numel())})

    # -- diagnostics -------------------------------------------------------------------
    #: steps whose mining results are kept before they are counted (counting once per
    #: epoch, not per step, saves a step about ten small tensor operations)
    _PENDING_STEPS = 256

    def _reset_diagnostics(self) -> None:
        self._pending: list[tuple[torch.Tensor, ...]] = []
        self._items = 0
        self._with_neighbours = 0
        self._links = 0
        self._correct_links = 0
        self._same_image_links = 0
        self._correct_other_links = 0

    def _record(self, index: torch.Tensor, valid: torch.Tensor, batch: Batch) -> None:
        """Keep one step's mining (B x k neighbour rows, valid slots, the anchors' dataset
        indices and person ids - the person ids only when the batch has them); counted by
        :meth:`_count_pending`."""
        anchor_pid = batch.person_id if batch.person_id.numel() == valid.shape[0] else None
        self._pending.append((index, valid, batch.index, anchor_pid))
        if len(self._pending) >= self._PENDING_STEPS:
            self._count_pending()

    def _count_pending(self) -> None:
        for index, valid, anchor_index, anchor_pid in self._pending:
            self._items += valid.shape[0]
            self._with_neighbours += int(valid.any(dim=1).sum())
            links = int(valid.sum())
            self._links += links
            if not links:
                continue
            device = index.device
            anchor_index = anchor_index.to(device).long()
            if self.image_ids is None:  # the images are unknown: the anchor's own row only
                own_image = (index == anchor_index[:, None]) & valid
            else:
                ids = self.image_ids.to(device)
                own_image = (ids[index] == ids[anchor_index][:, None]) & valid
            self._same_image_links += int(own_image.sum())
            if anchor_pid is not None:
                same = (self.person_ids[index] == anchor_pid.to(device).long()[:, None]) & valid
                self._correct_links += int(same.sum())
                self._correct_other_links += int((same & ~own_image).sum())
        self._pending = []

    def diagnostics(self) -> dict[str, float]:
        self._count_pending()
        out: dict[str, float] = {}
        if self._items:
            out["neighbours_per_item"] = self._links / self._items
            out["items_with_neighbours"] = 100.0 * self._with_neighbours / self._items
        if self._links:
            out["same_image_links"] = 100.0 * self._same_image_links / self._links
            out["relation_accuracy"] = 100.0 * self._correct_links / self._links
            other = self._links - self._same_image_links
            if other:
                out["relation_accuracy_other_images"] = 100.0 * self._correct_other_links / other
        self._reset_diagnostics()
        return out
