"""Shared loss math: pure functions on tensors (docs/method.md).

Every function takes L2-normalised features (rows are items, d columns) and returns a
scalar tensor. Inputs in half precision are promoted to float32, as the reference
implementation does before its losses. Targets never carry gradient.

Notation: ``tau`` is the temperature (0.02 = logit scale 50), a relation matrix ``R``
(``weights``) is Q x N with 1 on the diagonal, a value in (0, 1] for related pairs and
exactly 0 for unrelated ones (see :class:`wsreid.api.Relation`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "relation_targets",
    "sdm_loss",
    "bidirectional_sdm_loss",
    "itc_loss",
    "cosine_similarity_matrix",
]

ItcReduction = Literal["mean_of_directions", "sum"]


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _logit_scale(temperature: float) -> float:
    """``1 / tau``, the factor the query features are scaled by before the similarity
    product (50 for tau = 0.02); scaling first, then the product, is the authors' order of
    operations, so their float rounding is reproduced."""
    return 1.0 / temperature


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` (P x d) with every row of ``b`` (M x d): P x M.

    Rows are normalised here, so raw features may be passed.
    """
    a = F.normalize(_as_float(a), dim=-1)
    b = F.normalize(_as_float(b), dim=-1)
    return a @ b.t()


def relation_targets(weights: torch.Tensor) -> torch.Tensor:
    """Target distributions from a relation matrix (docs/method.md; paper Eq. 7 and 15).

    ``weights``: Q x N relation ``R`` (1 on the diagonal, (0, 1] related, 0 unrelated).
    Returns Q x N ``q`` (float32; float64 for float64 weights, float16 for float16 weights,
    as the authors' code builds the GSRC target) where ``q[i]`` is the softmax of row ``i`` over its related
    entries only, the ``R`` values used as logits; unrelated entries are exactly 0. Example:
    ``R[i] = [1, 0.1, 0.1, 0]`` gives ``q[i,0] = e / (e + 2 e^0.1)`` and ``q[i,3] = 0``.
    Every row must hold at least one related entry (the diagonal does). No gradient.
    """
    with torch.no_grad():
        w = weights.detach()
        w = w if w.dtype == torch.float16 else _as_float(w)
        logits = w.masked_fill(w <= 0, float("-inf"))
        return torch.softmax(logits, dim=1)


def sdm_loss(
    query_feats: torch.Tensor,
    candidate_feats: torch.Tensor,
    weights: torch.Tensor,
    temperature: float = 0.02,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Similarity distribution matching in one direction (docs/method.md; Eq. 8-9).

    ``query_feats``: Q x d, ``candidate_feats``: N x d (L2-normalised), ``weights``: Q x N
    relation. With ``p_i = softmax_j(s(x_i, y_j) / tau)`` and ``q = relation_targets(R)``
    returns ``mean_i sum_j p_ij (log p_ij - log(q_ij + eps))`` (KL(p || q), prediction
    first), a scalar. Float16 ``weights`` give a float16 target and ``log(q + eps)`` (the
    authors' GSRC loss); the rest is float32.
    """
    if query_feats.shape[0] != weights.shape[0] or candidate_feats.shape[0] != weights.shape[1]:
        raise ValueError(
            f"sdm_loss: weights {tuple(weights.shape)} do not match queries {query_feats.shape[0]} "
            f"x candidates {candidate_feats.shape[0]}"
        )
    targets = relation_targets(weights)
    logits = (_logit_scale(temperature) * _as_float(query_feats)) @ _as_float(candidate_feats).t()
    log_p = F.log_softmax(logits, dim=1)
    p = torch.softmax(logits, dim=1)
    log_q = torch.log(targets + eps)
    log_q = log_q.float() if log_q.dtype == torch.float16 else log_q
    return (p * (log_p - log_q)).sum(dim=1).mean()


def bidirectional_sdm_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    weights: torch.Tensor,
    temperature: float = 0.02,
    eps: float = 1e-6,
) -> torch.Tensor:
    """SDM in both directions, summed (docs/method.md; Eq. 10 and 16-18).

    ``image``, ``text``: N x d L2-normalised features, row ``r`` of each belongs to the same
    pair; ``weights``: Q x N relation whose rows are the first Q rows (the queries).
    Returns ``sdm(text[:Q] -> image) + sdm(image[:Q] -> text)``, both against the same
    targets from ``weights``, a scalar.
    """
    q = weights.shape[0]
    return sdm_loss(text[:q], image, weights, temperature, eps) + sdm_loss(image[:q], text, weights, temperature, eps)


def itc_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    temperature: float = 0.02,
    reduction: ItcReduction = "mean_of_directions",
) -> torch.Tensor:
    """Image-text contrastive InfoNCE loss (docs/method.md; Eq. 1-2).

    ``image``, ``text``: B x d L2-normalised, row ``i`` of each is pair ``i`` (its only
    positive). ``L_v2t = -mean_i log softmax_j(s(v_i, t_j) / tau)[i]`` and ``L_t2v`` likewise.
    ``reduction="mean_of_directions"`` returns ``(L_v2t + L_t2v) / 2`` (the authors' code),
    ``"sum"`` returns ``L_v2t + L_t2v`` (the paper's Eq. 2). A scalar.
    """
    if image.shape != text.shape:
        raise ValueError(f"itc_loss: image {tuple(image.shape)} and text {tuple(text.shape)} differ in shape")
    logits = (_logit_scale(temperature) * _as_float(image)) @ _as_float(text).t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    total = F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
    if reduction == "mean_of_directions":
        return total / 2
    if reduction == "sum":
        return total
    raise ValueError(f"itc_loss: unknown reduction {reduction!r} (use 'mean_of_directions' or 'sum')")
