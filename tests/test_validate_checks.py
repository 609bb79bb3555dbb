"""Mistakes that ``wsreid validate`` finds before any run starts: each is one line citing
the recipe file and line, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from wsreid import hookimpl
from wsreid.api import Objective, Params
from wsreid.cli import main
from wsreid.engine import checkpoint as ckpt
from wsreid.errors import PluginError
from wsreid.pluginmanager import load_plugins
from wsreid.recipe import load_recipe
from wsreid.recipe.yamlio import display_path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def validate(tmp_path: Path, capsys, text: str, name: str = "recipe.yaml") -> tuple[int, str, Path]:
    path = tmp_path / name
    path.write_text(text)
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.err, path


def refused(tmp_path, capsys, text: str, name: str = "recipe.yaml") -> tuple[str, Path]:
    code, err, path = validate(tmp_path, capsys, text, name)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: "):].rstrip("\n"), path


DGIA = f"extends: {RECIPES / 'dgia.yaml'}\n"


# --------------------------------------------------------------------------- names inside the recipe


def test_objective_relation_naming_no_association(tmp_path, capsys):
    message, path = refused(tmp_path, capsys, DGIA + "objectives:\n  sdm_global: {name: sdm, relation: gsrc_typo}\n")
    assert message == (f"{path}:3: objectives.sdm_global.relation: no association is labelled 'gsrc_typo' "
                       "(did you mean 'gsrc'?)")


def test_objective_relation_without_any_association(tmp_path, capsys):
    text = (f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\n"
            "objectives:\n  sdm:\n    name: sdm\n    relation: lrc\n")
    message, path = refused(tmp_path, capsys, text)
    assert message == (f"{path}:5: objectives.sdm.relation: no association is labelled 'lrc' (the recipe has no "
                       "association; add one under local_associations or global_associations)")


def test_association_view_the_pair_construction_does_not_produce(tmp_path, capsys):
    text = DGIA + "pair_construction: null\n"  # back to the default, 'identity' (view 'base' only)
    message, path = refused(tmp_path, capsys, text)
    lines = (RECIPES / "dgia.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith("view: asymmetric"))
    assert message == (f"{display_path(RECIPES / 'dgia.yaml')}:{line}: local_associations.lrc_asymmetric.view: pair construction "
                       "'identity' produces no view 'asymmetric' (its views: base; 'asymmetric' comes from "
                       "pair_construction 'iasc' or 'recorded-views')")


def test_objective_view_the_pair_construction_does_not_produce(tmp_path, capsys):
    text = DGIA + "objectives:\n  itc: {name: itc, view: masked}\n"
    message, path = refused(tmp_path, capsys, text)
    assert message == (f"{path}:3: objectives.itc.view: pair construction 'iasc' produces no view 'masked' "
                       "(its views: base, asymmetric)")


# --------------------------------------------------------------------------- null that deletes nothing


@pytest.mark.parametrize(("override", "message"), [
    ("objectives.sdm_asymetric=null", "objectives.sdm_asymetric: no objective is labelled 'sdm_asymetric', nothing "
     "to remove (did you mean 'sdm_asymmetric'?)"),
    ("local_associations.lrcc=null", "local_associations.lrcc: no local association is labelled 'lrcc', nothing to "
     "remove (did you mean 'lrc'?)"),
    ("trian.epochs=null", "trian: unknown key 'trian', nothing to remove (did you mean 'train'?)"),
    ("global_asociations.gsrc=null", "global_asociations: unknown key 'global_asociations', nothing to remove (did "
     "you mean 'global_associations' or 'local_associations'?)"),
    ("local_associations.lrc.threshold_imag=null", "local_associations.lrc.threshold_imag: unknown key "
     "'threshold_imag', nothing to remove (did you mean 'threshold_image' or 'threshold_text' or "
     "'threshold_percentile'?)"),
    ("encoder.vision.hiden=null", "encoder.vision.hiden: unknown key 'hiden', nothing to remove (did you mean "
     "'hidden'?)"),
])
def test_a_null_override_that_deletes_nothing_must_name_a_possible_key(capsys, override, message):
    """A misspelled deletion used to do nothing, silently: an ablation row 'without X'
    trained the full recipe. A deletion of a key the recipe does not set is still fine
    where the key is a valid one (the default applies)."""
    assert main(["validate", str(RECIPES / "dgia.yaml"), "-o", override]) == 2
    assert capsys.readouterr().err == f"error: override -o {override}: {message}\n"
    for fine in ("objectives.sdm_asymmetric=null", "train.epochs=null", "init=null", "encoder.vision.hidden=null"):
        assert main(["validate", str(RECIPES / "dgia.yaml"), "-o", fine]) == 0, capsys.readouterr().err


def test_a_null_in_an_extending_file_that_deletes_nothing_is_refused_at_its_line(tmp_path, capsys):
    message, path = refused(tmp_path, capsys, DGIA + "objectives:\n  itc: {weight: 1.0}\n  sdm_asymetric: null\n")
    assert message == (f"{path}:4: objectives.sdm_asymetric: no objective is labelled 'sdm_asymetric', nothing to "
                       "remove (did you mean 'sdm_asymmetric'?)")
    # set again by a later layer: the deletion is not what the recipe ends with
    assert main(["validate", str(path), "-o", "objectives.sdm_asymetric={name: itc}"]) == 0, capsys.readouterr().err
    # a parameter the component does not have
    message, path = refused(tmp_path, capsys, DGIA + "local_associations:\n  lrc: {k: null}\n")
    assert message == (f"{path}:3: local_associations.lrc.k: unknown key 'k', nothing to remove (valid keys here: "
                       "threshold_image, threshold_text, relation_weight, modalities, view, threshold_percentile, name)")


def test_an_objective_on_a_removed_association_is_told_what_removed_it(tmp_path, capsys):
    """It said "did you mean 'gsrc'?" - another association, the wrong fix for an
    ablation row that removes LRC and forgets the objective on it."""
    line = next(n for n, text in enumerate((RECIPES / "dgia.yaml").read_text().splitlines(), 1)
                if text.strip().startswith("sdm_local:"))
    assert main(["validate", str(RECIPES / "dgia.yaml"), "-o", "local_associations.lrc=null"]) == 2
    assert capsys.readouterr().err == (
        f"error: {display_path(RECIPES / 'dgia.yaml')}:{line}: objectives.sdm_local.relation: no association is "
        "labelled 'lrc': override -o local_associations.lrc=null removed it (remove objectives.sdm_local too (e.g. "
        "objectives.sdm_local: null), or keep the association)\n")
    message, path = refused(tmp_path, capsys, DGIA + "local_associations:\n  lrc: null\n")
    assert message.endswith(f"objectives.sdm_local.relation: no association is labelled 'lrc': {path}:3 removed it "
                            "(remove objectives.sdm_local too (e.g. objectives.sdm_local: null), or keep the association)")


def test_shipped_pair_constructions_declare_their_views():
    registry = load_plugins(distributions=["wsreid"], use_env=False).registry
    views = {e.name: e.cls.view_names for e in registry.entries("pair_construction")}
    assert views == {"identity": ("base",), "iasc": ("base", "asymmetric"),
                     "recorded-views": ("base", "asymmetric")}


# --------------------------------------------------------------------------- files and folders

CUHK = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ndata:\n  name: cuhk-pedes\n  root: {{root}}\n"


def test_data_root_that_does_not_exist(tmp_path, capsys):
    message, path = refused(tmp_path, capsys, CUHK.format(root=tmp_path / "CUHK-PEDES"))
    assert message == (f"{path}:4: data.root: folder {tmp_path / 'CUHK-PEDES'} does not exist "
                       "(set it to the cuhk-pedes folder holding reid_raw.json and imgs/)")


def test_data_root_without_its_annotation_file(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    message, path = refused(tmp_path, capsys, CUHK.format(root=tmp_path / "empty"))
    assert message == (f"{path}:4: data.root: {tmp_path / 'empty'} has no reid_raw.json "
                       "(set it to the cuhk-pedes folder holding reid_raw.json and imgs/)")


def test_data_root_at_the_parent_folder_suggests_the_dataset_folder(tmp_path, capsys):
    (tmp_path / "data" / "CUHK-PEDES").mkdir(parents=True)
    (tmp_path / "data" / "CUHK-PEDES" / "reid_raw.json").write_text("[]")
    message, path = refused(tmp_path, capsys, CUHK.format(root=tmp_path / "data"))
    assert message == (f"{path}:4: data.root: {tmp_path / 'data'} has no reid_raw.json (did you mean the dataset "
                       f"folder inside it, '{(tmp_path / 'data' / 'CUHK-PEDES').as_posix()}' (it holds reid_raw.json)?)")


def test_data_root_of_another_format_names_that_dataset(tmp_path, capsys):
    (tmp_path / "RSTPReid").mkdir()
    (tmp_path / "RSTPReid" / "data_captions.json").write_text("[]")
    message, path = refused(tmp_path, capsys, CUHK.format(root=tmp_path / "RSTPReid"))
    assert message == (f"{path}:4: data.root: {tmp_path / 'RSTPReid'} has no reid_raw.json (it holds "
                       "data_captions.json (the rstpreid format): use the dataset 'rstpreid' (data.name: rstpreid))")


def test_relative_data_root_is_checked_where_the_run_will_look_for_it(tmp_path, capsys, monkeypatch):
    """One resolution for validate and run: a relative ``data.root`` is relative to the
    recipe file that names it (here in another directory than the working one), one given
    with ``-o`` to the working directory."""
    dataset = tmp_path / "data" / "CUHK-PEDES"
    dataset.mkdir(parents=True)
    (dataset / "reid_raw.json").write_text("[]")
    (tmp_path / "recipes").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err, path = validate(tmp_path, capsys, CUHK.format(root="../data/CUHK-PEDES"), name="recipes/r.yaml")
    assert (code, err) == (0, "")
    loaded = load_recipe(path)
    assert loaded.recipe.data.root == str(dataset) == loaded.resolved["data"]["root"]
    # relative to the working directory it would exist, relative to the recipe it does not
    (elsewhere / "data" / "CUHK-PEDES").mkdir(parents=True)
    (elsewhere / "data" / "CUHK-PEDES" / "reid_raw.json").write_text("[]")
    message, path = refused(tmp_path, capsys, CUHK.format(root="data/CUHK-PEDES"), name="recipes/r.yaml")
    assert message == (f"{path}:4: data.root: folder {tmp_path / 'recipes' / 'data' / 'CUHK-PEDES'} does not exist "
                       "(set it to the cuhk-pedes folder holding reid_raw.json and imgs/)")
    # an override is relative to the working directory
    assert main(["validate", str(path), "-o", "data.root=data/CUHK-PEDES"]) == 0
    assert load_recipe(path, ["data.root=data/CUHK-PEDES"]).recipe.data.root == str(elsewhere / "data" / "CUHK-PEDES")


def test_synth_pedes_root_that_does_not_exist_yet_is_fine(tmp_path, capsys):
    text = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ndata:\n  root: {tmp_path / 'generated-here'}\n"
    code, err, _ = validate(tmp_path, capsys, text)
    assert (code, err) == (0, "")
    (tmp_path / "a-file").write_text("")
    message, path = refused(tmp_path, capsys, text.replace("generated-here", "a-file"))
    assert message == (f"{path}:3: data.root: {tmp_path / 'a-file'} is a file, not a folder "
                       "(name a new or empty folder, or one written by synth-pedes)")


PRETRAINED = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ninit: null\nencoder:\n  name: clip\n  pretrained: {{name}}\n"


def test_encoder_pretrained_folder_that_does_not_exist(tmp_path, capsys):
    message, path = refused(tmp_path, capsys, PRETRAINED.format(name="./weights/clip-vit-b16"))
    assert message == (f"{path}:5: encoder.pretrained: model folder ./weights/clip-vit-b16 does not exist (name a "
                       "folder holding a saved CLIPModel and its tokenizer, an OpenAI checkpoint file, or a hub "
                       "name such as openai/clip-vit-base-patch16)")


def test_encoder_pretrained_weights_file_or_bpe_file_that_does_not_exist(tmp_path, capsys):
    message, path = refused(tmp_path, capsys, PRETRAINED.format(name="./weights/ViT-B-16.pt"))
    assert message == (f"{path}:5: encoder.pretrained: weights file ./weights/ViT-B-16.pt does not exist (name "
                       "OpenAI's ViT-B-16.pt (or a fork's state-dict file), or a model folder)")
    (tmp_path / "ViT-B-16.pt").write_bytes(b"")  # existence is checked here; the content when the encoder is built
    text = PRETRAINED.format(name=tmp_path / "ViT-B-16.pt") + "  tokenizer: ./bpe_simple_vocab_16e6.txt.gz\n"
    message, path = refused(tmp_path, capsys, text)
    assert message == (f"{path}:6: encoder.tokenizer: BPE file ./bpe_simple_vocab_16e6.txt.gz does not exist (name "
                       "OpenAI's bpe_simple_vocab_16e6.txt.gz (shipped with the CLIP, IRRA and DGCMIA repositories))")


def test_encoder_pretrained_hub_name_or_existing_folder_is_fine(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("wsreid_clip.loading.hub_unreachable", lambda timeout=None: None)  # no network in tests
    code, err, _ = validate(tmp_path, capsys, PRETRAINED.format(name="openai/clip-vit-base-patch16"))
    assert (code, err) == (0, "")
    (tmp_path / "saved").mkdir()
    # a folder without a saved model is refused at validation (the run refused it when building the encoder)
    message, path = refused(tmp_path, capsys, PRETRAINED.format(name=tmp_path / "saved"))
    assert f"encoder.pretrained: model folder {tmp_path / 'saved'} holds no saved CLIPModel (config.json and " \
           "model.safetensors or pytorch_model.bin)" in message
    (tmp_path / "saved" / "config.json").write_text("{}")
    (tmp_path / "saved" / "model.safetensors").write_bytes(b"")  # names only: the weights are not read at validation
    (tmp_path / "saved" / "tokenizer.json").write_text("{}")  # a folder without a tokenizer is refused
    code, err, _ = validate(tmp_path, capsys, PRETRAINED.format(name=tmp_path / "saved"))
    assert (code, err) == (0, "")


def test_init_recipe_or_run_that_does_not_exist(tmp_path, capsys):
    base = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\ninit:\n"
    message, path = refused(tmp_path, capsys, base + "  recipe: pretrain.yaml\n")
    assert message == (f"{path}:3: init.recipe: recipe file 'pretrain.yaml' not found (looked for "
                       f"{tmp_path / 'pretrain.yaml'}) (the path is relative to the file that names it)")
    message, path = refused(tmp_path, capsys, base + "  recipe: null\n  run: runs/old\n")
    assert message == (f"{path}:4: init.run: 'runs/old' does not exist (looked for {tmp_path / 'runs/old'}) "
                       "(name a run directory written by 'wsreid run'; the path is relative to the file that names it)")
    (tmp_path / "runs" / "old").mkdir(parents=True)
    message, path = refused(tmp_path, capsys, base + "  recipe: null\n  run: runs/old\n")
    assert "init.run: 'runs/old' is not a wsreid run directory (no recipe.yaml)" in message
    (tmp_path / "runs" / "old" / "recipe.yaml").write_text("")
    # a run without a checkpoint (not trained, or stopped before its first) was refused only by `wsreid run`
    message, path = refused(tmp_path, capsys, base + "  recipe: null\n  run: runs/old\n")
    assert message == (f"{path}:4: init.run: 'runs/old' holds no complete checkpoint yet (looked in "
                       f"{tmp_path / 'runs/old/checkpoints'}) (train it first (a run writes a checkpoint at each "
                       "train.checkpoint_every epochs), or name another run)")
    (tmp_path / "runs" / "old" / "checkpoints" / "epoch-0001").mkdir(parents=True)
    for name in ckpt.FILES:  # names only: nothing is read at validation
        (tmp_path / "runs" / "old" / "checkpoints" / "epoch-0001" / name).write_bytes(b"")
    code, err, _ = validate(tmp_path, capsys, base + "  recipe: null\n  run: runs/old\n")
    assert (code, err) == (0, "")


@pytest.mark.parametrize("override", ["train.lr=.inf", "objectives.itc.weight=.inf", "train.warmup_epochs=.nan",
                                      "pair_construction.mask_ratio=.nan"])
def test_infinite_or_nan_numbers_are_refused_before_training(override, capsys):
    """YAML reads .inf and .nan as floats; no recipe number may be one (a run at lr .inf
    trains until its loss is NaN)."""
    assert main(["validate", str(RECIPES / "dgia.yaml"), "-o", override]) == 2
    err = capsys.readouterr().err
    key, value = override.split("=")
    assert err == f"error: override -o {override}: {key}: input should be a finite number (got {value[1:]})\n"


def test_init_recipes_that_form_a_cycle_or_do_not_load(tmp_path, capsys):
    """An init recipe is trained before the run when its encoder is not cached: one that
    starts (directly or through its own init) from the recipe naming it would train
    forever, and one that is no recipe would fail only then - both are refused here."""
    base = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\n"
    (tmp_path / "b.yaml").write_text(base + "init: {recipe: recipe.yaml}\n")
    message, _ = refused(tmp_path, capsys, base + "init: {recipe: b.yaml}\n")
    assert "init.recipe: 'b.yaml' starts a cycle of initial encoders (b.yaml -> recipe.yaml -> b.yaml)" in message
    message, path = refused(tmp_path, capsys, base + "init: {recipe: recipe.yaml}\n")
    assert message.startswith(f"{path}:2: init.recipe: 'recipe.yaml' starts a cycle of initial encoders "
                              "(recipe.yaml -> recipe.yaml)")
    (tmp_path / "study.yaml").write_text(f"base: {RECIPES / 'dgia.yaml'}\nvariants: {{B: {{}}}}\n")
    message, path = refused(tmp_path, capsys, base + "init: {recipe: study.yaml}\n")
    assert message.startswith(f"{path}:2: init.recipe 'study.yaml' does not load: ") and "this looks like an ablation study, not a recipe" in message
    (tmp_path / "pretrain.yaml").write_text(base)
    code, err, _ = validate(tmp_path, capsys, base + "init: {recipe: pretrain.yaml}\n")
    assert (code, err) == (0, "")


# --------------------------------------------------------------------------- plugins


class FiveParams(Params):
    k: int = Field("five", ge=1, description="neighbours")


class FiveLoss(Objective):
    """An objective whose default does not validate."""

    Params = FiveParams


class NestedParams(Params):
    inner: FiveParams = Field(default_factory=FiveParams.model_construct, description="nested")


class NestedLoss(Objective):
    Params = NestedParams


class RangeParams(Params):
    margin: float = Field(-0.2, ge=0, description="margin")


class RangeLoss(Objective):
    Params = RangeParams


def plugin_registering(cls):
    class Plugin:
        @staticmethod
        @hookimpl
        def wsreid_register(registry):
            registry.add("objective", "bad", cls)

    return Plugin


@pytest.mark.parametrize("cls, problem", [
    (FiveLoss, "the default 'five' of parameter 'k' is invalid: Input should be a valid integer, unable to parse "
               "string as an integer"),
    (RangeLoss, "the default -0.2 of parameter 'margin' is invalid: Input should be greater than or equal to 0"),
    (NestedLoss, "the default 'five' of parameter 'inner.k' is invalid: Input should be a valid integer, unable "
                 "to parse string as an integer"),
])
def test_params_default_that_does_not_validate_is_refused_at_registration(cls, problem):
    with pytest.raises(PluginError) as info:
        load_plugins(entry_points=False, objects=[("badplugin", plugin_registering(cls))])
    assert str(info.value) == (
        f"plugin 'badplugin': objective 'bad' ({__name__}.{cls.__qualname__}): {problem} "
        "(fix the default in its Params model; every default must satisfy its own field)")


def test_params_default_check_accepts_the_shipped_components():
    from wsreid.registry import invalid_default

    registry = load_plugins(distributions=["wsreid"], use_env=False).registry
    assert [(e.kind, e.name) for e in registry.entries() if invalid_default(e.params_model)] == []


def test_recipe_plugin_with_an_invalid_default_is_refused_by_validate(tmp_path, capsys, monkeypatch):
    (tmp_path / "five_plugin.py").write_text(
        "from pydantic import Field\n"
        "from wsreid import hookimpl\n"
        "from wsreid.api import Objective, Params\n\n\n"
        "class FiveLoss(Objective):\n"
        "    class Params(Params):\n"
        "        k: int = Field(\"five\", description=\"neighbours\")\n\n\n"
        "@hookimpl\n"
        "def wsreid_register(registry):\n"
        "    registry.add(\"objective\", \"five\", FiveLoss)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message, _ = refused(tmp_path, capsys, f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\nplugins: [five_plugin]\n")
    assert message == ("plugin 'five_plugin': objective 'five' (five_plugin.FiveLoss): the default 'five' of parameter "
                       "'k' is invalid: Input should be a valid integer, unable to parse string as an integer (fix the "
                       "default in its Params model; every default must satisfy its own field)")


def test_a_misspelt_required_section_is_named_as_the_typo(tmp_path, capsys):
    """`objective:` for `objectives:` was reported as 'required key objectives is missing'
    at the file, without a line and without the key actually written."""
    message, path = refused(tmp_path, capsys, DGIA + "objectives: null\nobjective:\n  itc: {name: itc}\n")
    assert message == f"{display_path(path)}:3: objective: unknown key 'objective' (did you mean 'objectives'?)"


def test_a_short_fixed_length_list_says_how_many_values_it_needs(tmp_path, capsys):
    """image_size: [128] was 'encoder.image_size.1: required key 1 is missing (add it)'."""
    message, path = refused(tmp_path, capsys, DGIA + "encoder:\n  image_size: [128]\n")
    assert message == (f"{display_path(path)}:3: encoder.image_size: needs 2 values, got 1 ([128]) "
                       "(input image [height, width] in pixels)")


def test_a_check_across_keys_points_at_the_line_of_the_key_it_names(tmp_path, capsys):
    """A check of the whole recipe (batch_size 1) had the file but no line."""
    message, path = refused(tmp_path, capsys, DGIA + "train:\n  batch_size: 1\n")
    assert message.startswith(f"{display_path(path)}:3: recipe: train.batch_size 1: ")


def test_an_empty_output_dir_is_refused(tmp_path, capsys):
    """output_dir '' passed and the run then said 'output directory . exists and is not a
    wsreid run'."""
    message, path = refused(tmp_path, capsys, DGIA + "output_dir: ''\n")
    assert message == f"{display_path(path)}:2: output_dir: string should have at least 1 character (got '')"


def test_a_study_file_given_to_validate_is_named_a_study(tmp_path, capsys):
    """It said "data: required key 'data' is missing", as if a recipe lacked a section."""
    message, path = refused(tmp_path, capsys, f"base: {RECIPES / 'dgia.yaml'}\nvariants:\n  - label: A\n", "study.yaml")
    shown = display_path(path)
    assert message == (f"{shown}: this looks like an ablation study, not a recipe (it has base and variants; a recipe "
                       f"has data, encoder, objectives, ... or extends one) (check a study with wsreid ablate {shown} "
                       "--dry-run, and validate its base recipe with wsreid validate)")


def test_print_gives_the_resolved_recipe_that_a_run_records(make_recipe, tmp_path, capsys):
    """``validate --print``: the resolved recipe (extends and -o applied, defaults written
    out, paths absolute) on stdout, byte for byte the recipe.yaml a run of it writes."""
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    capsys.readouterr()
    assert main(["validate", str(recipe), "--print", "-o", "train.lr=3e-4"]) == 0
    printed = capsys.readouterr().out
    assert "  lr: 0.0003\n" in printed and "  weight_decay: " in printed  # the override, and a default written out
    assert main(["run", str(recipe), "-o", "train.lr=3e-4"]) == 0
    assert (tmp_path / "run" / "recipe.yaml").read_text() == printed
    capsys.readouterr()
    (tmp_path / "again.yaml").write_text(printed)
    assert main(["validate", str(tmp_path / "again.yaml"), "--print"]) == 0
    assert capsys.readouterr().out == printed  # it loads again to the same recipe


def test_print_writes_output_dir_as_the_run_resolves_it(make_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    recipe = make_recipe("baselines/itc.yaml", {"output_dir": "~/runs/x"})
    capsys.readouterr()
    assert main(["validate", str(recipe), "--print"]) == 0
    assert f"output_dir: {tmp_path / 'home' / 'runs' / 'x'}\n" in capsys.readouterr().out


def test_commands_run_with_standard_output_closed(monkeypatch):
    """``wsreid plugins >&-``: Python's sys.stdout is None; nothing to guard, nothing printed."""
    import sys

    monkeypatch.setattr(sys, "stdout", None)
    assert main(["plugins"]) == 0
    assert sys.stdout is None
