"""Trainable components (an objective that is also a torch.nn.Module) and the ID loss
``identity-classification``: values by hand, training, checkpoints and resume."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from wsreid.api import Batch, BuildContext, ViewFeatures
from wsreid.cli import main
from wsreid.testing.inputs import StubEncoder
from wsreid_baselines.identity_classification import IdentityClassification, identity_cross_entropy


def _objective(person_ids=(7, 3, 3, 9), dim=4, seed=0, **params):
    context = BuildContext(seed=seed, encoder=StubEncoder(embed_dim=dim), train_person_ids=tuple(person_ids))
    return IdentityClassification(IdentityClassification.Params(**params), context)


def _batch(person_id):
    empty = torch.zeros(0)
    n = len(person_id)
    return Batch(images=empty, input_ids=empty, attention_mask=empty, index=torch.arange(n),
                 image_id=torch.arange(n), person_id=torch.tensor(person_id))


def test_identity_cross_entropy_by_hand():
    classifier = torch.nn.Linear(2, 3)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        classifier.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    image = torch.tensor([[2.0, 0.0]])
    text = torch.tensor([[0.0, 0.0]])
    loss, image_logits, text_logits = identity_cross_entropy(image, text, torch.tensor([0]), classifier)
    # image logits (2, 0.5, -2): -log softmax_0; text logits (0, 0.5, 0): -log softmax_0
    ce_image = -2.0 + math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-2.0))
    ce_text = math.log(1.0 + math.exp(0.5) + 1.0)
    assert float(loss.detach()) == pytest.approx(0.5 * (ce_image + ce_text), rel=1e-6)
    assert image_logits.tolist() == [[2.0, 0.5, -2.0]] and text_logits.tolist() == [[0.0, 0.5, 0.0]]


def test_classes_are_the_sorted_training_identities_and_unknown_ids_are_refused():
    objective = _objective(person_ids=(7, 3, 3, 9))
    assert objective.classifier.weight.shape == (3, 4) and objective.classifier.bias.abs().sum() == 0
    assert objective.classes(torch.tensor([9, 3, 7, 3])).tolist() == [2, 0, 1, 0]
    with pytest.raises(ValueError, match="person id 5 is not a training identity"):
        objective.classes(torch.tensor([3, 5]))
    with pytest.raises(ValueError, match="person id 10 is not a training identity"):
        objective.classes(torch.tensor([10]))


def test_loss_reads_raw_or_normalised_features_and_counts_accuracy():
    objective = _objective(person_ids=(0, 1), dim=2, init_std=0.5)
    with torch.no_grad():
        objective.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    raw_image = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    raw_text = torch.tensor([[0.0, 2.0], [0.0, 1.0]])  # the first caption is classified wrong
    feats = {"base": ViewFeatures(F.normalize(raw_image), F.normalize(raw_text), raw_image, raw_text)}
    labels = torch.tensor([0, 1])
    loss = objective.loss(feats, {}, _batch([0, 1]), None).detach()
    expected = 0.5 * (F.cross_entropy(raw_image, labels) + F.cross_entropy(raw_text, labels))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert objective.diagnostics() == {"image_accuracy": 100.0, "text_accuracy": 50.0}
    assert objective.diagnostics() == {}  # counters reset

    normalised = _objective(person_ids=(0, 1), dim=2, features="normalized")
    with torch.no_grad():
        normalised.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    expected = 0.5 * (F.cross_entropy(F.normalize(raw_image), labels) + F.cross_entropy(F.normalize(raw_text), labels))
    assert float(normalised.loss(feats, {}, _batch([0, 1]), None).detach()) == pytest.approx(float(expected), rel=1e-6)
    without_raw = {"base": ViewFeatures(feats["base"].image, feats["base"].text)}
    with pytest.raises(ValueError, match="features: raw needs the encoder's raw features"):
        objective.loss(without_raw, {}, _batch([0, 1]), None)


def test_initialisation_follows_the_run_seed():
    a, b, c = _objective(seed=1), _objective(seed=1), _objective(seed=2)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    # exactly N(0, init_std) drawn from a generator seeded with the run seed, bias zero
    for seed, init_std in ((1, None), (2, None), (1, 0.5)):
        objective = _objective(seed=seed) if init_std is None else _objective(seed=seed, init_std=init_std)
        expected = torch.empty(3, 4).normal_(0.0, init_std or 0.001, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(objective.classifier.weight.detach(), expected), (seed, init_std)
        assert torch.equal(objective.classifier.bias.detach(), torch.zeros(3))
    # and the spread of a large layer (500 identities x 64) is the documented std of 0.001
    large = _objective(person_ids=range(500), dim=64, seed=3).classifier.weight.detach()
    assert large.shape == (500, 64)
    assert float(large.std()) == pytest.approx(0.001, rel=0.02) and abs(float(large.mean())) < 1e-4


def test_building_without_identities_or_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="needs the training identities"):
        IdentityClassification(IdentityClassification.Params(), BuildContext(encoder=StubEncoder()))
    with pytest.raises(ValueError, match="needs the encoder"):
        IdentityClassification(IdentityClassification.Params(), BuildContext(train_person_ids=(1, 2)))


def test_a_run_trains_saves_and_resumes_the_classifier(make_recipe, tmp_path, test_plugins_path, monkeypatch, capsys):
    """The classifier is trained at its lr factor, lives in the checkpoint (not in the
    encoder's weights), and an interrupted run resumed from epoch 2 ends bit for bit like
    the uninterrupted one."""
    recipe = make_recipe("baselines/supervised-pk-id.yaml", {"plugins": ["wsreid_test_hooks"], "train": {"epochs": 3}})
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["run", str(recipe), "--output-dir", str(full)]) == 0
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["weakly_supervised"] is False
    components = load_file(str(full / "checkpoints" / "epoch-0003" / "components.safetensors"))
    weight = components["objectives/id/module.classifier.weight"]
    assert weight.shape == (40, 32)  # the 40 training identities of synth-pedes tiny x embed_dim
    assert float(weight.std()) > 0.002  # trained away from the N(0, 0.001) start
    model = load_file(str(full / "checkpoints" / "epoch-0003" / "model.safetensors"))
    assert not any("classifier" in k for k in model)
    state = json.loads((full / "checkpoints" / "epoch-0003" / "state.json").read_text())
    lrs = sorted({g["initial_lr"] for g in state["optimizer"]["param_groups"]})
    lr = lrs[0]  # encoder weights at lr, biases at 2 lr; the classifier at 5x both
    assert lrs == pytest.approx([lr, 2 * lr, 5 * lr, 10 * lr])
    rows = list(csv.DictReader((full / "logs" / "epochs.csv").open()))
    assert all(0 <= float(r["diag/id/image_accuracy"]) <= 100 for r in rows) and float(rows[0]["loss/id"]) > 0

    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "3")
    assert main(["run", str(recipe), "--output-dir", str(cut)]) == 130
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    assert main(["run", str(recipe), "--output-dir", str(cut), "--resume"]) == 0
    assert json.loads((cut / "metrics.json").read_text())["test"] == metrics["test"]
    for name in ("model.safetensors", "components.safetensors"):
        ta = load_file(str(full / "checkpoints" / "epoch-0003" / name))
        tb = load_file(str(cut / "checkpoints" / "epoch-0003" / name))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_a_plain_component_keeps_module_prefixed_state_over_a_resume(make_recipe, tmp_path, test_plugins_path,
                                                                     monkeypatch):
    """Only a trainable component's checkpoint names are split into module tensors: a plain
    objective whose state is named ``module.steps`` gets it back on --resume."""
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_faults", "wsreid_test_hooks"],
                                                "objectives": {"count": {"name": "counts-steps"}},
                                                "train": {"epochs": 3}})
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["run", str(recipe), "--output-dir", str(full)]) == 0
    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "3")
    assert main(["run", str(recipe), "--output-dir", str(cut)]) == 130
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    assert main(["run", str(recipe), "--output-dir", str(cut), "--resume"]) == 0
    steps = [load_file(str(d / "checkpoints" / "epoch-0003" / "components.safetensors"))["objectives/count/module.steps"]
             for d in (full, cut)]
    per_epoch = int(steps[0]) // 3
    assert per_epoch > 0 and int(steps[0]) == 3 * per_epoch
    assert int(steps[1]) == int(steps[0])  # counted on from the checkpoint, not from zero
