"""Plugin safety through real entry points: fake installed distributions (dist-info
directories on sys.path) that collide, fail to import, fail while registering, or get
disabled; and what ``wsreid plugins`` and recipe errors say about them."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from wsreid import hookimpl
from wsreid.cli import main
from wsreid.errors import PluginError, RecipeError
from wsreid.pluginmanager import DISABLE_ENV, load_plugins
from wsreid.registry import DuplicateComponentError

REPO = Path(__file__).resolve().parents[1]

OBJECTIVE = '''
from pydantic import Field
from wsreid import hookimpl
from wsreid.api import Objective, Params
from wsreid.losses import itc_loss


class Scaled(Objective):
    """ITC times a factor."""

    class Params(Params):
        factor: float = Field(0.5, description="loss factor")

    def loss(self, features, relations, batch, ctx):
        return self.params.factor * itc_loss(features["base"].image, features["base"].text)


@hookimpl
def wsreid_register(registry):
    registry.add("objective", "{name}", Scaled)
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path in which ``install(...)`` fakes installed distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    before = set(sys.modules)

    def install(dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("[wsreid]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))

    yield install
    for name in set(sys.modules) - before:
        if name.startswith("fakeplug_"):
            del sys.modules[name]


def test_two_distributions_registering_one_name_are_both_named(site):
    site("fake-alpha", "1.0", {"alpha": "fakeplug_alpha"}, {"fakeplug_alpha": OBJECTIVE.replace("{name}", "scaled")})
    site("fake-beta", "2.3", {"beta": "fakeplug_beta"}, {"fakeplug_beta": OBJECTIVE.replace("{name}", "scaled")})
    with pytest.raises(DuplicateComponentError) as err:
        load_plugins()
    message = str(err.value)
    assert "objective 'scaled' is registered twice" in message
    assert "fake-alpha 1.0 (plugin 'alpha')" in message and "fake-beta 2.3 (plugin 'beta')" in message
    assert "--disable-plugin alpha" in message and "--disable-plugin beta" in message and "\n" not in message
    # disabling either one (by entry-point or distribution name) resolves it
    assert load_plugins(disabled=["beta"]).registry.get("objective", "scaled").distribution == "fake-alpha"
    assert load_plugins(disabled=["fake-alpha"]).registry.get("objective", "scaled").version == "2.3"


def test_an_installed_plugin_reusing_a_shipped_name_is_left_out_and_the_rest_works(site, capsys):
    """A third-party package registering a shipped name ('itc') is a broken plugin, whose
    other components are left out with it; the shipped plugins and every command keep
    working (the clash used to stop every command, and its hint offered to disable the
    shipped plugin). Its entry-point name ('aaa') sorts before every shipped one."""
    module = OBJECTIVE.replace('registry.add("objective", "{name}", Scaled)',
                               'registry.add("objective", "scaled-own", Scaled)\n'
                               '    registry.add("objective", "itc", Scaled)')
    site("fake-clash", "0.2", {"aaa": "fakeplug_clash"}, {"fakeplug_clash": module})
    plugins = load_plugins()
    assert [b.describe() for b in plugins.broken] == [
        "plugin 'aaa' from distribution 'fake-clash' failed to load: it registers objective 'itc', a name of the "
        "shipped plugin 'standard', so it is not loaded (rename the component in that package (a recipe names it by "
        "this name); the shipped one stays)"]
    assert plugins.registry.get("objective", "itc").distribution == "wsreid"
    assert "scaled-own" not in plugins.registry.names("objective")
    capsys.readouterr()
    assert main(["validate", str(REPO / "recipes" / "baselines" / "itc.yaml")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: plugin 'aaa' from distribution 'fake-clash' failed to load: it registers objective 'itc', a name "
        "of the shipped plugin 'standard', so it is not loaded (rename the component in that package (a recipe names "
        "it by this name); the shipped one stays)"]


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_works(site, make_recipe, capsys):
    site("fake-broken", "0.1", {"broken": "fakeplug_broken"}, {"fakeplug_broken": "import no_such_dependency_xyz\n"})
    plugins = load_plugins()
    assert [(b.name, b.distribution) for b in plugins.broken] == [("broken", "fake-broken")]
    broken_file = next(p for p in map(Path, sys.path) if (p / "fakeplug_broken.py").exists()) / "fakeplug_broken.py"
    assert plugins.broken[0].error == ("ModuleNotFoundError: No module named 'no_such_dependency_xyz' "
                                       f"(at {broken_file}:1)")  # the file and line that failed
    assert "warning: plugin 'broken' from distribution 'fake-broken' failed to load" in capsys.readouterr().err
    assert plugins.registry.get("objective", "itc").distribution == "wsreid"

    recipe = make_recipe("baselines/itc.yaml")
    assert main(["validate", str(recipe)]) == 0  # the recipe does not need it
    assert main(["validate", str(recipe), "-o", "objectives.mine={name: knn-itc}"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: ") and "unknown objective 'knn-itc'" in err
    assert "plugin 'broken' from distribution 'fake-broken' failed to load: ModuleNotFoundError" in err

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "broken: plugin 'broken' from distribution 'fake-broken' failed to load: ModuleNotFoundError" in out


def test_a_plugin_that_exits_on_import_is_a_broken_plugin_not_the_end(site, capsys):
    """``raise SystemExit`` (or ``sys.exit()``) at import or while registering is not an
    Exception: it used to end every command."""
    site("fake-bye", "0.1", {"bye": "fakeplug_bye"}, {"fakeplug_bye": 'raise SystemExit("bye")\n'})
    site("fake-quits", "0.1", {"quits": "fakeplug_quits"}, {"fakeplug_quits": """
        import sys
        from wsreid import hookimpl


        @hookimpl
        def wsreid_register(registry):
            sys.exit()
        """})
    plugins = load_plugins()
    errors = {b.name: b.error for b in plugins.broken}
    assert errors["bye"].startswith("SystemExit: bye (at ") and errors["bye"].endswith("fakeplug_bye.py:1)")
    assert errors["quits"].startswith("while registering components: SystemExit (at ") and \
        errors["quits"].endswith("fakeplug_quits.py:8)")  # the sys.exit() line
    assert plugins.registry.get("objective", "itc").distribution == "wsreid"
    assert main(["plugins"]) == 0  # the command goes on
    assert "failed to load: SystemExit: bye" in capsys.readouterr().out
    with pytest.raises(PluginError, match=r"^plugin module 'fakeplug_bye' \(recipe 'plugins:'\) failed to import: "
                                          r"SystemExit: bye \(at "):
        load_plugins(entry_points=False, modules=["fakeplug_bye"])


def test_an_entry_point_naming_a_missing_module_has_no_location_inside_wsreid(site, capsys):
    """The import call is wsreid's, not the plugin's fault: no 'at wsreid/...' location."""
    site("fake-gone", "0.1", {"gone": "fakeplug_gone_nowhere"}, {})
    plugins = load_plugins()
    [broken] = [b for b in plugins.broken if b.name == "gone"]
    assert broken.error == "ModuleNotFoundError: No module named 'fakeplug_gone_nowhere'"


def test_a_hook_function_without_its_marker_is_warned_about(site, capsys):
    """Without @hookimpl pluggy never calls wsreid_register: the plugin's components would
    be unknown with no word why."""
    source = OBJECTIVE.replace("{name}", "undecorated").replace("@hookimpl\n", "")
    assert "@hookimpl" not in source
    site("fake-nodecor", "0.1", {"nodecor": "fakeplug_nodecor"}, {"fakeplug_nodecor": source})
    plugins = load_plugins()
    assert ("objective", "undecorated") not in plugins.registry
    err = capsys.readouterr().err
    assert ("warning: plugin 'nodecor' defines wsreid_register without @hookimpl, so it is never called "
            "(decorate it: from wsreid import hookimpl)") in err


def test_the_missing_marker_warning_is_printed_once_per_process_for_each_plugin_and_hook(site, capsys):
    """A study (wsreid ablate) or an init chain loads the plugins for every run in one
    process: each unmarked hook is warned about at the first load only."""
    unmarked = "\n\ndef wsreid_epoch_end(run, epoch, logs):\n    pass\n\n\ndef wsreid_run_end(run, metrics):\n    pass\n"
    site("fake-twice", "0.1", {}, {"fakeplug_twice_a": OBJECTIVE.replace("{name}", "marked-once") + unmarked,
                                   "fakeplug_twice_b": OBJECTIVE.replace("{name}", "marked-too") + unmarked})
    warning = "warning: plugin {!r} defines {} without @hookimpl"
    for _ in range(2):
        plugins = load_plugins(entry_points=False, modules=["fakeplug_twice_a"])
        assert ("objective", "marked-once") in plugins.registry
    err = capsys.readouterr().err
    assert [err.count(warning.format("fakeplug_twice_a", hook)) for hook in
            ("wsreid_epoch_end", "wsreid_run_end", "wsreid_register")] == [1, 1, 0]
    load_plugins(entry_points=False, modules=["fakeplug_twice_a", "fakeplug_twice_b"])
    err = capsys.readouterr().err  # another plugin with the same hooks is warned about in its turn
    assert [err.count(warning.format(plugin, "wsreid_epoch_end")) for plugin in
            ("fakeplug_twice_a", "fakeplug_twice_b")] == [0, 1]


def test_a_plugin_that_fails_while_registering_is_withdrawn_whole(site, capsys):
    source = OBJECTIVE.replace("{name}", "half-done").replace(
        'registry.add("objective", "half-done", Scaled)',
        'registry.add("objective", "half-done", Scaled)\n    raise RuntimeError("config missing")',
    ) + "\n\n@hookimpl\ndef wsreid_epoch_end(run, epoch, logs):\n    pass\n"
    site("fake-half", "0.2", {"half": "fakeplug_half"}, {"fakeplug_half": source})
    plugins = load_plugins()
    [(name, error)] = [(b.name, b.error) for b in plugins.broken]
    # where the plugin raised it, as for an import failure (it named no place)
    assert name == "half" and error.startswith("while registering components: RuntimeError: config missing (at ")
    assert error.endswith("fakeplug_half.py:" + str(source.splitlines().index('    raise RuntimeError("config missing")') + 1) + ")")
    assert ("objective", "half-done") not in plugins.registry
    assert not plugins.manager.has_plugin("half")  # its lifecycle hooks are gone too
    with pytest.raises(RecipeError, match="plugin 'half' from distribution 'fake-half' failed to load"):
        plugins.registry.get("objective", "half-done")


def test_plugins_command_shows_kind_distribution_version_and_parameters(site, capsys):
    site("fake-extra", "3.1.4", {"extra": "fakeplug_extra"}, {"fakeplug_extra": OBJECTIVE.replace("{name}", "scaled")})
    assert main(["plugins"]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    kinds = [line for line in lines if line.endswith(":") and " " not in line]
    assert kinds == ["dataset:", "encoder:", "pair_construction:", "local_association:", "global_association:",
                     "objective:"]
    objectives = lines[lines.index("objective:"):]
    scaled = objectives.index("scaled fake-extra 3.1.4 (extra)")
    assert objectives[scaled + 1:scaled + 3] == ["ITC times a factor.", "factor: 0.5"]
    assert "itc wsreid 0.1.0 (standard)" in objectives and "temperature: 0.02" in objectives
    assert "relation: (required)" in objectives
    # defaults as a recipe writes them (YAML), not Python's repr: None, VisionParams(...), (384, 128), ``code``
    encoders = lines[lines.index("encoder:"):lines.index("pair_construction:")]
    assert {"pretrained: null", "mask_token: added", "image_size: [384, 128]",
            "vision: {hidden: 768, layers: 12, heads: 12, intermediate: null, patch_size: 16}"} <= set(encoders)
    assert "SDM against the relation named by `relation` (docs/method.md; Eq. 8-10, 16-18, 21)." in objectives
    assert "true-identity wsreid 0.1.0 (baselines) [NOT weakly supervised]" in lines
    assert "identity-classification wsreid 0.1.0 (baselines) [NOT weakly supervised] [trainable]" in lines


def test_a_pair_construction_that_is_a_torch_module_is_refused_at_registration(site):
    """Only associations and objectives are trained with the encoder: a module registered
    as pair construction would silently never be trained, so its plugin is broken."""
    source = '''
    import torch
    from wsreid import hookimpl
    from wsreid.api import PairConstruction, View


    class LearnedPairs(PairConstruction, torch.nn.Module):
        """A pair construction with a parameter."""

        def views(self, batch, encoder):
            return {"base": View(batch.images, batch.input_ids, batch.attention_mask)}


    @hookimpl
    def wsreid_register(registry):
        registry.add("pair_construction", "learned-pairs", LearnedPairs)
    '''
    site("fake-learned", "0.1", {"learned": "fakeplug_learned"}, {"fakeplug_learned": source})
    plugins = load_plugins()
    [broken] = [b for b in plugins.broken if b.name == "learned"]
    assert broken.error.startswith(
        "while registering components: PluginError: plugin 'learned': pair_construction "
        "'learned-pairs' is a torch.nn.Module, but only associations and objectives are trained "
        "with the encoder (a module here would never be trained) (make it an objective or "
        "association, or keep the tensors as plain state) (at ") and "fakeplug_learned.py:" in broken.error
    assert ("pair_construction", "learned-pairs") not in plugins.registry


def test_disable_from_the_command_line_or_the_environment(site, monkeypatch, capsys):
    site("fake-extra", "3.1.4", {"extra": "fakeplug_extra"}, {"fakeplug_extra": OBJECTIVE.replace("{name}", "scaled")})
    assert main(["plugins", "--disable-plugin", "extra"]) == 0
    out = capsys.readouterr().out
    assert "scaled" not in out and "disabled: extra" in out and "itc" in out
    monkeypatch.setenv(DISABLE_ENV, "fake-extra, baselines")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "scaled" not in out and "triplet" not in out and "disabled: baselines, fake-extra" in out
    with pytest.raises(RecipeError, match=r"unknown objective 'triplet'.*plugin 'baselines' is disabled"):
        load_plugins().registry.get("objective", "triplet")
    monkeypatch.delenv(DISABLE_ENV)
    assert main(["plugins", "--disable-plugin", "fakeplug_extra"]) == 0  # the entry point's module
    out = capsys.readouterr().out
    assert "scaled" not in out and "disabled: fakeplug_extra" in out and "itc" in out


def test_a_name_no_loaded_plugin_provides_says_how_a_plugin_is_brought_in(make_recipe, capsys, monkeypatch):
    """A recipe naming another plugin's component (the tutorial's 'knn') said only
    'unknown local_association' with the known names; a typo of a known name keeps its
    'did you mean' alone."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["validate", str(recipe), "-o", "local_associations.local={name: knn}"]) == 2
    assert capsys.readouterr().err == (
        "error: override -o local_associations.local={name: knn}: local_associations.local.name: unknown "
        "local_association 'knn' (known local_association names: lrc, true-identity; a plugin's component needs "
        "that plugin installed (pip install it) or its module named in the recipe's 'plugins' list)\n")
    assert main(["validate", str(recipe), "-o", "local_associations.local={name: lcr}"]) == 2
    assert capsys.readouterr().err.endswith("unknown local_association 'lcr' (did you mean 'lrc'?)\n")


def test_disabling_an_unknown_plugin_warns(capsys, monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    plugins = load_plugins(disabled=["no-such-plugin"])
    assert plugins.unmatched_disabled == {"no-such-plugin"}
    assert "warning: no plugin named no-such-plugin to disable" in capsys.readouterr().err
    # `wsreid plugins` does not then list it as disabled (it printed "disabled: nosuch")
    assert main(["plugins", "--disable-plugin", "nosuch", "--disable-plugin", "baselines"]) == 0
    captured = capsys.readouterr()
    assert "warning: no plugin named nosuch to disable" in captured.err
    assert captured.out.splitlines()[-1] == "disabled: baselines"
    assert main(["plugins", "--disable-plugin", "nosuch"]) == 0
    assert "disabled:" not in capsys.readouterr().out


def test_a_summary_is_the_docstrings_first_sentence_whole():
    """A first sentence wrapped over two docstring lines was cut at the line end ("the
    paired item" for the ITC loss, whose sentence goes on "is the only positive.")."""
    from wsreid.registry import docstring_summary

    assert docstring_summary("""Image-text contrastive loss, InfoNCE in both directions (Eq. 1-2): the paired item
    is the only positive. Temperature from the encoder.

    More.""") == ("Image-text contrastive loss, InfoNCE in both directions (Eq. 1-2): the paired item is the only "
                  "positive.")
    assert docstring_summary("One line, e.g. this one.\n\nDetails.") == "One line, e.g. this one."
    assert docstring_summary("No full stop\n  at all") == "No full stop at all"
    assert docstring_summary(None) == docstring_summary("") == ""
    itc = load_plugins(use_env=False).registry.get("objective", "itc")
    assert itc.summary.endswith("the paired item is the only positive.")


def test_only_named_distributions_and_no_double_registration(site, monkeypatch):
    site("fake-extra", "1.0", {"extra": "fakeplug_extra2"}, {"fakeplug_extra2": OBJECTIVE.replace("{name}", "scaled")})
    monkeypatch.setenv(DISABLE_ENV, "standard")
    shipped = load_plugins(distributions=["wsreid"], use_env=False).registry
    assert ("objective", "itc") in shipped and ("objective", "scaled") not in shipped
    # a recipe may list a module that is also installed: it is registered once
    both = load_plugins(["fakeplug_extra2"])
    assert both.registry.get("objective", "scaled").provider == "extra"


def test_a_mistyped_hook_name_fails_loudly():
    class Typo:
        @staticmethod
        @hookimpl
        def wsreid_epoch_ends(run, epoch, logs):
            pass

    with pytest.raises(PluginError, match=r"plugin 'typo' implements an unknown hook 'wsreid_epoch_ends' "
                                          r"\(did you mean 'wsreid_epoch_end'\? hook names are listed in docs/hooks.md\)"):
        load_plugins(entry_points=False, objects=[("typo", Typo)])


def test_an_installed_plugin_with_a_mistyped_hook_is_broken_not_fatal(site):
    source = "from wsreid import hookimpl\n\n@hookimpl\ndef wsreid_run_ends(run, metrics):\n    pass\n"
    site("fake-typo", "0.4", {"typo": "fakeplug_typo"}, {"fakeplug_typo": source})
    plugins = load_plugins()
    assert [(b.name, b.distribution) for b in plugins.broken] == [("typo", "fake-typo")]
    assert plugins.broken[0].error == ("implements an unknown hook 'wsreid_run_ends' (did you mean 'wsreid_run_end'? "
                                       "hook names are listed in docs/hooks.md)")
    assert not plugins.manager.has_plugin("typo") and ("objective", "itc") in plugins.registry


def test_a_hook_asking_for_an_unknown_argument_marks_an_installed_plugin_broken(site):
    source = "from wsreid import hookimpl\n\n@hookimpl\ndef wsreid_epoch_end(run, epochs):\n    pass\n"
    site("fake-args", "0.3", {"args": "fakeplug_args"}, {"fakeplug_args": source})
    plugins = load_plugins()
    assert [b.name for b in plugins.broken] == ["args"]
    assert "plugin 'args': " in plugins.broken[0].error and "epochs" in plugins.broken[0].error
    with pytest.raises(PluginError) as info:
        load_plugins(["fakeplug_args"], entry_points=False)
    assert str(info.value) == (
        "plugin 'fakeplug_args': wsreid_epoch_end(run, epochs) asks for 'epochs', which the hook does not pass (did "
        "you mean 'epoch'? wsreid_epoch_end is called with run, epoch, logs; an implementation may take any of them, "
        "by name (docs/hooks.md))")  # it was pluggy's text, naming the plugin twice and not the right name


def test_a_register_hook_with_a_misnamed_argument_is_told_the_name():
    class Reg:
        @staticmethod
        @hookimpl
        def wsreid_register(reg):
            pass

    with pytest.raises(PluginError) as info:
        load_plugins(entry_points=False, objects=[("reg", Reg)])
    assert str(info.value) == (
        "plugin 'reg': wsreid_register(reg) asks for 'reg', which the hook does not pass (did you mean 'registry'? "
        "wsreid_register is called with registry; an implementation may take any of them, by name (docs/hooks.md))")


def test_a_component_name_under_another_kind_says_where_it_is():
    registry = load_plugins(distributions=["wsreid"], use_env=False).registry
    with pytest.raises(RecipeError) as err:
        registry.get("objective", "lrc", where="recipe.yaml:3: objectives.x.name")
    assert str(err.value).startswith("recipe.yaml:3: objectives.x.name: unknown objective 'lrc'")
    assert "'lrc' is a local_association (from wsreid 0.1.0)" in str(err.value)


def test_what_a_plugin_prints_while_it_loads_goes_to_stderr(site, capsys):
    """A plugin that printed while imported put its text before the JSON of `wsreid schema`
    (no longer JSON for an editor) and of `wsreid eval`."""
    site("fake-loud", "1.0", {"loud": "fakeplug_loud"},
         {"fakeplug_loud": OBJECTIVE.replace("{name}", "loud") + "\nprint('loud: hello from import')\n"})
    assert main(["schema"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["title"].startswith("wsreid recipe")
    assert captured.err == "loud: hello from import\n"


class _Colour(__import__("enum").Enum):
    RED = "red"


@pytest.mark.parametrize("value, written, read_back", [
    (None, "null", None), (True, "true", True), (0.5, "0.5", 0.5), (2, "2", 2), ("small", "small", "small"),
    ("null", '"null"', "null"), ("1e-5", '"1e-5"', "1e-5"), ("a: b", '"a: b"', "a: b"), ("", '""', ""),
    ((384, 128), "[384, 128]", [384, 128]), ({"hidden": 8, "x": None}, "{hidden: 8, x: null}", {"hidden": 8, "x": None}),
    ([0.02, 0.4], "[0.02, 0.4]", [0.02, 0.4]),
    # strings that end or structure a plain string inside a flow collection, and keys too
    (["a, b", "x]y"], '["a, b", "x]y"]', ["a, b", "x]y"]), ({"k": "a, b"}, '{k: "a, b"}', {"k": "a, b"}),
    ({"null": 1}, '{"null": 1}', {"null": 1}),
    (float("inf"), ".inf", float("inf")), (float("-inf"), "-.inf", float("-inf")),
    ("line\nbreak", '"line\\nbreak"', "line\nbreak"), (_Colour.RED, "red", "red"),
])
def test_plugins_writes_a_default_as_a_recipe_would(value, written, read_back):
    from wsreid.recipe.yamlio import flow_text, parse_flow_value

    assert flow_text(value) == written
    assert parse_flow_value(written) == read_back  # read back as the value it shows
