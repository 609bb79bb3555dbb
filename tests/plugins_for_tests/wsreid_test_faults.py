"""Components and hooks that break their contract, one per engine guard (used by
tests/test_run_guards.py through a recipe's ``plugins:`` list). Which hook fails is chosen
with the environment variable WSREID_TEST_FAIL_HOOK."""

import os
from typing import Literal

import torch

from wsreid import hookimpl
from wsreid.api import GlobalAssociation, LocalAssociation, Objective, Params, Relation
from wsreid.losses import itc_loss


class PerPairLoss(Objective):
    """ITC per pair, not reduced: a B-vector instead of a scalar (or, with ``one_element``, a
    tensor of shape [1])."""

    class Params(Params):
        one_element: bool = False

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        n = 1 if self.params.one_element else len(base.image)
        return itc_loss(base.image, base.text) * torch.ones(n, device=base.image.device)


class EvenStepsItc(Objective):
    """ITC on even steps only; None (skip) on odd ones."""

    class Params(Params):
        pass

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        return itc_loss(base.image, base.text) if ctx.step % 2 == 0 else None


class ShortRelation(LocalAssociation):
    """A relation with one candidate column more than it has rows."""

    class Params(Params):
        view: str = "base"

    def relate(self, features, batch, ctx):
        f = features[self.params.view]
        n = f.image.shape[0]
        return Relation(f.image, f.text, torch.eye(n, n + 1, device=f.image.device))


class FailsToBuild(LocalAssociation):
    """Raises in its constructor, as a plugin with a bug would."""

    class Params(Params):
        view: str = "base"

    def __init__(self, params, context):
        super().__init__(params, context)
        raise ZeroDivisionError("division by zero")


class ScaledItc(Objective, torch.nn.Module):
    """A trainable objective (ITC at a learned temperature) whose state_tensors() uses the
    name prefix the engine reserves for a trainable component's own tensors."""

    class Params(Params):
        pass

    def __init__(self, params, context):
        torch.nn.Module.__init__(self)
        Objective.__init__(self, params, context)
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        return itc_loss(base.image, base.text) * self.log_scale.exp()

    def state_tensors(self):
        return {"module.steps": torch.zeros(1)}


class CountsSteps(Objective):
    """ITC with a step counter kept as state under a name starting with ``module.``: legal for
    a component that is not a torch module (only trainable components' names are split off
    as module tensors in a checkpoint)."""

    class Params(Params):
        pass

    def __init__(self, params, context):
        super().__init__(params, context)
        self.steps = torch.zeros((), dtype=torch.long)

    def loss(self, features, relations, batch, ctx):
        self.steps += 1
        base = features["base"]
        return itc_loss(base.image, base.text)

    def state_tensors(self):
        return {"module.steps": self.steps.clone()}

    def load_state_tensors(self, tensors):
        self.steps = tensors["module.steps"].clone()


class BrokenAssociation(LocalAssociation):
    """A local association that breaks its contract while training, as ``fault`` says."""

    class Params(Params):
        fault: Literal["none", "raises", "half-batch", "bool-weights", "grad-weights", "bad-diagnostics",
                       "nan-diagnostics", "bad-state", "slash-state", "bad-load"] = "raises"

    def relate(self, features, batch, ctx):
        f, fault = features["base"], self.params.fault
        n = f.image.shape[0]
        if fault == "raises":
            return features["asymetric"]  # a misspelt view: KeyError
        if fault == "half-batch":
            return Relation(f.image[: n // 2], f.text[: n // 2], torch.eye(n // 2, device=f.image.device))
        if fault == "bool-weights":
            return Relation(f.image, f.text, torch.eye(n, dtype=torch.bool, device=f.image.device))
        if fault == "grad-weights":  # a soft relation computed from the features, not detached
            eye = torch.eye(n, device=f.image.device)
            return Relation(f.image, f.text, eye + (1 - eye) * (f.image @ f.text.t()).sigmoid() * 0.5)
        return Relation(f.image, f.text, torch.eye(n, device=f.image.device))

    def diagnostics(self):
        fault = self.params.fault
        return {"hits": None} if fault == "bad-diagnostics" else {"precision": float("nan")} \
            if fault == "nan-diagnostics" else {}

    def state_tensors(self):
        if self.params.fault == "slash-state":
            return {"a/b": torch.zeros(1)}  # could not be read back: the checkpoint splits names at '/'
        if self.params.fault == "bad-load":
            return {"count_v1": torch.zeros(1)}
        return {"count": 3} if self.params.fault == "bad-state" else {}

    def load_state_tensors(self, tensors):
        if self.params.fault == "bad-load":  # a newer version of the plugin reading an older run's state
            self.count = tensors["count_v2"]


class BrokenLoss(Objective):
    """An objective whose loss() breaks its contract, as ``fault`` says."""

    class Params(Params):
        fault: Literal["raises", "no-grad", "integer"] = "raises"

    def loss(self, features, relations, batch, ctx):
        if self.params.fault == "raises":
            return relations["near"].weight  # a misspelt attribute (weights): AttributeError
        if self.params.fault == "no-grad":
            return torch.tensor(1.0)
        return torch.tensor(3)


class FailsAfterStep(GlobalAssociation):
    """A global association whose memory update raises."""

    class Params(Params):
        pass

    def relate(self, features, batch, ctx):
        return None

    def after_step(self, features, batch, ctx):
        raise KeyError("image_memory")


@hookimpl
def wsreid_register(registry):
    registry.add("objective", "per-pair-loss", PerPairLoss)
    registry.add("objective", "even-steps-itc", EvenStepsItc)
    registry.add("local_association", "short-relation", ShortRelation)
    registry.add("local_association", "fails-to-build", FailsToBuild)
    registry.add("objective", "reserved-state-name", ScaledItc)
    registry.add("objective", "counts-steps", CountsSteps)
    registry.add("local_association", "broken-association", BrokenAssociation)
    registry.add("objective", "broken-loss", BrokenLoss)
    registry.add("global_association", "fails-after-step", FailsAfterStep)


@hookimpl
def wsreid_run_start(run):
    if os.environ.get("WSREID_TEST_FAIL_HOOK") == "run_start":
        raise ValueError("the observer's output folder is not writable")


@hookimpl
def wsreid_run_end(run, metrics):
    if os.environ.get("WSREID_TEST_FAIL_HOOK") == "run_end":
        raise ValueError("the observer's report could not be sent")
