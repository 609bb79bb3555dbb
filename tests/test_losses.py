"""wsreid.losses and the standard objectives: hand-computed values, brute-force references,
properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wsreid.api import Batch, BuildContext, Relation, StepContext, ViewFeatures
from wsreid.losses import bidirectional_sdm_loss, itc_loss, relation_targets, sdm_loss
from wsreid_standard.components import IdentityPairs, ItcObjective, SdmObjective

CTX = StepContext(epoch=1, step=0, num_epochs=1, dist=None)


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def random_relation(q: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(q, n, generator=g, dtype=torch.float64)
    w = torch.where(torch.rand(q, n, generator=g) < 0.6, torch.zeros_like(w), w.clamp_min(0.05))
    w[torch.arange(q), torch.arange(q)] = 1.0
    return w


def brute_sdm(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, tau: float, eps: float) -> float:
    """Plain-Python reference of docs/method.md (one direction)."""
    total = 0.0
    for i in range(w.shape[0]):
        logits = [float(x[i] @ y[j]) / tau for j in range(y.shape[0])]
        m = max(logits)
        z = sum(math.exp(v - m) for v in logits)
        p = [math.exp(v - m) / z for v in logits]
        rel = [j for j in range(w.shape[1]) if w[i, j] > 0]
        zq = sum(math.exp(float(w[i, j])) for j in rel)
        q = [math.exp(float(w[i, j])) / zq if w[i, j] > 0 else 0.0 for j in range(w.shape[1])]
        total += sum(p[j] * (math.log(p[j]) - math.log(q[j] + eps)) for j in range(len(p)))
    return total / w.shape[0]


# ----------------------------------------------------------------------------- targets


def test_relation_targets_hand_computed_example():
    # docs/method.md: R_ii = 1 and k = 2 related items at 0.1 -> q_ii = e / (e + 2 e^0.1)
    q = relation_targets(torch.tensor([[1.0, 0.1, 0.1, 0.0]]))
    z = math.e + 2 * math.exp(0.1)
    assert q[0, 0].item() == pytest.approx(math.e / z, rel=1e-6)
    assert q[0, 1].item() == pytest.approx(math.exp(0.1) / z, rel=1e-6)
    assert q[0, 3].item() == 0.0
    assert q.dtype == torch.float32


@settings(max_examples=40, deadline=None)
@given(q=st.integers(1, 6), extra=st.integers(0, 6), seed=st.integers(0, 10_000))
def test_relation_targets_are_distributions_with_zero_mass_exactly_on_unrelated(q, extra, seed):
    w = random_relation(q, q + extra, seed)
    t = relation_targets(w)
    assert torch.allclose(t.sum(1), torch.ones(q, dtype=t.dtype), atol=1e-12)
    assert torch.equal(t == 0, w == 0)
    assert (t >= 0).all()


def test_relation_targets_carry_no_gradient():
    w = torch.tensor([[1.0, 0.5], [0.5, 1.0]], requires_grad=True)
    assert not relation_targets(w).requires_grad
    x = unit(2, 4, 0).float().requires_grad_()
    sdm_loss(x, x.detach(), w).backward()
    assert w.grad is None and x.grad is not None


# ----------------------------------------------------------------------------- SDM


def test_sdm_hand_computed_two_by_two():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    # tau = 1: row 0 logits [1, 0] -> p = [e, 1] / (e + 1); q = [e, e^0.5] / (e + e^0.5)
    p0 = [math.e / (math.e + 1), 1 / (math.e + 1)]
    q0 = [math.e / (math.e + math.exp(0.5)), math.exp(0.5) / (math.e + math.exp(0.5))]
    row0 = sum(p * (math.log(p) - math.log(q + 1e-6)) for p, q in zip(p0, q0))
    # row 1 logits [0, 1] -> p = [1, e] / (e + 1); q = [0, 1]
    p1 = [1 / (math.e + 1), math.e / (math.e + 1)]
    row1 = p1[0] * (math.log(p1[0]) - math.log(1e-6)) + p1[1] * (math.log(p1[1]) - math.log(1 + 1e-6))
    got = sdm_loss(x, x, w, temperature=1.0).item()
    assert got == pytest.approx((row0 + row1) / 2, rel=1e-5)


@pytest.mark.parametrize("q,n,tau", [(4, 4, 0.02), (3, 7, 0.1), (1, 5, 1.0)])
def test_sdm_matches_brute_force(q, n, tau):
    x, y, w = unit(q, 8, 1), unit(n, 8, 2), random_relation(q, n, 3)
    assert sdm_loss(x, y, w, tau).item() == pytest.approx(brute_sdm(x, y, w, tau, 1e-6), rel=1e-9)


def test_sdm_is_zero_when_prediction_equals_target_up_to_eps():
    # targets uniform over two related items, prediction uniform over the same two
    x = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([[1.0, 1.0, 0.0]])
    loss = sdm_loss(x, y, w, temperature=0.001)
    assert abs(loss.item()) < 1e-5


def test_sdm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        sdm_loss(unit(3, 4, 0), unit(4, 4, 1), torch.eye(3))


def test_bidirectional_sdm_sums_both_directions_over_query_rows():
    img, txt, w = unit(6, 8, 4), unit(6, 8, 5), random_relation(4, 6, 6)
    expected = brute_sdm(txt[:4], img, w, 0.02, 1e-6) + brute_sdm(img[:4], txt, w, 0.02, 1e-6)
    assert bidirectional_sdm_loss(img, txt, w).item() == pytest.approx(expected, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_bidirectional_sdm_invariant_to_permuting_the_batch(n, seed):
    img, txt, w = unit(n, 6, seed), unit(n, 6, seed + 1), random_relation(n, n, seed + 2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a = bidirectional_sdm_loss(img, txt, w)
    b = bidirectional_sdm_loss(img[perm], txt[perm], w[perm][:, perm])
    assert a.item() == pytest.approx(b.item(), rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------- ITC


def test_itc_hand_computed():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    tau = 0.5
    s = [[1.0, 0.6], [0.0, 0.8]]  # s[i][j] = cos(v_i, t_j)
    lse = lambda v: math.log(sum(math.exp(a / tau) for a in v))  # noqa: E731
    v2t = -((s[0][0] / tau - lse(s[0])) + (s[1][1] / tau - lse(s[1]))) / 2
    cols = [[s[0][0], s[1][0]], [s[0][1], s[1][1]]]
    t2v = -((s[0][0] / tau - lse(cols[0])) + (s[1][1] / tau - lse(cols[1]))) / 2
    assert itc_loss(img, txt, tau).item() == pytest.approx((v2t + t2v) / 2, rel=1e-6)
    assert itc_loss(img, txt, tau, reduction="sum").item() == pytest.approx(v2t + t2v, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_itc_invariant_to_permuting_the_batch(n, seed):
    img, txt = unit(n, 5, seed), unit(n, 5, seed + 7)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assert itc_loss(img, txt).item() == pytest.approx(itc_loss(img[perm], txt[perm]).item(), rel=1e-9, abs=1e-12)


def test_itc_promotes_half_precision_and_rejects_bad_input():
    img, txt = unit(4, 8, 0), unit(4, 8, 1)
    half = itc_loss(img.half(), txt.half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(itc_loss(img, txt).item(), rel=2e-3)
    with pytest.raises(ValueError, match="reduction"):
        itc_loss(img, txt, reduction="max")
    with pytest.raises(ValueError, match="differ in shape"):
        itc_loss(img, txt[:3])


# ----------------------------------------------------------------------------- standard components


def make_batch(n: int) -> Batch:
    return Batch(
        images=torch.randn(n, 3, 8, 4),
        input_ids=torch.randint(0, 50, (n, 6)),
        attention_mask=torch.ones(n, 6, dtype=torch.long),
        index=torch.arange(n),
        image_id=torch.arange(n),
        person_id=torch.arange(n),
    )


def test_standard_components_defaults_follow_the_code_and_reject_unknown_keys():
    assert ItcObjective.Params().temperature == 0.02
    assert ItcObjective.Params().reduction == "mean_of_directions"
    p = SdmObjective.Params(relation="lrc_b")
    assert (p.temperature, p.eps) == (0.02, 1e-6)
    with pytest.raises(ValidationError, match=r"temprature\n  Extra inputs are not permitted"):
        ItcObjective.Params(temprature=0.1)
    with pytest.raises(ValidationError, match=r"relation\n  Field required"):
        SdmObjective.Params()  # relation is required


def test_itc_objective_reads_its_view():
    img, txt = unit(5, 8, 0).float(), unit(5, 8, 1).float()
    feats = {"base": ViewFeatures(img, txt), "asymmetric": ViewFeatures(txt, img.flip(0))}
    obj = ItcObjective(ItcObjective.Params(reduction="sum"), BuildContext())
    assert obj.loss(feats, {}, make_batch(5), CTX).item() == pytest.approx(itc_loss(img, txt, reduction="sum").item())
    obj = ItcObjective(ItcObjective.Params(view="asymmetric"), BuildContext())
    assert obj.loss(feats, {}, make_batch(5), CTX).item() == pytest.approx(itc_loss(txt, img.flip(0)).item())


def test_sdm_objective_uses_named_relation_and_skips_when_absent():
    img, txt, w = unit(6, 8, 2).float(), unit(6, 8, 3).float(), random_relation(4, 6, 1).float()
    rel = Relation(image=img, text=txt, weights=w)
    obj = SdmObjective(SdmObjective.Params(relation="memory"), BuildContext())
    feats = {"base": ViewFeatures(img[:4], txt[:4])}
    assert obj.loss(feats, {"memory": rel}, make_batch(4), CTX).item() == pytest.approx(
        bidirectional_sdm_loss(img, txt, w).item(), rel=1e-6
    )
    assert obj.loss(feats, {"other": rel}, make_batch(4), CTX) is None


def test_identity_pairs_give_the_batch_as_base_view():
    batch = make_batch(3)
    views = IdentityPairs(IdentityPairs.Params(), BuildContext()).views(batch, encoder=None)
    assert list(views) == ["base"]
    assert views["base"].images is batch.images and views["base"].input_ids is batch.input_ids
