"""Every bad input to `wsreid run` is one line on stderr, exit code 2, no traceback, and
leaves no output directory behind."""

from __future__ import annotations

import pytest

from wsreid.cli import main

CASES = {
    "unknown key": (["-o", "train.lrr=0.1"], "unknown key 'lrr' (did you mean 'lr'?)"),
    "unknown component": (["-o", "local_associations.lrc.name=lcr"], "unknown local_association 'lcr' (did you mean 'lrc'?)"),
    "wrong type": (["-o", "train.epochs=many"], "train.epochs: input should be a valid integer"),
    "negative lr": (["-o", "train.lr=-1e-5"], "train.lr: input should be greater than 0"),
    "threshold above 1": (["-o", "local_associations.lrc.threshold_text=1.2"], "threshold_text: input should be less than or equal to 1"),
    "mask ratio 1": (["-o", "pair_construction.mask_ratio=1.0"], "mask_ratio: input should be less than 1"),
    "batch of one": (["-o", "train.batch_size=1"], "a batch needs at least 2 pairs"),
    "missing dataset root": (["-o", "data={name: cuhk-pedes, root: /nonexistent/cuhk}"], "/nonexistent/cuhk"),
    "bad override syntax": (["-o", "train.lr"], "train.lr"),
    "training images per id not a distribution": (
        ["-o", "data.train_images_per_id=[0.5, 0.4]"],
        "data: train_images_per_id [0.5, 0.4] must be probabilities (of 2, 3, ... images) summing to 1",
    ),
    "broken plugin module": (["-o", "plugins=[wsreid_test_broken]"], "plugin module 'wsreid_test_broken'"),
    # it read 'input should be a valid dictionary or instance of EvalConfig (got 5)'
    "a section given a value": (["-o", "eval=5"], "override -o eval=5: eval: takes a mapping of keys, got 5 (set one "
                                                  "of its keys, e.g. eval.KEY=VALUE; its keys: every, batch_size, "
                                                  "select, chunk_size)\n"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_no_output(case, make_recipe, tmp_path, capsys, test_plugins_path):
    args, expected = CASES[case]
    recipe = make_recipe("dgia.yaml")
    code = main(["run", str(recipe), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_recipe_extending_itself(tmp_path, capsys):
    recipe = tmp_path / "loop.yaml"
    recipe.write_text("extends: loop.yaml\nobjectives: {itc: {name: itc}}\n")
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "extends itself" in err and err.count("\n") == 1


def test_debug_flag_shows_the_traceback(make_recipe, tmp_path, capsys):
    """With --debug the override's RecipeError propagates out of main (so Python prints its
    traceback) with its whole message, instead of the one 'error: ' line on stderr."""
    recipe = make_recipe("dgia.yaml")
    from wsreid.errors import RecipeError

    with pytest.raises(RecipeError) as caught:
        main(["run", str(recipe), "-o", "train.lrr=1", "--debug"])
    assert str(caught.value) == "override -o train.lrr=1: train.lrr: unknown key 'lrr' (did you mean 'lr'?)"
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "run").exists()
