"""The contracts of associations and objectives, checked on small random inputs
(:mod:`wsreid.testing.inputs`). Each ``check_<kind>_entry(entry, params, ...)`` builds the
component from a registry entry and raises :class:`ConformanceError` on the first breach.
Datasets, pair constructions and encoders: :mod:`wsreid.testing.pipeline`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from wsreid.api import Batch, BuildContext, EpochContext, Params, Relation, ViewFeatures
from wsreid.distributed import Distributed
from wsreid.registry import Entry
from wsreid.testing.contracts import (
    assert_close,
    check_diagnostics,
    check_params_model,
    check_relation,
    check_state_round_trip,
    fail,
)
from wsreid.testing.inputs import (
    StubEncoder,
    group_relation,
    grouped_features,
    permute_batch,
    permute_features,
    permute_relation,
    random_batch,
    step_context,
)

__all__ = [
    "check_local_association_entry",
    "check_global_association_entry",
    "check_objective_entry",
]


@dataclass
class Subject:
    """A registry entry with validated parameters, and how to build it."""

    entry: Entry
    params: Params
    where: str

    def build(self, context: BuildContext) -> Any:
        """A new instance built with ``context`` (a failure is a conformance failure)."""
        try:
            return self.entry.cls(self.params, context)
        except Exception as exc:  # noqa: BLE001 - reported as a conformance failure
            fail(self.where, f"building it failed: {type(exc).__name__}: {exc}")


def prepare(entry: Entry, data: Mapping[str, Any] | None) -> Subject:
    """Validate ``data`` (a recipe block's values) with the entry's parameter model after
    the checks of :func:`check_params_model`. Recipe keys the engine handles (``name``,
    ``weight``, ``start_epoch``) are dropped unless the model has them; a required
    ``relation`` defaults to ``"relation"``."""
    where = f"{entry.kind} {entry.name!r} ({entry.provided_by})"
    values = dict(data or {})
    fields = entry.params_model.model_fields
    for common in ("name", "weight", "start_epoch"):  # recipe keys the engine handles
        if common not in fields:
            values.pop(common, None)
    if "relation" in fields and fields["relation"].is_required() and "relation" not in values:
        values["relation"] = "relation"
    if not isinstance(entry.cls.weakly_supervised, bool):
        fail(where, "the class attribute weakly_supervised must be True or False")
    return Subject(entry, check_params_model(entry.params_model, values, where, entry), where)


def persons(batch_size: int, group_size: int, seed: int) -> torch.Tensor:
    """Person ids of a batch: groups of ``group_size``, in a shuffled order."""
    ids = torch.arange(batch_size) // group_size
    return ids[torch.randperm(batch_size, generator=torch.Generator().manual_seed(seed + 7))]


def engine_context(seed: int, num_train: int, dim: int, person_ids: torch.Tensor | None = None) -> BuildContext:
    """The context the engine hands an association or an objective, every field filled as
    a run fills it before they are built (docs/components.md, BuildContext): ``num_train``
    training pairs of ``person_ids`` (groups of 2 by default), two captions per image, a
    caption per pair, the stub encoder of ``dim`` features and its image size. An image
    shows one person (two of that person's pairs share it), as the dataset readers ensure."""
    person = [int(p) for p in (person_ids if person_ids is not None else torch.arange(num_train) // 2).tolist()]
    images: dict[tuple[int, int], int] = {}  # (person, its k-th image) -> image id: one person per image
    seen: dict[int, int] = {}
    image_ids = []
    for p in person:
        seen[p] = seen.get(p, 0) + 1
        image_ids.append(images.setdefault((p, (seen[p] - 1) // 2), len(images)))
    encoder = StubEncoder(embed_dim=dim)
    return BuildContext(seed=seed, num_train=num_train, encoder=encoder,
                        train_captions=[f"a person in a coat of colour {p % 7}, pair {i}" for i, p in enumerate(person)],
                        train_person_ids=tuple(person), train_image_ids=tuple(image_ids),
                        image_size=tuple(encoder.image_size))


def permutation(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of ``0..n-1`` that is not the identity (for n >= 2)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 11))
    return perm if n < 2 or not torch.equal(perm, torch.arange(n)) else perm.roll(1)


def _view_of(params: Params) -> str:
    """The view a component's parameters select (``view``), else ``"base"``."""
    view = getattr(params, "view", "base")
    return view if isinstance(view, str) else "base"


# --------------------------------------------------------------------------- associations


def check_local_association_entry(entry: Entry, data: Mapping[str, Any] | None = None, *, batch_size: int = 8,
                                  dim: int = 16, seed: int = 0, epochs: int = 3) -> None:
    """An in-batch relation (B x B, the contract of :func:`check_relation`) of the view the
    parameters name, equivariant under batch permutation; diagnostics and state round trip.
    ``relate()`` may return None ("no relation this step", e.g. before a start epoch), but
    not in every one of ``epochs`` epochs."""
    s = prepare(entry, data)
    view = _view_of(s.params)
    person = persons(batch_size, 2, seed)
    features = grouped_features(person, dim, views=tuple(dict.fromkeys(("base", view))), seed=seed)
    batch = random_batch(person, torch.arange(100, 100 + batch_size), seed=seed)
    comp = s.build(engine_context(seed, 200, dim))
    relation = None
    for epoch in range(1, epochs + 1):
        ctx = step_context(epoch, epoch - 1, epochs)
        relation = comp.relate(features, batch, ctx)
        if relation is not None:
            break
    if relation is None:
        fail(s.where, f"relate() returned None for a plain batch in each of {epochs} epochs; pass params so that "
                      f"it relates by epoch {epochs} (e.g. an earlier start epoch)")
    _check_view(relation, view, s.where)
    check_relation(relation, batch_size, s.where, features[view])
    if relation.num_candidates != batch_size:
        fail(s.where, f"a local association relates the batch only: N = {relation.num_candidates}, B = {batch_size}")
    perm = permutation(batch_size, seed)
    permuted = comp.relate(permute_features(features, perm), permute_batch(batch, perm), ctx)
    if permuted is None:
        fail(s.where, "relate() returned None for the permuted batch, where it related the batch")
    expected = relation.weights[perm][:, perm]
    assert_close(permuted.weights, expected, s.where, "permuting the batch must permute the relation "
                 "(weights of the permuted batch)", atol=1e-6)
    check_diagnostics(comp, s.where)
    check_state_round_trip(comp, lambda: s.build(engine_context(seed, 200, dim)), s.where)


def _check_view(relation: Any, view: str, where: str) -> None:
    """The relation comes from the view the parameters select."""
    if isinstance(relation, Relation) and relation.view != view:
        fail(where, f"relation.view is {relation.view!r} but the parameters select view {view!r}")


def check_global_association_entry(entry: Entry, data: Mapping[str, Any] | None = None, *, batch_size: int = 8,
                                   dim: int = 16, seed: int = 0, num_train: int = 32, epochs: int = 3) -> None:
    """Drive the component like the engine for ``epochs`` epochs over ``num_train`` items
    (``epoch_start`` with whole-set features, then per step ``relate`` and ``after_step``
    with detached features and dataset indices). Every relation meets the contract; at
    least one is produced; the batch block is equivariant under batch permutation; an
    instance restored from ``state_tensors()`` relates exactly as the original."""
    s = prepare(entry, data)
    view = _view_of(s.params)
    views = tuple(dict.fromkeys(("base", view)))
    train_person = persons(num_train, 4, seed)
    train = grouped_features(train_person, dim, seed=seed, requires_grad=False)["base"]

    def context() -> BuildContext:
        return engine_context(seed, num_train, dim, train_person)

    comp = s.build(context())
    gen = torch.Generator().manual_seed(seed + 3)
    produced, step, last = 0, 0, None
    for epoch in range(1, epochs + 1):
        ectx = EpochContext(epoch, epochs, Distributed(),
                            lambda text=True: ViewFeatures(train.image.clone(), train.text.clone() if text else None),
                            train_person.clone())
        comp.epoch_start(ectx)
        order = torch.randperm(num_train, generator=gen)
        for first in range(0, num_train - batch_size + 1, batch_size):
            index = order[first:first + batch_size]
            features = grouped_features(train_person[index], dim, views=views, seed=seed + 100 + step)
            batch = random_batch(train_person[index], index, seed=seed + step)
            ctx = step_context(epoch, step, epochs)
            relation = comp.relate(features, batch, ctx)
            if relation is not None:
                produced += 1
                _check_view(relation, view, s.where)
                check_relation(relation, batch_size, s.where, features[view])
                last = (features, batch, ctx)
            base = features["base"]
            empty = torch.zeros(0)
            gathered = Batch(images=empty, input_ids=empty, attention_mask=empty, index=index.clone(),
                             image_id=index.clone(), person_id=train_person[index].clone())
            comp.after_step({"base": ViewFeatures(base.image.detach(), base.text.detach())}, gathered, ctx)
            step += 1
    if last is None:
        fail(s.where, f"relate() returned None at every step of {epochs} epochs; pass params so that it relates "
                      f"by epoch {epochs} (e.g. an earlier start epoch)")
    check_diagnostics(comp, s.where)
    features, batch, ctx = last
    relation = comp.relate(features, batch, ctx)
    perm = permutation(batch_size, seed)
    permuted = comp.relate(permute_features(features, perm), permute_batch(batch, perm), ctx)
    if permuted is None or permuted.num_candidates != relation.num_candidates:
        fail(s.where, "permuting the batch changed whether or how many candidates are related")
    b = batch_size
    assert_close(permuted.weights[:b, :b], relation.weights[perm][:, perm], s.where,
                 "permuting the batch must permute the batch block of the relation", atol=1e-6)
    assert_close(permuted.weights.sum(), relation.weights.sum(), s.where,
                 "permuting the batch must keep the total relation weight", atol=1e-4)
    restored = check_state_round_trip(comp, lambda: s.build(context()), s.where)
    again = restored.relate(features, batch, ctx)
    if again is None:
        fail(s.where, "an instance restored from state_tensors() does not relate where the original does")
    assert_close(again.weights, relation.weights, s.where,
                 "an instance restored from state_tensors() must relate as the original", atol=1e-6)


# --------------------------------------------------------------------------- objectives


def check_objective_entry(entry: Entry, data: Mapping[str, Any] | None = None, *, batch_size: int = 8,
                          dim: int = 16, seed: int = 0, memory_rows: int = 4) -> None:
    """A finite, differentiable scalar loss for a relation over the batch (Q = N = B) and
    over the batch plus ``memory_rows`` rows without gradient (Q = B < N), invariant
    under batch permutation. A ``relation`` parameter names the label of the relation it
    is given (filled in with ``"relation"`` when required and not given)."""
    s = prepare(entry, data)
    view = _view_of(s.params)
    label = getattr(s.params, "relation", None)
    label = label if isinstance(label, str) else "relation"
    start = (data or {}).get("start_epoch", getattr(s.params, "start_epoch", 1))
    epoch = max(1, int(start) if isinstance(start, int) else 1)
    ctx = step_context(epoch, 0, epoch)
    person = persons(batch_size, 2, seed)

    def context() -> BuildContext:
        # training identities for supervised references (an identity classifier sizes its layer with them):
        # those of the batch
        return engine_context(seed, 200, dim, torch.arange(200) % batch_size)

    comp = s.build(context())
    batch = random_batch(person, torch.arange(batch_size), seed=seed)
    perm = permutation(batch_size, seed)
    for extra in (0, memory_rows):
        features = grouped_features(person, dim, views=tuple(dict.fromkeys(("base", view))), seed=seed)
        memory_person = person[torch.arange(extra) % batch_size]
        memory = grouped_features(memory_person, dim, seed=seed + 1, requires_grad=False)["base"]
        relation = Relation(image=torch.cat([features[view].image, memory.image]),
                            text=torch.cat([features[view].text, memory.text]),
                            weights=group_relation(person, 0.5, memory_person), view=view)
        what = f"given relation {label!r} ({batch_size} x {batch_size + extra})"
        loss = _loss(s, comp, features, {label: relation}, batch, ctx, what)
        leaves = [t for f in features.values() for t in (f.image, f.text, f.image_raw, f.text_raw)]
        check_gradients(s, loss, leaves, f"the loss {what}", "the features")
        permuted_features = permute_features(features, perm)
        permuted_relation = permute_relation(relation, perm, permuted_features[view])
        permuted = _loss(s, comp, permuted_features, {label: permuted_relation}, permute_batch(batch, perm), ctx, what)
        assert_close(permuted, loss, s.where, f"the loss {what} must not change when the batch is permuted",
                     atol=1e-5, rtol=1e-4)
        if isinstance(comp, torch.nn.Module):
            check_trainable(s, comp, loss, context, lambda c: _loss(s, c, features, {label: relation}, batch, ctx, what))
    if "relation" in type(s.params).model_fields:  # a missing label means no relation this step
        try:
            absent = comp.loss(features, {}, batch, ctx)
        except Exception as exc:
            fail(s.where, f"loss() raised {type(exc).__name__}: {exc} without relation {label!r}; a missing label "
                          "means its association gave no relation this step: return None (or a loss without it)")
        if absent is not None:
            _loss(s, comp, features, {}, batch, ctx, f"without relation {label!r} (absent this step)")
    check_diagnostics(comp, s.where)
    check_state_round_trip(comp, lambda: s.build(context()), s.where)


def check_gradients(s: Subject, loss: torch.Tensor, tensors: list, loss_name: str, wrt: str) -> None:
    """``loss`` has a non-zero, finite gradient with respect to some of ``tensors`` (tensors
    it does not reach are allowed, as long as one is reached)."""
    grads = torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)
    present = [g for g in grads if g is not None]
    if not present or all(float(g.abs().sum()) == 0 for g in present):
        fail(s.where, f"{loss_name} has no gradient with respect to {wrt}")
    if not all(torch.isfinite(g).all() for g in present):
        fail(s.where, f"{loss_name} has non-finite gradients with respect to {wrt}")


def check_trainable(s: Subject, comp: torch.nn.Module, loss: torch.Tensor, build_context, loss_of) -> None:
    """A trainable component (a ``torch.nn.Module``): the loss reaches its parameters with
    finite gradients, and a fresh instance given its ``state_dict()`` computes the same loss
    (the checkpoint of a run holds that state)."""
    params = [p for p in comp.parameters() if p.requires_grad]
    if not params:
        fail(s.where, "is a torch.nn.Module without trainable parameters; derive from torch.nn.Module only to train some")
    check_gradients(s, loss, params, "the loss", "the component's own parameters")
    fresh = s.build(build_context())
    fresh.load_state_dict(comp.state_dict())
    assert_close(loss_of(fresh), loss, s.where, "a fresh instance loaded with state_dict() must give the same loss",
                 atol=1e-6)


def _loss(s: Subject, comp: Any, features: dict, relations: dict, batch: Batch, ctx: Any, what: str) -> torch.Tensor:
    """``comp.loss(...)``, checked to be a finite floating scalar with gradient."""
    loss = comp.loss(features, relations, batch, ctx)
    if loss is None:
        fail(s.where, f"loss() returned None at epoch {ctx.epoch} {what}")
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        fail(s.where, f"loss() must return a floating scalar tensor {what}, got "
                      f"{getattr(loss, 'dtype', type(loss).__name__)} of shape {tuple(getattr(loss, 'shape', ()))}")
    if not torch.isfinite(loss):
        fail(s.where, f"the loss {what} is not finite: {float(loss)}")
    if not loss.requires_grad:
        fail(s.where, f"the loss {what} is not differentiable (requires_grad is False)")
    return loss
