"""Retrieval metrics of the text-to-image protocol (docs/method.md).

Queries are captions, the gallery is images; a gallery item is relevant to a query when
their identity ids are equal. All metrics are in percent:

- ``R{K}``: share of queries with at least one relevant item among the top K;
- ``mAP``: mean over queries of the average precision (mean of the precision at the rank
  of each relevant item);
- ``mINP``: mean over queries of (number of relevant items) / (rank of the last one).

Ranking is done in chunks of queries, so memory grows with ``chunk x G`` and never with
``Q x G``: :func:`retrieval_metrics_from_features` computes each chunk's similarities on
the fly, so even a 100k x 100k evaluation needs only the features plus one chunk.
Ties are broken by gallery order (stable sort). Queries without any relevant gallery item
are left out of every metric (as common re-identification evaluation code does); the
number of queries scored is available from :func:`retrieval_counts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

__all__ = [
    "retrieval_metrics",
    "retrieval_metrics_from_features",
    "retrieval_counts",
    "top1_concentration",
    "mean_pairwise_cosine",
    "similarity_from_features",
    "RetrievalCounts",
    "DEFAULT_CHUNK_ELEMENTS",
]

#: Upper bound on ``chunk x G`` elements ranked at once (about 14 bytes each at peak).
DEFAULT_CHUNK_ELEMENTS = 1 << 26


@dataclass
class RetrievalCounts:
    """Sums over scored queries from which the metrics follow; chunks add up."""

    ranks: tuple[int, ...]
    num_queries: int = 0
    hits: dict[int, int] = field(default_factory=dict)
    sum_ap: float = 0.0
    sum_inp: float = 0.0

    def add(self, other: "RetrievalCounts") -> None:
        self.num_queries += other.num_queries
        for k, v in other.hits.items():
            self.hits[k] = self.hits.get(k, 0) + v
        self.sum_ap += other.sum_ap
        self.sum_inp += other.sum_inp

    def metrics(self) -> dict[str, float]:
        """``{"R1": .., "R5": .., "R10": .., "mAP": .., "mINP": ..}`` in percent."""
        if self.num_queries == 0:
            raise ValueError("retrieval metrics: no query has a relevant gallery item")
        n = self.num_queries
        out = {f"R{k}": 100.0 * self.hits.get(k, 0) / n for k in self.ranks}
        out["mAP"] = 100.0 * self.sum_ap / n
        out["mINP"] = 100.0 * self.sum_inp / n
        return out


def similarity_from_features(text_feats: torch.Tensor, image_feats: torch.Tensor) -> torch.Tensor:
    """Cosine similarity, Q x G, of text features (Q x d) against image features (G x d)."""
    return F.normalize(text_feats.float(), dim=1) @ F.normalize(image_feats.float(), dim=1).t()


def _chunk_counts(sim: torch.Tensor, qids: torch.Tensor, gids: torch.Tensor, ranks: tuple[int, ...]) -> RetrievalCounts:
    """Counts for one chunk: ``sim`` c x G, ``qids`` c, ``gids`` G (same device)."""
    relevant = qids[:, None] == gids[None, :]  # c x G bool
    order = torch.argsort(sim, dim=1, descending=True, stable=True)  # c x G
    matches = torch.gather(relevant, 1, order)  # c x G bool, in rank order
    del order, relevant
    num_rel = matches.sum(dim=1)  # c
    rows, cols = matches.nonzero(as_tuple=True)  # row-major: per row, ascending rank
    del matches
    start = torch.cumsum(num_rel, 0) - num_rel  # offset of each row's first relevant item
    ordinal = torch.arange(rows.numel(), device=sim.device) - start[rows] + 1  # 1..num_rel
    precision = ordinal.double() / (cols.double() + 1.0)
    ap_sum = torch.zeros(sim.shape[0], dtype=torch.float64, device=sim.device).index_add_(0, rows, precision)

    scored = num_rel > 0
    n_rel = num_rel[scored]
    first = start[scored]
    first_rank = cols[first] + 1
    last_rank = cols[first + n_rel - 1] + 1
    counts = RetrievalCounts(ranks=ranks, num_queries=int(scored.sum()))
    counts.hits = {k: int((first_rank <= k).sum()) for k in ranks}
    counts.sum_ap = float((ap_sum[scored] / n_rel.double()).sum())
    counts.sum_inp = float((n_rel.double() / last_rank.double()).sum())
    return counts


def _chunk_rows(num_queries: int, num_gallery: int, chunk_size: int | None, max_elements: int) -> int:
    budget = max(1, max_elements // max(1, num_gallery))
    rows = budget if chunk_size is None else min(chunk_size, budget)
    return max(1, min(rows, max(1, num_queries)))


def _check(ranks: Iterable[int], q: int, g: int, qids: torch.Tensor, gids: torch.Tensor) -> tuple[int, ...]:
    ranks = tuple(int(k) for k in ranks)
    if not ranks or any(k < 1 for k in ranks):
        raise ValueError(f"ranks must be positive integers, got {ranks}")
    if qids.shape != (q,) or gids.shape != (g,):
        raise ValueError(
            f"ids do not match the similarity: {q} queries / {g} gallery items, "
            f"got query_ids {tuple(qids.shape)} and gallery_ids {tuple(gids.shape)}"
        )
    return ranks


def _run(
    chunk_similarity: Callable[[int, int], torch.Tensor],
    q: int,
    g: int,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    device: torch.device,
    ranks: tuple[int, ...],
    chunk_size: int | None,
    max_elements: int,
) -> RetrievalCounts:
    qids = torch.as_tensor(query_ids).to(device=device, dtype=torch.long)
    gids = torch.as_tensor(gallery_ids).to(device=device, dtype=torch.long)
    ranks = _check(ranks, q, g, qids, gids)
    rows = _chunk_rows(q, g, chunk_size, max_elements)
    total = RetrievalCounts(ranks=ranks)
    for start in range(0, q, rows):
        stop = min(q, start + rows)
        total.add(_chunk_counts(chunk_similarity(start, stop), qids[start:stop], gids, ranks))
    return total


def retrieval_counts(
    similarity: torch.Tensor,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    *,
    ranks: Iterable[int] = (1, 5, 10),
    chunk_size: int | None = None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> RetrievalCounts:
    """Like :func:`retrieval_metrics` but returns the raw :class:`RetrievalCounts`."""
    q, g = similarity.shape
    return _run(
        lambda a, b: similarity[a:b],
        q, g, query_ids, gallery_ids, similarity.device, tuple(ranks), chunk_size, max_chunk_elements,
    )


def retrieval_metrics(
    similarity: torch.Tensor,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    *,
    ranks: Iterable[int] = (1, 5, 10),
    chunk_size: int | None = None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> dict[str, float]:
    """R@K, mAP and mINP in percent (docs/method.md) as plain floats.

    ``similarity``: Q x G (query = text, gallery = image; higher = more similar);
    ``query_ids``: Q and ``gallery_ids``: G integer identity ids. Returns
    ``{"R1", "R5", "R10", "mAP", "mINP"}`` (one ``R{K}`` per entry of ``ranks``).
    Queries are ranked ``chunk_size`` at a time, capped so that a chunk holds at most
    ``max_chunk_elements`` similarities.
    """
    return retrieval_counts(
        similarity, query_ids, gallery_ids, ranks=ranks, chunk_size=chunk_size, max_chunk_elements=max_chunk_elements
    ).metrics()


def retrieval_metrics_from_features(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    *,
    ranks: Iterable[int] = (1, 5, 10),
    chunk_size: int | None = None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> dict[str, float]:
    """:func:`retrieval_metrics` of the cosine similarity of ``query_feats`` (Q x d, text)
    against ``gallery_feats`` (G x d, image), computed one chunk of queries at a time so
    the Q x G matrix never exists as a whole."""
    q, g = query_feats.shape[0], gallery_feats.shape[0]
    gallery = F.normalize(gallery_feats.float(), dim=1)

    def chunk(a: int, b: int) -> torch.Tensor:
        return F.normalize(query_feats[a:b].float(), dim=1) @ gallery.t()

    return _run(
        chunk, q, g, query_ids, gallery_ids, gallery.device, tuple(ranks), chunk_size, max_chunk_elements
    ).metrics()


def top1_concentration(similarity: torch.Tensor) -> dict[str, float]:
    """How spread the queries' first results are (a hubness diagnostic, not a metric of
    the protocol): ``top1_images``, the number of distinct gallery items ranked first by
    some query, and ``top1_hub_share``, the % of queries whose first result is the single
    most frequent one. ``similarity``: Q x G. A healthy ranking spreads its first results
    over many items; a model whose queries share a common offset sends most of them to
    the same "hub" item.
    """
    if similarity.numel() == 0:
        return {"top1_images": 0, "top1_hub_share": 0.0}
    # ties go to the lowest gallery index, as in the stable ranking of the metrics
    first = similarity.float().argmax(dim=1)
    counts = torch.bincount(first, minlength=similarity.shape[1])
    return {"top1_images": int((counts > 0).sum()), "top1_hub_share": 100.0 * counts.max().item() / similarity.shape[0]}


def mean_pairwise_cosine(features: torch.Tensor) -> float | None:
    """Mean cosine similarity over the ordered pairs of distinct rows of ``features``
    (N x d; rows are L2-normalised here): near 1 when the features have collapsed to one
    direction. O(N d): uses sum_{i != j} f_i . f_j = |sum_i f_i|^2 - N. None (JSON null)
    for fewer than two rows, where no pair exists."""
    n = features.shape[0]
    if n < 2:
        return None
    f = F.normalize(features.float(), dim=1)
    total = f.sum(dim=0)
    return ((total @ total).item() - n) / (n * (n - 1))
