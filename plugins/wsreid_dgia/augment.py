"""Information-reducing operators of IASC-CL (docs/method.md; Eq. 19-20).

Both operators work on whole batches on the batch's device and take their randomness as
a tensor of uniforms in [0, 1) (B x :data:`IMAGE_UNIFORMS` for images, B x L for text), so
they are deterministic functions that tests can drive. :func:`sample_uniforms` draws those
uniforms per sample from a generator seeded by (run seed, step, dataset index): a sample
gets the same augmentation however the batch is split across processes.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

__all__ = [
    "IMAGE_UNIFORMS",
    "ERASE_ATTEMPTS",
    "sample_seed",
    "sample_uniforms",
    "augment_images",
    "mask_tokens",
]

#: Attempts to place an erasing rectangle (as torchvision's RandomErasing).
ERASE_ATTEMPTS = 10
#: Uniforms per image: flip, crop row, crop column, erase-or-not, then 4 per attempt.
IMAGE_UNIFORMS = 4 + 4 * ERASE_ATTEMPTS

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, step: int, index: int, stream: int = 0) -> int:
    """A 63-bit generator seed for one sample at one step (``stream`` separates uses)."""
    h = _splitmix64(seed & _MASK64)
    for part in (step, index, stream):
        h = _splitmix64(h ^ (part & _MASK64))
    return h >> 1


def sample_uniforms(
    seed: int, step: int, indices: Iterable[int], count: int, stream: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """B x ``count`` float64 uniforms in [0, 1), row b from a ``torch.Generator`` seeded by
    :func:`sample_seed` (seed, step, ``indices[b]``, stream)."""
    rows = []
    for index in indices:
        gen = torch.Generator().manual_seed(sample_seed(seed, step, int(index), stream))
        rows.append(torch.rand(count, generator=gen, dtype=torch.float64))
    if not rows:
        return torch.zeros(0, count, dtype=torch.float64, device=device)
    return torch.stack(rows).to(device)


def augment_images(
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
    """Image operator ``A_v`` on normalised images, B x C x H x W -> B x C x H x W.

    Per sample: horizontal flip with ``flip_prob``; pad ``pad`` px of black (``-mean/std``
    once normalised) on every side and crop an H x W window at a uniformly drawn offset;
    then with ``erase_prob`` random erasing of a rectangle of area ``erase_area`` x H W and
    aspect ratio log-uniform in ``erase_aspect`` (first of :data:`ERASE_ATTEMPTS` draws that
    fits; none fits = no erasing), filled with ``erase_fill`` per channel (in normalised
    units; None = 0, the mean colour). ``uniforms``: B x :data:`IMAGE_UNIFORMS`.
    """
    b, c, h, w = images.shape
    if uniforms.shape != (b, IMAGE_UNIFORMS):
        raise ValueError(f"augment_images needs uniforms of shape {(b, IMAGE_UNIFORMS)}, got {tuple(uniforms.shape)}")
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

    attempts = u[:, 4:].reshape(b, ERASE_ATTEMPTS, 4)
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


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    uniforms: torch.Tensor,
    mask_token_id: int,
    special_token_ids: Iterable[int] = (),
    pad_token_id: int | None = None,
    ratio: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text operator ``A_t``: B x L ids -> (masked ids B x L, masked positions B x L bool).

    A word token is a position with ``attention_mask`` set whose id is neither padding nor
    special. Each is replaced by ``mask_token_id`` when its uniform is below ``ratio``;
    a caption with word tokens but none drawn gets its token with the smallest uniform
    masked, so at least one is always masked. ``uniforms``: B x L.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must lie in (0, 1), got {ratio}")
    u = uniforms.to(input_ids.device)
    word = attention_mask.bool()
    if pad_token_id is not None:
        word &= input_ids != pad_token_id
    special = list(special_token_ids)
    if special:
        word &= ~torch.isin(input_ids, torch.tensor(special, dtype=input_ids.dtype, device=input_ids.device))
    masked = word & (u < ratio)
    lacking = word.any(dim=1) & ~masked.any(dim=1)
    forced = torch.argmin(u.masked_fill(~word, float("inf")), dim=1)
    masked[lacking, forced[lacking]] = True
    return input_ids.masked_fill(masked, mask_token_id), masked
