"""Tensors from records: image loading, tokenisation, the deterministic pair sampler.

The sampler draws one permutation of the training pairs per epoch from (seed, epoch),
cuts it into global batches and hands rank r its contiguous slice of every global batch,
so the global batch of a step is the same whatever the number of processes, and a
resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from wsreid.api import Batch, EncoderComponent, PairRecord
from wsreid.data.images import load_image
from wsreid.errors import UserError


def image_to_tensor(image: Image.Image, size: tuple[int, int], mean, std) -> torch.Tensor:
    """PIL image -> 3 x H x W float tensor, resized (bicubic) and normalised."""
    h, w = size
    if image.size != (w, h):
        image = image.resize((w, h), Image.BICUBIC)
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (tensor - mean_t) / std_t


class ImageFiles(torch.utils.data.Dataset):
    """Index -> (position, normalised image tensor) for a list of image paths."""

    def __init__(self, paths: Sequence[Path], encoder: EncoderComponent):
        self.paths = list(paths)
        self.size = tuple(encoder.image_size)
        self.mean, self.std = encoder.image_mean, encoder.image_std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, image_to_tensor(load_image(self.paths[i]), self.size, self.mean, self.std)


class TrainPairs(torch.utils.data.Dataset):
    """Caption-level pairs with pre-tokenised captions. Item = one pair's tensors."""

    def __init__(self, records: Sequence[PairRecord], encoder: EncoderComponent):
        self.records = list(records)
        for position, record in enumerate(self.records):
            if record.index != position:
                raise UserError(
                    f"training pair {position} carries dataset index {record.index}",
                    hint="a dataset component must return train pairs with indices 0..N-1 in order",
                )
        self.images = ImageFiles([r.image_path for r in self.records], encoder)
        self.input_ids, self.attention_mask = encoder.tokenize([r.caption for r in self.records])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        _, image = self.images[i]
        return image, self.input_ids[i], self.attention_mask[i], r.index, r.image_id, r.person_id


def collate_pairs(items) -> Batch:
    images, ids, masks, index, image_id, person_id = zip(*items)
    return Batch(
        images=torch.stack(images),
        input_ids=torch.stack(ids),
        attention_mask=torch.stack(masks),
        index=torch.tensor(index, dtype=torch.long),
        image_id=torch.tensor(image_id, dtype=torch.long),
        person_id=torch.tensor(person_id, dtype=torch.long),
    )


class PairBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's index lists of the global batches of one epoch.

    ``set_epoch(epoch, skip)`` selects the epoch's permutation and skips ``skip`` steps.
    """

    def __init__(self, num_items: int, global_batch: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        if global_batch % world_size:
            raise UserError(
                f"train.batch_size {global_batch} is not divisible by the {world_size} processes",
                hint="choose a batch size that is a multiple of the number of processes",
            )
        self.num_items, self.global_batch = num_items, global_batch
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch, self.skip = 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.num_items, self.global_batch)
        return full if (self.drop_last or rest < self.world_size) else full + 1

    def global_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        return [order[i * self.global_batch:(i + 1) * self.global_batch] for i in range(self.steps_per_epoch())]

    def __iter__(self):
        for batch in self.global_batches(self.epoch)[self.skip:]:
            per_rank = len(batch) // self.world_size
            yield batch[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return self.steps_per_epoch() - self.skip
