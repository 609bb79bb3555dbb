"""Recipe key `init`: the encoder starts from another run's weights and tokenizer; an init
recipe is trained once and cached."""

from __future__ import annotations

import filecmp
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
    assert len(key) == 12 and int(key, 16) >= 0
    assert cache_key({**loaded.tree, "output_dir": "elsewhere"}) == key
    moved = tmp_path / "copy.yaml"  # the same recipe from another place: same key
    moved.write_text(f"extends: {shipped}\noutput_dir: somewhere/else\n")
    assert cache_key(load_recipe(str(moved), []).tree) == key
    assert cache_key(load_recipe(str(shipped), ["train.epochs=3"]).tree) != key
    assert cache_key(load_recipe(str(shipped), ["train.lr=0.001"]).tree) != key
