"""Components and hooks that break their contract, one per engine guard (used by
tests/test_run_guards.py through a recipe's ``plugins:`` list). Which hook fails is chosen
with the environment variable WSREID_TEST_FAIL_HOOK."""

import os

import torch

from wsreid import hookimpl
from wsreid.api import LocalAssociation, Objective, Params, Relation
from wsreid.losses import itc_loss


class PerPairLoss(Objective):
    """ITC per pair, not reduced: a B-vector instead of a scalar."""

    class Params(Params):
        pass

    def loss(self, features, relations, batch, ctx):
        base = features["base"]
        return itc_loss(base.image, base.text) * torch.ones(len(base.image), device=base.image.device)


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


@hookimpl
def wsreid_register(registry):
    registry.add("objective", "per-pair-loss", PerPairLoss)
    registry.add("local_association", "short-relation", ShortRelation)
    registry.add("local_association", "fails-to-build", FailsToBuild)
    registry.add("objective", "reserved-state-name", ScaledItc)
    registry.add("objective", "counts-steps", CountsSteps)


@hookimpl
def wsreid_run_start(run):
    if os.environ.get("WSREID_TEST_FAIL_HOOK") == "run_start":
        raise ValueError("the observer's output folder is not writable")
