"""The public API that plugins build on.

Data flow of one training step (see docs/architecture.md)::

    batch  --pair construction-->  views {"base": View, "asymmetric": View, ...}
    views  --encoder-->            features {view: ViewFeatures}     (L2-normalised, B x d)
    features --associations-->     relations {label: Relation}       (targets, no grad)
    features, relations --objectives--> losses {label: scalar}

Component kinds (hook points): ``dataset``, ``encoder``, ``pair_construction``,
``local_association``, ``global_association``, ``objective``. A plugin registers a class
per component under a unique name; the class declares a pydantic ``Params`` model (strict,
derive from :class:`Params`) and is built as ``Component(params, context)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    from wsreid.distributed import Distributed

__all__ = [
    "COMPONENT_KINDS",
    "KINDS",
    "ComponentKind",
    "Params",
    "PairRecord",
    "EvalSplit",
    "DatasetSplits",
    "Batch",
    "View",
    "ViewFeatures",
    "Relation",
    "BuildContext",
    "StepContext",
    "EpochContext",
    "Component",
    "DatasetComponent",
    "EncoderComponent",
    "PairConstruction",
    "LocalAssociation",
    "GlobalAssociation",
    "Objective",
]


BASE_VIEW = "base"
ASYMMETRIC_VIEW = "asymmetric"


class Params(BaseModel):
    """Base class of every parameter model: unknown keys are rejected, values validated
    on assignment. Plugin parameter models must derive from it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- data records


@dataclass(frozen=True)
class PairRecord:
    """One caption-level training pair. ``index`` is the stable dataset index (0..N-1) used
    to key memory banks and pseudo-labels. ``person_id`` is for evaluation/diagnostics only;
    no weakly supervised loss may read it."""

    index: int
    image_path: Path
    caption: str
    image_id: int
    person_id: int


@dataclass
class EvalSplit:
    """An evaluation split: every caption is a query, every image is in the gallery."""

    captions: list[str]
    caption_person_ids: list[int]
    image_paths: list[Path]
    image_person_ids: list[int]

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_person_ids):
            raise ValueError("captions and caption_person_ids differ in length")
        if len(self.image_paths) != len(self.image_person_ids):
            raise ValueError("image_paths and image_person_ids differ in length")


@dataclass
class DatasetSplits:
    """What a dataset component loads: caption-level training pairs (indices 0..N-1 in
    order), and evaluation splits. ``val`` is None where the dataset has none."""

    name: str
    train: list[PairRecord]
    test: EvalSplit
    val: EvalSplit | None = None
    root: Path | None = None


# --------------------------------------------------------------------------- tensors


@dataclass
class Batch:
    """A training batch of B pairs, on the training device.

    images: B x 3 x H x W float (normalised); input_ids, attention_mask: B x L long;
    index: B long (dataset index); image_id, person_id: B long (person_id: diagnostics only).
    """

    images: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    index: torch.Tensor
    image_id: torch.Tensor
    person_id: torch.Tensor

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


@dataclass
class View:
    """One view of the batch that the encoder sees (images B x 3 x H x W, tokens B x L)."""

    images: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass
class ViewFeatures:
    """Encoder outputs for one view: L2-normalised image and text features, B x d each."""

    image: torch.Tensor
    text: torch.Tensor


@dataclass
class Relation:
    """Who is whom: the central data type that associations produce and objectives consume.

    Rows ``0..Q-1`` of ``image``/``text`` are queries; all N rows are candidates.
    ``weights`` (Q x N, no grad) holds R of docs/method.md: 1 on the diagonal (row i and
    column i are the same pair), a value in (0, 1] for related pairs, exactly 0 for unrelated
    ones. ``image``/``text`` (N x d, L2-normalised) are the features of the rows; the first
    B are the batch (with gradient), further rows may come from memory (no gradient).
    ``view`` names the view the batch rows come from.
    """

    image: torch.Tensor
    text: torch.Tensor
    weights: torch.Tensor
    view: str = BASE_VIEW
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_candidates(self) -> int:
        return int(self.weights.shape[1])


# --------------------------------------------------------------------------- contexts


@dataclass
class BuildContext:
    """Handed to every component constructor.

    ``run_dir``: the run's output directory (None for dry builds such as validation);
    ``seed``: the run seed; ``num_train``: number of training pairs (N), known once the
    dataset has been loaded (None when building the dataset itself); ``encoder``: the
    built encoder (None while building dataset and encoder); ``train_captions``: the
    training captions (for encoders that build a tokenizer from them).
    """

    run_dir: Path | None = None
    seed: int = 0
    num_train: int | None = None
    encoder: "EncoderComponent | None" = None
    train_captions: list[str] | None = None
    image_size: tuple[int, int] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """State of the current step: ``epoch`` is 1-based, ``step`` counts optimizer steps
    from 0 over the whole run. ``dist`` gathers across processes (identity on one)."""

    epoch: int
    step: int
    num_epochs: int
    dist: "Distributed"


@dataclass
class EpochContext:
    """Handed to global associations before each epoch.

    ``extract_train_features()`` returns un-augmented features of the WHOLE training set
    (N x d image, N x d text, L2-normalised, row = dataset index), identical on every rank.
    """

    epoch: int
    num_epochs: int
    dist: "Distributed"
    extract_train_features: Callable[[], ViewFeatures]
    train_person_ids: torch.Tensor | None = None  # N, diagnostics only


# --------------------------------------------------------------------------- components


class Component:
    """Base of every component. Subclasses set ``Params`` (a :class:`Params` model) and
    implement their kind's methods. ``state_tensors``/``load_state_tensors`` hold state
    that must survive a resume (memory banks, pseudo-labels); ``diagnostics`` returns
    per-epoch statistics (may use identity ids; never feeds a loss) and resets them."""

    Params: ClassVar[type[Params]] = Params
    kind: ClassVar[str] = ""
    #: False for components that read true identity labels (supervised references);
    #: runs using one are labelled "not weakly supervised" in every output.
    weakly_supervised: ClassVar[bool] = True

    def __init__(self, params: Params, context: BuildContext):
        self.params = params
        self.context = context

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(f"{type(self).__name__} has no state but got {sorted(tensors)}")

    def diagnostics(self) -> dict[str, float]:
        return {}


class DatasetComponent(Component):
    """``load()`` returns :class:`DatasetSplits` (raises wsreid.errors.DataError on bad input)."""

    kind = "dataset"

    def load(self) -> DatasetSplits:  # pragma: no cover - interface
        raise NotImplementedError


class EncoderComponent(Component, torch.nn.Module):
    """An image and a text encoder with a shared embedding space.

    ``encode_image(images B x 3 x H x W) -> B x d`` and
    ``encode_text(input_ids B x L, attention_mask B x L) -> B x d`` return raw (not yet
    normalised) features; ``tokenize(texts) -> (input_ids, attention_mask)`` pads to
    ``max_length``. ``image_size`` is (H, W); ``image_mean``/``image_std`` normalise pixels.
    ``mask_token_id`` and ``special_token_ids`` serve text masking.
    ``parameter_groups(lr, weight_decay)`` may override optimizer groups.
    ``save_pretrained(dir)`` writes what is needed to rebuild it (e.g. a tokenizer).
    """

    kind = "encoder"
    image_size: tuple[int, int] = (384, 128)
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    max_length: int = 77
    mask_token_id: int = 0
    pad_token_id: int = 0
    special_token_ids: frozenset[int] = frozenset()
    embed_dim: int = 512

    def __init__(self, params: Params, context: BuildContext):
        torch.nn.Module.__init__(self)
        Component.__init__(self, params, context)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def save_pretrained(self, directory: Path) -> None:
        pass


class PairConstruction(Component):
    """``views(batch) -> {view name: View}``; must contain ``"base"``."""

    kind = "pair_construction"

    def views(self, batch: Batch, encoder: EncoderComponent) -> dict[str, View]:  # pragma: no cover
        raise NotImplementedError


class LocalAssociation(Component):
    """In-batch association. ``relate(features[view], batch, ctx) -> Relation``.
    Its Params should carry ``view`` (which view's features it relates)."""

    kind = "local_association"

    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:  # pragma: no cover
        raise NotImplementedError


class GlobalAssociation(Component):
    """Association from state over the whole training set.

    ``epoch_start(ctx)`` runs before each epoch (e.g. clustering); ``relate`` builds the
    relation for the step (None = no relation this step, e.g. while filling memory);
    ``after_step`` runs after the optimizer step with the detached features of the batch
    (gathered from all processes, with their dataset indices in ``batch.index``).
    """

    kind = "global_association"

    def epoch_start(self, ctx: EpochContext) -> None:
        pass

    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:  # pragma: no cover
        raise NotImplementedError

    def after_step(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> None:
        pass


class Objective(Component):
    """``loss(features, relations, batch, ctx) -> scalar tensor`` (or None to skip this
    step, e.g. before a start epoch). ``relations`` maps association labels to relations."""

    kind = "objective"

    def loss(
        self,
        features: dict[str, ViewFeatures],
        relations: dict[str, Relation],
        batch: Batch,
        ctx: StepContext,
    ) -> torch.Tensor | None:  # pragma: no cover
        raise NotImplementedError


# --------------------------------------------------------------------------- the kinds


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component: its name, the recipe section that configures it, whether that
    section maps labels to blocks (several components) or holds one block, and the base
    class every component of the kind derives from."""

    kind: str
    section: str
    labelled: bool
    base: type[Component]


#: THE table of component kinds, in recipe order. The registry's base classes, the recipe
#: sections, the engine's component sets and ``wsreid plugins`` all derive from it.
KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("dataset", "data", False, DatasetComponent),
    ComponentKind("encoder", "encoder", False, EncoderComponent),
    ComponentKind("pair_construction", "pair_construction", False, PairConstruction),
    ComponentKind("local_association", "local_associations", True, LocalAssociation),
    ComponentKind("global_association", "global_associations", True, GlobalAssociation),
    ComponentKind("objective", "objectives", True, Objective),
)

#: The kind names, in recipe order.
COMPONENT_KINDS: tuple[str, ...] = tuple(k.kind for k in KINDS)


def labelled_kinds() -> tuple[ComponentKind, ...]:
    """The kinds configured as ``section: {label: block}`` (associations, objectives)."""
    return tuple(k for k in KINDS if k.labelled)
