"""``wsreid convert-weights``: an OpenAI CLIP checkpoint file -> a transformers model folder.

The folder is what ``CLIPModel.from_pretrained`` and ``encoder.pretrained: DIR`` load:
``config.json``, ``model.safetensors`` (the file's dtype: float16 for OpenAI's) and, with a
BPE merges file, the tokenizer (OpenAI's vocabulary, start 49406, end 49407, padding id 0;
the encoder adds its mask token when it loads the folder; without one a ``warning:`` line
says the folder then needs ``encoder.tokenizer: <BPE file>``). The BPE file's vocabulary
must have as many tokens as the checkpoint's token embedding has rows (its start and end
ids are its last two). transformers' "Writing model
shards" bar is hidden (it writes one local file), unless its verbosity asks for details
(``TRANSFORMERS_VERBOSITY=info`` or ``debug``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from wsreid.errors import RecipeError, UserError
from wsreid.fileio import cannot_create_in, disk_full, nearest_existing

__all__ = ["convert_openai_checkpoint"]


def convert_openai_checkpoint(source: str | Path, out_dir: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write the transformers ``CLIPModel`` folder of OpenAI checkpoint ``source`` to
    ``out_dir`` (which must not exist or be empty); with ``tokenizer`` (a BPE merges file)
    the tokenizer too. Written beside ``out_dir`` and renamed into place, so a failure
    (a full disk included) leaves nothing half-written, nor the folders made for it.
    Returns ``out_dir``. Errors are one-line :class:`UserError`."""
    import torch
    from safetensors import SafetensorError

    from wsreid_clip.bpe import bpe_tokenizer
    from wsreid_clip.loading import quiet_bars
    from wsreid_clip.openai import OpenAIFileError, clip_from_openai_state, read_openai_state

    source, out_dir = Path(source).expanduser(), Path(out_dir).expanduser()
    if source.is_dir():
        raise UserError(f"convert-weights: {source} is a folder, not a checkpoint file",
                        hint="pass OpenAI's ViT-B-16.pt or a fork's state dict file; a transformers model folder "
                             "needs no conversion (set encoder.pretrained to it)")
    if not source.is_file():
        raise UserError(f"convert-weights: checkpoint file {source} does not exist",
                        hint="pass OpenAI's ViT-B-16.pt or a fork's state dict file")
    if out_dir.is_symlink() and out_dir.is_dir():  # a link to a folder: write in that folder (renamed into place)
        out_dir = out_dir.resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"convert-weights: output {out_dir} already exists and is not an empty directory",
                        hint="choose a new output directory")
    if tokenizer is not None:
        tokenizer = _check_tokenizer_file(Path(tokenizer).expanduser())
    _check_writable(out_dir)  # before the checkpoint is read (seconds for OpenAI's)
    try:
        state = read_openai_state(source)
    except OpenAIFileError as exc:  # said of this command, with its own advice (it takes no model folder)
        raise UserError(f"convert-weights: {exc.problem}", hint=exc.convert_hint) from None
    try:
        fast = bpe_tokenizer(tokenizer, mask="none", max_length=int(state["positional_embedding"].shape[0])) if tokenizer else None
        model = clip_from_openai_state(state, source)
    except RecipeError as exc:  # the BPE file's content, tensors that do not fit: as the encoder says it, of this command
        raise UserError("convert-weights: " + str(exc).removeprefix("clip encoder: ")) from None
    rows = model.text_model.embeddings.token_embedding.num_embeddings
    if fast is not None and len(fast) != rows:  # its start and end ids are the last two: they must be the weights'
        raise UserError(f"convert-weights: tokenizer file {tokenizer} has {len(fast)} tokens, the checkpoint's token "
                        f"embedding {rows} rows: it is not the vocabulary of these weights",
                        hint="pass --tokenizer the merges file the weights were trained with (OpenAI's "
                             "bpe_simple_vocab_16e6.txt.gz for OpenAI's CLIP), or convert without --tokenizer; "
                             "nothing was written")
    floats = {v.dtype for v in state.values() if v.is_floating_point()}
    if floats == {torch.float16}:
        model = model.half()
    made = [p for p in reversed(out_dir.parents) if not p.exists()]  # folders made for the output
    staging: Path | None = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
        with quiet_bars("Writing model shards"):  # local file work: no bar
            model.save_pretrained(str(staging))
            if fast is not None:
                fast.save_pretrained(str(staging))
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(staging, out_dir)
        made = []
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
        raise _write_error(out_dir, exc) from None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                break
    if fast is None:
        print(f"warning: convert-weights: {out_dir} holds no tokenizer (no --tokenizer given): use it with "
              f"encoder.tokenizer set to OpenAI's BPE file bpe_simple_vocab_16e6.txt.gz, or convert again into a "
              "new folder (or after deleting this one) with --tokenizer BPE_FILE", file=sys.stderr)
    return out_dir


def _check_tokenizer_file(path: Path) -> Path:
    """``--tokenizer``'s BPE merges file is a file (checked before the checkpoint is read);
    returns it."""
    if path.is_dir():
        raise UserError(f"convert-weights: tokenizer file {path} is a folder",
                        hint="pass --tokenizer the BPE merges file, OpenAI's bpe_simple_vocab_16e6.txt.gz")
    if not path.is_file():
        raise UserError(f"convert-weights: tokenizer file {path} does not exist",
                        hint="pass --tokenizer the BPE merges file, OpenAI's bpe_simple_vocab_16e6.txt.gz")
    return path


def _check_writable(out_dir: Path) -> None:
    """The output folder can be made: no file where a folder should be, and the nearest
    existing folder above it takes new files (a probe file, removed at once)."""
    parent = nearest_existing(out_dir)
    if not parent.is_dir():
        raise UserError(f"convert-weights: cannot create the output folder {out_dir}: {parent} is a file, "
                        "not a folder", hint="choose another output directory")
    exc = cannot_create_in(parent, out_dir.name)
    if exc is not None:
        raise UserError(f"convert-weights: cannot create the output folder {out_dir}: cannot write in "
                        f"{parent}: {exc.strerror or type(exc).__name__}",
                        hint="choose an output directory in a folder you can write to") from None


def _write_error(out_dir: Path, exc: BaseException) -> UserError:
    text = str(exc)
    if disk_full(exc):
        return UserError(f"convert-weights: cannot write {out_dir}: no space left on the device",
                         hint="free space, or choose an output directory on another disk; nothing was written")
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(text.split()) or type(exc).__name__
    return UserError(f"convert-weights: cannot write {out_dir}: {why}",
                     hint="choose an output directory in a folder you can write to; nothing was written")
