"""DGIA's relation math as pure tensor functions (docs/method.md).

Features may be raw or L2-normalised: every similarity here normalises rows first. Relation
matrices follow :class:`wsreid.api.Relation`: 1 on the diagonal, a weight in (0, 1] for
related pairs, 0 for unrelated ones. Nothing here carries gradient except the losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from wsreid.losses import bidirectional_sdm_loss, cosine_similarity_matrix

__all__ = [
    "lrc_relation",
    "lrc_relation_and_thresholds",
    "effective_threshold",
    "lrc_loss",
    "related_offdiagonal_pairs",
    "Neighbours",
    "scoring_rows",
    "row_norms",
    "mine_neighbours",
    "neighbour_weights",
    "group_relation",
    "enlarged_features",
    "gsrc_loss",
    "momentum_update",
]

Modalities = Literal["image+text", "image", "text"]

#: Extra candidates taken from a low-precision scoring copy before the exact re-scoring:
#: a true neighbour is missed only if rounding ranks it behind this many more rows.
RESCORE_MARGIN = 16
#: Largest chunk of a low-precision scoring copy scored as chunk x B (see _topk_over_memory).
_TRANSPOSED_MAX_ROWS = 8192
Anchor = Literal["image", "text", "both"]
QueryRows = Literal["all", "batch"]
SelfMatch = Literal["skip_first_rank", "skip_own_index"]


# --------------------------------------------------------------------------- LRC (3.3)


def lrc_relation(
    image: torch.Tensor,
    text: torch.Tensor,
    threshold_image: float = 0.7,
    threshold_text: float = 0.7,
    relation_weight: float = 0.1,
    modalities: Modalities = "image+text",
    threshold_percentile: float | None = None,
) -> torch.Tensor:
    """In-batch relation of LRC (Eq. 3-7), B x B float32, symmetric, no gradient.

    ``image``, ``text``: B x d. ``A_v = [cos(v_i, v_j) > th_v]``, ``A_t`` likewise;
    ``A = A_v * A_t`` (``modalities="image"``: ``A_v`` only, LRC-I; ``"text"``: ``A_t``
    only, LRC-T); ``R = I + lambda (A - I)``: 1 on the diagonal, ``lambda`` on related pairs.

    ``threshold_percentile`` (not in the paper; ``None`` keeps its fixed thresholds): each
    modality's threshold becomes ``max(th, P)``, ``P`` the batch's ``threshold_percentile``-th
    percentile of that modality's off-diagonal cosines (:func:`effective_threshold`), so at
    most ``100 - threshold_percentile`` % of the pairs pass either test however close the
    features draw together. :func:`lrc_relation_and_thresholds` also returns the thresholds.
    """
    return lrc_relation_and_thresholds(
        image, text, threshold_image, threshold_text, relation_weight, modalities, threshold_percentile
    )[0]


def lrc_relation_and_thresholds(
    image: torch.Tensor,
    text: torch.Tensor,
    threshold_image: float = 0.7,
    threshold_text: float = 0.7,
    relation_weight: float = 0.1,
    modalities: Modalities = "image+text",
    threshold_percentile: float | None = None,
) -> tuple[torch.Tensor, float, float]:
    """:func:`lrc_relation` and the (image, text) thresholds it applied - the fixed ones, or
    raised to the batch percentile; a modality that ``modalities`` leaves out keeps its
    fixed threshold."""
    with torch.no_grad():
        b = image.shape[0]
        related = torch.ones(b, b, dtype=torch.bool, device=image.device)
        if modalities in ("image+text", "image"):
            sim = cosine_similarity_matrix(image.detach(), image.detach())
            threshold_image = effective_threshold(sim, threshold_image, threshold_percentile)
            related &= sim > threshold_image
        if modalities in ("image+text", "text"):
            sim = cosine_similarity_matrix(text.detach(), text.detach())
            threshold_text = effective_threshold(sim, threshold_text, threshold_percentile)
            related &= sim > threshold_text
        if modalities not in ("image+text", "image", "text"):
            raise ValueError(f"unknown modalities {modalities!r}")
        weights = related.float() * relation_weight
        weights.fill_diagonal_(1.0)
        return weights, threshold_image, threshold_text


def effective_threshold(sim: torch.Tensor, threshold: float, percentile: float | None) -> float:
    """The threshold LRC applies to a B x B cosine matrix ``sim``: ``threshold`` itself when
    ``percentile`` is None, else ``max(threshold, q)`` with ``q`` the ``percentile``-th
    percentile (linear interpolation) of the B (B - 1) off-diagonal entries (one host sync).
    A batch of one row has no off-diagonal entry: ``threshold``."""
    b = sim.shape[0]
    if percentile is None or b < 2:
        return threshold
    off = sim.masked_select(~torch.eye(b, dtype=torch.bool, device=sim.device)).float()
    return max(threshold, float(linear_quantile(off, percentile / 100.0)))


def linear_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-quantile (0 <= q <= 1) of a 1-D float tensor, interpolated linearly between
    order statistics - the arithmetic of ``torch.quantile`` (ranks and weights in the
    tensor's dtype), to the bit, but by two ``torch.kthvalue`` selections instead of a sort,
    so with no limit on the size (``torch.quantile`` refuses more than 2**24 values: the
    B (B - 1) off-diagonal cosines of a global batch above 4,096). 0-dim result."""
    n = values.numel()
    if n == 0:
        raise ValueError("quantile of an empty tensor")
    rank = torch.tensor(q, dtype=values.dtype) * (n - 1)
    below, above = int(rank.floor()), int(rank.ceil())
    value_below = torch.kthvalue(values, below + 1).values
    if above == below:
        return value_below
    value_above = torch.kthvalue(values, above + 1).values
    return torch.lerp(value_below, value_above, (rank - below).to(values.device))


def related_offdiagonal_pairs(weights: torch.Tensor) -> torch.Tensor:
    """Number of ordered pairs (i, j), i != j, that a square relation marks as related (long scalar)."""
    off = weights > 0
    return off.sum() - off.diagonal().sum()


def lrc_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    threshold_image: float = 0.7,
    threshold_text: float = 0.7,
    relation_weight: float = 0.1,
    modalities: Modalities = "image+text",
    temperature: float = 0.02,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``L_rc_b`` (Eq. 8-10): bidirectional SDM of the batch against :func:`lrc_relation`.

    ``image``, ``text``: B x d. Also ``L_rc_h`` (Eq. 21) when given the asymmetric view.
    """
    weights = lrc_relation(image, text, threshold_image, threshold_text, relation_weight, modalities)
    return bidirectional_sdm_loss(F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1), weights, temperature, eps)


# --------------------------------------------------------------------------- GSRC-FR (3.4)


@dataclass
class Neighbours:
    """Mined neighbours of B anchors, ``k`` slots each, best first.

    ``index``: B x k memory rows; ``similarity``: B x k anchor similarities (float32);
    ``valid``: B x k bool, True where the slot holds a neighbour (above the threshold).
    """

    index: torch.Tensor
    similarity: torch.Tensor
    valid: torch.Tensor

    @property
    def count(self) -> torch.Tensor:
        """Neighbours per anchor, B long."""
        return self.valid.sum(dim=1)


def scoring_rows(memory: torch.Tensor, dtype: torch.dtype = torch.float32, chunk_rows: int = 65536) -> torch.Tensor:
    """A copy of ``memory`` (N x d, any dtype, rows raw or normalised) ready for scoring:
    every row L2-normalised (all-zero rows stay zero), N x d in ``dtype``.

    Computed chunk by chunk in float32, so no float32 copy of the whole bank is made
    when ``dtype`` is narrower. Row r equals ``F.normalize(memory[r:r+1].float())`` cast to
    ``dtype``, so scoring against it gives the same similarities as normalising on the fly.
    """
    with torch.no_grad():
        out = torch.empty(memory.shape, dtype=dtype, device=memory.device)
        for start in range(0, memory.shape[0], chunk_rows):
            stop = min(memory.shape[0], start + chunk_rows)
            out[start:stop] = F.normalize(memory[start:stop].float(), dim=1)
        return out


def row_norms(memory: torch.Tensor, chunk_rows: int = 65536) -> torch.Tensor:
    """Float32 L2 norms of the rows of ``memory`` (N x d, any dtype), N, computed chunk by
    chunk: entry r equals ``torch.linalg.vector_norm(memory[r].float())``."""
    with torch.no_grad():
        out = torch.empty(memory.shape[0], dtype=torch.float32, device=memory.device)
        for start in range(0, memory.shape[0], chunk_rows):
            stop = min(memory.shape[0], start + chunk_rows)
            out[start:stop] = torch.linalg.vector_norm(memory[start:stop].float(), dim=1)
        return out


def _proposal_error_bound(dtype: torch.dtype) -> float:
    """A bound on |proposal - float32 cosine| when a normalised float32 query and a
    :func:`scoring_rows` copy in ``dtype`` are multiplied in ``dtype`` (float32 accumulation,
    the product rounded to ``dtype``): rounding the query and the row each moves the dot
    product by at most u (u = 2^-8 for bfloat16, 2^-11 for float16; unit rows), rounding the
    product by u |s| <= u (1 + 2u); 4u covers these and the float32 accumulation."""
    u = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    return 4.0 * u


def _topk_over_memory(
    anchors: torch.Tensor,
    memory: torch.Tensor,
    k: int,
    usable: torch.Tensor | None,
    exclude: torch.Tensor | None,
    chunk_rows: int,
    normalised: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine similarities of ``anchors`` (B x d, normalised, float32) against the
    rows of ``memory`` (N x d), keeping a running top-k over chunks of rows.

    ``normalised``: the rows of ``memory`` are already L2-normalised (a :func:`scoring_rows`
    copy): they are scored as they are, in their own dtype, with no per-step copy;
    otherwise every chunk is normalised in float32 first. ``usable``: N bool (rows never
    written are skipped; None when all are usable); ``exclude``: B rows to skip, one per
    anchor. Returns float32 values B x k (``-inf`` where fewer rows exist) and indices B x k.
    """
    b, n = anchors.shape[0], memory.shape[0]
    if normalised and anchors.dtype != memory.dtype:
        anchors = anchors.to(memory.dtype)
    best_v = best_i = None
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        rows = memory[start:stop] if normalised else F.normalize(memory[start:stop].float(), dim=1)
        if rows.dtype == torch.float32 or stop - start > _TRANSPOSED_MAX_ROWS:
            sim = anchors @ rows.t()  # B x c, a fresh tensor: masked in place
            if usable is not None:
                sim.masked_fill_(~usable[start:stop][None, :], float("-inf"))
            if exclude is not None:
                local = exclude - start
                inside = ((local >= 0) & (local < stop - start)).nonzero().squeeze(1)
                sim[inside, local[inside]] = float("-inf")
            v, i = torch.topk(sim, min(k, stop - start), dim=1)
        else:  # a small chunk of low-precision candidates, scored as c x B: the chunk as the
            # left operand is about 2x faster on CPUs for B << c, and while the c x B product
            # stays in cache top-k runs over that layout directly
            sim = rows @ anchors.t()
            if usable is not None:
                sim.masked_fill_(~usable[start:stop][:, None], float("-inf"))
            if exclude is not None:
                local = exclude - start
                inside = ((local >= 0) & (local < stop - start)).nonzero().squeeze(1)
                sim[local[inside], inside] = float("-inf")
            v, i = torch.topk(sim, min(k, stop - start), dim=0)
            v, i = v.t(), i.t()
        v = v.float()
        if best_v is None:
            best_v, best_i = v, i
            continue
        best_v, order = torch.topk(torch.cat([best_v, v], 1), min(k, best_v.shape[1] + v.shape[1]), dim=1)
        best_i = torch.gather(torch.cat([best_i, i + start], 1), 1, order)
    if best_v is None:
        best_v = anchors.new_full((b, 0), float("-inf"), dtype=torch.float32)
        best_i = torch.zeros(b, 0, dtype=torch.long, device=anchors.device)
    if best_v.shape[1] < k:  # fewer memory rows than k
        pad = k - best_v.shape[1]
        best_v = torch.cat([best_v, best_v.new_full((b, pad), float("-inf"))], 1)
        best_i = torch.cat([best_i, best_i.new_zeros((b, pad))], 1)
    return best_v, best_i


def mine_neighbours(
    image: torch.Tensor,
    text: torch.Tensor,
    memory_image: torch.Tensor,
    memory_text: torch.Tensor,
    k: int = 3,
    threshold: float = 0.7,
    anchor: Anchor = "image",
    self_match: SelfMatch = "skip_first_rank",
    batch_index: torch.Tensor | None = None,
    usable: torch.Tensor | None = None,
    chunk_rows: int = 65536,
    scoring: torch.Tensor | None = None,
    scoring_norms: torch.Tensor | None = None,
    similarity_dtype: torch.dtype = torch.float32,
) -> Neighbours:
    """Neighbour mining of GSRC (Eq. 11-12), vectorised: one running top-k over chunks.

    ``image``, ``text``: B x d batch features; ``memory_image``, ``memory_text``: N x d
    banks. ``anchor="image"``: rank memory rows by ``cos(v_i, B_v[j])``; ``"text"`` (GSRC-T):
    by ``cos(t_i, B_t[j])``; ``"both"`` (GSRC-IT): rank by the image similarity and keep a
    neighbour only if the text similarity also passes. ``self_match="skip_first_rank"``
    drops rank 1 (assumed to be the sample itself, as the authors' code does) and keeps
    ranks 2..k+1; ``"skip_own_index"`` removes row ``batch_index[i]`` and keeps ranks 1..k.
    A slot is valid when its similarity exceeds ``threshold``. ``similarity`` holds the
    ranking similarity (image for ``"both"``). ``usable``: N bool mask of written rows
    (None: all). ``scoring``: optional ready-for-scoring copy of the ranking bank
    (``memory_text`` for ``anchor="text"``, else ``memory_image``), N x d with L2-normalised
    rows (:func:`scoring_rows`); when given, the bank is scored as it is instead of being
    normalised and up-cast chunk by chunk on every call. A copy in a low precision
    (bfloat16, float16: fast on GPUs and on CPUs with matrix units) only proposes the best
    ``k + 1 + RESCORE_MARGIN`` rows; those that can still reach the top ``k + 1`` (proposed
    within twice the rounding bound of the ``(k+1)``-th proposal) are re-scored in float32
    from the stored rows, so the result is that of float32 scoring unless rounding ranks a
    true neighbour behind ``RESCORE_MARGIN`` others. ``scoring_norms``: optional N float32
    norms of the stored ranking rows (``torch.linalg.vector_norm(row.float())``, kept
    current with the scoring copy); the re-scoring then divides by them instead of
    measuring the gathered rows. ``similarity_dtype``: ``torch.float16`` rounds the kept
    similarities to float16 and tests them against the threshold in float16, as the
    authors' fp16 model does (there 0.7 is 0.7001953125, and cosines within half a float16
    step tie); the returned similarities are then the rounded values (as float32).
    """
    with torch.no_grad():
        if anchor not in ("image", "text", "both"):
            raise ValueError(f"unknown anchor {anchor!r}")
        by_text = anchor == "text"
        query = F.normalize((text if by_text else image).detach().float(), dim=1)
        memory = memory_text if by_text else memory_image
        stored = memory
        ready = scoring is not None
        if ready:
            if scoring.shape != memory.shape:
                raise ValueError(f"scoring copy has shape {tuple(scoring.shape)}, the bank {tuple(memory.shape)}")
            memory = scoring
        if self_match == "skip_first_rank":
            slots, own = k + 1, None
        elif self_match == "skip_own_index":
            if batch_index is None:
                raise ValueError("self_match='skip_own_index' needs batch_index")
            slots, own = k, batch_index.to(query.device).long()
        else:
            raise ValueError(f"unknown self_match {self_match!r}")
        if ready and scoring.dtype != torch.float32:
            # low-precision candidates, re-scored exactly (float32 from the stored rows)
            values, index = _topk_over_memory(query, memory, slots + RESCORE_MARGIN, usable, own, chunk_rows, True)
            b, c = index.shape
            # Only candidates that can still reach the exact top-`slots` are re-scored: every
            # proposal is within delta of its float32 cosine, so the best `slots` proposals
            # score at least p_slots - delta exactly and a candidate proposed below
            # p_slots - 2 delta cannot beat them. Separated features leave about `slots`
            # candidates per anchor; in a narrow cone nearly all of them stay.
            delta = _proposal_error_bound(memory.dtype)
            keep = (values >= values[:, slots - 1 : slots] - 2.0 * delta) & (values > float("-inf"))
            anchor_of, slot = keep.nonzero(as_tuple=True)  # row-major: anchor by anchor
            flat = index[anchor_of, slot]
            # cos = <q, x> / max(|x|, eps): the float32 similarity of F.normalize(x), without
            # writing a normalised copy of the candidate rows
            rows = stored.index_select(0, flat).float()
            dots = torch.linalg.vecdot(query.index_select(0, anchor_of), rows)
            if scoring_norms is None:
                norms = torch.linalg.vector_norm(rows, dim=1)
            else:
                norms = scoring_norms.index_select(0, flat)
            exact = values.new_full((b, c), float("-inf"))  # not re-scored, masked or missing: -inf
            exact[anchor_of, slot] = dots.div_(norms.clamp_min_(1e-12))
            values, order = torch.topk(exact, min(slots, c), dim=1)
            index = torch.gather(index, 1, order)
            if values.shape[1] < slots:
                pad = slots - values.shape[1]
                values = torch.cat([values, values.new_full((values.shape[0], pad), float("-inf"))], 1)
                index = torch.cat([index, index.new_zeros((index.shape[0], pad))], 1)
        else:
            values, index = _topk_over_memory(query, memory, slots, usable, own, chunk_rows, ready)
        if self_match == "skip_first_rank":
            values, index = values[:, 1:], index[:, 1:]
        if similarity_dtype != torch.float32:
            values = values.to(similarity_dtype).float()
            threshold = float(torch.tensor(threshold, dtype=similarity_dtype))
        valid = values > threshold
        if anchor == "both":
            t = F.normalize(text.detach().float(), dim=1)
            rows = F.normalize(memory_text[index.reshape(-1)].float(), dim=1).reshape(*index.shape, -1)
            text_sim = torch.einsum("bd,bkd->bk", t, rows).to(similarity_dtype).float()
            valid &= text_sim > threshold
        return Neighbours(index=index, similarity=torch.where(valid, values, 0.0), valid=valid)


def neighbour_weights(similarity: torch.Tensor, valid: torch.Tensor, gamma: float = 1.0,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Confidence-based weights (Eq. 14), B x k float32: ``w_i = 1 - softmax(gamma [1, s_i1..
    s_im])[1:]`` over each anchor's valid neighbours (the leading 1 stands for the anchor
    itself); 0 on invalid slots. A more similar neighbour gets a LOWER weight. ``dtype``:
    the arithmetic of the scaling, the softmax and ``1 -`` (``torch.float16``: the authors'
    fp16 model, whose weights then differ from float32 ones rounded to float16 by up to
    one float16 step)."""
    with torch.no_grad():
        scaled = similarity.to(dtype) if gamma == 1.0 else gamma * similarity.to(dtype)
        logits = torch.where(valid, scaled, float("-inf"))
        probs = torch.softmax(F.pad(logits, (1, 0), value=gamma * 1.0), dim=1)  # the anchor's own logit first
        return ((1.0 - probs[:, 1:]) * valid).float()


def group_relation(
    valid: torch.Tensor, weights: torch.Tensor, query_rows: QueryRows = "all"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relation of the enlarged batch (Eq. 13-15).

    ``valid``, ``weights``: B x k from mining. Rows of the enlarged batch are the B anchors,
    then every valid neighbour, anchor by anchor, best first (B1 = B + valid.sum()).
    Returns ``(group, R)``: ``group`` B1 long (the anchor of each row) and ``R`` (Q x B1,
    float32; Q = B1 for ``query_rows="all"``, the code; Q = B for ``"batch"``, the paper):
    ``R[r, c] = 1`` when rows r and c share a group, except that an anchor row holds its own
    neighbours' confidence weights instead.
    """
    with torch.no_grad():
        b = valid.shape[0]
        anchor_of, slot = valid.nonzero(as_tuple=True)  # row-major: anchor by anchor, best first
        group = torch.cat([torch.arange(b, device=valid.device), anchor_of])
        relation = (group[:, None] == group[None, :]).float()
        # an anchor row's neighbour columns hold 1 exactly at its own neighbours: scaled by
        # their weights (column j is neighbour j, anchor by anchor)
        relation[:b, b:].mul_(weights[anchor_of, slot].float())
        if query_rows == "batch":
            relation = relation[:b]
        elif query_rows != "all":
            raise ValueError(f"unknown query_rows {query_rows!r}")
        return group, relation


def enlarged_features(
    image: torch.Tensor,
    text: torch.Tensor,
    memory_image: torch.Tensor,
    memory_text: torch.Tensor,
    neighbours: Neighbours,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Enlarged batch (Eq. 16): ``[v_1..v_B ; B_v[J_1] ; ... ; B_v[J_B]]`` and the same for
    text, B1 x d, L2-normalised, in the row order of :func:`group_relation`. Batch rows keep
    their gradient; memory rows are constants in the batch features' dtype."""
    rows = neighbours.index[neighbours.valid]  # row-major order, as group_relation
    if image.dtype == text.dtype == torch.float32 and image.shape == text.shape:
        # one normalisation over [batch images; memory images; batch texts; memory texts]
        # (few operations: a step runs many such small ones); rows are normalised alike.
        # The memory rows are converted while copied into place (no float copy, no cat).
        b, n1 = image.shape[0], image.shape[0] + rows.numel()
        stacked = image.new_empty((2 * n1, image.shape[1]))
        stacked[:b] = image
        stacked[b:n1] = memory_image.index_select(0, rows)
        stacked[n1 : n1 + b] = text
        stacked[n1 + b :] = memory_text.index_select(0, rows)
        both = F.normalize(stacked, dim=1)
        return both[:n1], both[n1:]
    if image.shape != text.shape or image.dtype != text.dtype:
        img, txt = F.normalize(image, dim=1), F.normalize(text, dim=1)
    else:  # both modalities in one pass (a step runs many such small operations)
        img, txt = F.normalize(torch.stack([image, text]), dim=2).unbind(0)
    memory = F.normalize(torch.stack([memory_image[rows], memory_text[rows]]).float(), dim=2)
    return torch.cat([img, memory[0].to(img.dtype)]), torch.cat([txt, memory[1].to(txt.dtype)])


def gsrc_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    memory_image: torch.Tensor,
    memory_text: torch.Tensor,
    k: int = 3,
    threshold: float = 0.7,
    gamma: float = 1.0,
    temperature: float = 0.02,
    eps: float = 1e-6,
    anchor: Anchor = "image",
    query_rows: QueryRows = "all",
    self_match: SelfMatch = "skip_first_rank",
    batch_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """``L_rc_g`` (Eq. 11-18): mine, weigh, enlarge, then bidirectional SDM, a scalar.

    ``image``, ``text``: B x d batch features; ``memory_*``: N x d banks (as they were
    before this step's update)."""
    nb = mine_neighbours(image, text, memory_image, memory_text, k, threshold, anchor, self_match, batch_index)
    weights = neighbour_weights(nb.similarity, nb.valid, gamma)
    _, relation = group_relation(nb.valid, weights, query_rows)
    big_image, big_text = enlarged_features(image.float(), text.float(), memory_image, memory_text, nb)
    return bidirectional_sdm_loss(big_image, big_text, relation, temperature, eps)


def momentum_update(
    memory: torch.Tensor,
    index: torch.Tensor,
    features: torch.Tensor,
    alpha: float = 0.9,
    overwrite: torch.Tensor | None = None,
) -> None:
    """In place: ``memory[index] = alpha * features + (1 - alpha) * memory[index]`` (Eq. 11;
    ``alpha`` weighs the NEW feature), computed in float32 and stored in the bank's dtype.

    ``memory``: N x d; ``index``: B long; ``features``: B x d (detached). ``overwrite``: B
    bool, rows written as they are (epoch-1 fill, or rows never written before); ``alpha=1``
    overwrites all. When an index repeats (e.g. padded distributed shards), its last
    occurrence wins.
    """
    with torch.no_grad():
        index = index.to(memory.device).long()
        features = features.detach().to(memory.device).float()
        unique, inverse = torch.unique(index, return_inverse=True)
        positions = torch.arange(index.numel(), device=memory.device)
        last = torch.full((unique.numel(),), -1, dtype=torch.long, device=memory.device)
        last.scatter_reduce_(0, inverse, positions, reduce="amax")
        new = features[last]
        mixed = alpha * new + (1.0 - alpha) * memory[unique].float()
        if overwrite is not None:
            mixed = torch.where(overwrite.to(memory.device)[last][:, None], new, mixed)
        memory[unique] = mixed.to(memory.dtype)
