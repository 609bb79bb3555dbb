"""The ``clip`` encoder plugin: shapes, end-token pooling, tokenizers (built, reloaded,
pretrained with an added mask token), loading a saved model, offline errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from wsreid.api import BuildContext
from wsreid.errors import RecipeError, UserError
from wsreid_clip import ClipEncoder
from wsreid_clip.encoder import end_token_features
from wsreid_clip.tokenizer import ADDED_MASK_TOKEN, TOKENIZER_DIRNAME

CAPTIONS = [
    "A man in a red shirt and blue jeans.",
    "The woman wears a white coat, black trousers and carries a bag.",
    "A man with short black hair, a blue jacket and white shoes.",
    "A woman in a long red dress; she carries a black bag.",
]

TINY = dict(
    embed_dim=16,
    vision=dict(hidden=32, layers=1, heads=2, patch_size=8),
    text=dict(hidden=32, layers=1, heads=2),
    image_size=(32, 16),
    max_length=16,
)


def tiny_encoder(**context) -> ClipEncoder:
    context.setdefault("train_captions", CAPTIONS)
    return ClipEncoder(ClipEncoder.Params(**TINY), BuildContext(**context)).eval()


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return tiny_encoder()


# --------------------------------------------------------------------------- shapes, tokenizer


def test_shapes_dtypes_and_attributes(encoder):
    ids, mask = encoder.tokenize(CAPTIONS[:3])
    assert ids.shape == mask.shape == (3, 16) and ids.dtype == mask.dtype == torch.long
    with torch.no_grad():
        image = encoder.encode_image(torch.randn(3, 3, 32, 16))
        text = encoder.encode_text(ids, mask)
    assert image.shape == text.shape == (3, 16) and image.dtype == text.dtype == torch.float32
    assert encoder.image_size == (32, 16) and encoder.embed_dim == 16 and encoder.max_length == 16
    assert encoder.special_token_ids == frozenset(range(5))
    assert (encoder.pad_token_id, encoder.mask_token_id, encoder.start_token_id, encoder.end_token_id) == (0, 2, 3, 4)
    assert encoder.clip.text_model.embeddings.token_embedding.num_embeddings == len(encoder.tokenizer)
    config = encoder.clip.config.text_config
    assert (config.eos_token_id, config.bos_token_id, config.pad_token_id) == (4, 3, 0)


def test_tokenize_wraps_lowercases_splits_punctuation_and_pads(encoder):
    ids, mask = encoder.tokenize(["A MAN, red."])
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids[0, : int(mask[0].sum())].tolist())
    assert tokens == ["<start>", "a", "man", ",", "red", ".", "<end>"]
    assert mask[0].tolist() == [1] * 7 + [0] * 9
    assert ids[0, 7:].tolist() == [encoder.pad_token_id] * 9
    assert encoder.tokenizer.convert_ids_to_tokens(encoder.tokenize(["zebra"])[0][0, 1].item()) == "<unk>"


def test_truncation_keeps_the_end_token(encoder):
    ids, mask = encoder.tokenize(["a red bag " * 20])
    assert mask[0].tolist() == [1] * 16
    assert ids[0, 0].item() == encoder.start_token_id and ids[0, -1].item() == encoder.end_token_id
    assert (ids[0, 1:-1] == encoder.tokenizer.convert_tokens_to_ids("a")).sum() == 5


def caption_words(caption: str) -> list[str]:
    import re

    return re.findall(r"\w+|[^\w\s]", caption.lower())


def test_min_frequency_and_max_vocab():
    words = sorted({w for c in CAPTIONS for w in caption_words(c)})
    full = tiny_encoder()
    assert len(full.tokenizer) == 5 + len(words)
    rare = ClipEncoder(ClipEncoder.Params(**TINY, min_frequency=2), BuildContext(train_captions=CAPTIONS))
    unk = rare.unk_token_id
    assert rare.tokenize(["jeans"])[0][0, 1].item() == unk  # seen once
    assert rare.tokenize(["black"])[0][0, 1].item() != unk  # seen four times
    small = ClipEncoder(ClipEncoder.Params(**TINY, max_vocab=8), BuildContext(train_captions=CAPTIONS))
    assert len(small.tokenizer) == 8
    assert small.clip.text_model.embeddings.token_embedding.num_embeddings == 8



def test_built_tokenizer_is_saved_and_reloaded_from_run_dir(tmp_path):
    first = tiny_encoder(run_dir=tmp_path)
    assert (tmp_path / TOKENIZER_DIRNAME / "tokenizer.json").is_file()
    # resuming with other captions (or none) must not build a different vocabulary
    again = tiny_encoder(run_dir=tmp_path, train_captions=["completely different words here"])
    no_captions = ClipEncoder(ClipEncoder.Params(**TINY), BuildContext(run_dir=tmp_path))
    for other in (again, no_captions):
        assert other.tokenizer.get_vocab() == first.tokenizer.get_vocab()
        assert torch.equal(other.tokenize(CAPTIONS)[0], first.tokenize(CAPTIONS)[0])
    elsewhere = tmp_path / "export"
    first.save_pretrained(elsewhere)
    rebuilt = ClipEncoder(ClipEncoder.Params(**TINY), BuildContext(run_dir=elsewhere))
    assert torch.equal(rebuilt.tokenize(CAPTIONS)[0], first.tokenize(CAPTIONS)[0])


def test_build_without_captions_or_saved_tokenizer_is_one_line_error(tmp_path):
    with pytest.raises(RecipeError) as err:
        ClipEncoder(ClipEncoder.Params(**TINY), BuildContext(run_dir=tmp_path))
    assert "training captions" in str(err.value) and "\n" not in str(err.value)


def test_initialisation_depends_on_seed_only():
    a, b, c = tiny_encoder(seed=1), tiny_encoder(seed=1), tiny_encoder(seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["clip.visual_projection.weight"], sc["clip.visual_projection.weight"])


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        (dict(tokenizer="pretrained"), (),
         "Value error, tokenizer 'pretrained' needs pretrained: <hub name or model directory>"),
        (dict(image_size=(30, 16)), ("image_size",), "Value error, not a multiple of vision.patch_size 8"),
        (dict(vision=dict(hidden=30, heads=4)), ("vision",), "Value error, hidden (30) must be divisible by heads (4)"),
        (dict(unknown_key=1), ("unknown_key",), "Extra inputs are not permitted"),
    ],
)
def test_invalid_params_are_rejected_with_the_field_and_the_reason(change, where, problem):
    with pytest.raises(ValidationError) as caught:
        ClipEncoder.Params(**{**TINY, **change})
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [(where, problem)]


# --------------------------------------------------------------------------- images


def test_non_square_images_interpolate_the_square_position_table(encoder):
    table = encoder.clip.vision_model.embeddings.position_embedding.weight
    assert table.shape[0] == 1 + (32 // 8) ** 2  # square 4 x 4 grid for 32 x 16 inputs
    encoder.zero_grad()
    images = torch.randn(2, 3, 32, 16)
    features = encoder.encode_image(images)
    features.sum().backward()
    assert torch.isfinite(features).all() and not torch.allclose(features[0], features[1])
    assert table.grad is not None and table.grad[1:].abs().sum() > 0  # patch rows used through interpolation
    with torch.no_grad():  # another aspect ratio and the table's own square size both work
        assert encoder.encode_image(torch.randn(1, 3, 16, 32)).shape == (1, 16)
        assert encoder.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 16)


# --------------------------------------------------------------------------- end-token pooling


def test_text_feature_pools_at_the_end_token(encoder):
    ids, mask = encoder.tokenize(["a man in a red shirt"])  # <start> a man in a red shirt <end> pad...
    end = int(mask[0].sum()) - 1
    assert ids[0, end].item() == encoder.end_token_id
    with torch.no_grad():
        base = encoder.encode_text(ids, mask)
        # a word before the end token changes the feature; position 0 cannot see it
        # (causal attention), so the feature is not taken at position 0
        word = ids.clone()
        word[0, 2] = encoder.tokenizer.convert_tokens_to_ids("woman")
        assert (encoder.encode_text(word, mask) - base).abs().max() > 1e-4
        # anything in the padding after the end token leaves it unchanged
        padded_ids, padded_mask = ids.clone(), mask.clone()
        padded_ids[0, end + 1 :] = encoder.tokenizer.convert_tokens_to_ids("bag")
        padded_mask[0, end + 1 :] = 1
        assert torch.allclose(encoder.encode_text(padded_ids, padded_mask), base, atol=1e-6)
        # the feature is exactly the projected hidden state at the end position
        hidden = encoder.clip.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(base, encoder.clip.text_projection(hidden[:, end]), atol=1e-6)
        assert not torch.allclose(base, encoder.clip.text_projection(hidden[:, 0]), atol=1e-3)
        # transformers' own pooler agrees, i.e. the text config carries the right eos id
        pooled = encoder.clip.text_model(input_ids=ids, attention_mask=mask).pooler_output
        assert torch.allclose(pooled, hidden[:, end], atol=1e-6)


def test_end_token_features_picks_first_end_or_last_attended():
    hidden = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)
    ids = torch.tensor([[3, 7, 4, 4, 4], [3, 7, 8, 9, 0]])  # row 1: no end token (4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    assert end_token_features(hidden, ids, mask, 4).view(-1).tolist() == [2.0, 8.0]


def test_logit_scale_is_frozen_and_every_other_parameter_gets_a_gradient():
    enc = tiny_encoder().train()
    ids, mask = enc.tokenize(CAPTIONS)
    image = F.normalize(enc.encode_image(torch.randn(4, 3, 32, 16)), dim=-1)
    text = F.normalize(enc.encode_text(ids, mask), dim=-1)
    logits = image @ text.T / 0.02
    (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))).backward()
    frozen = [n for n, p in enc.named_parameters() if not p.requires_grad]
    assert frozen == ["clip.logit_scale"] and enc.clip.logit_scale.grad is None
    assert [n for n, p in enc.named_parameters() if p.requires_grad and p.grad is None] == []


# --------------------------------------------------------------------------- pretrained


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory):
    """A tiny CLIPModel saved with a CLIP-like word-level tokenizer: no mask token, the end
    token has the highest id, pad = end, and the legacy ``eos_token_id = 2`` in the config."""
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def save_tiny_clip(directory, unk_token: str = "<unk>"):
    """The model of ``saved_model_dir`` saved in ``directory``, its tokenizer's unknown
    token ``unk_token`` (``<|endoftext|>``: as in every HF CLIP tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["<unk>", "a", "man", "woman", "red", "blue", "shirt", "bag", ",", "."]
    vocab = {w: i for i, w in enumerate(words + ["<|startoftext|>", "<|endoftext|>"])}
    start, end = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    backend = Tokenizer(models.WordLevel(vocab, unk_token=unk_token))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", start), ("<|endoftext|>", end)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=unk_token,
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=20, bos_token_id=0, eos_token_id=2, pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=16, patch_size=8,
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_pretrained_directory_gives_the_saved_model_features(saved_model_dir):
    from transformers import CLIPModel

    reference = CLIPModel.from_pretrained(saved_model_dir).eval()
    params = ClipEncoder.Params(pretrained=str(saved_model_dir), image_size=(32, 16), max_length=12)
    enc = ClipEncoder(params, BuildContext()).eval()
    assert enc.embed_dim == 24 and enc.params.tokenizer_source == "pretrained"
    images = torch.randn(3, 3, 32, 16)
    texts = ["a man , red shirt .", "a woman", "blue bag"]
    ids, mask = enc.tokenize(texts)
    with torch.no_grad():
        ref_image = reference.get_image_features(pixel_values=images, interpolate_pos_encoding=True).pooler_output
        ref_text = reference.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        assert torch.allclose(enc.encode_image(images), ref_image, atol=1e-5)
        assert torch.allclose(enc.encode_text(ids, mask), ref_text, atol=1e-5)


def test_pretrained_tokenizer_without_mask_gets_one_with_mean_embedding(saved_model_dir):
    from transformers import CLIPModel

    reference = CLIPModel.from_pretrained(saved_model_dir).eval()
    old = reference.text_model.embeddings.token_embedding.weight
    enc = ClipEncoder(ClipEncoder.Params(pretrained=str(saved_model_dir), max_length=12), BuildContext()).eval()
    assert enc.mask_token_added and enc.tokenizer.mask_token == ADDED_MASK_TOKEN
    assert enc.mask_token_id == old.shape[0] == len(enc.tokenizer) - 1
    new = enc.clip.text_model.embeddings.token_embedding.weight
    assert new.shape[0] == old.shape[0] + 1 and enc.clip.config.text_config.vocab_size == old.shape[0] + 1
    assert torch.allclose(new[:-1], old) and torch.allclose(new[-1], old.mean(dim=0))
    assert enc.special_token_ids == {10, 11, 12, 0}  # start, end (= pad), mask, unk
    assert enc.clip.config.text_config.eos_token_id == 11
    # a masked word keeps the end-token pooling (its id is now the largest one, which
    # transformers' legacy argmax pooling for eos_token_id == 2 would wrongly pick)
    ids, mask = enc.tokenize([f"a {ADDED_MASK_TOKEN} man"])
    assert ids[0, :5].tolist() == [10, 1, 12, 2, 11]
    with torch.no_grad():
        hidden = enc.clip.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(enc.encode_text(ids, mask), enc.clip.text_projection(hidden[:, 4]), atol=1e-6)


def test_written_sizes_must_be_the_pretrained_models(saved_model_dir):
    """Sizes shape only a random model: with pretrained weights a size the recipe writes
    that is not the model's would be silently ignored - it is an error; the model's own
    sizes, written out, are fine, and so are the defaults (a resolved recipe.yaml spells
    them out whatever the model)."""
    common = {"pretrained": str(saved_model_dir), "image_size": (32, 16), "max_length": 12}
    for change, says in (({"embed_dim": 64}, "encoder.embed_dim 64 differs from the pretrained model's 24"),
                         ({"vision": {"hidden": 32, "layers": 2, "heads": 2}}, "encoder.vision.layers 2 differs"),
                         ({"text": {"hidden": 32, "layers": 1, "heads": 4}}, "encoder.text.heads 4 differs"),
                         ({"vision": {"patch_size": 4}}, "encoder.vision.patch_size 4 differs")):
        with pytest.raises(RecipeError, match=says):
            ClipEncoder(ClipEncoder.Params(**common, **change), BuildContext())
    same = {"embed_dim": 24, "vision": {"hidden": 32, "layers": 1, "heads": 2, "patch_size": 8, "intermediate": 64},
            "text": {"hidden": 32, "layers": 1, "heads": 2}}
    assert ClipEncoder(ClipEncoder.Params(**common, **same), BuildContext()).embed_dim == 24
    defaults = ClipEncoder.Params(pretrained=str(saved_model_dir)).model_dump(include={"embed_dim", "vision", "text"})
    assert defaults["vision"]["hidden"] == 768  # the ViT-B/16 defaults, not the saved model's 32
    assert ClipEncoder(ClipEncoder.Params(**common, **defaults), BuildContext()).embed_dim == 24


def test_pretrained_errors_are_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RecipeError) as err:
        ClipEncoder(ClipEncoder.Params(pretrained="wsreid-tests/no-such-clip"), BuildContext())
    message = str(err.value)
    assert "\n" not in message and "not available offline" in message and "encoder.pretrained: DIR" in message
    assert "the hub cannot be reached (offline mode is set: HF_HUB_OFFLINE)" in message  # asked no hub
    with pytest.raises(RecipeError, match="does not exist"):
        ClipEncoder(ClipEncoder.Params(pretrained=str(tmp_path / "missing")), BuildContext())
    with pytest.raises(UserError) as err:
        ClipEncoder(ClipEncoder.Params(pretrained=str(tmp_path)), BuildContext())  # empty directory
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_registered_through_the_entry_point():
    from wsreid.pluginmanager import load_plugins

    entry = load_plugins().registry.get("encoder", "clip")
    assert entry.cls is ClipEncoder and entry.provider == "clip"


# --------------------------------------------------------------------------- caption warnings at build

def test_captions_cut_at_max_length_are_warned_about_once_with_their_share(capsys):
    """Lengths in tokens with start and end: 12, 16, 16, 16; at max_length 13 three of
    the four training captions lose their last words."""
    ClipEncoder(ClipEncoder.Params(**{**TINY, "max_length": 13}), BuildContext(train_captions=CAPTIONS))
    assert capsys.readouterr().err == ("warning: encoder.max_length 13: 75.0% of the training captions are longer (in "
                                       "tokens, with start and end) and lose their last words (raise encoder.max_length)\n")
    ClipEncoder(ClipEncoder.Params(**{**TINY, "max_length": 13}), BuildContext(train_captions=CAPTIONS, is_main=False))
    ClipEncoder(ClipEncoder.Params(**TINY), BuildContext(train_captions=CAPTIONS))  # 16: every caption fits
    assert capsys.readouterr().err == ""


def test_an_encoder_built_for_an_evaluation_leaves_the_training_captions_to_training(capsys):
    """``BuildContext(trains=False)`` (wsreid eval): no build-time warning; the
    evaluation asks about its own queries, named as such."""
    encoder = ClipEncoder(ClipEncoder.Params(**{**TINY, "max_length": 13}),
                          BuildContext(train_captions=CAPTIONS, trains=False))
    assert capsys.readouterr().err == ""
    assert encoder.caption_warnings(CAPTIONS, "the test queries") == [
        "encoder.max_length 13: 75.0% of the test queries are longer (in tokens, with start and end) and lose "
        "their last words (raise encoder.max_length)"]


SHIPPED = dict(pretrained="synth-web-tiny-clip", image_size=(64, 32), max_length=40)


def test_words_unknown_to_a_pretrained_vocabulary_are_warned_about(capsys):
    """The shipped encoder's vocabulary is its pretraining pool's: 'a' and 'man' are in
    it, 'zzqx' is not (one word in three unknown)."""
    encoder = ClipEncoder(ClipEncoder.Params(**SHIPPED), BuildContext(train_captions=["a man zzqx"] * 5))
    assert encoder.caption_shares(["a man zzqx"] * 5) == (5, 0.0, pytest.approx(1 / 3))
    assert capsys.readouterr().err == (
        "warning: encoder.pretrained synth-web-tiny-clip: 33.3% of the words of the training captions are unknown to "
        "its vocabulary and all read as one token, which fine-tuning cannot tell apart (captions of another "
        "vocabulary or language than the model's; check they are the ones meant)\n")
    ClipEncoder(ClipEncoder.Params(**SHIPPED), BuildContext(train_captions=["a man with a red shirt"] * 5))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("long_captions", "warned"), [(2, False), (3, True)])
def test_captions_cut_at_the_models_own_limit_warn_from_a_quarter(capsys, long_captions, warned):
    """max_length is the shipped model's 40 positions, so it cannot be raised: a few
    captions cut there are the data's (the embedded benchmark cuts 13 %), a quarter or
    more warn, saying that a model with more positions is needed."""
    long = " ".join(["a man with a red shirt"] * 8)  # 48 words
    captions = [long] * long_captions + ["a man"] * (10 - long_captions)
    ClipEncoder(ClipEncoder.Params(**SHIPPED), BuildContext(train_captions=captions))
    expected = ("warning: encoder.max_length 40: 30.0% of the training captions are longer (in tokens, with start and "
                "end) and lose their last words (the model has 40 text positions and cannot read more; a model with "
                "more is needed)\n")
    assert capsys.readouterr().err == (expected if warned else "")


def test_caption_shares_read_an_even_sample_of_a_large_training_set(monkeypatch):
    monkeypatch.setattr(ClipEncoder, "CAPTIONS_CHECKED", 4)
    encoder = tiny_encoder()
    captions = ["a man"] * 5 + [" ".join(["a red shirt"] * 6)] * 5  # 18 words: longer than max_length 16
    read, truncated, unknown = encoder.caption_shares(captions)
    assert (read, truncated) == (4, 0.5)  # captions 0, 3, 6, 9 (every third)


def test_an_unknown_token_that_is_the_end_token_is_not_counted_as_a_word(tmp_path, capsys):
    """An HF CLIP tokenizer's unknown token is its end-of-text token: the end token each
    caption closes with is no unknown word (it was: every caption of 6 known words read
    as 1 unknown word in 7, 14.3 %, and warned); a word outside the vocabulary still is."""
    directory = save_tiny_clip(tmp_path / "tiny-clip-unk-eos", unk_token="<|endoftext|>")
    captions = ["a man , red shirt ."] * 5
    capsys.readouterr()  # transformers' saving progress
    enc = ClipEncoder(ClipEncoder.Params(pretrained=str(directory), max_length=12), BuildContext(train_captions=captions))
    assert enc.unk_token_id == enc.end_token_id == 11
    assert enc.caption_token_counts(["a man , red shirt .", "a man zzqx"]) == [(8, 6, 0), (5, 3, 1)]
    assert enc.caption_shares(captions) == (5, 0.0, 0.0)
    assert enc.caption_warnings(captions) == []
    assert capsys.readouterr().err == ""
