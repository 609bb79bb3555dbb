"""Performance at the paper's scale, measured side by side (docs/performance.md).

One entry point for five measurements; each prints medians of repeated runs and the
ratios between implementations timed in the same run:

* ``mining``: GSRC-FR neighbour mining (docs/method.md, GSRC-FR) over fp16 banks at 4k,
  68k (CUHK-PEDES) and 200k rows, B = 64, d = 512: the authors' algorithm (one similarity
  matrix, then per anchor a full argsort and a Python loop over ranks 2..k+1), the
  component's ``relate`` (mining over its ready scoring copy, weights, relation, enlarged
  batch), the same functions normalising the bank on every call (the former path), and the
  physical anchor: one fp32 matmul + top-k over an already normalised bank. The ratio to
  the anchor is also given paired: the two back to back per round, median and quartiles.
* ``cluster``: the cluster pseudo-label pipeline at 40k features (exact and approximate
  kNN), time, peak memory and pair precision/recall against the synthetic identities.
* ``evaluation``: ``wsreid.evaluation`` vs the field's usual code (full similarity matrix,
  full argsort) at ICFG-PEDES size (19,848 x 19,848) and, by flag, 100k x 100k.
* ``data``: images/s per worker (per CPU second of its thread) of the recipes' training
  loader item on JPEGs vs PIL decode + resize alone, and the workers a 114 ms DGIA step needs.
* ``overhead``: the engine's DGIA step vs a hand-written loop over the same model, batches
  and losses (tiny CLIP, 2 threads).

    python benchmarks/performance.py                      # everything, fits 2 cores in < 10 min
    python benchmarks/performance.py --only mining cluster
    python benchmarks/performance.py --large              # + 100k x 100k evaluation
    python benchmarks/performance.py --device cuda --only mining evaluation   # GPU rows

The header says what the figures were measured under: the CPU's model, whether torch sees
AMX tiles and AVX512_BF16 (they decide which mining dtype GSRC-FR's ``scoring_dtype: auto``
takes), torch's threads, the OpenMP wait policy and the load average.
Memory peaks are measured in a fresh child process per measurement (``ru_maxrss``).
OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a machine
shared with other jobs, spinning worker threads otherwise make every small tensor
operation wait for a time slice (milliseconds each), which would measure the load, not
the code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP pool

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TABLE: list[tuple[str, str, str, str]] = []  # (measurement, size, ours, reference / ratio)


def row(measurement: str, size: str, ours: str, reference: str) -> None:
    TABLE.append((measurement, size, ours, reference))
    print(f"  | {measurement} | {size} | {ours} | {reference} |", flush=True)


def _interleaved(fns: dict, repeats: int, sync=None, slow: dict | None = None) -> dict:
    """name -> list of (wall seconds, CPU seconds of this thread) per run of each function,
    after one warm-up run each; runs interleaved in rounds so that load from elsewhere
    falls on all of them alike, each round in a new random order (seeded) so that no
    function always follows the same one - what runs just before a call (a cache-sweeping
    algorithm, a short one) moves a few-millisecond call by up to a fifth. ``slow``:
    name -> fewer repeats for that one."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict = {name: [] for name in fns}
    order = random.Random(0)
    for rep in range(repeats):
        names = list(fns)
        order.shuffle(names)
        for name in names:
            fn = fns[name]
            if slow and rep >= slow.get(name, repeats):
                continue
            if sync:
                sync()
            t, c = time.perf_counter(), time.thread_time()
            fn()
            if sync:
                sync()
            times[name].append((time.perf_counter() - t, time.thread_time() - c))
    return times


def side_by_side(fns: dict, repeats: int, sync=None, slow: dict | None = None) -> dict:
    """Median wall seconds of each function, runs interleaved (:func:`_interleaved`)."""
    return {name: statistics.median(w for w, _ in v) for name, v in _interleaved(fns, repeats, sync, slow).items()}


def paired_rounds(fn, reference, rounds: int, warmup: int = 1, sync=None) -> tuple[list[float], list[float]]:
    """Wall seconds of ``fn(i)`` and ``reference(i)`` in each round ``i``, the two back to back,
    their order alternating from round to round; the first ``warmup`` rounds are run and
    not kept. Returns the kept times of ``fn`` and of ``reference``, round by round."""
    times: dict[str, list[float]] = {"fn": [], "ref": []}
    for i in range(warmup + rounds):
        for name, f in (("fn", fn), ("ref", reference)) if i % 2 == 0 else (("ref", reference), ("fn", fn)):
            if sync:
                sync()
            t = time.perf_counter()
            f(i)
            if sync:
                sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return times["fn"], times["ref"]


def ratio_quartiles(fn_times: list[float], ref_times: list[float]) -> tuple[float, float, float]:
    """Quartiles (q1, median, q3) of the per-round ratio of two :func:`paired_rounds` series:
    the two calls of a round are adjacent in time, so the machine's slow drifts cancel."""
    q1, med, q3 = statistics.quantiles([a / b for a, b in zip(fn_times, ref_times)], n=4)
    return q1, med, q3


def run_child(args: list[str]) -> dict:
    """Run ``performance.py --child ...`` in a fresh process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; unlike ``ru_maxrss`` it is not inherited
    from the parent across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ============================================================================ 1. mining


def authors_mining(image, text, bank_image, bank_text, k=3, threshold=0.7, gamma=1.0):
    """The authors' algorithm: one B x N similarity matrix over the (up-cast, normalised)
    bank, then per anchor a full argsort and a Python loop over ranks 2..k+1; then the
    weights (Eq. 14), the enlarged batch and its group relation, row by row."""
    img = F.normalize(image.float(), dim=1)
    txt = F.normalize(text.float(), dim=1)
    bank = F.normalize(bank_image.float(), dim=1)
    sim = img @ bank.t()
    b = img.shape[0]
    extra_rows, extra_group, extra_weight = [], [], []
    for i in range(b):
        order = torch.argsort(sim[i], descending=True)
        rows, sims = [], []
        for rank in range(1, k + 1):
            j = int(order[rank])
            s = float(sim[i, j])
            if s > threshold:
                rows.append(j)
                sims.append(s)
        if rows:
            w = 1.0 - torch.softmax(gamma * torch.tensor([1.0] + sims), dim=0)[1:]
            extra_rows += rows
            extra_group += [i] * len(rows)
            extra_weight += w.tolist()
    group = torch.tensor(list(range(b)) + extra_group)
    relation = (group[:, None] == group[None, :]).float()
    for n, (g, w) in enumerate(zip(extra_group, extra_weight)):
        relation[g, b + n] = w
    rows = torch.tensor(extra_rows, dtype=torch.long)
    big_image = torch.cat([img, F.normalize(bank_image[rows].float(), dim=1)])
    big_text = torch.cat([txt, F.normalize(bank_text[rows].float(), dim=1)])
    return big_image, big_text, relation


def synthetic_banks(n: int, d: int, device, seed: int = 0):
    """fp16 banks of raw-scale rows in tight groups of 4 (so neighbours pass th_g = 0.7)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n // 4 + 1, d, generator=g)
    image = centres[torch.arange(n) // 4] + 0.5 * torch.randn(n, d, generator=g)
    text = image + 0.5 * torch.randn(n, d, generator=g)
    return image.half().to(device), text.half().to(device)


def bench_mining(args) -> None:
    from wsreid.api import Batch, BuildContext, StepContext, ViewFeatures
    from wsreid_dgia import GlobalRelationConstruction
    from wsreid_dgia.functional import enlarged_features, group_relation, mine_neighbours, neighbour_weights

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    b, d = 64, 512
    print(f"\n== GSRC-FR mining: B={b}, d={d}, fp16 banks, k=3, th_g=0.7, device={device}, scoring copy {args.scoring_dtype}")
    for n in args.mining_rows:
        bank_image, bank_text = synthetic_banks(n, d, device)
        g = torch.Generator().manual_seed(1)
        index = torch.randperm(n, generator=g)[:b].to(device)
        image = F.normalize(bank_image[index].float() + 0.3 * torch.randn(b, d, generator=g).to(device), dim=1)
        text = F.normalize(bank_text[index].float() + 0.3 * torch.randn(b, d, generator=g).to(device), dim=1)

        comp = GlobalRelationConstruction(
            GlobalRelationConstruction.Params(scoring_dtype=args.scoring_dtype), BuildContext(num_train=n, device=device)
        )
        comp.load_state_tensors({
            "image_memory": bank_image, "text_memory": bank_text,
            "written": torch.ones(n, dtype=torch.bool), "person_ids": torch.arange(n) // 4,
        })  # fmt: skip
        empty = torch.zeros(0)
        batch = Batch(images=empty, input_ids=empty, attention_mask=empty, index=index, image_id=index, person_id=index // 4)
        feats = {"base": ViewFeatures(image, text)}
        step = StepContext(epoch=2, step=0, num_epochs=3, dist=None)
        scoring = str(comp._scoring.dtype).replace("torch.", "")  # what scoring_dtype resolved to

        def ours():
            return comp.relate(feats, batch, step)

        def former():  # the same functions, normalising and up-casting the bank every call
            nb = mine_neighbours(image, text, bank_image, bank_text, usable=comp.written)
            w = neighbour_weights(nb.similarity, nb.valid)
            group_relation(nb.valid, w)
            return enlarged_features(image, text, bank_image, bank_text, nb)

        ready = F.normalize(bank_image.float(), dim=1)

        def anchor():  # physical limit: one fp32 matmul + top-k over a ready bank
            return torch.topk(image @ ready.t(), 4, dim=1)

        def authors():
            return authors_mining(image, text, bank_image, bank_text)

        ref_img, _, ref_rel = authors()
        rel = ours()
        same = rel.weights.shape == ref_rel.shape
        same = same and torch.allclose(rel.weights.cpu(), ref_rel.cpu(), atol=1e-5)
        same = same and torch.allclose(rel.image.cpu(), ref_img.cpu(), atol=1e-3)
        # a few-millisecond call is noisier than a 50 ms one: small banks get 5x the repeats
        reps = 5 * args.repeats if n <= 16_384 else args.repeats if n <= 100_000 else max(3, args.repeats // 2)
        t = side_by_side({"ours": ours, "anchor": anchor, "former": former, "authors": authors}, reps, sync,
                         slow={"authors": max(3, reps // 3)})
        # the target ratio, ours / anchor, also as the overhead is measured: the two calls of one
        # round back to back (their order alternating), the ratio per round, its median and quartiles.
        # In the four-way run above a call follows any of the other three (the authors' algorithm
        # sweeps the caches), which moves a few-millisecond call by up to a fifth.
        q1, med, q3 = ratio_quartiles(*paired_rounds(lambda i: ours(), lambda i: anchor(), max(reps, 15), sync=sync))
        print(f"  N={n:>7}: relate {t['ours'] * 1e3:8.2f} ms | matmul+top-k {t['anchor'] * 1e3:8.2f} ms | "
              f"former (re-normalising) {t['former'] * 1e3:8.2f} ms | authors {t['authors'] * 1e3:8.2f} ms | "
              f"relate / matmul+top-k paired: median {med:.2f} (quartiles {q1:.2f}-{q3:.2f}) | "
              f"neighbours {rel.image.shape[0] - b} | same relation as authors: {same} | scoring copy {scoring}", flush=True)
        size = f"N={n:,}, B=64, {scoring} scoring"
        row(f"GSRC-FR mining ({device.type})", size, f"{t['ours'] * 1e3:.1f} ms",
            f"matmul+top-k {t['anchor'] * 1e3:.1f} ms (x{t['ours'] / t['anchor']:.2f}; paired x{med:.2f}, quartiles "
            f"{q1:.2f}-{q3:.2f}); authors {t['authors'] * 1e3:.1f} ms ({t['authors'] / t['ours']:.1f}x slower); former "
            f"{t['former'] * 1e3:.1f} ms; same relation: {same}")
        del comp, bank_image, bank_text, ready


# ============================================================================ 2. cluster


def child_cluster(features_path: str, labels_path: str, search: str) -> None:
    """One run of the cluster pseudo-label pipeline (k-reciprocal Jaccard + DBSCAN)."""
    import faiss  # noqa: F401  (imported before the baseline memory reading)
    import scipy.sparse  # noqa: F401

    from wsreid_baselines.clustering import dbscan_sparse, k_reciprocal_jaccard_sparse, nearest_neighbours

    x = np.load(features_path)
    baseline = peak_rss_mib()
    t0 = time.perf_counter()
    ranks = nearest_neighbours(x, 31, search)
    t1 = time.perf_counter()
    graph = k_reciprocal_jaccard_sparse(x, 30, 6, max_distance=0.6, ranks=ranks)
    t2 = time.perf_counter()
    labels = dbscan_sparse(graph, 0.6, 4)
    t3 = time.perf_counter()
    np.save(labels_path, labels)
    peak = peak_rss_mib()
    print(json.dumps({"seconds": t3 - t0, "knn": t1 - t0, "jaccard": t2 - t1, "dbscan": t3 - t2, "peak_mib": peak,
                      "added_mib": peak - baseline}))


def ann_search(x: np.ndarray, k: int) -> None:
    """kNN of the distinct rows by faiss's approximate indexes (IVF, HNSW) beside the exact
    flat search and the bf16-candidate search: time and recall of the exact k neighbours."""
    import faiss

    from wsreid_baselines.clustering import _knn_blocks, _unique_rows

    faiss.omp_set_num_threads(torch.get_num_threads())
    u = np.ascontiguousarray(x[_unique_rows(x)[0]])
    d = u.shape[1]

    def ivf(nlist: int, nprobe: int):
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(u)
        index.add(u)
        index.nprobe = nprobe
        return index.search(u, k)[1]

    def hnsw(m: int, ef_search: int):
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.add(u)
        index.hnsw.efSearch = ef_search
        return index.search(u, k)[1]

    runs = {"exact (faiss flat)": lambda: _knn_blocks(u, k, "exact"), "bf16 candidates": lambda: _knn_blocks(u, k, "bf16"),
            "IVF nlist 128 nprobe 8": lambda: ivf(128, 8), "IVF nlist 128 nprobe 32": lambda: ivf(128, 32),
            "HNSW M 16 efSearch 64": lambda: hnsw(16, 64)}
    print(f"  approximate kNN of the {len(u)} distinct rows (k={k}, incl. build/train; recall of the exact neighbour sets):")
    exact = None
    for name, fn in runs.items():
        t = time.perf_counter()
        ids = fn()
        seconds = time.perf_counter() - t
        exact = ids if exact is None else exact
        recall = np.mean([len(set(a) & set(b)) for a, b in zip(ids.tolist(), exact.tolist())]) / k
        print(f"    {name:>24}: {seconds:6.2f} s, recall {100 * recall:6.2f} %", flush=True)


def bench_cluster(args) -> None:
    sys.path.insert(0, str(HERE))
    from cluster_scaling import synthetic_features

    from wsreid_baselines.pseudo_labels import pair_precision_recall, pseudo_labels_from_clusters

    n = args.cluster_rows
    print(f"\n== cluster pseudo-labels: N={n}, d=512, k1=30, k2=6, eps=0.6, min_samples=4, "
          f"{args.threads} threads (fresh process per run; peak = whole-process max RSS)")
    x, person = synthetic_features(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x)
        out, labels = {}, {}
        for search, reps in (("exact", args.cluster_exact_repeats), ("bf16", args.cluster_repeats)):
            runs = [run_child(["cluster", str(path), str(Path(tmp) / f"{search}.npy"), search]) for _ in range(reps)]
            out[search] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            labels[search] = pseudo_labels_from_clusters(np.load(Path(tmp) / f"{search}.npy"))
            m = out[search]
            p, r = pair_precision_recall(labels[search], person)
            m["P"], m["R"] = 100 * p, 100 * r
            print(f"  {search:>5} kNN: {m['seconds']:6.2f} s (kNN {m['knn']:.2f} s, Jaccard graph {m['jaccard']:.2f} s, "
                  f"DBSCAN {m['dbscan']:.2f} s), "
                  f"peak {m['peak_mib']:.0f} MiB (+{m['added_mib']:.0f} MiB for the pipeline), "
                  f"pair precision/recall vs identities {m['P']:.2f}/{m['R']:.2f} (median of {reps})", flush=True)
    if args.cluster_ann:
        ann_search(x, 31)
    ap, ar = pair_precision_recall(labels["bf16"], labels["exact"])
    e, b = out["exact"], out["bf16"]
    print(f"  agreement bf16 vs exact labels: pair precision {100 * ap:.2f}, recall {100 * ar:.2f}; "
          f"identical: {bool(np.array_equal(labels['bf16'], labels['exact']))}")
    row("cluster pseudo-labels, bf16 kNN (cpu)", f"N={n:,}", f"{b['seconds']:.1f} s, {b['peak_mib']:.0f} MiB peak",
        f"exact kNN {e['seconds']:.1f} s, {e['peak_mib']:.0f} MiB ({e['seconds'] / b['seconds']:.1f}x); P/R vs ids "
        f"{b['P']:.2f}/{b['R']:.2f} vs exact {e['P']:.2f}/{e['R']:.2f}; agreement P/R {100 * ap:.2f}/{100 * ar:.2f}")


# ============================================================================ 3. evaluation


def field_evaluation(text: torch.Tensor, image: torch.Tensor, qids: torch.Tensor, gids: torch.Tensor) -> dict:
    """The field's usual evaluation: the full Q x G similarity matrix, a full argsort of
    it, the relevance of every rank, cumulative sums for AP and INP."""
    sim = F.normalize(text, dim=1) @ F.normalize(image, dim=1).t()
    order = torch.argsort(sim, dim=1, descending=True, stable=True)
    del sim
    matches = gids[order] == qids[:, None]
    del order
    num_rel = matches.sum(dim=1)
    scored = num_rel > 0
    matches, num_rel = matches[scored], num_rel[scored]
    cum = matches.cumsum(dim=1, dtype=torch.int32)
    out = {f"R{k}": 100.0 * float((cum[:, k - 1] > 0).float().mean()) for k in (1, 5, 10)}
    positions = torch.arange(1, matches.shape[1] + 1, dtype=torch.float32, device=matches.device)
    ap = ((cum.float() / positions) * matches).sum(dim=1) / num_rel
    last = matches.shape[1] - 1 - matches.flip(1).int().argmax(dim=1)
    out["mAP"] = 100.0 * float(ap.mean())
    out["mINP"] = 100.0 * float((num_rel / (last + 1).float()).mean())
    return out


def eval_data(n: int, d: int = 512, per_id: int = 20, seed: int = 0):
    """n captions and n images of n / per_id identities (ICFG-PEDES: 19,848 of 1,000)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(n) // per_id
    centres = torch.randn(n // per_id + 1, d, generator=g)
    image = centres[ids] + 3.0 * torch.randn(n, d, generator=g)
    text = centres[ids] + 3.0 * torch.randn(n, d, generator=g)
    return text, image, ids, ids[torch.randperm(n, generator=g)], image[torch.randperm(n, generator=g)]


def child_evaluation(method: str, n: str, device: str) -> None:
    from wsreid.evaluation import retrieval_metrics_from_features

    n = int(n)
    text, image, qids, _, _ = eval_data(n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    image, gids = image[perm], qids[perm]
    dev = torch.device(device)
    text, image, qids, gids = text.to(dev), image.to(dev), qids.to(dev), gids.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    baseline = peak_rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t = time.perf_counter()
    if method == "ours":
        metrics = retrieval_metrics_from_features(text, image, qids, gids)
    else:
        metrics = field_evaluation(text, image, qids, gids)
    sync()
    seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mib() - baseline
    print(json.dumps({"seconds": seconds, "added_mib": peak, "metrics": metrics}))


def bench_evaluation(args) -> None:
    sizes = [19848] + ([100000] if args.large else [])
    print(f"\n== evaluation: Q = G, d=512, 20 images per identity, device={args.device} (fresh process per run; "
          "memory = peak above the loaded features)")
    for n in sizes:
        ours = [run_child(["evaluation", "ours", str(n), args.device]) for _ in range(args.eval_repeats)]
        om = {k: statistics.median(r[k] for r in ours) for k in ("seconds", "added_mib")}
        dense_bytes = n * n * (4 + 8 + 1 + 4 + 4)
        if n * n <= args.field_max_cells:
            field = [run_child(["evaluation", "field", str(n), args.device]) for _ in range(args.eval_repeats)]
            fm = {k: statistics.median(r[k] for r in field) for k in ("seconds", "added_mib")}
            diff = max(abs(ours[0]["metrics"][k] - field[0]["metrics"][k]) for k in field[0]["metrics"])
            ref = (f"full sim + argsort {fm['seconds']:.1f} s, {fm['added_mib']:.0f} MiB "
                   f"({fm['seconds'] / om['seconds']:.1f}x time, {fm['added_mib'] / max(om['added_mib'], 1):.0f}x memory); "
                   f"max metric difference {diff:.1e}")
        else:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            why = (f"more than this machine's {memory / 2**30:.0f} GiB" if dense_bytes > memory
                   else "over --field-max-cells")
            ref = (f"full sim + argsort not run: needs ~{dense_bytes / 2**30:.0f} GiB (the fp32 similarity alone "
                   f"{n * n * 4 / 2**30:.0f} GiB; + int64 order, matches, cumsum), {why}")
        m = ours[0]["metrics"]
        print(f"  {n} x {n}: ours {om['seconds']:.2f} s, +{om['added_mib']:.0f} MiB; metrics "
              + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) + f" | {ref}", flush=True)
        row(f"evaluation ({args.device})", f"{n:,} x {n:,}", f"{om['seconds']:.1f} s, +{om['added_mib']:.0f} MiB", ref)


# ============================================================================ 4. data


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def pedestrian_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """JPEGs of pedestrian-like sizes (CUHK-/ICFG-PEDES crops: ~50-200 px wide, 2-3x as
    tall), smooth shapes over a gradient plus sensor-like noise, quality 90."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        w = int(rng.integers(50, 200))
        h = int(w * rng.uniform(2.0, 3.0))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(yy * rng.uniform(0.2, 1.0) + xx * rng.uniform(0, 1)) % 256 for _ in range(3)], -1)
        img = Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            draw.ellipse([x0, y0, x0 + int(rng.integers(5, w)), y0 + int(rng.integers(5, h // 2))],
                         fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        path = folder / f"p{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def side_by_side_cpu(fns: dict, repeats: int) -> tuple[dict, dict]:
    """(median wall seconds, median CPU seconds of this thread) of each function, runs
    interleaved (:func:`_interleaved`). A worker is one thread: its CPU time is what an image
    costs it, and moves much less with load from other processes than the wall clock does."""
    times = _interleaved(fns, repeats)
    return ({n: statistics.median(w for w, _ in v) for n, v in times.items()},
            {n: statistics.median(c for _, c in v) for n, v in times.items()})


def bench_data(args) -> None:
    from PIL import Image

    from wsreid.data.images import load_image
    from wsreid.engine.data import image_pixels, image_to_tensor, normalise_pixels
    from wsreid_dgia.augment import IMAGE_UNIFORMS, augment_images, sample_uniforms

    size = (384, 128)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker runs torch single-threaded
    with tempfile.TemporaryDirectory() as tmp:
        paths = pedestrian_jpegs(Path(tmp), args.data_images)
        print(f"\n== data pipeline, one worker (1 thread): {len(paths)} JPEGs of pedestrian sizes -> 384 x 128, "
              f"bicubic; base + asymmetric (IASC) view")

        def decode_resize():  # the usual loader: open, convert to RGB, resize
            for p in paths:
                with Image.open(p) as im:
                    im.convert("RGB").resize((size[1], size[0]), Image.BICUBIC)

        def decode_resize_export():  # the same, pixels exported to an array (what any tensor pipeline needs)
            for p in paths:
                with Image.open(p) as im:
                    np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BICUBIC))

        resized = [Image.open(p).convert("RGB").resize((size[1], size[0]), Image.BICUBIC) for p in paths]

        def export():  # PIL image -> array alone
            for im in resized:
                np.asarray(im)

        def recipe_item():  # what a training worker does per pair (TrainPairs, image not yet decoded)
            for p in paths:
                image_pixels(load_image(p), size)

        def normalised_item():  # the same, normalised in the worker (as evaluation's ImageFiles does)
            for p in paths:
                image_to_tensor(load_image(p), size, CLIP_MEAN, CLIP_STD)

        pixels = torch.stack([image_pixels(load_image(p), size) for p in paths[:64]])  # 64 x H x W x 3 uint8
        batch = normalise_pixels(pixels, CLIP_MEAN, CLIP_STD)
        index = list(range(pixels.shape[0]))  # fewer when --data-images is below 64

        def normalise():  # DeviceBatches on a batch of 64, here on the CPU
            normalise_pixels(pixels, CLIP_MEAN, CLIP_STD)

        def asymmetric_view():  # IASC image operator on a batch of 64 (Eq. 19), on the CPU
            u = sample_uniforms(0, 1, index, IMAGE_UNIFORMS, 1)
            augment_images(batch, u, CLIP_MEAN, CLIP_STD)

        wall, t = side_by_side_cpu({"decode": decode_resize, "export": export, "decode_export": decode_resize_export,
                                    "recipe": recipe_item, "normalised": normalised_item, "normalise": normalise,
                                    "asym": asymmetric_view}, args.data_repeats)
    torch.set_num_threads(threads)
    n = len(paths)
    dec, rec, nrm, dex = n / t["decode"], n / t["recipe"], n / t["normalised"], n / t["decode_export"]
    step, batch_size = 0.114, 64
    need = batch_size / step
    print(f"  per CPU second of the worker thread: PIL decode + convert + resize alone {dec:7.1f} img/s | recipe worker "
          f"item (decode, resize, uint8 pixels) {rec:7.1f} img/s ({rec / dec:.2f}x) | normalised in the worker too "
          f"{nrm:7.1f} img/s ({nrm / dec:.2f}x)")
    print(f"  PIL decode + convert + resize + export to an array {dex:7.1f} img/s (recipe item {rec / dex:.2f}x of it); "
          f"the export alone (PIL -> array, a copy of 384 x 128 x 3 bytes) {1e6 * t['export'] / n:.0f} us/img, "
          f"{100 * t['export'] / t['recipe']:.0f} % of the recipe item")
    print(f"  wall clock (moves with the machine's load): {n / wall['decode']:7.1f} | {n / wall['recipe']:7.1f} "
          f"({wall['decode'] / wall['recipe']:.2f}x) | {n / wall['normalised']:7.1f} img/s "
          f"({wall['decode'] / wall['normalised']:.2f}x)")
    print(f"  on the training device (here the CPU, 1 thread), per batch of {len(index)}: normalisation {len(index) / t['normalise']:7.1f} "
          f"img/s, IASC asymmetric view {len(index) / t['asym']:7.1f} img/s")
    print(f"  a 114 ms DGIA step (ViT-B/16 bf16 H200, batch 64) consumes {need:.0f} img/s: {need / rec:.1f} workers "
          f"(normalisation and the asymmetric view are made on the device from the uint8 batch)", flush=True)
    row("data: recipe worker item (cpu, 1 thread)", "JPEG -> 384 x 128", f"{rec:.0f} img/s/worker",
        f"PIL decode+resize {dec:.0f} img/s ({rec / dec:.2f}x), + export to an array {dex:.0f} img/s ({rec / dex:.2f}x); "
        f"normalising in the worker {nrm:.0f} img/s ({nrm / dec:.2f}x); 114 ms step needs {need:.0f} img/s = {int(np.ceil(need / rec))} workers (CPU time)")


# ============================================================================ 5. overhead


def hand_written_dgia(model, optimizer, scheduler, encoder, params: dict, banks: dict, seed: int):
    """A hand-written DGIA training step (no engine, no components): IASC views, one
    encoder pass over both views, ITC + SDM against LRC (base and asymmetric view) and
    GSRC-FR relations, backward, optimizer and scheduler step, memory update. ``params``:
    the recipe's values; ``banks``: image/text fp16 banks and their normalised copy."""
    from wsreid.losses import bidirectional_sdm_loss, itc_loss
    from wsreid_dgia.augment import IMAGE_UNIFORMS, augment_images, mask_tokens, sample_uniforms
    from wsreid_dgia.functional import (
        enlarged_features, group_relation, lrc_relation, mine_neighbours, momentum_update, neighbour_weights,
    )

    iasc, lrc, lrc_a, gsrc, itc, sdm = (params[k] for k in ("iasc", "lrc", "lrc_asym", "gsrc", "itc", "sdm"))
    state = {"step": 0}

    def step(batch, epoch: int) -> float:
        index = batch.index.tolist()
        u = sample_uniforms(seed, state["step"], index, IMAGE_UNIFORMS, 1, batch.images.device)
        asym_images = augment_images(batch.images, u, encoder.image_mean, encoder.image_std, flip_prob=iasc.flip_prob,
                                     pad=iasc.pad, erase_prob=iasc.erase_prob, erase_area=iasc.erase_area,
                                     erase_aspect=iasc.erase_aspect,
                                     erase_fill=encoder.image_mean if iasc.erase_value == "code" else None)
        u = sample_uniforms(seed, state["step"], index, batch.input_ids.shape[1], 2, batch.input_ids.device)
        asym_ids, _ = mask_tokens(batch.input_ids, batch.attention_mask, u, encoder.mask_token_id,
                                  encoder.special_token_ids, encoder.pad_token_id, iasc.mask_ratio)
        state["step"] += 1
        b = batch.images.shape[0]
        image, text = model(torch.cat([batch.images, asym_images]), torch.cat([batch.input_ids, asym_ids]),
                            torch.cat([batch.attention_mask, batch.attention_mask]))[:2]  # normalised; raw follow
        vb, va, tb, ta = image[:b], image[b:], text[:b], text[b:]
        total = itc_loss(vb, tb, itc.temperature, itc.reduction)
        for (v, t), q in (((vb, tb), lrc), ((va, ta), lrc_a)):
            w = lrc_relation(v, t, q.threshold_image, q.threshold_text, q.relation_weight, q.modalities)
            total = total + bidirectional_sdm_loss(v, t, w, sdm.temperature, sdm.eps)
        idx = batch.index.long()
        if epoch >= gsrc.start_epoch:
            nb = mine_neighbours(vb, tb, banks["image"], banks["text"], k=gsrc.top_k, threshold=gsrc.threshold,
                                 scoring=banks["scoring"], scoring_norms=banks["norms"])
            weights = neighbour_weights(nb.similarity, nb.valid, gsrc.gamma)
            _, relation = group_relation(nb.valid, weights, gsrc.query_rows)
            big_v, big_t = enlarged_features(vb, tb, banks["image"], banks["text"], nb)
            total = total + bidirectional_sdm_loss(big_v, big_t, relation, sdm.temperature, sdm.eps)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            momentum_update(banks["image"], idx, vb.detach(), gsrc.momentum)
            momentum_update(banks["text"], idx, tb.detach(), gsrc.momentum)
            rows = banks["image"][idx].float()
            banks["scoring"][idx] = F.normalize(rows, dim=1).to(banks["scoring"].dtype)
            if banks["norms"] is not None:
                banks["norms"][idx] = torch.linalg.vector_norm(rows, dim=1)
        return float(total.detach())

    return step


def bench_overhead(args) -> None:
    import copy

    sys.path.insert(0, str(HERE))
    from step_time import build

    from wsreid.api import StepContext

    print(f"\n== framework overhead: recipes/dgia.yaml (tiny CLIP, synth-pedes), batch {args.overhead_batch}, "
          f"{torch.get_num_threads()} threads, epoch 2 (every DGIA loss active), {args.overhead_steps} steps each, interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        run = build("recipes/dgia.yaml", [f"train.batch_size={args.overhead_batch}"], Path(tmp))
        batches = []
        for i, batch in enumerate(run.loader):
            if i == 4:
                break
            batches.append(batch.to(run.dist.device))
        run.train_step(batches[0], StepContext(1, 0, 2, run.dist))  # allocates the banks
        c = run.components
        gsrc = c.global_associations["gsrc"]
        n = gsrc.image_memory.shape[0]
        g = torch.Generator().manual_seed(0)
        state = {"image_memory": F.normalize(torch.randn(n, 512 if gsrc.image_memory.shape[1] == 512 else
                                                         gsrc.image_memory.shape[1], generator=g), dim=1).half(),
                 "text_memory": F.normalize(torch.randn(n, gsrc.image_memory.shape[1], generator=g), dim=1).half(),
                 "written": torch.ones(n, dtype=torch.bool), "person_ids": torch.arange(n)}
        gsrc.load_state_tensors(state)
        # the hand-written loop gets its own copy of the same model, optimizer and scheduler
        model, optimizer, scheduler = copy.deepcopy((run.model, run.optimizer, run.scheduler))
        banks = {"image": state["image_memory"].clone(), "text": state["text_memory"].clone()}
        from wsreid_dgia.functional import row_norms, scoring_rows

        banks["scoring"] = scoring_rows(banks["image"], gsrc._scoring.dtype)  # the component's precision
        banks["norms"] = None if gsrc._norms is None else row_norms(banks["image"])
        obj = c.objectives
        params = {"iasc": c.pair_construction.params, "lrc": c.local_associations["lrc"].params,
                  "lrc_asym": c.local_associations["lrc_asymmetric"].params, "gsrc": gsrc.params,
                  "itc": obj["itc"].params, "sdm": obj["sdm_local"].params}
        c.pair_construction.step = 0
        hand = hand_written_dgia(model, optimizer, scheduler, run.encoder, params, banks, c.pair_construction.context.seed)
        engine_loss = run.train_step(batches[0], StepContext(2, 0, 3, run.dist))["loss/total"]
        hand_loss = hand(batches[0], 2)
        print(f"  first step from the same state: engine loss {engine_loss:.6f}, hand-written {hand_loss:.6f}")

        def engine_step(i: int) -> None:
            run.train_step(batches[i % len(batches)], StepContext(2, i + 1, 3, run.dist))

        def hand_step(i: int) -> None:
            hand(batches[i % len(batches)], 2)

        # one engine and one hand-written step per round on the same batch, alternating order
        engine_times, hand_times = paired_rounds(engine_step, hand_step, args.overhead_steps, warmup=3)
        del run
    e, h = statistics.median(engine_times), statistics.median(hand_times)
    q1, med, q3 = ratio_quartiles(engine_times, hand_times)
    rounds = len(engine_times)
    print(f"  engine train_step {e * 1e3:.1f} ms | hand-written loop {h * 1e3:.1f} ms | engine / hand per round: median "
          f"{med:.3f} (quartiles {q1:.3f}-{q3:.3f}; {rounds} rounds); ratio of the medians {e / h:.3f}", flush=True)
    row("framework overhead: DGIA step (cpu, tiny CLIP)", f"batch {args.overhead_batch}", f"engine {e * 1e3:.1f} ms",
        f"hand-written loop {h * 1e3:.1f} ms; engine / hand {med:.3f} (median of {rounds} paired rounds, quartiles "
        f"{q1:.3f}-{q3:.3f}); first-step losses {engine_loss:.5f} / {hand_loss:.5f}")


# ============================================================================ main

SECTIONS = {
    "mining": bench_mining, "cluster": bench_cluster, "evaluation": bench_evaluation, "data": bench_data,
    "overhead": bench_overhead,
}


def device_arg(text: str) -> str:
    """An argparse ``type=`` for ``--device``: ``cpu``, or ``cuda`` / ``cuda:N`` where torch
    sees that GPU; anything else is the option's one-line mistake."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device this benchmark runs on; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise argparse.ArgumentTypeError(f"{text}: torch sees no GPU on this machine (torch {torch.__version__}, "
                                         f"{built}); use --device cpu, or run on a machine with a GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} GPU(s), "
                                         f"numbered from 0; use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return text


def main() -> int:
    from bench_common import argument_parser, machine_line

    from wsreid.cli.common import at_least

    from wsreid.errors import UserError

    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda (GPU rows: mining, evaluation)")
    parser.add_argument("--threads", type=at_least(1), default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=at_least(1), default=9, help="timed runs per fast measurement (medians)")
    parser.add_argument("--mining-rows", type=at_least(64), nargs="+", default=[4096, 68126, 200000],
                        help="bank rows (at least the batch, 64)")
    parser.add_argument("--scoring-dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--cluster-rows", type=int, default=40000)
    parser.add_argument("--cluster-repeats", type=at_least(1), default=1, help="runs of the bf16-kNN pipeline")
    parser.add_argument("--cluster-exact-repeats", type=at_least(1), default=1, help="runs of the slow exact-kNN pipeline")
    parser.add_argument("--cluster-ann", action="store_true",
                        help="also time faiss's approximate kNN indexes (IVF, HNSW) and their recall")
    parser.add_argument("--eval-repeats", type=at_least(1), default=1)
    parser.add_argument("--field-max-cells", type=float, default=4.1e8,
                        help="largest Q x G the full-matrix reference is run at (memory)")
    parser.add_argument("--data-images", type=at_least(1), default=200)
    parser.add_argument("--data-repeats", type=at_least(1), default=5)
    parser.add_argument("--overhead-steps", type=at_least(2), default=60,
                        help="paired rounds (one engine, one hand-written step); quartiles need 2")
    parser.add_argument("--overhead-batch", type=at_least(1), default=64)
    parser.add_argument("--large", action="store_true", help="add the large sizes (100k x 100k evaluation)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        CHILDREN[args.child[0]](*args.child[1:])
        return 0
    print(machine_line(args.threads), flush=True)
    started = time.perf_counter()
    try:
        for name in args.only:
            SECTIONS[name](args)
    except UserError as err:  # a recipe value these options made invalid (--overhead-batch)
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\n== table (docs/performance.md), {time.perf_counter() - started:.0f} s in all, "
          f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| measurement | size | wsreid | reference (same run) |\n|---|---|---|---|")
    for r in TABLE:
        print("| " + " | ".join(r) + " |")
    return 0


CHILDREN: dict = {"cluster": child_cluster, "evaluation": child_evaluation}

if __name__ == "__main__":
    sys.exit(main())
