"""``wsreid convert-weights``: an OpenAI CLIP checkpoint file -> a transformers model folder.

The folder is what ``CLIPModel.from_pretrained`` and ``encoder.pretrained: DIR`` load:
``config.json``, ``model.safetensors`` (the file's dtype: float16 for OpenAI's) and, with a
BPE merges file, the tokenizer (OpenAI's vocabulary, start 49406, end 49407, padding id 0;
the encoder adds its mask token when it loads the folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from wsreid.errors import UserError

__all__ = ["convert_openai_checkpoint"]


def convert_openai_checkpoint(source: str | Path, out_dir: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write the transformers ``CLIPModel`` folder of OpenAI checkpoint ``source`` to
    ``out_dir`` (which must not exist or be empty); with ``tokenizer`` (a BPE merges file)
    the tokenizer too. Written beside ``out_dir`` and renamed into place, so a failure leaves
    nothing half-written. Returns ``out_dir``. Errors are one-line :class:`UserError`."""
    import torch

    from wsreid_clip.bpe import bpe_tokenizer
    from wsreid_clip.openai import clip_from_openai_state, read_openai_state

    source, out_dir = Path(source).expanduser(), Path(out_dir).expanduser()
    if not source.is_file():
        raise UserError(f"convert-weights: checkpoint file {source} does not exist",
                        hint="pass OpenAI's ViT-B-16.pt or a fork's state dict file")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"convert-weights: output {out_dir} already exists and is not an empty directory",
                        hint="choose a new output directory")
    state = read_openai_state(source)
    fast = bpe_tokenizer(tokenizer, mask="none", max_length=int(state["positional_embedding"].shape[0])) if tokenizer else None
    model = clip_from_openai_state(state, source)
    floats = {v.dtype for v in state.values() if v.is_floating_point()}
    if floats == {torch.float16}:
        model = model.half()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(str(staging))
        if fast is not None:
            fast.save_pretrained(str(staging))
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir
