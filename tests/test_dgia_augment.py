"""IASC operators and pair construction: exact behaviour under chosen uniforms,
statistics of the random draws, reproducibility, independence from batch composition."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from wsreid.api import Batch, BuildContext
from wsreid.errors import TrainingError
import math

import wsreid_dgia.augment as augment
from wsreid_dgia.augment import IMAGE_UNIFORMS, augment_images, mask_tokens, sample_uniforms
from wsreid_dgia.pairs import InformationAsymmetricPairs

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
BLACK = torch.tensor([-m / s for m, s in zip(MEAN, STD)])


def uniforms(b, flip=0.99, top=0.5, left=0.5, erase=0.99, attempts=None):
    u = torch.full((b, IMAGE_UNIFORMS), 0.5, dtype=torch.float64)
    u[:, 0], u[:, 1], u[:, 2], u[:, 3] = flip, top, left, erase
    if attempts is not None:
        u[:, 4:8] = torch.tensor(attempts, dtype=torch.float64)
    return u


def images(b=2, h=12, w=6):
    return torch.arange(b * 3 * h * w, dtype=torch.float32).reshape(b, 3, h, w)


def test_centre_crop_without_flip_or_erase_is_identity():
    x = images()
    assert torch.equal(augment_images(x, uniforms(2), MEAN, STD, pad=2), x)


def test_flip_only():
    x = images()
    u = uniforms(2)
    u[0, 0] = 0.1  # flip the first sample only
    out = augment_images(x, u, MEAN, STD, pad=0)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


def test_corner_crop_shows_black_padding():
    x = images(1)
    out = augment_images(x, uniforms(1, top=0.0, left=0.0), MEAN, STD, pad=2)
    assert torch.equal(out[0, :, 2:, 2:], x[0, :, :-2, :-2])
    assert torch.allclose(out[0, :, :2, :], BLACK[:, None, None].expand(3, 2, 6))
    out = augment_images(x, uniforms(1, top=0.999, left=0.999), MEAN, STD, pad=2)
    assert torch.equal(out[0, :, :-2, :-2], x[0, :, 2:, 2:])


def test_erasing_rectangle_hand_case():
    # area 0.25 * 48 = 12 px with aspect 3 (u=1 of log range [log 1/3, log 3]) -> h 6, w 2;
    # top = floor(0.5 * (12 - 6 + 1)) = 3, left = floor(0.5 * (4 - 2 + 1)) = 1
    x = torch.zeros(1, 3, 12, 4)
    u = uniforms(1, erase=0.1, attempts=[(0.25 - 0.1) / 0.3, 0.999999, 0.5, 0.5])
    out = augment_images(x, u, MEAN, STD, pad=0, erase_area=(0.1, 0.4), erase_aspect=(1 / 3, 3), erase_fill=(7, 8, 9))
    region = torch.zeros(12, 4, dtype=torch.bool)
    region[3:9, 1:3] = True
    assert torch.equal(out[0, 0] == 7, region) and torch.all(out[0, 2][region] == 9)
    assert torch.all(out[0][:, ~region] == 0)
    out0 = augment_images(x, u, MEAN, STD, pad=0, erase_area=(0.1, 0.4), erase_aspect=(1 / 3, 3))
    assert torch.equal(out0, x)  # default fill is the mean colour: 0 once normalised
    assert torch.equal(augment_images(x, uniforms(1, erase=0.9), MEAN, STD, pad=0), x)  # not drawn


def test_erasing_statistics_and_shape_checks():
    b = 400
    x = torch.zeros(b, 3, 48, 16)
    u = sample_uniforms(0, 0, range(b), IMAGE_UNIFORMS)
    out = augment_images(x, u, MEAN, STD, pad=0, erase_fill=(1, 1, 1))
    share = (out[:, 0] == 1).float().mean(dim=(1, 2))
    erased = share > 0
    assert 0.4 < erased.float().mean() < 0.6  # erase_prob 0.5
    assert share[erased].min() >= 0.015 and share[erased].max() <= 0.42  # area 0.02-0.4 (rounding)
    flipped = augment_images(images(b, 4, 4), u, MEAN, STD, pad=0, erase_prob=0.0)
    assert 0.4 < (flipped[:, :, :, 0] != images(b, 4, 4)[:, :, :, 0]).any(dim=(1, 2)).float().mean() < 0.6
    with pytest.raises(ValueError, match="uniforms"):
        augment_images(x, u[:, :3], MEAN, STD)


def test_mask_tokens_rules():
    ids = torch.tensor([[1, 10, 11, 12, 2, 0, 0], [1, 13, 2, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0]])
    mask = (torch.arange(7) < torch.tensor([5, 3, 2])[:, None]).long()
    u = torch.tensor([[0.0, 0.1, 0.9, 0.2, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0] * 7])
    out, masked = mask_tokens(ids, mask, u, mask_token_id=99, special_token_ids={1, 2}, pad_token_id=0, ratio=0.5)
    assert out.tolist() == [[1, 99, 11, 99, 2, 0, 0], [1, 99, 2, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0]]
    assert masked.sum().item() == 3  # row 1 forced (0.8 > r), row 2 has no word token
    with pytest.raises(ValueError, match="ratio"):
        mask_tokens(ids, mask, u, 99, ratio=1.0)


def test_mask_ratio_statistics():
    b, length = 64, 40
    ids = torch.randint(10, 100, (b, length))
    u = sample_uniforms(3, 5, range(b), length)
    _, masked = mask_tokens(ids, torch.ones_like(ids), u, 7, ratio=0.3)
    assert 0.26 < masked.float().mean() < 0.34
    assert masked.any(dim=1).all()


def test_sample_uniforms_depend_on_sample_not_on_batch():
    a = sample_uniforms(0, 4, [5, 9], 6)
    b = sample_uniforms(0, 4, [2, 5], 6)
    assert torch.equal(a[0], b[1])
    assert not torch.equal(a[0], sample_uniforms(0, 5, [5], 6)[0])
    assert not torch.equal(a[0], sample_uniforms(1, 4, [5], 6)[0])
    assert not torch.equal(a[0], sample_uniforms(0, 4, [5], 6, stream=1)[0])
    assert a.dtype == torch.float64 and (a >= 0).all() and (a < 1).all()


# ----------------------------------------------------------------------------- component

ENCODER = SimpleNamespace(image_mean=MEAN, image_std=STD, mask_token_id=99, pad_token_id=0, special_token_ids=frozenset({1, 2}))


def batch(index):
    n = len(index)
    ids = torch.randint(10, 90, (n, 9), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, 7], ids[:, 8] = 1, 2, 0
    mask = torch.ones(n, 9, dtype=torch.long)
    mask[:, 8] = 0
    return Batch(images=torch.randn(n, 3, 16, 8, generator=torch.Generator().manual_seed(1)), input_ids=ids,
                 attention_mask=mask, index=torch.tensor(index), image_id=torch.tensor(index),
                 person_id=torch.tensor(index))  # fmt: skip


def test_iasc_views_reproducible_and_shard_independent():
    b = batch([3, 8, 11, 20])
    comp = InformationAsymmetricPairs(InformationAsymmetricPairs.Params(), BuildContext(seed=5))
    views = comp.views(b, ENCODER)
    assert set(views) == {"base", "asymmetric"}
    assert views["base"].images is b.images and views["base"].input_ids is b.input_ids
    asym = views["asymmetric"]
    assert asym.images.shape == b.images.shape and not torch.equal(asym.images, b.images)
    changed = asym.input_ids != b.input_ids
    assert changed.any(dim=1).all() and torch.all(asym.input_ids[changed] == 99)
    assert torch.equal(asym.input_ids[:, [0, 7, 8]], b.input_ids[:, [0, 7, 8]])
    again = InformationAsymmetricPairs(InformationAsymmetricPairs.Params(), BuildContext(seed=5)).views(b, ENCODER)
    assert torch.equal(again["asymmetric"].images, asym.images)
    assert not torch.equal(comp.views(b, ENCODER)["asymmetric"].images, asym.images)  # next step differs
    # two halves on two "processes" give the same augmentation as the whole batch
    halves = []
    for part in ([3, 8], [11, 20]):
        sub = Batch(**{k: v[[0, 1]] if part == [3, 8] else v[[2, 3]] for k, v in b.__dict__.items()})
        halves.append(InformationAsymmetricPairs(InformationAsymmetricPairs.Params(), BuildContext(seed=5)).views(sub, ENCODER))
    assert torch.equal(torch.cat([h["asymmetric"].images for h in halves]), asym.images)
    assert torch.equal(torch.cat([h["asymmetric"].input_ids for h in halves]), asym.input_ids)


def test_iasc_state_resume_and_params():
    b = batch([1, 2])
    comp = InformationAsymmetricPairs(InformationAsymmetricPairs.Params(augment_base=True), BuildContext(seed=0))
    comp.views(b, ENCODER)
    state = comp.state_tensors()
    assert state["step"].tolist() == [1]
    resumed = InformationAsymmetricPairs(InformationAsymmetricPairs.Params(augment_base=True), BuildContext(seed=0))
    resumed.load_state_tensors(state)
    v1, v2 = comp.views(b, ENCODER), resumed.views(b, ENCODER)
    assert torch.equal(v1["asymmetric"].images, v2["asymmetric"].images)
    assert not torch.equal(v1["base"].images, b.images)  # augment_base
    assert not torch.equal(v1["base"].images, v1["asymmetric"].images)
    with pytest.raises(TrainingError) as caught:
        resumed.load_state_tensors({"bogus": torch.zeros(1)})
    assert str(caught.value) == "iasc state holds ['bogus'], expected ['step']"
    p = InformationAsymmetricPairs.Params()
    assert (p.mask_ratio, p.augment_base, p.pad, p.erase_area) == (0.5, False, 10, (0.02, 0.4))
    for bad, says in (({"mask_ratio": 0.0}, r"mask_ratio\n  Input should be greater than 0"),
                      ({"mask_ratio": 1.0}, r"mask_ratio\n  Input should be less than 1"),
                      ({"erase_area": (0.4, 0.1)}, r"erase_area\n  Value error, need 0 < min <= max"),
                      ({"colour": 1}, r"colour\n  Extra inputs are not permitted")):
        with pytest.raises(ValidationError, match=says):
            InformationAsymmetricPairs.Params(**bad)


# ----------------------------------------------------------------------------- per-sample = vectorised


def vectorised_reference(
    images: torch.Tensor,
    uniforms: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    flip_prob: float = 0.5,
    pad: int = 10,
    erase_prob: float = 0.5,
    erase_area: tuple[float, float] = (0.02, 0.4),
    erase_aspect: tuple[float, float] = (0.3, 3.3),
    erase_fill: Sequence[float] | None = None,
) -> torch.Tensor:
    """The batch-vectorised formulation (one gather over padded images): the same operator."""
    b, c, h, w = images.shape
    if uniforms.shape != (b, augment.IMAGE_UNIFORMS):
        raise ValueError(f"augment_images needs uniforms of shape {(b, augment.IMAGE_UNIFORMS)}, got {tuple(uniforms.shape)}")
    dev, dtype = images.device, images.dtype
    u = uniforms.to(dev, torch.float64)

    flip = u[:, 0] < flip_prob
    out = torch.where(flip[:, None, None, None], images.flip(-1), images)

    if pad > 0:
        black = (-torch.tensor(mean, dtype=torch.float64) / torch.tensor(std, dtype=torch.float64)).to(dev, dtype)
        padded = black[None, :, None, None].expand(b, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad : pad + h, pad : pad + w] = out
        top = torch.clamp((u[:, 1] * (2 * pad + 1)).long(), max=2 * pad)
        left = torch.clamp((u[:, 2] * (2 * pad + 1)).long(), max=2 * pad)
        rows = top[:, None] + torch.arange(h, device=dev)  # B x H
        cols = left[:, None] + torch.arange(w, device=dev)  # B x W
        batch_idx = torch.arange(b, device=dev)[:, None, None]
        out = padded[batch_idx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # B x C x H x W

    attempts = u[:, 4:].reshape(b, augment.ERASE_ATTEMPTS, 4)
    area = h * w * (erase_area[0] + attempts[..., 0] * (erase_area[1] - erase_area[0]))
    log_lo, log_hi = math.log(erase_aspect[0]), math.log(erase_aspect[1])
    aspect = torch.exp(log_lo + attempts[..., 1] * (log_hi - log_lo))
    eh = torch.round(torch.sqrt(area * aspect)).long()  # B x attempts
    ew = torch.round(torch.sqrt(area / aspect)).long()
    fits = (eh < h) & (ew < w)
    first = torch.argmax(fits.int(), dim=1)  # first fitting attempt (0 if none)
    pick = lambda t: t.gather(1, first[:, None]).squeeze(1)  # noqa: E731
    eh, ew = pick(eh), pick(ew)
    top = torch.clamp((pick(attempts[..., 2]) * (h - eh + 1)).long(), max=h - 1)
    left = torch.clamp((pick(attempts[..., 3]) * (w - ew + 1)).long(), max=w - 1)
    erase = (u[:, 3] < erase_prob) & fits.any(dim=1)
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # B x H
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # B x W
    region = erase[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # B x H x W
    fill = torch.zeros(c, dtype=dtype, device=dev) if erase_fill is None else torch.tensor(erase_fill, dtype=dtype, device=dev)
    return torch.where(region[:, None], fill[None, :, None, None].expand(b, c, h, w), out)



@pytest.mark.parametrize("pad,h,w", [(10, 24, 12), (3, 9, 6), (8, 5, 4), (0, 7, 5)])
def test_per_sample_operator_equals_batch_vectorised_formulation(pad, h, w):
    g = torch.Generator().manual_seed(pad + h)
    images = torch.randn(16, 3, h, w, generator=g)
    u = torch.rand(16, augment.IMAGE_UNIFORMS, generator=g, dtype=torch.float64)
    mean, std = (0.4, 0.5, 0.3), (0.2, 0.3, 0.25)
    for fill in (None, (0.5, -1.0, 2.0)):
        got = augment.augment_images(images, u, mean, std, pad=pad, erase_fill=fill)
        want = vectorised_reference(images, u, mean, std, pad=pad, erase_fill=fill)
        assert torch.equal(got, want)
