"""Plugin settings blocks (``registry.add_settings``, recipe key ``settings``) and the
provenance of a run (versions.json: the components it used, the observers)."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

from wsreid import hookimpl
from wsreid.api import Params
from wsreid.cli import main
from wsreid.cli.plugins import print_settings_and_observers
from wsreid.engine.components import package_versions
from wsreid.errors import PluginError
from wsreid.pluginmanager import load_plugins
from wsreid.recipe import dump_resolved_yaml, load_recipe, recipe_json_schema
from wsreid.registry import Registry


class ProgressSettings(Params):
    """How often the progress observer reports."""

    every: int = Field(5, ge=1, description="report every N steps")
    prefix: str = Field("progress", description="first word of each report")


class ProgressObserver:
    @staticmethod
    @hookimpl
    def wsreid_register(registry):
        registry.add_settings("progress", ProgressSettings)

    @staticmethod
    @hookimpl
    def wsreid_epoch_end(run, epoch, logs):
        pass


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(objects=[("progress_observer", ProgressObserver)])


def recipe(tmp_path, extra: str = ""):
    path = tmp_path / "recipe.yaml"
    path.write_text("data: {name: synth-pedes, size: tiny}\nencoder: {name: clip}\nobjectives: {itc: {name: itc}}\n"
                    + extra)
    return path


def test_settings_are_validated_with_their_defaults(plugins, tmp_path):
    loaded = load_recipe(recipe(tmp_path), registry=plugins.registry)
    assert loaded.recipe.settings["progress"] == ProgressSettings()
    loaded = load_recipe(recipe(tmp_path, "settings:\n  progress: {every: 2}\n"), registry=plugins.registry)
    assert loaded.recipe.settings["progress"].every == 2 and loaded.recipe.settings.progress.prefix == "progress"
    assert "settings:\n  progress:\n    every: 2\n    prefix: progress\n" in dump_resolved_yaml(loaded)


@pytest.mark.parametrize("extra, message", [
    ("settings:\n  progress: {every: 0}\n",
     "recipe.yaml:5: settings.progress.every: input should be greater than or equal to 1 (got 0)"),
    ("settings:\n  progress: {evry: 2}\n", "recipe.yaml:5: settings.progress.evry: unknown key 'evry' (did you mean 'every'?)"),
    ("settings:\n  progres: {every: 2}\n", "recipe.yaml:5: settings.progres: unknown key 'progres' (did you mean 'progress'?)"),
])  # fmt: skip
def test_settings_mistakes_are_one_line_with_file_and_line(plugins, tmp_path, extra, message):
    from wsreid.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        load_recipe(recipe(tmp_path, extra), registry=plugins.registry)
    assert str(info.value) == f"{tmp_path}/{message}"


def test_without_settings_a_recipe_is_written_as_before(tmp_path):
    loaded = load_recipe(recipe(tmp_path), registry=load_plugins(distributions=["wsreid"], use_env=False).registry)
    assert "settings" not in dump_resolved_yaml(loaded) and "settings" not in loaded.resolved


def test_settings_in_schema_and_plugins_listing(plugins, capsys):
    schema = recipe_json_schema(plugins.registry)
    block = schema["$defs"]["Settings"]["properties"]["progress"]
    assert block["description"] == "How often the progress observer reports. (from progress_observer)"
    print_settings_and_observers(plugins)
    assert capsys.readouterr().out == (
        "settings:\n"
        "  progress                 progress_observer (progress_observer)\n"
        "      How often the progress observer reports.\n"
        "      every = 5  # report every N steps\n"
        "      prefix = 'progress'  # first word of each report\n"
        "observers:\n"
        "  progress_observer        progress_observer: wsreid_epoch_end\n")


def test_wsreid_plugins_lists_settings_and_observers(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "\nsettings: none declared\nobservers: none\n" in out


class Required(Params):
    every: int = Field(description="no default")


class BadDefault(Params):
    every: int = Field(-1, ge=1, description="a default its own field refuses")


@pytest.mark.parametrize("key, model, message", [
    ("Progress", ProgressSettings, "plugin 'p': settings key 'Progress' is not a lower-case identifier"),
    ("progress", Required, "plugin 'p': settings 'progress' (Required): field 'every' has no default"),
    ("progress", BadDefault, "the default -1 of parameter 'every' is invalid: Input should be greater than or equal to 1"),
    ("progress", dict, "plugin 'p': settings 'progress' need a model deriving from wsreid.api.Params"),
])  # fmt: skip
def test_invalid_settings_declarations_are_refused(key, model, message):
    registry = Registry()
    registry.set_provider("p")
    with pytest.raises(PluginError, match=None) as info:
        registry.add_settings(key, model)
    assert message in str(info.value)


def test_two_plugins_declaring_one_settings_key(plugins):
    registry = Registry()
    registry.set_provider("first")
    registry.add_settings("progress", ProgressSettings)
    registry.set_provider("second")
    with pytest.raises(PluginError, match="settings 'progress' are declared twice: by first .* and by second"):
        registry.add_settings("progress", ProgressSettings)


def test_versions_list_the_components_used_and_the_observers(plugins, tmp_path):
    loaded = load_recipe(recipe(tmp_path), registry=plugins.registry)
    versions = package_versions(plugins, loaded.resolved)
    assert sorted((c["kind"], c["name"]) for c in versions["components"]) == [
        ("dataset", "synth-pedes"), ("encoder", "clip"), ("objective", "itc"), ("pair_construction", "identity")]
    assert versions["observers"] == [{"plugin": "progress_observer", "hooks": ["wsreid_epoch_end"],
                                      "distribution": None, "version": None}]
    assert json.loads(json.dumps(versions)) == versions


def test_settings_in_the_recipe_reference(plugins):
    from wsreid.recipe import recipe_reference_markdown

    text = recipe_reference_markdown(plugins.registry)
    assert "### settings `progress`\n\nHow often the progress observer reports.\n\nProvided by `progress_observer`." in text
    assert "| `every` | int (>= 1) | `5` | report every N steps |" in text
