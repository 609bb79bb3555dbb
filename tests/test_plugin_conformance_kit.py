"""The conformance kit catches broken components: each fake below breaks one rule of its
kind's contract, and the kit must fail it with a message naming that rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator

from wsreid.api import (
    DatasetComponent,
    DatasetSplits,
    EncoderComponent,
    EvalSplit,
    GlobalAssociation,
    LocalAssociation,
    Objective,
    PairConstruction,
    PairRecord,
    Params,
    Relation,
    View,
)
from wsreid.errors import DuplicateComponentError, PluginError
from wsreid.losses import itc_loss
from wsreid.registry import Registry
from wsreid.testing import ConformanceError, check_component, check_local_association, check_relation


class ViewParams(Params):
    view: str = Field("base", description="view to relate")


class Good(LocalAssociation):
    """Relates items whose images agree (cosine > 0.8), weight 0.5."""

    Params = ViewParams

    def weights(self, image):
        with torch.no_grad():
            related = (image @ image.T > 0.8).float() * 0.5
            return related.fill_diagonal_(1.0)

    def relate(self, features, batch, ctx):
        f = features[self.params.view]
        return Relation(image=f.image, text=f.text, weights=self.weights(f.image), view=self.params.view)


class LeakyWeights(Good):
    def weights(self, image):
        return (image @ image.T).clamp(0, 1).fill_diagonal_(1.0)


class HalfDiagonal(Good):
    def weights(self, image):
        return super().weights(image).fill_diagonal_(0.5)


class AlmostZero(Good):
    def weights(self, image):
        return super().weights(image).clamp(min=1e-9)


class ByPosition(Good):
    def weights(self, image):
        b = image.shape[0]
        return torch.eye(b) + 0.5 * torch.diag(torch.ones(b - 1), 1)


class Detached(Good):
    def relate(self, features, batch, ctx):
        rel = super().relate(features, batch, ctx)
        return Relation(image=rel.image.detach(), text=rel.text.detach(), weights=rel.weights, view=rel.view)


class WrongView(Good):
    def relate(self, features, batch, ctx):
        rel = super().relate(features, batch, ctx)
        rel.view = "other"
        return rel


class Loose(BaseModel):
    size: int = Field(3, description="a size")


class LooseParams(Params):
    inner: Loose = Field(default_factory=Loose, description="nested, but not strict")


class NestedLoose(Good):
    Params = LooseParams

    def relate(self, features, batch, ctx):
        return Good.relate(self, features, batch, ctx)


class UndocumentedParams(Params):
    view: str = "base"


class Undocumented(Good):
    Params = UndocumentedParams


class DoublingParams(Params):
    scale: float = Field(1.0, description="doubled on every validation (not idempotent)")
    view: str = Field("base", description="view")

    @field_validator("scale")
    @classmethod
    def _double(cls, v: float) -> float:
        return 2 * v


class Doubling(Good):
    Params = DoublingParams


class Forgetful(GlobalAssociation):
    """Relates by a memory that it does not put in its state."""

    Params = ViewParams

    def __init__(self, params, context):
        super().__init__(params, context)
        self.memory = torch.zeros(context.num_train, dtype=torch.long)

    def after_step(self, features, batch, ctx):
        self.memory[batch.index] = batch.index % 3

    def relate(self, features, batch, ctx):
        f = features["base"]
        labels = self.memory[batch.index]
        weights = (labels[:, None] == labels[None, :]).float()
        return Relation(image=f.image, text=f.text, weights=weights)


class SameImageMemory(GlobalAssociation):
    """Relates the pairs that share an image, read from the build context (what a run hands
    every association: train_image_ids, train_captions, the encoder, ...)."""

    Params = ViewParams

    def __init__(self, params, context):
        super().__init__(params, context)
        self.image_of = torch.tensor(context.train_image_ids)
        assert len(context.train_captions) == context.num_train and context.encoder is not None
        assert context.image_size == tuple(context.encoder.image_size)

    def relate(self, features, batch, ctx):
        f = features[self.params.view]
        images = self.image_of[batch.index]
        return Relation(image=f.image, text=f.text, weights=(images[:, None] == images[None, :]).float(),
                        view=self.params.view)


class ClassesFromContext(Objective):
    """Reads the training identities, as a supervised identity classifier sizes its layer."""

    weakly_supervised = False

    def __init__(self, params, context):
        super().__init__(params, context)
        self.classes = sorted(set(context.train_person_ids))
        assert len(context.train_person_ids) == context.num_train
        owner = {}  # an image shows one person, as in every dataset a run reads
        for person, image in zip(context.train_person_ids, context.train_image_ids):
            assert owner.setdefault(image, person) == person, f"image {image} shows persons {owner[image]} and {person}"

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        return itc_loss(base.image, base.text)


class RowLoss(Objective):
    """Per-row losses instead of their mean."""

    Params = ViewParams

    def loss(self, features, relations, batch, ctx):
        return (features["base"].image * features["base"].text).sum(1)


class FirstRowLoss(Objective):
    """Depends on which item comes first."""

    Params = ViewParams

    def loss(self, features, relations, batch, ctx):
        return itc_loss(features["base"].image, features["base"].text) + features["base"].image[0].sum()


class DetachedLoss(Objective):
    Params = ViewParams

    def loss(self, features, relations, batch, ctx):
        return itc_loss(features["base"].image, features["base"].text).detach()


class RelationParams(Params):
    relation: str = Field("relation", description="label of the relation to train against")


class StrictRelationLoss(Objective):
    """Reads its relation without checking that the label is there this step."""

    Params = RelationParams

    def loss(self, features, relations, batch, ctx):
        rel = relations[self.params.relation]
        return itc_loss(rel.image[: len(batch.index)], rel.text[: len(batch.index)])


class WarmUpAssociation(Good):
    """Relates from epoch 2 on (None before: no relation this step)."""

    def relate(self, features, batch, ctx):
        return None if ctx.epoch < 2 else super().relate(features, batch, ctx)


class TrainableFake(Objective, torch.nn.Module):
    """Base of the trainable fakes: a torch module whose ``add_state`` makes its tensors;
    the loss is ITC."""

    Params = ViewParams

    def __init__(self, params, context):
        torch.nn.Module.__init__(self)
        Objective.__init__(self, params, context)
        self.add_state()

    def add_state(self):
        pass

    def loss(self, features, relations, batch, ctx):
        return itc_loss(features["base"].image, features["base"].text)


class UnusedHead(TrainableFake):
    """A trainable objective whose loss never reaches its layer."""

    def add_state(self):
        self.head = torch.nn.Linear(2, 2)


class EmptyModule(TrainableFake):
    """A torch module with nothing to train."""


class UnsavedScale(TrainableFake):
    """A trainable temperature, plus a random offset kept outside its state_dict()."""

    def add_state(self):
        self.log_scale = torch.nn.Parameter(torch.zeros(()))
        self.offset = float(torch.rand(()))

    def loss(self, features, relations, batch, ctx):
        return super().loss(features, relations, batch, ctx) * self.log_scale.exp() + self.offset


class ModuleNamedState(TrainableFake):
    """A trainable temperature that also keeps a count under a name of the module prefix."""

    def add_state(self):
        self.log_scale = torch.nn.Parameter(torch.zeros(()))
        self.seen = torch.zeros(())

    def loss(self, features, relations, batch, ctx):
        return super().loss(features, relations, batch, ctx) * self.log_scale.exp()

    def state_tensors(self):
        return {"module.seen": self.seen}

    def load_state_tensors(self, tensors):
        self.seen = tensors.get("module.seen", torch.zeros(()))


class GlobalNoise(PairConstruction):
    """Adds noise from the global generator: views depend on batch order."""

    Params = ViewParams

    def views(self, batch, encoder):
        noisy = batch.images + torch.randn(batch.images.shape)
        return {"base": View(noisy, batch.input_ids, batch.attention_mask)}


class UndeclaredView(PairConstruction):
    """Produces a 'masked' view without declaring it in view_names."""

    Params = ViewParams

    def views(self, batch, encoder):
        base = View(batch.images, batch.input_ids, batch.attention_mask)
        return {"base": base, "masked": View(batch.images.clone(), batch.input_ids, batch.attention_mask)}


class ShortTokens(EncoderComponent):
    """Pads to the longest caption rather than to max_length; features mix the batch."""

    Params = ViewParams
    image_size, max_length, embed_dim = (8, 4), 12, 6

    def __init__(self, params, context):
        super().__init__(params, context)
        self.image_proj = torch.nn.Linear(3, 6)
        self.token_proj = torch.nn.Embedding(64, 6)

    def tokenize(self, texts):
        n = max(len(t.split()) for t in texts)
        ids = torch.tensor([[5 + (hash(w) % 50) for w in t.split()] + [0] * (n - len(t.split())) for t in texts])
        return ids, (ids != 0).long()

    def encode_image(self, images):
        return self.image_proj(images.mean(dim=(2, 3))).cumsum(0)

    def encode_text(self, input_ids, attention_mask):
        return self.token_proj(input_ids).sum(1)


class Renumbered(DatasetComponent):
    """Training indices that start at 1."""

    class Params(Params):
        root: str = Field(description="a directory holding img.png")

    def load(self):
        image = Path(self.params.root) / "img.png"
        train = [PairRecord(i + 1, image, "a caption", 0, 0) for i in range(2)]
        return DatasetSplits("renumbered", train, EvalSplit(["a query"], [0], [image], [0]))


class ShortIds(Renumbered):
    """A test split whose query ids lose one entry after the split was made."""

    def load(self):
        image = Path(self.params.root) / "img.png"
        test = EvalSplit(["a query", "another"], [0, 0], [image], [0])
        test.caption_person_ids.pop()
        return DatasetSplits("short-ids", [PairRecord(i, image, "a caption", 0, 0) for i in range(2)], test)


class MissingGallery(Renumbered):
    """A test gallery image that is not there."""

    def load(self):
        image = Path(self.params.root) / "img.png"
        test = EvalSplit(["a query"], [0], [Path(self.params.root) / "nope.png"], [0])
        return DatasetSplits("missing-gallery", [PairRecord(i, image, "a caption", 0, 0) for i in range(2)], test)


FAKES = {
    ("local_association", "good"): Good, ("local_association", "leaky"): LeakyWeights,
    ("local_association", "half-diagonal"): HalfDiagonal, ("local_association", "almost-zero"): AlmostZero,
    ("local_association", "by-position"): ByPosition, ("local_association", "detached"): Detached,
    ("local_association", "wrong-view"): WrongView, ("local_association", "warm-up"): WarmUpAssociation,
    ("objective", "strict-relation"): StrictRelationLoss,
    ("local_association", "undocumented"): Undocumented, ("local_association", "doubling"): Doubling,
    ("global_association", "forgetful"): Forgetful, ("objective", "row-loss"): RowLoss,
    ("global_association", "same-image"): SameImageMemory, ("objective", "classes-from-context"): ClassesFromContext,
    ("objective", "first-row"): FirstRowLoss, ("objective", "detached-loss"): DetachedLoss,
    ("objective", "unused-head"): UnusedHead, ("objective", "empty-module"): EmptyModule,
    ("objective", "unsaved-scale"): UnsavedScale,
    ("objective", "module-named-state"): ModuleNamedState,
    ("pair_construction", "global-noise"): GlobalNoise, ("encoder", "short-tokens"): ShortTokens,
    ("pair_construction", "undeclared-view"): UndeclaredView,
    ("dataset", "renumbered"): Renumbered, ("dataset", "short-ids"): ShortIds,
    ("dataset", "missing-gallery"): MissingGallery,
}  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry()
    reg.set_provider("fakes")
    for (kind, name), cls in FAKES.items():
        reg.add(kind, name, cls)
    return reg


def test_a_nested_parameter_model_that_accepts_unknown_keys_is_refused_at_registration():
    """A nested block from a plain pydantic BaseModel would ignore a misspelt key in a
    recipe: the registry refuses it when the plugin registers the component."""
    reg = Registry()
    reg.set_provider("fakes")
    with pytest.raises(PluginError, match="local_association 'nested-loose': its parameter block 'inner' "
                                          r"\(Loose\) accepts unknown keys"):
        reg.add("local_association", "nested-loose", NestedLoose)
    from wsreid.testing.contracts import check_params_model

    with pytest.raises(ConformanceError, match=r"parameter model at 'inner' \(Loose\) accepts unknown keys"):
        check_params_model(LooseParams, {}, "nested-loose")  # the kit says so too, for a model checked alone


def test_one_plugin_registering_a_name_twice_is_told_so():
    reg = Registry()
    reg.set_provider("fakes")
    reg.add("local_association", "good", Good)
    with pytest.raises(DuplicateComponentError, match="plugin 'fakes' registers local_association 'good' twice "
                                                      r"\(register each name once\)"):
        reg.add("local_association", "good", Good)


def test_a_conforming_component_passes(registry):
    check_local_association("good", {"view": "asymmetric"}, registry)


def test_a_local_association_may_start_after_the_first_epoch(registry):
    check_local_association("warm-up", {}, registry)


def test_an_objective_must_take_a_step_without_its_relation(registry):
    """A missing label means its association gave no relation this step (a memory before
    its start epoch): an objective that indexes the relations blindly fails in training."""
    with pytest.raises(ConformanceError, match="loss\\(\\) raised KeyError: 'relation' without relation 'relation'"):
        check_component("objective", "strict-relation", {}, registry)


@pytest.mark.parametrize("kind, name, params, message", [
    ("local_association", "leaky", None, "relation.weights carries gradient"),
    ("local_association", "half-diagonal", None, "diagonal must be 1 (row i and column i are the same pair), found 0.5"),
    ("local_association", "almost-zero", None, "unrelated pairs must be exactly 0, found 1e-09"),
    ("local_association", "by-position", None, "permuting the batch must permute the relation"),
    ("local_association", "detached", None, "lost the gradient of the batch features"),
    ("local_association", "wrong-view", None, "relation.view is 'other' but the parameters select view 'base'"),
    ("local_association", "undocumented", None, "parameter 'view' has no description"),
    ("local_association", "doubling", {"scale": 1.5}, "parameters change in a YAML round trip"),
    ("local_association", "good", {"veiw": "base"}, "do not validate (veiw: Extra inputs are not permitted)"),
    ("global_association", "forgetful", None, "an instance restored from state_tensors() must relate as the original"),
    ("objective", "row-loss", None, "must return a floating scalar tensor"),
    ("objective", "first-row", None, "must not change when the batch is permuted"),
    ("objective", "detached-loss", None, "is not differentiable"),
    ("objective", "unused-head", None, "the loss has no gradient with respect to the component's own parameters"),
    ("objective", "empty-module", None, "is a torch.nn.Module without trainable parameters"),
    ("objective", "unsaved-scale", None, "a fresh instance loaded with state_dict() must give the same loss"),
    ("objective", "module-named-state", None, "state name 'module.seen': the prefix 'module.' is reserved for a "
                                              "trainable component's module tensors"),  # the run refused it at its checkpoint
    ("pair_construction", "global-noise", None, "of a permuted batch must be the permuted images"),
    ("pair_construction", "undeclared-view", None, "views() returned ['base', 'masked'] but the class declares "
                                                    "['base']; set view_names"),
    ("encoder", "short-tokens", None, "tokenize(): input_ids must be (4, 12) torch.long (padded to max_length)"),
    ("dataset", "renumbered", {"root": "{tmp}"}, "splits.train[0] carries index 1; training pairs are indexed "
                                                 "0..N-1 in order"),
    ("dataset", "short-ids", {"root": "{tmp}"}, "splits.test has lists of different lengths (captions 2, "
                                                "caption_person_ids 1, image_paths 1, image_person_ids 1)"),
    ("dataset", "missing-gallery", {"root": "{tmp}"}, "test gallery image 0, {tmp}/nope.png, is not a file"),
])  # fmt: skip
def test_a_broken_component_fails_with_the_rule_it_breaks(kind, name, params, message, registry, tmp_path):
    if params and params.get("root") == "{tmp}":
        (tmp_path / "img.png").write_bytes(b"")
        params = {"root": str(tmp_path)}
    with pytest.raises(ConformanceError) as err:
        check_component(kind, name, params, registry)
    text = str(err.value)
    assert text.startswith(f"{kind} {name!r} (fakes): ")
    assert message.replace("{tmp}", str(tmp_path)) in text, text


def test_the_kit_reports_unknown_components_and_kinds(registry):
    with pytest.raises(ConformanceError, match="local_association 'god' is not registered: .*did you mean 'good'"):
        check_component("local_association", "god", None, registry)
    with pytest.raises(ConformanceError, match="unknown component kind 'loss'"):
        check_component("loss", "good", None, registry)


def test_check_relation_on_its_own():
    image = F.normalize(torch.randn(4, 3), dim=1)
    good = Relation(image=image, text=image, weights=torch.eye(4))
    assert check_relation(good, 4, "mine") is good
    with pytest.raises(ConformanceError, match=r"mine: weights \(4, 4\): need B <= Q <= N with B = 5"):
        check_relation(good, 5, "mine")
    with pytest.raises(ConformanceError, match="must lie in \\[0, 1\\], found 0 .. 2"):
        check_relation(Relation(image=image, text=image, weights=2 * torch.eye(4)), 4, "mine")
    with pytest.raises(ConformanceError, match="rows must be L2-normalised"):
        check_relation(Relation(image=2 * image, text=image, weights=torch.eye(4)), 4, "mine")


def _splits(**change):
    from wsreid.api import DatasetSplits, EvalSplit, PairRecord

    image = Path("img.png")
    fields = {"name": "x", "train": [PairRecord(i, image, "a caption", 0, 0) for i in range(2)],
              "test": EvalSplit(["a query"], [0], [image], [0]), "val": None}
    fields.update(change)
    return DatasetSplits(**fields)


@pytest.mark.parametrize("splits, problem", [
    (("not splits",), "load() returned a str, not a wsreid.api.DatasetSplits"),
    ({"train": []}, "load() returned no training pairs (splits.train must be a non-empty list of "
                    "wsreid.api.PairRecord)"),
    ({"train": [("img.png", "a caption")]}, "splits.train[0] is a tuple, not a wsreid.api.PairRecord"),
    ({"test": None}, "splits.test is a NoneType, not a wsreid.api.EvalSplit"),
    ({"val": ["a query"]}, "splits.val is a list, not a wsreid.api.EvalSplit"),
    ({"test": EvalSplit([], [], [Path("img.png")], [0])}, "splits.test has 0 queries and 1 gallery images: it "
                                                          "needs both"),
    ({"test": EvalSplit(["a query", " "], [0, 0], [Path("img.png")], [0])}, "splits.test.captions[1] is empty (' ')"),
])  # fmt: skip
def test_splits_problem_names_each_broken_rule(splits, problem):
    """What a run and the kit say of a dataset's load() result, rule by rule (the run
    prefixes the dataset and its plugin; tests/test_plugin_faults_at_run.py)."""
    from wsreid.engine.data import splits_problem

    given = splits[0] if isinstance(splits, tuple) else _splits(**splits)
    assert splits_problem(given) == problem
    assert splits_problem(_splits()) is None


@pytest.mark.parametrize("kind, name", [("global_association", "same-image"),
                                        ("local_association", "good"),
                                        ("objective", "classes-from-context")])
def test_the_kit_builds_components_with_the_context_a_run_hands_them(registry, kind, name):
    """The kit built associations with seed and num_train only: a correct component
    reading train_image_ids failed it with 'Could not infer dtype of NoneType'."""
    check_component(kind, name, {}, registry)
