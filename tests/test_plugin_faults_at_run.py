"""Faults of a third-party plugin that only show while a recipe runs: a constructor that
skips ``super().__init__``, a pair construction whose ``views()`` raises, returns
something else than a dict of views, views of the wrong dtype or size, or views other than
the ones it declares, and an association whose relation weights break their range or
diagonal (docs/plugins.md, docs/reliability.md). Each gives one line naming the recipe key,
the component and its plugin and what it did wrong, exit 2, no traceback (``--debug``
shows it)."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest
import torch

from wsreid import hookimpl
from pydantic import Field

from wsreid.api import DatasetComponent, LocalAssociation, Objective, PairConstruction, Params, Relation, View
from wsreid.cli import main
from wsreid.errors import ComponentError
from wsreid.losses import itc_loss
from wsreid_clip.encoder import ClipEncoder

PLUGIN = "thirdparty_faults"  # a recipe's ``plugins:`` module, put in sys.modules by the fixture


class NoSuperAssociation(LocalAssociation):
    """Forgets ``super().__init__(params, context)``."""

    class Params(Params):
        view: str = "base"

    def __init__(self, params, context):
        self.scale = 1.0

    def relate(self, features, batch, ctx):  # pragma: no cover - never reached
        return None


class NoSuperObjective(Objective):
    """Forgets ``super().__init__(params, context)``."""

    def __init__(self, params, context):
        self.calls = 0

    def loss(self, features, relations, batch, ctx):  # pragma: no cover - never reached
        return None


class HalfInitModule(Objective, torch.nn.Module):
    """A trainable objective that runs torch.nn.Module.__init__ but not Objective.__init__."""

    def __init__(self, params, context):
        torch.nn.Module.__init__(self)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def loss(self, features, relations, batch, ctx):  # pragma: no cover - never reached
        return None


class NoSuperPairs(PairConstruction):
    """Forgets ``super().__init__(params, context)``; its views() would not notice."""

    def __init__(self, params, context):
        self.steps = 0

    def views(self, batch, encoder):  # pragma: no cover - never reached
        return {"base": View(batch.images, batch.input_ids, batch.attention_mask)}


class BadViews(PairConstruction):
    """A pair construction whose ``views()`` breaks its contract, as ``fault`` says."""

    view_names = ("base", "dropped")

    class Params(Params):
        fault: str = "raises"

    def views(self, batch, encoder):
        fault = self.params.fault
        base = View(batch.images, batch.input_ids, batch.attention_mask)
        if fault == "raises":
            return {"base": View(batch.imgs, batch.input_ids, batch.attention_mask)}  # a misspelt attribute
        if fault == "tuple":
            return base, base
        if fault == "not-a-view":
            return {"base": base, "dropped": (batch.images, batch.input_ids, batch.attention_mask)}
        if fault == "float-ids":
            return {"base": base, "dropped": View(batch.images, batch.input_ids.float(), batch.attention_mask)}
        if fault == "half-rows":
            half = len(batch) // 2
            return {"base": base, "dropped": View(batch.images[:half], batch.input_ids[:half],
                                                  batch.attention_mask[:half])}
        if fault == "renamed":  # declares 'dropped', produces 'masked'
            return {"base": base, "masked": base}
        return {"base": base, "dropped": base}


class ViewRelation(LocalAssociation):
    """Relates nothing but each pair to itself, on its ``view``; ``fault`` spoils the weights."""

    class Params(Params):
        view: str = "base"
        fault: str = "none"

    def relate(self, features, batch, ctx):
        f = features[self.params.view]
        weights = torch.eye(f.image.shape[0], device=f.image.device)
        if self.params.fault == "zero-diagonal":
            weights.fill_diagonal_(0.0)
        elif self.params.fault == "two":
            weights.fill_diagonal_(2.0)
        elif self.params.fault == "nan":
            weights[0, 1] = float("nan")
        elif self.params.fault == "negative":
            weights[1, 0] = -0.5
        elif self.params.fault == "list":
            weights = weights.tolist()
        elif self.params.fault == "detached-image":
            return Relation(f.image.detach(), f.text, weights, view=self.params.view)
        elif self.params.fault == "detached":
            return Relation(f.image.detach(), f.text.detach(), weights, view=self.params.view)
        elif self.params.fault == "view-left-out":
            return Relation(f.image, f.text, weights)  # the view of the features not named
        return Relation(f.image, f.text, weights, view=self.params.view)


class Itc(Objective):
    """ITC on the base view (``detached``: of detached features, a loss that trains nothing)."""

    class Params(Params):
        detached: bool = Field(False, description="compute the loss from detached features")

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        loss = itc_loss(base.image, base.text)
        return loss.detach() if self.params.detached else loss


class FaultyEncoder(ClipEncoder):
    """The tiny CLIP encoder, spoilt as ``FAULT`` says (set per registered name)."""

    FAULT = "none"
    calls = 0  # encode_text calls: "eval-only" breaks the first one outside training

    def encode_image(self, images):
        out = super().encode_image(images)
        if self.FAULT == "narrow":
            return out[:, :16]
        if self.FAULT == "raises":
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (16x48 and 32x32)")
        if self.FAULT == "list":
            return out.tolist()
        return out

    def tokenize(self, texts):
        ids, mask = super().tokenize(texts)
        if self.FAULT == "int32-ids":
            return ids.int(), mask
        if self.FAULT == "short-ids":
            return ids[:, :10], mask[:, :10]
        return ids, mask

    def encode_text(self, input_ids, attention_mask):
        out = super().encode_text(input_ids, attention_mask)
        if self.FAULT == "one-row":
            return out[:1]
        if self.FAULT == "eval-only" and not self.training:
            return out[:, :8]
        return out


class FaultyDataset(DatasetComponent):
    """The tiny synth-pedes dataset, returned with one mistake (``fault``)."""

    class Params(Params):
        root: str = Field(description="the tiny synth-pedes folder")
        fault: str = Field(description="short-ids | renumbered | missing-gallery | empty-caption")

    def load(self):
        from wsreid.data import read_dataset

        splits = read_dataset(self.params.root, "cuhk-pedes", check_images="none")
        if self.params.fault == "short-ids":  # a list changed after the split was made
            splits.test.caption_person_ids.pop()
        elif self.params.fault == "renumbered":
            splits.train = [dataclasses.replace(r, index=r.index + 1) for r in splits.train]
        elif self.params.fault == "missing-gallery":
            splits.test.image_paths[3] = Path(self.params.root) / "imgs" / "gone.png"
        elif self.params.fault == "empty-caption":
            splits.train[5] = dataclasses.replace(splits.train[5], caption=" ")
        return splits


def _faulty(fault):
    return type(f"Faulty_{fault}", (FaultyEncoder,), {"FAULT": fault})


@pytest.fixture
def plugin(monkeypatch):
    """The module ``thirdparty_faults``, as a recipe's ``plugins:`` imports it."""
    module = types.ModuleType(PLUGIN)

    @hookimpl
    def wsreid_register(registry):
        registry.add("local_association", "no-super", NoSuperAssociation)
        registry.add("objective", "no-super", NoSuperObjective)
        registry.add("objective", "half-init-module", HalfInitModule)
        registry.add("pair_construction", "no-super", NoSuperPairs)
        registry.add("pair_construction", "bad-views", BadViews)
        registry.add("local_association", "view-relation", ViewRelation)
        registry.add("objective", "plain-itc", Itc)
        registry.add("dataset", "faulty-data", FaultyDataset)
        for fault in ("narrow", "raises", "list", "one-row", "eval-only", "int32-ids", "short-ids"):
            registry.add("encoder", f"{fault}-clip", _faulty(fault))

    module.wsreid_register = wsreid_register
    monkeypatch.setitem(sys.modules, PLUGIN, module)
    return module


def _recipe(make_recipe, **sections):
    return make_recipe("baselines/itc.yaml", {"plugins": [PLUGIN], "train": {"epochs": 1, "warmup_epochs": 0}, **sections})


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def _origin(key: str, kind: str, name: str) -> str:
    return f"error: {key} ({kind} {name!r} from plugin {PLUGIN!r}): "


SUPER_HINT = ("(call super().__init__(params, context) in __init__, before using self.params; a torch module "
              "calls torch.nn.Module.__init__(self) first, then the component base class's __init__(self, params, "
              "context))")


@pytest.mark.parametrize("sections, origin", [
    ({"local_associations": {"near": {"name": "no-super"}},
      "objectives": {"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}}},
     _origin("local_associations.near", "local_association", "no-super")),
    ({"objectives": {"mine": {"name": "no-super"}}}, _origin("objectives.mine", "objective", "no-super")),
    ({"objectives": {"mine": {"name": "half-init-module"}}},
     _origin("objectives.mine", "objective", "half-init-module")),
    ({"pair_construction": {"name": "no-super"}}, _origin("pair_construction", "pair_construction", "no-super")),
], ids=["local-association", "objective", "trainable-objective", "pair-construction"])
def test_a_constructor_that_skips_super_init_is_named_before_training(make_recipe, tmp_path, plugin, capsys,
                                                                      sections, origin):
    recipe = _recipe(make_recipe, **sections)
    assert main(["run", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert line == origin + "its __init__ did not call super().__init__(params, context): the component has no " \
                            "'params' or 'context' " + SUPER_HINT
    assert not (tmp_path / "run").exists()


VIEWS = _origin("pair_construction", "pair_construction", "bad-views")
VIEWS_HINT = "(a fault of plugin 'thirdparty_faults'; fix it, or leave the component out; --debug shows the traceback)"


@pytest.mark.parametrize("fault, says", [
    ("raises", "views() failed at epoch 1: AttributeError: 'Batch' object has no attribute 'imgs' " + VIEWS_HINT),
    ("tuple", "views() returned a tuple, not a dict of view name -> wsreid.api.View (return {'base': View(...), "
              "...} with the views it declares)"),
    ("not-a-view", "views() returned view 'dropped' as a tuple, not a wsreid.api.View (return {'base': View(...), "
                   "...} with the views it declares)"),
    ("float-ids", "views() returned view 'dropped' whose input_ids is a torch.float32 tensor of shape [16, 64], "
                  "expected torch.int64 of shape [16, 64] (a view holds images B x 3 x H x W float, input_ids and "
                  "attention_mask B x L long, B the rows of the batch (16); every view of a step has the same "
                  "shapes; see wsreid.api.View)"),
    ("half-rows", "views() returned view 'dropped' whose images is a torch.float32 tensor of shape [8, 3, 32, 16], "
                  "expected a floating tensor of shape [16, 3, 32, 16] (a view holds images B x 3 x H x W float, "
                  "input_ids and attention_mask B x L long, B the rows of the batch (16); every view of a step has "
                  "the same shapes; see wsreid.api.View)"),
    ("renamed", "views() returned the views ['base', 'masked'], but it declares ['base', 'dropped'] (view_names or "
                "declared_views(params)) (return exactly the declared views: recipes are checked against them, "
                "so an association or objective may read any of them)"),
], ids=lambda v: v if v in {"raises", "tuple", "not-a-view", "float-ids", "half-rows", "renamed"} else "")
def test_a_pair_construction_breaking_its_contract_is_named(make_recipe, plugin, capsys, fault, says):
    """Before: a traceback (an exception in views(), a tuple, float tokens inside
    torch.embedding, a short view inside torch.cat or an objective) or a recipe error
    blaming the association's view key (a renamed view)."""
    recipe = _recipe(make_recipe, pair_construction={"name": "bad-views", "fault": fault},
                     local_associations={"near": {"name": "view-relation", "view": "dropped"}},
                     objectives={"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == VIEWS + says


def test_debug_shows_the_traceback_of_a_pair_construction_fault(make_recipe, plugin):
    recipe = _recipe(make_recipe, pair_construction={"name": "bad-views", "fault": "float-ids"})
    with pytest.raises(ComponentError, match="whose input_ids is a torch.float32 tensor"):
        main(["--debug", "run", str(recipe)])


NEAR = _origin("local_associations.near", "local_association", "view-relation")
RELATION_HINT = ("(relation weights lie in [0, 1]: 1 on the diagonal (row i and column i are the same pair), a value "
                 "in (0, 1] for related pairs, exactly 0 for the others; see docs/plugins.md, and check the "
                 "component with wsreid.testing.check_component)")


@pytest.mark.parametrize("fault, says", [
    ("zero-diagonal", "relate() returned weights whose diagonal is not 1 (smallest diagonal value 0) at epoch 1, "
                      "step 1 "),
    ("two", "relate() returned weights outside [0, 1] (0 .. 2) at epoch 1, step 1 "),
    ("negative", "relate() returned weights outside [0, 1] (-0.5 .. 1) at epoch 1, step 1 "),
    ("nan", "relate() returned weights holding NaN or inf at epoch 1, step 1 "),
], ids=lambda v: v if v in {"zero-diagonal", "two", "negative", "nan"} else "")
def test_relation_weights_outside_their_range_are_named(make_recipe, plugin, capsys, fault, says):
    """Before: a zero diagonal or a NaN gave a non-finite loss blamed on the objective;
    weights of 2 or -0.5 trained silently."""
    recipe = _recipe(make_recipe, local_associations={"near": {"name": "view-relation", "fault": fault}},
                     objectives={"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == NEAR + says + RELATION_HINT


def test_relation_weights_that_are_not_a_tensor_are_named(make_recipe, plugin, capsys):
    """Before: an AttributeError traceback ('list' object has no attribute 'dim')."""
    recipe = _recipe(make_recipe, local_associations={"near": {"name": "view-relation", "fault": "list"}},
                     objectives={"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == NEAR + (
        "relate() returned a Relation whose weights is a list, not a tensor (weights is a Q x N float tensor; "
        "image and text the N x D features it relates (see wsreid.api.Relation))")


def test_a_well_behaved_third_party_pipeline_runs(make_recipe, plugin, capsys):
    """The same plugin's components keeping their contract train (the checks refuse
    nothing that is right)."""
    recipe = _recipe(make_recipe, pair_construction={"name": "bad-views", "fault": "none"},
                     local_associations={"near": {"name": "view-relation", "view": "dropped"}},
                     objectives={"itc": {"name": "plain-itc"}, "sdm": {"name": "sdm", "relation": "near"}})
    assert main(["run", str(recipe)]) == 0


ENCODER_HINT = ("(a fault of plugin 'thirdparty_faults'; fix it, or choose another encoder; --debug shows the "
                "traceback)")


@pytest.mark.parametrize("fault, says", [
    ("narrow", "encode_image() / encode_text() failed at epoch 1: ValueError: encode_image() returned a "
               "torch.float32 tensor of shape [16, 16] for 16 images, expected a floating tensor of shape [16, 32] "
               "(one row per input, embed_dim 32 columns) "),
    ("one-row", "encode_image() / encode_text() failed at epoch 1: ValueError: encode_text() returned a "
                "torch.float32 tensor of shape [1, 32] for 16 captions, expected a floating tensor of shape [16, 32] "
                "(one row per input, embed_dim 32 columns) "),
    ("list", "encode_image() / encode_text() failed at epoch 1: ValueError: encode_image() returned a list for 16 "
             "images, expected a floating tensor of shape [16, 32] (one row per input, embed_dim 32 columns) "),
    ("raises", "encode_image() / encode_text() failed at epoch 1: RuntimeError: mat1 and mat2 shapes cannot be "
               "multiplied (16x48 and 32x32) "),
    ("eval-only", "encoding the val split failed at epoch 1: ValueError: encode_text() returned a torch.float32 "
                  "tensor of shape [64, 8] for 64 captions, expected a floating tensor of shape [64, 32] (one row "
                  "per input, embed_dim 32 columns) "),
    # blamed on the pair construction's views before (even the shipped identity), or trained silently
    ("int32-ids", "tokenising the training captions failed: ValueError: tokenize() returned input_ids as a torch.int32 tensor "
                  "of shape [292, 64] for 292 captions, expected a torch.int64 tensor of shape [292, 64] (padded to "
                  "max_length 64) "),
    ("short-ids", "tokenising the training captions failed: ValueError: tokenize() returned input_ids as a torch.int64 tensor "
                  "of shape [292, 10] for 292 captions, expected a torch.int64 tensor of shape [292, 64] (padded to "
                  "max_length 64) "),
], ids=lambda v: v if v in {"narrow", "one-row", "list", "raises", "eval-only", "int32-ids", "short-ids"} else "")
def test_an_encoder_breaking_its_contract_is_named(make_recipe, plugin, capsys, tmp_path, fault, says):
    """Before: a wrong width failed inside the objective's loss (blamed on it) or in the
    retrieval; an exception was a traceback."""
    recipe = _recipe(make_recipe, encoder={"name": f"{fault}-clip"})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == _origin("encoder", "encoder", f"{fault}-clip") + says + ENCODER_HINT
    assert not (tmp_path / "run").exists()  # nothing left half-written


def test_an_encoder_fault_while_a_global_association_encodes_the_training_set_is_the_encoders(
        make_recipe, plugin, capsys):
    """extract_train_features runs inside the association's epoch_start: the fault is still
    the encoder's, not the association's."""
    recipe = _recipe(make_recipe, encoder={"name": "eval-only-clip"},
                     global_associations={"pseudo_labels": {"name": "cluster-pseudo-labels", "cluster_on": "text"}},
                     objectives={"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "pseudo_labels"}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == _origin("encoder", "encoder", "eval-only-clip") + (
        "encoding the training set failed at epoch 1: ValueError: encode_text() returned a torch.float32 tensor of "
        "shape [64, 8] for 64 captions, expected a floating tensor of shape [64, 32] (one row per input, embed_dim "
        "32 columns) ") + ENCODER_HINT


def test_an_encoder_fault_in_wsreid_eval_is_one_line(make_recipe, plugin, capsys):
    """``wsreid eval`` of a recipe (zero-shot) encodes outside a run: the same line."""
    recipe = _recipe(make_recipe, encoder={"name": "eval-only-clip"})
    assert main(["eval", str(recipe), "--zero-shot"]) == 2
    assert _one_error_line(capsys) == _origin("encoder", "encoder", "eval-only-clip") + (
        "encoding the test split failed: ValueError: encode_text() returned a torch.float32 tensor of shape [64, 8] "
        "for 64 captions, expected a floating tensor of shape [64, 32] (one row per input, embed_dim 32 columns) "
    ) + ENCODER_HINT


DATA = _origin("data", "dataset", "faulty-data")
DATA_HINT = "(a fault of plugin 'thirdparty_faults'; fix it, or choose another dataset)"


@pytest.mark.parametrize("fault, says", [
    ("short-ids", "splits.test has lists of different lengths (captions 126, caption_person_ids 125, image_paths 63, "
                  "image_person_ids 63): one person id per query caption and per gallery image " + DATA_HINT),
    ("renumbered", "splits.train[0] carries index 1; training pairs are indexed 0..N-1 in order (memory banks and "
                   "pseudo-labels are keyed by the index) " + DATA_HINT),
    ("empty-caption", "splits.train[5] has an empty caption (' ') " + DATA_HINT),
    ("missing-gallery", "test gallery image 3, {root}/imgs/gone.png, is not a file (check the dataset's files "
                        "(evaluation images are read only after training))"),
])
def test_a_dataset_returning_broken_splits_is_named_before_training(make_recipe, plugin, capsys, tmp_path,
                                                                   synth_tiny_root, fault, says):
    """Before: a list shortened after the split was made gave a traceback from the
    metrics (exit 1) once training was over; a missing gallery image an error after
    training that named no component; a renumbered index a line without the dataset."""
    recipe = _recipe(make_recipe)
    assert main(["run", str(recipe), "-o", f"data={{name: faulty-data, root: {synth_tiny_root}, fault: {fault}}}"]) == 2
    assert _one_error_line(capsys) == DATA + says.format(root=synth_tiny_root)
    assert not (tmp_path / "run").exists()


def test_an_objective_whose_loss_carries_no_gradient_is_named(make_recipe, plugin, capsys):
    """A detached loss beside a working ITC: the sum carries gradient, so it trained as
    a no-op with its loss logged."""
    recipe = _recipe(make_recipe, objectives={"itc": {"name": "itc"}, "mine": {"name": "plain-itc", "detached": True}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == _origin("objectives.mine", "objective", "plain-itc") + (
        "loss() returned a loss without gradient (computed from detached features or constants), so it trains "
        "nothing (compute it from the features passed to loss(), not from detached copies; return None to skip "
        "the step)")


@pytest.mark.parametrize("fault, lost", [("detached", "relation.image and relation.text"),
                                         ("detached-image", "relation.image")])
def test_a_relation_with_detached_features_is_named(make_recipe, plugin, capsys, fault, lost):
    """SDM reads the relation's features: detached ones gave a run bit-identical to one
    without the association and SDM, with SDM's loss logged."""
    recipe = _recipe(make_recipe, local_associations={"near": {"name": "view-relation", "fault": fault}},
                     objectives={"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == _origin("local_associations.near", "local_association", "view-relation") + (
        f"relate() returned {lost} without the gradient of the batch features (detached or recomputed), so an "
        "objective on this relation trains nothing (return the features passed to relate() as the first B rows "
        "(memory rows may follow, without gradient), not detached copies)")


def test_a_relation_naming_another_view_than_its_parameters_is_named(make_recipe, plugin, capsys):
    """The conformance kit refused it, a run did not: a relation of the 'dropped' view
    built without view= is labelled 'base', so the gradient check looked at the base view."""
    recipe = _recipe(make_recipe, pair_construction={"name": "bad-views", "fault": "none"},
                     local_associations={"near": {"name": "view-relation", "view": "dropped",
                                                  "fault": "view-left-out"}},
                     objectives={"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}})
    assert main(["run", str(recipe)]) == 2
    assert _one_error_line(capsys) == _origin("local_associations.near", "local_association", "view-relation") + (
        "relate() returned a Relation of view 'base', but its parameters select view 'dropped' (build it with "
        "Relation(..., view='dropped'): the view of the features it relates)")
