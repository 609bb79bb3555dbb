"""Tests of the knn association: the wsreid conformance kit, and relations by hand."""

import pytest
import torch

from wsreid.pluginmanager import load_plugins
from wsreid.testing import check_component
from wsreid_knn import KnnAssociation, knn_relation


@pytest.mark.parametrize("params", [{}, {"k": 3, "mutual": False, "view": "asymmetric"}])
def test_knn_keeps_the_local_association_contract(params):
    check_component("local_association", "knn", params)


def test_mutual_nearest_neighbours_by_hand():
    # 0 and 1 are each other's nearest; 2's nearest is 1, but 1's is 0; 3 is far from all
    image = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.6, 0.4], [-0.2, 1.0]])
    weights = knn_relation(image, image, k=1, mutual=True, min_similarity=0.5, relation_weight=0.1)
    expected = torch.tensor([[1.0, 0.1, 0.0, 0.0], [0.1, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert torch.equal(weights, expected)
    one_sided = knn_relation(image, image, k=1, mutual=False, min_similarity=0.5, relation_weight=0.1)
    assert one_sided[2, 1] == one_sided[1, 2] == 0.1  # 1 is 2's nearest, so they relate
    assert one_sided[3].tolist() == [0.0, 0.0, 0.0, 1.0]  # 3 has no neighbour above 0.5


def test_registered_through_the_entry_point():
    entry = load_plugins().registry.get("local_association", "knn")
    assert entry.cls is KnnAssociation
    assert entry.distribution == "wsreid-knn-association"
