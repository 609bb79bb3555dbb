"""The contracts of the kinds that make the model's inputs and features: datasets, pair
constructions and encoders. Same conventions as :mod:`wsreid.testing.kinds`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from wsreid.api import BuildContext, EncoderComponent, EvalSplit, View
from wsreid.engine.data import missing_gallery_image, splits_problem
from wsreid.registry import Entry
from wsreid.testing.contracts import assert_close, check_diagnostics, check_state_round_trip, fail
from wsreid.testing.inputs import CAPTIONS, StubEncoder, permute_batch, random_batch
from wsreid.testing.kinds import permutation, persons, prepare

__all__ = ["check_dataset_entry", "check_encoder_entry", "check_pair_construction_entry"]


# --------------------------------------------------------------------------- pair construction


def check_pair_construction_entry(entry: Entry, data: Mapping[str, Any] | None = None, *, batch_size: int = 8,
                                  seed: int = 0, encoder: EncoderComponent | None = None) -> None:
    """Views including ``"base"``, exactly those the class declares
    (:meth:`~wsreid.api.PairConstruction.declared_views`), each B x 3 x H x W images and B x L long tokens of one
    H, W and L; the batch left unchanged; two fresh instances give permuted views for a
    permuted batch (randomness per sample, e.g. from seed, step and dataset index); an
    instance restored from ``state_tensors()`` continues exactly as the original."""
    s = prepare(entry, data)
    encoder = encoder or StubEncoder()
    person = persons(batch_size, 2, seed)
    batch = random_batch(person, torch.arange(10, 10 + batch_size), image_size=tuple(encoder.image_size),
                         length=int(encoder.max_length), seed=seed)
    original = {k: v.clone() for k, v in batch.__dict__.items()}

    def build() -> Any:
        return s.build(BuildContext(seed=seed, num_train=200, encoder=encoder, image_size=tuple(encoder.image_size)))

    first = build()
    views = first.views(batch, encoder)
    for key, value in original.items():
        if not torch.equal(getattr(batch, key), value):
            fail(s.where, f"views() changed batch.{key} in place; build new tensors instead")
    if not isinstance(views, dict) or "base" not in views:
        fail(s.where, f"views() must return a dict with a 'base' view, got {type(views).__name__} "
                      f"{sorted(views) if isinstance(views, dict) else ''}")
    declared = tuple(entry.cls.declared_views(first.params))
    if set(views) != set(declared):
        fail(s.where, f"views() returned {sorted(views)} but the class declares {sorted(declared)}; set "
                      "view_names (or override declared_views) to the views it produces: recipes are "
                      "checked against it")
    b, _, h, w = batch.images.shape
    length = batch.input_ids.shape[1]
    for name, view in views.items():
        if not isinstance(view, View):
            fail(s.where, f"view {name!r} must be a wsreid.api.View, got {type(view).__name__}")
        if tuple(view.images.shape) != (b, 3, h, w) or not view.images.is_floating_point():
            fail(s.where, f"view {name!r}: images {tuple(view.images.shape)} {view.images.dtype}, expected "
                          f"{(b, 3, h, w)} floating (views are encoded together, so sizes must agree)")
        for what in ("input_ids", "attention_mask"):
            t = getattr(view, what)
            if tuple(t.shape) != (b, length) or t.dtype != torch.long:
                fail(s.where, f"view {name!r}: {what} {tuple(t.shape)} {t.dtype}, expected {(b, length)} torch.long")
        if not torch.isfinite(view.images).all():
            fail(s.where, f"view {name!r}: images hold non-finite values")
    perm = permutation(batch_size, seed)
    permuted = build().views(permute_batch(batch, perm), encoder)
    if set(permuted) != set(views):
        fail(s.where, f"views of a permuted batch are {sorted(permuted)}, expected {sorted(views)}")
    for name in views:
        for what in ("images", "input_ids", "attention_mask"):
            assert_close(getattr(permuted[name], what), getattr(views[name], what)[perm], s.where,
                         f"view {name!r}: {what} of a permuted batch must be the permuted {what} (draw randomness "
                         "per sample, e.g. from the run seed, step and dataset index)", atol=1e-6)
    check_diagnostics(first, s.where)
    restored = check_state_round_trip(first, build, s.where)
    ahead, again = first.views(batch, encoder), restored.views(batch, encoder)
    for name in ahead:
        assert_close(again[name].images, ahead[name].images, s.where,
                     f"view {name!r} after restoring state_tensors() must equal the original's next view", atol=0)
        assert_close(again[name].input_ids, ahead[name].input_ids, s.where,
                     f"view {name!r} tokens after restoring state_tensors() must equal the original's", atol=0)


# --------------------------------------------------------------------------- encoder


def check_encoder_entry(entry: Entry, data: Mapping[str, Any] | None = None, *, batch_size: int = 4,
                        seed: int = 0, captions: list[str] | None = None) -> None:
    """``tokenize`` gives B x max_length long ids and a 0/1 mask (padding = pad id);
    ``encode_image``/``encode_text`` give finite B x embed_dim features with gradient to
    the parameters, equivariant under batch permutation (eval mode); weights restored
    through ``state_dict`` give the same features; ``save_pretrained`` works."""
    s = prepare(entry, data)
    captions = list(captions or CAPTIONS)

    def build() -> Any:
        return s.build(BuildContext(seed=seed, train_captions=captions))

    enc = build()
    size = tuple(getattr(enc, "image_size", ()))
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        fail(s.where, f"image_size must be (height, width) positive ints, got {size!r}")
    for attr in ("embed_dim", "max_length", "pad_token_id", "mask_token_id"):
        if not isinstance(getattr(enc, attr), int):
            fail(s.where, f"{attr} must be an int, got {getattr(enc, attr)!r}")
    b, length, dim = batch_size, enc.max_length, enc.embed_dim
    ids, mask = enc.tokenize(captions[:b])
    for what, t in (("input_ids", ids), ("attention_mask", mask)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (b, length) or t.dtype != torch.long:
            fail(s.where, f"tokenize(): {what} must be {(b, length)} torch.long (padded to max_length), got "
                          f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
    if not bool(((mask == 0) | (mask == 1)).all()) or not bool((mask.sum(1) > 0).all()):
        fail(s.where, "tokenize(): attention_mask must be 0/1 with at least one attended token per row")
    if not bool((ids[mask == 0] == enc.pad_token_id).all()):
        fail(s.where, f"tokenize(): padded positions (mask 0) must hold pad_token_id {enc.pad_token_id}")
    images = torch.randn(b, 3, *size, generator=torch.Generator().manual_seed(seed))
    enc.train()
    image, text = enc.encode_image(images), enc.encode_text(ids, mask)
    for what, t in (("encode_image", image), ("encode_text", text)):
        if tuple(t.shape) != (b, dim) or not t.is_floating_point() or not torch.isfinite(t).all():
            fail(s.where, f"{what}() must give finite {(b, dim)} floating features, got {t.dtype} {tuple(t.shape)}")
    (image.float().sum() + text.float().sum()).backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    if not grads or all(float(g.abs().sum()) == 0 for g in grads):
        fail(s.where, "no gradient reaches the encoder's parameters from its features")
    if not all(torch.isfinite(g).all() for g in grads):
        fail(s.where, "non-finite gradients in the encoder's parameters")
    enc.zero_grad(set_to_none=True)
    enc.eval()
    perm = permutation(b, seed)
    with torch.no_grad():
        image, text = enc.encode_image(images), enc.encode_text(ids, mask)
        assert_close(enc.encode_image(images[perm]), image[perm], s.where,
                     "encode_image of a permuted batch must be the permuted features (eval mode)", atol=1e-4, rtol=1e-4)
        assert_close(enc.encode_text(ids[perm], mask[perm]), text[perm], s.where,
                     "encode_text of a permuted batch must be the permuted features (eval mode)", atol=1e-4, rtol=1e-4)
        twin = build()
        twin.load_state_dict(enc.state_dict())
        twin.eval()
        assert_close(twin.encode_image(images), image, s.where, "an encoder restored through state_dict() must give "
                     "the same image features", atol=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            enc.save_pretrained(Path(tmp))
        except Exception as exc:  # noqa: BLE001
            fail(s.where, f"save_pretrained() failed: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- dataset


def check_dataset_entry(entry: Entry, data: Mapping[str, Any] | None = None, *, max_files: int = 64) -> None:
    """``load()`` gives :class:`DatasetSplits`: training pairs indexed 0..N-1 in order with
    captions and existing image files, a test split (and val, when present) whose every
    query has a gallery image of its person; loading twice gives the same records."""
    s = prepare(entry, data)
    splits = s.build(BuildContext(seed=0)).load()
    problem = splits_problem(splits)  # what a run checks after load(), before training
    if problem is not None:
        fail(s.where, problem)
    missing = missing_gallery_image(splits)
    if missing is not None:
        fail(s.where, f"{missing[0]} gallery image {missing[1]}, {missing[2]}, is not a file")
    step = max(1, len(splits.train) // max_files)
    for r in splits.train[::step]:
        if not Path(r.image_path).is_file():
            fail(s.where, f"train[{r.index}].image_path {r.image_path} does not exist")
    for name in ("test", "val"):
        split = getattr(splits, name)
        if split is None and name == "val":
            continue
        _check_eval_split(split, name, s.where)
    again = s.build(BuildContext(seed=0)).load()
    if [(r.caption, str(r.image_path), r.person_id) for r in again.train] != \
            [(r.caption, str(r.image_path), r.person_id) for r in splits.train]:
        fail(s.where, "loading twice gives different training records; load() must be deterministic")


def _check_eval_split(split: Any, name: str, where: str) -> None:
    """An evaluation split with queries and gallery, every query's person in the gallery."""
    if not isinstance(split, EvalSplit) or not split.captions or not split.image_paths:
        fail(where, f"splits.{name} must be a wsreid.api.EvalSplit with captions and images")
    missing = set(split.caption_person_ids) - set(split.image_person_ids)
    if missing:
        fail(where, f"{name} queries of persons {sorted(missing)[:5]} have no gallery image")
