"""The authors' weight precision and position table for the transformers ``CLIPModel``
(docs/method.md, "Paper text and the authors' code").

* :func:`convert_weights_fp16` - the authors' ``convert_weights``: the weights and biases of
  every Linear and Conv2d (attention q/k/v and output projections, MLP, patch embedding,
  both feature projections) become float16 parameters, trained as such; LayerNorm
  parameters, token and position embeddings and the class embedding stay float32. The
  encoders then compute in float16 (embeddings are cast to float16 before they are added;
  LayerNorm computes in float32 and casts back), so features come out float16.
* :func:`encode_image_sequence_first` / :func:`encode_text_sequence_first` - the encoders'
  forward in the authors' operation order, used with float16 weights: the Transformer runs
  sequence-first (L x N x D), self-attention is ``torch.nn.functional.
  multi_head_attention_forward`` with the packed q/k/v projection and attention weights
  requested (as ``nn.MultiheadAttention(x, x, x, need_weights=True)`` computes it: scaled
  query, ``baddbmm`` with the causal mask, float16 softmax), and the final LayerNorm and
  projection run over every token before the pooled one is taken. The values are those of
  the transformers modules (same parameters); only the float16 rounding follows the authors'.
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

__all__ = [
    "convert_weights_fp16",
    "encode_image_sequence_first",
    "encode_text_sequence_first",
    "install_position_table",
    "position_grid",
]


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


def _sequence_first_block(layer: Any, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """One CLIP encoder layer on ``x`` L x N x D the way the authors' residual block computes
    it: ``x + attention(ln_1(x))``, then ``x + mlp(ln_2(x))``; attention through the packed
    q/k/v projection with the attention weights requested (their ``need_weights=True``)."""
    attn = layer.self_attn
    h = layer.layer_norm1(x)
    in_weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    in_bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
    out, _ = F.multi_head_attention_forward(
        h, h, h, attn.embed_dim, attn.num_heads, in_weight, in_bias, None, None, False, 0.0,
        attn.out_proj.weight, attn.out_proj.bias, training=layer.training, need_weights=True, attn_mask=attn_mask,
    )
    x = x + out
    return x + layer.mlp(layer.layer_norm2(x))


def _sequence_first_layers(encoder: Any, hidden: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """``encoder.layers`` over ``hidden`` N x L x D, computed sequence-first; N x L x D out."""
    x = hidden.permute(1, 0, 2)
    for layer in encoder.layers:
        x = _sequence_first_block(layer, x, attn_mask)
    return x.permute(1, 0, 2)


def _project_every_token(x: torch.Tensor, projection: nn.Linear) -> torch.Tensor:
    """``x @ P`` with ``P`` = the projection as a contiguous D x E matrix (the authors hold it
    so), applied to every token: N x L x D -> N x L x E."""
    return x @ projection.weight.t().contiguous()


def encode_image_sequence_first(clip: Any, images: torch.Tensor) -> torch.Tensor:
    """Images N x 3 x H x W -> class-token features N x E in the authors' operation order
    (``ln_post`` and the projection over every token, token 0 taken last)."""
    vision = clip.vision_model
    hidden = vision.pre_layrnorm(vision.embeddings(images))
    x = vision.post_layernorm(_sequence_first_layers(vision.encoder, hidden, None))
    return _project_every_token(x, clip.visual_projection)[:, 0, :]


@functools.lru_cache(maxsize=8)
def _causal_mask(length: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """L x L additive mask: -inf above the diagonal, 0 elsewhere."""
    return torch.full((length, length), float("-inf"), device=device).triu_(1).to(dtype)


def encode_text_sequence_first(clip: Any, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Token ids N x L -> features N x E taken at ``positions`` (N, the end token) in the
    authors' operation order: causal mask only (positions after the end token never reach
    it), ``ln_final`` and the projection over every token."""
    text = clip.text_model
    hidden = text.embeddings(input_ids=input_ids)
    mask = _causal_mask(input_ids.shape[1], hidden.dtype, str(hidden.device))
    x = text.final_layer_norm(_sequence_first_layers(text.encoder, hidden, mask))
    features = _project_every_token(x, clip.text_projection)
    return features[torch.arange(features.shape[0], device=features.device), positions]
