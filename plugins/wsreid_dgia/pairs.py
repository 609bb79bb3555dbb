"""Pair construction ``iasc``: information-asymmetric pairs (docs/method.md; Eq. 19-20)."""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from pydantic import Field, field_validator

from wsreid.api import Batch, BuildContext, EncoderComponent, PairConstruction, Params, View
from wsreid.errors import TrainingError

from wsreid_dgia.augment import IMAGE_UNIFORMS, augment_images, mask_tokens, sample_uniforms

_IMAGE_STREAM, _TEXT_STREAM, _BASE_STREAM = 1, 2, 3


class IascParams(Params):
    """Parameters of the asymmetric view; defaults as in the authors' code."""

    mask_ratio: float = Field(0.5, gt=0.0, lt=1.0, description="r: probability that a word token is masked (Eq. 20)")
    mask_mode: Literal["at_least_one", "first_always"] = Field(
        "at_least_one",
        description="'at_least_one': each word token with r, one forced when none is drawn (paper text); "
        "'first_always': the first word token always, the others with r (authors' code)",
    )
    augment_base: bool = Field(
        False,
        description="also augment the base view's images (paper text); the code leaves them un-augmented. "
        "GSRC-FR's memory is written from the base view, so it then holds augmented features",
    )
    flip_prob: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip")
    pad: int = Field(10, ge=0, description="pixels of black padding before the random crop back to the input size")
    erase_prob: float = Field(0.5, ge=0.0, le=1.0, description="probability of random erasing (torchvision default)")
    erase_area: tuple[float, float] = Field((0.02, 0.4), description="erased area as a share of the image, (min, max)")
    erase_aspect: tuple[float, float] = Field((0.3, 3.3), description="aspect ratio range of the erased rectangle")
    erase_value: Literal["code", "mean_colour"] = Field(
        "code",
        description="fill of the erased rectangle: 'code' writes the pixel mean values into the normalised image "
        "(the authors' torchvision setup), 'mean_colour' the dataset mean colour (0 once normalised)",
    )

    @field_validator("erase_area", "erase_aspect")
    @classmethod
    def _ordered_positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("need 0 < min <= max")
        return v

    @field_validator("erase_area")
    @classmethod
    def _area_share(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[1] > 1:
            raise ValueError("the erased area is a share of the image, at most 1")
        return v


class InformationAsymmetricPairs(PairConstruction):
    """IASC information-asymmetric pairs: views ``base`` and ``asymmetric`` (Eq. 19-20).

    ``base`` is the batch as loaded; ``asymmetric`` holds ``A_v`` images and ``A_t``
    masked captions: same identity, less information on both sides.

    Randomness per sample comes from (run seed, step, dataset index), so a run is
    reproducible and independent of how a batch is split across processes. The step is
    counted by this component (one per ``views`` call) and kept in its state for resume.
    """

    Params = IascParams
    view_names = ("base", "asymmetric")

    def __init__(self, params: IascParams, context: BuildContext):
        super().__init__(params, context)
        self.step = 0

    def _image_op(self, images: torch.Tensor, index: list[int], encoder: EncoderComponent, stream: int) -> torch.Tensor:
        p = self.params
        u = sample_uniforms(self.context.seed, self.step, index, IMAGE_UNIFORMS, stream, images.device)
        return augment_images(
            images, u, encoder.image_mean, encoder.image_std,
            flip_prob=p.flip_prob, pad=p.pad, erase_prob=p.erase_prob, erase_area=p.erase_area,
            erase_aspect=p.erase_aspect, erase_fill=encoder.image_mean if p.erase_value == "code" else None,
        )  # fmt: skip

    def views(self, batch: Batch, encoder: EncoderComponent) -> dict[str, View]:
        p = self.params
        index = batch.index.tolist()
        base_images = batch.images
        if p.augment_base:
            base_images = self._image_op(batch.images, index, encoder, _BASE_STREAM)
        images = self._image_op(batch.images, index, encoder, _IMAGE_STREAM)
        u = sample_uniforms(self.context.seed, self.step, index, batch.input_ids.shape[1], _TEXT_STREAM, batch.input_ids.device)
        ids, _ = mask_tokens(
            batch.input_ids, batch.attention_mask, u, encoder.mask_token_id,
            encoder.special_token_ids, encoder.pad_token_id, p.mask_ratio, p.mask_mode,
        )  # fmt: skip
        self.step += 1
        return {
            "base": View(images=base_images, input_ids=batch.input_ids, attention_mask=batch.attention_mask),
            "asymmetric": View(images=images, input_ids=ids, attention_mask=batch.attention_mask),
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"step": torch.tensor([self.step], dtype=torch.long)}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if not tensors:
            return
        if set(tensors) != {"step"}:
            raise TrainingError(f"iasc state holds {sorted(tensors)}, expected ['step']")
        self.step = int(tensors["step"].reshape(-1)[0])
