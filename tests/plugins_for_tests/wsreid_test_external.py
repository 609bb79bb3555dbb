"""A third-party plugin: registers an objective under a new name using only the public
API. Used by a recipe through its ``plugins:`` list."""

import torch

from wsreid import hookimpl
from wsreid.api import Objective, Params
from wsreid.losses import itc_loss


class HalfItc(Objective):
    """ITC scaled by a factor (a stand-in for a user's own objective)."""

    class Params(Params):
        factor: float = 0.5

    def loss(self, features, relations, batch, ctx) -> torch.Tensor:
        base = features["base"]
        return self.params.factor * itc_loss(base.image, base.text)


@hookimpl
def wsreid_register(registry):
    registry.add("objective", "half-itc", HalfItc)


class NanAfter(Objective):
    """Returns NaN from epoch ``epoch`` on (to test the non-finite loss guard)."""

    class Params(Params):
        epoch: int = 2

    def loss(self, features, relations, batch, ctx) -> torch.Tensor:
        value = features["base"].image.sum() * 0.0
        return value + float("nan") if ctx.epoch >= self.params.epoch else value


@hookimpl(specname="wsreid_register")
def register_nan(registry):
    registry.add("objective", "nan-after", NanAfter)
