"""Tensors from records: image loading, tokenisation, the deterministic pair samplers.

The sampler draws one permutation of the training pairs per epoch from (seed, epoch),
cuts it into global batches and hands rank r its contiguous slice of every global batch,
so the global batch of a step is the same whatever the number of processes, and a
resumed run sees the same batches as an uninterrupted one (one exception: with
``train.drop_last: false`` a last partial batch smaller than the number of processes is
not trained, so the steps per epoch depend on it: :func:`pair_steps_per_epoch`; a run
resumes with the numbers of processes :func:`process_counts` lists). :class:`IdentityBatchSampler`
(``train.sampler: identity``, NOT weakly supervised) keeps that contract with PK batches
built from the true person ids.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from wsreid.api import Batch, DatasetSplits, EncoderComponent, EvalSplit, PairRecord
from wsreid.data.images import load_image
from wsreid.errors import UserError


@lru_cache(maxsize=8)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), 3 x 1 x 1 each: ``(x / 255 - mean) / std == x * scale - shift``."""
    m = torch.tensor(mean, dtype=torch.float64).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(3, 1, 1)
    return (1.0 / (255.0 * s)).float(), (m / s).float()


def image_pixels(image: Image.Image, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """PIL image -> H x W x 3 uint8 tensor (the decoder's layout, no copy beyond PIL's
    export), resized to ``size`` = (H, W) with PIL ``interpolation`` ('bicubic' or
    'bilinear') and converted to RGB."""
    h, w = size
    if image.size != (w, h):
        image = image.resize((w, h), Image.BILINEAR if interpolation == "bilinear" else Image.BICUBIC)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image))


def normalise_pixels(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 pixels, ... x H x W x 3 (:func:`image_pixels`, or a batch of them) ->
    float32 ... x 3 x H x W (contiguous), ``(x / 255 - mean) / std`` per channel: one pass
    for the layout change and the conversion, one each for the affine map's product and
    difference (no float64 copies, no per-call constants). Elementwise, so the values do
    not depend on where (worker, main process, GPU) or on how many images at once."""
    scale, shift = _normalisation(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    scale, shift = scale.to(pixels.device), shift.to(pixels.device)
    x = pixels.movedim(-1, -3).to(torch.float32, memory_format=torch.contiguous_format)
    return x.mul_(scale).sub_(shift)


def image_to_tensor(image: Image.Image, size: tuple[int, int], mean, std, interpolation: str = "bicubic") -> torch.Tensor:
    """PIL image -> 3 x H x W float tensor, resized (:func:`image_pixels`) and normalised
    (:func:`normalise_pixels`)."""
    return normalise_pixels(image_pixels(image, size, interpolation), mean, std)


#: Environment variable: MiB of decoded images a process keeps (default 1024; 0 = none).
IMAGE_CACHE_ENV = "WSREID_IMAGE_CACHE_MB"


def image_cache_budget() -> int:
    """Bytes of decoded images a process keeps, from ``WSREID_IMAGE_CACHE_MB`` (MiB,
    default 1024, also when set empty, as ``WSREID_CACHE``; 0 keeps none). A value that is
    not a finite number >= 0 is a :class:`UserError` naming the variable."""
    raw = os.environ.get(IMAGE_CACHE_ENV, "").strip() or "1024"
    try:
        mib = float(raw)
    except ValueError:
        mib = float("nan")
    if not math.isfinite(mib) or mib < 0:
        raise UserError(f"{IMAGE_CACHE_ENV}={raw!r} is not a number of MiB (0 or more)",
                        hint=f"set {IMAGE_CACHE_ENV} to e.g. 1024, or 0 to decode images every time")
    return int(mib * 2**20)


class DecodedImages:
    """The decoded, resized images of this process: uint8 H x W x 3 tensors, so that an
    image file is decoded once per run rather than once per epoch and evaluation.

    Keyed by the file (path, size on disk, modification time) and the target size and
    interpolation, so a rewritten file is decoded again. At most ``budget`` bytes are
    kept (the first images seen; none is evicted). Only the main process adds images: in a
    DataLoader worker, whose memory is gone at the end of the epoch, lookups still hit
    what the main process held when the worker started, and misses are decoded and not
    kept. The values are exactly those of decoding each time (:func:`image_pixels`).
    """

    def __init__(self, budget: int | None = None):
        self._budget = budget
        self.items: dict[tuple, torch.Tensor] = {}
        self.used = 0

    @property
    def budget(self) -> int:
        """Bytes the cache may hold: the constructor's, else ``WSREID_IMAGE_CACHE_MB``."""
        if self._budget is None:
            self._budget = image_cache_budget()
        return self._budget

    def pixels(self, path: str | os.PathLike[str], size: tuple[int, int], interpolation: str = "bicubic",
               where: str | None = None) -> torch.Tensor:
        """H x W x 3 uint8 pixels of the image file ``path`` resized to ``size`` (shared:
        do not write into the tensor). ``where`` names the item in errors (as
        :func:`~wsreid.data.images.load_image`'s)."""
        try:
            st = os.stat(path)
        except OSError:
            return image_pixels(load_image(path, where=where), size, interpolation)  # load_image says what is wrong
        key = (os.fspath(path), st.st_size, st.st_mtime_ns, tuple(size), interpolation)
        hit = self.items.get(key)
        if hit is not None:
            return hit
        pixels = image_pixels(load_image(path, where=where), size, interpolation)
        if self.used + pixels.nbytes <= self.budget and torch.utils.data.get_worker_info() is None:
            self.items[key] = pixels
            self.used += pixels.nbytes
        return pixels

    def clear(self) -> None:
        """Forget every image."""
        self.items.clear()
        self.used = 0


#: The process's store of decoded images (:class:`ImageFiles` reads through it).
DECODED_IMAGES = DecodedImages()


def splits_problem(splits: object) -> str | None:
    """What is wrong with what a dataset component's ``load()`` returned, as the run
    needs it (docs/components.md, DatasetSplits), or None: a DatasetSplits whose training
    pairs are PairRecords indexed 0..N-1 in order with non-empty captions, and whose test
    split (and val, when given) is an EvalSplit with queries and a gallery, its lists of
    equal lengths (a list changed after the split was made escapes EvalSplit's own check).
    Reads no file; a few passes over the lists."""
    if not isinstance(splits, DatasetSplits):
        return f"load() returned a {type(splits).__name__}, not a wsreid.api.DatasetSplits"
    train = splits.train
    if not isinstance(train, list) or not train:
        return "load() returned no training pairs (splits.train must be a non-empty list of wsreid.api.PairRecord)"
    for position, record in enumerate(train):
        if not isinstance(record, PairRecord):
            return f"splits.train[{position}] is a {type(record).__name__}, not a wsreid.api.PairRecord"
        if record.index != position:
            return (f"splits.train[{position}] carries index {record.index}; training pairs are indexed 0..N-1 in "
                    "order (memory banks and pseudo-labels are keyed by the index)")
        if not isinstance(record.caption, str) or not record.caption.strip():
            return f"splits.train[{position}] has an empty caption ({record.caption!r})"
    for name in ("test", "val"):
        split = getattr(splits, name)
        if split is None and name == "val":
            continue
        if not isinstance(split, EvalSplit):
            return f"splits.{name} is a {type(split).__name__}, not a wsreid.api.EvalSplit"
        lengths = {"captions": len(split.captions), "caption_person_ids": len(split.caption_person_ids),
                   "image_paths": len(split.image_paths), "image_person_ids": len(split.image_person_ids)}
        if lengths["captions"] != lengths["caption_person_ids"] or lengths["image_paths"] != lengths["image_person_ids"]:
            return (f"splits.{name} has lists of different lengths ("
                    + ", ".join(f"{k} {n}" for k, n in lengths.items())
                    + "): one person id per query caption and per gallery image")
        if not split.captions or not split.image_paths:
            return f"splits.{name} has {lengths['captions']} queries and {lengths['image_paths']} gallery images: it needs both"
        empty = next((i for i, c in enumerate(split.captions) if not isinstance(c, str) or not c.strip()), None)
        if empty is not None:
            return f"splits.{name}.captions[{empty}] is empty ({split.captions[empty]!r})"
    return None


def missing_gallery_image(splits: DatasetSplits) -> tuple[str, int, Path] | None:
    """(split, position, path) of the first val or test gallery image that is not a file
    (one ``stat`` per gallery image), or None: an evaluation image is otherwise read only
    when the split is evaluated, after an epoch or after all of training."""
    for name in ("val", "test"):
        split = getattr(splits, name)
        for position, path in enumerate(split.image_paths if split is not None else ()):
            if not Path(path).is_file():
                return name, position, Path(path)
    return None


class ImageFiles(torch.utils.data.Dataset):
    """Index -> (position, normalised image tensor) for a list of image paths. Images are
    decoded once per process (:data:`DECODED_IMAGES`) and normalised per item."""

    def __init__(self, paths: Sequence[Path], encoder: EncoderComponent):
        self.paths = list(paths)
        self.size = tuple(encoder.image_size)
        self.mean, self.std = encoder.image_mean, encoder.image_std
        self.interpolation = getattr(encoder, "image_interpolation", "bicubic")

    def __len__(self) -> int:
        return len(self.paths)

    def decoded(self, i: int, where: str | None = None) -> torch.Tensor:
        """H x W x 3 uint8 pixels of image ``i`` at the encoder's input size (decoded once
        per process: :data:`DECODED_IMAGES`); ``where`` names the item in errors."""
        return DECODED_IMAGES.pixels(self.paths[i], self.size, self.interpolation, where=where)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, normalise_pixels(self.decoded(i), self.mean, self.std)


def check_tokens(tokens, rows: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokens``, what the encoder's ``tokenize()`` returned for ``rows`` captions, when it
    is ``(input_ids, attention_mask)``, each a ``rows x max_length`` ``torch.long`` tensor;
    a ``ValueError`` saying what it was otherwise (int32 ids failed later as the pair
    construction's views, blamed on it; ids shorter than ``max_length`` trained silently).
    Two shape reads: cheap enough for every batch."""
    def shown(t) -> str:
        return f"a {t.dtype} tensor of shape {list(t.shape)}" if torch.is_tensor(t) else f"a {type(t).__name__}"

    if not (isinstance(tokens, (tuple, list)) and len(tokens) == 2):
        raise ValueError(f"tokenize() returned {shown(tokens)} for {rows} captions, expected (input_ids, "
                         "attention_mask)")
    for name, t in zip(("input_ids", "attention_mask"), tokens):
        if not (torch.is_tensor(t) and t.dtype == torch.long and tuple(t.shape) == (rows, max_length)):
            raise ValueError(f"tokenize() returned {name} as {shown(t)} for {rows} captions, expected a torch.int64 "
                             f"tensor of shape [{rows}, {max_length}] (padded to max_length {max_length})")
    return tokens[0], tokens[1]


class TrainPairs(torch.utils.data.Dataset):
    """Caption-level pairs with pre-tokenised captions. Item = one pair's tensors, the
    image as uint8 H x W x 3 pixels (:func:`image_pixels`): a loader worker decodes and
    resizes only; :class:`DeviceBatches` normalises whole batches on the training device."""

    def __init__(self, records: Sequence[PairRecord], encoder: EncoderComponent):
        self.records = list(records)  # indexed 0..N-1 in order: the run checks it (splits_problem)
        self.images = ImageFiles([r.image_path for r in self.records], encoder)
        self.input_ids, self.attention_mask = check_tokens(encoder.tokenize([r.caption for r in self.records]),
                                                           len(self.records), encoder.max_length)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        pixels = self.images.decoded(i, where=f"split train, training pair {r.index}")
        return pixels, self.input_ids[i], self.attention_mask[i], r.index, r.image_id, r.person_id


def collate_pairs(items) -> Batch:
    """Stack :class:`TrainPairs` items into one :class:`~wsreid.api.Batch` (B rows) whose
    ``images`` are still uint8 pixels, B x H x W x 3 (:func:`normalise_batch` makes them
    the B x 3 x H x W float images components see)."""
    images, ids, masks, index, image_id, person_id = zip(*items)
    return Batch(
        images=torch.stack(images),
        input_ids=torch.stack(ids),
        attention_mask=torch.stack(masks),
        index=torch.tensor(index, dtype=torch.long),
        image_id=torch.tensor(image_id, dtype=torch.long),
        person_id=torch.tensor(person_id, dtype=torch.long),
    )


def normalise_batch(batch: Batch, mean, std) -> Batch:
    """``batch`` with uint8 B x H x W x 3 pixels turned into normalised B x 3 x H x W float
    images (:func:`normalise_pixels`) where they are; a batch of float images is returned
    as it is."""
    if batch.images.dtype != torch.uint8:
        return batch
    return dataclasses.replace(batch, images=normalise_pixels(batch.images, mean, std))


class DeviceBatches:
    """The training loader as the engine iterates it: the batches of ``loader`` (uint8
    pixels, :func:`collate_pairs`) moved to ``device`` and normalised there
    (:func:`normalise_batch`) - on a GPU the float conversion costs the workers nothing,
    and what crosses from the workers is a quarter of the float images."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device, mean, std):
        self.loader, self.device, self.mean, self.std = loader, device, mean, std

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield normalise_batch(batch.to(self.device), self.mean, self.std)


#: The largest number of processes a hint or stop line lists.
MAX_LISTED_PROCESSES = 64


def process_counts(global_batch: int, instances: int = 1) -> list[int]:
    """The numbers of processes (1 to :data:`MAX_LISTED_PROCESSES`) that can train global
    batches of ``global_batch`` pairs: the N for which ``global_batch`` is a multiple of
    N x ``instances``, so that every process gets whole groups of ``instances`` pairs (1
    for the pair sampler, ``train.instances_per_identity`` for the identity sampler)."""
    return [n for n in range(1, MAX_LISTED_PROCESSES + 1) if global_batch % (n * instances) == 0]


def listed_processes(counts: Sequence[int]) -> str:
    """Numbers of processes as a sentence lists them: ``1 process``, ``1 or 3 processes``,
    ``1, 2 or 4 processes``."""
    words = [str(n) for n in counts]
    if list(counts) == [1]:
        return "1 process"
    return f"{words[0] if len(words) == 1 else ', '.join(words[:-1]) + ' or ' + words[-1]} processes"


def pair_steps_per_epoch(num_items: int, global_batch: int, world_size: int, drop_last: bool) -> int:
    """Optimizer steps (global batches) per epoch of :class:`PairBatchSampler` over
    ``num_items`` pairs: the full global batches, and with ``drop_last`` off the last
    partial one when every one of the ``world_size`` processes gets at least one of its
    pairs - so with a remainder smaller than ``world_size`` the count depends on it."""
    full, rest = divmod(num_items, global_batch)
    return full if (drop_last or rest < world_size) else full + 1


class PairBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's index lists of the global batches of one epoch.

    ``set_epoch(epoch, skip)`` selects the epoch's permutation and skips ``skip`` steps.
    """

    def __init__(self, num_items: int, global_batch: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        if global_batch % world_size:
            raise UserError(
                f"train.batch_size {global_batch} is not divisible by the {world_size} processes",
                hint="start as many processes as divide it (for --resume, which keeps the batch size: "
                     f"{', '.join(str(n) for n in process_counts(global_batch))}), "
                     "or for a new run choose a batch size that is a multiple of the number of processes",
            )
        self.num_items, self.global_batch = num_items, global_batch
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch, self.skip = 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Draw the batches of ``epoch`` next (skipping its first ``skip``)."""
        self.epoch, self.skip = epoch, skip

    def steps_per_epoch(self) -> int:
        """Optimizer steps (global batches) per epoch. With ``drop_last`` off the last
        partial batch is a step when every process gets at least one of its pairs."""
        return self.steps_with(self.world_size)

    def steps_with(self, world_size: int) -> int:
        """Steps per epoch of this sampler's pairs and batch size over ``world_size``
        processes (:func:`pair_steps_per_epoch`)."""
        return pair_steps_per_epoch(self.num_items, self.global_batch, world_size, self.drop_last)

    def resume_counts(self) -> list[int]:
        """The numbers of processes (:func:`process_counts`) that train the same global
        batches with the same steps per epoch as this sampler: a resume with one of them
        continues the run (its learning-rate schedule included) as it would have gone on."""
        return self.counts_with_steps(self.steps_per_epoch())

    def counts_with_steps(self, steps: int) -> list[int]:
        """The numbers of processes (:func:`process_counts`) that make ``steps`` steps per
        epoch of this sampler's pairs and batch size."""
        return [n for n in process_counts(self.global_batch) if self.steps_with(n) == steps]

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every global batch of ``epoch`` (dataset indices), from (seed, epoch) alone."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        return [order[i * self.global_batch:(i + 1) * self.global_batch] for i in range(self.steps_per_epoch())]

    def __iter__(self):
        for batch in self.global_batches(self.epoch)[self.skip:]:
            # contiguous slices whose sizes differ by at most one: a last partial batch
            # (drop_last: false) is split whole, as one process trains it
            n = len(batch)
            yield batch[self.rank * n // self.world_size:(self.rank + 1) * n // self.world_size]

    def __len__(self) -> int:
        return self.steps_per_epoch() - self.skip


def resume_steps_warning(sampler: PairBatchSampler, epoch: int, step: int,
                         recorded: int | None = None) -> str | None:
    """The ``warning:`` line of a resumed run whose steps per epoch differ from those of
    the launch that wrote the checkpoint it resumes (``recorded``, from its state.json;
    a checkpoint written before wsreid recorded them has ``epoch`` epochs and ``step``
    steps in all), or None when ``sampler`` - this run's - gives as many. It happens with
    ``train.drop_last: false`` when the last partial batch is smaller than one of the two
    process counts (not trained there): the step count and the learning-rate schedule, a
    function of the step and the steps per epoch, change."""
    now = sampler.steps_per_epoch()
    if recorded is not None:  # the steps per epoch of the launch that wrote the checkpoint (state.json)
        if recorded == now:
            return None
        before, keep = f"were {recorded}", sampler.counts_with_steps(recorded)
    else:  # a checkpoint of an older version: from its step count
        if epoch < 1 or step == epoch * now:
            return None
        before = (f"were {step // epoch}" if step % epoch == 0 else
                  f"averaged {step / epoch:g} ({step} steps in {epoch} epochs)")
        keep = [n for n in process_counts(sampler.global_batch) if sampler.steps_with(n) * epoch == step]
    rest = sampler.num_items % sampler.global_batch
    why = (f" (train.drop_last false: the last partial batch, {rest} pair{'' if rest == 1 else 's'}, is trained only "
           "when every process gets a pair)" if not sampler.drop_last and rest else "")
    remedy = (f"to keep them, resume with {listed_processes(keep)}" if keep
              else "to keep them, resume as the run was launched before")
    return (f"warning: --resume with {sampler.world_size} process{'es' if sampler.world_size > 1 else ''}: steps per "
            f"epoch {before}, now {now}{why}, so the step count and the learning-rate schedule change from epoch "
            f"{epoch + 1} on ({remedy})")


class IdentityBatchSampler(PairBatchSampler):
    """PK batches from the TRUE person ids: P = global_batch / K identities x K pairs each.

    Reads ground-truth identities, so a run using it is NOT weakly supervised (the
    supervised reference ``train.sampler: identity``). Same contract as
    :class:`PairBatchSampler`: the global batches depend only on (seed, epoch), never on
    the number of processes; rank r gets its contiguous slice of each, which is whole
    groups because the per-rank size must be a multiple of K; ``set_epoch(epoch, skip)``
    skips steps on resume.

    One epoch, with N pairs, I identities of n_i pairs, m_i = ceil(n_i / K) groups each and
    G = sum m_i groups:

    1. every identity's pairs are shuffled and cut into m_i groups of K (G x K); the final
       short group is filled with the identity's other pairs, taken in the same shuffled
       order (so no pair repeats within a group); an identity with n_i < K pairs cycles
       through its shuffled pairs to fill its one group (repeats only there; when the
       median identity has fewer than K pairs, so that most groups repeat pairs, the first
       process prints one ``warning:`` line with how many identities have fewer than K
       pairs and the median);
    2. identities are shuffled and their groups (at most S each, see below) listed in that
       order; the first S * P groups fill an S x P grid column by column (group t goes to
       batch t mod S), so an identity's groups, being consecutive and at most S, land in
       different batches: every batch has P distinct identities; batches are then shuffled;
    3. each batch is its P groups concatenated: S global batches of P * K pair indices.

    S (``steps_per_epoch``) is the largest s with sum_i min(m_i, s) >= s * P (at most
    G // P; less only when a few identities hold most of the groups): the same every epoch.
    The groups left over (fewer than P unless identities are capped at S) are dropped.
    """

    def __init__(self, person_ids: Sequence[int], global_batch: int, instances: int, *, seed: int,
                 rank: int = 0, world_size: int = 1):
        k = instances
        if k < 1 or global_batch % k:
            raise UserError(f"train.batch_size {global_batch} is not a multiple of train.instances_per_identity {k}",
                            hint="a batch of the identity sampler is P identities x K pairs")
        if global_batch % (world_size * k):  # before the pair sampler's check, whose counts ignore K
            share = (f"is not divisible by the {world_size} processes" if global_batch % world_size else
                     f"over {world_size} processes gives {global_batch // world_size} pairs per process, not a "
                     f"multiple of train.instances_per_identity {k}")
            raise UserError(
                f"train.batch_size {global_batch} {share}",
                hint=f"each process must get whole identity groups: start as many processes as divide "
                     f"batch_size / K = {global_batch // k} (for --resume, which keeps the recipe: "
                     f"{', '.join(str(n) for n in process_counts(global_batch, k))}), or for a new run choose a "
                     "batch size that is a multiple of K x the number of processes",
            )
        super().__init__(len(person_ids), global_batch, seed=seed, rank=rank, world_size=world_size, drop_last=True)
        _, label, counts = np.unique(np.asarray(person_ids, dtype=np.int64), return_inverse=True, return_counts=True)
        self.instances, self.identities = k, global_batch // k
        self.label = torch.from_numpy(label.reshape(-1))            # N, identity 0..I-1 of every pair
        self.counts = torch.from_numpy(counts)                      # I, pairs per identity
        self.groups = (self.counts + k - 1) // k                    # I, groups per identity (m_i)
        if len(counts) < self.identities:
            raise UserError(
                f"train.sampler identity: a batch of {global_batch} needs {self.identities} distinct identities "
                f"x {k} pairs, but the training set has {len(counts)} identities",
                hint="lower train.batch_size or raise train.instances_per_identity",
            )
        self.steps = self._max_steps()
        median = float(np.median(self.counts))
        if median < k and rank == 0:  # most groups repeat pairs (a few short identities are usual)
            short = int((self.counts < k).sum())
            print(f"warning: train.instances_per_identity {k}: {short} of {len(counts)} training identities have "
                  f"fewer than {k} pairs (median {median:g} pairs per identity), so their groups "
                  f"repeat pairs (lower train.instances_per_identity to repeat fewer)", file=sys.stderr, flush=True)

    def _max_steps(self) -> int:
        """Largest s with sum_i min(m_i, s) >= s * P (the set of such s is 0..S: concave)."""
        p, m = self.identities, self.groups
        lo, hi = 0, int(m.sum()) // p
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(torch.clamp(m, max=mid).sum()) >= mid * p:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def steps_per_epoch(self) -> int:
        """Optimizer steps (global batches) per epoch: S, whatever the number of processes."""
        return self.steps

    def steps_with(self, world_size: int) -> int:
        """Steps per epoch over ``world_size`` processes: S, the same for any number."""
        return self.steps

    def resume_counts(self) -> list[int]:
        """The numbers of processes that train this sampler's global batches: those that
        get whole identity groups (:func:`process_counts` with K)."""
        return process_counts(self.global_batch, self.instances)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every global batch of ``epoch`` (dataset indices): P identities x K pairs."""
        k, p, s = self.instances, self.identities, self.steps
        if s == 0:
            return []
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        # 1. pairs sorted by identity, shuffled within it: N
        perm = torch.randperm(self.num_items, generator=g)
        by_identity = perm[torch.sort(self.label[perm], stable=True).indices]
        first = torch.cumsum(self.counts, 0) - self.counts           # I, offset of each identity in by_identity
        num_ids = len(self.counts)
        slot_owner = torch.repeat_interleave(torch.arange(num_ids), self.groups * k)   # G*K
        block_start = torch.cumsum(self.groups * k, 0) - self.groups * k               # I
        within = torch.arange(len(slot_owner)) - block_start[slot_owner]               # slot within the identity
        slots = by_identity[first[slot_owner] + within % self.counts[slot_owner]]      # G*K, cycles to fill
        group_pairs = slots.view(-1, k)                                                # G x K
        group_owner = torch.repeat_interleave(torch.arange(num_ids), self.groups)      # G
        group_rank = torch.arange(len(group_owner)) - (torch.cumsum(self.groups, 0) - self.groups)[group_owner]
        # 2. identities shuffled; each one's groups (at most S) consecutive; column-major S x P grid
        id_order = torch.randperm(num_ids, generator=g)
        position = torch.empty(num_ids, dtype=torch.long)
        position[id_order] = torch.arange(num_ids)
        keep = group_rank < s
        kept = torch.nonzero(keep).view(-1)
        listed = kept[torch.sort(position[group_owner[kept]] * (s + 1) + group_rank[kept]).indices][:s * p]
        grid = listed.view(p, s).t()                                                   # S x P group ids
        grid = grid[torch.randperm(s, generator=g)]
        # 3. S x (P*K) pair indices
        return group_pairs[grid].reshape(s, p * k).tolist()
