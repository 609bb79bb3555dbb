"""Plugin settings blocks (``registry.add_settings``, recipe key ``settings``) and the
provenance of a run (versions.json: the components it used, the observers)."""

from __future__ import annotations

import json
import sys

import pytest
from pydantic import BaseModel, ConfigDict, Field

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
        "      every: 5  # report every N steps\n"
        "      prefix: progress  # first word of each report\n"
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


class LooseInner(BaseModel):
    """A plain pydantic model: it ignores keys it does not know."""

    x: int = 1


class NestedLoose(Params):
    inner: LooseInner = Field(default_factory=LooseInner, description="a block that would ignore a misspelt key")


class DeepLoose(Params):
    blocks: list[LooseInner] | None = Field(None, description="a list of blocks that would ignore misspelt keys")


class TopLoose(Params):
    model_config = ConfigDict(extra="ignore")

    every: int = Field(5, ge=1, description="report every N steps")


class StrictInner(Params):
    x: int = Field(1, description="a value")


class NestedStrict(Params):
    inner: StrictInner = Field(default_factory=StrictInner, description="a block that refuses a misspelt key")


@pytest.mark.parametrize("model, message", [
    (NestedLoose, "plugin 'p': settings 'progress': its parameter block 'inner' (LooseInner) accepts unknown keys, "
                  "so a misspelt key in a recipe would be ignored "
                  "(derive it from wsreid.api.Params (or set model_config extra='forbid'))"),
    (DeepLoose, "plugin 'p': settings 'progress': its parameter block 'blocks' (LooseInner) accepts unknown keys, "
                "so a misspelt key in a recipe would be ignored "
                "(derive it from wsreid.api.Params (or set model_config extra='forbid'))"),
    (TopLoose, "plugin 'p': settings 'progress': its model (TopLoose) accepts unknown keys, "
               "so a misspelt key in a recipe would be ignored "
               "(set model_config extra='forbid' (wsreid.api.Params does; this model overrides it))"),
])  # fmt: skip
def test_a_settings_model_accepting_unknown_keys_is_refused(model, message):
    """The registration rule for parameter models, applied to settings (nested models and,
    since no recipe block wraps a settings block, the model itself)."""
    registry = Registry()
    registry.set_provider("p")
    with pytest.raises(PluginError) as info:
        registry.add_settings("progress", model)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert registry.settings_entries() == []


def test_a_settings_model_with_a_strict_nested_model_is_accepted(tmp_path):
    class Strict:
        @staticmethod
        @hookimpl
        def wsreid_register(registry):
            registry.add_settings("progress", NestedStrict)

    strict = load_plugins(objects=[("strict_observer", Strict)])
    assert [(e.key, e.model, e.provider) for e in strict.registry.settings_entries()] == [
        ("progress", NestedStrict, "strict_observer")]
    loaded = load_recipe(recipe(tmp_path, "settings:\n  progress: {inner: {x: 3}}\n"), registry=strict.registry)
    assert loaded.recipe.settings["progress"].inner.x == 3
    from wsreid.errors import RecipeError

    with pytest.raises(RecipeError) as info:  # the misspelt key the nested model refuses
        load_recipe(recipe(tmp_path, "settings:\n  progress: {inner: {y: 3}}\n"), registry=strict.registry)
    assert str(info.value).startswith(f"{tmp_path}/recipe.yaml:5: settings.progress.inner.y: unknown key 'y'")


def test_validate_refuses_a_recipe_plugin_with_loose_settings(tmp_path, monkeypatch, capsys, request):
    """``wsreid validate`` of a recipe whose plugin declares settings with a plain nested
    pydantic model: one line, exit 2, before any training."""
    (tmp_path / "wsreid_loose_settings.py").write_text(
        "from pydantic import BaseModel, Field\n"
        "from wsreid import hookimpl\n"
        "from wsreid.api import Params\n\n\n"
        "class Inner(BaseModel):\n"
        "    x: int = 1\n\n\n"
        "class LooseSettings(Params):\n"
        "    inner: Inner = Field(default_factory=Inner, description='a block')\n\n\n"
        "@hookimpl\n"
        "def wsreid_register(registry):\n"
        "    registry.add_settings('loose', LooseSettings)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("wsreid_loose_settings", None))
    path = recipe(tmp_path, "plugins: [wsreid_loose_settings]\nsettings:\n  loose: {inner: {y: 2}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: plugin 'wsreid_loose_settings': settings 'loose': its parameter block 'inner' (Inner) accepts unknown "
        "keys, so a misspelt key in a recipe would be ignored "
        "(derive it from wsreid.api.Params (or set model_config extra='forbid'))"]


def test_an_installed_plugin_declaring_a_shipped_settings_key_is_refused_as_such():
    """The shipped-name rule of components holds for settings keys too (its first version
    raised a NameError here, which the plugin manager reported as a registration crash)."""
    from wsreid.registry import Registry, ShippedNameTaken

    class Shipped(Params):
        every: int = 1

    class Other(Params):
        often: int = 2

    registry = Registry()
    registry.set_provider("standard", "wsreid", "0.1.0")
    registry.add_settings("progress", Shipped)
    registry.set_provider("third", "wsreid-third", "1.0")
    with pytest.raises(ShippedNameTaken) as err:
        registry.add_settings("progress", Other)
    assert str(err.value) == (
        "it declares settings 'progress', a name of the shipped plugin 'standard', so it is not loaded (rename the "
        "settings key in that package (a recipe writes settings.<key>); the shipped one stays)")
    assert registry.settings_entries()[0].model is Shipped


class SettingsWithoutHooks:
    """Declares settings, but the module with its hooks was never imported (the mistake
    docs/plugins.md warns of): nothing would read the block."""

    @staticmethod
    @hookimpl
    def wsreid_register(registry):
        registry.add_settings("orphan", ProgressSettings)


def test_settings_of_a_plugin_without_lifecycle_hooks_are_warned_of_once(capsys):
    """Before: the block was accepted and validated, and nothing ran, without a word."""
    load_plugins(objects=[("orphan_observer", SettingsWithoutHooks)])
    load_plugins(objects=[("orphan_observer", SettingsWithoutHooks)])
    assert capsys.readouterr().err == (
        "warning: plugin 'orphan_observer' declares the settings block 'orphan' but implements no lifecycle hook, so "
        "nothing reads it (import the module holding its hooks, decorated with @hookimpl, in the plugin's "
        "entry-point module)\n")
    load_plugins(objects=[("progress_observer", ProgressObserver)])  # with a hook: nothing to say
    assert capsys.readouterr().err == ""
