"""CLIP's byte-pair tokenizer built offline from OpenAI's merges file.

``bpe_simple_vocab_16e6.txt.gz`` (shipped with OpenAI's CLIP and the IRRA-style repositories)
is a gzip text file: a header line, then one merge per line (``"a b"``). The vocabulary is
built the way OpenAI's tokenizer builds it:

1. the 256 byte symbols (GPT-2's printable byte-to-unicode table, in its order), then the
   same 256 symbols with the end-of-word marker ``</w>``;
2. one token per merge (the concatenation), for the first 49152 - 256 - 2 = 48894 merges;
3. ``<|startoftext|>`` and ``<|endoftext|>``.

With OpenAI's file that gives 49408 ids: start 49406, end 49407. Mode ``mask_token:
last_merge`` (the authors' code) drops the last merge and appends ``<|mask|>`` before the
two special tokens, so the mask is 49405 and start/end keep their ids; mode ``added`` keeps
OpenAI's vocabulary and appends ``<|mask|>`` after it (49408); mode ``none`` is OpenAI's
vocabulary as it is (no mask token).

Text processing: NFC, runs of white space to one space, lower case; split into
contractions, letter runs, single digits and runs of other symbols (OpenAI's pattern);
byte-level symbols; BPE with ``</w>`` ending each word. Every text becomes start + tokens +
end; longer texts lose their last tokens, never the end token (OpenAI's truncation).
OpenAI's code pads with id 0 to ``max_length``. Id 0 is the byte symbol ``!``, which must
stay an ordinary token (a special padding token ``!`` would turn every ``!`` of a text into
padding), so the tokenizer pads with the end token and the encoder writes 0 into the padded
positions, after unescaping HTML entities twice as OpenAI's text cleaning does
(:func:`is_openai_vocabulary`). OpenAI's ``ftfy`` text repair is not applied.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Literal

from wsreid.errors import RecipeError

START, END, MASK = "<|startoftext|>", "<|endoftext|>", "<|mask|>"
#: merges OpenAI's tokenizer uses: 49152 - 256 - 2
OPENAI_MERGES = 49152 - 256 - 2
#: OpenAI's pre-tokenisation pattern (contractions, letter runs, single digits, other symbols).
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

MaskMode = Literal["added", "last_merge", "none"]


def byte_symbols() -> list[str]:
    """The 256 printable symbols standing for bytes 0..255, in vocabulary order: the
    printable ranges first (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ`` map to themselves),
    then every other byte b, in increasing order, to chr(256 + n)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbol = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbol:
            symbol[b] = chr(256 + extra)
            extra += 1
    return [symbol[b] for b in printable] + [symbol[b] for b in range(256) if b not in printable]


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """The merges of a BPE merges file (gzip or plain text; the first line is a header)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RecipeError(f"clip encoder: tokenizer file {path} does not exist",
                          hint="set encoder.tokenizer to OpenAI's bpe_simple_vocab_16e6.txt.gz", key=("encoder", "tokenizer"))
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise RecipeError(f"clip encoder: tokenizer file {path} is unreadable ({type(exc).__name__})",
                          hint="it must be a (gzipped) BPE merges file such as bpe_simple_vocab_16e6.txt.gz",
                          key=("encoder", "tokenizer")) from None
    lines = text.split("\n")[1 : OPENAI_MERGES + 1]
    merges = []
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise RecipeError(f"clip encoder: tokenizer file {path} line {number}: a merge must be two symbols, got {line!r}")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise RecipeError(f"clip encoder: tokenizer file {path} holds no merges")
    return merges


def bpe_vocabulary(merges: list[tuple[str, str]], mask: MaskMode = "added") -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges used) for ``merges`` in OpenAI's id order (see the module doc)."""
    if mask == "last_merge":
        merges = merges[:-1]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    if mask == "last_merge":
        tokens.append(MASK)
    tokens += [START, END]
    if mask == "added":
        tokens.append(MASK)
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    if len(vocab) != len(tokens):
        raise RecipeError("clip encoder: the BPE merges file produces duplicate tokens")
    return vocab, merges


def bpe_vocabulary_size(path: str | Path, mask: MaskMode = "added") -> int:
    """The number of tokens of :func:`bpe_tokenizer` for ``path`` and ``mask`` (the added mask
    token included), without building the tokenizer. Raises as :func:`read_merges`."""
    return len(bpe_vocabulary(read_merges(path), mask)[0])


def bpe_tokenizer(path: str | Path, *, mask: MaskMode = "added", max_length: int = 77) -> Any:
    """A transformers fast tokenizer for OpenAI's BPE merges file ``path`` (see the module
    doc): bos ``<|startoftext|>``, eos ``<|endoftext|>``, mask ``<|mask|>`` (none for
    ``mask="none"``), padding with eos (OpenAI's id 0 is written by the encoder:
    :func:`is_openai_vocabulary`)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = bpe_vocabulary(read_merges(path), mask)
    model = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="",
                       unk_token=None, fuse_unk=False)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, vocab[START]), (END, vocab[END])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=START, eos_token=END, pad_token=END, model_max_length=max_length,
        **({} if mask == "none" else {"mask_token": MASK}),
    )


def is_openai_vocabulary(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` holds OpenAI's CLIP vocabulary - id 0 the byte symbol ``!``,
    start and end tokens ``<|startoftext|>`` and ``<|endoftext|>`` - whose texts OpenAI's
    code (and the authors') unescapes (HTML entities, twice) before tokenizing and pads
    with id 0. Raises :class:`RecipeError` when such a
    tokenizer makes ``!`` a special padding token (folders written by earlier versions of
    ``wsreid convert-weights``): every ``!`` of a caption would become padding."""
    if tokenizer.convert_ids_to_tokens(0) != byte_symbols()[0]:
        return False
    if tokenizer.bos_token != START or tokenizer.eos_token != END:
        return False
    if tokenizer.pad_token == byte_symbols()[0]:
        raise RecipeError(
            "clip encoder: the saved tokenizer makes '!' (id 0) its padding token, so every '!' of a caption "
            "would be read as padding",
            hint="convert the checkpoint again with wsreid convert-weights (the new folder pads with the end token)",
        )
    return True
