"""Tests of the memory association, the triplet objective and the loss log settings."""

import pytest
import torch
import torch.nn.functional as F

from wsreid.errors import RecipeError
from wsreid.pluginmanager import load_plugins
from wsreid.recipe import load_recipe
from wsreid.testing import check_component
from wsreid_memory import hardest_negative_triplet, mutual_neighbours


@pytest.mark.parametrize("params", [{}, {"k": 1, "momentum": 0.0, "start_epoch": 3, "view": "asymmetric"}])
def test_memory_keeps_the_global_association_contract(params):
    check_component("global_association", "mutual-knn-memory", params)


@pytest.mark.parametrize("params", [{}, {"margin": 0.5, "relation": "memory"}])
def test_triplet_keeps_the_objective_contract(params):
    check_component("objective", "vse-triplet", params)


def test_mutual_neighbours_by_hand():
    # memory rows 0, 1 are close; 2 is nearest to 1 but 1's nearest is 0; 3 is far away
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.6, 0.4], [-0.2, 1.0]]), dim=1)
    filled = torch.ones(4, dtype=torch.bool)
    index = torch.tensor([0, 2])  # the batch holds pairs 0 and 2, with their memory features
    nearest, mutual = mutual_neighbours(bank[index], bank[index], index, bank, bank, filled, k=1, min_similarity=0.5)
    assert nearest.tolist() == [[1], [1]]
    assert mutual.tolist() == [[True], [False]]  # 1's nearest is 0, not 2


def test_triplet_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=1)
    # s = [[0.707, 0], [0.707, 1]]: pair 0's hardest negative image is row 1 (0.707 vs 0.707)
    loss = hardest_negative_triplet(image, text, margin=0.2)
    expected = ((0.2 - 0.7071 + 0.0) * 0 + (0.2 - 0.7071 + 0.7071) + 0 + 0) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-4)
    same = torch.tensor([[False, True], [True, False]])  # a relation says both pairs show one person
    assert float(hardest_negative_triplet(image, text, margin=0.2, same_person=same)) == 0.0


def test_loss_log_settings_are_validated(tmp_path):
    registry = load_plugins().registry
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: {name: synth-pedes, size: tiny}\nencoder: {name: clip}\n"
                      "objectives: {itc: {name: itc}}\nsettings:\n  loss_log: {every: 0}\n")
    with pytest.raises(RecipeError, match=r"recipe.yaml:5: settings.loss_log.every: input should be greater than"):
        load_recipe(recipe, registry=registry)
    recipe.write_text(recipe.read_text().replace("every: 0", "every: 3"))
    assert load_recipe(recipe, registry=registry).recipe.settings["loss_log"].every == 3
