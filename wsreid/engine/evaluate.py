"""Feature extraction and retrieval evaluation (docs/method.md)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from wsreid.api import EncoderComponent, EvalSplit, ViewFeatures
from wsreid.distributed import Distributed
from wsreid.engine.data import ImageFiles, check_tokens
from wsreid.errors import TrainingError
from wsreid.evaluation import retrieval_metrics_from_features


def _shard(n: int, dist: Distributed) -> range:
    per = -(-n // dist.world_size)
    return range(dist.rank * per, min((dist.rank + 1) * per, n))


def check_encoder_output(features, rows: int, embed_dim: int, method: str, what: str) -> torch.Tensor:
    """``features``, what the encoder's ``method`` (``encode_image`` / ``encode_text``)
    returned for ``rows`` inputs (``what``: "images", "captions"), when it is a floating
    ``rows x embed_dim`` tensor; a ``ValueError`` saying what it was otherwise (a wrong
    width or row count would fail later, inside an objective or the retrieval, blamed on
    another party). One shape read: cheap enough for every batch."""
    if not (torch.is_tensor(features) and features.is_floating_point()
            and tuple(features.shape) == (rows, embed_dim)):
        got = (f"a {features.dtype} tensor of shape {list(features.shape)}" if torch.is_tensor(features)
               else f"a {type(features).__name__}")
        raise ValueError(f"{method}() returned {got} for {rows} {what}, expected a floating tensor of shape "
                         f"[{rows}, {embed_dim}] (one row per input, embed_dim {embed_dim} columns)")
    return features


@torch.no_grad()
def extract_text_features(encoder: EncoderComponent, captions: list[str], batch_size: int,
                          dist: Distributed, desc: str = "text") -> torch.Tensor:
    """N x d L2-normalised text features, row i = caption i, identical on every rank."""
    rows = _shard(len(captions), dist)
    feats, idx = [], []
    for start in tqdm(range(rows.start, rows.stop, batch_size), desc=desc, leave=False, disable=None if dist.is_main else True):
        stop = min(start + batch_size, rows.stop)
        ids, mask = check_tokens(encoder.tokenize(captions[start:stop]), stop - start, encoder.max_length)
        out = encoder.encode_text(ids.to(dist.device), mask.to(dist.device))
        out = check_encoder_output(out, stop - start, encoder.embed_dim, "encode_text", "captions")
        feats.append(F.normalize(out.float(), dim=-1))
        idx.append(torch.arange(start, stop, device=dist.device))
    return _finite(_gather_rows(feats, idx, len(captions), encoder.embed_dim, dist), desc)


@torch.no_grad()
def extract_image_features(encoder: EncoderComponent, paths, batch_size: int, dist: Distributed,
                           num_workers: int = 0, desc: str = "images") -> torch.Tensor:
    """N x d L2-normalised image features, row i = image i, identical on every rank."""
    files = ImageFiles(paths, encoder)
    rows = _shard(len(files), dist)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(files, list(rows)), batch_size=batch_size,
                                         num_workers=num_workers)
    feats, idx = [], []
    for positions, images in tqdm(loader, desc=desc, leave=False, disable=None if dist.is_main else True):
        out = check_encoder_output(encoder.encode_image(images.to(dist.device)), len(images), encoder.embed_dim,
                                   "encode_image", "images")
        feats.append(F.normalize(out.float(), dim=-1))
        idx.append(positions.to(dist.device))
    return _finite(_gather_rows(feats, idx, len(files), encoder.embed_dim, dist), desc)


def _finite(features: torch.Tensor, desc: str) -> torch.Tensor:
    """``features``, refused when a row is not finite: NaN similarities would rank the
    gallery in its stored order and give plausible-looking metrics."""
    bad = int((~torch.isfinite(features).all(dim=1)).sum())
    if bad:
        raise TrainingError(
            f"{bad} of {features.shape[0]} {desc} features are not finite (NaN or inf): the encoder's output overflowed "
            "or its weights diverged",
            hint="check the weights evaluated; fp16 features may overflow (train.mixed_precision: bf16 or no)",
        )
    return features


def _gather_rows(feats, idx, n: int, dim: int, dist: Distributed) -> torch.Tensor:
    local = torch.cat(feats) if feats else torch.zeros(0, dim, device=dist.device)
    local_idx = torch.cat(idx) if idx else torch.zeros(0, dtype=torch.long, device=dist.device)
    all_feats, all_idx = dist.gather(local), dist.gather(local_idx)
    out = torch.zeros(n, all_feats.shape[1], device=all_feats.device)
    out[all_idx] = all_feats
    if all_idx.numel() != n or torch.unique(all_idx).numel() != n:
        raise RuntimeError(f"feature gather returned {all_idx.numel()} rows for {n} items")
    return out


@contextmanager
def _eval_mode(encoder: EncoderComponent):
    """``encoder`` in eval mode inside the block, back in its former mode after it."""
    was_training = encoder.training
    encoder.eval()
    try:
        yield
    finally:
        encoder.train(was_training)


def evaluate_split(encoder: EncoderComponent, split: EvalSplit, batch_size: int, dist: Distributed,
                   chunk_size: int = 4096, num_workers: int = 0) -> dict[str, float]:
    """Text-to-image retrieval metrics (R1, R5, R10, mAP, mINP in %) on ``split``."""
    text, image = split_features(encoder, split, batch_size, dist, num_workers)
    return split_metrics(text, image, split, chunk_size)


def split_features(encoder: EncoderComponent, split: EvalSplit, batch_size: int, dist: Distributed,
                   num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(query text features, gallery image features) of ``split``: Q x d and G x d,
    L2-normalised, identical on every process; the encoder in eval mode meanwhile."""
    with _eval_mode(encoder):
        text = extract_text_features(encoder, split.captions, batch_size, dist)
        image = extract_image_features(encoder, split.image_paths, batch_size, dist, num_workers)
    return text, image


def split_metrics(text: torch.Tensor, image: torch.Tensor, split: EvalSplit, chunk_size: int = 4096) -> dict[str, float]:
    """Retrieval metrics of :func:`split_features`' output on ``split``."""
    return retrieval_metrics_from_features(
        text.cpu(),
        image.cpu(),
        torch.tensor(split.caption_person_ids),
        torch.tensor(split.image_person_ids),
        chunk_size=chunk_size,
    )


@torch.no_grad()
def extract_train_features(encoder: EncoderComponent, records, batch_size: int, dist: Distributed,
                           num_workers: int = 0, text: bool = True) -> ViewFeatures:
    """Un-augmented features of every training pair (row = dataset index). Each distinct
    image is encoded once; pairs sharing an image share its feature row. ``text=False``
    leaves the captions unencoded (``text`` is then None): for a caller that needs only
    the images, e.g. clustering on image features."""
    paths = sorted({r.image_path for r in records})
    position = {p: i for i, p in enumerate(paths)}
    with _eval_mode(encoder):
        captions = extract_text_features(encoder, [r.caption for r in records], batch_size, dist,
                                         "train text") if text else None
        unique = extract_image_features(encoder, paths, batch_size, dist, num_workers, "train images")
    rows = torch.tensor([position[r.image_path] for r in records], device=unique.device)
    return ViewFeatures(image=unique[rows], text=captions)
