"""Tokenizers for the ``clip`` encoder.

Two sources:

* **build** - a word-level vocabulary made offline from the training captions with the
  ``tokenizers`` library: NFKC + lower-case, split on whitespace and on punctuation (each
  punctuation mark is its own token). Ids 0-4 are the special tokens ``<pad>``, ``<unk>``,
  ``<mask>``, ``<start>``, ``<end>``; words follow by decreasing frequency (ties in
  alphabetical order), so the same captions always give the same ids. Every text becomes
  ``<start> words <end>``.
* **pretrained** - the tokenizer saved beside a pretrained model (CLIP's BPE). CLIP's
  tokenizer has no mask token; :func:`ensure_mask_token` adds ``<|mask|>``.

A built tokenizer is stored in ``<run_dir>/tokenizer`` so that resuming or evaluating a run
reuses exactly the same vocabulary instead of building a new one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

from wsreid.errors import RecipeError

PAD, UNK, MASK, START, END = "<pad>", "<unk>", "<mask>", "<start>", "<end>"
#: Special tokens of a built tokenizer, in id order (0..4). The end token must not get
#: id 2: CLIPTextModel treats ``eos_token_id == 2`` as a legacy configuration.
BUILT_SPECIAL_TOKENS = (PAD, UNK, MASK, START, END)
#: The token added to a pretrained tokenizer that has no mask token.
ADDED_MASK_TOKEN = "<|mask|>"
TOKENIZER_DIRNAME = "tokenizer"


def build_word_tokenizer(
    captions: Iterable[str], *, min_frequency: int = 1, max_vocab: int | None = None, max_length: int = 77
) -> Any:
    """Train a word-level tokenizer on ``captions``; returns a transformers fast tokenizer.

    ``max_vocab`` bounds the vocabulary including the 5 special tokens (None: no bound);
    words seen fewer than ``min_frequency`` times map to ``<unk>``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab if max_vocab is not None else 2**31 - 1,
        min_frequency=min_frequency,
        special_tokens=list(BUILT_SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(captions), trainer=trainer)
    ids = {tok: tokenizer.token_to_id(tok) for tok in BUILT_SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(len(BUILT_SPECIAL_TOKENS))), ids
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, ids[START]), (END, ids[END])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        mask_token=MASK,
        bos_token=START,
        eos_token=END,
        model_max_length=max_length,
    )


def load_tokenizer(source: str | Path, *, local_files_only: bool = False) -> Any:
    """Load a saved tokenizer (a directory or a hub name) through ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source), local_files_only=local_files_only)


def save_tokenizer(tokenizer: Any, directory: Path) -> Path:
    """Write ``tokenizer`` to ``directory`` atomically (written beside it, then renamed), so
    that several processes saving the same vocabulary at once never leave a half-written
    directory. If ``directory`` already exists it is left as it is. Returns ``directory``."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        tokenizer.save_pretrained(str(staging))
        try:
            os.rename(staging, directory)
        except OSError:
            if not directory.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def built_tokenizer_for_run(
    run_dir: Path | None,
    captions: list[str] | None,
    *,
    min_frequency: int,
    max_vocab: int | None,
    max_length: int,
    trained: bool = False,
) -> Any:
    """The built tokenizer of a run: loaded from ``run_dir/tokenizer`` when it exists,
    otherwise built from ``captions`` (and saved there when ``run_dir`` is set). With
    ``trained`` (trained weights are loaded afterwards: ``wsreid eval``, ``wsreid
    search``), the saved vocabulary is required and nothing is built or written: one
    rebuilt from the captions at hand (another dataset's, with ``--data``) would give the
    weights' token rows to other words."""
    saved = Path(run_dir) / TOKENIZER_DIRNAME if run_dir is not None else None
    if trained and (saved is None or not saved.is_dir()):
        where = (f"its run directory {run_dir} holds no {TOKENIZER_DIRNAME}/ folder (copied without it, or the "
                 "recipe is not the one the run was trained with?)"
                 if run_dir is not None else "a checkpoint outside its run directory does not carry it")
        raise RecipeError(
            "clip encoder: these weights were trained with a vocabulary built from their run's training captions "
            f"(encoder.pretrained: null), saved in the run's {TOKENIZER_DIRNAME}/ folder, and {where}",
            hint=f"evaluate the run directory itself, or copy its {TOKENIZER_DIRNAME}/ folder back beside its "
                 "checkpoints/")
    if saved is not None and saved.is_dir():
        tokenizer = load_tokenizer(saved, local_files_only=True)
        missing = [name for name in ("pad_token", "mask_token", "bos_token", "eos_token", "unk_token") if getattr(tokenizer, name) is None]
        if missing:
            raise RecipeError(
                f"clip encoder: the tokenizer saved in {saved} lacks {', '.join(missing)}",
                hint="delete that directory to build a new vocabulary from the training captions",
            )
        return tokenizer
    if not captions:
        raise RecipeError(
            "clip encoder: with encoder.pretrained: null it builds its vocabulary from the training captions, and "
            f"none are at hand (no dataset loaded, no {TOKENIZER_DIRNAME}/ folder of a run)",
            hint="a from-scratch encoder has nothing to encode with before it is trained: train the recipe (wsreid "
                 "run) and use its run directory, which holds the vocabulary, or set encoder.pretrained to a model "
                 "with its tokenizer (in code: build the encoder with the training captions, "
                 "BuildContext.train_captions)",
        )
    tokenizer = build_word_tokenizer(captions, min_frequency=min_frequency, max_vocab=max_vocab, max_length=max_length)
    if saved is not None:
        save_tokenizer(tokenizer, saved)
        tokenizer = load_tokenizer(saved, local_files_only=True)  # whatever is on disk wins
    return tokenizer


def ensure_mask_token(tokenizer: Any) -> bool:
    """Give ``tokenizer`` a mask token (``<|mask|>``) if it has none; True if one was added."""
    if tokenizer.mask_token is not None:
        return False
    tokenizer.add_special_tokens({"mask_token": ADDED_MASK_TOKEN})
    return True
