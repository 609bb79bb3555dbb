"""Recipe validation against a registry of small fake components: one-line errors with
file, line, dotted key and suggestions; the resolved recipe round trip; schema and
reference generation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from wsreid import hookimpl
from wsreid.api import (
    DatasetComponent,
    EncoderComponent,
    GlobalAssociation,
    LocalAssociation,
    Objective,
    PairConstruction,
    Params,
)
from wsreid.errors import RecipeError
from wsreid.pluginmanager import load_plugins
from wsreid.recipe import (
    build_recipe_model,
    dump_resolved_yaml,
    load_recipe,
    read_recipe_tree,
    recipe_json_schema,
    recipe_plugin_modules,
    recipe_reference_markdown,
    validate_recipe,
)

# --------------------------------------------------------------------------- fakes


class FakeDataset(DatasetComponent):
    """Procedural people, for tests."""

    class Params(Params):
        size: int = Field(8, ge=1, description="number of identities")
        root: str | None = Field(None, description="where to write it")


class FakeEncoder(EncoderComponent):
    class Params(Params):
        embed_dim: int = Field(32, ge=1, description="embedding width")


class FakeIdentity(PairConstruction):
    """The base view only."""


class FakeMasking(PairConstruction):
    class Params(Params):
        mask_prob: float = Field(0.15, ge=0, le=1)


class FakeLocal(LocalAssociation):
    class Params(Params):
        threshold: float = Field(0.5, ge=0, le=1, description="similarity threshold")
        modalities: Literal["image", "text", "both"] = "both"


class FakeGlobal(GlobalAssociation):
    class Params(Params):
        momentum: float = Field(0.9, ge=0, le=1)


class FakeItc(Objective):
    class Params(Params):
        temperature: float = Field(0.02, gt=0)


class FakeSdm(Objective):
    """Similarity distribution matching against a relation."""

    class Params(Params):
        temperature: float = Field(0.02, gt=0)
        relation: str | None = Field(None, description="association label of the targets")


class FakePlugin:
    @staticmethod
    @hookimpl
    def wsreid_register(registry):
        registry.add("dataset", "synth-pedes", FakeDataset)
        registry.add("encoder", "clip", FakeEncoder)
        registry.add("pair_construction", "identity", FakeIdentity)
        registry.add("pair_construction", "iasc", FakeMasking)
        registry.add("local_association", "lrc", FakeLocal)
        registry.add("global_association", "gsrc-fr", FakeGlobal)
        registry.add("objective", "itc", FakeItc)
        registry.add("objective", "sdm", FakeSdm)


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, objects=[("fake", FakePlugin)]).registry


BASE = """\
data:
  name: synth-pedes
  size: 16
encoder: {name: clip}
local_associations:
  lrc: {name: lrc, threshold: 0.6}
objectives:
  itc: {name: itc}
  sdm_global:
    name: sdm
    weight: 0.5
    relation: lrc
train:
  lr: 1e-5
  epochs: 2
"""


@pytest.fixture
def base(tmp_path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(BASE)
    return path


def error_of(source, registry, overrides=()) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(source, overrides, registry=registry)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- valid recipes


def test_valid_recipe_is_typed_with_defaults(base, registry):
    loaded = load_recipe(base, registry=registry)
    recipe = loaded.recipe
    assert recipe.train.lr == 1e-05 and recipe.train.epochs == 2 and recipe.train.batch_size == 64
    assert isinstance(recipe.data, FakeDataset.Params) and recipe.data.size == 16
    assert isinstance(recipe.pair_construction, FakeIdentity.Params) and recipe.pair_construction.name == "identity"
    assert recipe.local_associations["lrc"].threshold == 0.6
    assert recipe.objectives["itc"].weight == 1.0 and recipe.objectives["sdm_global"].weight == 0.5
    assert loaded.source == base
    assert list(loaded.resolved) == [
        "output_dir", "plugins", "data", "encoder", "pair_construction",
        "local_associations", "global_associations", "objectives", "init", "train", "eval",
    ]
    assert list(loaded.resolved["objectives"]["sdm_global"]) == ["name", "weight", "temperature", "relation", "start_epoch"]
    assert loaded.resolved["local_associations"]["lrc"] == {"name": "lrc", "threshold": 0.6, "modalities": "both"}


def test_values_are_converted_to_their_key_s_type_where_exact(base, registry):
    """docs/recipes.md: YAML 1.2 reads `off` and `'2e-4'` as strings; a boolean key takes
    `off`, a number key a number in quotes, an integer key 2.0 but not 2.5; a text key keeps
    `no` as written."""
    loaded = load_recipe(base, ["train.drop_last=off", "train.lr='2e-4'", "train.epochs=3.0", "output_dir=no"],
                         registry=registry)
    assert loaded.recipe.train.drop_last is False
    assert loaded.recipe.train.lr == 2e-4 and loaded.recipe.train.epochs == 3
    assert loaded.recipe.output_dir == "no"
    assert "train.epochs" in error_of(base, registry, ["train.epochs=2.5"])


def test_resolved_recipe_round_trip(base, registry, tmp_path):
    loaded = load_recipe(base, ["train.betas=[0.5, 0.9]", "output_dir='yes'", "data.root=null"], registry=registry)
    text = dump_resolved_yaml(loaded, tmp_path / "run" / "recipe.yaml")
    assert (tmp_path / "run" / "recipe.yaml").read_text() == text
    assert "output_dir: 'yes'" in text and "root: null" in text
    again = load_recipe(tmp_path / "run" / "recipe.yaml", registry=registry)
    assert again.recipe == loaded.recipe
    assert again.resolved == loaded.resolved
    assert dump_resolved_yaml(again) == text
    assert list(tmp_path.joinpath("run").iterdir()) == [tmp_path / "run" / "recipe.yaml"]  # no temp file left


def test_resolved_recipe_file_gets_a_plain_writes_permissions(base, registry, tmp_path):
    """The written recipe is readable as a file written with open() would be (umask 022:
    0644), not the private 0600 of a temporary file, and keeps a replaced file's mode."""
    import os
    loaded = load_recipe(base, registry=registry)
    old = os.umask(0o022)
    try:
        target = tmp_path / "run" / "recipe.yaml"
        dump_resolved_yaml(loaded, target)
        assert oct(target.stat().st_mode & 0o777) == oct(0o644)
        target.chmod(0o640)
        dump_resolved_yaml(loaded, target)
        assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    finally:
        os.umask(old)


def test_extends_with_name_change_and_deletion(base, registry, tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nobjectives:\n  sdm_global: {name: itc, temperature: 0.05}\nlocal_associations: {lrc: null}\n")
    recipe = load_recipe(child, registry=registry).recipe
    assert isinstance(recipe.objectives["sdm_global"], FakeItc.Params)  # 'relation' dropped with the old name
    assert recipe.objectives["sdm_global"].weight == 1.0 and recipe.objectives["sdm_global"].temperature == 0.05
    assert recipe.local_associations == {}


def test_overrides_remove_and_swap_components(base, registry):
    recipe = load_recipe(
        base,
        ["objectives.sdm_global=null", "local_associations.lrc.modalities=image", "pair_construction.name=iasc"],
        registry=registry,
    ).recipe
    assert list(recipe.objectives) == ["itc"]
    assert recipe.local_associations["lrc"].modalities == "image"
    assert recipe.pair_construction.mask_prob == 0.15


def test_model_is_built_once_per_registry(registry):
    assert build_recipe_model(registry) is build_recipe_model(registry)
    assert build_recipe_model(registry).component_models["objective"]["sdm"].model_fields["weight"].default == 1.0


# --------------------------------------------------------------------------- errors


def test_unknown_top_level_key_with_line_and_suggestion(base, registry):
    base.write_text(BASE + "trian:\n  lr: 1\n")
    assert error_of(base, registry) == f"{base}:16: trian: unknown key 'trian' (did you mean 'train'?)"


def test_unknown_nested_key(base, registry):
    base.write_text(BASE.replace("  epochs: 2", "  epochs: 2\n  lrr: 3"))
    assert error_of(base, registry) == f"{base}:16: train.lrr: unknown key 'lrr' (did you mean 'lr'?)"


def test_unknown_override_key(base, registry):
    assert error_of(base, registry, ["train.lrr=2e-5"]) == (
        "override -o train.lrr=2e-5: train.lrr: unknown key 'lrr' (did you mean 'lr'?)"
    )


def test_unknown_key_without_close_match_lists_valid_keys(base, registry):
    message = error_of(base, registry, ["eval.zzz=1"])
    assert message == "override -o eval.zzz=1: eval.zzz: unknown key 'zzz' (valid keys here: every, batch_size, select, chunk_size)"


def test_a_key_for_a_component_without_parameters_says_it_takes_none(base, registry):
    """A plugin component that forgot its Params model showed 'valid keys here: name',
    which blames the recipe's key."""
    assert error_of(base, registry, ["pair_construction={name: identity, mask_prob: 0.2}"]) == (
        "override -o pair_construction={name: identity, mask_prob: 0.2}: pair_construction.mask_prob: unknown key 'mask_prob' "
        "('identity' takes no parameters: remove the key; in a plugin, a component declares its parameters with a "
        "Params model on its class (class Params(wsreid.api.Params): ..., or Params = MyParams))")


def test_extra_key_in_component_params(base, registry):
    base.write_text(BASE.replace("{name: lrc, threshold: 0.6}", "{name: lrc, thresold: 0.6}"))
    assert error_of(base, registry) == (
        f"{base}:6: local_associations.lrc.thresold: unknown key 'thresold' (did you mean 'threshold'?)"
    )


def test_unknown_component_name(base, registry):
    base.write_text(BASE.replace("name: sdm\n", "name: sdmm\n"))
    assert error_of(base, registry) == f"{base}:10: objectives.sdm_global.name: unknown objective 'sdmm' (did you mean 'sdm'?)"


def test_component_of_another_kind(base, registry):
    message = error_of(base, registry, ["encoder.name=lrc"])
    assert message.startswith("override -o encoder.name=lrc: encoder.name: unknown encoder 'lrc'")
    assert "'lrc' is a local_association" in message


def test_wrong_type(base, registry):
    base.write_text(BASE.replace("epochs: 2", "epochs: many"))
    message = error_of(base, registry)
    assert message.startswith(f"{base}:15: train.epochs: input should be a valid integer")
    assert message.endswith("(got 'many')")


@pytest.mark.parametrize(("override", "expected"), [
    ("train.epochs=true", "train.epochs: input should be a valid integer (got true)"),
    ("train.lr=false", "train.lr: input should be a valid number (got false)"),
    ("local_associations.lrc.threshold=true", "local_associations.lrc.threshold: input should be a valid number (got true)"),
    ("train.betas=[true, 0.9]", "train.betas.0: input should be a valid number (got true)"),
    ('train.lr_factors={"encoder.*": true}', "train.lr_factors.encoder.*: input should be a valid number (got true)"),
    ('train.lr_factors={"encoder.*": -1}', "train.lr_factors.encoder.*: input should be greater than or equal to 0 "
                                           "(got -1)"),
])
def test_a_truth_value_or_a_negative_factor_is_not_a_number(base, registry, override, expected):
    """pydantic reads true / false as 1 / 0 for a number key (epochs: true trained one
    epoch, lr: true at 1.0); a negative lr factor trained against the gradient. A truth
    value stays one where a key takes it."""
    assert error_of(base, registry, [override]) == f"override -o {override}: {expected}"
    assert load_recipe(base, ["train.drop_last=true"], registry=registry).recipe.train.drop_last is True


@pytest.mark.parametrize(
    ("override", "expected"),
    [("train.lr=-1", "override -o train.lr=-1: train.lr: input should be greater than 0 (got -1)"),
     ("local_associations.lrc.threshold=1.5",
      "override -o local_associations.lrc.threshold=1.5: local_associations.lrc.threshold: "
      "input should be less than or equal to 1 (got 1.5)"),
     ("objectives.itc.weight=-0.5", "override -o objectives.itc.weight=-0.5: objectives.itc.weight: "
      "input should be greater than or equal to 0 (got -0.5)"),
     ("train.betas=[0.9, 1.5]", "override -o train.betas=[0.9, 1.5]: train.betas: betas must lie in [0, 1) (got [0.9, 1.5])")],
)
def test_out_of_range(base, registry, override, expected):
    assert error_of(base, registry, [override]) == expected


def test_out_of_range_in_file_has_line(base, registry):
    base.write_text(BASE.replace("threshold: 0.6", "threshold: 1.6"))
    assert error_of(base, registry).startswith(f"{base}:6: local_associations.lrc.threshold: input should be less than or equal to 1")


@pytest.mark.parametrize(
    ("overrides", "blamed"),
    [(["train.sampler=identity", "train.batch_size=6"], "override -o train.sampler=identity -o train.batch_size=6"),
     (["train.lr=2e-5", "train.sampler=identity"], "override -o train.sampler=identity"),  # the key the message names
     (["train={sampler: identity, batch_size: 6}"], "override -o train={sampler: identity, batch_size: 6}"),
     (["train.batch_size=1"], "override -o train.batch_size=1")],  # a check of the whole recipe
)
def test_check_across_a_section_blames_the_overrides_that_set_its_keys(base, registry, overrides, blamed):
    """A check across keys of a section (batch size vs instances per identity) caused by
    command-line overrides names them, not the line of the file where the section starts."""
    base.write_text(BASE.replace("  epochs: 2", "  epochs: 2\n  batch_size: 10"))
    message = error_of(base, registry, overrides)
    assert message.startswith(f"{blamed}: "), message
    # no override inside the section: the file's line stands
    base.write_text(BASE.replace("  epochs: 2", "  epochs: 2\n  sampler: identity\n  batch_size: 10"))
    assert error_of(base, registry, ["eval.every=1"]).startswith(f"{base}:13: train: train.sampler identity: ")


def test_seed_beyond_numpys_range_is_refused(base, registry):
    """numpy's generators take seeds below 2**32: a larger train.seed passed validation and
    the run failed in set-up with numpy's traceback."""
    assert error_of(base, registry, ["train.seed=4294967296"]).endswith(
        "train.seed: input should be less than or equal to 4294967295 (got 4294967296)")
    assert load_recipe(base, ["train.seed=4294967295"], registry=registry).recipe.train.seed == 2**32 - 1


def test_literal_with_suggestion(base, registry):
    assert error_of(base, registry, ["local_associations.lrc.modalities=imag"]) == (
        "override -o local_associations.lrc.modalities=imag: local_associations.lrc.modalities: "
        "'imag' is not one of 'image', 'text' or 'both' (did you mean 'image'?)"
    )
    # the same word in other letters is the likelier mistake (difflib offered 'adam' for AdamW)
    assert error_of(base, registry, ["train.optimizer=AdamW"]).endswith(
        "train.optimizer: 'AdamW' is not one of 'adam' or 'adamw' (did you mean 'adamw'?)")
    # a word of the meaning, as the key's description names it, before a near spelling
    # (difflib offered 'test' for 'best', 'val' for 'final')
    for word, meant in (("best", "val"), ("final", "last"), ("latest", "last"), ("tset", "test")):
        assert error_of(base, registry, [f"eval.select={word}"]).endswith(
            f"eval.select: {word!r} is not one of 'val', 'last' or 'test' (did you mean {meant!r}?)")


def test_missing_required_section(base, registry):
    assert error_of(base, registry, ["encoder=null"]) == f"{base}: encoder: required key 'encoder' is missing (add it: encoder component)"


@pytest.mark.parametrize(
    ("override", "expected"),
    [("encoder=clip", "encoder: expected a component block {name: ..., <parameters>}, got 'clip' (encoder names: clip)"),
     ("objectives.extra={weight: 2}", "objectives.extra: missing 'name' (objective names: itc, sdm)"),
     ("objectives.extra={name: 3}", "objectives.extra.name: a name must be a string, got 3"),
     ("objectives.itc=null", None),
     ("global_associations.lrc={name: gsrc-fr}", "global_associations.lrc: label 'lrc' is also used in local_associations"),
     ("objectives.2x={name: itc}", "objectives.2x: label '2x' is not a plain name")],
)
def test_component_block_errors(base, registry, override, expected):
    if expected is None:  # removing both objectives leaves none
        message = error_of(base, registry, [override, "objectives.sdm_global=null"])
        assert message == f"{base}:7: objectives: no objective is left (a recipe needs at least one, e.g. 'objectives: {{itc: {{name: itc}}}}')"
    else:
        assert expected in error_of(base, registry, [override])


def test_unregistered_default_pair_construction(base):
    empty = load_plugins(entry_points=False, objects=[]).registry
    with pytest.raises(RecipeError, match=r"pair_construction \(default\): unknown pair_construction 'identity'"):
        validate_recipe({"objectives": {}}, empty)


def test_plugin_modules(base):
    tree, locations = read_recipe_tree(base, ["plugins=[my_pkg.plugin]"])
    assert recipe_plugin_modules(tree, locations) == ["my_pkg.plugin"]
    with pytest.raises(RecipeError, match=r"^override -o plugins=3: plugins: expected a list of module names"):
        tree, locations = read_recipe_tree(base, ["plugins=3"])
        recipe_plugin_modules(tree, locations)


def test_tree_given_in_code(registry):
    loaded = load_recipe({"data": {"name": "synth-pedes"}, "encoder": {"name": "clip"}, "objectives": {"itc": {"name": "itc"}}},
                         ["train.seed=3"], registry=registry)
    assert loaded.source is None and loaded.recipe.train.seed == 3
    with pytest.raises(RecipeError, match=r"^<recipe>: train.seed: input should be greater than or equal to 0"):
        validate_recipe({**loaded.tree, "train": {"seed": -1}}, registry)


# --------------------------------------------------------------------------- schema and reference


def test_json_schema_has_component_params(registry):
    schema = recipe_json_schema(registry, resolved=True)
    defs = schema["$defs"]
    local = defs["LocalAssociation_lrc"]
    assert local["properties"]["threshold"]["maximum"] == 1
    assert local["properties"]["name"]["const"] == "lrc"
    assert local["additionalProperties"] is False
    assert defs["Objective_sdm"]["properties"]["weight"]["default"] == 1.0
    block, null = schema["properties"]["objectives"]["additionalProperties"]["anyOf"]
    assert set(block["discriminator"]["mapping"]) == {"itc", "sdm"} and null == {"type": "null"}
    assert schema["properties"]["extends"]["type"] == "string"
    assert "trian" not in schema["properties"] and schema["additionalProperties"] is False


def test_reference_markdown_documents_every_key(registry):
    text = recipe_reference_markdown(registry)
    assert "**Mappings merge**" in text and "**``null`` deletes**" in text
    assert "| `lr` | float (> 0) | `1e-05` | base learning rate |" in text
    assert "| `select` | \"val\" \\| \"last\" \\| \"test\" | `\"val\"` |" in text
    assert "### local_association `lrc`" in text
    assert "| `threshold` | float (>= 0, <= 1) | `0.5` | similarity threshold |" in text
    assert "### objective `sdm`\n\nSimilarity distribution matching against a relation." in text
    assert "| `relation` | str \\| null | `null` | association label of the targets |" in text
    assert text.count("| `weight` | float (>= 0) | `1.0` |") == 2
    assert "Default: `{\"name\": \"identity\"}`." in text
    for kind_title in ("## `data`", "## `encoder`", "## `pair_construction`", "## `local_associations`",
                       "## `global_associations`", "## `objectives`", "## `train`", "## `eval`"):
        assert kind_title in text


@pytest.mark.parametrize("resolved", [True, False])
def test_json_schema_accepts_resolved_and_rejects_typos(base, registry, resolved):
    import jsonschema

    schema = recipe_json_schema(registry, resolved=resolved)
    validator = jsonschema.Draft202012Validator(schema)
    resolved = load_recipe(base, registry=registry).resolved
    assert list(validator.iter_errors(resolved)) == []
    assert list(validator.iter_errors({**resolved, "extends": "base.yaml", "objectives": {"removed": None, **resolved["objectives"]}})) == []
    good = {**resolved, "local_associations": {"lrc": {"name": "lrc", "threshold": 0.5}}}
    bad = {**resolved, "local_associations": {"lrc": {"name": "lrc", "thresold": 0.5}}}
    assert validator.is_valid(good) and not validator.is_valid(bad)
    assert not validator.is_valid({**resolved, "trian": {}})


def test_a_batch_of_one_is_refused_without_associations_too(base, registry):
    """ITC alone over a batch of one pair is 0 at every step: the run trained nothing for
    minutes and reported test metrics."""
    message = error_of(base, registry, ["local_associations.lrc=null", "objectives.sdm_global=null",
                                        "train.batch_size=1"])
    assert message.endswith("recipe: train.batch_size 1: the objectives contrast each pair with the other pairs of "
                            "its batch (ITC over a batch of one is 0: nothing is learned), so a batch needs at least "
                            "2 pairs")


def test_a_plugin_module_that_does_not_import_is_cited_at_its_recipe_line(tmp_path, capsys):
    """The list may come from a recipe it extends: the error named "recipe 'plugins:'" only."""
    from conftest import RECIPES

    from wsreid.cli import main
    from wsreid.recipe.yamlio import display_path

    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\n\nplugins: [wsreid_no_such_module_xyz]\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\ntrain: {epochs: 2}\n")
    assert main(["validate", str(child)]) == 2
    assert capsys.readouterr().err == (
        f"error: plugin module 'wsreid_no_such_module_xyz' ({display_path(base)}:3: plugins) failed to import: "
        "ModuleNotFoundError: No module named 'wsreid_no_such_module_xyz' (check that it (and what it imports) is "
        "installed or on PYTHONPATH)\n")
