"""A component's checks beyond its own parameters (docs/components.md): ``check_recipe``
sees the whole recipe and refuses a parameter that does not fit another section, citing
the parameter's line; ``check_params`` may warn with ``ParamsCheckWarning``, kept among the
recipe's warnings with the line (printed by ``wsreid validate``, not by the library)."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
from conftest import RECIPES
from pydantic import field_validator

from wsreid import hookimpl
from wsreid.api import Objective, Params, ParamsCheckError, ParamsCheckWarning
from wsreid.cli import main
from wsreid.losses import itc_loss
from wsreid.recipe import load_recipe
from wsreid.recipe.yamlio import display_path


class LateParams(Params):
    after_epoch: int = 1
    cache: str = "here"

    @field_validator("cache")
    @classmethod
    def _cache_known(cls, value):
        if value == "boom":  # a bug of the plugin's validator: not a ValueError, so pydantic lets it out
            return value.no_such_attribute
        return value


class LateItc(Objective):
    """ITC that needs the run to last past ``after_epoch`` (a cross-section rule)."""

    Params = LateParams

    @classmethod
    def check_recipe(cls, params, recipe):
        if params.after_epoch == 99:
            raise TypeError("check_recipe bug")
        if params.after_epoch >= recipe.train.epochs:
            raise ParamsCheckError("after_epoch", f"{params.after_epoch} is not before the run's last epoch "
                                   f"(train.epochs {recipe.train.epochs})", hint="lower it, or train longer")

    @classmethod
    def check_params(cls, params):
        if params.cache == "bug":
            raise KeyError("check_params bug")
        if params.cache == "remote":
            warnings.warn(ParamsCheckWarning("cache", "the remote cache may be out of reach here"))
            warnings.warn("an ordinary warning, passed on", UserWarning)

    def loss(self, features, relations, batch, ctx):
        return itc_loss(features["base"].image, features["base"].text)


class EarlyItc(LateItc):
    """Another objective of the same plugin module."""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    module = types.ModuleType("late_itc_plugin")

    @hookimpl
    def wsreid_register(registry):
        registry.add("objective", "early-itc", EarlyItc)  # registered first, from the same module: not blamed
        registry.add("objective", "late-itc", LateItc)

    module.wsreid_register = wsreid_register
    monkeypatch.setitem(sys.modules, "late_itc_plugin", module)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\nplugins: [late_itc_plugin]\ntrain:\n  epochs: 4\n"
                    "objectives:\n  late:\n    name: late-itc\n    after_epoch: 2\n    cache: here\n")
    return path


def test_check_recipe_refuses_what_does_not_fit_another_section(recipe, capsys):
    assert main(["validate", str(recipe)]) == 0
    capsys.readouterr()
    assert main(["validate", str(recipe), "-o", "train.epochs=2"]) == 2
    assert capsys.readouterr().err == (f"error: {display_path(recipe)}:8: objectives.late.after_epoch: 2 is not before "
                                       "the run's last epoch (train.epochs 2) (lower it, or train longer)\n")


def test_a_params_check_warning_cites_its_line_and_the_recipe_stays_valid(recipe, capsys):
    with pytest.warns(UserWarning, match="an ordinary warning, passed on"):
        assert main(["validate", str(recipe), "-o", "objectives.late.cache=remote"]) == 0
    err = capsys.readouterr().err
    assert err == ("warning: override -o objectives.late.cache=remote: objectives.late.cache: the remote cache may be "
                   "out of reach here\n")
    with pytest.warns(UserWarning, match="an ordinary warning, passed on"):
        loaded = load_recipe(str(recipe), ["objectives.late.cache=remote"])
    assert capsys.readouterr().err == ""
    assert loaded.warnings == ["override -o objectives.late.cache=remote: objectives.late.cache: the remote cache may "
                               "be out of reach here"]


@pytest.mark.parametrize("override, says", [
    ("objectives.late.after_epoch=99", ":6: objectives.late (objective 'late-itc' from plugin 'late_itc_plugin'): "
                                       "check_recipe() failed: TypeError: check_recipe bug"),
    ("objectives.late.cache=bug", ":6: objectives.late (objective 'late-itc' from plugin 'late_itc_plugin'): "
                                  "check_params() failed: KeyError: 'check_params bug'"),
    ("objectives.late.cache=boom", ":6: objectives.late (objective 'late-itc' from plugin 'late_itc_plugin'): a Params "
                                   "validator failed: AttributeError: 'str' object has no attribute "
                                   "'no_such_attribute'"),
])
def test_a_bug_in_a_components_own_check_is_one_line_naming_its_plugin(recipe, capsys, override, says):
    """Before: a raw traceback and exit 1 from wsreid validate and wsreid run (only a
    ParamsCheckError was caught)."""
    assert main(["validate", str(recipe), "-o", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {display_path(recipe)}{says} (a fault of plugin 'late_itc_plugin'") and \
        err.endswith("; --debug shows the traceback)\n") and err.count("\n") == 1, err
