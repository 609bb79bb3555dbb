"""The grouping of bit-identical rows (an image's features repeated once per caption) handed
to the k-reciprocal Jaccard distance: the kNN search reuses it instead of grouping again, the
distances are those it computes without it, and a grouping of other rows is refused."""

from __future__ import annotations

import numpy as np
import pytest

from wsreid_baselines.clustering import _unique_rows, k_reciprocal_jaccard_sparse, nearest_neighbours


def _caption_rows(seed: int = 0) -> np.ndarray:
    """120 images around 15 centres, each repeated 1 or 2 times (its captions), shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(15, 16))
    images = centres[rng.integers(0, 15, 120)] + 0.6 * rng.normal(size=(120, 16))
    images = (images / np.linalg.norm(images, axis=1, keepdims=True)).astype(np.float32)
    rows = np.repeat(np.arange(120), rng.integers(1, 3, 120))
    return images[rng.permutation(rows)]


@pytest.mark.parametrize("search", ["exact", "bf16"])
@pytest.mark.parametrize("k1, k2", [(30, 6), (4, 9)])
def test_given_grouping_is_used_and_gives_the_same_distances(monkeypatch, search, k1, k2):
    x = _caption_rows()
    grouping = _unique_rows(x)
    without = k_reciprocal_jaccard_sparse(x, k1, k2, max_distance=0.6, search=search)
    import wsreid_baselines.clustering as clustering

    monkeypatch.setattr(clustering, "_unique_rows", lambda *a: pytest.fail("grouped again"))
    given = k_reciprocal_jaccard_sparse(x, k1, k2, max_distance=0.6, search=search, unique=grouping)
    assert given.nnz > len(x)
    assert np.array_equal(given.indptr, without.indptr) and np.array_equal(given.indices, without.indices)
    assert np.array_equal(given.data, without.data)


def test_grouping_of_other_rows_is_refused():
    x = _caption_rows()
    with pytest.raises(ValueError, match=rf"^unique groups {len(x) - 1} rows, the features have {len(x)}$"):
        nearest_neighbours(x, 5, unique=_unique_rows(x[1:]))
