"""wsreid.evaluation: exact agreement with a plain reference, hand-computed cases, properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from wsreid.evaluation import (
    mean_pairwise_cosine,
    retrieval_counts,
    retrieval_metrics,
    retrieval_metrics_from_features,
    similarity_from_features,
    top1_concentration,
)

KEYS = ("R1", "R5", "R10", "mAP", "mINP")


def reference_metrics(sim, qids, gids, ranks=(1, 5, 10)):
    """docs/method.md written plainly: sort each row, walk down the ranking."""
    hits = {k: 0 for k in ranks}
    ap_sum = inp_sum = 0.0
    scored = 0
    for i in range(sim.shape[0]):
        row = sim[i].tolist()
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))  # ties: gallery order
        relevant_ranks = [r + 1 for r, j in enumerate(order) if int(gids[j]) == int(qids[i])]
        if not relevant_ranks:
            continue
        scored += 1
        for k in ranks:
            hits[k] += relevant_ranks[0] <= k
        ap_sum += sum((n + 1) / rank for n, rank in enumerate(relevant_ranks)) / len(relevant_ranks)
        inp_sum += len(relevant_ranks) / relevant_ranks[-1]
    out = {f"R{k}": 100.0 * hits[k] / scored for k in ranks}
    out.update(mAP=100.0 * ap_sum / scored, mINP=100.0 * inp_sum / scored)
    return out


def random_case(q, g, num_ids, seed):
    gen = torch.Generator().manual_seed(seed)
    gids = torch.randint(0, num_ids, (g,), generator=gen)
    gids[:num_ids] = torch.arange(num_ids)  # every id has an image
    qids = torch.randint(0, num_ids, (q,), generator=gen)
    sim = torch.rand(q, g, generator=gen, dtype=torch.float64)
    return sim, qids, gids


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 1000])
def test_matches_plain_reference(chunk_size):
    sim, qids, gids = random_case(40, 60, 12, 0)
    got = retrieval_metrics(sim, qids, gids, chunk_size=chunk_size)
    want = reference_metrics(sim, qids, gids)
    assert list(got) == list(KEYS)
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-9)
        assert type(got[k]) is float


def test_element_budget_caps_the_chunk_without_changing_results(monkeypatch):
    import wsreid.evaluation as evaluation

    sim, qids, gids = random_case(30, 50, 7, 1)
    whole = retrieval_metrics(sim, qids, gids)
    # the chunk's query rows: as many as the element budget allows over the whole gallery,
    # at most chunk_size, at least one, never more than the queries
    assert evaluation._chunk_rows(30, 50, None, 120) == 2  # 120 // 50
    assert evaluation._chunk_rows(30, 50, 7, 1000) == 7  # chunk_size under the budget of 20 rows
    assert evaluation._chunk_rows(30, 50, 7, 120) == 2  # the budget caps chunk_size
    assert evaluation._chunk_rows(30, 50, None, 10) == 1  # less than one gallery row: one query row
    assert evaluation._chunk_rows(30, 50, None, 1 << 24) == 30  # never more rows than queries
    chunks = []
    real = evaluation._chunk_counts

    def spy(chunk, chunk_qids, chunk_gids, ranks):
        chunks.append((tuple(chunk.shape), chunk_qids.tolist()))
        return real(chunk, chunk_qids, chunk_gids, ranks)

    monkeypatch.setattr(evaluation, "_chunk_counts", spy)
    assert retrieval_metrics(sim, qids, gids, max_chunk_elements=120) == pytest.approx(whole, abs=1e-9)
    # 15 chunks of 2 queries x the 50 gallery items (100 elements <= 120), in query order
    assert [shape for shape, _ in chunks] == [(2, 50)] * 15
    assert [q for _, ids in chunks for q in ids] == qids.tolist()
    chunks.clear()
    assert retrieval_metrics(sim, qids, gids, chunk_size=4, max_chunk_elements=1000) == pytest.approx(whole, abs=1e-9)
    assert [shape for shape, _ in chunks] == [(4, 50)] * 7 + [(2, 50)]  # 30 = 7 x 4 + 2
    chunks.clear()
    retrieval_metrics(sim, qids, gids)
    assert [shape for shape, _ in chunks] == [(30, 50)]  # the default budget holds every query at once


def test_hand_computed_case():
    # query 0 (id 1): ranking = g2(id 1), g0(id 0), g1(id 1), g3(id 2) -> relevant at ranks 1, 3
    # query 1 (id 2): ranking = g0, g1, g2, g3 -> relevant at rank 4
    sim = torch.tensor([[0.5, 0.2, 0.9, 0.1], [0.9, 0.8, 0.7, 0.6]])
    m = retrieval_metrics(sim, torch.tensor([1, 2]), torch.tensor([0, 1, 1, 2]), ranks=(1, 2, 4))
    assert m["R1"] == 50.0 and m["R2"] == 50.0 and m["R4"] == 100.0
    assert m["mAP"] == pytest.approx(100 * ((1 / 1 + 2 / 3) / 2 + 1 / 4) / 2)
    assert m["mINP"] == pytest.approx(100 * (2 / 3 + 1 / 4) / 2)


def test_ties_are_broken_by_gallery_order():
    sim = torch.tensor([[0.5, 0.5, 0.5]])
    assert retrieval_metrics(sim, torch.tensor([3]), torch.tensor([1, 3, 3]), ranks=(1,))["mAP"] == pytest.approx(
        100 * (1 / 2 + 2 / 3) / 2
    )


def test_queries_without_relevant_items_are_left_out():
    sim = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    counts = retrieval_counts(sim, torch.tensor([0, 7]), torch.tensor([0, 1]))
    assert counts.num_queries == 1
    assert retrieval_metrics(sim, torch.tensor([0, 7]), torch.tensor([0, 1]))["R1"] == 100.0
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(sim, torch.tensor([5, 7]), torch.tensor([0, 1]))


def test_rejects_mismatched_ids_and_bad_ranks():
    sim = torch.rand(3, 4)
    with pytest.raises(ValueError, match="ids do not match"):
        retrieval_metrics(sim, torch.zeros(2, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="ranks"):
        retrieval_metrics(sim, torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), ranks=(0,))


def test_from_features_equals_similarity_path():
    gen = torch.Generator().manual_seed(3)
    text, image = torch.randn(25, 16, generator=gen), torch.randn(18, 16, generator=gen)
    qids, gids = torch.randint(0, 6, (25,), generator=gen), torch.arange(18) % 6
    want = retrieval_metrics(similarity_from_features(text, image), qids, gids)
    got = retrieval_metrics_from_features(text, image, qids, gids, chunk_size=4)
    assert got == pytest.approx(want, abs=1e-9)
    sim = similarity_from_features(text, image)
    assert sim.shape == (25, 18) and sim.abs().max() <= 1 + 1e-6


@st.composite
def cases(draw):
    q, g, n = draw(st.integers(1, 12)), draw(st.integers(1, 15)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 10_000))
    gen = torch.Generator().manual_seed(seed)
    n = min(n, g)
    gids = torch.randint(0, n, (g,), generator=gen)
    gids[:n] = torch.arange(n)
    qids = torch.randint(0, n, (q,), generator=gen)
    sim = torch.randperm(q * g, generator=gen).reshape(q, g).double()  # distinct values: no ties
    return sim, qids, gids, gen


@settings(max_examples=60, deadline=None)
@given(cases())
def test_properties(case):
    sim, qids, gids, gen = case
    m = retrieval_metrics(sim, qids, gids)
    assert all(0.0 <= m[k] <= 100.0 for k in KEYS)
    assert m["R1"] <= m["R5"] <= m["R10"]
    assert m["mAP"] == pytest.approx(reference_metrics(sim, qids, gids)["mAP"], abs=1e-9)
    gperm = torch.randperm(sim.shape[1], generator=gen)
    assert retrieval_metrics(sim[:, gperm], qids, gids[gperm]) == pytest.approx(m, abs=1e-9)
    qperm = torch.randperm(sim.shape[0], generator=gen)
    assert retrieval_metrics(sim[qperm], qids[qperm], gids) == pytest.approx(m, abs=1e-9)
    perfect = (qids[:, None] == gids[None, :]).double() + 0.001 * torch.rand(sim.shape, generator=gen, dtype=torch.float64)
    assert retrieval_metrics(perfect, qids, gids) == pytest.approx({k: 100.0 for k in KEYS})


def test_top1_concentration_counts_first_results():
    # 4 queries x 3 gallery items: first results 2, 2, 0, 2 (the tie in row 3 goes to index 0)
    sim = torch.tensor([[0.1, 0.2, 0.9], [0.0, 0.5, 0.6], [0.7, 0.7, 0.1], [0.3, 0.2, 0.4]])
    assert top1_concentration(sim) == {"top1_images": 2, "top1_hub_share": 75.0}
    assert top1_concentration(torch.eye(5)) == {"top1_images": 5, "top1_hub_share": 20.0}
    assert top1_concentration(torch.zeros(0, 3)) == {"top1_images": 0, "top1_hub_share": 0.0}


def test_mean_pairwise_cosine_equals_the_explicit_mean():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(7, 5, generator=g)
    n = F.normalize(f, dim=1)
    explicit = ((n @ n.T).sum() - 7) / (7 * 6)
    assert mean_pairwise_cosine(f) == pytest.approx(explicit.item(), abs=1e-6)
    assert mean_pairwise_cosine(torch.ones(4, 3) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None]) == pytest.approx(1.0)
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)
    assert mean_pairwise_cosine(torch.ones(1, 3)) is None  # no pair: JSON null, not NaN


@pytest.mark.parametrize("levels", [None, 7])
def test_rank_counting_equals_full_sort(levels):
    # relevant ranks counted without sorting vs a full stable argsort, with and without ties
    from wsreid.evaluation import _chunk_counts, _chunk_counts_sorted

    g = torch.Generator().manual_seed(3)
    sim = torch.rand(40, 300, generator=g)
    if levels is not None:
        sim = (sim * levels).round() / levels  # many exact ties
    qids = torch.randint(0, 30, (40,), generator=g)
    gids = torch.randint(0, 30, (300,), generator=g)
    gids[:5] = 99  # an identity no query has
    fast = _chunk_counts(sim, qids, gids, (1, 5, 10)).metrics()
    slow = _chunk_counts_sorted(sim, qids, gids, (1, 5, 10)).metrics()
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], abs=1e-9), key


def test_relevant_items_tied_with_each_other_rank_in_gallery_order():
    from wsreid.evaluation import _chunk_counts, _chunk_counts_sorted

    sim = torch.tensor([[0.9, 0.5, 0.5, 0.1, 0.7]])  # relevant items 1 and 2 tie: ranks 3 and 4
    qids, gids = torch.tensor([4]), torch.tensor([0, 4, 4, 1, 2])
    counts = _chunk_counts(sim, qids, gids, (1, 5))
    assert counts.sum_ap == pytest.approx((1 / 3 + 2 / 4) / 2) and counts.sum_inp == pytest.approx(2 / 4)
    assert counts.metrics() == _chunk_counts_sorted(sim, qids, gids, (1, 5)).metrics()


class _NanText(torch.nn.Module):
    """An encoder stub whose text features are NaN for captions holding 'bad'."""

    embed_dim = 4
    max_length = 1

    def tokenize(self, texts):
        ids = torch.tensor([[1 if "bad" in t else 0] for t in texts])
        return ids, torch.ones_like(ids)

    def encode_text(self, ids, mask):
        out = torch.ones(ids.shape[0], self.embed_dim)
        out[ids[:, 0] == 1] = float("nan")
        return out


def test_non_finite_features_are_refused_not_ranked():
    """NaN similarities would rank the gallery in stored order and give plausible metrics."""
    from wsreid.distributed import Distributed
    from wsreid.engine.evaluate import extract_text_features
    from wsreid.errors import TrainingError

    ok = extract_text_features(_NanText(), ["a", "b"], 8, Distributed())
    assert torch.allclose(ok, torch.full((2, 4), 0.5))
    with pytest.raises(TrainingError, match="1 of 3 text features are not finite"):
        extract_text_features(_NanText(), ["a", "bad", "c"], 8, Distributed())
