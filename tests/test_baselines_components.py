"""Baseline components: cluster pseudo labels, triplet objective, true-identity relation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsreid.distributed import Distributed
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wsreid.api import Batch, BuildContext, EpochContext, Relation, StepContext, ViewFeatures
from wsreid.errors import TrainingError
from wsreid.pluginmanager import load_plugins
from wsreid.testing.inputs import StubEncoder
from wsreid_baselines import ClusterPseudoLabels, Triplet, TrueIdentity
from wsreid_baselines.pseudo_labels import pair_precision_recall, pseudo_labels_from_clusters
from wsreid_baselines.triplet import hardest_negative_triplet


def make_batch(index, person_id=None) -> Batch:
    index = torch.as_tensor(index, dtype=torch.long)
    b = len(index)
    person = torch.as_tensor(person_id if person_id is not None else [0] * b, dtype=torch.long)
    return Batch(
        images=torch.zeros(b, 3, 4, 2),
        input_ids=torch.zeros(b, 3, dtype=torch.long),
        attention_mask=torch.ones(b, 3, dtype=torch.long),
        index=index,
        image_id=index.clone(),
        person_id=person,
    )


def step(epoch: int) -> StepContext:
    return StepContext(epoch=epoch, step=0, num_epochs=30, dist=None)


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


# --------------------------------------------------------------------------- registration


def test_plugin_registers_the_three_components():
    registry = load_plugins(["wsreid_baselines"], entry_points=False).registry
    assert registry.get("global_association", "cluster-pseudo-labels").cls is ClusterPseudoLabels
    assert registry.get("objective", "triplet").cls is Triplet
    entry = registry.get("local_association", "true-identity")
    assert entry.cls is TrueIdentity and "NOT weakly supervised" in entry.summary
    assert TrueIdentity.weakly_supervised is False
    assert ClusterPseudoLabels.weakly_supervised is True and Triplet.weakly_supervised is True
    with pytest.raises(ValidationError) as caught:
        Triplet.Params()  # the relation label is required
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("relation",), "missing")]
    with pytest.raises(ValidationError) as caught:
        ClusterPseudoLabels.Params(k_1=3)  # the parameter is k1
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("k_1",), "extra_forbidden")]


# --------------------------------------------------------------------------- pseudo labels


def three_clusters_and_two_outliers(seed: int = 0):
    """26 items: clusters of 8 around 3 orthogonal directions (shuffled), 2 lone items."""
    g = torch.Generator().manual_seed(seed)
    d = 16
    centres = torch.eye(d)[:5]
    truth = torch.tensor([0] * 8 + [1] * 8 + [2] * 8 + [3, 4])
    order = torch.randperm(26, generator=g)
    truth = truth[order]
    x = unit(centres[truth] + 0.05 * torch.randn(26, d, generator=g))
    return x, truth


def build_cluster(n: int, **params) -> ClusterPseudoLabels:
    defaults = dict(k1=6, k2=2, eps=0.6, min_samples=4)
    defaults.update(params)
    return ClusterPseudoLabels(ClusterPseudoLabels.Params(**defaults), BuildContext(num_train=n))


def epoch_context(epoch: int, image, text=None, person_ids=None, calls=None) -> EpochContext:
    captions = image if text is None else text

    def extract(text=True):
        if calls is not None:
            calls.append(epoch)
        return ViewFeatures(image=image, text=captions if text else None)

    return EpochContext(epoch=epoch, num_epochs=30, dist=Distributed(), extract_train_features=extract, train_person_ids=person_ids)


def test_relation_keys_pseudo_labels_by_dataset_index():
    x, truth = three_clusters_and_two_outliers()
    component = build_cluster(26)
    component.epoch_start(epoch_context(1, x, person_ids=truth))
    stats = component.diagnostics()
    assert stats["clusters"] == 3.0
    assert stats["outlier_share"] == pytest.approx(100 * 2 / 26)  # diagnostics are in %
    assert stats["pair_precision"] == 100.0 and stats["pair_recall"] == 100.0
    assert component.diagnostics() == {}  # reset after reading

    index = torch.tensor([25, 3, 17, 0, 9, 12, 21, 5])  # any loader order
    truth_batch = truth[index]
    batch_features = ViewFeatures(image=unit(torch.randn(8, 4)), text=unit(torch.randn(8, 4)))
    relation = component.relate({"base": batch_features}, make_batch(index), step(1))
    expected = (truth_batch[:, None] == truth_batch[None, :]).float()  # lone items 3, 4: self only
    assert torch.equal(relation.weights, expected)
    assert relation.image is batch_features.image and relation.text is batch_features.text
    assert relation.view == "base"


def test_outliers_relate_only_to_themselves():
    labels = pseudo_labels_from_clusters(np.array([-1, 0, -1, 1, 0, -1]))
    assert labels.tolist() == [2, 0, 3, 1, 0, 4]
    assert pseudo_labels_from_clusters(np.array([-1, -1])).tolist() == [0, 1]


def test_outliers_get_one_label_per_image():
    # rows 0 and 2 show one image, rows 4 and 5 another: both outlier images keep one label
    groups = np.array([0, 1, 0, 2, 3, 3])
    labels = pseudo_labels_from_clusters(np.array([-1, 0, -1, 0, -1, -1]), groups)
    assert labels.tolist() == [1, 0, 1, 0, 2, 2]
    # an image with a clustered row: every row of it takes that cluster (the first clustered row's)
    labels = pseudo_labels_from_clusters(np.array([-1, 1, 0, -1, 0]), np.array([0, 0, 0, 1, 2]))
    assert labels.tolist() == [1, 1, 1, 2, 0]
    # without groups every row is its own image (the old rule)
    assert pseudo_labels_from_clusters(np.array([-1, 0, -1])).tolist() == [1, 0, 2]


def test_captions_of_an_outlier_image_share_its_label():
    """Caption-level rows repeat an image's features once per caption; a DBSCAN outlier
    image with two captions must give both captions ONE label (they relate to each other
    and to nothing else), as every text inherits its image's label."""
    x, truth = three_clusters_and_two_outliers()  # 26 distinct images, 2 of them lone
    lone = torch.nonzero(truth >= 3).flatten()
    # one caption per image, a second caption for every image: rows 26.. repeat rows 0..25
    rows = torch.cat([torch.arange(26), torch.arange(26)])
    # k1 counts rows: twice the rows per image need about twice the k1 of the fixture's 6
    component = build_cluster(52, k1=14, k2=2)
    component.epoch_start(epoch_context(1, x[rows], person_ids=truth[rows]))
    stats = component.diagnostics()
    assert stats["clusters"] == 3.0 and stats["pair_precision"] == 100.0 and stats["pair_recall"] == 100.0
    labels = component.labels
    assert torch.equal(labels[:26], labels[26:])  # each caption inherits its image's label
    for i in lone.tolist():
        assert int((labels == labels[i]).sum()) == 2  # the outlier image's two captions, nothing else
    index = torch.tensor([lone[0], lone[0] + 26, lone[1], 0])
    relation = component.relate({"base": ViewFeatures(image=x[:4], text=x[:4])}, make_batch(index), step(1))
    assert relation.weights[:3, :3].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_before_start_epoch_nothing_is_extracted_or_related():
    x, truth = three_clusters_and_two_outliers()
    component = build_cluster(26, start_epoch=2)
    calls: list[int] = []
    component.epoch_start(epoch_context(1, x, calls=calls))
    features = {"base": ViewFeatures(image=x[:4], text=x[:4])}
    assert calls == [] and component.relate(features, make_batch([0, 1, 2, 3]), step(1)) is None
    component.epoch_start(epoch_context(2, x, calls=calls))
    assert calls == [2] and component.relate(features, make_batch([0, 1, 2, 3]), step(2)) is not None


def test_state_round_trip_restores_labels():
    x, _ = three_clusters_and_two_outliers(seed=1)
    component = build_cluster(26)
    assert component.state_tensors() == {}
    component.epoch_start(epoch_context(1, x))
    restored = build_cluster(26)
    restored.load_state_tensors(component.state_tensors())
    assert torch.equal(restored.labels, component.labels)
    features = {"base": ViewFeatures(image=x[:6], text=x[:6])}
    batch = make_batch([5, 4, 3, 2, 1, 0])
    assert torch.equal(restored.relate(features, batch, step(1)).weights, component.relate(features, batch, step(1)).weights)
    with pytest.raises(TrainingError) as caught:
        build_cluster(30).load_state_tensors(component.state_tensors())
    assert str(caught.value) == "cluster-pseudo-labels: checkpoint holds (26,) labels for 30 training pairs"


def test_cluster_on_text_uses_text_features():
    x, truth = three_clusters_and_two_outliers(seed=2)
    noise = unit(torch.randn(26, 16, generator=torch.Generator().manual_seed(9)))
    on_text = build_cluster(26, cluster_on="text")
    on_text.epoch_start(epoch_context(1, noise, text=x, person_ids=truth))
    assert on_text.diagnostics()["pair_recall"] == 100.0
    on_image = build_cluster(26, cluster_on="image")
    on_image.epoch_start(epoch_context(1, noise, text=x, person_ids=truth))
    assert on_image.diagnostics()["pair_recall"] < 50.0
    # identical image and text features: the concatenation has the same cosines as either
    both = build_cluster(26, cluster_on="image+text")
    both.epoch_start(epoch_context(1, x, text=x))
    on_image.epoch_start(epoch_context(1, x, text=noise))
    assert torch.equal(both.labels, on_image.labels)


class _CountingEncoder(StubEncoder):
    """StubEncoder with a whitespace tokenizer that counts the captions it encodes."""

    def __init__(self):
        super().__init__(image_size=(8, 4))
        self.texts_encoded = 0

    def tokenize(self, texts):  # two tokens per caption, padded to max_length as the contract asks
        ids = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        ids[:, :2] = torch.tensor([[5 + len(t) % 50, 6 + t.count("a") % 50] for t in texts])
        mask = torch.zeros_like(ids)
        mask[:, :2] = 1
        return ids, mask

    def encode_text(self, input_ids, attention_mask):
        self.texts_encoded += len(input_ids)
        return super().encode_text(input_ids, attention_mask)


def test_clustering_on_images_does_not_encode_the_captions(tmp_path):
    """Clustering on image features needs no text features: it asks
    extract_train_features for the images only, and no caption is encoded."""
    from PIL import Image

    from wsreid.api import PairRecord
    from wsreid.engine.evaluate import extract_text_features, extract_train_features

    paths = []
    for i, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (4, 8), colour).save(paths[-1])
    captions = ["a red one", "the same red one", "a green one", "blue", "blue again"]
    images = [0, 0, 1, 2, 2]
    records = [PairRecord(i, paths[m], c, m, m) for i, (c, m) in enumerate(zip(captions, images))]
    encoder = _CountingEncoder()
    features = extract_train_features(encoder, records, 2, Distributed(), text=False)
    assert features.image.shape == (5, 16) and features.text is None and encoder.texts_encoded == 0
    assert torch.equal(features.image[0], features.image[1]) and not torch.equal(features.image[0], features.image[2])
    # cluster on the images, through the engine's signature: the captions are never encoded
    component = build_cluster(5, k1=2, k2=1, min_samples=2)
    extract = lambda text=True: extract_train_features(encoder, records, 2, Distributed(), text=text)  # noqa: E731
    component.epoch_start(EpochContext(1, 30, Distributed(), extract))
    assert encoder.texts_encoded == 0 and torch.equal(component.labels[:2], component.labels[1:2].repeat(2))
    # the default encodes every caption once, with the same image features
    both = extract_train_features(encoder, records, 2, Distributed())
    assert encoder.texts_encoded == 5 and both.text.shape == (5, 16) and torch.equal(both.image, features.image)
    assert torch.equal(both.text, extract_text_features(_CountingEncoder(), captions, 2, Distributed()))
    assert isinstance(features, ViewFeatures) and features.image_raw is None and features.text_raw is None


def test_feature_count_must_match_training_set():
    x, _ = three_clusters_and_two_outliers()
    with pytest.raises(TrainingError) as caught:
        build_cluster(27).epoch_start(epoch_context(1, x))
    assert str(caught.value) == "cluster-pseudo-labels: feature extraction returned 26 rows for 27 training pairs"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=30))
def test_pair_precision_recall_brute_force(pairs):
    pseudo = np.array([p for p, _ in pairs])
    truth = np.array([t for _, t in pairs])
    n = len(pairs)
    same_p = [(i, j) for i in range(n) for j in range(i + 1, n) if pseudo[i] == pseudo[j]]
    same_t = {(i, j) for i in range(n) for j in range(i + 1, n) if truth[i] == truth[j]}
    both = sum(1 for pair in same_p if pair in same_t)
    precision, recall = pair_precision_recall(pseudo, truth)
    assert precision == pytest.approx(both / len(same_p) if same_p else 1.0)
    assert recall == pytest.approx(both / len(same_t) if same_t else 1.0)


# --------------------------------------------------------------------------- triplet

IMAGE = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
TEXT = torch.tensor([[0.8, 0.6], [0.0, 1.0], [0.6, -0.8]])
# items 0 and 1 are related, 2 stands alone
WEIGHTS = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_triplet_hand_computed_paired_positive():
    # image->text similarities [[.8, 0, .6], [.96, .8, -.28], [.6, 1, -.8]]
    # image->text hinges: .3+.6-.8 = .1 | .3-.28-.8 < 0 | .3+1+.8 = 2.1 -> mean 2.2/3
    # text->image hinges: .3+.6-.8 = .1 | .3+1-.8 = .5 | .3+.6+.8 = 1.7 -> mean 2.3/3
    assert hardest_negative_triplet(IMAGE, TEXT, WEIGHTS).item() == pytest.approx(4.5 / 3, abs=1e-6)


def test_triplet_hand_computed_hardest_positive():
    # image->text: .3+.6-0 = .9 | 0 | 2.1 -> 3.0/3; text->image: .1 | .3+1-0 = 1.3 | 1.7 -> 3.1/3
    value = hardest_negative_triplet(IMAGE, TEXT, WEIGHTS, positive="hardest").item()
    assert value == pytest.approx(6.1 / 3, abs=1e-6)


def test_triplet_memory_rows_and_rows_without_negatives():
    # Q = 2 query rows over 3 candidates: image->text .1, 0 -> .05; text->image .1, .5 -> .3
    assert hardest_negative_triplet(IMAGE, TEXT, WEIGHTS[:2]).item() == pytest.approx(0.35, abs=1e-6)
    image = IMAGE.clone().requires_grad_(True)
    loss = hardest_negative_triplet(image, TEXT, torch.ones(3, 3))  # no negatives anywhere
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(image.grad).all()
    # margin .5 adds .2 to each active hinge; row 1 image->text stays inactive (.5-.28-.8 < 0)
    assert hardest_negative_triplet(IMAGE, TEXT, WEIGHTS, margin=0.5).item() == pytest.approx(
        (0.3 + 2.3) / 3 + (0.3 + 0.7 + 1.9) / 3, abs=1e-6
    )


@settings(max_examples=30, deadline=None)
@given(q=st.integers(1, 6), extra=st.integers(0, 4), seed=st.integers(0, 1000), positive=st.sampled_from(["paired", "hardest"]))
def test_triplet_matches_loop_reference(q, extra, seed, positive):
    g = torch.Generator().manual_seed(seed)
    n = q + extra
    image, text = unit(torch.randn(n, 5, generator=g)), unit(torch.randn(n, 5, generator=g))
    weights = (torch.rand(q, n, generator=g) < 0.3).float()
    weights[torch.arange(q), torch.arange(q)] = 1.0
    total = 0.0
    for queries, candidates in ((image, text), (text, image)):
        hinges = []
        for i in range(q):
            sims = [float(queries[i] @ candidates[j]) for j in range(n)]
            negatives = [sims[j] for j in range(n) if weights[i, j] == 0]
            if not negatives:
                continue
            pos = sims[i] if positive == "paired" else min(sims[j] for j in range(n) if weights[i, j] > 0)
            hinges.append(max(0.0, 0.3 + max(negatives) - pos))
        total += sum(hinges) / len(hinges) if hinges else 0.0
    assert hardest_negative_triplet(image, text, weights, positive=positive).item() == pytest.approx(total, abs=1e-5)


def test_triplet_objective_start_epoch_and_missing_relation():
    objective = Triplet(Triplet.Params(relation="clusters"), BuildContext())
    relation = Relation(image=IMAGE, text=TEXT, weights=WEIGHTS)
    batch = make_batch([0, 1, 2])
    # the default: after epoch 20 (docs/ablations.md; ICPG's epoch > 20), i.e. from epoch 21
    assert objective.params.start_epoch == 21
    assert objective.loss({}, {"clusters": relation}, batch, step(20)) is None
    assert objective.loss({}, {"other": relation}, batch, step(21)) is None
    assert objective.loss({}, {"clusters": relation}, batch, step(21)).item() == pytest.approx(1.5, abs=1e-6)


def test_triplet_weight_b_over_2_gives_icpg_sum_reduction():
    """ICPG's compute_chm: (sum of image->text hinges + sum of text->image hinges) / 2;
    with a negative in every row that is B / 2 times the sum of the two means."""
    g = torch.Generator().manual_seed(3)
    b = 8
    image, text = unit(torch.randn(b, 5, generator=g)), unit(torch.randn(b, 5, generator=g))
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 3, 4])
    weights = (labels[:, None] == labels[None, :]).float()
    s = image @ text.T
    related = weights > 0
    hinges = [torch.relu(0.3 + m.masked_fill(related, -1.0).max(dim=1).values - m.diagonal()) for m in (s, s.T)]
    icpg = (hinges[0].sum() + hinges[1].sum()) / 2
    assert (b / 2) * hardest_negative_triplet(image, text, weights).item() == pytest.approx(icpg.item(), abs=1e-5)


# --------------------------------------------------------------------------- true identity


def test_true_identity_relation():
    association = TrueIdentity(TrueIdentity.Params(), BuildContext())
    features = ViewFeatures(image=unit(torch.randn(4, 3)), text=unit(torch.randn(4, 3)))
    relation = association.relate({"base": features}, make_batch([9, 8, 7, 6], person_id=[5, 7, 5, 9]), step(1))
    expected = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    assert torch.equal(relation.weights, expected)
    assert relation.image is features.image and relation.view == "base"
    assert relation.stats["related_per_row"] == pytest.approx(0.5)
