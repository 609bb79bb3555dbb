"""The shipped baseline recipes: they validate, the cluster pseudo-label baseline trains
with its three losses on schedule, and the supervised bound is marked as such."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import RECIPES
from wsreid.cli import main
from wsreid.recipe import load_recipe


@pytest.mark.parametrize("name", ["itc.yaml", "cluster-pseudo-labels.yaml", "supervised.yaml"])
def test_baseline_recipe_validates(name, capsys):
    assert main(["validate", str(RECIPES / "baselines" / name)]) == 0
    assert "valid" in capsys.readouterr().out


def test_cluster_pseudo_label_recipe_settings():
    r = load_recipe(str(RECIPES / "baselines" / "cluster-pseudo-labels.yaml"), []).recipe
    g = r.global_associations["pseudo_labels"]
    assert (g.name, g.k1, g.k2, g.eps, g.min_samples, g.cluster_on) == ("cluster-pseudo-labels", 30, 6, 0.6, 4, "image")
    t = r.objectives["triplet"]
    assert (t.name, t.relation, t.margin, t.start_epoch) == ("triplet", "pseudo_labels", 0.3, 4)
    assert r.train.epochs == 8 and r.objectives["sdm_pseudo"].relation == "pseudo_labels"
    assert r.objectives["itc"].name == "itc"


def test_cluster_pseudo_label_baseline_trains_all_losses(make_recipe, tmp_path):
    """itc and sdm_pseudo are positive from epoch 1; triplet is absent in epoch 1 and positive
    from its start_epoch 2 (the hardest negatives violate the 0.3 margin on the tiny data);
    and every step's loss/total is the sum of the (weight 1) objective columns, so each
    logged loss really reaches the trained total."""
    recipe = make_recipe("baselines/cluster-pseudo-labels.yaml",
                         {"train": {"epochs": 2, "batch_size": 64},
                          "objectives": {"triplet": {"start_epoch": 2}}})
    assert main(["run", str(recipe)]) == 0
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "epochs.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["loss/triplet"] == "" and float(rows[1]["loss/triplet"]) > 0
    assert all(float(r["loss/sdm_pseudo"]) > 0 and float(r["loss/itc"]) > 0 for r in rows)
    steps = list(csv.DictReader((tmp_path / "run" / "logs" / "steps.csv").open()))
    assert {r["epoch"] for r in steps} == {"1", "2"}
    for r in steps:
        assert (r["loss/triplet"] == "") == (r["epoch"] == "1"), r
        terms = [float(r[k]) for k in ("loss/itc", "loss/sdm_pseudo", "loss/triplet") if r[k] != ""]
        assert all(t > 0 for t in terms), r
        assert float(r["loss/total"]) == pytest.approx(sum(terms), rel=1e-6), r
    assert all(0 <= float(r["diag/pseudo_labels/pair_precision"]) <= 100 for r in rows)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["weakly_supervised"] is True


def test_supervised_bound_is_marked_not_weakly_supervised():
    from wsreid.engine.offline_eval import supervision as _supervision

    loaded = load_recipe(str(RECIPES / "baselines" / "supervised.yaml"), [])
    plugins = loaded.plugins
    weakly, note = _supervision(loaded.recipe, plugins, zero_shot=False)
    assert weakly is False and note == ("NOT weakly supervised: trained with true identity labels via "
                                        "local_associations.true_identity")
    assert _supervision(loaded.recipe, plugins, zero_shot=True) == (True, None)  # no training: nothing learned
    loaded = load_recipe(str(RECIPES / "baselines" / "itc.yaml"), [])
    plugins = loaded.plugins
    assert _supervision(loaded.recipe, plugins, zero_shot=False) == (True, None)
