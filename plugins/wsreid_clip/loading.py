"""Building the transformers ``CLIPModel``: random initialisation from a small config, or
loading pretrained weights from a local directory or the Hugging Face cache (never
downloading when the files are already there, and failing in one line when offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wsreid.errors import RecipeError


def random_clip_model(
    *,
    embed_dim: int,
    vision: Any,
    text: Any,
    image_size: tuple[int, int],
    vocab_size: int,
    max_length: int,
    special_ids: dict[str, int],
    seed: int,
) -> Any:
    """A randomly initialised ``CLIPModel``.

    ``vision``/``text`` carry hidden, layers, heads, intermediate (None = 4 x hidden) and
    the vision patch_size. The vision position table is a square grid of side
    max(H, W) / patch, interpolated to the (H / patch) x (W / patch) grid on every forward
    (as the paper does for the pretrained 14 x 14 -> 24 x 8). Initialisation depends only on
    ``seed`` (the global RNG is left untouched).
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text_config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=text.hidden,
        intermediate_size=text.intermediate or 4 * text.hidden,
        num_hidden_layers=text.layers,
        num_attention_heads=text.heads,
        max_position_embeddings=max_length,
        projection_dim=embed_dim,
        pad_token_id=special_ids["pad"],
        bos_token_id=special_ids["start"],
        eos_token_id=special_ids["end"],
    )
    vision_config = CLIPVisionConfig(
        hidden_size=vision.hidden,
        intermediate_size=vision.intermediate or 4 * vision.hidden,
        num_hidden_layers=vision.layers,
        num_attention_heads=vision.heads,
        image_size=max(image_size),
        patch_size=vision.patch_size,
        projection_dim=embed_dim,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=embed_dim
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    return model


#: Directory of the encoders shipped with the package (one sub-directory per model, each a
#: saved ``CLIPModel`` with its tokenizer and a ``wsreid.json`` telling how it was made).
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def shipped_models() -> dict[str, Path]:
    """Name -> directory of every encoder shipped in :data:`SHIPPED_DIR` (``encoder.pretrained:
    NAME`` loads one, e.g. ``synth-web-tiny-clip``)."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {d.name: d for d in sorted(SHIPPED_DIR.iterdir()) if (d / "config.json").is_file()}


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is written as a file path rather than a hub name (org/model)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def load_pretrained(name: str) -> tuple[Any, Path | None]:
    """Load a pretrained ``CLIPModel`` (float32): a model shipped with the package (by its
    name, :func:`shipped_models`), a local directory or a hub name.

    Returns the model and the local directory it came from (None for a hub name). A hub
    name is looked up in the local cache first; only when it is missing there is the hub
    asked. Failures are one-line :class:`RecipeError`.
    """
    from transformers import CLIPModel

    path = shipped_models().get(name) or Path(name).expanduser()
    if path.is_dir():
        try:
            return CLIPModel.from_pretrained(str(path), dtype=torch.float32, local_files_only=True), path
        except (OSError, ValueError, KeyError) as exc:
            raise RecipeError(
                f"clip encoder: cannot load a CLIP model from directory {path}: {exc}",
                hint="the directory must hold a CLIPModel saved with save_pretrained (config.json + weights)",
            ) from None
    if looks_like_path(name) or path.exists():
        raise RecipeError(
            f"clip encoder: pretrained directory {name!r} does not exist",
            hint="set encoder.pretrained to a directory holding a saved CLIPModel and its tokenizer",
        )
    try:
        return CLIPModel.from_pretrained(name, dtype=torch.float32, local_files_only=True), None
    except OSError:
        pass
    try:
        return CLIPModel.from_pretrained(name, dtype=torch.float32), None
    except Exception as exc:  # transformers / huggingface_hub raise OSError, HTTP or offline errors
        raise offline_error(name, exc) from None


def offline_error(name: str, exc: BaseException) -> RecipeError:
    """The one-line error for a hub name whose files are neither cached nor downloadable."""
    return RecipeError(
        f"clip encoder: pretrained weights {name!r} are not available offline: they are not in the "
        f"Hugging Face cache and the hub cannot be reached ({type(exc).__name__})",
        hint=f"on a connected machine run `hf download {name} --local-dir DIR`, copy DIR here "
        "and set encoder.pretrained: DIR, a directory with the saved CLIPModel and its tokenizer",
    )


def load_pretrained_tokenizer(name: str, local_dir: Path | None) -> Any:
    """The tokenizer saved with pretrained model ``name`` (see :func:`load_pretrained`)."""
    from wsreid_clip.tokenizer import load_tokenizer

    if local_dir is not None:
        try:
            return load_tokenizer(local_dir, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RecipeError(
                f"clip encoder: no usable tokenizer in {local_dir}: {exc}",
                hint="save the tokenizer beside the model (tokenizer.save_pretrained(DIR)) or set encoder.tokenizer: build",
            ) from None
    try:
        return load_tokenizer(name, local_files_only=True)
    except OSError:
        pass
    try:
        return load_tokenizer(name)
    except Exception as exc:
        raise offline_error(name, exc) from None


def saved_dtype(local_dir: Path | None) -> torch.dtype | None:
    """The dtype a model folder's weights were saved in (``dtype`` / ``torch_dtype`` of its
    config.json), None when unknown. Models are loaded as float32 whatever it is."""
    import json

    if local_dir is None or not (Path(local_dir) / "config.json").is_file():
        return None
    try:
        config = json.loads((Path(local_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    name = config.get("dtype") or config.get("torch_dtype")
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(str(name))
