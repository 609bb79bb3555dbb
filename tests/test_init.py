"""Recipe key `init`: the encoder starts from another run's weights and tokenizer; an init
recipe is trained once and cached."""

from __future__ import annotations

import filecmp
import re
import shutil
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from wsreid.cli import main
from wsreid.recipe import load_recipe
from wsreid.recipe.yamlio import display_path
from wsreid.engine.run import Run


def test_init_recipe_is_trained_once_cached_and_loaded(make_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}}, name="pretrain.yaml")
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}, "init": {"recipe": "pretrain.yaml"}},
                         name="main.yaml")

    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "training the initial encoder once" in err
    assert "(as the file is written: -o options change the recipe that names it, not this one)" in err
    # the init recipe's own schedule warning (a 1-epoch warm-up in a 1-epoch run, as the
    # main recipe's) is shown when it is trained, naming its recipe file
    warmup = [line for line in err.splitlines() if "the learning rate never reaches train.lr" in line]
    assert len(warmup) == 2 and warmup[0].startswith(f"warning: {display_path(recipe)}:")
    assert warmup[1].startswith(f"warning: init: {display_path(tmp_path / 'pretrain.yaml')}:")
    cached = list((tmp_path / "cache" / "init").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("pretrain-") and (cached[0] / "metrics.json").exists()
    assert filecmp.dircmp(cached[0] / "tokenizer", tmp_path / "a" / "tokenizer").diff_files == []
    resolved = (tmp_path / "a" / "recipe.yaml").read_text()
    assert str(tmp_path / "pretrain.yaml") in resolved  # made absolute: the resolved recipe reruns anywhere
    stamp = (cached[0] / "metrics.json").stat().st_mtime_ns

    # a second run reuses the cache, and its encoder starts from the cached weights
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "b")]) == 0
    assert "training the initial encoder" not in capsys.readouterr().err
    assert (cached[0] / "metrics.json").stat().st_mtime_ns == stamp
    loaded = load_recipe(str(recipe), [])
    plugins = loaded.plugins
    from wsreid.engine.session import init_weights

    run = Run(loaded.recipe, plugins, tmp_path / "c", init_weights=init_weights(loaded.recipe.init, tmp_path / "c"))
    run.setup()
    weights = load_file(str(cached[0] / "checkpoints" / "epoch-0001" / "model.safetensors"))
    state = run.encoder.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in weights.items())

    # zero-shot of the recipe evaluates that initial encoder: the metrics of the cached run
    # itself (same data, its only epoch), without training anything
    def evaluate(*args):
        capsys.readouterr()
        assert main(["eval", *map(str, args)]) == 0
        return json.loads(capsys.readouterr().out)

    zero = evaluate("--zero-shot", "--recipe", recipe)
    assert zero["weights"].startswith("initial encoder of init ") and "pretrain.yaml" in zero["weights"]
    cached_run = evaluate(cached[0])
    assert {k: zero[k] for k in ("R1", "mAP")} == {k: cached_run[k] for k in ("R1", "mAP")}
    # with --data the relative init path still resolves against the recipe file, not the
    # working directory (here the data block is the recipe's own: the same numbers)
    crossed = evaluate("--zero-shot", "--recipe", recipe, "--data", recipe)
    assert {k: crossed[k] for k in ("R1", "mAP")} == {k: zero[k] for k in ("R1", "mAP")}
    assert "training the initial encoder" not in capsys.readouterr().err


def test_init_run_that_does_not_exist_is_a_clear_error(make_recipe, tmp_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {"init": {"recipe": None, "run": str(tmp_path / "nowhere")}})
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "init.run" in err and "nowhere" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_cache_key_covers_the_recipe_as_written_not_defaults_or_output_dir(tmp_path):
    """Trained encoders stay valid when a new option arrives with a default (its value is
    not in the written tree) and when only output_dir differs; any written change counts."""
    from wsreid.recipe import load_recipe
    from wsreid.engine.init import cache_key

    shipped = Path(__file__).resolve().parents[1] / "recipes" / "base" / "pretrain-tiny-clip-short.yaml"
    loaded = load_recipe(str(shipped), [])
    key = cache_key(loaded.tree)
    assert re.fullmatch(r"[0-9a-f]{12}", key), key
    assert cache_key({**loaded.tree, "output_dir": "elsewhere"}) == key
    moved = tmp_path / "copy.yaml"  # the same recipe from another place: same key
    moved.write_text(f"extends: {shipped}\noutput_dir: somewhere/else\n")
    assert cache_key(load_recipe(str(moved), []).tree) == key
    assert cache_key(load_recipe(str(shipped), ["train.epochs=3"]).tree) != key
    assert cache_key(load_recipe(str(shipped), ["train.lr=0.001"]).tree) != key


def _validate(recipe, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["validate", str(recipe)])
    return code, capsys.readouterr().err


def test_initial_run_whose_weights_cannot_load_is_refused_at_validate(make_recipe, tmp_path, capsys):
    """An init.run whose encoder has other sizes or another tokenizer is refused by
    validate, at the encoder parameter's line, naming the run's value; the run that fits
    trains from it."""
    source = tmp_path / "source"
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}}, name="source.yaml")
    assert main(["run", str(tmp_path / "source.yaml"), "--output-dir", str(source)]) == 0

    wider = make_recipe("baselines/itc.yaml", {"init": {"run": "source"},
                                               "encoder": {"vision": {"hidden": 64, "layers": 1, "heads": 2,
                                                                      "patch_size": 8}}}, name="wider.yaml")
    code, err = _validate(wider, capsys)
    line = next(i for i, text in enumerate(wider.read_text().splitlines(), 1) if "hidden: 64" in text)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {display_path(wider)}:{line}: encoder.vision.hidden does not fit the initial run "
                          "(init.run 'source'): 64, but the initial run's encoder has 32 (its weights have that "
                          "shape) (set encoder.vision.hidden: 32 as the initial run did)")
    # sizes the model gets alike (an MLP width of 4 x hidden, a shorter side) are no difference
    alike = make_recipe("baselines/itc.yaml", {"init": {"run": "source"}, "train": {"epochs": 1, "warmup_epochs": 0},
                                               "encoder": {"image_size": [32, 8], "text": {"hidden": 32, "layers": 1,
                                                           "heads": 2, "intermediate": 128}}}, name="alike.yaml")
    assert main(["run", str(alike), "--output-dir", str(tmp_path / "alike")]) == 0

    # the initial run read a pretrained model's tokenizer (its recorded recipe says so):
    # an encoder building its own vocabulary cannot take its token embedding
    pretrained = tmp_path / "pretrained-source"
    shutil.copytree(source, pretrained)
    recorded = (pretrained / "recipe.yaml").read_text()
    (pretrained / "recipe.yaml").write_text(recorded.replace("  pretrained: null\n", "  pretrained: some-clip\n", 1))
    shutil.rmtree(pretrained / "tokenizer")
    built = make_recipe("baselines/itc.yaml", {"init": {"run": "pretrained-source"}}, name="built.yaml")
    code, err = _validate(built, capsys)
    assert code == 2 and err.count("\n") == 1 and "encoder does not fit the initial run (init.run " \
        "'pretrained-source'): this encoder builds its own vocabulary from the captions, but the initial run's " \
        "token embedding rows belong to the tokenizer of some-clip (set encoder.pretrained: some-clip as the " \
        "initial run did" in err


def test_init_recipe_that_cannot_initialise_the_encoder_is_refused_before_training(make_recipe, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}}, name="pretrain.yaml")
    recipe = make_recipe("baselines/itc.yaml", {"init": {"recipe": "pretrain.yaml"}, "encoder": {"embed_dim": 16}},
                         name="main.yaml")
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "encoder.embed_dim does not fit the initial run (init.recipe 'pretrain.yaml'): " \
        "16, but the initial run's encoder has 32" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "a").exists()  # nothing trained, nothing written


def test_clip_initial_weights_check_compares_tokenizers_and_sizes():
    """Which initial encoders the clip encoder refuses (ParamsCheckError naming its key)."""
    import pytest

    from wsreid.errors import ParamsCheckError
    from wsreid_clip.encoder import ClipEncoder, ClipParams

    def refused(params, source):
        with pytest.raises(ParamsCheckError) as caught:
            ClipEncoder.check_initial_weights(params, source)
        return caught.value.key, caught.value.message

    built, hub = ClipParams(), ClipParams(pretrained="openai/clip-vit-base-patch16")
    bpe = ClipParams(pretrained="ViT-B-16.pt", tokenizer="bpe.txt.gz")
    assert refused(hub, built) == ("pretrained", "this encoder reads the tokenizer of openai/clip-vit-base-patch16, "
                                   "but the initial run's token embedding rows belong to the vocabulary it built from "
                                   "its captions (its tokenizer/ folder)")
    assert refused(ClipParams(tokenizer="build"), bpe)[0] == "tokenizer"
    assert "the BPE tokenizer of bpe.txt.gz" in refused(built, bpe)[1]
    last_merge = ClipParams(pretrained="ViT-B-16.pt", tokenizer="bpe.txt.gz", mask_token="last_merge")
    assert refused(last_merge, bpe) == ("mask_token", "last_merge, but the initial run's was added ('added' gives the "
                                        "token embedding one more row)")
    assert refused(ClipParams(max_length=40), built) == ("max_length", "40, but the initial run's encoder has 77 (its "
                                                          "weights have that shape)")
    assert refused(ClipParams(image_size=(512, 128)), built)[0] == "image_size"
    for fits in (ClipParams(vision={"intermediate": 3072}, image_size=(192, 384)), ClipParams(min_frequency=3),
                 ClipParams(text={"heads": 4})):  # heads split the same projections: the weights load
        ClipEncoder.check_initial_weights(fits, built)  # the same shapes: no error
    ClipEncoder.check_initial_weights(hub, ClipParams(pretrained="elsewhere/clip"))  # compared when loaded


def test_the_command_an_untrained_init_recipe_names_under_several_processes_trains_it(make_recipe, tmp_path,
                                                                                      monkeypatch, capsys):
    """Several processes do not pretrain: the hint's command trains the init recipe into
    the cache the run reads (it named a plain `wsreid run INIT`, into the init recipe's own
    output_dir, so following it gave the same error again)."""
    import shlex

    import pytest

    from wsreid.engine.session import initial_run
    from wsreid.errors import UserError

    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}}, name="pretrain.yaml")
    recipe = make_recipe("baselines/itc.yaml", {"init": {"recipe": "pretrain.yaml"}}, name="main.yaml")
    init = load_recipe(str(recipe)).recipe.init
    with pytest.raises(UserError) as caught:
        initial_run(init, world_size=2)
    message = str(caught.value)
    assert message.startswith(f"init: the encoder of {init.recipe} is not trained yet (train it once in a single "
                              "process into the cache this run reads: wsreid run ")
    argv = shlex.split(message.split("this run reads: ", 1)[1].rstrip(")"))
    assert argv[:2] == ["wsreid", "run"] and main(argv[1:]) == 0
    assert initial_run(init, world_size=2) == next((tmp_path / "cache" / "init").iterdir())
