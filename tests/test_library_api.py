"""wsreid used from Python (docs/library.md): the library entry points - load_recipe,
run_recipe, evaluate_target, ablation_study - refuse a caller's mistakes in one line
before any work, and what a caller builds in code (a plugin set, a mapping with Path
values, an override list) works as the same thing written in a file."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import RECIPES, TINY_OVERRIDES, plugin_module

from wsreid import hookimpl
from wsreid.api import Objective
from wsreid.engine.offline_eval import evaluate_target, resolve_target
from wsreid.engine.rundir import RunMode
from wsreid.engine.session import run_recipe
from wsreid.errors import DuplicateComponentError, PluginError, RecipeError, UserError
from wsreid.losses import itc_loss
from wsreid.pluginmanager import load_plugins
from wsreid.recipe import load_recipe

ITC = str(RECIPES / "baselines" / "itc.yaml")


class CodeItc(Objective):
    """ITC, registered from code (no module, no entry point)."""

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        return itc_loss(base.image, base.text)


class CodePlugin:
    @hookimpl
    def wsreid_register(self, registry):
        registry.add("objective", "code-itc", CodeItc)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synth_tiny_root):
    """One tiny 1-epoch ITC run, trained through the library."""
    out = tmp_path_factory.mktemp("lib") / "run"
    loaded = load_recipe(_tiny(out, synth_tiny_root))
    result = run_recipe(loaded)
    return result


def _tiny(out: Path, root: Path, **extra) -> dict:
    """A recipe mapping extending the shipped ITC recipe with the suite's tiny settings."""
    tree = {"extends": ITC, "output_dir": out, "init": None,
            "data": {"name": "synth-pedes", "size": "tiny", "root": root},
            **{k: dict(v) for k, v in TINY_OVERRIDES.items()}}
    tree["train"] = {**tree["train"], "epochs": 1, "warmup_epochs": 0}
    tree.update(extra)
    return tree


# ---------------------------------------------------------------- load_recipe


@pytest.mark.parametrize("source, says", [
    (None, "got NoneType None"),
    (3, "got int 3"),
])
def test_load_recipe_refuses_what_is_not_a_recipe(source, says):
    with pytest.raises(TypeError) as caught:
        load_recipe(source)
    assert str(caught.value) == f"a recipe is a file path (str or pathlib.Path) or a mapping of recipe keys, {says}"


@pytest.mark.parametrize("kwargs, says", [
    ({"overrides": "train.epochs=1"},
     "overrides takes a list of strings, got the single string 'train.epochs=1': write ['train.epochs=1']"),
    ({"overrides": ["train.epochs=1", 5]}, "overrides takes a list of strings, got 5 (int) in it"),
    ({"overrides": {"train.epochs": 1}}, "overrides takes a list of strings, got a mapping (dict) (overrides are "
                                         "'key=value' strings, e.g. ['train.epochs=1'])"),
    ({"disabled": "wsreid_dgia"},
     "disabled takes a list of strings, got the single string 'wsreid_dgia': write ['wsreid_dgia']"),
])
def test_a_single_string_for_a_list_is_refused(kwargs, says):
    """Before: the string was read character by character ('override -o t: expected
    dotted.key=value', 'no plugin named _, a, d, e, ... to disable')."""
    with pytest.raises(TypeError) as caught:
        load_recipe(ITC, **kwargs)
    assert str(caught.value) == says


def test_a_mapping_that_extends_a_file_is_blamed_for_its_own_keys():
    """Before: the error cited the line of train.epochs in the shipped base file."""
    with pytest.raises(RecipeError) as caught:
        load_recipe({"extends": ITC, "train": {"epochs": "x"}})
    assert str(caught.value).startswith("<recipe>: train.epochs: input should be a valid integer")


def test_path_values_in_a_mapping_are_paths(tmp_path):
    """Before: 'input should be a valid string (got PosixPath(...))'."""
    loaded = load_recipe({"extends": ITC, "output_dir": tmp_path / "run"})
    assert loaded.recipe.output_dir == loaded.resolved["output_dir"] == str(tmp_path / "run")


def test_a_typed_recipe_changed_after_loading_is_refused_by_run_recipe(tmp_path):
    """Before: the run trained 1 epoch and recorded train.epochs 8 in recipe.yaml (which
    --resume checks against)."""
    loaded = load_recipe(ITC, ["output_dir=" + str(tmp_path / "run")])
    assert loaded.changed_keys() == []
    loaded.recipe.train.epochs = 1
    loaded.recipe.objectives["itc"].temperature = 0.05
    assert loaded.changed_keys() == [("objectives.itc.temperature", 0.02, 0.05), ("train.epochs", 8, 1)]
    with pytest.raises(RecipeError) as caught:
        run_recipe(loaded)
    assert str(caught.value) == (
        f"{ITC}: the typed recipe was changed after load_recipe (objectives.itc.temperature: 0.02 -> 0.05, "
        "train.epochs: 8 -> 1) (pass the change to load_recipe as overrides, e.g. load_recipe(path, "
        "['objectives.itc.temperature=0.05', 'train.epochs=1']), so that it is validated with the whole recipe "
        "and recorded in the run's recipe.yaml)")
    assert not (tmp_path / "run").exists()


def test_a_plugin_set_built_in_code_runs(tmp_path, synth_tiny_root):
    """load_recipe(plugins=...) keeps the plugin set, so the recipe runs with a component
    registered in code: versions.json names it, and its loss is the run's only, positive,
    falling loss. Before: load_recipe(registry=...) was the documented route and
    run_recipe failed with "'NoneType' object has no attribute 'registry'"."""
    plugins = load_plugins(objects=[("code_plugin", CodePlugin())])
    tree = _tiny(tmp_path / "run", synth_tiny_root, objectives={"itc": None, "mine": {"name": "code-itc"}})
    loaded = load_recipe(tree, plugins=plugins)
    assert loaded.plugins is plugins
    expected = _seeded_draws()
    _seed_everything()
    result = run_recipe(loaded)
    # the code-registered objective was built (versions.json names its provider) and trained:
    # it is the only loss (itc removed), positive at every step, falling over the epoch
    components = json.loads((result.run_dir / "versions.json").read_text())["components"]
    assert [c for c in components if c["kind"] == "objective"] == [
        {"kind": "objective", "name": "code-itc", "provider": "code_plugin", "distribution": None, "version": None}]
    steps = list(csv.DictReader((result.run_dir / "logs" / "steps.csv").open()))
    assert [k for k in steps[0] if k.startswith("loss/")] == ["loss/mine", "loss/total"]
    assert len(steps) > 1 and all(float(r["loss/mine"]) > 0 and r["loss/mine"] == r["loss/total"] for r in steps)
    assert float(steps[-1]["loss/mine"]) < float(steps[0]["loss/mine"])
    assert json.loads((result.run_dir / "metrics.json").read_text())["test"] == result.metrics["test"]
    assert _draws() == expected  # the run seeded the generators for itself, then put the caller's back

    validated_only = load_recipe(tree, registry=plugins.registry)
    with pytest.raises(TypeError, match=r"^run_recipe: this recipe was validated against a bare registry"):
        run_recipe(validated_only, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_a_recipe_plugin_module_taking_a_shipped_name_is_an_error_naming_it(monkeypatch):
    """Before: 'objective itc is registered twice ... disable one with --disable-plugin
    standard', which would remove itc, sdm and identity."""
    plugin_module(monkeypatch, "my_itc_module", ("objective", "itc", CodeItc))
    with pytest.raises(DuplicateComponentError) as caught:
        load_recipe({"extends": ITC, "plugins": ["my_itc_module"]})
    assert str(caught.value) == (
        "plugin 'my_itc_module' registers objective 'itc', a name of the shipped plugin 'standard' (rename the "
        "component in that module (a recipe names it by this name); shipped names cannot be taken over)")


def test_a_plugin_module_named_like_an_installed_plugin_is_an_error_naming_both(monkeypatch):
    """A module 'baselines' (the entry-point name of the shipped baselines) was skipped
    without a word, and the recipe then failed with 'unknown objective'."""
    plugin_module(monkeypatch, "baselines", ("objective", "hot-itc", CodeItc))
    with pytest.raises(PluginError) as caught:
        load_plugins(["baselines"])
    assert str(caught.value) == (
        "plugin module 'baselines' (recipe 'plugins:') has the name of the installed plugin 'baselines' (module "
        "wsreid_baselines), so it would not be loaded (rename the module, e.g. my_baselines)")
    monkeypatch.delitem(sys.modules, "baselines")
    assert "dgia" in load_plugins(["dgia"]).providers  # an entry point's own name still names it
    # ... also when a module of that name that is no plugin can be imported (a data folder 'datasets' in the
    # working directory, another package 'clip'): the entry point is meant, as before
    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))
    assert load_plugins(["datasets"]).providers["datasets"] == ("wsreid", load_plugins().providers["datasets"][1])


def test_an_object_registered_under_an_installed_plugins_name_is_one_line():
    """Before: pluggy's ValueError with every registered plugin dumped over many lines."""
    with pytest.raises(PluginError) as caught:
        load_plugins(objects=[("standard", CodePlugin())])
    assert str(caught.value) == ("plugin name 'standard' is taken by the installed plugin 'standard' (module "
                                 "wsreid_standard) (register yours under another name)")


def _seed_everything() -> None:
    import random

    import numpy as np
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)


def _draws() -> tuple[float, float, float]:
    import random

    import numpy as np
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _seeded_draws() -> tuple[float, float, float]:
    _seed_everything()
    return _draws()


def test_library_calls_leave_the_callers_random_generators_where_they_were(trained_run):
    """run_recipe, evaluate_target and load_encoder seed torch, numpy and random for their
    own work (accelerate's set_seed); a notebook's next draws depended on which ran last."""
    from wsreid.retrieval import load_encoder

    expected = _seeded_draws()
    _seed_everything()
    load_encoder(trained_run.run_dir)
    evaluate_target(load_recipe(trained_run.run_dir / "recipe.yaml"), trained_run.run_dir)
    assert _draws() == expected


# ---------------------------------------------------------------- run_recipe


@pytest.mark.parametrize("loaded, says", [
    (ITC, "run_recipe takes the LoadedRecipe of load_recipe, got str"),
    ({"extends": ITC}, "run_recipe takes the LoadedRecipe of load_recipe, got dict"),
])
def test_run_recipe_refuses_what_is_not_a_loaded_recipe(loaded, says):
    with pytest.raises(TypeError) as caught:
        run_recipe(loaded)
    assert str(caught.value).startswith(says + " (load it first: loaded = wsreid.recipe.load_recipe(")


def test_run_modes_by_name():
    assert RunMode("RESUME") is RunMode.RESUME and RunMode("overwrite") is RunMode.OVERWRITE
    with pytest.raises(ValueError) as caught:
        RunMode("overwite")
    assert str(caught.value) == ("mode 'overwite' is not a run mode: use one of 'new', 'resume', 'overwrite' "
                                 "(or RunMode.NEW / RESUME / OVERWRITE)")


# ---------------------------------------------------------------- evaluate_target


def test_evaluate_a_run_directory_given_as_a_path(trained_run):
    target = resolve_target(trained_run.run_dir)  # a Path, keyword defaults
    assert target.recipe == str(trained_run.run_dir / "recipe.yaml") and target.run_dir == trained_run.run_dir
    assert target.weights.parent.parent.parent == trained_run.run_dir  # RUN/checkpoints/<selected>/model.safetensors
    loaded = load_recipe(target.recipe)
    by_target = evaluate_target(loaded, target)
    by_path = evaluate_target(loaded, str(trained_run.run_dir))
    assert by_target["R1"] == by_path["R1"] == trained_run.metrics["test"]["R1"]


@pytest.mark.parametrize("kwargs, says", [
    ({"ratios": [1.5]}, "ratios: 1.5 is outside [0, 1) (a ratio is a share of word tokens)"),
    ({"ratios": [-0.5]}, "ratios: -0.5 is outside [0, 1) (a ratio is a share of word tokens)"),
    ({"ratios": ["0.3"]}, "ratios: '0.3' is not a number (a ratio is a share of word tokens)"),
    ({"split": "validation"}, "split='validation' is not a split to evaluate on (use 'test' or 'val')"),
    ({"show": -1}, "show=-1, top_k=5: show needs a whole number >= 0 and top_k one >= 1 (e.g. show=8, top_k=5)"),
    ({"show": 2, "top_k": True}, "show=2, top_k=True: show needs a whole number >= 0 and top_k one >= 1 (e.g. "
                                 "show=8, top_k=5)"),
    # ignored without a word before (the command line refuses --top-k without --show)
    ({"top_k": 99, "figure": "/nonexistent/x.png"}, "top_k=99, figure='/nonexistent/x.png': the figure is drawn "
                                                    "only with show=N (pass show=N (the number of queries to draw), "
                                                    "or leave them out)"),
])
def test_evaluate_target_checks_its_arguments_before_building(trained_run, kwargs, says, monkeypatch):
    """Before: ratio 1.5 gave a row labelled 1.5, -0.5 the unmasked metrics, and a bad
    split an AttributeError after the dataset and encoder were built."""
    import wsreid.engine.offline_eval as offline_eval

    def not_built(*args, **kwargs):
        raise AssertionError("built before the arguments were checked")

    monkeypatch.setattr(offline_eval, "build_for_evaluation", not_built)
    loaded = load_recipe(str(trained_run.run_dir / "recipe.yaml"))
    with pytest.raises(UserError) as caught:
        evaluate_target(loaded, trained_run.run_dir, **kwargs)
    assert str(caught.value) == says


def test_evaluate_target_checks_the_figure_path_first(trained_run, tmp_path, monkeypatch):
    """Before: the evaluation ran, then the figure failed ('File exists')."""
    import wsreid.engine.offline_eval as offline_eval

    monkeypatch.setattr(offline_eval, "build_for_evaluation", lambda *a, **k: pytest.fail("built first"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    loaded = load_recipe(str(trained_run.run_dir / "recipe.yaml"))
    with pytest.raises(UserError) as caught:
        evaluate_target(loaded, trained_run.run_dir, show=2, figure=blocker / "f.png")
    assert str(caught.value) == f"figure={blocker / 'f.png'}: {blocker} is a file (name another path)"


def test_evaluate_target_refuses_a_target_of_another_type(trained_run):
    loaded = load_recipe(str(trained_run.run_dir / "recipe.yaml"))
    with pytest.raises(TypeError, match=r"^evaluate_target: target is an EvalTarget, a run directory or a "
                                        r"checkpoint path, got a int$"):
        evaluate_target(loaded, 3)
    with pytest.raises(TypeError) as caught:  # before: "'float' object is not iterable"
        evaluate_target(loaded, trained_run.run_dir, ratios=0.5)
    assert str(caught.value) == "evaluate_target: ratios takes a list of numbers, got 0.5: write [0.5]"


def test_an_empty_output_dir_is_refused_not_read_as_the_recipes_own(tmp_path):
    """run_recipe(loaded, "") trained into the recipe's output_dir (mode="overwrite" replaced
    the run there); the command line refuses --output-dir '' for that reason."""
    from wsreid.ablate import ablation_study

    loaded = load_recipe({"extends": ITC, "output_dir": tmp_path / "recipe-own"})
    with pytest.raises(UserError) as caught:
        run_recipe(loaded, "", mode="overwrite")
    assert str(caught.value) == ("output_dir '': an empty path (an unset variable?) would mean the recipe's own "
                                 "directory (name the directory, or pass None for the recipe's output_dir)")
    assert not (tmp_path / "recipe-own").exists()
    with pytest.raises(UserError, match=r"^output_dir '': an empty path \(an unset variable\?\) would mean the "
                                        r"study's own directory"):
        ablation_study(RECIPES / "ablations" / "headline.yaml", output_dir="", dry_run=True, log=lambda line: None)


def test_load_encoder_takes_the_plugin_set_of_a_run_with_components_written_in_code(tmp_path, synth_tiny_root):
    """A run trained with a component registered in code could be evaluated
    (evaluate_target's loaded recipe) but not searched: load_encoder had no plugins=."""
    from wsreid.retrieval import load_encoder

    plugins = load_plugins(objects=[("code_plugin", CodePlugin())])
    tree = _tiny(tmp_path / "run", synth_tiny_root, objectives={"itc": None, "mine": {"name": "code-itc"}})
    run_dir = run_recipe(load_recipe(tree, plugins=plugins)).run_dir
    with pytest.raises(RecipeError, match=r"unknown objective 'code-itc'"):
        load_encoder(run_dir)
    encoder = load_encoder(run_dir, plugins=plugins)
    features = encoder.encode_captions(["a man in a red coat"])
    assert features.shape == (1, 32) and abs(float(features.norm()) - 1.0) < 1e-5  # the tiny CLIP embeds in 32
    with pytest.raises(TypeError) as caught:  # before: read as the overrides 'k', '=', 'v'
        load_encoder(run_dir, overrides="train.lr=1", plugins=plugins)
    assert str(caught.value) == ("overrides takes a list of strings, got the single string 'train.lr=1': write "
                                 "['train.lr=1']")


# ---------------------------------------------------------------- ablation_study


def test_ablation_study_takes_lists(tmp_path):
    from wsreid.ablate import ablation_study

    study = RECIPES / "ablations" / "headline.yaml"
    with pytest.raises(TypeError) as caught:
        ablation_study(study, variants="ITC", dry_run=True, output_dir=tmp_path / "s", log=lambda line: None)
    assert str(caught.value) == "variants takes a list of strings, got the single string 'ITC': write ['ITC']"
    with pytest.raises(TypeError, match=r"^seeds takes a list of integers or a string '0,1', got \['0'\]$"):
        ablation_study(study, seeds=["0"], dry_run=True, output_dir=tmp_path / "s", log=lambda line: None)
    for kwargs, says in (({"seeds": 0}, "seeds takes a list of integers or a string '0,1', got 0: write [0]"),
                         ({"jobs": "2"}, "jobs takes a whole number (trainings at once), got '2' (str)"),
                         ({"study": {"base": "x.yaml"}}, "ablation_study takes the path of a study file, got a dict")):
        with pytest.raises(TypeError) as caught:
            ablation_study(**{"study": study, **kwargs}, dry_run=True, output_dir=tmp_path / "s", log=lambda line: None)
        assert str(caught.value) == says
    with pytest.raises(TypeError) as caught:  # before: "plugin module 'w' ... failed to import"
        load_plugins("wsreid_dgia")
    assert str(caught.value) == "modules takes a list of strings, got the single string 'wsreid_dgia': write ['wsreid_dgia']"
    report = ablation_study(study, seeds=[0], variants=["ITC (B)"], dry_run=True, output_dir=tmp_path / "s",
                            log=lambda line: None)
    assert report.dry_run and {o.run.seed for o in report.outcomes} >= {0}


def test_the_library_example_runs_as_documented(tmp_path, synth_tiny_root):
    """docs/library.md's script, run as its console block says, from a directory holding
    the shipped recipes (as the repository root does), prints what the block shows."""
    import os
    import subprocess

    from test_plugin_tutorial import output_contains, read_blocks

    from wsreid.data.synth.generate import SynthConfig

    blocks = read_blocks(RECIPES.parent / "docs" / "library.md")
    script = next(b for b in blocks if b.attrs.get("file") == "library_example.py")
    console = next(b for b in blocks if b.lang == "console")
    (tmp_path / "library_example.py").write_text(script.text)
    (tmp_path / "recipes").symlink_to(RECIPES, target_is_directory=True)
    cache = tmp_path / "cache" / "synth-pedes"
    cache.mkdir(parents=True)
    (cache / SynthConfig(size="tiny").cache_name()).symlink_to(synth_tiny_root, target_is_directory=True)
    env = {**os.environ, "WSREID_CACHE": str(tmp_path / "cache")}
    [(command, expected)] = console.commands
    done = subprocess.run(command.split(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for line in expected:
        assert output_contains(line, output), f"no {line!r} in:\n{output[-3000:]}"
    assert "warning:" not in output and "Traceback" not in output
    assert (tmp_path / "runs" / "library-itc" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "library-warm-itc" / "metrics.json").is_file()


# ---------------------------------------------------------------- searching your own images


def test_search_ranks_the_test_split_as_the_evaluation_does(trained_run):
    """load_encoder + search on the test split's captions and images give the run's test
    R@1: the same encoder, weights and features as the evaluation."""
    from wsreid.engine.offline_eval import target_encoder
    from wsreid.retrieval import load_encoder

    encoder = load_encoder(trained_run.run_dir)
    splits, _, _ = target_encoder(load_recipe(str(trained_run.run_dir / "recipe.yaml")),
                                  resolve_target(trained_run.run_dir))
    test = splits.test
    hits = encoder.search(test.captions, test.image_paths, top_k=3)
    assert [len(h) for h in hits] == [3] * len(test.captions)
    assert all(h[0].score >= h[1].score >= h[2].score and [x.rank for x in h] == [1, 2, 3] for h in hits)
    person = {Path(p): i for p, i in zip(test.image_paths, test.image_person_ids)}
    right = [person[h[0].path] == q for h, q in zip(hits, test.caption_person_ids)]
    assert 100.0 * sum(right) / len(right) == pytest.approx(trained_run.metrics["test"]["R1"])


def test_search_does_not_read_the_dataset(trained_run, tmp_path, monkeypatch):
    """The encoder is built alone: a run directory copied where its dataset is not (here:
    the dataset's builders fail if called) still searches, with the same features."""
    import shutil

    import wsreid.engine.components as components
    import wsreid.engine.offline_eval as offline_eval
    from wsreid.retrieval import load_encoder

    copied = tmp_path / "copied-run"
    shutil.copytree(trained_run.run_dir, copied)
    splits, _, _ = offline_eval.target_encoder(load_recipe(str(trained_run.run_dir / "recipe.yaml")),
                                               resolve_target(trained_run.run_dir))
    images = splits.test.image_paths[:5]
    expected = load_encoder(trained_run.run_dir).encode_images(images)
    monkeypatch.setattr(offline_eval, "build_for_evaluation", lambda *a, **k: pytest.fail("the dataset was built"))
    monkeypatch.setattr(components, "load_dataset", lambda *a, **k: pytest.fail("the dataset was loaded"))
    assert torch.equal(load_encoder(copied).encode_images(images), expected)


def test_search_reads_images_of_any_size_and_mode(trained_run, tmp_path):
    from PIL import Image

    from wsreid.retrieval import load_encoder

    paths = []
    for name, mode, size in (("big.jpg", "RGB", (300, 500)), ("grey.png", "L", (40, 90)), ("rgba.png", "RGBA", (64, 128))):
        Image.new(mode, size, color=120 if mode == "L" else (200, 30, 30, 255)[:len(mode)]).save(tmp_path / name)
        paths.append(tmp_path / name)
    encoder = load_encoder(trained_run.run_dir)
    features = encoder.encode_images(paths)
    assert features.shape == (3, encoder.encoder.embed_dim) and features.device.type == "cpu"
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    [hits] = encoder.search(["a person in a red coat"], paths, top_k=10)
    assert sorted(h.path for h in hits) == sorted(paths)  # top_k beyond the gallery: every image once
    assert all(-1.0 <= h.score <= 1.0 for h in hits)


def test_search_refuses_mistakes_before_encoding(trained_run, tmp_path):
    from wsreid.retrieval import load_encoder

    encoder = load_encoder(trained_run.run_dir)
    with pytest.raises(UserError) as caught:
        encoder.encode_images([tmp_path / "missing.jpg", tmp_path / "gone.png"])
    assert str(caught.value) == f"image {tmp_path / 'missing.jpg'} is not a file (and 1 more) (pass paths of existing image files)"
    with pytest.raises(TypeError, match=r"^pass a list of image paths, got the single path"):
        encoder.encode_images(str(tmp_path / "a.jpg"))
    with pytest.raises(TypeError, match=r"^pass a list of captions, got the single string 'a man'"):
        encoder.encode_captions("a man")
    with pytest.raises(UserError, match=r"^caption 1 \(''\) is not a non-empty string"):
        encoder.encode_captions(["a man", ""])


def test_caption_warnings_name_descriptions_the_encoder_does_not_read_whole(trained_run):
    """A description past the encoder's max_length loses its last words and one with words
    outside the vocabulary reads them as the unknown token: each is named, with counts;
    a description read whole gives no line."""
    from wsreid.retrieval import load_encoder

    encoder = load_encoder(trained_run.run_dir)
    limit = encoder.encoder.max_length
    long = " ".join(["a man in a red jacket ,"] * 12)  # 84 word tokens
    assert encoder.caption_warnings(["a man in a red jacket", long, "a man in a xyzzy qwerty"]) == [
        f"description 2 ('{long[:37]}...') is 86 tokens long with its start and end; the encoder reads {limit}, "
        f"so its last {86 - limit} are not read (put what matters first, or shorten it)",
        "description 3 ('a man in a xyzzy qwerty'): 2 of its 6 word tokens are unknown to the encoder's "
        "vocabulary, each read as the same unknown token (use the words of the training captions)"]
    # what the warning says: the cut description ranks as its first words do
    assert torch.equal(encoder.encode_captions([long]), encoder.encode_captions([" ".join(long.split()[:limit - 2])]))


# ---------------------------------------------------------------- wsreid search


def test_search_command_prints_what_the_library_ranks(trained_run, capsys):
    import json

    from wsreid.cli import main
    from wsreid.engine.offline_eval import target_encoder
    from wsreid.retrieval import image_files, load_encoder

    splits, _, _ = target_encoder(load_recipe(str(trained_run.run_dir / "recipe.yaml")),
                                  resolve_target(trained_run.run_dir))
    folder = Path(splits.test.image_paths[0]).parent
    queries = ["a man in a red jacket", "a woman with a black bag"]
    capsys.readouterr()
    assert main(["search", str(trained_run.run_dir), *queries, "--images", str(folder), "--top-k", "2",
                 "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)["results"]
    expected = load_encoder(trained_run.run_dir).search(queries, image_files([folder]), top_k=2)
    assert [r["query"] for r in printed] == queries
    assert [[(h["rank"], h["path"]) for h in r["hits"]] for r in printed] == \
        [[(h.rank, str(h.path)) for h in hits] for hits in expected]
    assert [[h["score"] for h in r["hits"]] for r in printed] == \
        [[pytest.approx(h.score, abs=1e-6) for h in hits] for hits in expected]

    assert main(["search", str(trained_run.run_dir), queries[0], "--images", str(folder), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    n = len(image_files([folder]))
    assert lines[0] == f"{n} images; encoder {trained_run.run_dir / 'checkpoints' / 'best' / 'model.safetensors'}"
    assert lines[2] == queries[0] and lines[3].startswith("    1  ") and lines[3].endswith(str(expected[0][0].path))
    assert capsys.readouterr().err == ""

    assert main(["search", str(trained_run.run_dir), "a man in a xyzzy coat", "--images", str(folder)]) == 0
    assert capsys.readouterr().err == ("warning: description 1 ('a man in a xyzzy coat'): 1 of its 6 word tokens is "
                                       "unknown to the encoder's vocabulary, each read as the same unknown token (use "
                                       "the words of the training captions)\n")


def test_search_command_leaves_out_files_that_do_not_decode(trained_run, tmp_path, capsys):
    """A folder of photos with a broken file (cut short by a copy, or not an image at all)
    is searched without it: one warning line per file, the ranking of the others as the
    library gives it, exit 0; a folder where nothing decodes is one error line, exit 2."""
    import shutil

    from wsreid.cli import main
    from wsreid.engine.offline_eval import target_encoder
    from wsreid.retrieval import load_encoder

    splits, _, _ = target_encoder(load_recipe(str(trained_run.run_dir / "recipe.yaml")),
                                  resolve_target(trained_run.run_dir))
    folder = tmp_path / "photos"
    folder.mkdir()
    good = []
    for k, source in enumerate(splits.test.image_paths[:4]):
        good.append(folder / f"p{k}.png")
        shutil.copy(source, good[-1])
    data = Path(splits.test.image_paths[4]).read_bytes()
    (folder / "p2_cut.png").write_bytes(data[:len(data) // 2])
    (folder / "p3_notes.jpg").write_text("not an image")
    query = "a man in a red jacket"
    capsys.readouterr()
    assert main(["search", str(trained_run.run_dir), query, "--images", str(folder), "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: image {folder / 'p2_cut.png'} cannot be decoded (")
    assert warnings[1].startswith(f"warning: image {folder / 'p3_notes.jpg'} cannot be decoded (")
    assert all(w.endswith("(replace the file with an intact copy, or leave it out); searched without it")
               for w in warnings)
    lines = captured.out.splitlines()
    assert lines[0].startswith("4 images (2 unreadable files left out); encoder ")
    [expected] = load_encoder(trained_run.run_dir).search([query], good, top_k=3)
    assert [line.split()[-1] for line in lines[3:6]] == [str(h.path) for h in expected]

    for bad in good:
        bad.write_text("no image either")
    assert main(["search", str(trained_run.run_dir), query, "--images", str(folder)]) == 2
    first = folder / "p0.png"
    assert capsys.readouterr().err == (
        f"error: none of the 6 image files can be read as an image; the first: image {first} cannot be decoded "
        f"(UnidentifiedImageError: cannot identify image file '{first}') (replace the file with an intact copy, or "
        "leave it out)\n")


@pytest.mark.parametrize("args, says", [
    (["--images", "MISSING"], "error: {tmp}/MISSING: no such file or folder (name image files or folders of images)"),
    (["--images", "EMPTY"], "error: {tmp}/EMPTY: no image files in this folder (names ending in .jpg, .jpeg, .png, "
                            ".bmp, .webp, .gif, .tif, .tiff) (name a folder of images, or image files)"),
    (["--images", "EMPTY", "--top-k", "0"], "error: --top-k 0: needs K >= 1 (e.g. --top-k 5)"),
])
def test_search_command_refuses_mistakes_before_building_the_encoder(trained_run, tmp_path, capsys, monkeypatch,
                                                                     args, says):
    import wsreid.retrieval as retrieval
    from wsreid.cli import main

    monkeypatch.setattr(retrieval, "load_encoder", lambda *a, **k: pytest.fail("the encoder was built first"))
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "EMPTY" / "notes.txt").write_text("no image here")
    args = [a.replace("MISSING", str(tmp_path / "MISSING")).replace("EMPTY", str(tmp_path / "EMPTY")) for a in args]
    assert main(["search", str(trained_run.run_dir), "a man", *args]) == 2
    assert capsys.readouterr().err == says.format(tmp=tmp_path) + "\n"
    assert main(["search", str(trained_run.run_dir), " ", "--images", str(tmp_path)]) == 2
    assert capsys.readouterr().err == 'error: description 1 is empty (quote each description: "a man in a red jacket")\n'


def test_drawing_a_runs_curves_or_a_studys_chart_leaves_the_callers_matplotlib_backend(tmp_path):
    """A notebook's inline plots stopped showing after the first run: plot_curves and
    write_chart switched the whole process to Agg (matplotlib.use) and imported pyplot."""
    import subprocess

    script = f"""
import sys, types
from pathlib import Path
import matplotlib
matplotlib.use("svg")
from wsreid.engine.logs import RunLogger, plot_curves
from wsreid.ablate_table import write_chart
run = Path({str(tmp_path)!r})
logger = RunLogger(run)
for epoch in (1, 2):
    logger.epoch(epoch, {{"loss/itc": 1.0 / epoch, "val/R1": 10.0 * epoch}})
logger.close()
plot_curves(run)
study = types.SimpleNamespace(plot_metrics=["R1"], metrics=["R1"], title="t")
row = types.SimpleNamespace(label="itc", mean={{"R1": 10.0}}, std={{"R1": 1.0}}, weakly_supervised=True)
write_chart(run / "chart.png", types.SimpleNamespace(study=study, path=run / "s.yaml"), [row])
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "False"]
    for png in (tmp_path / "curves.png", tmp_path / "chart.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plugin_warning_is_printed_once_per_process_not_once_per_load(capsys):
    """A script calling load_recipe again (or a study, once per run) printed every broken
    plugin's warning at every load."""
    load_plugins(disabled=["no-such-plugin-xyz"], use_env=False)
    load_plugins(disabled=["no-such-plugin-xyz"], use_env=False)
    err = capsys.readouterr().err
    assert err == ("warning: no plugin named no-such-plugin-xyz to disable (use an entry-point or distribution name "
                   "shown by 'wsreid plugins')\n")
