"""Scaling of the cluster pseudo-label pipeline (k-reciprocal Jaccard + DBSCAN, docs/method.md).

Times and peak memory of the sparse pipeline of ``wsreid_baselines.clustering`` on
synthetic clustered features, beside a dense pipeline written the way the public code of
the cluster-contrast family does it (dense N x N distances and full sort, dense encoding V,
dense N x N Jaccard via an inverted index; its eps-graph is then clustered by the same
``dbscan_sparse``) for the small sizes only.

Every measurement runs in a fresh child process so that its peak resident memory
(``ru_maxrss``, minus the level right after loading the features) is its own. Prints
medians over ``--repeats`` runs and sparse/dense ratios, plus the agreement of the two
partitions and their pair precision/recall against the synthetic identities.

    python benchmarks/cluster_scaling.py                       # 2k, 5k, 10k, 40k
    python benchmarks/cluster_scaling.py --sizes 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K1, K2, EPS, MIN_SAMPLES = 30, 6, 0.6, 4


def synthetic_features(n: int, d: int = 512, images_per_id: int = 4, captions_per_image: int = 2, seed: int = 0):
    """N x d L2-normalised float32 rows shaped like caption-level training pairs.

    Identities come in groups of 5 that share a component (look-alikes); each identity has
    ``images_per_id`` noisy images, and each image appears ``captions_per_image`` times
    (one row per caption, identical image features). Returns (features, identity per row).
    """
    rng = np.random.default_rng(seed)
    ids = max(1, n // (images_per_id * captions_per_image))
    groups = rng.standard_normal((ids // 5 + 1, d), dtype=np.float32) / np.sqrt(d)
    centres = groups[np.arange(ids) // 5] + 2.0 * rng.standard_normal((ids, d), dtype=np.float32) / np.sqrt(d)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    person = np.repeat(np.arange(ids), images_per_id)
    images = centres[person] + 2.0 * rng.standard_normal((len(person), d), dtype=np.float32) / np.sqrt(d)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    rows = np.repeat(images, captions_per_image, axis=0)[:n]
    return np.ascontiguousarray(rows), np.repeat(person, captions_per_image)[:n]


# --------------------------------------------------------------------------- dense pipeline


def dense_pipeline(x: np.ndarray, k1: int, k2: int, eps: float, min_samples: int) -> dict:
    """Dense k-reciprocal Jaccard (N x N float32 matrices) and DBSCAN; returns labels, times."""
    from scipy.sparse import csr_matrix

    from wsreid_baselines.clustering import dbscan_sparse

    started = time.perf_counter()
    n = len(x)
    dist = 2.0 - 2.0 * (x @ x.T)
    rank = np.argsort(dist, axis=1, kind="stable")[:, : max(k1 + 1, k2)]
    t_rank = time.perf_counter()

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return forward[(rank[forward, : k + 1] == i).any(axis=1)]

    v = np.zeros((n, n), dtype=np.float32)
    half = int(np.around(k1 / 2))
    for i in range(n):
        r = reciprocal(i, k1)
        members = [r]
        for c in r:
            rc = reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3.0 * len(rc):
                members.append(rc)
        members = np.unique(np.concatenate(members))
        w = np.exp(-dist[i, members].astype(np.float64))
        v[i, members] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    inverted = [np.flatnonzero(v[:, j]) for j in range(n)]
    jaccard = np.ones((n, n), dtype=np.float32)
    for i in range(n):
        overlap = np.zeros(n, dtype=np.float64)
        for j in np.flatnonzero(v[i]):
            rows = inverted[j]
            overlap[rows] += np.minimum(v[i, j], v[rows, j])
        jaccard[i] = 1.0 - overlap / (2.0 - overlap)
    t_jaccard = time.perf_counter()
    close = jaccard <= eps
    np.fill_diagonal(close, False)
    rows, cols = np.nonzero(close)
    labels = dbscan_sparse(csr_matrix((jaccard[rows, cols], (rows, cols)), shape=(n, n)), eps, min_samples)
    done = time.perf_counter()
    return {
        "labels": labels,
        "seconds": done - started,
        "stages": {"rank": t_rank - started, "jaccard": t_jaccard - t_rank, "dbscan": done - t_jaccard},
    }


def sparse_pipeline(x: np.ndarray, k1: int, k2: int, eps: float, min_samples: int) -> dict:
    from wsreid_baselines.clustering import dbscan_sparse, k_reciprocal_jaccard_sparse, nearest_neighbours

    started = time.perf_counter()
    ranks = nearest_neighbours(x, max(k1 + 1, k2))
    t_rank = time.perf_counter()
    graph = k_reciprocal_jaccard_sparse(x, k1, k2, max_distance=eps, ranks=ranks)
    t_jaccard = time.perf_counter()
    labels = dbscan_sparse(graph, eps, min_samples)
    done = time.perf_counter()
    return {
        "labels": labels,
        "seconds": done - started,
        "stages": {"rank": t_rank - started, "jaccard": t_jaccard - t_rank, "dbscan": done - t_jaccard},
        "graph_entries_per_row": graph.nnz / len(x),
    }


# --------------------------------------------------------------------------- processes


def child(method: str, features_path: str, labels_path: str) -> None:
    import faiss  # noqa: F401  (imported before the baseline memory reading)
    import scipy.sparse  # noqa: F401

    import wsreid_baselines.clustering  # noqa: F401

    x = np.load(features_path)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = (sparse_pipeline if method == "sparse" else dense_pipeline)(x, K1, K2, EPS, MIN_SAMPLES)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(labels_path, run.pop("labels"))
    run["peak_mib"] = (peak_kb - baseline_kb) / 1024.0
    print(json.dumps(run))


def measure(method: str, features_path: Path, labels_path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(features_path), str(labels_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def partition_stats(labels: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Pair precision/recall of DBSCAN ``labels`` (outliers alone) against ``reference``."""
    from wsreid_baselines.pseudo_labels import pair_precision_recall, pseudo_labels_from_clusters

    return pair_precision_recall(pseudo_labels_from_clusters(labels), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 40000])
    parser.add_argument("--dense-max", type=int, default=5000, help="largest N run with the dense pipeline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "FEATURES", "LABELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from wsreid_baselines.pseudo_labels import pseudo_labels_from_clusters

    print(f"cpus={os.cpu_count()} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} d=512 "
          f"k1={K1} k2={K2} eps={EPS} min_samples={MIN_SAMPLES} repeats={args.repeats} (medians)")
    header = f"{'N':>6} {'method':>6} {'seconds':>8} {'knn':>7} {'jaccard':>8} {'dbscan':>7} {'peak MiB':>9} {'P':>5} {'R':>5} {'clusters':>8}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            x, person = synthetic_features(n)
            features_path = Path(tmp) / f"x{n}.npy"
            np.save(features_path, x)
            results = {}
            for method in ("sparse", "dense") if n <= args.dense_max else ("sparse",):
                labels_path = Path(tmp) / f"{method}{n}.npy"
                runs = [measure(method, features_path, labels_path) for _ in range(args.repeats)]
                labels = np.load(labels_path)
                med = {key: statistics.median(r[key] for r in runs) for key in ("seconds", "peak_mib")}
                stages = {s: statistics.median(r["stages"][s] for r in runs) for s in runs[0]["stages"]}
                precision, recall = partition_stats(labels, person)
                results[method] = (med, labels)
                print(f"{n:>6} {method:>6} {med['seconds']:>8.2f} {stages['rank']:>7.2f} {stages['jaccard']:>8.2f} "
                      f"{stages['dbscan']:>7.3f} {med['peak_mib']:>9.1f} {precision:>5.3f} {recall:>5.3f} "
                      f"{int(labels.max()) + 1:>8}", flush=True)
            if "dense" in results:
                (s, sl), (d, dl) = results["sparse"], results["dense"]
                agree = partition_stats(sl, pseudo_labels_from_clusters(dl))
                print(f"{n:>6}  dense/sparse: time x{d['seconds'] / s['seconds']:.1f}, "
                      f"peak memory x{d['peak_mib'] / max(s['peak_mib'], 1e-9):.1f}; "
                      f"identical labels: {bool(np.array_equal(sl, dl))}, "
                      f"pair precision/recall of sparse vs dense {agree[0]:.4f}/{agree[1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
