"""One rule for "the run directory holds the same recipe": same_recipe (wsreid ablate keeps
a finished run, or resumes one, only then) and check_resume_recipe (--resume) agree - the
saved recipe.yaml loaded again has the same values, output_dir aside."""

from __future__ import annotations

import re

import pytest

from conftest import RECIPES, TINY_OVERRIDES
from wsreid.engine.rundir import check_resume_recipe, same_recipe, write_run_files
from wsreid.errors import UserError


@pytest.fixture
def saved_run(tmp_path):
    """A run directory holding the resolved recipe.yaml of a tiny DGIA recipe (several
    labels per section), as a run writes it; -> (run_dir, resolved yaml, resolved values)."""
    from ruamel.yaml import YAML

    from wsreid.engine.session import resolved_yaml_for
    from wsreid.recipe import load_recipe

    tree = {"extends": str(RECIPES / "dgia.yaml"), "output_dir": str(tmp_path / "run"),
            "data": {"name": "synth-pedes", "size": "tiny", "root": str(tmp_path / "data")},
            **{key: dict(value) for key, value in TINY_OVERRIDES.items()}, "init": None}
    yaml = YAML()
    yaml.version = (1, 2)
    with (tmp_path / "recipe.yaml").open("w") as f:
        yaml.dump(tree, f)
    loaded = load_recipe(tmp_path / "recipe.yaml")
    run_dir = tmp_path / "run"
    text = resolved_yaml_for(loaded, run_dir)
    write_run_files(run_dir, text, {})
    return run_dir, text, {**loaded.resolved, "output_dir": str(run_dir)}


def _swap(text: str, first: str, second: str) -> str:
    """``text`` with the adjacent blocks starting at the lines ``first`` and ``second``
    (each running to the next line as little indented) swapped."""
    indent = len(first) - len(first.lstrip())
    block = r"(?:\n{0}[ ]+.*)*\n".format(" " * indent)
    found = re.search(f"(?m)^({re.escape(first)}{block})({re.escape(second)}{block})", text)
    assert found, (first, second)
    return text.replace(found.group(0), found.group(2) + found.group(1))


def _verdicts(run_dir, text, resolved) -> list[bool]:
    """same_recipe and check_resume_recipe, each given the text alone and with its values."""
    def resumes(values) -> bool:
        try:
            check_resume_recipe(run_dir, text, values)
        except UserError:
            return False
        return True

    return [same_recipe(run_dir, text), same_recipe(run_dir, text, (), resolved), resumes(None), resumes(resolved)]


@pytest.mark.parametrize("edit", [
    pytest.param(lambda t: t.replace("# Run it again with", "# my note; run it again with"), id="comment"),
    pytest.param(lambda t: _swap(t, "  epochs: 2", "  batch_size: 16"), id="key order"),
    pytest.param(lambda t: _swap(t, "  sdm_local:", "  sdm_global:"), id="label order"),
    pytest.param(lambda t: _swap(t, "local_associations:", "global_associations:"), id="section order"),
])
def test_a_recipe_that_differs_only_in_form_is_the_same_for_both(saved_run, edit):
    run_dir, text, resolved = saved_run
    saved = run_dir / "recipe.yaml"
    saved.write_text(edit(text))
    assert saved.read_text() != text
    assert _verdicts(run_dir, text, resolved) == [True, True, True, True]


def test_a_recipe_with_another_value_is_different_for_both(saved_run):
    run_dir, text, resolved = saved_run
    saved = run_dir / "recipe.yaml"
    assert _verdicts(run_dir, text, resolved) == [True, True, True, True]
    for changed in (text.replace("  lr: 0.0002\n", "  lr: 0.5\n"),
                    re.sub(r"(?m)^(  sdm_global:\n    name: sdm\n    weight:) 1.0$", r"\1 2.0", text)):
        assert changed.count("\n") == text.count("\n") and changed != text
        saved.write_text(changed)
        assert _verdicts(run_dir, text, resolved) == [False, False, False, False]
