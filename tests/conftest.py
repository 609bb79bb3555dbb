"""Shared fixtures: a generated tiny synth-pedes dataset and tiny-encoder recipes built
on top of the shipped recipes (so the tests run what users run, only smaller)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def _hide_ambient_plugin_distributions() -> None:
    """The suite tests this project, not the environment it runs in: wsreid entry points
    of other distributions already installed when the session starts (a developer's own
    plugin packages, a stale editable install whose folder is gone) are hidden from the
    plugin manager. Distributions the tests install themselves (dist-info folders under
    a test's tmp_path) are seen as usual.

    Processes the tests start (``wsreid`` commands, a study's child runs, torchrun ranks)
    do not see this patch: for them the ambient distributions are named in
    ``WSREID_DISABLE_PLUGINS``, the command line's own way to leave a plugin out, except
    the example packages the tests install themselves (examples/). This process drops
    those names again (it never sees the distributions, so it would warn that there is
    nothing to disable). A test that sets the variable itself decides for its children."""
    import importlib.metadata as md
    import os

    import wsreid.pluginmanager as pluginmanager
    from wsreid.pluginmanager import DISABLE_ENV, ENTRY_POINT_GROUP

    def where(ep) -> tuple[str, str] | None:
        if ep.dist is None:
            return None
        return ep.dist.name.lower().replace("_", "-"), str(ep.dist.locate_file(""))

    ambient = {where(ep) for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    ambient = {w for w in ambient if w is not None and w[0] != "wsreid"}
    if not ambient:
        return
    real_entry_points = md.entry_points

    def entry_points(**selection):
        found = real_entry_points(**selection)
        if selection.get("group") != ENTRY_POINT_GROUP:
            return found
        return md.EntryPoints(ep for ep in found if where(ep) not in ambient)

    md.entry_points = entry_points

    installed_by_tests = {pluginmanager._normalise(line.split("=", 1)[1].strip().strip('"'))
                          for project in (REPO / "examples").glob("*/pyproject.toml")
                          for line in project.read_text().splitlines() if line.startswith("name =")}
    hidden = {pluginmanager._normalise(name) for name, _ in ambient} - installed_by_tests
    if not hidden:
        return
    real_disabled_from_env = pluginmanager.disabled_from_env
    os.environ[DISABLE_ENV] = ",".join(sorted(real_disabled_from_env() | hidden))

    def disabled_from_env() -> set[str]:
        return {d for d in real_disabled_from_env() if pluginmanager._normalise(d) not in hidden}

    pluginmanager.disabled_from_env = disabled_from_env


_hide_ambient_plugin_distributions()

# Tiny encoder and schedule: keeps an end-to-end run at a few seconds on 2 cores.
TINY_OVERRIDES = {
    "encoder": {
        "name": "clip",
        "pretrained": None,  # the shipped synth encoder is not this tiny size: random weights
        "embed_dim": 32,
        "vision": {"hidden": 32, "layers": 1, "heads": 2, "patch_size": 8},
        "text": {"hidden": 32, "layers": 1, "heads": 2},
        "image_size": [32, 16],
        "max_length": 64,  # the longest tiny synth-pedes caption is 61 tokens: none is cut (40 cuts 14 %)
    },
    "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "log_every": 2},
    "eval": {"every": 1, "batch_size": 64},
}


@pytest.fixture(autouse=True)
def plugin_warnings_printed_afresh(monkeypatch):
    """Plugin warnings are printed once per process (wsreid.pluginmanager._WARNED): each
    test starts as a fresh command would, so that it sees the warnings of its own loads."""
    from wsreid import pluginmanager

    monkeypatch.setattr(pluginmanager, "_WARNED", set())


@pytest.fixture(scope="session")
def synth_tiny_root(tmp_path_factory) -> Path:
    """synth-pedes 'tiny' generated once per test session (a few seconds)."""
    from wsreid.data.synth import SynthConfig, generate_synth

    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate_synth(SynthConfig(size="tiny", seed=0), root)
    return root


@pytest.fixture
def make_recipe(tmp_path, synth_tiny_root):
    """Write a recipe that extends a shipped recipe with the tiny settings.

    ``make_recipe("dgia.yaml", extra={...})`` -> path of the new recipe file."""
    from ruamel.yaml import YAML

    def _make(base: str, extra: dict | None = None, name: str = "recipe.yaml") -> Path:
        tree = {"extends": str(RECIPES / base), "output_dir": str(tmp_path / "run"),
                "data": {"name": "synth-pedes", "size": "tiny", "root": str(synth_tiny_root)}}
        for key, value in TINY_OVERRIDES.items():
            tree[key] = dict(value)
        tree["init"] = None  # the tests' tiny encoder starts from random weights
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(tree.get(key), dict):
                tree[key] = {**tree[key], **value}
            else:
                tree[key] = value
        path = tmp_path / name
        yaml = YAML()
        yaml.version = (1, 2)
        with path.open("w") as f:
            yaml.dump(tree, f)
        return path

    return _make


@pytest.fixture
def test_plugins_path(monkeypatch):
    """Put tests/plugins_for_tests on sys.path (modules named in a recipe's ``plugins:``)."""
    path = str(Path(__file__).parent / "plugins_for_tests")
    monkeypatch.syspath_prepend(path)
    yield path
    for name in list(sys.modules):
        if name.startswith("wsreid_test_"):
            del sys.modules[name]


def plugin_module(monkeypatch, name: str, *components: tuple[str, str, type]):
    """A plugin module ``name`` put in ``sys.modules`` (for a recipe's ``plugins:`` or
    ``load_plugins([name])``) whose ``wsreid_register`` adds ``(kind, component name,
    class)`` for each of ``components``, in order."""
    import types

    from wsreid import hookimpl

    module = types.ModuleType(name)

    @hookimpl
    def wsreid_register(registry):
        for kind, component, cls in components:
            registry.add(kind, component, cls)

    module.wsreid_register = wsreid_register
    monkeypatch.setitem(sys.modules, name, module)
    return module


def yaml_file(tree: dict, path: Path) -> Path:
    """``tree`` written to ``path`` as a YAML 1.2 recipe -> ``path``."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.version = (1, 2)
    with path.open("w") as f:
        yaml.dump(tree, f)
    return path


def load_script(path: Path, name: str):
    """Import a script of the repository that is not in a package (results/, benchmarks/)
    as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache (returned), and a network that must not be touched: a
    connection attempt fails the test."""
    import socket

    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    def asked(*args, **kwargs):
        raise AssertionError("the network was asked")

    monkeypatch.setattr(socket, "create_connection", asked)
    return cache
