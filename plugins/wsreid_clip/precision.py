"""The authors' weight precision and position table for the transformers ``CLIPModel``
(docs/method.md, "The authors' implementation").

* :func:`convert_weights_fp16` - the authors' ``convert_weights``: the weights and biases of
  every Linear and Conv2d (attention q/k/v and output projections, MLP, patch embedding,
  both feature projections) become float16 parameters, trained as such; LayerNorm
  parameters, token and position embeddings and the class embedding stay float32. The
  encoders then compute in float16 (embeddings are cast to float16 before they are added;
  LayerNorm computes in float32 and casts back), so features come out float16.
* :func:`install_position_table` - a vision position table for a non-square patch grid
  (e.g. 24 x 8 for 384 x 128 images) used as it is at every forward; the authors resize
  OpenAI's 14 x 14 table once at load (bilinear) and train the result.

Both swap module classes in place (state-dict names stay those of ``CLIPModel``).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["convert_weights_fp16", "install_position_table", "position_grid"]


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype; output in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class CastingLinear(nn.Linear):
    """Linear whose input is cast to the weight dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)


class CastingConv2d(nn.Conv2d):
    """Conv2d whose input is cast to the weight dtype (the convolution kernel itself is kept:
    computing the patch embedding as unfold + matrix product rounds differently in float16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x.to(self.weight.dtype), self.weight, self.bias)


@functools.lru_cache(maxsize=None)
def _vision_embeddings_cls():
    from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

    class ReferenceVisionEmbeddings(CLIPVisionEmbeddings):
        """Vision embeddings computed in the patch-embedding weight dtype (class and position
        rows cast to it first); the position table is used as it is when its rows match the
        patch grid (+ class row), otherwise interpolated bicubically from its square grid."""

        def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
            b, _, height, width = pixel_values.shape
            dtype = self.patch_embedding.weight.dtype
            patches = self.patch_embedding(pixel_values.to(dtype)).flatten(2).transpose(1, 2)  # B x P x D
            cls_row = self.class_embedding.to(dtype).expand(b, 1, -1)
            x = torch.cat([cls_row, patches], dim=1)
            table = self.position_embedding.weight
            if table.shape[0] == x.shape[1]:
                positions = table.unsqueeze(0)
            else:
                positions = self.interpolate_pos_encoding(x.float(), height, width)
            return x + positions.to(dtype)

    return ReferenceVisionEmbeddings


@functools.lru_cache(maxsize=None)
def _text_embeddings_cls():
    from transformers.models.clip.modeling_clip import CLIPTextEmbeddings

    class ReferenceTextEmbeddings(CLIPTextEmbeddings):
        """Text embeddings whose token and position rows are cast to ``compute_dtype``
        before they are added (float16 in the authors' precision)."""

        compute_dtype = torch.float16

        def forward(self, input_ids=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
            seq = input_ids.shape[-1] if input_ids is not None else inputs_embeds.shape[-2]
            if position_ids is None:
                position_ids = self.position_ids[:, :seq]
            if inputs_embeds is None:
                inputs_embeds = self.token_embedding(input_ids)
            return inputs_embeds.to(self.compute_dtype) + self.position_embedding(position_ids).to(self.compute_dtype)

    return ReferenceTextEmbeddings


def convert_weights_fp16(clip: Any) -> list[str]:
    """Convert ``clip`` (a transformers CLIPModel) in place to the authors' float16 weights
    (see the module doc). Returns the names of the parameters now float16."""
    for module in clip.modules():
        if type(module) is nn.Linear:
            module.__class__ = CastingLinear
            module.half()
        elif type(module) is nn.Conv2d:
            module.__class__ = CastingConv2d
            module.half()
        elif type(module) is nn.LayerNorm:
            module.__class__ = Fp32LayerNorm
    vision = clip.vision_model.embeddings
    vision.__class__ = _vision_embeddings_cls()
    clip.text_model.embeddings.__class__ = _text_embeddings_cls()
    return [name for name, p in clip.named_parameters() if p.dtype == torch.float16]


def position_grid(image_size: tuple[int, int], patch: int) -> tuple[int, int]:
    """The patch grid (rows, cols) of ``image_size`` (H, W)."""
    return image_size[0] // patch, image_size[1] // patch


def install_position_table(clip: Any, table: torch.Tensor) -> None:
    """Make ``table`` (1 + rows*cols) x width the trained vision position table of ``clip``,
    used as it is at every forward (no interpolation). ``table`` is stored as float32."""
    emb = clip.vision_model.embeddings
    weight = emb.position_embedding.weight
    new = nn.Embedding(table.shape[0], table.shape[1], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(table.to(weight.dtype))
    emb.position_embedding = new
    emb.num_positions = table.shape[0]
    emb.num_patches = table.shape[0] - 1
    emb.position_ids = torch.arange(table.shape[0], device=weight.device).expand((1, -1))
    if type(emb).__name__ != "ReferenceVisionEmbeddings":
        emb.__class__ = _vision_embeddings_cls()
