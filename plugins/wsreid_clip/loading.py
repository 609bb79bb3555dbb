"""Building the transformers ``CLIPModel``: random initialisation from a small config, or
loading pretrained weights from a local directory or the Hugging Face cache (never
downloading when the files are already there, and failing in one line, at once, when the
hub cannot be reached). :func:`resolve_pretrained` tells, without any network access, where
``encoder.pretrained`` will be found (docs/recipes.md, encoder ``clip``)."""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is a well-formed Hugging Face hub id (``model`` or ``org/model``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def cached_hub_folder(name: str) -> Path | None:
    """The snapshot folder of hub id ``name`` when its config.json is in the local Hugging
    Face cache (a file lookup: the network is not touched), else None."""
    from huggingface_hub import try_to_load_from_cache

    if not is_hub_id(name):
        return None
    try:
        found = try_to_load_from_cache(name, "config.json")
    except (ValueError, OSError):
        return None
    return Path(found).parent if isinstance(found, str) else None


@dataclass(frozen=True)
class PretrainedSource:
    """Where ``encoder.pretrained`` NAME is found, decided from the file system alone.

    ``kind``: 'shipped' (a model of :func:`shipped_models`), 'folder' (an existing local
    folder), 'file' (an existing file: an OpenAI checkpoint), 'cached' (a hub id whose files
    are in the Hugging Face cache), 'hub' (a well-formed hub id not in the cache: downloaded
    when the encoder is built, if the hub can be reached) or 'missing' (none of these; the
    name cannot be loaded). ``folder``: the local folder holding config.json (shipped,
    folder, cached). ``problem`` / ``hint``: why a 'missing' name cannot be loaded."""

    kind: str
    folder: Path | None = None
    problem: str = ""
    hint: str = ""


#: the hint of a pretrained name that names nothing loadable
_NAME_HINT = ("name a folder holding a saved CLIPModel and its tokenizer, an OpenAI checkpoint file, or a hub "
              "name such as openai/clip-vit-base-patch16")


def resolve_pretrained(name: str) -> PretrainedSource:
    """Resolve ``encoder.pretrained`` as :func:`load_pretrained` will, without the network:
    a shipped name, then a local path (relative to the working directory, ``~`` expanded),
    then the local Hugging Face cache. A name that is none of these is 'missing' when it is
    written as a path (``./``, ``/``, ``~``, two ``/``, or not a well-formed hub id), when
    the folder its first part names exists (``mymodels/clip`` with a ``mymodels`` folder
    here), when it is an OpenAI checkpoint file name, or when it is close to a shipped
    name (a typo); otherwise it is a hub id to download ('hub')."""
    from wsreid_clip.openai import is_openai_checkpoint_file

    shipped = shipped_models()
    if name in shipped:
        return PretrainedSource("shipped", shipped[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return PretrainedSource("folder", path)
    if path.is_file():
        return PretrainedSource("file")
    if is_openai_checkpoint_file(name):
        return PretrainedSource("missing", problem=f"weights file {name} does not exist",
                                hint="name OpenAI's ViT-B-16.pt (or a fork's state-dict file), or a model folder")
    if looks_like_path(name):
        return PretrainedSource("missing", problem=f"model folder {name} does not exist", hint=_NAME_HINT)
    cached = cached_hub_folder(name)
    if cached is not None:
        return PretrainedSource("cached", cached)
    first = Path(name.replace("\\", "/").split("/")[0])
    if not is_hub_id(name) or ("/" in name and first.is_dir()):
        return PretrainedSource("missing", problem=f"model folder {name} does not exist (looked for "
                                f"{Path.cwd() / path}; a relative folder is found from the working directory)",
                                hint=_NAME_HINT)
    close = difflib.get_close_matches(name, list(shipped), n=1, cutoff=0.8)
    if close:
        return PretrainedSource("missing", problem=f"{name!r} is no shipped encoder, local folder or model in the "
                                "Hugging Face cache", hint=f"did you mean {close[0]!r}?")
    return PretrainedSource("hub")


def model_sizes(folder: Path) -> dict[str, int]:
    """The sizes of a saved ``CLIPModel`` that bound the recipe's, read from its config.json
    alone (no weights, no torch): 'patch_size' (vision) and 'text_positions' (text
    ``max_position_embeddings``), each only when the file states it; {} when unreadable."""
    return config_sizes(saved_config(folder))


def config_sizes(config: dict[str, Any]) -> dict[str, int]:
    """:func:`model_sizes` of a ``CLIPConfig`` as a mapping (config.json's content)."""
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    sizes = {"patch_size": vision.get("patch_size") if isinstance(vision, dict) else None,
             "text_positions": text.get("max_position_embeddings") if isinstance(text, dict) else None}
    return {k: v for k, v in sizes.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


def config_architecture(config: dict[str, Any]) -> dict[str, int]:
    """The architecture of a ``CLIPConfig`` given as a mapping (config.json's content), in
    the encoder's parameter names: 'embed_dim' (``projection_dim``), 'vocab_size' (text rows
    of the token embedding), 'vision.hidden' / 'vision.layers' / 'vision.heads' /
    'vision.intermediate' / 'vision.patch_size' and the same for 'text' - each only when the
    config states it."""
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    vision, text = (vision if isinstance(vision, dict) else {}), (text if isinstance(text, dict) else {})
    found = {"embed_dim": config.get("projection_dim"), "vocab_size": text.get("vocab_size")}
    names = {"hidden": "hidden_size", "layers": "num_hidden_layers", "heads": "num_attention_heads",
             "intermediate": "intermediate_size"}
    for tower, values in (("vision", vision), ("text", text)):
        found |= {f"{tower}.{key}": values.get(name) for key, name in names.items()}
    found["vision.patch_size"] = vision.get("patch_size")
    return {k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


#: the files of a tokenizer saved beside a model (either set is enough)
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def has_saved_tokenizer(folder: Path) -> bool:
    """Whether ``folder`` holds a saved CLIP tokenizer (:data:`TOKENIZER_FILE_SETS`). Without
    one, transformers builds an empty two-token tokenizer that reads every word as one id."""
    return any(all((Path(folder) / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS)


def no_tokenizer_problem(folder: Path | str) -> tuple[str, str]:
    """(problem, hint) of a model folder without a saved tokenizer."""
    return (f"model folder {folder} holds no tokenizer (tokenizer.json, or vocab.json and merges.txt)",
            "rerun `wsreid convert-weights` with --tokenizer BPE_FILE, or set encoder.tokenizer to the BPE file "
            "(OpenAI's bpe_simple_vocab_16e6.txt.gz)")


@contextlib.contextmanager
def quiet_bars(*descriptions: str) -> Iterator[None]:
    """Hide transformers' progress bars of these ``descriptions`` (``"Loading weights"``,
    ``"Writing model shards"``: local file work; download bars of the hub are kept), unless
    transformers' verbosity asks for details (``TRANSFORMERS_VERBOSITY=info`` or ``debug``)."""
    from transformers.utils import logging as hf_logging

    if hf_logging.get_verbosity() <= logging.INFO:
        yield
        return
    previous = None

    def hook(factory: Any, args: tuple, kwargs: dict) -> Any:
        if kwargs.get("desc") in descriptions:
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def quiet_weight_loading() -> contextlib.AbstractContextManager[None]:
    """Hide transformers' "Loading weights" progress bar (:func:`quiet_bars`)."""
    return quiet_bars("Loading weights")


#: seconds the reachability probe of the hub waits for a connection
HUB_PROBE_TIMEOUT = 5.0


def hub_unreachable(timeout: float | None = None) -> str | None:
    """Why the Hugging Face hub cannot be reached now (offline mode, no name resolution, no
    connection within ``timeout`` seconds, default :data:`HUB_PROBE_TIMEOUT`; through the configured HTTPS proxy
    when there is one), None when a connection opens. Asked before any download, so an
    offline machine fails at once instead of after the hub client's retries."""
    import urllib.parse
    import urllib.request

    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "offline mode is set: HF_HUB_OFFLINE"
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    proxy = urllib.request.getproxies().get(endpoint.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parts.hostname or host, parts.port or 8080
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT if timeout is None else timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or type(exc).__name__}"


def load_pretrained(name: str) -> tuple[Any, Path | None]:
    """Load a pretrained ``CLIPModel`` (float32): a model shipped with the package (by its
    name, :func:`shipped_models`), a local directory or a hub name.

    Returns the model and the local directory it came from (None for a hub name). A hub
    name is looked up in the local cache first; only when it is missing there is the hub
    asked, once :func:`hub_unreachable` found it reachable. Failures are one-line
    :class:`RecipeError`. transformers' "Loading weights" bar is hidden
    (:func:`quiet_weight_loading`).
    """
    with quiet_weight_loading():
        return _load_pretrained(name)


def _load_pretrained(name: str) -> tuple[Any, Path | None]:
    from transformers import CLIPModel

    path = shipped_models().get(name) or Path(name).expanduser()
    if path.is_dir():
        try:
            return CLIPModel.from_pretrained(str(path), dtype=torch.float32, local_files_only=True), path
        except (OSError, ValueError, KeyError) as exc:
            raise RecipeError(
                f"clip encoder: cannot load a CLIP model from directory {path}: {exc}",
                hint="the directory must hold a CLIPModel saved with save_pretrained (config.json + weights)",
                key=("encoder", "pretrained")) from None
    if looks_like_path(name) or path.exists():
        raise RecipeError(
            f"clip encoder: pretrained directory {name!r} does not exist",
            hint="set encoder.pretrained to a directory holding a saved CLIPModel and its tokenizer",
            key=("encoder", "pretrained"))
    try:
        return CLIPModel.from_pretrained(name, dtype=torch.float32, local_files_only=True), None
    except OSError:
        pass
    _require_hub(name)
    try:
        return CLIPModel.from_pretrained(name, dtype=torch.float32), None
    except Exception as exc:  # transformers / huggingface_hub raise OSError, HTTP or offline errors
        raise offline_error(name, type(exc).__name__) from None


def _require_hub(name: str) -> None:
    """Raise :func:`offline_error` at once when the hub cannot be reached."""
    reason = hub_unreachable()
    if reason is not None:
        raise offline_error(name, reason)


def offline_error(name: str, reason: str) -> RecipeError:
    """The one-line error for a hub name whose files are neither cached nor downloadable;
    ``reason`` says why the download failed."""
    return RecipeError(
        f"clip encoder: pretrained weights {name!r} are not available offline: they are not in the "
        f"Hugging Face cache and the hub cannot be reached ({reason})",
        hint=f"on a connected machine run `hf download {name} --local-dir DIR`, copy DIR here "
        "and set encoder.pretrained: DIR, a directory with the saved CLIPModel and its tokenizer",
        key=("encoder", "pretrained"),
    )


def load_pretrained_tokenizer(name: str, local_dir: Path | None) -> Any:
    """The tokenizer saved with pretrained model ``name`` (see :func:`load_pretrained`)."""
    from wsreid_clip.tokenizer import load_tokenizer

    if local_dir is not None:
        if not has_saved_tokenizer(local_dir):
            problem, hint = no_tokenizer_problem(name)
            raise RecipeError(f"clip encoder: {problem}", hint=hint)
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
    _require_hub(name)
    try:
        return load_tokenizer(name)
    except Exception as exc:
        raise offline_error(name, type(exc).__name__) from None


def saved_config(folder: Path) -> dict[str, Any]:
    """The config.json of a saved model folder as a mapping; {} when it is missing,
    unreadable or not a JSON object."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def saved_dtype(local_dir: Path | None) -> torch.dtype | None:
    """The dtype a model folder's weights were saved in (``dtype`` / ``torch_dtype`` of its
    config.json), None when unknown. Models are loaded as float32 whatever it is."""
    if local_dir is None:
        return None
    config = saved_config(local_dir)
    name = config.get("dtype") or config.get("torch_dtype")
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(str(name))
