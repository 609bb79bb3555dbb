"""``wsreid schema`` describes recipe files as they are written (docs/recipes.md): one layer,
laid over what it extends, so no key is required, a block may omit ``name``, ``null``
deletes, and quoted numbers and ``on``/``off`` convert. It marked 35 of the 37 shipped
recipe files invalid in an editor (``'data' is a required property``, ``'2e-4' is not of
type 'number'``). ``--resolved`` is the strict schema of a merged recipe (RUN/recipe.yaml),
``--study`` that of a study file. Each verdict of the layer schema below is checked
against ``wsreid validate`` on the same layer: the schema accepts what the loader accepts
and refuses the typos it refuses."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import RECIPES
from ruamel.yaml import YAML

from wsreid.cli import main

REPO = RECIPES.parent
STUDIES = RECIPES / "ablations"


def schema_of(capsys, *argv: str) -> jsonschema.Draft202012Validator:
    assert main(["schema", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    schema = json.loads(captured.out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def recipe_files() -> list:
    return sorted(p for p in RECIPES.rglob("*.yaml") if STUDIES not in p.parents)


def test_every_shipped_recipe_file_is_valid_under_the_schema_editors_read(capsys):
    layer, resolved = schema_of(capsys), schema_of(capsys, "--resolved")
    files = recipe_files()
    assert len(files) >= 30
    yaml = YAML(typ="safe")
    problems = {str(p.relative_to(REPO)): [e.message for e in layer.iter_errors(yaml.load(p))] for p in files}
    assert {k: v for k, v in problems.items() if v} == {}
    # the strict schema is of merged recipes: a layer that extends one misses its required keys
    assert [e.message for e in resolved.iter_errors(yaml.load(RECIPES / "dgia.yaml"))][:2] == [
        "'data' is a required property", "'encoder' is a required property"]


def test_study_files_have_their_own_schema(capsys):
    study = schema_of(capsys, "--study")
    yaml = YAML(typ="safe")
    for path in sorted(STUDIES.glob("*.yaml")):
        assert list(study.iter_errors(yaml.load(path))) == [], path
    assert [e.message for e in study.iter_errors({"base": "../dgia.yaml", "variants": [{"label": "a", "overide": {}}]})] \
        == ["Additional properties are not allowed ('overide' was unexpected)"]
    assert not schema_of(capsys).is_valid(yaml.load(STUDIES / "headline.yaml"))  # not a recipe


# a layer over recipes/dgia.yaml -> whether validate (and so the schema) accepts it
LAYERS = [
    ("train: {lr: '2e-4'}", True),            # a number in quotes converts
    ("train: {lr: 'fast'}", False),
    ("train: {lr: 0}", False),                # the bound (> 0) holds in the layer too
    ("train: {epochs: 3.0}", True),           # an integer with a zero fraction
    ("train: {epochs: 2.5}", False),
    ("train: {epochs: '4'}", True),
    ("train: {drop_last: 'on'}", True),       # YAML 1.2 reads on as text; a boolean key converts it
    ("train: {drop_last: maybe}", False),
    ("train: {drop_last: 'YES'}", True),      # in any case, as the loader converts it
    ("train: {drop_last: Y}", True),
    ("train: {drop_last: 2}", False),
    ("train: {lrr: 1.0e-4}", False),          # a misspelled key
    ("train: {warmup_epochs: null}", True),   # null deletes the value below: its default applies
    ("encoder: {pretrainedd: x}", False),     # a block without name: its keys must be some component's
    ("encoder: {max_length: 32}", True),
    ("objectives: {sdm_global: {weight: 0.5}}", True),
    ("objectives: {sdm_global: {wieght: 0.5}}", False),
    ("objectives: {sdm_global: null}", True),
    ("objectives: {extra: {name: nosuch}}", False),
    ("local_associations: {lrc: {name: lrc, threshold_image: 1.5}}", False),
    ("pair_construction: {mask_ratio: 0.3}", True),
]


@pytest.mark.parametrize(("layer", "valid"), LAYERS, ids=[text for text, _ in LAYERS])
def test_the_layer_schema_agrees_with_validate(capsys, tmp_path, layer, valid):
    schema = schema_of(capsys)
    text = f"extends: {RECIPES / 'dgia.yaml'}\n{layer}\n"
    path = tmp_path / "layer.yaml"
    path.write_text(text)
    assert (main(["validate", str(path)]) == 0) is valid, capsys.readouterr().err
    assert schema.is_valid(YAML(typ="safe").load(text)) is valid
