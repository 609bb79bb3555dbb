"""wsreid_dgia.functional: LRC and GSRC-FR math against hand-computed values, brute force
and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from wsreid.losses import bidirectional_sdm_loss, relation_targets
from wsreid.losses import cosine_similarity_matrix
from wsreid_dgia.functional import (
    _proposal_error_bound,
    effective_threshold,
    enlarged_features,
    group_relation,
    gsrc_loss,
    linear_quantile,
    lrc_loss,
    lrc_relation,
    mine_neighbours,
    momentum_update,
    neighbour_weights,
    related_offdiagonal_pairs,
    row_norms,
    scoring_rows,
)


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def clustered(n, d, seed, groups=3, noise=0.4):
    """Features of ``n`` items in ``groups`` tight clusters (so thresholds at 0.7 bite)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, d, generator=g)
    labels = torch.randint(0, groups, (n,), generator=g)
    return centres[labels] + noise * torch.randn(n, d, generator=g)


# ----------------------------------------------------------------------------- LRC


def test_lrc_relation_hand_case_and_variants():
    # pairs 0 and 1 agree in image AND text; pair 2 shares only the image of 0, pair 3 only the text
    image = torch.tensor([[1.0, 0.0, 0.0], [0.95, 0.1, 0.0], [1.0, 0.05, 0.0], [0.0, 0.0, 1.0]])
    text = torch.tensor([[0.0, 1.0, 0.0], [0.1, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.05]])
    r = lrc_relation(image, text)
    expected = torch.tensor(
        [[1, 0.1, 0, 0.0], [0.1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    )
    assert torch.allclose(r, expected)
    assert int(related_offdiagonal_pairs(r)) == 2
    r_img = lrc_relation(image, text, modalities="image", relation_weight=0.3)
    assert r_img[0, 2] == pytest.approx(0.3) and r_img[0, 3] == 0 and r_img[0, 1] == pytest.approx(0.3)
    r_txt = lrc_relation(image, text, modalities="text")
    assert r_txt[0, 3] == pytest.approx(0.1) and r_txt[0, 2] == 0
    assert not r.requires_grad


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 10_000), lam=st.floats(0.01, 1.0))
def test_lrc_relation_is_symmetric_with_unit_diagonal(n, seed, lam):
    image, text = clustered(n, 6, seed), clustered(n, 6, seed + 1, groups=2)
    r = lrc_relation(image, text, relation_weight=lam)
    assert torch.equal(r, r.t())
    assert torch.all(r.diagonal() == 1)
    off = r[~torch.eye(n, dtype=torch.bool)]
    assert torch.all((off == 0) | torch.isclose(off, torch.tensor(lam)))
    t = relation_targets(r)
    assert torch.allclose(t.sum(1), torch.ones(n)) and torch.equal(t == 0, r == 0)


def test_effective_threshold_hand_case():
    # off-diagonal cosines of a 3 x 3 matrix: 0.2, 0.5, 0.9 (each twice)
    sim = torch.tensor([[1.0, 0.2, 0.5], [0.2, 1.0, 0.9], [0.5, 0.9, 1.0]])
    assert effective_threshold(sim, 0.7, None) == 0.7
    assert effective_threshold(sim, 0.3, 50.0) == pytest.approx(0.5)  # median of [.2 .2 .5 .5 .9 .9]
    assert effective_threshold(sim, 0.7, 50.0) == 0.7  # never below the fixed one
    assert effective_threshold(sim, -1.0, 70.0) == pytest.approx(0.7)  # position 0.7 x 5 = 3.5: between .5 and .9
    assert effective_threshold(sim[:1, :1], 0.7, 50.0) == 0.7  # no pair: the fixed threshold


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 10_000), q=st.floats(0.0, 1.0), ties=st.booleans())
def test_linear_quantile_is_torch_quantile_to_the_bit(n, seed, q, ties):
    values = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    if ties:
        values = values.round(decimals=1)
    assert torch.equal(linear_quantile(values, q), torch.quantile(values, q))


def test_the_batch_percentile_has_no_size_limit():
    """A global batch of 4,097 has 16,781,312 off-diagonal cosines, over the 2**24 that
    ``torch.quantile`` accepts; the percentile threshold is still computed (a uniform
    matrix: its 90th percentile is near 0.9)."""
    b = 4097
    sim = torch.rand(b, b, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="too large"):
        torch.quantile(sim.flatten(), 0.9)
    assert effective_threshold(sim, 0.0, 90.0) == pytest.approx(0.9, abs=1e-3)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 24), seed=st.integers(0, 10_000), pct=st.floats(50.0, 99.0), th=st.floats(-1.0, 0.9))
def test_lrc_relation_percentile_caps_the_share_and_never_relates_more(n, seed, pct, th):
    """With ``threshold_percentile`` each test passes at most (100 - p) % of the ordered
    off-diagonal pairs (strict ``>`` over a percentile), the related pairs are a subset of
    those at the fixed threshold, and the result equals the fixed-threshold relation at the
    thresholds ``effective_threshold`` returns."""
    image, text = clustered(n, 6, seed, noise=0.1), clustered(n, 6, seed + 1, groups=2, noise=0.1)
    fixed = lrc_relation(image, text, th, th)
    capped = lrc_relation(image, text, th, th, threshold_percentile=pct)
    pairs = n * (n - 1)
    for modalities, x in (("image", image), ("text", text)):
        alone = lrc_relation(image, text, th, th, modalities=modalities, threshold_percentile=pct)
        assert int(related_offdiagonal_pairs(alone)) <= math.floor((100.0 - pct) / 100.0 * pairs + 1e-6) + 1
    assert torch.all((capped > 0) <= (fixed > 0))
    ti = effective_threshold(cosine_similarity_matrix(image, image), th, pct)
    tt = effective_threshold(cosine_similarity_matrix(text, text), th, pct)
    assert ti >= th and tt >= th
    assert torch.equal(capped, lrc_relation(image, text, ti, tt))


def test_lrc_loss_equals_sdm_against_its_relation_and_is_permutation_invariant():
    image, text = clustered(10, 8, 0).requires_grad_(), clustered(10, 8, 1)
    r = lrc_relation(image, text)
    assert int(related_offdiagonal_pairs(r)) > 0  # the case exercises relations
    want = bidirectional_sdm_loss(F.normalize(image, dim=1), F.normalize(text, dim=1), r)
    got = lrc_loss(image, text)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert lrc_loss(image[perm], text[perm]).item() == pytest.approx(got.item(), rel=1e-5)


# ----------------------------------------------------------------------------- mining


def brute_neighbours(anchor, memory, k, threshold, skip_first=True, own=None, usable=None):
    """Per anchor: full sort of the cosine similarities, then ranks 2..k+1 (or 1..k without own row)."""
    a, m = F.normalize(anchor, dim=1), F.normalize(memory.float(), dim=1)
    out = []
    for i in range(a.shape[0]):
        sims = (m @ a[i]).tolist()
        rows = [j for j in range(len(sims)) if (usable is None or usable[j]) and (own is None or j != own[i])]
        rows.sort(key=lambda j: -sims[j])
        picked = rows[1 : k + 1] if skip_first else rows[:k]
        out.append([(j, sims[j]) for j in picked if sims[j] > threshold])
    return out


def as_lists(nb):
    return [
        [(int(j), float(s)) for j, s, v in zip(nb.index[i], nb.similarity[i], nb.valid[i]) if v]
        for i in range(nb.index.shape[0])
    ]


class RowSlices(torch.Tensor):
    """A memory bank that records the row ranges read from it (``bank[start:stop]``);
    everything computed from it is a plain tensor."""

    reads: list[tuple[int, int]] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__ and isinstance(args[1], slice):
            cls.reads.append((args[1].start, args[1].stop))
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("chunk_rows", [1, 5, 1000])
@pytest.mark.parametrize("k", [1, 3])
def test_mining_matches_brute_force_over_chunks(chunk_rows, k, monkeypatch):
    memory = clustered(37, 8, 2, groups=4, noise=0.3)
    batch = memory[[3, 10, 20, 30]] + 0.05 * randn(4, 8, seed=3)
    text = torch.zeros_like(batch)
    monkeypatch.setattr(RowSlices, "reads", [])
    bank = memory.as_subclass(RowSlices)
    nb = mine_neighbours(batch, text, bank, bank, k=k, threshold=0.7, chunk_rows=chunk_rows)
    # the bank is scored chunk_rows rows at a time, each row once, in order (37 rows: a last,
    # shorter chunk)
    assert RowSlices.reads == [(start, min(start + chunk_rows, 37)) for start in range(0, 37, chunk_rows)]
    assert len(RowSlices.reads) == {1: 37, 5: 8, 1000: 1}[chunk_rows]
    assert type(nb.index) is torch.Tensor and type(nb.similarity) is torch.Tensor
    want = brute_neighbours(batch, memory, k, 0.7)
    got = as_lists(nb)
    assert [[j for j, _ in row] for row in got] == [[j for j, _ in row] for row in want]
    for g_row, w_row in zip(got, want):
        for (_, gs), (_, ws) in zip(g_row, w_row):
            assert gs == pytest.approx(ws, abs=1e-5)
    assert sum(len(r) for r in want) > 0


def test_mining_own_index_unwritten_rows_text_anchor_and_both():
    memory_image = clustered(30, 8, 4, groups=3, noise=0.3)
    memory_text = clustered(30, 8, 5, groups=3, noise=0.3)
    own = torch.tensor([0, 7, 15])
    image, text = memory_image[own], memory_text[own]
    usable = torch.ones(30, dtype=torch.bool)
    usable[::4] = False
    usable[own] = True
    nb = mine_neighbours(image, text, memory_image, memory_text, k=3, threshold=0.7,
                         self_match="skip_own_index", batch_index=own, usable=usable)  # fmt: skip
    want = brute_neighbours(image, memory_image, 3, 0.7, False, own.tolist(), usable)
    assert [[j for j, _ in r] for r in as_lists(nb)] == [[j for j, _ in r] for r in want]
    for i, row in enumerate(as_lists(nb)):
        assert all(j != int(own[i]) and usable[j] for j, _ in row)
    nb_t = mine_neighbours(image, text, memory_image, memory_text, anchor="text")
    assert [[j for j, _ in r] for r in as_lists(nb_t)] == [[j for j, _ in r] for r in brute_neighbours(text, memory_text, 3, 0.7)]
    nb_both = mine_neighbours(image, text, memory_image, memory_text, anchor="both")
    ti = F.normalize(text, dim=1)
    tm = F.normalize(memory_text, dim=1)
    for i, row in enumerate(brute_neighbours(image, memory_image, 3, 0.7)):
        kept = [j for j, _ in row if float(tm[j] @ ti[i]) > 0.7]
        assert [j for j, _ in as_lists(nb_both)[i]] == kept


@pytest.mark.parametrize("bank_dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("self_match", ["skip_first_rank", "skip_own_index"])
@pytest.mark.parametrize("chunk_rows", [7, 1000])
@pytest.mark.parametrize("scoring_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("transposed_max_rows", [0, 8192])  # low-precision chunks scored as B x c, or as c x B
def test_mining_over_a_ready_scoring_copy_equals_normalising_on_the_fly(
    bank_dtype, self_match, chunk_rows, scoring_dtype, transposed_max_rows, monkeypatch
):
    monkeypatch.setattr("wsreid_dgia.functional._TRANSPOSED_MAX_ROWS", transposed_max_rows)
    # raw rows of very different norms (a bank of un-normalised features), zero rows unwritten
    scale = torch.linspace(0.2, 9.0, 41)[:, None]
    memory = (clustered(41, 8, 11, groups=4, noise=0.3) * scale).to(bank_dtype)
    memory[5] = 0
    own = torch.tensor([0, 9, 17, 33])
    memory[6] = memory[9]  # an unusable row that would be the best neighbour of anchor 9
    usable = torch.ones(41, dtype=torch.bool)
    usable[[5, 6]] = False
    image = memory[own].float() + 0.05 * randn(4, 8, seed=12)
    ready = scoring_rows(memory, scoring_dtype, chunk_rows=6)  # bf16: candidates re-scored in fp32
    assert ready.dtype == scoring_dtype and torch.allclose(ready.float().norm(dim=1)[usable], torch.ones(39), atol=1e-2)
    assert torch.equal(ready[5], torch.zeros(8))
    args = dict(k=3, threshold=0.7, self_match=self_match, batch_index=own, usable=usable, chunk_rows=chunk_rows)
    slow = mine_neighbours(image, image, memory, memory, **args)
    fast = mine_neighbours(image, image, memory, memory, scoring=ready, **args)
    assert torch.equal(fast.index, slow.index) and torch.equal(fast.valid, slow.valid)
    kept_norms = mine_neighbours(image, image, memory, memory, scoring=ready, scoring_norms=row_norms(memory, 6), **args)
    assert torch.equal(kept_norms.index, fast.index) and torch.equal(kept_norms.similarity, fast.similarity)
    assert torch.allclose(fast.similarity, slow.similarity, atol=1e-6) and int(fast.count.sum()) > 0
    assert not (fast.index[fast.valid] == 6).any()
    with pytest.raises(ValueError, match="scoring copy"):
        mine_neighbours(image, image, memory, memory, scoring=ready[:40])


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(2, 96),
    spread=st.floats(0.0, 2.0),
    scale=st.floats(0.01, 50.0),
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
    seed=st.integers(0, 10_000),
)
def test_low_precision_proposals_lie_within_the_error_bound(d, spread, scale, dtype, seed):
    # the pruned re-scoring is exact only if every proposal is within the bound of its float32
    # cosine: rows from a narrow cone (spread 0) to scattered, at any raw scale
    g = torch.Generator().manual_seed(seed)
    memory = (torch.randn(1, d, generator=g) + spread * torch.randn(60, d, generator=g)) * scale
    query = F.normalize(memory[:7] + 0.1 * spread * torch.randn(7, d, generator=g), dim=1)
    proposals = (query.to(dtype) @ scoring_rows(memory, dtype).t()).float()  # as _topk_over_memory scores
    exact = query @ F.normalize(memory, dim=1).t()
    assert float((proposals - exact).abs().max()) <= _proposal_error_bound(dtype)


# a narrow cone (near ties, little pruned) to tight groups; at 0.2 and 0.5 a bound of 0 or
# 2^-10 instead of 4 x 2^-8 prunes a true neighbour
@pytest.mark.parametrize("noise", [0.05, 0.2, 0.5, 1.0])
def test_pruned_rescoring_equals_float32_scoring(noise):
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(40, 32, generator=g) + 3.0 * torch.randn(1, 32, generator=g)
    memory = (centres.repeat_interleave(5, 0) + noise * torch.randn(200, 32, generator=g)).half()
    own = torch.arange(0, 200, 13)
    image = memory[own].float() + 0.02 * torch.randn(own.numel(), 32, generator=g)
    exact = mine_neighbours(image, image, memory, memory, k=3, threshold=0.7, scoring=scoring_rows(memory))
    fast = mine_neighbours(image, image, memory, memory, k=3, threshold=0.7,
                           scoring=scoring_rows(memory, torch.bfloat16), scoring_norms=row_norms(memory))  # fmt: skip
    assert torch.allclose(fast.similarity, exact.similarity, atol=1e-6) and torch.equal(fast.valid, exact.valid)
    assert torch.equal(fast.index[fast.valid], exact.index[exact.valid])


def test_float16_similarities_meet_the_threshold_as_the_authors_fp16_model():
    """Memory rows at cosine 0.7003 and 0.7012 from the anchor (rank 1 is the anchor's own
    row): float32 keeps both; in float16 0.7003 rounds to 0.7001953125, which is also what
    0.7 rounds to, so ``>`` drops it, while 0.7012 (0.70117...) passes. The weights use the
    rounded similarities."""
    anchor = torch.tensor([[1.0, 0.0]])

    def at(c):
        return [c, math.sqrt(1.0 - c * c)]

    memory = torch.tensor([[1.0, 0.0], at(0.7003), at(0.7012), at(-0.5)])
    exact = mine_neighbours(anchor, anchor, memory, memory, k=3, threshold=0.7)
    half = mine_neighbours(anchor, anchor, memory, memory, k=3, threshold=0.7, similarity_dtype=torch.float16)
    assert exact.index.tolist() == half.index.tolist() == [[2, 1, 3]]
    assert exact.valid.tolist() == [[True, True, False]]
    assert half.valid.tolist() == [[True, False, False]]
    assert half.similarity[0, 0].item() == float(torch.tensor(0.7012).half())
    assert exact.similarity[0, 0].item() == pytest.approx(0.7012, abs=1e-6)


def test_fewer_memory_rows_than_k():
    memory = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    nb = mine_neighbours(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), memory, memory, k=3)
    assert nb.index.shape == (1, 3) and nb.valid.tolist() == [[True, False, False]]


# ----------------------------------------------------------------------------- weights and relation


def test_neighbour_weights_hand_computed():
    s = torch.tensor([[0.9, 0.8, 0.0], [0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False], [False, False, False]])
    w = neighbour_weights(s, valid, gamma=1.0)
    z = math.e + math.exp(0.9) + math.exp(0.8)
    assert w[0, 0].item() == pytest.approx(1 - math.exp(0.9) / z, rel=1e-6)
    assert w[0, 1].item() == pytest.approx(1 - math.exp(0.8) / z, rel=1e-6)
    assert w[0, 2] == 0 and torch.all(w[1] == 0)
    assert w[0, 0] < w[0, 1]  # the more similar neighbour weighs less (Eq. 14)
    w5 = neighbour_weights(s, valid, gamma=5.0)
    z5 = math.exp(5) + math.exp(4.5) + math.exp(4.0)
    assert w5[0, 0].item() == pytest.approx(1 - math.exp(4.5) / z5, rel=1e-6)


def test_group_relation_hand_case():
    valid = torch.tensor([[True, True, False], [False, False, False], [False, True, False]])
    weights = torch.tensor([[0.4, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.6, 0.0]])
    group, r = group_relation(valid, weights)
    assert group.tolist() == [0, 1, 2, 0, 0, 2]
    expected = torch.tensor([
        [1, 0, 0, 0.4, 0.5, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0.6],
        [1, 0, 0, 1, 1, 0],
        [1, 0, 0, 1, 1, 0],
        [0, 0, 1, 0, 0, 1],
    ])  # fmt: skip
    assert torch.allclose(r, expected)
    _, r_batch = group_relation(valid, weights, query_rows="batch")
    assert torch.equal(r_batch, r[:3])


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 8), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_group_relation_targets_are_distributions(b, k, seed):
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(b, k, generator=g) < 0.5
    sims = 0.7 + 0.3 * torch.rand(b, k, generator=g)
    _, r = group_relation(valid, neighbour_weights(sims, valid))
    t = relation_targets(r)
    assert r.shape == (b + int(valid.sum()),) * 2
    assert torch.allclose(t.sum(1), torch.ones(r.shape[0]))
    assert torch.equal(t == 0, r == 0)
    assert torch.all(r.diagonal() == 1)


def test_no_neighbour_gives_the_plain_batch():
    image, text = F.normalize(randn(5, 8, seed=1), dim=1), F.normalize(randn(5, 8, seed=2), dim=1)
    memory = -image  # every memory row is dissimilar
    loss = gsrc_loss(image, text, memory, memory)
    assert loss.item() == pytest.approx(bidirectional_sdm_loss(image, text, torch.eye(5)).item(), rel=1e-6)


def test_enlarged_features_order_and_gradient():
    image = randn(2, 4, seed=0).requires_grad_()
    text = randn(2, 4, seed=1)
    mem_i, mem_t = randn(6, 4, seed=2).half(), randn(6, 4, seed=3).half()
    valid = torch.tensor([[False, True], [True, True]])
    from wsreid_dgia.functional import Neighbours

    nb = Neighbours(index=torch.tensor([[5, 1], [2, 4]]), similarity=torch.zeros(2, 2), valid=valid)
    big_i, big_t = enlarged_features(image, text, mem_i, mem_t, nb)
    assert big_i.shape == (5, 4) and big_i.dtype == torch.float32
    assert torch.allclose(big_i[2:], F.normalize(mem_i[[1, 2, 4]].float(), dim=1))
    assert torch.allclose(big_t[:2], F.normalize(text, dim=1))
    big_i.sum().backward()
    assert image.grad is not None


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), query_rows=st.sampled_from(["all", "batch"]))
def test_gsrc_loss_invariant_to_permuting_batch_and_memory(seed, query_rows):
    memory_i = clustered(40, 8, seed, groups=5, noise=0.35)
    memory_t = clustered(40, 8, seed, groups=5, noise=0.35) + 0.1 * randn(40, 8, seed=seed + 1)
    idx = torch.tensor([1, 9, 17, 25, 33, 39])
    image = memory_i[idx] + 0.05 * randn(6, 8, seed=seed + 2)
    text = memory_t[idx] + 0.05 * randn(6, 8, seed=seed + 3)
    base = gsrc_loss(image, text, memory_i, memory_t, query_rows=query_rows, self_match="skip_own_index", batch_index=idx)
    g = torch.Generator().manual_seed(seed)
    p, pm = torch.randperm(6, generator=g), torch.randperm(40, generator=g)
    inverse = torch.argsort(pm)  # memory row r moves to inverse[r]
    moved = gsrc_loss(image[p], text[p], memory_i[pm], memory_t[pm], query_rows=query_rows,
                      self_match="skip_own_index", batch_index=inverse[idx[p]])  # fmt: skip
    assert moved.item() == pytest.approx(base.item(), rel=1e-5)


# ----------------------------------------------------------------------------- memory update


def test_momentum_update_hand_values_overwrite_and_duplicates():
    memory = torch.zeros(5, 2)
    memory[1] = torch.tensor([1.0, 1.0])
    momentum_update(memory, torch.tensor([1, 3]), torch.tensor([[2.0, 0.0], [4.0, 4.0]]), alpha=0.9)
    assert torch.allclose(memory[1], torch.tensor([0.9 * 2 + 0.1, 0.1]))
    assert torch.allclose(memory[3], torch.tensor([3.6, 3.6]))
    momentum_update(memory, torch.tensor([3]), torch.tensor([[1.0, 2.0]]), overwrite=torch.tensor([True]))
    assert torch.equal(memory[3], torch.tensor([1.0, 2.0]))
    momentum_update(memory, torch.tensor([0, 0]), torch.tensor([[1.0, 1.0], [5.0, 5.0]]), alpha=1.0)
    assert torch.equal(memory[0], torch.tensor([5.0, 5.0]))  # last occurrence wins
    half = torch.zeros(3, 2, dtype=torch.float16)
    momentum_update(half, torch.tensor([2]), torch.tensor([[1.0, -1.0]]), alpha=0.9)
    assert half.dtype == torch.float16 and torch.allclose(half[2].float(), torch.tensor([0.9, -0.9]), atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), data=st.data())
def test_memory_rows_change_only_at_the_batch_indices(n, data):
    index = torch.tensor(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    memory = randn(n, 3, seed=n)
    before = memory.clone()
    momentum_update(memory, index, randn(len(index), 3, seed=n + 1), alpha=data.draw(st.floats(0.1, 1.0)))
    untouched = torch.ones(n, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(memory[untouched], before[untouched])
