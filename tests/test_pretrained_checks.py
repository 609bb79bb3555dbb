"""``encoder.pretrained`` is resolved by ``wsreid validate`` as the run will load it, without
the network (docs/recipes.md, encoder ``clip``; docs/reliability.md): a typo of a shipped
name, a missing local folder, and sizes that do not fit a local model's config.json are
refused with the recipe line; a hub name that is not cached is left to the run, which fails
at once, in one line, when the hub cannot be reached; loading prints no progress bar."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from wsreid.cli import main
from wsreid.data.readers import FORMATS
from wsreid.recipe import read_recipe_tree
from wsreid.recipe.yamlio import display_path
from wsreid_clip.loading import hub_unreachable

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
REAL_HUB_UNREACHABLE = hub_unreachable
PRETRAINED = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ninit: null\nencoder:\n  name: clip\n  pretrained: {{name}}\n"


@pytest.fixture(autouse=True)
def empty_hub_cache(offline_hub, monkeypatch):
    """An empty Hugging Face cache, and a network that must not be touched."""
    # validate's probe of the hub for a name not in the cache (tests/test_clip_review_checks.py): it answers
    monkeypatch.setattr("wsreid_clip.loading.hub_unreachable", lambda timeout=None: None)
    return offline_hub


def validate(tmp_path: Path, capsys, text: str, *extra: str) -> tuple[int, str, Path]:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    code = main(["validate", str(path), *extra])
    return code, capsys.readouterr().err, path


def cache_hub_model(cache: Path, repo: str, config: dict) -> Path:
    """Put ``config.json`` of hub model ``repo`` into the cache layout huggingface_hub reads."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


CONFIG = {"vision_config": {"patch_size": 16}, "text_config": {"max_position_embeddings": 40}}


# --------------------------------------------------------------------------- names


def test_typo_of_a_shipped_name_is_refused_with_did_you_mean(tmp_path, capsys):
    code, err, path = validate(tmp_path, capsys, PRETRAINED.format(name="synth-web-tiny-clipp"))
    assert code == 2
    assert err == (f"error: {path}:5: encoder.pretrained: 'synth-web-tiny-clipp' is no shipped encoder, local "
                   "folder or model in the Hugging Face cache (did you mean 'synth-web-tiny-clip'?)\n")


def test_relative_folder_whose_parent_exists_is_refused_naming_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels").mkdir()
    code, err, path = validate(tmp_path, capsys, PRETRAINED.format(name="mymodels/tiny-clip"))
    assert code == 2
    assert err == (f"error: {display_path(path)}:5: encoder.pretrained: model folder mymodels/tiny-clip does not exist (looked "
                   f"for {tmp_path / 'mymodels' / 'tiny-clip'}; a relative folder is found from the working "
                   "directory) (name a folder holding a saved CLIPModel and its tokenizer, an OpenAI checkpoint "
                   "file, or a hub name such as openai/clip-vit-base-patch16)\n")
    # the folder, written by save_pretrained, is found relative to the working directory
    (tmp_path / "mymodels" / "tiny-clip").mkdir()
    (tmp_path / "mymodels" / "tiny-clip" / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "mymodels" / "tiny-clip" / "model.safetensors").write_bytes(b"")
    (tmp_path / "mymodels" / "tiny-clip" / "tokenizer.json").write_text("{}")
    code, err, _ = validate(tmp_path, capsys, PRETRAINED.format(name="mymodels/tiny-clip")
                            + "  image_size: [128, 64]\n  max_length: 40\n")
    assert (code, err) == (0, "")


def test_a_name_that_cannot_be_a_hub_id_is_a_missing_folder(tmp_path, capsys):
    code, err, path = validate(tmp_path, capsys, PRETRAINED.format(name="tiny..clip"))
    assert code == 2 and err.startswith(f"error: {path}:5: encoder.pretrained: model folder tiny..clip does not exist")


def test_hub_name_not_in_the_cache_is_left_to_the_run(tmp_path, capsys):
    """A user with network may download it: validate neither refuses it nor asks the hub."""
    for name in ("openai/clip-vit-base-patch16", "mymodels/tiny-clip"):  # no 'mymodels' folder here
        code, err, _ = validate(tmp_path, capsys, PRETRAINED.format(name=name))
        assert (code, err) == (0, ""), name


def test_cached_hub_model_sizes_are_checked(tmp_path, capsys, empty_hub_cache):
    cache_hub_model(empty_hub_cache, "someone/tiny-clip", CONFIG)
    code, err, path = validate(tmp_path, capsys, PRETRAINED.format(name="someone/tiny-clip") + "  max_length: 77\n")
    assert code == 2
    assert err == (f"error: {path}:6: encoder.max_length: 77 exceeds the pretrained model's 40 text positions (set "
                   "encoder.max_length to at most 40)\n")
    code, err, _ = validate(tmp_path, capsys, PRETRAINED.format(name="someone/tiny-clip")
                            + "  image_size: [128, 64]\n  max_length: 40\n")
    assert (code, err) == (0, "")


def test_paper_recipes_validate_without_their_weights(tmp_path, capsys):
    """Their openai/clip-vit-base-patch16 is not in the (empty) cache and the network is off."""
    paper = sorted((RECIPES / "paper").glob("*.yaml"))
    assert len(paper) == 6
    for number, path in enumerate(paper):
        tree, _ = read_recipe_tree(path)
        fmt = FORMATS[tree["data"]["name"]]
        root = tmp_path / f"{number}" / fmt.name
        root.mkdir(parents=True)
        (root / fmt.annotation_files[0]).write_text("[]")
        assert main(["validate", str(path), "-o", f"data.root={root}"]) == 0, capsys.readouterr().err
        assert "valid" in capsys.readouterr().out


# --------------------------------------------------------------------------- sizes of a local model


def test_image_size_not_a_multiple_of_the_shipped_models_patch(tmp_path, capsys):
    text = PRETRAINED.format(name="synth-web-tiny-clip") + "  image_size: [130, 64]\n  max_length: 40\n"
    code, err, path = validate(tmp_path, capsys, text)
    assert code == 2
    assert err == (f"error: {path}:6: encoder.image_size: [130, 64] is not a multiple of the pretrained model's "
                   "patch size 16 (use sides divisible by 16, e.g. [128, 64])\n")


def test_max_length_over_the_shipped_models_text_positions(tmp_path, capsys):
    text = PRETRAINED.format(name="synth-web-tiny-clip") + "  image_size: [128, 64]\n  max_length: 100\n"
    code, err, path = validate(tmp_path, capsys, text)
    assert code == 2
    assert err == (f"error: {path}:7: encoder.max_length: 100 exceeds the pretrained model's 40 text positions "
                   "(set encoder.max_length to at most 40)\n")


def test_random_encoder_image_size_names_the_key(tmp_path, capsys):
    text = (f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ninit: null\nencoder:\n  name: clip\n"
            "  pretrained: null\n  vision: {hidden: 32, layers: 1, heads: 2, patch_size: 16}\n  image_size: [130, 64]\n")
    code, err, path = validate(tmp_path, capsys, text)
    assert code == 2
    assert err == f"error: {path}:7: encoder.image_size: not a multiple of vision.patch_size 16 (got [130, 64])\n"


# --------------------------------------------------------------------------- the run


def test_run_fails_at_once_when_the_hub_cannot_be_reached(make_recipe, capsys, monkeypatch):
    import wsreid_clip.loading

    monkeypatch.setattr(wsreid_clip.loading, "hub_unreachable", REAL_HUB_UNREACHABLE)

    def unreachable(address, timeout=None, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)  # no name resolution, as offline
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "https://huggingface.co")
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    recipe = make_recipe("baselines/itc.yaml", extra={"encoder": {"name": "clip", "pretrained": "openai/clip-vit-base-patch16",
                                                                  "image_size": [128, 64]}})
    start = time.monotonic()
    assert main(["run", str(recipe)]) == 2
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert "Retrying" not in err and "Loading weights" not in err
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), 1) if "pretrained:" in text)
    assert err.splitlines()[-1] == (  # cited where encoder.pretrained is set
        f"error: {recipe}:{line}: clip encoder: pretrained weights 'openai/clip-vit-base-patch16' are not available "
        "offline: they are "
        "not in the Hugging Face cache and the hub cannot be reached (huggingface.co:443: Name or service not known) "
        "(on a connected machine run `hf download openai/clip-vit-base-patch16 --local-dir DIR`, copy DIR here and "
        "set encoder.pretrained: DIR, a directory with the saved CLIPModel and its tokenizer)")
    assert elapsed < 20, elapsed  # the hub client's five retries took about 30 s


def test_loading_pretrained_weights_prints_no_progress_bar(capfd):
    from transformers.utils import logging as hf_logging

    from wsreid.api import BuildContext
    from wsreid_clip import ClipEncoder

    params = ClipEncoder.Params(pretrained="synth-web-tiny-clip", embed_dim=128, image_size=(128, 64), max_length=40)
    capfd.readouterr()
    ClipEncoder(params, BuildContext())
    assert "Loading weights" not in capfd.readouterr().err
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()  # asking transformers for details shows it again
    try:
        ClipEncoder(params, BuildContext())
    finally:
        hf_logging.set_verbosity(verbosity)
    assert "Loading weights" in capfd.readouterr().err
