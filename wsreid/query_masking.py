"""Degraded queries: evaluation with a share of each query's word tokens masked
(``wsreid eval --query-mask-ratio``; docs/method.md, "Retrieval metrics").

For each ratio r, every test caption
has ``round(r * n)`` of its n word tokens (at least one when r > 0) replaced by the
encoder's mask token; word tokens are attended positions whose id is not in
``encoder.special_token_ids``. Which tokens is a random permutation per caption, seeded by
(``--mask-seed``, caption index), the same permutation for every r: the tokens masked at
0.1 are also masked at 0.3 (nested masks keep the curve free of resampling noise).
"""

from __future__ import annotations

import math

from wsreid.errors import UserError

__all__ = ["parse_ratios", "mask_query_tokens", "masked_text_features"]


def parse_ratios(text: str | None) -> list[float]:
    """``"0.1,0.3"`` -> [0.1, 0.3]; each ratio in [0, 1). Raises UserError otherwise."""
    if text is None:
        return []
    ratios = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"--query-mask-ratio: {part.strip()!r} is not a number",
                            hint="give comma-separated ratios such as 0.1,0.3,0.5") from None
        ratio = check_mask_ratio(value, "--query-mask-ratio")
        if ratio in ratios:
            raise UserError(f"--query-mask-ratio {text}: ratio {part.strip()} is given twice",
                            hint="list each ratio once")
        ratios.append(ratio)
    return ratios


def check_mask_ratio(value: float, name: str = "ratio") -> float:
    """``value`` when it is a number in [0, 1) (the share of word tokens masked); a
    :class:`UserError` naming ``name`` (the option or argument it came from) otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UserError(f"{name}: {value!r} is outside [0, 1)" if isinstance(value, (int, float))
                        else f"{name}: {value!r} is not a number", hint="a ratio is a share of word tokens")
    return float(value)


def _row_generator(seed: int, index: int):
    import torch

    return torch.Generator().manual_seed((seed * 0x9E3779B1 + index * 0x85EBCA77 + 1) % (2**63 - 1))


def mask_query_tokens(input_ids, attention_mask, ratio: float, mask_token_id: int, special_token_ids,
                      row_indices, seed: int = 0):
    """B x L ids -> B x L ids with ``round(ratio * n)`` of each row's n word tokens (at least
    one when ratio > 0) set to ``mask_token_id``. The positions are the first ones of a
    random permutation drawn per row from (``seed``, ``row_indices[b]``)."""
    import torch

    out = input_ids.clone()
    if ratio <= 0.0:
        return out
    special = torch.tensor(sorted(special_token_ids), dtype=input_ids.dtype, device=input_ids.device)
    word = attention_mask.bool() & ~torch.isin(input_ids, special)
    for b, index in enumerate(row_indices):
        positions = word[b].nonzero().flatten()
        n = int(positions.numel())
        if n == 0:
            continue
        k = min(n, max(1, math.floor(ratio * n + 0.5)))
        order = torch.randperm(n, generator=_row_generator(seed, int(index)))
        out[b, positions[order[:k]]] = mask_token_id
    return out


def masked_text_features(encoder, captions: list[str], ratio: float, seed: int, batch_size: int, device):
    """N x d L2-normalised text features of ``captions`` with masked word tokens (see
    :func:`mask_query_tokens`); ratio 0 gives exactly the unmasked features."""
    import torch
    import torch.nn.functional as F

    from wsreid.engine.data import check_tokens

    feats = []
    with torch.no_grad():
        for start in range(0, len(captions), batch_size):
            stop = min(start + batch_size, len(captions))
            ids, mask = check_tokens(encoder.tokenize(captions[start:stop]), stop - start, encoder.max_length)
            ids = mask_query_tokens(ids, mask, ratio, encoder.mask_token_id, encoder.special_token_ids,
                                    range(start, stop), seed)
            feats.append(F.normalize(encoder.encode_text(ids.to(device), mask.to(device)).float(), dim=-1))
    return torch.cat(feats) if feats else torch.zeros(0, encoder.embed_dim, device=device)
