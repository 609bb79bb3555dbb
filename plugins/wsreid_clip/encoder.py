"""The ``clip`` encoder: a CLIP image encoder and text Transformer (docs/method.md).

Image feature = the vision CLS token after the post layer norm and the visual projection;
text feature = the hidden state at the first end-of-text token after the final layer norm
and the text projection. Both are raw (not normalised), B x embed_dim.

Either pretrained weights (``pretrained``: a hub name such as
``openai/clip-vit-base-patch16`` or a local directory with a saved ``CLIPModel`` and its
tokenizer) or a random initialisation from the config fields (the defaults give the
ViT-B/16 architecture; the CPU recipes set tiny sizes). CLIP's ``logit_scale`` is frozen
(``requires_grad = False``): the method uses a fixed temperature in its losses.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator

from wsreid.api import BuildContext, EncoderComponent, Params, ParamsCheckError, ParamsCheckWarning
from wsreid.errors import RecipeError
from wsreid.launcher import launch_from_env
from wsreid_clip import loading
from wsreid_clip.bpe import bpe_tokenizer, bpe_vocabulary_size, is_openai_vocabulary
from wsreid_clip.loading import (
    config_architecture,
    config_sizes,
    has_saved_tokenizer,
    load_pretrained,
    load_pretrained_tokenizer,
    no_tokenizer_problem,
    random_clip_model,
    resolve_pretrained,
    saved_config,
    saved_dtype,
)
from wsreid_clip.openai import (
    OpenAIFileError,
    clip_from_openai_state,
    is_openai_checkpoint_file,
    openai_file_config,
    read_openai_state,
    resize_vision_position_table,
)
from wsreid_clip.precision import (
    convert_weights_fp16,
    encode_image_sequence_first,
    encode_text_sequence_first,
    install_position_table,
    position_grid,
)
from wsreid_clip.tokenizer import TOKENIZER_DIRNAME, built_tokenizer_for_run, ensure_mask_token


def _check_heads(hidden: int, heads: int) -> None:
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")


class VisionParams(Params):
    """Vision Transformer size of a random initialisation (with ``pretrained`` the model's
    own; a size other than the default must then be the model's)."""

    hidden: int = Field(768, ge=1, description="width of the vision Transformer")
    layers: int = Field(12, ge=1, description="number of vision Transformer layers")
    heads: int = Field(12, ge=1, description="attention heads (must divide hidden)")
    intermediate: int | None = Field(None, ge=1, description="MLP width (None: 4 x hidden)")
    patch_size: int = Field(16, ge=1, description="square patch side in pixels (must divide both image sides)")

    @model_validator(mode="after")
    def _heads_divide(self) -> "VisionParams":
        _check_heads(self.hidden, self.heads)
        return self


class TextParams(Params):
    """Text Transformer size of a random initialisation (with ``pretrained`` the model's
    own; a size other than the default must then be the model's)."""

    hidden: int = Field(512, ge=1, description="width of the text Transformer")
    layers: int = Field(12, ge=1, description="number of text Transformer layers")
    heads: int = Field(8, ge=1, description="attention heads (must divide hidden)")
    intermediate: int | None = Field(None, ge=1, description="MLP width (None: 4 x hidden)")

    @model_validator(mode="after")
    def _heads_divide(self) -> "TextParams":
        _check_heads(self.hidden, self.heads)
        return self


class ClipParams(Params):
    """Parameters of the ``clip`` encoder."""

    pretrained: str | None = Field(
        None,
        description="a shipped encoder (synth-web-tiny-clip), a hub name (e.g. openai/clip-vit-base-patch16: the local "
        "cache first, downloaded only when the hub can be reached), a local directory (relative to the working "
        "directory; the run's recipe.yaml stores it absolute) with a saved CLIPModel and tokenizer, or an OpenAI checkpoint file (ViT-B-16.pt: "
        "TorchScript archive or state dict, fp16 or fp32; needs tokenizer: <BPE file>); None = random "
        "initialisation from the sizes below",
    )
    tokenizer: str | None = Field(
        None,
        description="'pretrained': the tokenizer saved with the model; 'build': a word-level vocabulary built "
        "from the training captions (kept in <run_dir>/tokenizer); a path to OpenAI's BPE merges file "
        "(bpe_simple_vocab_16e6.txt.gz; stored absolute in the run's recipe.yaml): CLIP's tokenizer built offline (start 49406, end 49407, zero padding); "
        "None = 'pretrained' with pretrained weights, else 'build'",
    )
    mask_token: Literal["added", "last_merge"] = Field(
        "added",
        description="mask token of the asymmetric view with a pretrained vocabulary: 'added' appends <|mask|> "
        "(its embedding row starts as the mean row); 'last_merge' gives the BPE file's last merge id to <|mask|> "
        "(49405 with OpenAI's file, a pretrained row: the authors' code; needs tokenizer: <BPE file>)",
    )
    weights_dtype: Literal["fp32", "fp16"] = Field(
        "fp32",
        description="'fp16': the authors' convert_weights - Linear/Conv/attention weights and biases and both "
        "projections held and trained in float16 (LayerNorm, embeddings, class embedding stay float32), encoders "
        "computing in float16 with the authors' operations (sequence-first blocks, packed attention projection, "
        "float16 softmax of nn.MultiheadAttention); 'fp32': every weight float32 (train.mixed_precision is "
        "autocast, another thing)",
    )
    position_table: Literal["interpolate", "resize_once"] = Field(
        "interpolate",
        description="vision position table for a non-square image: 'interpolate' keeps the pretrained square "
        "table and interpolates it bicubically at every forward; 'resize_once' resizes it once at load to the "
        "patch grid (bilinear, in the stored dtype; 14x14 -> 24x8) and trains the resized table (authors' code)",
    )
    image_resize: Literal["bicubic", "bilinear"] = Field(
        "bicubic",
        description="interpolation when images are resized to image_size: PIL bicubic, or bilinear (torchvision's "
        "Resize as the authors' code uses it)",
    )
    min_frequency: int = Field(1, ge=1, description="'build': words seen fewer times map to the unknown token")
    max_vocab: int | None = Field(None, ge=6, description="'build': vocabulary bound including 5 special tokens")
    embed_dim: int = Field(512, ge=1, description="joint embedding size d (random initialisation; with pretrained, "
                           "a value other than the default must be the model's)")
    vision: VisionParams = Field(default_factory=VisionParams, description="vision Transformer size")
    text: TextParams = Field(default_factory=TextParams, description="text Transformer size")
    image_size: tuple[int, int] = Field((384, 128), description="input image [height, width] in pixels")
    max_length: int = Field(77, ge=3, description="token sequence length L (start + words + end, padded)")

    @field_validator("pretrained", "tokenizer", mode="after")
    @classmethod
    def _local_path_absolute(cls, value: str | None) -> str | None:
        # a relative path that names a local file or folder is stored absolute in the run's
        # recipe.yaml (as data.root is), so that the run is evaluated and searched from any
        # working directory; shipped and hub names, and paths that name nothing, stay as written
        if value is None or value in ("pretrained", "build") or value in loading.shipped_models():
            return value
        path = Path(value).expanduser()
        return str(path.resolve()) if not path.is_absolute() and path.exists() else value

    @field_validator("image_size", mode="after")
    @classmethod
    def _image_size_fits(cls, value: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        # a field check, so that the error names encoder.image_size; the patch size of
        # pretrained weights is checked by check_params (from the model's config.json)
        h, w = value
        if min(h, w) < 1:
            raise ValueError("both sides must be positive")
        vision = info.data.get("vision")
        if info.data.get("pretrained") is None and vision is not None and (h % vision.patch_size or w % vision.patch_size):
            raise ValueError(f"not a multiple of vision.patch_size {vision.patch_size}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ClipParams":
        if self.tokenizer == "pretrained" and self.pretrained is None:
            raise ValueError("tokenizer 'pretrained' needs pretrained: <hub name or model directory>")
        if self.tokenizer == "build" and self.pretrained is not None:
            instead = ("tokenizer: <BPE file> (OpenAI's bpe_simple_vocab_16e6.txt.gz: an OpenAI checkpoint file "
                       "carries no tokenizer)" if is_openai_checkpoint_file(self.pretrained) else "tokenizer: pretrained")
            raise ValueError(
                "tokenizer 'build' cannot be combined with pretrained weights (their token embedding "
                f"belongs to the pretrained vocabulary); use {instead}"
            )
        if self.tokenizer_source == "bpe" and self.pretrained is None:
            raise ValueError("tokenizer: <BPE file> needs pretrained weights (the BPE ids index their token embedding)")
        if self.mask_token == "last_merge" and self.tokenizer_source != "bpe":
            raise ValueError("mask_token 'last_merge' needs tokenizer: <path to the BPE merges file>")
        return self

    @property
    def tokenizer_source(self) -> str:
        """'pretrained', 'build' or 'bpe' (a BPE merges file), with the default resolved."""
        if self.tokenizer in ("pretrained", "build"):
            return self.tokenizer
        if self.tokenizer is not None:
            return "bpe"
        return "pretrained" if self.pretrained else "build"


def end_token_features(
    hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, end_token_id: int
) -> torch.Tensor:
    """Hidden state at the first end token of each row (B x L x D -> B x D); a row without
    one (never produced by ``tokenize``) falls back to its last attended position."""
    position = end_token_positions(input_ids, attention_mask, end_token_id)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), position]


def end_token_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, end_token_id: int) -> torch.Tensor:
    """Position (B,) of the first end token of each row B x L; a row without one falls back
    to its last attended position."""
    is_end = input_ids == end_token_id
    first_end = is_end.int().argmax(dim=1)
    last_attended = (attention_mask.long().sum(dim=1) - 1).clamp(min=0)
    return torch.where(is_end.any(dim=1), first_end, last_attended)


def _resize_token_embedding(model: Any, vocab_size: int) -> int:
    """Grow the text token embedding to ``vocab_size`` rows; new rows = mean of the old
    ones. Returns the number of rows added."""
    embeddings = model.text_model.embeddings
    old = embeddings.token_embedding
    added = vocab_size - old.num_embeddings
    if added <= 0:
        return 0
    new = torch.nn.Embedding(vocab_size, old.embedding_dim, dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight[: old.num_embeddings] = old.weight
        new.weight[old.num_embeddings :] = old.weight.mean(dim=0)
    embeddings.token_embedding = new
    model.config.text_config.vocab_size = vocab_size
    return added


def _tokenizer_of(params: ClipParams) -> str:
    """The pretrained tokenizer ``params`` reads, in words."""
    if params.tokenizer_source == "bpe":
        return f"the BPE tokenizer of {params.tokenizer}"
    return f"the tokenizer of {params.pretrained}"


def _tower_size(tower: VisionParams | TextParams, field: str) -> Any:
    """A size of a tower as the model gets it (an ``intermediate`` of None is 4 x hidden)."""
    return (tower.intermediate or 4 * tower.hidden) if field == "intermediate" else getattr(tower, field)


def _random_sizes(params: ClipParams, source: ClipParams) -> list[tuple[str, Any, Any]]:
    """(key, this value, the initial run's) of every size that shapes a randomly initialised
    model's weights (:func:`~wsreid_clip.loading.random_clip_model`); the image size only
    through its longer side (the vision position table's grid)."""
    sizes = [("embed_dim", params.embed_dim, source.embed_dim), ("max_length", params.max_length, source.max_length)]
    for tower in ("vision", "text"):
        mine, theirs = getattr(params, tower), getattr(source, tower)
        for field in type(mine).model_fields:
            if field != "heads":  # the attention heads split the same projections: no weight changes shape
                sizes.append((f"{tower}.{field}", _tower_size(mine, field), _tower_size(theirs, field)))
    longer = max(params.image_size), max(source.image_size)
    if longer[0] != longer[1]:
        sizes.append(("image_size", list(params.image_size), list(source.image_size)))
    return sizes


def _check_sizes_fit(params: ClipParams, sizes: dict[str, int]) -> None:
    """image_size and max_length against the pretrained model's patch size and text
    positions (:func:`~wsreid_clip.loading.model_sizes`), as ParamsCheckError naming the key."""
    patch = sizes.get("patch_size")
    h, w = params.image_size
    if patch is not None and (h % patch or w % patch):
        fit = [max(patch, round(h / patch) * patch), max(patch, round(w / patch) * patch)]
        raise ParamsCheckError("image_size", f"{[h, w]} is not a multiple of the pretrained model's patch size "
                               f"{patch}", hint=f"use sides divisible by {patch}, e.g. {fit}")
    positions = sizes.get("text_positions")
    if positions is not None and params.max_length > positions:
        raise ParamsCheckError("max_length", f"{params.max_length} exceeds the pretrained model's {positions} text "
                               "positions", hint=f"set encoder.max_length to at most {positions}")


def _checked_openai_file(params: ClipParams) -> dict[str, Any]:
    """validate's look at an OpenAI checkpoint file named by ``pretrained``: a tokenizer is
    named (the file has none), and the file's tensors make a CLIP ViT (their shapes only,
    :func:`~wsreid_clip.openai.openai_file_config`). Returns its config as a mapping."""
    name = params.pretrained
    if params.tokenizer_source == "pretrained":
        raise ParamsCheckError("tokenizer" if params.tokenizer == "pretrained" else "pretrained",
                               f"{name} is an OpenAI checkpoint file, which carries no tokenizer",
                               hint="set encoder.tokenizer to OpenAI's BPE file bpe_simple_vocab_16e6.txt.gz")
    try:
        config = openai_file_config(name)
    except OpenAIFileError as exc:
        raise ParamsCheckError("pretrained", exc.problem, hint=exc.hint) from None
    except RecipeError as exc:  # tensors that do not make the model
        raise ParamsCheckError("pretrained", str(exc).removeprefix("clip encoder: "),
                               hint="the file must hold every tensor of OpenAI's CLIP ViT with its shape") from None
    return config.to_dict()


def _check_architecture(params: ClipParams, architecture: dict[str, int]) -> None:
    """A size written in the recipe (other than its default) must be the pretrained model's
    (:func:`~wsreid_clip.loading.config_architecture`), as ParamsCheckError naming the key."""
    for key, actual in architecture.items():
        if key == "vocab_size":
            continue
        *tower, field = key.split(".")
        block = getattr(params, tower[0]) if tower else params
        value, default = getattr(block, field), type(block).model_fields[field].default
        if value is not None and value != actual and value != default:
            raise ParamsCheckError(key, f"{value} differs from the pretrained model's {actual}",
                                   hint=f"the architecture comes from encoder.pretrained: remove encoder.{key} or "
                                   f"set it to {actual}")


def _check_bpe_fits(params: ClipParams, model_rows: int) -> None:
    """The BPE file's vocabulary (without an added mask token) fits the pretrained token
    embedding of ``model_rows`` rows."""
    try:
        rows = bpe_vocabulary_size(params.tokenizer, params.mask_token)
    except RecipeError as exc:
        raise ParamsCheckError("tokenizer", str(exc).removeprefix("clip encoder: ")) from None
    problem = _bpe_vocabulary_problem(f"BPE file {params.tokenizer}", rows, params.mask_token == "added", model_rows)
    if problem:
        raise ParamsCheckError("tokenizer", problem, hint=_VOCABULARY_HINT)


_VOCABULARY_HINT = ("set encoder.tokenizer to the vocabulary the weights were trained with (OpenAI's "
                    "bpe_simple_vocab_16e6.txt.gz for OpenAI's CLIP, or tokenizer: pretrained for a folder that holds one)")


def _vocabulary_problem(what: str, rows: int, model_rows: int) -> str:
    return (f"{what} has {rows} tokens, more than the {model_rows} rows of the pretrained model's token embedding: "
            "it is not the vocabulary of these weights")


def _bpe_vocabulary_problem(what: str, tokens: int, mask_added: bool, model_rows: int) -> str | None:
    """What is wrong with a BPE file's vocabulary of ``tokens`` tokens (an added mask token
    included when ``mask_added``) for a token embedding of ``model_rows`` rows, or None.
    The file's own tokens must be the rows: more would read rows that do not exist, fewer
    would put its start and end tokens (the last two ids) on rows the weights learnt as
    ordinary tokens, and the text tower pools at the end token. One row more than the file
    is right only when it is the added mask's, kept by weights saved after such a run."""
    own = tokens - int(mask_added)
    if own > model_rows:
        return _vocabulary_problem(what, own, model_rows)
    if own < model_rows and tokens != model_rows:
        return (f"{what} has {own} tokens, fewer than the {model_rows} rows of the pretrained model's token "
                f"embedding: it is not the vocabulary of these weights (its end token, id {own - 1}, would read a "
                "row they learnt as another token)")
    return None


def _warn_hub_not_cached(name: str) -> None:
    """validate (and the start of a run) on a hub name that is not in the local cache: when
    the hub cannot be reached now (:func:`~wsreid_clip.loading.hub_unreachable`, a probe of
    at most :data:`HUB_VALIDATE_PROBE_TIMEOUT` seconds), a
    :class:`~wsreid.errors.ParamsCheckWarning` (the recipe's warnings cite its line; the
    machine that runs may have the network). Probed by the main process only."""
    if not launch_from_env().is_main:
        return
    reason = loading.hub_unreachable(timeout=HUB_VALIDATE_PROBE_TIMEOUT)
    if reason is None:
        return
    warnings.warn(ParamsCheckWarning(
        "pretrained",
        f"{name!r} is not in the local Hugging Face cache and the hub cannot be reached now ({reason}): the run can "
        f"download it only where the hub can be reached (else run `hf download {name} --local-dir DIR` on a "
        "connected machine, copy DIR here and set encoder.pretrained: DIR)"))


#: seconds validate waits for the hub to answer before it warns (the run asks again)
HUB_VALIDATE_PROBE_TIMEOUT = 2.0


#: the weights files of a folder written by ``save_pretrained`` (one of them, with config.json)
_MODEL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                       "pytorch_model.bin.index.json")


class ClipEncoder(EncoderComponent):
    """CLIP image and text encoders (pretrained or randomly initialised), d = embed_dim.

    Attributes beyond :class:`EncoderComponent`: ``clip`` (the transformers CLIPModel),
    ``tokenizer`` (a transformers fast tokenizer), ``end_token_id``, ``start_token_id``,
    ``unk_token_id`` (start/unk None when a pretrained tokenizer has none), ``mask_token_added`` (True when ``<|mask|>`` was added to a pretrained
    tokenizer without a mask token; its embedding row starts as the mean of all rows).
    """

    Params = ClipParams

    @classmethod
    def check_recipe(cls, params: ClipParams, recipe) -> None:
        """``weights_dtype: fp16`` (the authors' float16 arithmetic) with
        ``train.mixed_precision`` bf16 or fp16 is refused: autocast would recast the
        authors' float16 operations (bf16 autocast rejects the float16 tensors, fp16's
        gradient scaler the float16 weights). The first forward refuses it too
        (:meth:`_refuse_autocast`), for an encoder built outside a recipe."""
        precision = recipe.train.mixed_precision
        if params.weights_dtype == "fp16" and precision != "no":
            raise ParamsCheckError(
                "weights_dtype", f"fp16 (the authors' float16 arithmetic) cannot run under train.mixed_precision "
                f"{precision}", hint="set train.mixed_precision: no (weights_dtype fp16 already computes the encoders in "
                "float16), or encoder.weights_dtype: fp32 to train with autocast")

    @classmethod
    def check_initial_weights(cls, params: ClipParams, source: ClipParams) -> None:
        """The initial run's token embedding must be indexed by this encoder's tokenizer:
        a run that read a pretrained model's tokenizer (or a BPE file) cannot initialise an
        encoder that builds its own vocabulary, nor the other way round (the run's token
        embedding would be read with another vocabulary's ids; its weights fail to load).
        Two random initialisations (the built vocabulary is the initial run's, copied) must
        have the same sizes (``embed_dim``, ``vision.*`` and ``text.*`` but the attention
        heads, which shape no weight, ``max_length``, the longer image side); two BPE
        tokenizers the same ``mask_token`` (``added`` adds a row). Two pretrained models are
        compared when the weights load."""
        mine, theirs = params.tokenizer_source, source.tokenizer_source
        if mine == "build" and theirs != "build":
            setting = f"encoder.pretrained: {source.pretrained}" + (
                f" and encoder.tokenizer: {source.tokenizer}" if theirs == "bpe" else "")
            raise ParamsCheckError(
                "tokenizer" if params.tokenizer else "",
                f"this encoder builds its own vocabulary from the captions, but the initial run's token embedding "
                f"rows belong to {_tokenizer_of(source)}",
                hint=f"set {setting} as the initial run did; its weights then replace the model's")
        if mine != "build" and theirs == "build":
            raise ParamsCheckError(
                "pretrained", f"this encoder reads {_tokenizer_of(params)}, but the initial run's token "
                "embedding rows belong to the vocabulary it built from its captions (its tokenizer/ folder)",
                hint="leave encoder.pretrained and encoder.tokenizer out and give the initial run's sizes; its "
                "vocabulary is then copied and its weights loaded")
        if mine == "bpe" and theirs == "bpe" and params.mask_token != source.mask_token:
            raise ParamsCheckError(
                "mask_token", f"{params.mask_token}, but the initial run's was {source.mask_token} ('added' gives "
                "the token embedding one more row)", hint=f"set encoder.mask_token: {source.mask_token}")
        if mine == theirs == "build":
            for key, value, initial in _random_sizes(params, source):
                if value != initial:
                    raise ParamsCheckError(
                        key, f"{value}, but the initial run's encoder has {initial} (its weights have that shape)",
                        hint=f"set encoder.{key}: {initial} as the initial run did")

    @classmethod
    def check_params(cls, params: ClipParams) -> None:
        """``pretrained`` is resolved as the encoder will load it, without the network
        (:func:`~wsreid_clip.loading.resolve_pretrained`): a shipped encoder, a local model
        folder or file (relative to the working directory), a hub name in the local Hugging
        Face cache, or else a well-formed hub name, downloaded when the encoder is built.
        Refused: a path, a checkpoint file name or a folder whose parent exists that names
        nothing, a name close to a shipped one (``did you mean``), a folder without a saved
        model, a local folder without a saved tokenizer when ``tokenizer`` is the pretrained one.
        An OpenAI checkpoint file needs ``tokenizer: <BPE file>`` and is opened for its tensors'
        shapes only (:func:`~wsreid_clip.openai.openai_file_config`: an empty, truncated or
        foreign file, or one without CLIP's tensors, is refused). When the model's config is
        local (config.json, or the file's shapes), ``image_size`` must be a multiple of its
        patch size, ``max_length`` at most its text positions, a size written in the recipe
        (``embed_dim``, ``vision.*``, ``text.*``) its own, and a BPE file's vocabulary no
        larger than its token embedding. ``tokenizer`` naming a BPE file must be a file. A
        hub name not in the cache prints a ``warning:`` line when the hub cannot be reached
        now (a probe of at most :data:`HUB_VALIDATE_PROBE_TIMEOUT` seconds); the machine that
        runs may have the network. An ``image_size`` wider than tall (a swapped [width, height])
        is a warning. ``weights_dtype: fp16`` against ``train.mixed_precision``:
        :meth:`check_recipe`."""
        tokenizer = params.tokenizer
        if tokenizer not in (None, "pretrained", "build"):
            bpe = Path(tokenizer).expanduser()
            if bpe.is_dir():
                raise ParamsCheckError("tokenizer", f"BPE file {tokenizer} is a folder, not a file",
                                       hint="name the merges file itself, OpenAI's bpe_simple_vocab_16e6.txt.gz")
            if not bpe.is_file():
                raise ParamsCheckError("tokenizer", f"BPE file {tokenizer} does not exist",
                                       hint="name OpenAI's bpe_simple_vocab_16e6.txt.gz (shipped with the CLIP, IRRA "
                                       "and DGCMIA repositories)")
        h, w = params.image_size
        if w > h:  # pedestrian crops stand upright: [128, 384] is the paper's 384 x 128 swapped
            warnings.warn(ParamsCheckWarning(
                "image_size", f"{[h, w]} is wider than tall: image_size is [height, width], and pedestrian images "
                f"are taller than wide (the paper's 384 x 128 is [384, 128]); written the other way round, every "
                f"image is squeezed to the other shape (write [{w}, {h}] unless wide images are meant)"))
        name = params.pretrained
        if name is None:
            return  # a random initialisation: its sizes are checked with the parameters
        source = resolve_pretrained(name)
        if source.kind == "missing":
            raise ParamsCheckError("pretrained", source.problem, hint=source.hint)
        if source.kind == "hub":
            _warn_hub_not_cached(name)
            return
        if source.kind == "file":
            config = _checked_openai_file(params)
        else:
            path = source.folder
            if source.kind == "folder" and not ((path / "config.json").is_file()
                                                and any((path / f).is_file() for f in _MODEL_WEIGHT_FILES)):
                raise ParamsCheckError("pretrained", f"model folder {name} holds no saved CLIPModel (config.json and "
                                       "model.safetensors or pytorch_model.bin)",
                                       hint="name a folder written by save_pretrained or 'wsreid convert-weights', an "
                                       "OpenAI checkpoint file, or a hub name such as openai/clip-vit-base-patch16")
            if source.kind in ("folder", "shipped") and params.tokenizer_source == "pretrained" \
                    and not has_saved_tokenizer(path):
                problem, hint = no_tokenizer_problem(name)
                raise ParamsCheckError("tokenizer" if params.tokenizer == "pretrained" else "pretrained", problem,
                                       hint=hint)
            config = saved_config(path)
        _check_sizes_fit(params, config_sizes(config))
        architecture = config_architecture(config)
        _check_architecture(params, architecture)
        if params.tokenizer_source == "bpe" and "vocab_size" in architecture:
            _check_bpe_fits(params, architecture["vocab_size"])

    def __init__(self, params: ClipParams, context: BuildContext):
        super().__init__(params, context)
        self.mask_token_added = False
        openai_state = None
        if params.pretrained is not None:
            if is_openai_checkpoint_file(params.pretrained):
                openai_state = read_openai_state(params.pretrained)
                clip, local_dir = None, None
            else:
                clip, local_dir = load_pretrained(params.pretrained)
            tokenizer, self.mask_token_added = self._pretrained_tokenizer(params, local_dir)
        else:
            tokenizer = built_tokenizer_for_run(
                context.run_dir,
                context.train_captions,
                min_frequency=params.min_frequency,
                max_vocab=params.max_vocab,
                max_length=params.max_length,
                trained=context.loads_trained_weights,
            )
        self.tokenizer = tokenizer
        ids = self._special_ids(tokenizer)
        #: OpenAI's vocabulary: texts are HTML-unescaped and padded positions hold id 0, as in
        #: OpenAI's and the authors' code
        self.openai_vocabulary = is_openai_vocabulary(tokenizer)
        if self.openai_vocabulary:
            ids["pad"] = 0
        self.start_token_id = ids["start"]
        self.end_token_id = ids["end"]
        self.pad_token_id = ids["pad"]
        self.mask_token_id = ids["mask"]
        self.unk_token_id = ids["unk"]
        self.special_token_ids = frozenset(i for i in ids.values() if i is not None)

        if params.pretrained is None:
            clip = random_clip_model(
                embed_dim=params.embed_dim,
                vision=params.vision,
                text=params.text,
                image_size=params.image_size,
                vocab_size=len(tokenizer),
                max_length=params.max_length,
                special_ids=ids,
                seed=context.seed,
            )
        else:
            if openai_state is not None:
                clip = clip_from_openai_state(openai_state, params.pretrained, seed=context.seed)
            rows = clip.text_model.embeddings.token_embedding.num_embeddings
            if params.tokenizer_source == "bpe":  # the file's ids are the rows' (module doc of wsreid_clip.bpe)
                problem = _bpe_vocabulary_problem(f"tokenizer {params.tokenizer}", len(tokenizer),
                                                  self.mask_token_added, rows)
            else:  # a saved tokenizer may leave rows unused; only the added mask token may grow the embedding
                own = len(tokenizer) - int(self.mask_token_added)
                problem = _vocabulary_problem(f"the tokenizer of {params.pretrained}", own, rows) if own > rows else None
            if problem:
                raise RecipeError(f"clip encoder: {problem}", hint=_VOCABULARY_HINT,
                                  key=("encoder", "tokenizer") if params.tokenizer_source == "bpe" else None)
            _resize_token_embedding(clip, len(tokenizer))
            text_config = clip.config.text_config
            text_config.eos_token_id, text_config.bos_token_id = ids["end"], ids["start"]
            text_config.pad_token_id = ids["pad"]
            clip.text_model.eos_token_id = ids["end"]
            self._check_pretrained_fits(clip, params)
        clip.logit_scale.requires_grad_(False)
        self.image_interpolation = params.image_resize
        if params.position_table == "resize_once":
            self._install_resized_position_table(clip, params, openai_state, saved_dtype(local_dir))
        self.authors_arithmetic = params.weights_dtype == "fp16"
        if self.authors_arithmetic:
            convert_weights_fp16(clip)
        self.clip = clip

        self.image_size = (int(params.image_size[0]), int(params.image_size[1]))
        self.max_length = params.max_length
        self.embed_dim = int(clip.config.projection_dim)
        self._position_grid_size = int(clip.config.vision_config.image_size)
        if context.train_captions and context.trains:  # an evaluation warns about its queries
            for line in self.caption_warnings(context.train_captions):
                context.warn(line)

    #: share of training captions cut at max_length, and of unknown words, from which the
    #: encoder warns at build (a few long captions, or a few rare words, are normal); when
    #: max_length is already the pretrained model's number of text positions (nothing to
    #: raise), captions cut warn from the higher share (the embedded benchmark's encoder
    #: cuts 13.4 % of its training captions at its 40 positions, docs/results.md)
    TRUNCATED_WARN_SHARE = 0.01
    TRUNCATED_AT_MODEL_LIMIT_WARN_SHARE = 0.25
    UNKNOWN_WARN_SHARE = 0.05
    #: captions read for those shares (evenly spaced over the training set when it has more)
    CAPTIONS_CHECKED = 20_000

    def caption_token_counts(self, captions: list[str]) -> list[tuple[int, int, int]]:
        """Per caption, uncut: (tokens with its start and end, word tokens, word tokens
        mapped to the unknown token - 0 for a tokenizer without one). A caption is cut at
        ``max_length`` when its first number is larger."""
        if self.openai_vocabulary:
            captions = [html.unescape(html.unescape(t)) for t in captions]
        ids = self.tokenizer(list(captions), truncation=False, add_special_tokens=True, return_attention_mask=False,
                             return_token_type_ids=False, verbose=False)["input_ids"]
        counts = []
        for row in ids:
            # the start and end tokens the tokenizer adds are no words, even where the unknown
            # token is the end token (<|endoftext|> in every HF CLIP tokenizer: byte-level BPE
            # has no unknown words, so that unk id is never a word's)
            inner = row[1 if self.start_token_id is not None and row[:1] == [self.start_token_id] else 0:]
            inner = inner[:-1] if inner[-1:] == [self.end_token_id] else inner
            words = [i for i in inner if i not in self.special_token_ids or i == self.unk_token_id]
            unknown = sum(i == self.unk_token_id for i in words) if self.unk_token_id is not None else 0
            counts.append((len(row), len(words), unknown))
        return counts

    def caption_shares(self, captions: list[str]) -> tuple[int, float, float]:
        """(captions read, share of them longer than ``max_length`` tokens with their start
        and end, share of their word tokens mapped to the unknown token - 0 for a
        tokenizer without one) over at most :attr:`CAPTIONS_CHECKED` of ``captions``."""
        step = max(1, -(-len(captions) // self.CAPTIONS_CHECKED))
        counts = self.caption_token_counts(list(captions[::step]))
        truncated = sum(tokens > self.max_length for tokens, _, _ in counts) / len(counts)
        words = sum(n for _, n, _ in counts)
        unknown = sum(u for _, _, u in counts) / words if words else 0.0
        return len(counts), truncated, unknown

    def caption_warnings(self, captions: list[str], described: str = "the training captions") -> list[str]:
        """One line per problem of ``captions`` (``described``: the training captions at
        build, an evaluation's queries) for this tokenizer: many cut at ``max_length``, or
        many words unknown to a pretrained vocabulary (captions of another language or
        style than the vocabulary was built on)."""
        read, truncated, unknown = self.caption_shares(captions)
        lines = []
        of = f"of {described} ({read} read)" if read < len(captions) else f"of {described}"
        positions = int(self.clip.config.text_config.max_position_embeddings)
        at_limit = bool(self.params.pretrained) and positions <= self.max_length
        if truncated >= (self.TRUNCATED_AT_MODEL_LIMIT_WARN_SHARE if at_limit else self.TRUNCATED_WARN_SHARE):
            if not self.params.pretrained:
                advice = "raise encoder.max_length"
            elif not at_limit:
                advice = f"raise encoder.max_length, up to the model's {positions} text positions"
            else:
                advice = f"the model has {positions} text positions and cannot read more; a model with more is needed"
            lines.append(f"encoder.max_length {self.max_length}: {truncated:.1%} {of} are longer (in tokens, with "
                         f"start and end) and lose their last words ({advice})")
        if unknown >= self.UNKNOWN_WARN_SHARE and self.params.tokenizer_source == "pretrained":
            lines.append(f"encoder.pretrained {self.params.pretrained}: {unknown:.1%} of the words {of} are unknown "
                         "to its vocabulary and all read as one token, which fine-tuning cannot tell apart (captions "
                         "of another vocabulary or language than the model's; check they are the ones meant)")
        return lines

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _pretrained_tokenizer(params: ClipParams, local_dir: Path | None) -> tuple[Any, bool]:
        """(tokenizer, whether a mask token was added) for pretrained weights: built from a
        BPE merges file, or the one saved with the model given a mask and a padding token."""
        if params.tokenizer_source == "bpe":
            tokenizer = bpe_tokenizer(params.tokenizer, mask=params.mask_token, max_length=params.max_length)
            return tokenizer, params.mask_token == "added"
        if is_openai_checkpoint_file(params.pretrained):
            raise RecipeError(
                f"clip encoder: {params.pretrained} is an OpenAI checkpoint file, which carries no tokenizer",
                hint="set encoder.tokenizer to OpenAI's BPE file bpe_simple_vocab_16e6.txt.gz",
                key=("encoder", "pretrained"))
        tokenizer = load_pretrained_tokenizer(params.pretrained, local_dir)
        added = ensure_mask_token(tokenizer)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # CLIP's own choice; padding sits after the end token
        return tokenizer, added

    def _install_resized_position_table(self, clip: Any, params: ClipParams, openai_state: dict | None,
                                        folder_dtype: torch.dtype | None = None) -> None:
        """position_table 'resize_once': the table resized to the patch grid becomes the trained one,
        resized in the dtype it was stored in (float16 for OpenAI's file and for a folder
        ``wsreid convert-weights`` made from it, which is loaded as float32)."""
        patch = clip.config.vision_config.patch_size
        grid = position_grid(params.image_size, patch)
        if openai_state is not None:  # the table as stored in the file, resized in its dtype (float16 for OpenAI's)
            stored = openai_state["visual.positional_embedding"]
        else:
            stored = clip.vision_model.embeddings.position_embedding.weight.detach()
            if folder_dtype in (torch.float16, torch.bfloat16):  # exact: the values were stored so
                stored = stored.to(folder_dtype)
        table = resize_vision_position_table(stored, grid)
        install_position_table(clip, table.float())

    @staticmethod
    def _special_ids(tokenizer: Any) -> dict[str, int | None]:
        """start/end/pad/mask/unk ids (start and unk may be None for a pretrained tokenizer)."""
        ids = {
            "start": tokenizer.bos_token_id,
            "end": tokenizer.eos_token_id,
            "pad": tokenizer.pad_token_id,
            "mask": tokenizer.mask_token_id,
            "unk": tokenizer.unk_token_id,
        }
        if ids["end"] is None or ids["pad"] is None or ids["mask"] is None:
            raise RecipeError("clip encoder: the tokenizer needs an end-of-text, a padding and a mask token")
        probe = tokenizer("a")["input_ids"]
        if probe[-1] != ids["end"] or (ids["start"] is not None and probe[0] != ids["start"]):
            raise RecipeError(
                "clip encoder: the tokenizer does not wrap texts in start/end tokens",
                hint="its post-processor must add the end-of-text token the text feature is pooled at",
            )
        return ids

    def _check_pretrained_fits(self, clip: Any, params: ClipParams) -> None:
        # a size other than its default was written for this model: it must be the loaded model's
        # (sizes shape only a random model; a resolved recipe.yaml spells out every default)
        vision, text = clip.config.vision_config, clip.config.text_config
        default = type(params).model_fields["embed_dim"].default
        sizes = [("embed_dim", params.embed_dim, clip.config.projection_dim, default)]
        for tower, config in (("vision", vision), ("text", text)):
            block = getattr(params, tower)
            actual = {"hidden": config.hidden_size, "layers": config.num_hidden_layers,
                      "heads": config.num_attention_heads, "intermediate": config.intermediate_size}
            if tower == "vision":
                actual["patch_size"] = config.patch_size
            sizes += [(f"{tower}.{f}", getattr(block, f), actual[f], type(block).model_fields[f].default)
                        for f in actual]
        for key, value, actual, default in sizes:
            if value is not None and value != actual and value != default:
                raise RecipeError(
                    f"clip encoder: encoder.{key} {value} differs from the pretrained model's {actual}",
                    hint=f"the architecture comes from encoder.pretrained: remove encoder.{key} "
                    f"or set it to {actual}",
                    key=("encoder", *key.split(".")))
        patch = clip.config.vision_config.patch_size
        h, w = params.image_size
        if h % patch or w % patch:
            raise RecipeError(f"clip encoder: image_size {[h, w]} is not a multiple of the model's patch size {patch}",
                              key=("encoder", "image_size"))
        positions = clip.config.text_config.max_position_embeddings
        if params.max_length > positions:
            raise RecipeError(f"clip encoder: max_length {params.max_length} exceeds the model's {positions} text positions",
                              key=("encoder", "max_length"))

    @staticmethod
    def _refuse_autocast(device: torch.device) -> None:
        """``weights_dtype: fp16`` computes in float16 with the authors' operations; under
        autocast (``train.mixed_precision`` bf16 or fp16) those operations would be recast
        (bf16 autocast rejects the float16 tensors outright, fp16's gradient scaler the
        float16 weights): refused in one line before the first forward."""
        kind = device.type
        if not torch.is_autocast_enabled(kind):
            return
        dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(torch.get_autocast_dtype(kind), "autocast")
        raise RecipeError(
            f"clip encoder: encoder.weights_dtype fp16 (the authors' float16 arithmetic) cannot run under "
            f"train.mixed_precision {dtype}",
            hint="set train.mixed_precision: no (weights_dtype fp16 already computes the encoders in float16), or "
            "encoder.weights_dtype: fp32 to train with autocast", key=("encoder", "weights_dtype"))

    # ------------------------------------------------------------------ EncoderComponent API
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images B x 3 x H x W (normalised, H and W multiples of the patch size) -> B x d.

        The square position table is interpolated (bicubic) to the H/patch x W/patch grid
        whenever the input is not the table's square size. With ``weights_dtype: fp16`` the
        authors' operation order is used (:func:`~wsreid_clip.precision.encode_image_sequence_first`)."""
        if self.authors_arithmetic:
            self._refuse_autocast(images.device)
            return encode_image_sequence_first(self.clip, images)
        height, width = images.shape[-2:]
        square = height == width == self._position_grid_size
        out = self.clip.vision_model(pixel_values=images, interpolate_pos_encoding=not square)
        return self.clip.visual_projection(out.pooler_output)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids and attention mask B x L (right padded) -> B x d, pooled at the first end token."""
        if self.authors_arithmetic:
            self._refuse_autocast(input_ids.device)
            positions = end_token_positions(input_ids, attention_mask, self.end_token_id)
            return encode_text_sequence_first(self.clip, input_ids, positions)
        hidden = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = end_token_features(hidden, input_ids, attention_mask, self.end_token_id)
        return self.clip.text_projection(pooled)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (input_ids, attention_mask), both B x max_length long.

        Each row is start + tokens + end, right padded to ``max_length`` (always that length,
        so shapes are the same for every batch); longer texts lose their last words, never
        the end token."""
        if self.openai_vocabulary:  # OpenAI's basic_clean (without ftfy)
            texts = [html.unescape(html.unescape(t)) for t in texts]
        encoded = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_attention_mask=True,
            return_token_type_ids=False,
        )
        input_ids, attention_mask = encoded["input_ids"].long(), encoded["attention_mask"].long()
        if self.openai_vocabulary:
            input_ids = input_ids.masked_fill(attention_mask == 0, 0)
        return input_ids, attention_mask

    def save_pretrained(self, directory: Path) -> None:
        """Write the tokenizer to ``directory/tokenizer``; building this encoder with
        ``run_dir=directory`` (tokenizer 'build') then reuses that vocabulary. Weights are
        saved by the engine through ``state_dict``."""
        self.tokenizer.save_pretrained(str(Path(directory) / TOKENIZER_DIRNAME))
