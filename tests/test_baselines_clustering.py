"""Sparse k-reciprocal Jaccard distance and sparse DBSCAN against dense textbook references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from wsreid_baselines.clustering import dbscan_sparse, k_reciprocal_jaccard_sparse, nearest_neighbours

# --------------------------------------------------------------------------- references


def dense_k_reciprocal_jaccard(x: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Textbook k-reciprocal encoding + Jaccard (Zhong et al. 2017), dense N x N, loops."""
    x = x.astype(np.float64)
    n = len(x)
    dist = 2.0 - 2.0 * x @ x.T
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]])

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        members = list(r)
        for c in r:
            rc = reciprocal(c, int(np.around(k1 / 2)))
            if len(np.intersect1d(rc, r)) > 2.0 / 3.0 * len(rc):
                members.extend(rc)
        members = np.unique(members)
        w = np.exp(-dist[i, members])
        v[i, members] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((n, n))
    for i in range(n):
        jaccard[i] = 1.0 - np.minimum(v[i], v).sum(axis=1) / np.maximum(v[i], v).sum(axis=1)
    return jaccard


def dense_dbscan(dist: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """Plain sequential DBSCAN on a dense distance matrix (np.inf = not a neighbour)."""
    n = len(dist)
    neighbours = [np.flatnonzero(dist[i] <= eps) for i in range(n)]
    neighbours = [np.union1d(nb, [i]) for i, nb in enumerate(neighbours)]
    core = np.array([len(nb) >= min_samples for nb in neighbours])
    labels = np.full(n, -1)
    cluster = 0
    for i in range(n):
        if labels[i] != -1 or not core[i]:
            continue
        labels[i] = cluster
        stack = [i]
        while stack:
            p = stack.pop()
            for q in neighbours[p]:
                if labels[q] == -1:
                    labels[q] = cluster
                    if core[q]:
                        stack.append(q)
        cluster += 1
    return labels


def sparse_to_dense(graph: sp.spmatrix, missing: float) -> np.ndarray:
    coo = graph.tocoo()
    dense = np.full(graph.shape, missing)
    dense[coo.row, coo.col] = coo.data
    np.fill_diagonal(dense, 0.0)
    return dense


def clustered_features(n: int, clusters: int, d: int = 32, noise: float = 0.6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling (noise -1 must match noise)."""
    if not np.array_equal(a == -1, b == -1):
        return False
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# --------------------------------------------------------------------------- Jaccard


@pytest.mark.parametrize("n,k1,k2", [(200, 30, 6), (150, 5, 3), (120, 8, 1)])
def test_jaccard_matches_dense_reference(n, k1, k2):
    x = clustered_features(n, clusters=n // 8, seed=n)
    sparse = k_reciprocal_jaccard_sparse(x, k1, k2)
    reference = dense_k_reciprocal_jaccard(x, k1, k2)
    # every pair closer than 1 is stored, and stored values equal the reference
    dense = sparse_to_dense(sparse, missing=1.0)
    np.testing.assert_allclose(dense, reference, atol=1e-9)
    assert sparse.nnz == int(((reference < 1.0 - 1e-12) & ~np.eye(n, dtype=bool)).sum())
    assert (sparse != sparse.T).nnz == 0
    assert sparse.diagonal().sum() == 0.0 and sparse.tocoo().row.tolist() != []


def test_max_distance_keeps_exactly_the_close_pairs():
    x = clustered_features(180, clusters=20, seed=3)
    full = k_reciprocal_jaccard_sparse(x, 30, 6)
    pruned = k_reciprocal_jaccard_sparse(x, 30, 6, max_distance=0.6)
    f, p = full.tocoo(), pruned.tocoo()
    keep = f.data <= 0.6
    assert set(zip(p.row.tolist(), p.col.tolist())) == set(zip(f.row[keep].tolist(), f.col[keep].tolist()))
    np.testing.assert_array_equal(pruned.toarray(), np.where(full.toarray() <= 0.6, full.toarray(), 0.0))


def test_duplicates_are_at_distance_zero_and_stored():
    x = clustered_features(60, clusters=6, seed=5)
    x = np.concatenate([x, x[:10]])  # rows 60..69 duplicate rows 0..9
    graph = k_reciprocal_jaccard_sparse(x, 10, 3)
    for i in range(10):
        assert 60 + i in graph.getrow(i).indices  # stored even if it rounds to exactly 0
        assert graph[i, 60 + i] == pytest.approx(0.0, abs=1e-12)
    labels = dbscan_sparse(graph, eps=1e-9, min_samples=2)
    assert all(labels[i] == labels[60 + i] != -1 for i in range(10))


def test_knn_ties_come_out_in_index_order():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    ranks = nearest_neighbours(x, 5)
    assert ranks[4].tolist() == [0, 2, 4, 1, 3]
    assert ranks[3].tolist() == [1, 3, 0, 2, 4]


@pytest.mark.parametrize("search", ["exact", "bf16"])
def test_knn_over_repeated_rows_matches_brute_force(search):
    # caption-level rows: every image row appears 1-3 times, bit-identical, in shuffled order
    base = clustered_features(90, clusters=12, seed=5)
    repeat = np.random.default_rng(6).integers(1, 4, size=90)
    x = np.repeat(base, repeat, axis=0)[np.random.default_rng(7).permutation(int(repeat.sum()))]
    k = 9
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    want = np.lexsort((np.broadcast_to(np.arange(len(x)), sims.shape), -np.round(sims, 9)), axis=1)[:, :k]
    got = nearest_neighbours(x, k, search=search)
    assert got.shape == (len(x), k) and np.array_equal(got, want)
    with pytest.raises(ValueError, match="kNN search"):
        nearest_neighbours(x, k, search="hnsw")


def test_jaccard_hand_computed_two_pairs():
    # two tight pairs far apart: with k1 = 1, k2 = 1 R*(i) = {i, partner}; V = softmax(2 s)
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([np.cos(0.1), np.sin(0.1), 0.0])
    c = np.array([0.0, 0.0, 1.0])
    d = np.array([0.0, np.sin(0.2), np.cos(0.2)])
    x = np.stack([a, b, c, d]).astype(np.float32)
    graph = k_reciprocal_jaccard_sparse(x, 1, 1)
    s = np.cos(0.1)
    w_self, w_other = 1.0 / (1.0 + np.exp(2 * s - 2)), np.exp(2 * s - 2) / (1.0 + np.exp(2 * s - 2))
    m = 2 * w_other  # V[a] = (w_self, w_other), V[b] = (w_other, w_self)
    assert graph[0, 1] == pytest.approx(1 - m / (2 - m), abs=1e-6)
    assert graph[0, 2] == 0.0 and 2 not in graph.getrow(0).indices  # no overlap: not stored
    assert w_self > w_other


# --------------------------------------------------------------------------- DBSCAN


def test_dbscan_hand_example():
    # chain 0-1-2-3 (distance 0.5 between neighbours), 4 attached to 3 only, 5 isolated
    n = 6
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3)]
    rows = [i for i, j in edges] + [j for i, j in edges]
    cols = [j for i, j in edges] + [i for i, j in edges]
    graph = sp.csr_matrix((np.full(len(rows), 0.5), (rows, cols)), shape=(n, n))
    # degrees incl. self: 0:3 1:4 2:4 3:4 4:2 5:1 -> cores 1, 2, 3 with min_samples 4
    labels = dbscan_sparse(graph, eps=0.6, min_samples=4)
    assert labels.tolist() == [0, 0, 0, 0, 0, -1]
    assert dbscan_sparse(graph, eps=0.4, min_samples=2).tolist() == [-1] * 6
    assert dbscan_sparse(graph, eps=0.6, min_samples=1).tolist() == [0, 0, 0, 0, 0, 1]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    density=st.floats(0.0, 0.6),
    eps=st.floats(0.05, 1.0),
    min_samples=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_dbscan_matches_sequential_reference(n, density, eps, min_samples, seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.uniform(0.0, 1.0, size=(n, n)), 2)  # rounding makes ties at eps likely
    stored = rng.uniform(size=(n, n)) < density
    values, stored = np.triu(values, 1), np.triu(stored, 1)
    values, stored = values + values.T, stored | stored.T
    rows, cols = np.nonzero(stored)
    graph = sp.csr_matrix((values[rows, cols], (rows, cols)), shape=(n, n))  # zeros stay explicit
    dense = np.where(stored, values, np.inf)
    np.fill_diagonal(dense, 0.0)
    assert dbscan_sparse(graph, eps, min_samples).tolist() == dense_dbscan(dense, eps, min_samples).tolist()


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("seed", [0, 1])
def test_pipeline_matches_dense_pipeline(seed):
    x = clustered_features(240, clusters=25, d=48, noise=0.7, seed=seed)
    labels = dbscan_sparse(k_reciprocal_jaccard_sparse(x, 30, 6, max_distance=0.6), 0.6, 4)
    reference = dense_dbscan(dense_k_reciprocal_jaccard(x, 30, 6), 0.6, 4)
    assert np.array_equal(labels, reference)  # same numbering, not only the same partition
    assert same_partition(labels, reference)
    assert len(set(labels.tolist()) - {-1}) >= 10  # a non-trivial clustering was compared
