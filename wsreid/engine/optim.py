"""Optimizer parameter groups and the warm-up + cosine schedule (docs/method.md)."""

from __future__ import annotations

import fnmatch
import itertools
import math

import torch

from wsreid.errors import RecipeError
from wsreid.recipe.model import TrainConfig


def parameter_groups(named_parameters, train: TrainConfig) -> list[dict]:
    """One group per (lr, weight decay) combination.

    Biases get ``lr * bias_lr_factor`` and ``bias_weight_decay``; other parameters ``lr``
    and ``weight_decay``; ``lr_factors`` (glob -> factor, first match wins) multiplies on
    top; a factor of 0 freezes the parameter (it is left out of the optimizer). A glob that
    matches no parameter is a RecipeError (:func:`check_lr_factors`).
    """
    named_parameters = list(named_parameters)
    check_lr_factors(train.lr_factors, [name for name, _ in named_parameters])
    groups: dict[tuple[float, float], list] = {}
    names: dict[tuple[float, float], list[str]] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        is_bias = name.endswith(".bias") or name == "bias"
        lr = train.lr * (train.bias_lr_factor if is_bias else 1.0)
        wd = train.bias_weight_decay if is_bias else train.weight_decay
        for pattern, factor in train.lr_factors.items():
            if fnmatch.fnmatch(name, pattern):
                lr *= factor
                break
        if lr == 0:
            param.requires_grad_(False)
            continue
        groups.setdefault((lr, wd), []).append(param)
        names.setdefault((lr, wd), []).append(name)
    return [
        {"params": params, "lr": lr, "initial_lr": lr, "weight_decay": wd, "names": names[(lr, wd)]}
        for (lr, wd), params in groups.items()
    ]


def check_lr_factors(lr_factors: dict[str, float], names: list[str]) -> None:
    """Every ``train.lr_factors`` glob must match a parameter name, else a RecipeError names
    it (a mistyped pattern would otherwise change nothing, silently); and since the first
    glob that matches a name sets its factor, a glob whose every parameter an earlier glob
    already matched is refused too (it would change nothing either)."""
    earlier: list[str] = []
    for pattern in lr_factors:
        matched = [name for name in names if fnmatch.fnmatch(name, pattern)]
        if matched:
            if all(any(fnmatch.fnmatch(name, glob) for glob in earlier) for name in matched):
                taken = next(glob for glob in earlier if any(fnmatch.fnmatch(name, glob) for name in matched))
                raise RecipeError(
                    f"train.lr_factors: {pattern!r} sets nothing: every parameter it matches is matched by an earlier "
                    f"glob ({taken!r}), and the first matching glob sets a parameter's factor",
                    hint=f"write {pattern!r} before {taken!r} in train.lr_factors", key=("train", "lr_factors", pattern))
            earlier.append(pattern)
            continue
        import difflib

        # globs of the names' first 2-4 parts (encoder.clip.vision_model.*): a mistyped part
        # is suggested at the depth it was typed
        globs = sorted({".".join(n.split(".")[:depth]) + ".*" for n in names for depth in (2, 3, 4)
                        if n.count(".") >= depth})
        close = difflib.get_close_matches(pattern, globs + names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        shown = sorted({".".join(n.split(".")[:3]) + ".*" if n.count(".") > 2 else n for n in names})
        raise RecipeError(f"train.lr_factors: {pattern!r} matches no parameter of this run",
                          hint=f"{hint}parameter names start with: {', '.join(shown[:8])}"
                               + (" ..." if len(shown) > 8 else ""),
                          key=("train", "lr_factors", pattern))


def build_optimizer(model: torch.nn.Module, train: TrainConfig, extra_named_parameters=()) -> torch.optim.Optimizer:
    """Adam or AdamW (``train.optimizer``) over the parameter groups (:func:`parameter_groups`)
    of ``model`` and of ``extra_named_parameters`` (``(name, parameter)`` pairs, e.g. the
    parameters of trainable components, named ``<section>.<label>.<name>``)."""
    groups = parameter_groups(itertools.chain(model.named_parameters(), extra_named_parameters), train)
    if not groups:
        frozen = ", ".join(f"{k!r}: {v:g}" for k, v in train.lr_factors.items() if v == 0)
        why = f"train.lr_factors freezes every parameter ({{{frozen}}})" if frozen else \
            "no parameter of the encoder or the components is trainable"
        raise RecipeError(f"{why}: there is nothing to train", key=("train", "lr_factors") if frozen else None,
                          hint="leave some parameters trainable (a factor above 0), or evaluate the model with "
                               "wsreid eval --zero-shot instead of training it")
    for g in groups:
        g.pop("names")
    cls = torch.optim.Adam if train.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=train.lr, betas=tuple(train.betas), eps=train.eps)


def lr_factor(step: int, steps_per_epoch: int, train: TrainConfig) -> float:
    """Multiplier of each group's lr at optimizer step ``step`` (0-based): linear warm-up
    from ``warmup_factor`` over ``warmup_epochs``, then cosine decay to ``min_lr_factor``."""
    total = train.epochs * steps_per_epoch
    warmup = int(round(train.warmup_epochs * steps_per_epoch))
    if step < warmup:
        alpha = step / warmup
        return train.warmup_factor * (1 - alpha) + alpha
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return train.min_lr_factor + (1 - train.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer, steps_per_epoch: int, train: TrainConfig):
    """The warm-up + cosine schedule (:func:`lr_factor`) as a LambdaLR stepped once per step; with
    ``train.lr_schedule_unit: epoch`` the factor of step s is that of epoch s // steps_per_epoch
    (constant within an epoch, as the authors' code steps it)."""
    if train.lr_schedule_unit == "epoch":
        per_epoch = max(steps_per_epoch, 1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step // per_epoch, 1, train))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, train))
