"""Sparse k-reciprocal Jaccard distance and sparse DBSCAN (docs/ablations.md).

The cluster pseudo-label baseline re-clusters the whole training set before each epoch.
A dense N x N distance matrix is out of the question at N = 68k (CUHK-PEDES pairs), so
everything here works on sparse neighbour graphs whose size grows linearly with N:

1. k nearest neighbours by inner product: exact (faiss ``IndexFlatIP``) or bfloat16
   candidates re-scored in float32; bit-identical rows (an image's features repeated
   once per caption) are searched once,
2. k-reciprocal sets as mutual kNN (a sparse ``F .* F^T``), their expansion,
3. the encoding V (softmax weights over each expanded set) and local query expansion,
4. the Jaccard distance between rows of V, computed only for pairs whose supports
   overlap - every other pair is at distance 1 (the maximum),
5. DBSCAN on the stored entries of that graph.

Definitions follow the k-reciprocal re-ranking of Zhong et al. (CVPR 2017), Jaccard part
only (no mixing with the original distance), for L2-normalised features with squared
distance d(i, j) = 2 - 2 <x_i, x_j>:

* N(i, k): the k + 1 nearest items (rows) of i, i itself included (ties broken by
  index), as in Zhong et al.'s ``re_ranking`` (a full ranking sliced to its first k + 1
  entries). Bit-identical rows are separate items: an image's other captions fill places.
  The faiss-based ``compute_jaccard_distance`` of the cluster-contrast code searches only
  k1 neighbours, self included, before taking the same slice, so its N(i, k1) has k1
  entries - this module's N(i, k1 - 1) - while its N(i, round(k1 / 2)) and k2 lists have
  their full sizes, as here. Copies of that code that search k1 + 1 match this module.
* R(i, k) = {j in N(i, k) : i in N(j, k)} (the k-reciprocal set).
* R*(i) = R(i, k1) united with R(c, round(k1 / 2)) for every c in R(i, k1) whose set
  shares more than 2/3 of its members with R(i, k1).
* V[i, j] = softmax_{j in R*(i)}(-d(i, j)), 0 outside R*(i); rows sum to 1.
* Local query expansion: V'[i] = mean of V[j] over the k2 nearest j of i (self included).
* Jaccard distance: 1 - sum_j min(V'[i, j], V'[k, j]) / sum_j max(V'[i, j], V'[k, j]),
  which for rows summing to 1 is 1 - m / (2 - m) with m = sum_j min(...).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["nearest_neighbours", "k_reciprocal_encoding", "k_reciprocal_jaccard_sparse", "dbscan_sparse", "NOISE"]

#: Label that :func:`dbscan_sparse` gives to outliers (noise points).
NOISE = -1

# Upper bound on the number of (row, candidate) products held at once while computing the
# Jaccard overlaps; bounds peak memory at roughly 30 bytes per product.
_PRODUCTS_PER_BLOCK = 500_000
# Upper bound on the cells of the dense (rows x N) block that sums the overlaps of a block.
# Small enough that the allocator reuses the block's memory instead of mapping (and
# page-faulting) fresh pages for every block, which cost more than the sums themselves.
_CELLS_PER_BLOCK = 1_000_000


def _as_float32(features) -> np.ndarray:
    """N x d array-like (numpy array or torch tensor on any device) -> contiguous float32."""
    if hasattr(features, "detach"):
        features = features.detach().to("cpu").float().numpy()
    array = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if array.ndim != 2:
        raise ValueError(f"features must be N x d, got shape {array.shape}")
    return array


def _unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit-identical rows of ``x`` grouped: (first index of each distinct row, ascending;
    N inverse map row -> distinct row). Caption-level training sets repeat every image's
    features once per caption, so the image features hold each row about twice."""
    keys = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # number distinct rows by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def _knn_blocks(x: np.ndarray, k: int, search: str, block_rows: int = 512) -> np.ndarray:
    """k nearest rows of every row of ``x`` by inner product, (-similarity, index) order.

    ``search="exact"``: faiss ``IndexFlatIP`` (float32). ``"bf16"``: candidates from a
    bfloat16 matrix product (the CPU's AMX / tensor-core path) - the best ``k + 8`` per
    row - re-scored exactly in float32 and re-sorted; a true neighbour is lost only when
    bfloat16 rounding moves it behind ``k + 8`` others. Blocks of ``block_rows`` rows reuse
    their buffers (fresh buffers of this size cost more in page faults than in arithmetic).
    """
    n = x.shape[0]
    if search == "exact":
        import faiss

        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        sims, ids = index.search(x, k)
    elif search == "bf16":
        import torch

        full = torch.from_numpy(x)
        low = full.to(torch.bfloat16)
        candidates = min(n, k + 8)
        ids = np.empty((n, candidates), dtype=np.int64)
        sims = np.empty((n, candidates), dtype=np.float32)
        products = torch.empty(min(n, block_rows), n, dtype=torch.bfloat16)
        gathered = torch.empty(min(n, block_rows) * candidates, x.shape[1], dtype=full.dtype)
        with torch.no_grad():
            for start in range(0, n, block_rows):
                stop = min(n, start + block_rows)
                sim = torch.matmul(low[start:stop], low.t(), out=products[: stop - start])
                _, cand = torch.topk(sim, candidates, dim=1)
                rows = torch.index_select(full, 0, cand.reshape(-1), out=gathered[: cand.numel()])
                exact = torch.einsum("bd,bcd->bc", full[start:stop], rows.view(stop - start, candidates, -1))
                ids[start:stop], sims[start:stop] = cand.numpy(), exact.numpy()
    else:
        raise ValueError(f"unknown kNN search {search!r} (exact or bf16)")
    order = np.lexsort((ids, -sims), axis=1)[:, :k]
    return np.take_along_axis(ids, order, axis=1).astype(np.int64)


def nearest_neighbours(
    features, k: int, search: str = "exact", unique: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """kNN by inner product: N x min(k, N) int64 indices, nearest first.

    Each row is ordered by (-similarity, index), so ties come out in index order; the
    query itself has similarity 1 and is normally in the first column (after any
    bit-identical copy of it with a lower index). Bit-identical rows are searched once and
    their lists expanded (exact: copies have equal similarities to everything).
    ``search``: ``"exact"`` (faiss flat float32 search) or ``"bf16"`` (bfloat16 candidates
    re-scored in float32, see :func:`_knn_blocks`; much faster on CPUs with AMX).
    ``unique``: the grouping of bit-identical rows of these features as
    :func:`_unique_rows` returns it, when the caller has it already (computed otherwise).
    """
    x = _as_float32(features)
    n = x.shape[0]
    k = min(k, n)
    first, inverse = _unique_rows(x) if unique is None else unique
    if len(inverse) != n:
        raise ValueError(f"unique groups {len(inverse)} rows, the features have {n}")
    u = len(first)
    if u == n:
        return _knn_blocks(x, k, search)
    unique_ranks = _knn_blocks(np.ascontiguousarray(x[first]), min(k, u), search)  # U x ku
    # members of every distinct row, ascending: CSR over distinct rows
    members = np.argsort(inverse, kind="stable")
    sizes = np.bincount(inverse, minlength=u)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # expand each distinct row's list into original rows, keep the first k per list
    counts = sizes[unique_ranks]  # U x ku
    total = counts.sum(axis=1)
    flat_counts = counts.ravel()
    offsets = np.repeat(starts[unique_ranks.ravel()] - (np.cumsum(flat_counts) - flat_counts), flat_counts)
    expanded = members[offsets + np.arange(int(flat_counts.sum()))]
    row_of = np.repeat(np.arange(u), total)
    position = np.arange(len(expanded)) - np.repeat(np.cumsum(total) - total, total)
    keep = position < k
    lists = np.empty((u, k), dtype=np.int64)
    lists[row_of[keep], position[keep]] = expanded[keep]
    return lists[inverse]


def _indicator(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    """Boolean-valued (float64 ones) N x N CSR matrix with ones at (rows, cols), deduplicated."""
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _knn_graph(ranks: np.ndarray, k: int) -> sp.csr_matrix:
    """F[i, j] = 1 for j among the first k + 1 entries of row i of ``ranks`` (N(i, k))."""
    n = ranks.shape[0]
    top = ranks[:, : k + 1]
    return _indicator(np.repeat(np.arange(n), top.shape[1]), top.ravel(), n)


def _row_dot_products(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """<x[rows[p]], x[cols[p]]> for every p, in float64, chunked to bound memory.

    The float32 rows are gathered as they are (half the bytes of a float64 copy) and
    multiplied in float64: the same products and sums as on float64 copies."""
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        stop = start + chunk
        out[start:stop] = np.einsum("pd,pd->p", x[rows[start:stop]], x[cols[start:stop]], dtype=np.float64)
    return out


def k_reciprocal_encoding(
    features,
    k1: int,
    k2: int,
    ranks: np.ndarray | None = None,
    search: str = "exact",
    unique: tuple[np.ndarray, np.ndarray] | None = None,
) -> sp.csr_matrix:
    """The k-reciprocal encoding after local query expansion, V' (N x N CSR, rows sum to 1).

    ``features``: N x d, L2-normalised. ``ranks``: optional precomputed kNN lists
    (N x >= max(k1 + 1, k2), as from :func:`nearest_neighbours`); ``search`` and
    ``unique`` (the grouping of bit-identical rows, if the caller has it): the kNN search
    (:func:`nearest_neighbours`) used when ``ranks`` is None.
    """
    x = _as_float32(features)
    n = x.shape[0]
    width = max(k1 + 1, k2)  # N(i, k1) is k1 + 1 rows; the query expansion averages k2
    if ranks is None:
        ranks = nearest_neighbours(x, width, search, unique=unique)
    if ranks.shape[0] != n or ranks.shape[1] < min(width, n):
        raise ValueError(f"ranks must be {n} x >= {min(width, n)}, got {ranks.shape}")
    half = int(np.around(k1 / 2))

    forward = _knn_graph(ranks, k1)
    reciprocal = forward.multiply(forward.T).tocsr()  # R(i, k1)
    forward_half = _knn_graph(ranks, half)
    reciprocal_half = forward_half.multiply(forward_half.T).tocsr()  # R(c, k1 / 2)

    # |R(c, k1/2) & R(i, k1)| for c in R(i, k1): entry (i, c) of R @ Rh^T on R's pattern.
    shared = reciprocal.multiply(reciprocal @ reciprocal_half.T).tocsr()
    sizes_half = np.asarray(reciprocal_half.sum(axis=1)).ravel()
    shared = shared.tocoo()
    accepted = shared.data > (2.0 / 3.0) * sizes_half[shared.col]
    accept = _indicator(shared.row[accepted], shared.col[accepted], n)

    expanded = (reciprocal + accept @ reciprocal_half).tocoo()  # R*(i), weights ignored
    rows, cols = expanded.row, expanded.col
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]

    # V[i, j] = softmax over R*(i) of -(2 - 2 s_ij), i.e. of 2 s_ij (constant shifts cancel).
    logits = 2.0 * _row_dot_products(x, rows, cols)
    row_max = np.full(n, -np.inf)
    np.maximum.at(row_max, rows, logits)
    weights = np.exp(logits - row_max[rows])
    weights /= np.bincount(rows, weights=weights, minlength=n)[rows]
    encoding = sp.csr_matrix((weights, (rows, cols)), shape=(n, n))

    if k2 > 1:
        k2 = min(k2, ranks.shape[1])
        expansion = sp.csr_matrix(
            (np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2), ranks[:, :k2].ravel())), shape=(n, n)
        )
        encoding = (expansion @ encoding).tocsr()
    encoding.sort_indices()
    return encoding


def _overlap_block(
    encoding: sp.csr_matrix, by_column: sp.csc_matrix, column_position: np.ndarray, start: int, stop: int, m_min: float
):
    """Pairs (i, k), i in [start, stop) and k > i, whose overlap m[i, k] = sum_j min(V'[i, j],
    V'[k, j]) is positive and at least ``m_min``: (rows, cols, m) arrays.

    Every stored V'[i, j] is paired with the stored V'[k, j], k > i, of the same column j
    (the entries after it in the column-sorted copy ``by_column``; ``column_position``
    maps each stored entry of ``encoding`` to its place there). The products are summed per
    (i, k) by ``np.bincount`` into a dense (stop - start) x (N - start) block (no sort), in
    the order of i's columns - the order in which m[k, i] would be summed from k's side,
    so computing each pair once loses nothing. A block is sized to hold a few million cells.
    """
    n = encoding.shape[1]
    width = n - start
    lo, hi = encoding.indptr[start], encoding.indptr[stop]
    cols = encoding.indices[lo:hi]
    local_row = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(encoding.indptr[start : stop + 1]))
    first_partner = column_position[lo:hi] + 1
    counts = by_column.indptr[cols + 1] - first_partner
    total = int(counts.sum())
    offsets = np.repeat(first_partner - (np.cumsum(counts) - counts), counts) + np.arange(total)
    partner = by_column.indices[offsets]
    mins = np.minimum(np.repeat(encoding.data[lo:hi], counts), by_column.data[offsets])
    cell = np.repeat(local_row * width - start, counts) + partner
    sums = np.bincount(cell, weights=mins, minlength=(stop - start) * width)
    kept = np.flatnonzero(sums >= m_min - 1e-12) if m_min > 1e-12 else np.flatnonzero(sums > 0)
    return kept // width + start, kept % width + start, sums[kept]


def k_reciprocal_jaccard_sparse(
    features,
    k1: int = 30,
    k2: int = 6,
    max_distance: float = 1.0,
    ranks: np.ndarray | None = None,
    search: str = "exact",
    unique: tuple[np.ndarray, np.ndarray] | None = None,
) -> sp.csr_matrix:
    """k-reciprocal Jaccard distances of N L2-normalised features, as a sparse graph.

    Args:
        features: N x d (numpy or torch), L2-normalised.
        k1, k2: neighbourhood size of the k-reciprocal sets and of the query expansion.
        max_distance: pairs farther than this are not stored (1.0 keeps every pair whose
            distance is below 1; pass DBSCAN's eps to keep only what clustering needs).
        ranks: optional precomputed kNN lists (:func:`nearest_neighbours` with
            k >= max(k1 + 1, k2)); computed when None.
        search: kNN search when ``ranks`` is None: ``"exact"`` or ``"bf16"``
            (see :func:`nearest_neighbours`).
        unique: the grouping of the bit-identical rows of ``features`` as
            :func:`_unique_rows` returns it, when the caller has it (the kNN search
            groups them otherwise).

    Returns:
        N x N symmetric CSR float64 matrix; entry (i, k), i != k, is the Jaccard distance
        for every pair with distance < 1 and <= ``max_distance``. A missing entry means the
        pair is farther (distance 1 when nothing is pruned). The diagonal (distance 0) is
        not stored. Stored distances may be exactly 0 (explicit zeros: duplicate items).
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    encoding = k_reciprocal_encoding(features, k1, k2, ranks, search, unique)
    n = encoding.shape[0]
    by_column = encoding.tocsc()  # rows ascending within every column
    by_column.sort_indices()
    # where every stored entry of the CSR encoding sits in by_column (stable: rows ascending)
    column_position = np.empty(encoding.nnz, dtype=np.int64)
    column_position[np.argsort(encoding.indices, kind="stable")] = np.arange(encoding.nnz)
    # products of row i: for each of its entries (i, j), the entries (k, j) with k > i
    later = by_column.indptr[encoding.indices + 1] - column_position - 1
    products_per_row = np.bincount(np.repeat(np.arange(n), np.diff(encoding.indptr)), weights=later, minlength=n)
    cumulative = np.concatenate([[0.0], np.cumsum(products_per_row, dtype=np.float64)])

    # m >= m_min  <=>  1 - m / (2 - m) <= max_distance
    m_min = 2.0 * (1.0 - max_distance) / (2.0 - max_distance)
    pieces = []
    start = 0
    while start < n:
        limit = cumulative[start] + _PRODUCTS_PER_BLOCK
        stop = max(start + 1, int(np.searchsorted(cumulative, limit, side="right")) - 1)
        stop = min(stop, n, start + max(1, _CELLS_PER_BLOCK // (n - start)))
        pieces.append(_overlap_block(encoding, by_column, column_position, start, stop, m_min))
        start = stop
    rows = np.concatenate([p[0] for p in pieces])
    cols = np.concatenate([p[1] for p in pieces])
    overlaps = np.concatenate([p[2] for p in pieces])

    # each pair was summed once (i < k); m is symmetric, so both (i, k) and (k, i) get it
    overlap = sp.csr_matrix(
        (np.concatenate([overlaps, overlaps]), (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
        shape=(n, n),
    )
    overlap.sort_indices()
    m = np.minimum(overlap.data, 1.0)
    distances = np.maximum(1.0 - m / (2.0 - m), 0.0)
    graph = sp.csr_matrix((distances, overlap.indices.copy(), overlap.indptr.copy()), shape=(n, n))
    return graph


def dbscan_sparse(distance_graph: sp.spmatrix, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """DBSCAN on a sparse precomputed distance graph: N int64 labels, :data:`NOISE` = -1.

    Neighbours of i are the stored entries (i, k), k != i, with distance <= ``eps``
    (explicit zeros count); missing entries are never neighbours. A point is core when
    it has at least ``min_samples`` neighbours counting itself. Clusters are the connected
    components of core points; a border point joins the adjacent cluster discovered first.
    Clusters are numbered in order of their lowest core index, which gives the same labels
    as scikit-learn's ``DBSCAN(metric="precomputed")`` on the same graph. The graph
    should be symmetric (as :func:`k_reciprocal_jaccard_sparse` returns it).
    """
    graph = sp.csr_matrix(distance_graph)
    n = graph.shape[0]
    if graph.shape != (n, n):
        raise ValueError(f"distance graph must be square, got {graph.shape}")
    coo = graph.tocoo()
    close = (coo.data <= eps) & (coo.row != coo.col)
    rows, cols = coo.row[close], coo.col[close]
    core = (np.bincount(rows, minlength=n) + 1) >= min_samples

    labels = np.full(n, NOISE, dtype=np.int64)
    if not core.any():
        return labels
    core_edges = core[rows] & core[cols]
    adjacency = sp.csr_matrix((np.ones(int(core_edges.sum())), (rows[core_edges], cols[core_edges])), shape=(n, n))
    _, component = connected_components(adjacency, directed=True, connection="weak")

    core_ids = np.flatnonzero(core)
    # number components by their lowest core index (the order a sequential scan finds them)
    first_core = np.full(n, n, dtype=np.int64)
    np.minimum.at(first_core, component[core_ids], core_ids)
    used = np.unique(component[core_ids])
    rank = np.empty(n, dtype=np.int64)
    rank[used[np.argsort(first_core[used], kind="stable")]] = np.arange(len(used))
    labels[core_ids] = rank[component[core_ids]]

    # border points: the earliest-numbered cluster among their core neighbours
    border = ~core[rows] & core[cols]
    border_label = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(border_label, rows[border], labels[cols[border]])
    has_core_neighbour = border_label < np.iinfo(np.int64).max
    labels[has_core_neighbour] = border_label[has_core_neighbour]
    return labels
