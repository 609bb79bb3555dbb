"""Pair construction ``recorded-views``: information-asymmetric views read from a file.

For reproducing another implementation step by step (tests/test_fullstep.py drives the
authors' recorded steps this way): instead of drawing ``A_v`` / ``A_t`` (Eq. 19-20) it
serves, per dataset index, images and masked token ids recorded beforehand, and optionally
the base view's token ids too (when they came from another tokenizer). The base images are
the batch as the data loader produced it.

The file is an ``.npz`` holding, under the names given in the parameters: dataset indices
(N), images (N x 3 x H x W, normalised), masked ids (N x L) and optionally base ids (N x L).
Attention masks of recorded ids cover every position up to the first end token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from wsreid.api import (
    ASYMMETRIC_VIEW,
    BASE_VIEW,
    Batch,
    BuildContext,
    EncoderComponent,
    PairConstruction,
    Params,
    ParamsCheckError,
    View,
)
from wsreid.errors import RecipeError


class RecordedViewsParams(Params):
    """Where the recorded views are."""

    file: str = Field(..., description=".npz file with the recorded views (absolute, or relative to the working directory)")
    index_key: str = Field("dataset_index", description="array of dataset indices (N)")
    images_key: str = Field("images_aug", description="array of asymmetric-view images (N x 3 x H x W, normalised)")
    ids_key: str = Field("mlm_ids", description="array of asymmetric-view token ids (N x L)")
    base_ids_key: str | None = Field(
        None, description="array of base-view token ids (N x L) replacing the tokenizer's; None keeps the batch's"
    )


class RecordedViews(PairConstruction):
    """Views ``base`` and ``asymmetric`` served from a recording (see the module doc)."""

    Params = RecordedViewsParams
    view_names = (BASE_VIEW, ASYMMETRIC_VIEW)

    @classmethod
    def check_params(cls, params: RecordedViewsParams) -> None:
        """The recording must exist (checked by ``wsreid validate``, before any run)."""
        if not Path(params.file).expanduser().is_file():
            raise ParamsCheckError("file", f"recording {params.file} does not exist",
                                   hint="name an .npz file holding the recorded views (see docs/method.md)")

    def __init__(self, params: RecordedViewsParams, context: BuildContext):
        super().__init__(params, context)
        path = Path(params.file).expanduser()
        try:
            data = np.load(path, allow_pickle=False)
            keys = [params.index_key, params.images_key, params.ids_key] + ([params.base_ids_key] if params.base_ids_key else [])
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise RecipeError(f"pair_construction.file: {path} has no array {missing[0]!r}",
                                  hint=f"arrays: {', '.join(data.files)}")
            index = torch.from_numpy(data[params.index_key]).long()
            self.images = torch.from_numpy(data[params.images_key]).float()
            self.ids = torch.from_numpy(data[params.ids_key]).long()
            self.base_ids = torch.from_numpy(data[params.base_ids_key]).long() if params.base_ids_key else None
        except (OSError, ValueError) as exc:
            raise RecipeError(f"pair_construction.file: cannot read {path} ({type(exc).__name__})") from None
        self.row = {int(i): r for r, i in enumerate(index.tolist())}

    def _rows(self, batch: Batch) -> torch.Tensor:
        try:
            return torch.tensor([self.row[int(i)] for i in batch.index.tolist()], dtype=torch.long)
        except KeyError as exc:
            raise RecipeError(f"pair_construction: {self.params.file} holds no views for dataset index {exc.args[0]}") from None

    @staticmethod
    def _attention(ids: torch.Tensor, end_id: int | None, pad_id: int | None) -> torch.Tensor:
        if end_id is None:  # an encoder without an end token: every non-padding position
            return (ids != pad_id).long() if pad_id is not None else torch.ones_like(ids)
        is_end = ids == end_id
        last = torch.where(is_end.any(1), is_end.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1] - 1))
        return (torch.arange(ids.shape[1], device=ids.device)[None, :] <= last[:, None]).long()

    def views(self, batch: Batch, encoder: EncoderComponent) -> dict[str, View]:
        rows = self._rows(batch)
        device = batch.images.device
        if self.images.shape[1:] != batch.images.shape[1:] or self.ids.shape[1] != batch.input_ids.shape[1]:
            raise RecipeError(
                f"pair_construction: {self.params.file} holds images {tuple(self.images.shape[1:])} and "
                f"{self.ids.shape[1]} tokens, the batch {tuple(batch.images.shape[1:])} and {batch.input_ids.shape[1]}",
                hint="record the views at the encoder's image_size and max_length",
            )
        end, pad = getattr(encoder, "end_token_id", None), getattr(encoder, "pad_token_id", None)
        ids = self.ids[rows].to(device)
        base_ids, base_mask = batch.input_ids, batch.attention_mask
        if self.base_ids is not None:
            base_ids = self.base_ids[rows].to(device)
            base_mask = self._attention(base_ids, end, pad)
        return {
            "base": View(images=batch.images, input_ids=base_ids, attention_mask=base_mask),
            "asymmetric": View(images=self.images[rows].to(device, batch.images.dtype), input_ids=ids,
                               attention_mask=self._attention(ids, end, pad)),
        }
