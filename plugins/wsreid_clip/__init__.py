"""Shipped wsreid plugin: the ``clip`` encoder (CLIP image and text Transformers, pretrained
or randomly initialised, with a tokenizer loaded with the model or built from the captions)."""

from wsreid import hookimpl
from wsreid_clip.encoder import ClipEncoder, ClipParams, TextParams, VisionParams

__all__ = ["ClipEncoder", "ClipParams", "TextParams", "VisionParams", "wsreid_register"]


@hookimpl
def wsreid_register(registry) -> None:
    """Register the ``clip`` encoder."""
    registry.add("encoder", "clip", ClipEncoder)
