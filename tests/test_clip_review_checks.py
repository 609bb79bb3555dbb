"""Problems of the ``clip`` encoder that a review of the paper recipes found offline, each
refused in one line (exit code 2, no traceback) - by ``wsreid validate`` where a cheap look
at the named files tells (docs/reliability.md): fp16 weights under autocast, a model folder
without a tokenizer, a tokenizer larger than the model's vocabulary, an OpenAI checkpoint
file without a tokenizer, with unreadable content or sizes that do not fit, a hub name the
hub cannot give now (a warning), and hints that named the wrong remedy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_clip_openai import OPENAI_MERGES, SMALL_MERGES, save_torchscript, tiny_openai_state, write_merges
from wsreid.api import BuildContext
from wsreid.cli import main
from wsreid.errors import RecipeError
from wsreid.recipe.yamlio import display_path
from wsreid_clip.bpe import byte_symbols
from wsreid_clip.encoder import ClipEncoder, ClipParams

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CTX = BuildContext(run_dir=None, seed=0, device=torch.device("cpu"))
#: a recipe whose encoder sizes are the tiny OpenAI state's (pretrained on line 5)
RECIPE = (f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ninit: null\nencoder:\n  name: clip\n  pretrained: {{name}}\n"
          "  embed_dim: 32\n  vision: {{hidden: 64, layers: 1, heads: 1, patch_size: 8}}\n"
          "  text: {{hidden: 64, layers: 1, heads: 1}}\n  image_size: [32, 32]\n  max_length: 16\n")
BPE_HINT = "set encoder.tokenizer to OpenAI's BPE file bpe_simple_vocab_16e6.txt.gz"
FILE_HINT = ("set encoder.pretrained to OpenAI's CLIP checkpoint (ViT-B-16.pt: TorchScript archive or state dict) or "
             "a model folder")


pytestmark = pytest.mark.usefixtures("offline_hub")  # an empty Hugging Face cache; the network is not touched


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    state = tiny_openai_state()
    torch.save(state, d / "state.pt")
    save_torchscript(state, d / "scripted.pt")
    write_merges(d / "small.txt.gz", SMALL_MERGES)
    sym = byte_symbols()
    write_merges(d / "full.txt.gz", [f"{a} {b}" for a in sym for b in sym][:OPENAI_MERGES + 5])
    return d


def tiny_encoder(weights, tokenizer=None, **params) -> ClipEncoder:
    """The CLIP encoder of ``weights`` (a file or folder) at the test size, 32 x 32 pixels
    and 16 text positions (``tokenizer``: a BPE file)."""
    tokenizer = {} if tokenizer is None else {"tokenizer": str(tokenizer)}
    return ClipEncoder(ClipParams(pretrained=str(weights), **tokenizer, image_size=(32, 32), max_length=16, **params),
                       CTX)


def validate(tmp_path: Path, capsys, name, extra: str = "", *argv: str) -> tuple[int, str, Path]:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(name=name) + extra)
    code = main(["validate", str(path), *argv])
    return code, capsys.readouterr().err, display_path(path)


def one_error(tmp_path, capsys, name, extra: str = "", *argv: str) -> tuple[str, Path]:
    code, err, path = validate(tmp_path, capsys, name, extra, *argv)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip(), path


# --------------------------------------------------------------------------- 1. fp16 weights under autocast


def test_fp16_weights_under_bf16_autocast_are_refused_in_one_line(files):
    """CPU (and CUDA) bf16 autocast rejects the float16 tensors of the authors' arithmetic
    ("Unexpected floating ScalarType in at::autocast::prioritize"); recast they would no
    longer be the authors' arithmetic: refused before the first forward, naming both keys."""
    enc = tiny_encoder(files / "state.pt", files / "small.txt.gz", weights_dtype="fp16")
    ids, mask = enc.tokenize(["red man"])
    expected = ("clip encoder: encoder.weights_dtype fp16 (the authors' float16 arithmetic) cannot run under "
                "train.mixed_precision bf16 (set train.mixed_precision: no (weights_dtype fp16 already computes the "
                "encoders in float16), or encoder.weights_dtype: fp32 to train with autocast)")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RecipeError) as image_error:
            enc.encode_image(torch.zeros(1, 3, 32, 32))
        with pytest.raises(RecipeError) as text_error:
            enc.encode_text(ids, mask)
    assert str(image_error.value) == str(text_error.value) == expected
    assert enc.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 32)  # without autocast: as before


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fp16_weights_with_mixed_precision_are_refused_by_validate(files, tmp_path, capsys, precision):
    """The same mistake in a recipe is refused before anything is built, at the line of
    encoder.weights_dtype; fp16 weights without autocast stay valid."""
    extra = f"  tokenizer: {files / 'small.txt.gz'}\n  weights_dtype: fp16\n"
    err, path = one_error(tmp_path, capsys, files / "state.pt", extra, "-o", f"train.mixed_precision={precision}")
    assert err == (f"error: {path}:12: encoder.weights_dtype: fp16 (the authors' float16 arithmetic) cannot run "
                   f"under train.mixed_precision {precision} (set train.mixed_precision: no (weights_dtype fp16 already "
                   "computes the encoders in float16), or encoder.weights_dtype: fp32 to train with autocast)")
    assert validate(tmp_path, capsys, files / "state.pt", extra)[:2] == (0, "")


# --------------------------------------------------------------------------- 2. a folder without a tokenizer


def test_folder_without_tokenizer_is_refused_and_convert_weights_says_so(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["convert-weights", str(files / "state.pt"), "notok"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "notok\n"
    assert captured.err == (
        "warning: convert-weights: notok holds no tokenizer (no --tokenizer given): use it with encoder.tokenizer "
        "set to OpenAI's BPE file bpe_simple_vocab_16e6.txt.gz, or convert again into a new folder (or after deleting "
        "this one) with --tokenizer BPE_FILE\n")
    err, path = one_error(tmp_path, capsys, "notok")
    assert err == (
        f"error: {path}:5: encoder.pretrained: model folder {tmp_path / 'notok'} holds no tokenizer (tokenizer.json, or "
        "vocab.json and merges.txt) (rerun `wsreid convert-weights` with --tokenizer BPE_FILE, or set encoder.tokenizer to the BPE "
        "file (OpenAI's bpe_simple_vocab_16e6.txt.gz))")
    err, path = one_error(tmp_path, capsys, "notok", "  tokenizer: pretrained\n")
    assert err.startswith(f"error: {path}:11: encoder.tokenizer: model folder {tmp_path / 'notok'} holds no tokenizer")
    # the run refuses it too (not transformers' empty two-token tokenizer)
    with pytest.raises(RecipeError, match="/notok holds no tokenizer"):  # the folder, stored absolute
        tiny_encoder("notok")
    # with the BPE file named it validates and builds
    code, err, _ = validate(tmp_path, capsys, "notok", f"  tokenizer: {files / 'small.txt.gz'}\n")
    assert (code, err) == (0, "")
    tiny_encoder("notok", files / "small.txt.gz")


# --------------------------------------------------------------------------- 3. a tokenizer larger than the model


def test_tokenizer_larger_than_the_models_vocabulary_is_refused(files, tmp_path, capsys):
    """OpenAI's full BPE file (49,408 tokens) with 523-row weights: not their vocabulary (it
    grew the embedding by 48,885 mean rows); only the added mask row may be appended."""
    err, path = one_error(tmp_path, capsys, files / "state.pt", f"  tokenizer: {files / 'full.txt.gz'}\n")
    assert err == (
        f"error: {path}:11: encoder.tokenizer: BPE file {files / 'full.txt.gz'} has 49408 tokens, more than the 523 "
        "rows of the pretrained model's token embedding: it is not the vocabulary of these weights (set "
        "encoder.tokenizer to the vocabulary the weights were trained with (OpenAI's bpe_simple_vocab_16e6.txt.gz "
        "for OpenAI's CLIP, or tokenizer: pretrained for a folder that holds one))")
    with pytest.raises(RecipeError, match="has 49408 tokens, more than the 523 rows"):
        tiny_encoder(files / "state.pt", files / "full.txt.gz")
    # the small file (523 tokens + the added mask) fits and only the mask row is added
    enc = tiny_encoder(files / "state.pt", files / "small.txt.gz")
    assert enc.clip.text_model.embeddings.token_embedding.num_embeddings == 524


def test_tokenizer_smaller_than_the_models_vocabulary_is_refused(files, tmp_path, capsys):
    """A BPE file of fewer tokens than the weights' rows puts its start and end tokens (its
    last two ids) on rows the weights learnt as ordinary tokens, and the text tower pools at
    the end token: refused by validate and by the run (it trained on silently wrong text
    features). One row more than the file is the added mask's, kept by exported weights."""
    torch.save(tiny_openai_state(vocab=600), tmp_path / "wide.pt")
    err, path = one_error(tmp_path, capsys, tmp_path / "wide.pt", f"  tokenizer: {files / 'small.txt.gz'}\n")
    assert err == (
        f"error: {path}:11: encoder.tokenizer: BPE file {files / 'small.txt.gz'} has 523 tokens, fewer than the 600 "
        "rows of the pretrained model's token embedding: it is not the vocabulary of these weights (its end token, "
        "id 522, would read a row they learnt as another token) (set encoder.tokenizer to the vocabulary the weights "
        "were trained with (OpenAI's bpe_simple_vocab_16e6.txt.gz for OpenAI's CLIP, or tokenizer: pretrained for a "
        "folder that holds one))")
    with pytest.raises(RecipeError, match="has 523 tokens, fewer than the 600 rows"):
        tiny_encoder(tmp_path / "wide.pt", files / "small.txt.gz")
    # 524 rows = the file's 523 + the mask row a run with mask_token 'added' appended: its own vocabulary
    torch.save(tiny_openai_state(vocab=524), tmp_path / "masked.pt")
    assert validate(tmp_path, capsys, tmp_path / "masked.pt", f"  tokenizer: {files / 'small.txt.gz'}\n")[:2] == (0, "")
    enc = tiny_encoder(tmp_path / "masked.pt", files / "small.txt.gz")
    assert (enc.clip.text_model.embeddings.token_embedding.num_embeddings, enc.mask_token_id) == (524, 523)
    # with the mask in place of the last merge (the authors' mode) the file is 523 tokens, so 524 rows are not its own
    err, _ = one_error(tmp_path, capsys, tmp_path / "masked.pt",
                       f"  tokenizer: {files / 'small.txt.gz'}\n  mask_token: last_merge\n")
    assert "has 523 tokens, fewer than the 524 rows" in err


@pytest.mark.parametrize("rows", [600, 500])
def test_convert_weights_refuses_a_tokenizer_that_is_not_the_checkpoints_vocabulary(files, tmp_path, capsys, rows):
    """convert-weights wrote such a folder and said nothing (larger: refused only when a run
    built the encoder; smaller: never): one line, exit 2, nothing written."""
    torch.save(tiny_openai_state(vocab=rows), tmp_path / "other.pt")
    out = tmp_path / "conv" / "out"
    code = main(["convert-weights", str(tmp_path / "other.pt"), str(out), "--tokenizer", str(files / "small.txt.gz")])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        f"error: convert-weights: tokenizer file {files / 'small.txt.gz'} has 523 tokens, the checkpoint's token "
        f"embedding {rows} rows: it is not the vocabulary of these weights (pass --tokenizer the merges file the "
        "weights were trained with (OpenAI's bpe_simple_vocab_16e6.txt.gz for OpenAI's CLIP), or convert without "
        "--tokenizer; nothing was written)\n")
    assert not (tmp_path / "conv").exists()
    assert main(["convert-weights", str(files / "state.pt"), str(out), "--tokenizer", str(files / "small.txt.gz")]) == 0


# --------------------------------------------------------------------------- 4. an OpenAI file without a tokenizer


def test_openai_file_without_tokenizer_is_refused_at_validate(files, tmp_path, capsys):
    err, path = one_error(tmp_path, capsys, files / "state.pt")
    assert err == (f"error: {path}:5: encoder.pretrained: {files / 'state.pt'} is an OpenAI checkpoint file, which "
                   f"carries no tokenizer ({BPE_HINT})")
    err, path = one_error(tmp_path, capsys, files / "state.pt", "  tokenizer: pretrained\n")
    assert err == (f"error: {path}:11: encoder.tokenizer: {files / 'state.pt'} is an OpenAI checkpoint file, which "
                   f"carries no tokenizer ({BPE_HINT})")


# --------------------------------------------------------------------------- 5. the file's content and sizes


def test_openai_file_content_is_read_at_validate(files, tmp_path, capsys):
    bpe = f"  tokenizer: {files / 'small.txt.gz'}\n"
    for name in ("state.pt", "scripted.pt"):
        code, err, _ = validate(tmp_path, capsys, files / name, bpe)
        assert (code, err) == (0, ""), name
    empty, text, truncated, other = (tmp_path / n for n in ("empty.pt", "ViT-B-16.pt", "cut.pt", "other.pt"))
    empty.write_bytes(b"")
    text.write_text("hello, not weights\n")
    truncated.write_bytes((files / "state.pt").read_bytes()[:5000])
    torch.save({"a": torch.zeros(2)}, other)
    expected = {
        empty: f"weights file {empty} is empty (copy it again; {FILE_HINT})",
        text: (f"{text} is not a PyTorch checkpoint (neither the zip archive of torch.save or TorchScript nor a "
               f"pickle; it starts with b'hell') ({FILE_HINT})"),
        truncated: (f"weights file {truncated} is truncated or damaged (a zip archive without its central "
                    f"directory) (copy it again; {FILE_HINT})"),
        other: (f"{other} is not an OpenAI CLIP ViT checkpoint: missing visual.conv1.weight, token_embedding.weight, "
                "text_projection, visual.proj (only the ViT image encoders of OpenAI's CLIP are supported)"),
    }
    for file, message in expected.items():
        err, path = one_error(tmp_path, capsys, file, bpe)
        assert err == f"error: {path}:5: encoder.pretrained: {message}"


@pytest.mark.parametrize("override, expected", [
    ("encoder.max_length=77", "77 exceeds the pretrained model's 16 text positions (set encoder.max_length to at "
     "most 16)"),
    ("encoder.image_size=[36,32]", "[36, 32] is not a multiple of the pretrained model's patch size 8 (use sides "
     "divisible by 8, e.g. [32, 32])"),
    ("encoder.embed_dim=64", "64 differs from the pretrained model's 32 (the architecture comes from "
     "encoder.pretrained: remove encoder.embed_dim or set it to 32)"),
])
def test_sizes_that_do_not_fit_the_file_or_folder_are_refused_at_validate(files, tmp_path, capsys, override, expected):
    key = override.split("=")[0]
    bpe = f"  tokenizer: {files / 'small.txt.gz'}\n"
    err, _ = one_error(tmp_path, capsys, files / "scripted.pt", bpe, "-o", override)
    assert err == f"error: override -o {override}: {key}: {expected}"
    folder = tmp_path / "converted"
    assert main(["convert-weights", str(files / "state.pt"), str(folder), "--tokenizer", str(files / "small.txt.gz")]) == 0
    capsys.readouterr()
    err, _ = one_error(tmp_path, capsys, folder, "", "-o", override)
    assert err == f"error: override -o {override}: {key}: {expected}"
    # as written in the recipe file: its line
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(name=folder).replace("embed_dim: 32", "embed_dim: 64"))
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (f"error: {display_path(path)}:6: encoder.embed_dim: 64 differs from the "
                                       "pretrained model's 32 (the architecture comes from encoder.pretrained: remove "
                                       "encoder.embed_dim or set it to 32)\n")


# --------------------------------------------------------------------------- 6. a hub name the hub cannot give now


def test_hub_name_not_cached_warns_when_the_hub_cannot_be_reached(tmp_path, capsys, monkeypatch):
    import wsreid_clip.loading

    asked = []

    def unreachable(timeout=None):
        asked.append(timeout)
        return "huggingface.co:443: Name or service not known"

    monkeypatch.setattr(wsreid_clip.loading, "hub_unreachable", unreachable)
    code, err, path = validate(tmp_path, capsys, "openai/clip-vit-base-patch16")
    assert code == 0 and asked == [2.0]
    assert err == (
        f"warning: {path}:5: encoder.pretrained: 'openai/clip-vit-base-patch16' is not in the local Hugging Face cache and the "
        "hub cannot be reached now (huggingface.co:443: Name or service not known): the run can download it only "
        "where the hub can be reached (else run `hf download openai/clip-vit-base-patch16 --local-dir DIR` on a "
        "connected machine, copy DIR here and set encoder.pretrained: DIR)\n")
    monkeypatch.setattr(wsreid_clip.loading, "hub_unreachable", lambda timeout=None: None)
    code, err, _ = validate(tmp_path, capsys, "openai/clip-vit-base-patch16")
    assert (code, err) == (0, "")
    # the library keeps the line among the recipe's warnings and prints nothing
    from wsreid.recipe import load_recipe

    monkeypatch.setattr(wsreid_clip.loading, "hub_unreachable", unreachable)
    loaded = load_recipe(str(tmp_path / "recipe.yaml"), ["encoder.pretrained=openai/clip-vit-base-patch32"])
    assert capsys.readouterr().err == ""
    assert loaded.warnings == [
        "override -o encoder.pretrained=openai/clip-vit-base-patch32: encoder.pretrained: "
        "'openai/clip-vit-base-patch32' is not in the local Hugging Face cache and the hub cannot be reached now "
        "(huggingface.co:443: Name or service not known): the run can download it only where the hub can be reached "
        "(else run `hf download openai/clip-vit-base-patch32 --local-dir DIR` on a connected machine, copy DIR here "
        "and set encoder.pretrained: DIR)"]


# --------------------------------------------------------------------------- 7. hints


def test_hints_name_the_remedy_that_fits(files, tmp_path, capsys):
    err, path = one_error(tmp_path, capsys, files / "state.pt", "  tokenizer: build\n")
    assert err.endswith("encoder: tokenizer 'build' cannot be combined with pretrained weights (their token embedding "
                        "belongs to the pretrained vocabulary); use tokenizer: <BPE file> (OpenAI's "
                        "bpe_simple_vocab_16e6.txt.gz: an OpenAI checkpoint file carries no tokenizer)")
    err, path = one_error(tmp_path, capsys, files / "state.pt", f"  tokenizer: {tmp_path}\n")
    assert err == (f"error: {path}:11: encoder.tokenizer: BPE file {tmp_path} is a folder, not a file (name the merges "
                   "file itself, OpenAI's bpe_simple_vocab_16e6.txt.gz)")
    text = tmp_path / "ViT-B-16.pt"
    text.write_text("hello, not weights\n")
    assert main(["convert-weights", str(text), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"error: convert-weights: {text} is not a PyTorch checkpoint (neither the zip archive of torch.save or "
        "TorchScript nor a pickle; it starts with b'hell') (pass OpenAI's CLIP checkpoint (ViT-B-16.pt: TorchScript "
        "archive or state dict); a transformers model folder needs no conversion)\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main(["convert-weights", str(tmp_path / "empty.pt"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: convert-weights: weights file {tmp_path / 'empty.pt'} is empty")


def test_an_image_size_wider_than_tall_is_warned_of(make_recipe, capsys):
    """[128, 384] for the paper's 384 x 128 trained without a word (every image squeezed
    to a landscape shape: -2.6 R@1 on synth-pedes); validate now warns, citing the line.
    Upright and square sizes are not warned of."""
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["validate", str(recipe), "-o", "encoder.image_size=[16, 32]"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "warning: override -o encoder.image_size=[16, 32]: encoder.image_size: [16, 32] is wider than tall: image_size "
        "is [height, width], and pedestrian images are taller than wide (the paper's 384 x 128 is [384, 128]); "
        "written the other way round, every image is squeezed to the other shape (write [32, 16] unless wide images "
        "are meant)"], err
    for upright in ("[32, 16]", "[16, 16]"):
        assert main(["validate", str(recipe), "-o", f"encoder.image_size={upright}"]) == 0
        assert "warning" not in capsys.readouterr().err

def test_relative_local_weights_and_tokenizer_are_stored_absolute(files, tmp_path, monkeypatch):
    """A run trained with `encoder.pretrained: conv/withtok` (relative to the working
    directory) kept the relative path in its recipe.yaml: `wsreid search` or `eval` from
    another directory read it as a hub name ("not available offline ... hf download
    conv/withtok"). A relative path that names a local file or folder is now resolved, as
    data.root is; shipped names stay as written."""
    from wsreid.recipe import load_recipe

    monkeypatch.chdir(files)
    recipe = tmp_path / "relative.yaml"
    recipe.write_text(RECIPE.format(name="state.pt") + "  tokenizer: small.txt.gz\n")
    encoder = load_recipe(recipe).resolved["encoder"]
    assert (encoder["pretrained"], encoder["tokenizer"]) == (str(files / "state.pt"), str(files / "small.txt.gz"))
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(f"extends: {RECIPES / 'dgia.yaml'}\n")
    assert load_recipe(shipped).resolved["encoder"]["pretrained"] == "synth-web-tiny-clip"


def test_a_file_this_user_may_not_read_is_one_line(files, tmp_path, capsys, monkeypatch):
    """A checkpoint (or a run's tokenizer) of another user, unreadable here: a PermissionError
    traceback, exit 1. Now one line naming the file, exit 2, nothing written. (The tests
    run as root, who reads everything: the refusal is made by a patched open.)"""
    import errno

    unreadable = files / "state.pt"
    real_open = Path.open

    def refused(self, *args, **kwargs):
        if self == unreadable:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    out = tmp_path / "converted"
    assert main(["convert-weights", str(unreadable), str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot open {unreadable}: permission denied (give this user read permission on it, and write "
        "permission where the command writes, or run the command as the user that owns it; --debug shows the "
        "traceback)\n")
    assert not out.exists()


def test_a_training_checkpoint_wrapper_and_stored_sizes_are_read_as_the_weights(files, tmp_path, capsys):
    """{"model": weights, "epoch": 3} (a training checkpoint) and a state dict with OpenAI's
    integer sizes beside the tensors (input_resolution, ...) hold the weights: both convert
    as the plain state dict does; other content names what is not a tensor (it said "holds
    no state dict of tensors" of all three)."""
    state = tiny_openai_state()
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save({**state, "input_resolution": 32, "context_length": 16}, tmp_path / "sizes.pt")
    for name in ("wrapped", "sizes"):
        assert main(["convert-weights", str(tmp_path / f"{name}.pt"), str(tmp_path / f"{name}-out"),
                     "--tokenizer", str(files / "small.txt.gz")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    torch.save({**state, "notes": "fine-tuned", "step": 7}, tmp_path / "odd.pt")
    assert main(["convert-weights", str(tmp_path / "odd.pt"), str(tmp_path / "odd-out")]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: convert-weights: {tmp_path / 'odd.pt'} holds no state dict of tensors (entries that are not tensors: "
        "notes (str), step (int))")
    torch.save([1, 2], tmp_path / "list.pt")
    assert main(["convert-weights", str(tmp_path / "list.pt"), str(tmp_path / "list-out")]) == 2
    assert "holds no state dict of tensors (a list, not a mapping of names to tensors)" in capsys.readouterr().err
