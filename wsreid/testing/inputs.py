"""Small random inputs with a known structure, for conformance checks and plugin tests.

Items come in groups ("persons"): every item of a group lies close to the group's centre
in both modalities (cosine about 0.99), centres of different groups are random (cosine
about 0 +- 0.25 in 16 dimensions). So a sensible association relates items of a group and
leaves the others unrelated, and a loss has something to learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsreid.api import Batch, BuildContext, EncoderComponent, Params, Relation, StepContext, ViewFeatures
from wsreid.distributed import Distributed

__all__ = [
    "CAPTIONS",
    "StubEncoder",
    "group_centres",
    "grouped_features",
    "random_batch",
    "group_relation",
    "permute_batch",
    "permute_features",
    "permute_relation",
    "step_context",
]

#: Captions for tokenizers and encoders that build a vocabulary from the training captions.
CAPTIONS = [
    "A man in a red shirt and blue jeans carries a black bag.",
    "The woman wears a white coat, black trousers and brown shoes.",
    "A man with short black hair, a green jacket and white shoes.",
    "A woman in a long red dress; she carries a black handbag.",
    "A young man in a grey hoodie, dark shorts and a cap.",
    "The person wears a yellow t-shirt, blue shorts and sandals.",
    "A woman with a ponytail in a pink sweater and a white skirt.",
    "A man in a black suit with a striped tie holds a phone.",
]

#: Token ids of :class:`StubEncoder` and :func:`random_batch` (as the built CLIP tokenizer).
PAD, UNK, MASK, START, END = 0, 1, 2, 3, 4
VOCAB = 64
#: Norm of the raw (unnormalised) features of :func:`grouped_features`.
RAW_NORM = 3.0


class StubEncoder(EncoderComponent):
    """An encoder with the attributes pair constructions read (sizes, normalisation,
    special tokens) and a fixed linear map as its features; no training."""

    mask_token_id = MASK
    pad_token_id = PAD
    special_token_ids = frozenset({PAD, UNK, MASK, START, END})

    def __init__(self, image_size: tuple[int, int] = (32, 16), max_length: int = 12, embed_dim: int = 16):
        super().__init__(Params(), BuildContext())
        self.image_size, self.max_length, self.embed_dim = image_size, max_length, embed_dim
        gen = torch.Generator().manual_seed(0)
        self.image_map = torch.randn(3, embed_dim, generator=gen)
        self.token_map = torch.randn(VOCAB, embed_dim, generator=gen)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Mean colour of each image, mapped to ``embed_dim``."""
        return images.mean(dim=(2, 3)) @ self.image_map

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sum of the attended tokens' fixed embeddings."""
        return (self.token_map[input_ids] * attention_mask[..., None]).sum(dim=1)


def _generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


def group_centres(groups: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text centres of ``groups`` persons, each ``groups x dim``, unit rows."""
    gen = _generator(seed)
    return F.normalize(torch.randn(groups, dim, generator=gen), dim=1), F.normalize(torch.randn(groups, dim, generator=gen), dim=1)


def grouped_features(
    person_ids: torch.Tensor,
    dim: int = 16,
    *,
    views: tuple[str, ...] = ("base",),
    noise: float = 0.05,
    seed: int = 0,
    centre_seed: int = 1234,
    requires_grad: bool = True,
) -> dict[str, ViewFeatures]:
    """L2-normalised features (B x dim per modality) for the persons in ``person_ids`` (B),
    one :class:`ViewFeatures` per view, with raw features (``image_raw``, ``text_raw``: the
    same directions at norm ``RAW_NORM``, as an encoder returns them unnormalised). Leaf
    tensors, all four, with gradient when ``requires_grad`` (so a check can see what
    carries gradient)."""
    groups = int(person_ids.max()) + 1 if person_ids.numel() else 1
    image_c, text_c = group_centres(groups, dim, centre_seed)
    gen = _generator(seed)
    out = {}

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().requires_grad_(requires_grad)

    for view in views:
        image = F.normalize(image_c[person_ids] + noise * torch.randn(len(person_ids), dim, generator=gen), dim=1)
        text = F.normalize(text_c[person_ids] + noise * torch.randn(len(person_ids), dim, generator=gen), dim=1)
        out[view] = ViewFeatures(leaf(image), leaf(text), leaf(RAW_NORM * image), leaf(RAW_NORM * text))
    return out


def random_batch(
    person_ids: torch.Tensor,
    index: torch.Tensor | None = None,
    *,
    image_size: tuple[int, int] = (32, 16),
    length: int = 12,
    seed: int = 0,
) -> Batch:
    """A batch for ``person_ids`` (B): normalised random images B x 3 x H x W and captions
    ``START w.. END PAD..`` of 3 to ``length - 2`` words (ids of :class:`StubEncoder`);
    ``index`` (dataset indices) defaults to ``0..B-1``."""
    b = len(person_ids)
    gen = _generator(seed)
    images = torch.randn(b, 3, *image_size, generator=gen)
    ids = torch.full((b, length), PAD, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.long)
    words = torch.randint(3, max(length - 1, 4), (b,), generator=gen).clamp(max=length - 2)
    for row, n in enumerate(words.tolist()):
        ids[row, 0] = START
        ids[row, 1 : 1 + n] = torch.randint(END + 1, VOCAB, (n,), generator=gen)
        ids[row, 1 + n] = END
        mask[row, : n + 2] = 1
    index = torch.arange(b) if index is None else torch.as_tensor(index, dtype=torch.long)
    return Batch(images=images, input_ids=ids, attention_mask=mask, index=index,
                 image_id=index.clone(), person_id=torch.as_tensor(person_ids, dtype=torch.long))


def group_relation(person_ids: torch.Tensor, related_weight: float = 0.5, extra: torch.Tensor | None = None) -> torch.Tensor:
    """A relation for ``person_ids`` (B): 1 on the diagonal, ``related_weight`` between
    other items of a person, 0 elsewhere; B x B, or B x (B + M) when ``extra`` gives the
    person ids of M further candidate rows (e.g. memory)."""
    columns = person_ids if extra is None else torch.cat([person_ids, extra])
    same = person_ids[:, None] == columns[None, :]
    weights = same.float() * related_weight
    b = len(person_ids)
    weights[torch.arange(b), torch.arange(b)] = 1.0
    return weights


def permute_batch(batch: Batch, perm: torch.Tensor) -> Batch:
    """``batch`` with its items reordered by ``perm`` (fields without B rows unchanged)."""
    b = len(batch)

    def take(t: torch.Tensor) -> torch.Tensor:
        return t[perm] if t.dim() > 0 and t.shape[0] == b else t

    return Batch(**{k: take(v) for k, v in batch.__dict__.items()})


def permute_features(features: dict[str, ViewFeatures], perm: torch.Tensor) -> dict[str, ViewFeatures]:
    """Every view's rows reordered by ``perm``, as new leaf tensors with the same
    ``requires_grad``."""
    def rows(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach()[perm].requires_grad_(t.requires_grad)

    return {v: ViewFeatures(rows(f.image), rows(f.text), rows(f.image_raw), rows(f.text_raw)) for v, f in features.items()}


def permute_relation(relation: Relation, perm: torch.Tensor, features: ViewFeatures | None = None) -> Relation:
    """``relation`` over a batch reordered by ``perm`` (B = ``len(perm)`` batch rows; later
    rows, e.g. memory, stay in place). ``features`` gives the permuted batch rows (so
    that gradient reaches them); otherwise the rows are reordered copies."""
    b = len(perm)
    n = relation.num_candidates
    full = torch.cat([perm, torch.arange(b, n)])
    q = relation.num_queries
    if q < b:
        raise ValueError(f"permute_relation needs every batch row among the queries (Q={q} < B={b})")
    rows = full[:q]
    image, text = relation.image.detach()[full], relation.text.detach()[full]
    if features is not None:
        image = torch.cat([features.image, image[b:]])
        text = torch.cat([features.text, text[b:]])
    return Relation(image=image, text=text, weights=relation.weights[rows][:, full], view=relation.view,
                    stats=dict(relation.stats))


def step_context(epoch: int = 1, step: int = 0, num_epochs: int = 3) -> StepContext:
    """A single-process :class:`StepContext`."""
    return StepContext(epoch=epoch, step=step, num_epochs=num_epochs, dist=Distributed())
