"""OpenAI CLIP checkpoint files (``ViT-B-16.pt`` and friends) onto the transformers ``CLIPModel``.

The files that IRRA-style code loads come in two layouts:

* a **TorchScript archive** (OpenAI's own download): a zip holding ``<name>/data.pkl`` (the
  pickled module tree), ``<name>/data/<key>`` (raw tensor storages) and TorchScript code;
* a **plain state dict** (``torch.save`` of a dict of tensors, as forks ship them).

Neither is read by executing pickled code: a state dict goes through
``torch.load(weights_only=True)``; a TorchScript archive through :class:`_ArchiveUnpickler`,
which only rebuilds tensors from the archive's storages and turns every module object into a
plain attribute dict (any other global is refused). Weights may be float16 or float32; the
architecture (widths, layers, heads = width / 64, patch size, grid, context length,
vocabulary, embedding size) is read from the tensors' shapes (docs/method.md, "Paper text and the authors' code").

Key mapping (OpenAI -> transformers): ``visual.conv1`` -> ``vision_model.embeddings.
patch_embedding``; ``visual.class_embedding`` / ``visual.positional_embedding`` -> the
vision embeddings; ``ln_pre`` -> ``pre_layrnorm``; ``ln_post`` -> ``post_layernorm``;
``resblocks.i`` -> ``encoder.layers.i`` with ``attn.in_proj_{weight,bias}`` split into
``q/k/v_proj``, ``attn.out_proj`` -> ``self_attn.out_proj``, ``ln_1/ln_2`` ->
``layer_norm1/2``, ``mlp.c_fc/c_proj`` -> ``mlp.fc1/fc2``; ``visual.proj`` and
``text_projection`` (width x d) -> ``visual_projection.weight`` / ``text_projection.weight``
(d x width, transposed); ``token_embedding``, ``positional_embedding``, ``ln_final`` -> the
text model. :func:`openai_state_from_clip` is the inverse.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from wsreid.errors import RecipeError

__all__ = [
    "is_openai_checkpoint_file",
    "read_openai_state",
    "read_openai_shapes",
    "openai_file_config",
    "OpenAIFileError",
    "openai_clip_config",
    "clip_from_openai_state",
    "openai_state_from_clip",
    "resize_vision_position_table",
]

_STORAGE_DTYPES = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def is_openai_checkpoint_file(name: str | Path) -> bool:
    """True when ``name`` names a weights file rather than a model directory or hub name:
    an existing file, or a name ending in ``.pt`` / ``.pth`` (reading a missing one then
    fails with "does not exist")."""
    path = Path(name).expanduser()
    return path.is_file() or (path.suffix in (".pt", ".pth") and not path.is_dir())


# --------------------------------------------------------------------------- reading


class _ModuleState(dict):
    """A TorchScript module object as read from ``data.pkl``: its attribute dict."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickler for a TorchScript archive's ``data.pkl`` that executes nothing: tensors are
    rebuilt from the archive's storages, ``__torch__`` module classes become
    :class:`_ModuleState`, every other global is refused."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: Path, shapes_only: bool = False):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source, self.shapes_only = archive, prefix, source, shapes_only
        self.storages: dict[str, torch.UntypedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module.startswith("__torch__"):
            return _ModuleState
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if self.shapes_only:  # the storage must be in the archive; its bytes are not read
            self.archive.getinfo(f"{self.prefix}data/{key}")
            return (None, dtype)
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            self.storages[key] = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        return (self.storages[key], dtype)


def _rebuild_tensor(storage_and_dtype, offset, size, stride, *_rest) -> torch.Tensor:
    storage, dtype = storage_and_dtype
    if storage is None:  # shapes only
        return torch.empty_strided(tuple(size), tuple(stride), dtype=dtype, device="meta")
    flat = torch.empty(0, dtype=dtype)
    if len(storage):
        flat = torch.frombuffer(bytearray(bytes(storage)), dtype=dtype)
    out = torch.empty(0, dtype=dtype)
    out.set_(flat.untyped_storage(), offset, tuple(size), tuple(stride))
    return out.clone()


def _flatten_modules(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, _ModuleState):
            _flatten_modules(value, f"{prefix}{key}.", out)


def _read_torchscript(path: Path, archive: zipfile.ZipFile, data_pkl: str,
                      shapes_only: bool = False) -> dict[str, torch.Tensor]:
    prefix = data_pkl[: -len("data.pkl")]
    unpickler = _ArchiveUnpickler(archive.read(data_pkl), archive, prefix, path, shapes_only)
    root = unpickler.load()
    if not isinstance(root, _ModuleState):
        raise RecipeError(f"clip encoder: {path}: the TorchScript archive does not hold a module")
    state: dict[str, torch.Tensor] = {}
    _flatten_modules(root, "", state)
    return state


def _load_failure(exc: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` found wrong, in one line - without torch's
    advice to load again with ``weights_only=False``, which would run the file's pickled
    code (for a file that is not a weights file, the unpickler's own reason)."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|\s*Check the documentation|$)", text, re.S)
    if found:  # its advice to allowlist a global would let the file build that object: dropped too
        return re.sub(r"\.?\s*Please use `torch\.serialization.*", "", " ".join(found.group(1).split()))
    first = text.splitlines()[0] if text else ""
    return re.sub(r"\s*In PyTorch 2\.6, .*", "", first) or type(exc).__name__


class OpenAIFileError(RecipeError):
    """A weights file that cannot be read as an OpenAI CLIP checkpoint. ``problem``: what is
    wrong, naming the file (without the ``clip encoder:`` prefix of the message), ``hint``:
    what to do when the file was named as ``encoder.pretrained``, ``convert_hint``: when it
    was given to ``wsreid convert-weights`` (which takes no model folder)."""

    def __init__(self, problem: str, hint: str | None = None, convert_hint: str | None = None):
        super().__init__(f"clip encoder: {problem}", hint=hint)
        self.problem, self.hint, self.convert_hint = problem, hint, convert_hint if convert_hint is not None else hint


#: integer sizes some CLIP state dicts store beside the tensors (OpenAI's build_model deletes them)
_SIZE_ENTRIES = ("input_resolution", "context_length", "vocab_size")
#: what to do about a file that is not OpenAI's checkpoint, as encoder.pretrained / for convert-weights
_FILE_HINT = "set encoder.pretrained to OpenAI's CLIP checkpoint (ViT-B-16.pt: TorchScript archive or state dict) or a model folder"
_CONVERT_HINT = ("pass OpenAI's CLIP checkpoint (ViT-B-16.pt: TorchScript archive or state dict); a transformers model "
                 "folder needs no conversion")


def read_openai_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an OpenAI CLIP checkpoint file, by OpenAI key name, as stored (float16
    or float32). Reads a TorchScript archive or a plain state dict (also one wrapped as
    ``{"state_dict": ...}`` or with a ``module.`` prefix); executes no pickled code.
    Raises a one-line :class:`OpenAIFileError` naming the file and what is wrong."""
    return _read_state(path, shapes_only=False)


def read_openai_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """As :func:`read_openai_state`, but the tensors are on the ``meta`` device (shape and
    dtype, no values): a TorchScript archive's storages are not read, a state dict's are
    memory-mapped and not copied. Cheap enough for ``wsreid validate``."""
    return _read_state(path, shapes_only=True)


def _read_state(path: str | Path, *, shapes_only: bool) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if path.is_dir():
        raise OpenAIFileError(f"{path} is a folder, not a checkpoint file", hint=_FILE_HINT, convert_hint=_CONVERT_HINT)
    if not path.is_file():
        raise OpenAIFileError(f"weights file {path} does not exist",
                              hint="set encoder.pretrained to OpenAI's ViT-B-16.pt or a model directory",
                              convert_hint=_CONVERT_HINT)
    if path.stat().st_size == 0:
        raise OpenAIFileError(f"weights file {path} is empty", hint=f"copy it again; {_FILE_HINT}",
                              convert_hint=f"copy it again; {_CONVERT_HINT}")
    with path.open("rb") as file:
        head = file.read(4)
    is_zip = zipfile.is_zipfile(path)
    if head[:2] == b"PK" and not is_zip:
        raise OpenAIFileError(f"weights file {path} is truncated or damaged (a zip archive without its central "
                              "directory)", hint=f"copy it again; {_FILE_HINT}", convert_hint=f"copy it again; {_CONVERT_HINT}")
    if not is_zip and head[:1] != b"\x80":
        raise OpenAIFileError(f"{path} is not a PyTorch checkpoint (neither the zip archive of torch.save or "
                              f"TorchScript nor a pickle; it starts with {head!r})", hint=_FILE_HINT,
                              convert_hint=_CONVERT_HINT)
    state: Any = None
    if is_zip:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            data_pkl = next((n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")), None)
            scripted = any(re.match(r"[^/]+/(code/|constants\.pkl)", n) for n in names)
            if data_pkl is not None and scripted:
                try:
                    state = _read_torchscript(path, archive, data_pkl, shapes_only)
                except (pickle.UnpicklingError, KeyError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile) as exc:
                    raise OpenAIFileError(f"{path}: unreadable TorchScript archive ({exc})",
                                          hint=f"copy it again; {_FILE_HINT}",
                                          convert_hint=f"copy it again; {_CONVERT_HINT}") from None
    if state is None:
        try:
            state = _torch_load(path, shapes_only)
        except Exception as exc:  # pickle errors, truncated files, refused globals
            raise OpenAIFileError(
                f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {_load_failure(exc)})",
                hint=_FILE_HINT, convert_hint=_CONVERT_HINT) from None
    for wrapper in ("state_dict", "model"):  # a training checkpoint: {"model": weights, "epoch": 3, ...}
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if isinstance(state, dict):  # OpenAI's own model code drops these sizes stored beside the weights
        state = {k: v for k, v in state.items() if not (k in _SIZE_ENTRIES and not isinstance(v, torch.Tensor))}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        if isinstance(state, dict):
            odd = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
            what = f"entries that are not tensors: {', '.join(odd[:4])}{', ...' if len(odd) > 4 else ''}"
        else:
            what = f"a {type(state).__name__}, not a mapping of names to tensors"
        raise OpenAIFileError(f"{path} holds no state dict of tensors ({what})", hint=_FILE_HINT,
                              convert_hint=_CONVERT_HINT)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    missing = [k for k in ("visual.conv1.weight", "token_embedding.weight", "text_projection", "visual.proj") if k not in state]
    if missing:
        raise OpenAIFileError(
            f"{path} is not an OpenAI CLIP ViT checkpoint: missing {', '.join(missing)}",
            hint="only the ViT image encoders of OpenAI's CLIP are supported",
        )
    if shapes_only:
        state = {k: torch.empty_strided(tuple(v.shape), tuple(v.stride()), dtype=v.dtype, device="meta")
                 for k, v in state.items()}
    return dict(state)


def _torch_load(path: Path, shapes_only: bool) -> Any:
    """``torch.load(weights_only=True)``; for shapes only memory-mapped when the file is in
    torch's zip format (an older format is read). torch's warning about a raw pickle of
    another protocol is silenced: such a file is refused in one line (:func:`_load_failure`)
    or read as it is."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        if shapes_only and zipfile.is_zipfile(path):  # torch's zip format
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)


def openai_file_config(path: str | Path) -> Any:
    """The transformers ``CLIPConfig`` of OpenAI checkpoint file ``path``, after checking that
    its tensors fill a ``CLIPModel`` of that config with the right shapes - all from the
    tensors' shapes (:func:`read_openai_shapes`, a model on the ``meta`` device): no
    weights are read or initialised. Raises :class:`OpenAIFileError` (reading) or
    :class:`RecipeError` (tensors that do not fit)."""
    state = read_openai_shapes(path)
    config = openai_clip_config(state, path)
    _check_tensors_fit(state, config, path)
    return config


def _check_tensors_fit(state: dict[str, torch.Tensor], config: Any, source: str | Path, model: Any = None) -> None:
    """Every tensor of ``CLIPModel(config)`` (``model`` when given, else one built on the meta
    device) is in ``state`` with its shape; a :class:`RecipeError` names the first that is not."""
    from transformers import CLIPModel

    if model is None:
        with torch.device("meta"):
            model = CLIPModel(config)
    mapped = hf_state_from_openai(state)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in mapped and k != "logit_scale" and not k.endswith("position_ids"))
    if missing:
        raise RecipeError(f"clip encoder: {source} lacks tensors for {', '.join(missing[:4])}"
                          f"{' ...' if len(missing) > 4 else ''}")
    wrong = [k for k, v in mapped.items() if k in expected and tuple(expected[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        raise RecipeError(f"clip encoder: {source}: tensor for {k} has shape {tuple(mapped[k].shape)}, "
                          f"expected {tuple(expected[k].shape)}")


# --------------------------------------------------------------------------- architecture


def _layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def openai_clip_config(state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> Any:
    """A transformers ``CLIPConfig`` read from the shapes of an OpenAI state dict.

    Vision: width = ``visual.conv1`` out channels, patch = its kernel, grid g from
    ``visual.positional_embedding`` (g*g + 1 rows; image size = g * patch), layers = number of
    ``visual.transformer.resblocks``; text: width, context length, vocabulary from the
    embeddings; heads = width // 64 on both sides (OpenAI's rule); embedding size d from
    ``text_projection`` (width x d); quick GELU, layer-norm eps 1e-5."""
    from transformers import CLIPConfig

    try:
        conv = state["visual.conv1.weight"]
        v_width, _, patch, _ = conv.shape
        positions = state["visual.positional_embedding"].shape[0]
        grid = int(round((positions - 1) ** 0.5))
        if grid * grid + 1 != positions:
            raise ValueError(f"visual.positional_embedding has {positions} rows, not a square grid + 1")
        v_layers = _layers(state, "visual.transformer.resblocks.")
        v_mlp = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        vocab, t_width = state["token_embedding.weight"].shape
        context = state["positional_embedding"].shape[0]
        t_layers = _layers(state, "transformer.resblocks.")
        t_mlp = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        embed = state["text_projection"].shape[1]
        if state["visual.proj"].shape != (v_width, embed):
            raise ValueError(f"visual.proj has shape {tuple(state['visual.proj'].shape)}, expected {(v_width, embed)}")
    except (KeyError, ValueError, IndexError) as exc:
        raise RecipeError(f"clip encoder: {source}: cannot read the CLIP architecture from its tensors ({exc})") from None
    text = dict(
        vocab_size=int(vocab), hidden_size=int(t_width), intermediate_size=int(t_mlp), num_hidden_layers=t_layers,
        num_attention_heads=max(1, int(t_width) // 64), max_position_embeddings=int(context), projection_dim=int(embed),
        hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=int(vocab) - 2, eos_token_id=int(vocab) - 1,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=int(v_width), intermediate_size=int(v_mlp), num_hidden_layers=v_layers,
        num_attention_heads=max(1, int(v_width) // 64), image_size=int(grid * patch), patch_size=int(patch),
        projection_dim=int(embed), hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=int(embed))


_BLOCK_PARTS = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_SINGLE = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TOWERS = (("visual.transformer.resblocks.", "vision_model.encoder.layers."), ("transformer.resblocks.", "text_model.encoder.layers."))


def hf_state_from_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI keys -> transformers ``CLIPModel`` keys (values keep their dtype)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _SINGLE:
            out[_SINGLE[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        else:
            for old, new in _TOWERS:
                m = re.fullmatch(re.escape(old) + r"(\d+)\.(.+)", key)
                if m is None:
                    continue
                block, part = f"{new}{m.group(1)}.", m.group(2)
                if part in ("attn.in_proj_weight", "attn.in_proj_bias"):
                    kind = "weight" if part.endswith("weight") else "bias"
                    for name, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                        out[f"{block}self_attn.{name}_proj.{kind}"] = chunk.contiguous()
                elif part in _BLOCK_PARTS:
                    out[block + _BLOCK_PARTS[part]] = value
                break
    return out


def openai_state_from_clip(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``CLIPModel`` tensors (a state dict, or e.g. gradients keyed the same way)
    -> OpenAI keys: the inverse of :func:`hf_state_from_openai` (q/k/v concatenated into
    ``in_proj``, projections transposed). Keys without an OpenAI counterpart are dropped."""
    single = {v: k for k, v in _SINGLE.items()}
    parts = {v: k for k, v in _BLOCK_PARTS.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key in single:
            out[single[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t()
        elif key == "text_projection.weight":
            out["text_projection"] = value.t()
        else:
            for old, new in _TOWERS:
                m = re.fullmatch(re.escape(new) + r"(\d+)\.(.+)", key)
                if m is None:
                    continue
                block, part = f"{old}{m.group(1)}.", m.group(2)
                q = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", part)
                if q:
                    qkv.setdefault(f"{block}attn.in_proj_{q.group(2)}", {})[q.group(1)] = value
                elif part in parts:
                    out[block + parts[part]] = value
                break
    for key, chunks in qkv.items():
        out[key] = torch.cat([chunks["q"], chunks["k"], chunks["v"]], dim=0)
    return out


def resize_vision_position_table(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a vision position table (1 + g*g rows x width; class row first) to the
    ``grid`` = (rows, cols) patch grid: the class row is kept, the g x g grid is resized
    with bilinear interpolation (``align_corners=False``), computed in the table's own
    dtype (float16 stays float16, as the authors' loader does). -> (1 + rows*cols) x width."""
    import torch.nn.functional as F

    rows, cols = grid
    old = int(round((table.shape[0] - 1) ** 0.5))
    if old * old + 1 != table.shape[0]:
        raise ValueError(f"position table of {table.shape[0]} rows is not a square grid plus a class row")
    cls_row, body = table[:1], table[1:]
    body = body.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    body = F.interpolate(body, size=(rows, cols), mode="bilinear", align_corners=False)
    body = body.permute(0, 2, 3, 1).reshape(rows * cols, -1)
    return torch.cat([cls_row, body], dim=0)


def clip_from_openai_state(state: dict[str, torch.Tensor], source: str | Path = "checkpoint", *, seed: int = 0) -> Any:
    """A float32 transformers ``CLIPModel`` holding the weights of an OpenAI state dict
    (float16 values are widened exactly). Keys the model lacks are ignored; a missing key
    is a :class:`RecipeError`. The global RNG is left untouched."""
    from transformers import CLIPModel

    config = openai_clip_config(state, source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    _check_tensors_fit(state, config, source, model)
    mapped = {k: v.float() for k, v in hf_state_from_openai(state).items()}
    if "logit_scale" not in mapped:
        mapped["logit_scale"] = model.logit_scale.detach().clone()
    expected = model.state_dict()
    model.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=False)
    return model
