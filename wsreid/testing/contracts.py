"""Contracts shared by every component kind: the parameter model, relations, state and
diagnostics. Each check raises :class:`ConformanceError` (an ``AssertionError``) whose
message names the component, what is wrong and, where it helps, what to do."""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Mapping, NoReturn

import torch
from pydantic import BaseModel, ValidationError

from wsreid.api import Component, Params, Relation, ViewFeatures
from wsreid.registry import Entry, accepts_unknown_keys, nested_models

__all__ = [
    "ConformanceError",
    "fail",
    "check_params_model",
    "check_relation",
    "check_state_round_trip",
    "check_diagnostics",
    "assert_close",
]

UNKNOWN_KEY = "wsreid_conformance_unknown_key"
#: Weights above 0 but below this are "almost zero": unrelated pairs must be exact zeros.
TINY = 1e-6


class ConformanceError(AssertionError):
    """A component breaks the contract of its kind."""


def fail(where: str, message: str) -> NoReturn:
    """Raise :class:`ConformanceError` with ``"<where>: <message>"``."""
    raise ConformanceError(f"{where}: {message}")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, where: str, what: str, *, atol: float = 1e-5,
                 rtol: float = 1e-5) -> None:
    """Fail unless ``actual`` and ``expected`` have one shape and close values."""
    if tuple(actual.shape) != tuple(expected.shape):
        fail(where, f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.allclose(a, e, atol=atol, rtol=rtol):
        worst = int((a - e).abs().argmax())
        at = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape)) if a.dim() else ()
        fail(where, f"{what}: {a.reshape(-1)[worst].item():.6g} at {at}, expected {e.reshape(-1)[worst].item():.6g}")


# --------------------------------------------------------------------------- parameters


def check_params_model(model: type[Params], data: Mapping[str, Any], where: str, entry: Entry | None = None) -> Params:
    """Check a component's parameter model and return ``data`` validated by it.

    The model derives from :class:`wsreid.api.Params` and so does every nested model
    (unknown keys are rejected at every level); every field has a description (shown by
    ``wsreid schema`` and docs/recipes.md); the values survive a YAML 1.2 round trip
    (ruamel) unchanged; and, with ``entry``, a recipe block ``{name: ..., **values}``
    validates and has a JSON schema (``wsreid schema``).
    """
    from wsreid.recipe import component_model
    from wsreid.recipe.yamlio import dump_yaml_text, parse_yaml_text

    if not (isinstance(model, type) and issubclass(model, Params)):
        fail(where, f"Params must derive from wsreid.api.Params, got {model!r}")
    loose = accepts_unknown_keys(model)  # the registry's rule, the top level included: the model is checked alone
    if loose is not None:
        fail(where, f"parameter model at {loose[0]!r} ({loose[1].__name__}) accepts unknown keys; "
                    "derive it from wsreid.api.Params (extra='forbid')")
    for path, nested in nested_models(model):
        for name, field in nested.model_fields.items():
            if not (field.description or "").strip():
                fail(where, f"parameter {path + '.' if path != '<params>' else ''}{name!r} has no description; "
                            "write Field(..., description=...) - wsreid schema and docs/recipes.md show it")
    try:
        params = model.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        fail(where, f"parameters {dict(data)!r} do not validate ({'.'.join(map(str, first['loc']))}: {first['msg']}); "
                    "pass params= with values for the required fields")
    values = params.model_dump(mode="json")
    _check_rejects_unknown(model, values, where)
    text = dump_yaml_text(values)
    back, _ = parse_yaml_text(text, "<yaml round trip>")
    try:
        again = model.model_validate(back)
    except ValidationError as exc:
        fail(where, f"parameters do not validate after a YAML round trip: {exc.errors(include_url=False)[0]['msg']}"
                    f" (YAML: {' '.join(text.split())})")
    if again != params:
        fail(where, f"parameters change in a YAML round trip: {values!r} -> {again.model_dump(mode='json')!r}")
    if entry is not None:
        block = component_model(entry)
        try:
            block.model_validate({"name": entry.name, **values})
        except ValidationError as exc:
            fail(where, f"recipe block {{name: {entry.name}, ...}} does not validate: {exc.errors(include_url=False)[0]['msg']}")
        try:
            json.dumps(block.model_json_schema())
        except Exception as exc:  # noqa: BLE001 - any failure means `wsreid schema` breaks
            fail(where, f"no JSON schema for the recipe block ({type(exc).__name__}: {exc}); use plain field types")
    return params


def _check_rejects_unknown(model: type[Params], values: dict[str, Any], where: str) -> None:
    """An unknown key at the top level, and inside each nested model, must fail validation."""
    probes = [((), {**values, UNKNOWN_KEY: 1})]
    for name, value in values.items():
        annotation = getattr(model.model_fields.get(name), "annotation", None)
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            probes.append(((name,), {**values, name: {**value, UNKNOWN_KEY: 1}}))
    for path, probe in probes:
        try:
            model.model_validate(probe)
        except ValidationError as exc:
            if any(e["type"] == "extra_forbidden" for e in exc.errors()):
                continue
        fail(where, f"an unknown key at {'.'.join(path + (UNKNOWN_KEY,))!r} is accepted; "
                    "parameter models must reject unknown keys (derive from wsreid.api.Params)")


# --------------------------------------------------------------------------- relations


def check_relation(relation: Any, batch_size: int, where: str, features: ViewFeatures | None = None) -> Relation:
    """Check the :class:`wsreid.api.Relation` contract for a batch of ``batch_size``.

    Q x N ``weights`` with B <= Q <= N, floating, finite, without gradient, in [0, 1], 1 on
    the diagonal, unrelated pairs exactly 0 (no almost-zero values), every row a
    distribution-to-be (positive sum); N x d ``image``/``text`` rows L2-normalised; with
    ``features`` (the related view's batch features) the first B rows are those features
    and carry their gradient; ``stats`` maps names to finite numbers.
    """
    if not isinstance(relation, Relation):
        fail(where, f"expected a wsreid.api.Relation, got {type(relation).__name__}")
    w, image, text = relation.weights, relation.image, relation.text
    for what, t in (("weights", w), ("image", image), ("text", text)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            fail(where, f"relation.{what} must be a 2-D floating tensor, got "
                        f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
        if not torch.isfinite(t.detach()).all():
            fail(where, f"relation.{what} holds non-finite values")
    q, n = w.shape
    if image.shape != text.shape or image.shape[0] != n:
        fail(where, f"relation rows: image {tuple(image.shape)} and text {tuple(text.shape)} must both be N x d "
                    f"with N = {n} (the columns of weights {tuple(w.shape)})")
    if not batch_size <= q <= n:
        fail(where, f"weights {tuple(w.shape)}: need B <= Q <= N with B = {batch_size} (every batch item is a query)")
    if w.requires_grad or w.grad_fn is not None:
        fail(where, "relation.weights carries gradient; relations are targets: compute them under "
                    "torch.no_grad() or .detach() them")
    if (w < 0).any() or (w > 1).any():
        fail(where, f"relation.weights must lie in [0, 1], found {float(w.min()):.4g} .. {float(w.max()):.4g}")
    diagonal = w[torch.arange(q), torch.arange(q)]
    if not torch.allclose(diagonal, torch.ones_like(diagonal), atol=1e-6, rtol=0):
        row = int((diagonal - 1).abs().argmax())
        fail(where, f"relation.weights diagonal must be 1 (row i and column i are the same pair), "
                    f"found {float(diagonal[row]):.4g} at row {row}")
    tiny = (w > 0) & (w < TINY)
    if tiny.any():
        i, j = (int(x) for x in tiny.nonzero()[0])
        fail(where, f"unrelated pairs must be exactly 0, found {float(w[i, j]):.3g} at [{i}, {j}]; threshold "
                    "the relation instead of leaving almost-zero values")
    norms = torch.linalg.vector_norm(torch.cat([image, text]).detach().double(), dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        fail(where, f"relation.image/text rows must be L2-normalised, norms range {float(norms.min()):.4g} .. "
                    f"{float(norms.max()):.4g}")
    if features is not None:
        b = batch_size
        assert_close(image[:b], features.image, where, "relation.image rows 0..B-1 must be the batch image features")
        assert_close(text[:b], features.text, where, "relation.text rows 0..B-1 must be the batch text features")
        if features.image.requires_grad and not (image.requires_grad and text.requires_grad):
            fail(where, "relation.image/text lost the gradient of the batch features (do not detach them: "
                        "objectives train the encoder through them)")
    if not isinstance(relation.view, str):
        fail(where, f"relation.view must be a view name, got {relation.view!r}")
    _check_numbers(relation.stats, where, "relation.stats")
    return relation


def _check_numbers(values: Any, where: str, what: str) -> None:
    """``values`` maps string keys to finite numbers."""
    if not isinstance(values, Mapping):
        fail(where, f"{what} must be a dict of name -> number, got {type(values).__name__}")
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            fail(where, f"{what}[{key!r}] = {value!r} is not a number")
        if not isinstance(key, str) or not math.isfinite(number):
            fail(where, f"{what}[{key!r}] = {value!r} must be a finite number under a string key")


# --------------------------------------------------------------------------- state


def check_state_round_trip(component: Component, fresh: Callable[[], Component], where: str) -> Component:
    """``state_tensors()`` is a dict of plain names -> tensors; a fresh instance accepts an
    empty state, and one loaded with this state reports the same tensors. Returns that
    loaded instance."""
    state = component.state_tensors()
    if not isinstance(state, Mapping):
        fail(where, f"state_tensors() must return a dict, got {type(state).__name__}")
    from wsreid.engine.run import MODULE_PREFIX

    for key, value in state.items():
        if not isinstance(key, str) or not key or "/" in key:
            fail(where, f"state name {key!r} must be a non-empty string without '/' (checkpoint keys add prefixes)")
        if isinstance(component, torch.nn.Module) and key.startswith(MODULE_PREFIX):  # as the run refuses it
            fail(where, f"state name {key!r}: the prefix {MODULE_PREFIX!r} is reserved for a trainable component's "
                        "module tensors (rename that state tensor)")
        if not isinstance(value, torch.Tensor):
            fail(where, f"state {key!r} must be a tensor, got {type(value).__name__}")
    try:
        fresh().load_state_tensors({})
    except Exception as exc:  # noqa: BLE001
        fail(where, f"load_state_tensors({{}}) on a fresh instance failed: {type(exc).__name__}: {exc}")
    restored = fresh()
    try:
        restored.load_state_tensors({k: v.detach().clone() for k, v in state.items()})
    except Exception as exc:  # noqa: BLE001
        fail(where, f"load_state_tensors(state_tensors()) failed: {type(exc).__name__}: {exc}")
    again = restored.state_tensors()
    if set(again) != set(state):
        fail(where, f"state after load_state_tensors holds {sorted(again)}, expected {sorted(state)}")
    for key, value in state.items():
        if again[key].dtype != value.dtype:
            fail(where, f"state {key!r} comes back as {again[key].dtype}, was {value.dtype}")
        assert_close(again[key].double(), value.double(), where, f"state {key!r} after a round trip", atol=0, rtol=0)
    return restored


def check_diagnostics(component: Component, where: str) -> dict[str, float]:
    """``diagnostics()`` returns a dict of names -> finite numbers."""
    values = component.diagnostics()
    _check_numbers(values, where, "diagnostics()")
    return dict(values)
