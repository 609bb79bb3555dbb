"""The recipe schema (static part). Component blocks are typed per registry by
:func:`wsreid.recipe.build.build_recipe_model`: each block is ``{name: <registered name>,
**params}`` and is validated by that component's ``Params`` model (``extra="forbid"``).

Stable keys that scripts may rely on: ``train.epochs``, ``train.batch_size``,
``train.seed``, ``output_dir``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from wsreid.api import KINDS, Params


#: Recipe sections holding components: section -> (component kind, whether the section is
#: a mapping label -> component block rather than a single block). Derived from
#: :data:`wsreid.api.KINDS`.
COMPONENT_SECTIONS: dict[str, tuple[str, bool]] = {k.section: (k.kind, k.labelled) for k in KINDS}


#: the largest training seed: numpy's generators take seeds below 2**32
MAX_SEED = 2**32 - 1


class Strict(Params):
    """Strict base for recipe sections (unknown keys are errors)."""


class TrainConfig(Strict):
    """Optimisation schedule (docs/method.md); parts a run never reaches are warned about (docs/reliability.md)."""

    epochs: int = Field(30, ge=1, description="number of training epochs")
    batch_size: int = Field(64, ge=1, description="global batch size (pairs per optimizer step, all processes together)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="run seed (model init, shuffling, augmentation)")
    lr: float = Field(1e-5, gt=0, description="base learning rate")
    weight_decay: float = Field(4e-5, ge=0, description="weight decay of non-bias parameters")
    bias_lr_factor: float = Field(2.0, gt=0, description="learning-rate factor of biases (2 in the authors' code)")
    bias_weight_decay: float = Field(0.0, ge=0, description="weight decay of biases")
    lr_factors: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="extra learning-rate factors (>= 0) by parameter-name glob (names start with 'encoder.' or, for "
        "trainable components, '<section>.<label>.'), e.g. {'objectives.id.*': 5}; 0 freezes; the first glob that "
        "matches a name sets its factor, so write specific globs before general ones; a glob that matches no "
        "parameter, or only parameters an earlier glob matches, stops the run before training",
    )
    optimizer: Literal["adam", "adamw"] = Field("adam", description="optimizer")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas")
    eps: float = Field(1e-3, gt=0, description="Adam epsilon (1e-3 in the authors' code)")
    warmup_epochs: float = Field(5, ge=0, description="linear warm-up length in epochs (shorter than epochs, or the "
                                 "lr never reaches its peak: a warning)")
    warmup_factor: float = Field(0.1, gt=0, le=1, description="warm-up starts at warmup_factor * lr")
    min_lr_factor: float = Field(0.0, ge=0, le=1, description="cosine decays to min_lr_factor * lr")
    encode_views: Literal["together", "separately"] = Field(
        "together",
        description="encoder passes per step: one over every view's rows, or one per view as the authors' code "
        "does (the same values; in float16 the weights' gradients are then summed per pass, as theirs are)",
    )
    lr_schedule_unit: Literal["step", "epoch"] = Field(
        "step",
        description="granularity of warm-up and cosine decay: every optimizer step, or once per epoch (the lr "
        "stays constant within an epoch, as the authors' code steps its scheduler)",
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="autocast precision (fp16 needs a GPU)")
    grad_clip: float | None = Field(None, gt=0, description="clip gradient norm (none by default)")
    num_workers: int = Field(0, ge=0, description="data loader workers")
    log_every: int = Field(10, ge=1, description="log losses every N steps")
    checkpoint_every: int = Field(1, ge=1, description="write a checkpoint every N epochs (and at the end)")
    drop_last: bool = Field(True, description="drop the last incomplete training batch")
    sampler: Literal["random", "identity"] = Field(
        "random",
        description="training batches: 'random' (one shuffle of the pairs per epoch) or 'identity' (PK batches: "
        "P = batch_size / K TRUE identities x K = instances_per_identity pairs each). 'identity' reads the true "
        "person ids, so a run using it is NOT weakly supervised (supervised reference only)",
    )
    instances_per_identity: int = Field(
        4, ge=2, description="K, pairs per identity in a batch of the 'identity' sampler (batch_size must be a "
        "multiple, and at least 2 K: a batch of one identity has no negative)"
    )

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("betas must lie in [0, 1)")
        return v

    @model_validator(mode="after")
    def _identity_batches(self) -> "TrainConfig":
        if self.sampler == "identity":
            k = self.instances_per_identity
            if self.batch_size % k:
                raise ValueError(
                    f"train.sampler identity: train.batch_size {self.batch_size} is not a multiple of "
                    f"train.instances_per_identity {k} (a batch is P identities x {k} pairs)"
                )
            if self.batch_size == k:
                raise ValueError(
                    f"train.sampler identity: train.batch_size {self.batch_size} equals "
                    f"train.instances_per_identity {k}, so every batch holds ONE identity and every in-batch "
                    f"negative is the same person (make train.batch_size a multiple of {k} of at least {2 * k})"
                )
            if not self.drop_last:
                raise ValueError("train.sampler identity always drops the last incomplete batch: "
                                 "remove train.drop_last: false")
        if self.lr_schedule_unit == "epoch" and self.warmup_epochs != int(self.warmup_epochs):
            raise ValueError(f"train.warmup_epochs {self.warmup_epochs:g}: with train.lr_schedule_unit epoch the "
                             "learning rate changes once per epoch, so the warm-up lasts whole epochs (write "
                             f"{math.floor(self.warmup_epochs)} or {math.ceil(self.warmup_epochs)}, or set "
                             "train.lr_schedule_unit: step)")
        return self

    def true_identity_uses(self) -> list[str]:
        """Why this schedule reads true person ids (besides components): empty when it does not."""
        return ["train.sampler: identity reads true person ids"] if self.sampler == "identity" else []


class EvalConfig(Strict):
    """When and how to evaluate (docs/method.md)."""

    every: int = Field(1, ge=1, description="evaluate on the validation split every N epochs (and at the last)")
    batch_size: int = Field(256, ge=1, description="feature extraction batch size")
    select: Literal["val", "last", "test"] = Field(
        "val",
        description="checkpoint selection: best validation R1 ('val', falls back to 'last' without a val split), "
        "the last, latest or final epoch ('last'), or best TEST R1 ('test', the published IRRA habit - reported as such)",
    )
    chunk_size: int = Field(4096, ge=1, description="queries per chunk when ranking")


class InitConfig(Strict):
    """Initialise the encoder from the final weights (and tokenizer) of another run - the
    framework's analogue of loading a pretrained encoder. ``recipe`` is trained once and
    cached under ``$WSREID_CACHE/init/`` (keyed by its content as written); ``run`` uses an
    existing run directory instead. Paths are relative to the file that names them."""

    recipe: str | None = Field(None, description="recipe trained once (cached) whose encoder initialises this run")
    run: str | None = Field(None, description="existing run directory whose encoder initialises this run")
    checkpoint: Literal["last", "best"] = Field("last", description="which checkpoint of that run to load")

    @model_validator(mode="after")
    def _one_source(self) -> "InitConfig":
        if (self.recipe is None) == (self.run is None):
            raise ValueError("init needs exactly one of 'recipe' or 'run'")
        return self


class PluginSettings(Strict):
    """The ``settings`` section: one block per plugin that declared settings
    (``registry.add_settings(key, Model)``), each validated by that plugin's model, with
    its defaults when the recipe leaves it out. ``settings[key]`` (or ``settings.key``)
    is the validated block."""

    def __getitem__(self, key: str) -> Params:
        if key not in type(self).model_fields:
            known = ", ".join(type(self).model_fields) or "none"
            raise KeyError(f"no plugin declared settings {key!r} (declared: {known})")
        return getattr(self, key)


class ComponentSpec(Strict):
    """A component block before the registry types it: ``name`` plus parameters."""

    model_config = Strict.model_config | {"extra": "allow"}
    name: str


class RecipeBase(Strict):
    """The recipe. Component sections are re-typed from the registry."""

    #: kind -> component name -> the parameter model its blocks are validated with
    #: (filled in on the typed model that ``build_recipe_model`` returns).
    component_models: ClassVar[dict[str, dict[str, type[Params]]]] = {}

    output_dir: str = Field("runs/run", min_length=1, description="run directory (~ is the home folder); a relative path is relative to the working "
                            "directory the command runs in, not to the recipe file (unlike extends, data.root and "
                            "the init paths)")
    plugins: list[str] = Field(default_factory=list, description="extra plugin modules to import (importable as Python imports them: "
                                  "installed, or in a folder on PYTHONPATH; the recipe's folder is not searched)")
    data: Any = Field(..., description="dataset component: {name: ..., params}")
    encoder: Any = Field(..., description="encoder component")
    pair_construction: Any = Field(default_factory=lambda: {"name": "identity"}, description="pair construction component")
    local_associations: dict[str, Any] = Field(default_factory=dict, description="label -> local association component")
    global_associations: dict[str, Any] = Field(default_factory=dict, description="label -> global association component")
    objectives: dict[str, Any] = Field(..., description="label -> objective component (losses are summed, each times its weight)")
    init: InitConfig | None = Field(None, description="initialise the encoder from another run's weights and tokenizer (see InitConfig)")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation schedule")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="when and how to evaluate")
    settings: PluginSettings = Field(
        default_factory=PluginSettings,
        description="plugin settings: key -> block validated by the model that plugin declared "
        "(listed by 'wsreid plugins'); handed to its hooks as run.recipe.settings[key]",
    )

    @model_serializer(mode="wrap")
    def _without_empty_settings(self, handler: Any) -> dict[str, Any]:
        """Recipes of runs without settings stay as they were: no ``settings: {}``."""
        data = handler(self)
        if isinstance(data, dict) and data.get("settings") == {}:
            del data["settings"]
        return data

    @model_validator(mode="after")
    def _labels_unique(self) -> "RecipeBase":
        seen: dict[str, str] = {}
        for section in ("local_associations", "global_associations"):
            for label in getattr(self, section):
                if label in seen:
                    raise ValueError(f"association label {label!r} appears in both {seen[label]} and {section}")
                seen[label] = section
        if not self.objectives:
            raise ValueError("objectives: at least one objective is needed")
        if self.train.batch_size < 2:
            why = ("associations relate pairs of a batch" if seen else "the objectives contrast each pair with the "
                   "other pairs of its batch (ITC over a batch of one is 0: nothing is learned)")
            raise ValueError(f"train.batch_size {self.train.batch_size}: {why}, so a batch needs at least 2 pairs")
        return self
