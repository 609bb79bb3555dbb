"""OpenAI checkpoint files, the offline BPE tokenizer and ``wsreid convert-weights``.

Every file is built here: a tiny OpenAI-layout state dict (float16), the same state as a
TorchScript archive (``torch.jit.save`` of a module tree holding it), small BPE merges files
in the gzip format of ``bpe_simple_vocab_16e6.txt.gz`` and one of OpenAI's full length.
"""

from __future__ import annotations

import gzip
import pickle
import warnings
import zipfile

import pytest
import torch

from wsreid.api import BuildContext
from wsreid.cli import main
from wsreid.errors import RecipeError
from wsreid_clip.bpe import OPENAI_MERGES, bpe_tokenizer, byte_symbols
from wsreid_clip.encoder import ClipEncoder, ClipParams
from wsreid_clip.openai import (
    hf_state_from_openai,
    openai_clip_config,
    openai_state_from_clip,
    read_openai_state,
    resize_vision_position_table,
)

CTX = BuildContext(run_dir=None, seed=0, device=torch.device("cpu"))


def tiny_openai_state(vocab: int = 523, width: int = 64, layers: int = 1, embed: int = 32, grid: int = 4,
                      patch: int = 8, context: int = 16, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """Random weights in OpenAI's ViT CLIP key layout."""
    g = torch.Generator().manual_seed(5)

    def r(*shape, scale=0.05):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    s = {
        "visual.conv1.weight": r(width, 3, patch, patch),
        "visual.class_embedding": r(width),
        "visual.positional_embedding": r(grid * grid + 1, width),
        "visual.ln_pre.weight": 1 + r(width), "visual.ln_pre.bias": r(width),
        "visual.ln_post.weight": 1 + r(width), "visual.ln_post.bias": r(width),
        "visual.proj": r(width, embed),
        "token_embedding.weight": r(vocab, width),
        "positional_embedding": r(context, width),
        "ln_final.weight": 1 + r(width), "ln_final.bias": r(width),
        "text_projection": r(width, embed),
        "logit_scale": torch.tensor(4.6, dtype=dtype),
    }
    for tower in ("visual.transformer.resblocks.", "transformer.resblocks."):
        for i in range(layers):
            b = f"{tower}{i}."
            s |= {
                b + "attn.in_proj_weight": r(3 * width, width), b + "attn.in_proj_bias": r(3 * width),
                b + "attn.out_proj.weight": r(width, width), b + "attn.out_proj.bias": r(width),
                b + "ln_1.weight": 1 + r(width), b + "ln_1.bias": r(width),
                b + "ln_2.weight": 1 + r(width), b + "ln_2.bias": r(width),
                b + "mlp.c_fc.weight": r(4 * width, width), b + "mlp.c_fc.bias": r(4 * width),
                b + "mlp.c_proj.weight": r(width, 4 * width), b + "mlp.c_proj.bias": r(width),
            }
    return s


class _Holder(torch.nn.Module):
    pass


def save_torchscript(state: dict[str, torch.Tensor], path) -> None:
    """OpenAI's download layout: a TorchScript archive of a module tree holding the tensors."""
    root = _Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if name not in module._modules:
                module.add_module(name, _Holder())
            module = module._modules[name]
        module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    with warnings.catch_warnings():  # torch deprecates TorchScript; OpenAI's files are written in it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(root), str(path))


def write_merges(path, merges: list[str]) -> None:
    path.write_bytes(gzip.compress(("#version: 0.2\n" + "\n".join(merges) + "\n").encode()))


SMALL_MERGES = ["h e", "l l", "he ll", "hell o</w>", "m a", "ma n</w>", "! !</w>", "r e", "re d</w>"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("openai")
    state = tiny_openai_state()
    torch.save(state, d / "state.pt")
    save_torchscript(state, d / "scripted.pt")
    write_merges(d / "small.txt.gz", SMALL_MERGES)
    return d, state


def test_state_dict_and_torchscript_archive_read_the_same_tensors(files):
    d, state = files
    plain, scripted = read_openai_state(d / "state.pt"), read_openai_state(d / "scripted.pt")
    assert set(plain) == set(scripted) == set(state)
    for k, v in state.items():
        assert plain[k].dtype == scripted[k].dtype == torch.float16
        assert torch.equal(plain[k], v) and torch.equal(scripted[k], v), k


def test_archive_with_foreign_global_is_refused_without_running_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(RecipeError, match=r"refusing to load global __builtin__\.print"):
        read_openai_state(path)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        read_openai_state(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RecipeError, match=f"{junk} is not a PyTorch checkpoint \\(neither the zip archive"):
        read_openai_state(junk)
    junk.write_bytes(b"\x80\x04not a pickle either")  # a pickle's first byte: torch's own reason
    with warnings.catch_warnings(record=True) as issued:  # the error is the one line: no torch warning before it
        warnings.simplefilter("always")
        with pytest.raises(RecipeError, match=f"{junk} is not a readable PyTorch weights file"):
            read_openai_state(junk)
    assert [str(w.message) for w in issued] == []
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(RecipeError, match="not an OpenAI CLIP ViT checkpoint: missing visual.conv1.weight"):
        read_openai_state(tmp_path / "other.pt")


def test_architecture_is_read_from_the_shapes():
    cfg = openai_clip_config(tiny_openai_state(width=128, layers=2, embed=48, grid=3, patch=16, context=20, vocab=600))
    v, t = cfg.vision_config, cfg.text_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.patch_size, v.image_size) == (128, 2, 2, 16, 48)
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.max_position_embeddings, t.vocab_size) == (128, 2, 2, 20, 600)
    assert cfg.projection_dim == 48 and v.hidden_act == t.hidden_act == "quick_gelu"


def test_key_mapping_round_trips_and_splits_attention(files):
    _, state = files
    hf = hf_state_from_openai(state)
    q = hf["vision_model.encoder.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(q, state["visual.transformer.resblocks.0.attn.in_proj_weight"][:64])
    assert torch.equal(hf["text_projection.weight"], state["text_projection"].t())
    back = openai_state_from_clip(hf)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def _reference_text_features(state, ids):
    """OpenAI's text forward written out directly (float32): embeddings, causal pre-LN
    blocks with packed attention and quick GELU, final LN, projection at the argmax token."""
    f = {k: v.float() for k, v in state.items()}
    x = f["token_embedding.weight"][ids] + f["positional_embedding"][: ids.shape[1]]
    width = x.shape[-1]
    heads = width // 64
    n = ids.shape[1]
    causal = torch.full((n, n), float("-inf")).triu(1)
    ln = lambda y, p: torch.nn.functional.layer_norm(y, (width,), f[p + ".weight"], f[p + ".bias"])  # noqa: E731
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in f:
        b = f"transformer.resblocks.{i}."
        h = ln(x, b + "ln_1")
        qkv = h @ f[b + "attn.in_proj_weight"].t() + f[b + "attn.in_proj_bias"]
        q, k, v = (t.reshape(x.shape[0], n, heads, -1).transpose(1, 2) for t in qkv.chunk(3, -1))
        att = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5) + causal, -1) @ v
        x = x + att.transpose(1, 2).reshape(x.shape) @ f[b + "attn.out_proj.weight"].t() + f[b + "attn.out_proj.bias"]
        h = ln(x, b + "ln_2") @ f[b + "mlp.c_fc.weight"].t() + f[b + "mlp.c_fc.bias"]
        x = x + (h * torch.sigmoid(1.702 * h)) @ f[b + "mlp.c_proj.weight"].t() + f[b + "mlp.c_proj.bias"]
        i += 1
    x = ln(x, "ln_final")
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ f["text_projection"]


def test_loaded_model_computes_openai_text_features(files):
    d, state = files
    enc = ClipEncoder(ClipParams(pretrained=str(d / "scripted.pt"), tokenizer=str(d / "small.txt.gz"),
                                 image_size=(32, 32), max_length=16), CTX)
    ids, mask = enc.tokenize(["hello a man", "red"])
    with torch.no_grad():
        got = enc.encode_text(ids, mask)
    want = _reference_text_features(state, ids)
    assert torch.allclose(got, want, atol=1e-5)


def test_small_bpe_file_gives_openai_ids(files):
    d, _ = files
    tok = bpe_tokenizer(d / "small.txt.gz", mask="added", max_length=8)
    # 512 byte symbols, then one token per merge (512..520), then start, end, mask
    # the tokenizer pads with the end token; the encoder writes OpenAI's padding id 0
    assert (tok.bos_token_id, tok.eos_token_id, tok.mask_token_id, tok.pad_token_id) == (521, 522, 523, 522)
    out = tok(["Hello  a MAN!!", "red 12"], padding="max_length", truncation=True, max_length=8)
    a = byte_symbols().index("a") + 256  # 'a</w>'
    assert out["input_ids"][0] == [521, 515, a, 517, 518, 522, 522, 522]
    one, two = byte_symbols().index("1"), byte_symbols().index("2") + 256
    assert out["input_ids"][1] == [521, 520, one + 256, two, 522, 522, 522, 522]
    assert out["attention_mask"][1] == [1, 1, 1, 1, 1, 0, 0, 0]
    enc = ClipEncoder(ClipParams(pretrained=str(d / "state.pt"), tokenizer=str(d / "small.txt.gz"),
                                 image_size=(32, 32), max_length=8), CTX)
    ids, mask = enc.tokenize(["Hello  a MAN!!", "red 12"])
    assert ids.tolist() == [[521, 515, a, 517, 518, 522, 0, 0], [521, 520, one + 256, two, 522, 0, 0, 0]]
    assert enc.pad_token_id == 0 and 0 in enc.special_token_ids and mask[1].tolist() == out["attention_mask"][1]
    # OpenAI's text cleaning unescapes HTML entities (twice) before tokenizing
    assert torch.equal(enc.tokenize(["red &amp;amp; a", "red &lt;a"])[0], enc.tokenize(["red & a", "red <a"])[0])
    assert not torch.equal(enc.tokenize(["red &amp; a"])[0], tok(["red &amp; a"], padding="max_length",
                                                                 max_length=8, return_tensors="pt")["input_ids"])
    last = bpe_tokenizer(d / "small.txt.gz", mask="last_merge", max_length=8)
    assert (last.mask_token_id, last.bos_token_id, last.eos_token_id) == (520, 521, 522)
    assert last("red")["input_ids"] == [521, 519, byte_symbols().index("d") + 256, 522]  # 're' + 'd</w>': 're d</w>' dropped


@pytest.fixture(scope="module")
def full_bpe(tmp_path_factory):
    """A merges file of OpenAI's length (distinct two-symbol merges), so ids are the official ones."""
    sym = byte_symbols()
    merges = [f"{a} {b}" for a in sym for b in sym][:OPENAI_MERGES + 5]
    path = tmp_path_factory.mktemp("bpe") / "bpe_simple_vocab_16e6.txt.gz"
    write_merges(path, merges)
    return path


def test_full_length_file_gives_the_official_special_ids_and_keeps_the_end_token(full_bpe):
    added = bpe_tokenizer(full_bpe, mask="added")
    assert (added.bos_token_id, added.eos_token_id, added.mask_token_id, len(added)) == (49406, 49407, 49408, 49409)
    last = bpe_tokenizer(full_bpe, mask="last_merge")
    assert (last.mask_token_id, last.bos_token_id, last.eos_token_id, len(last)) == (49405, 49406, 49407, 49408)
    ids = last(["x " * 100], padding="max_length", truncation=True, max_length=77)["input_ids"][0]
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407 and ids[1:76] == [ids[1]] * 75


def test_openai_file_needs_a_tokenizer(files):
    d, _ = files
    with pytest.raises(RecipeError, match="OpenAI checkpoint file, which carries no tokenizer"):
        ClipEncoder(ClipParams(pretrained=str(d / "state.pt"), image_size=(32, 32), max_length=16), CTX)
    with pytest.raises(RecipeError, match="tokenizer file .*nothere.txt.gz does not exist"):
        ClipEncoder(ClipParams(pretrained=str(d / "state.pt"), tokenizer=str(d / "nothere.txt.gz"),
                               image_size=(32, 32), max_length=16), CTX)
    with pytest.raises(ValueError, match="last_merge"):
        ClipParams(pretrained=str(d / "state.pt"), mask_token="last_merge")


def test_resize_once_is_bilinear_in_the_stored_dtype():
    table = torch.randn(1 + 4 * 4, 8).half()
    out = resize_vision_position_table(table, (6, 2))
    assert out.dtype == torch.float16 and out.shape == (13, 8) and torch.equal(out[0], table[0])
    grid = table[1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(6, 2), mode="bilinear", align_corners=False)
    assert torch.equal(out[1:], want.permute(0, 2, 3, 1).reshape(12, 8))


def test_fp16_weights_and_trained_resized_table(files):
    d, state = files
    enc = ClipEncoder(ClipParams(pretrained=str(d / "state.pt"), tokenizer=str(d / "small.txt.gz"), image_size=(48, 16),
                                 max_length=16, weights_dtype="fp16", position_table="resize_once"), CTX)
    dtypes = {k: v.dtype for k, v in openai_state_from_clip(dict(enc.clip.named_parameters())).items()}
    half = {k for k, v in dtypes.items() if v == torch.float16}
    assert "visual.proj" in half and "text_projection" in half and "visual.conv1.weight" in half
    assert "transformer.resblocks.0.attn.in_proj_bias" in half and "visual.transformer.resblocks.0.mlp.c_fc.bias" in half
    for k in ("token_embedding.weight", "positional_embedding", "visual.positional_embedding",
              "visual.class_embedding", "ln_final.weight", "visual.transformer.resblocks.0.ln_1.bias"):
        assert dtypes[k] == torch.float32, k
    table = enc.clip.vision_model.embeddings.position_embedding.weight
    assert table.shape == (1 + 6 * 2, 64) and table.requires_grad
    assert torch.equal(table, resize_vision_position_table(state["visual.positional_embedding"], (6, 2)).float())
    feats = enc.encode_image(torch.randn(2, 3, 48, 16))
    assert feats.dtype == torch.float16 and feats.shape == (2, 32)
    feats.float().sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_convert_weights_command(files, tmp_path, capsys):
    from transformers import AutoTokenizer, CLIPModel

    d, state = files
    out = tmp_path / "converted"
    assert main(["convert-weights", str(d / "scripted.pt"), str(out), "--tokenizer", str(d / "small.txt.gz")]) == 0
    model = CLIPModel.from_pretrained(str(out))
    assert model.dtype == torch.float16
    back = openai_state_from_clip(model.state_dict())
    assert all(torch.equal(back[k], state[k]) for k in state)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok("hello")["input_ids"] == [521, 515, 522] and tok.pad_token_id == 522  # no mask token in the folder
    enc = ClipEncoder(ClipParams(pretrained=str(out), image_size=(32, 32), max_length=16), CTX)
    assert enc.mask_token_added and enc.mask_token_id == 523
    # the folder tokenizes as the BPE file does: '!' is an ordinary symbol, padding is id 0
    fresh = ClipEncoder(ClipParams(pretrained=str(d / "state.pt"), tokenizer=str(d / "small.txt.gz"),
                                   image_size=(32, 32), max_length=16), CTX)
    texts = ["Hello a MAN!!", "red! 12 !", "!"]
    assert torch.equal(enc.tokenize(texts)[0], fresh.tokenize(texts)[0])
    assert enc.tokenize(["MAN!!"])[0][0, :5].tolist() == [521, 517, 518, 522, 0]
    # resize_once resizes the folder's table in the dtype it was saved in (float16), as from the file
    once = {"image_size": (48, 16), "max_length": 16, "position_table": "resize_once"}
    from_folder = ClipEncoder(ClipParams(pretrained=str(out), **once), CTX)
    from_file = ClipEncoder(ClipParams(pretrained=str(d / "state.pt"), tokenizer=str(d / "small.txt.gz"), **once), CTX)
    tables = [e.clip.vision_model.embeddings.position_embedding.weight for e in (from_folder, from_file)]
    assert tables[0].shape == (13, 64) and torch.equal(tables[0], tables[1])
    capsys.readouterr()
    assert main(["convert-weights", str(d / "scripted.pt"), str(out)]) == 2
    assert main(["convert-weights", str(tmp_path / "none.pt"), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already exists" in err[0] and "none.pt does not exist" in err[1]
    assert not (tmp_path / "o2").exists()


def test_convert_weights_output_problems_are_one_line_and_leave_nothing(files, tmp_path, capsys, monkeypatch):
    """An output under a file, in a folder that takes no files, or on a full disk (as the
    OS or safetensors reports it): one line, exit 2, no staging folder, no folder made
    for it. A folder given as the checkpoint, or a file that is not one, says so - without
    torch's advice to load it with weights_only=False (which would run its code)."""
    import errno
    import tempfile

    from safetensors import SafetensorError

    d, _ = files
    (tmp_path / "afile").write_text("x")

    def error_line(*argv) -> str:
        assert main(["convert-weights", *map(str, argv)]) == 2
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err
        return captured.err.strip()

    assert error_line(d / "state.pt", tmp_path / "afile" / "out") == (
        f"error: convert-weights: cannot create the output folder {tmp_path}/afile/out: {tmp_path}/afile is a file, "
        "not a folder (choose another output directory)")
    assert error_line(d, tmp_path / "o").startswith(f"error: convert-weights: {d} is a folder, not a checkpoint file")
    (tmp_path / "random.bin").write_bytes(bytes(range(256)) * 8)
    line = error_line(tmp_path / "random.bin", tmp_path / "o")
    assert " is not a PyTorch checkpoint (neither the zip archive " in line and "weights_only" not in line
    (tmp_path / "random.bin").write_bytes(b"\x80\x02" + bytes(range(256)) * 8)  # a pickle's first bytes
    line = error_line(tmp_path / "random.bin", tmp_path / "o")
    assert "is not a readable PyTorch weights file (UnpicklingError: " in line and "weights_only" not in line
    assert "clip encoder" not in line and line.endswith("a transformers model folder needs no conversion)")
    for failure in (OSError(errno.ENOSPC, "No space left on device"),
                    SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                    'message: "No space left on device" })')):
        def full_disk(self, *a, **k):
            raise failure

        monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", full_disk)
        assert error_line(d / "state.pt", tmp_path / "new" / "out") == (
            f"error: convert-weights: cannot write {tmp_path}/new/out: no space left on the device (free space, or "
            "choose an output directory on another disk; nothing was written)")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "random.bin"]

    def refused(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)  # a folder without write permission
    assert error_line(d / "state.pt", tmp_path / "o") == (
        f"error: convert-weights: cannot create the output folder {tmp_path}/o: cannot write in {tmp_path}: "
        "Permission denied (choose an output directory in a folder you can write to)")


def test_a_folder_that_pads_with_the_exclamation_mark_is_refused(files, tmp_path):
    """Folders converted before the fix saved '!' (id 0) as a special padding token, which
    splits every '!' of a caption off as padding: such a folder is named and refused."""
    d, _ = files
    out = tmp_path / "old"
    assert main(["convert-weights", str(d / "scripted.pt"), str(out), "--tokenizer", str(d / "small.txt.gz")]) == 0
    tok = bpe_tokenizer(d / "small.txt.gz", mask="none", max_length=16)
    tok.pad_token = byte_symbols()[0]
    tok.save_pretrained(str(out))
    with pytest.raises(RecipeError, match="makes '!' \\(id 0\\) its padding token"):
        ClipEncoder(ClipParams(pretrained=str(out), image_size=(32, 32), max_length=16), CTX)


class _OpenAIBlock(torch.nn.Module):
    """The published CLIP residual block in float16 as the authors run it: LayerNorm in
    float32, ``nn.MultiheadAttention`` asked for its attention weights, quick GELU."""

    def __init__(self, state: dict[str, torch.Tensor], prefix: str, mask: torch.Tensor | None):
        super().__init__()
        width = state[prefix + "ln_1.weight"].shape[0]
        self.attn = torch.nn.MultiheadAttention(width, width // 64)
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.c_fc, self.c_proj = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)
        tensors = {"attn.in_proj_weight": self.attn.in_proj_weight, "attn.in_proj_bias": self.attn.in_proj_bias,
                   "attn.out_proj.weight": self.attn.out_proj.weight, "attn.out_proj.bias": self.attn.out_proj.bias,
                   "ln_1.weight": self.ln_1.weight, "ln_1.bias": self.ln_1.bias,
                   "ln_2.weight": self.ln_2.weight, "ln_2.bias": self.ln_2.bias,
                   "mlp.c_fc.weight": self.c_fc.weight, "mlp.c_fc.bias": self.c_fc.bias,
                   "mlp.c_proj.weight": self.c_proj.weight, "mlp.c_proj.bias": self.c_proj.bias}
        for name, param in tensors.items():
            param.data = state[prefix + name].to(torch.float32 if name.startswith("ln") else torch.float16)
        self.mask = mask

    def _ln(self, norm, x):
        return norm(x.float()).to(x.dtype)

    def forward(self, x):
        h = self._ln(self.ln_1, x)
        mask = None if self.mask is None else self.mask.to(x.dtype)
        x = x + self.attn(h, h, h, need_weights=True, attn_mask=mask)[0]
        h = self.c_fc(self._ln(self.ln_2, x))
        return x + self.c_proj(h * torch.sigmoid(1.702 * h))


def test_fp16_encoders_compute_as_the_authors_model_bit_for_bit(tmp_path):
    """With float16 weights the encoders round as the authors' model does (sequence-first
    blocks, packed attention projection, float16 softmax of nn.MultiheadAttention): the same
    features and the same float16 gradients, bit for bit, on the same kernels."""
    state = tiny_openai_state(width=128, layers=2, embed=32, grid=4, patch=8, context=16)
    torch.save(state, tmp_path / "state.pt")
    write_merges(tmp_path / "small.txt.gz", SMALL_MERGES)
    enc = ClipEncoder(ClipParams(pretrained=str(tmp_path / "state.pt"), tokenizer=str(tmp_path / "small.txt.gz"),
                                 image_size=(48, 16), max_length=16, weights_dtype="fp16", position_table="resize_once"),
                      CTX)
    table = enc.clip.vision_model.embeddings.position_embedding.weight.detach()
    causal = torch.full((16, 16), float("-inf")).triu(1)
    vis = torch.nn.Sequential(*[_OpenAIBlock(state, f"visual.transformer.resblocks.{i}.", None) for i in range(2)])
    txt = torch.nn.Sequential(*[_OpenAIBlock(state, f"transformer.resblocks.{i}.", causal) for i in range(2)])

    def ln(x, name):
        return torch.nn.functional.layer_norm(x.float(), x.shape[-1:], state[name + ".weight"].float(),
                                              state[name + ".bias"].float()).to(x.dtype)

    def reference_image(images):
        x = torch.nn.functional.conv2d(images.half(), state["visual.conv1.weight"], stride=8)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = state["visual.class_embedding"].float().half() + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + table.half()
        x = vis(ln(x, "visual.ln_pre").permute(1, 0, 2)).permute(1, 0, 2)
        return (ln(x, "visual.ln_post") @ state["visual.proj"])[:, 0]

    def reference_text(ids):
        x = state["token_embedding.weight"].float()[ids].half() + state["positional_embedding"].float().half()
        x = txt(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = ln(x, "ln_final") @ state["text_projection"]
        return x[torch.arange(x.shape[0]), ids.argmax(-1)]

    images = torch.randn(3, 3, 48, 16, generator=torch.Generator().manual_seed(1))
    ids, mask = enc.tokenize(["hello a man", "red", "a red man !!"])
    got_image, got_text = enc.encode_image(images), enc.encode_text(ids, mask)
    want_image, want_text = reference_image(images), reference_text(ids)
    assert got_image.dtype == got_text.dtype == torch.float16
    assert torch.equal(got_image, want_image) and torch.equal(got_text, want_text)

    upstream = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(2)) * 1e-2
    for feats in ((got_image, got_text), (want_image, want_text)):
        (feats[0].float() * upstream[0]).sum().add((feats[1].float() * upstream[1]).sum()).backward()
    ours = openai_state_from_clip({k: p.grad for k, p in enc.clip.named_parameters() if p.grad is not None})
    compared = 0
    for tower, blocks in (("visual.transformer.resblocks.", vis), ("transformer.resblocks.", txt)):
        for i, block in enumerate(blocks):
            for name, param in {"attn.in_proj_weight": block.attn.in_proj_weight, "attn.in_proj_bias": block.attn.in_proj_bias,
                                "attn.out_proj.bias": block.attn.out_proj.bias, "mlp.c_fc.weight": block.c_fc.weight,
                                "mlp.c_proj.bias": block.c_proj.bias, "ln_1.weight": block.ln_1.weight}.items():
                key = f"{tower}{i}.{name}"
                assert ours[key].dtype == param.grad.dtype, key
                assert torch.equal(ours[key], param.grad), key
                compared += 1
    assert compared == 24


def test_convert_weights_into_a_link_to_an_empty_folder_writes_in_that_folder(files, tmp_path, capsys):
    """It converted the whole model and then failed ("cannot write linkempty: Not a
    directory"); a link to a folder holding files is refused before the work, as the
    folder itself is."""
    d, _ = files
    (tmp_path / "realempty").mkdir()
    (tmp_path / "linkempty").symlink_to(tmp_path / "realempty")
    assert main(["convert-weights", str(d / "state.pt"), str(tmp_path / "linkempty")]) == 0
    assert (tmp_path / "linkempty").is_symlink() and (tmp_path / "realempty" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["convert-weights", str(d / "state.pt"), str(tmp_path / "linkempty")]) == 2
    assert capsys.readouterr().err == (f"error: convert-weights: output {tmp_path}/realempty already exists and is "
                                       "not an empty directory (choose a new output directory)\n")
