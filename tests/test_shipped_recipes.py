"""Every shipped recipe validates (the paper recipes too: they need data and weights to
run, not to validate), and the paper recipes carry the paper's schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsreid.cli import main
from wsreid.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
COMPLETE = sorted(p for p in RECIPES.rglob("*.yaml") if "base" not in p.parts and "ablations" not in p.parts)


def test_there_are_recipes_to_check():
    names = {p.relative_to(RECIPES).as_posix() for p in COMPLETE}
    assert {"dgia.yaml", "baselines/itc.yaml", "paper/cuhk-pedes-dgia.yaml", "paper/icfg-pedes-dgia.yaml",
            "paper/rstpreid-dgia.yaml"} <= names


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_recipe_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("dataset, epochs, select", [("cuhk-pedes", 40, "val"), ("icfg-pedes", 40, "last"),
                                                      ("rstpreid", 16, "val")])
def test_paper_recipes_carry_the_paper_setting(dataset, epochs, select):
    loaded = load_recipe(str(RECIPES / "paper" / f"{dataset}-dgia.yaml"), [])
    r = loaded.recipe
    assert r.encoder.pretrained == "openai/clip-vit-base-patch16"
    assert tuple(r.encoder.image_size) == (384, 128) and r.encoder.max_length == 77
    t = r.train
    assert (t.epochs, t.batch_size, t.lr, t.eps, t.weight_decay, t.bias_lr_factor, t.bias_weight_decay) == (
        epochs, 64, 1e-5, 1e-3, 4e-5, 2.0, 0.0)
    assert (t.warmup_epochs, t.warmup_factor, t.seed) == (5, 0.1, 0) and r.eval.select == select
    lrc, gsrc = r.local_associations["lrc"], r.global_associations["gsrc"]
    assert (lrc.threshold_image, lrc.threshold_text, lrc.relation_weight) == (0.7, 0.7, 0.1)
    assert (gsrc.top_k, gsrc.threshold, gsrc.momentum, gsrc.gamma, gsrc.start_epoch) == (3, 0.7, 0.9, 1.0, 2)
    assert r.pair_construction.name == "iasc" and r.pair_construction.mask_ratio == 0.5
    assert set(r.objectives) == {"itc", "sdm_local", "sdm_global", "sdm_asymmetric"}
