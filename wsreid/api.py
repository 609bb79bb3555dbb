"""The public API that plugins build on: component base classes and the types they receive.

Component kinds: ``dataset``, ``encoder``, ``pair_construction``, ``local_association``,
``global_association``, ``objective``. A plugin registers a class per component under a
unique name (``registry.add(kind, name, cls)`` in its ``wsreid_register`` hook); the class
declares a pydantic ``Params`` model (strict, derived from :class:`Params`) and is built
as ``cls(params, context)``.

What ``wsreid run`` calls, in this order, in EVERY process (with several processes each
one runs the same calls; see docs/architecture.md)::

    validation  Component.check_recipe(params, recipe)   each component class
                Component.check_params(params)
                (init) EncoderComponent.check_initial_weights(params, source)
    set-up      dataset = Dataset(params, ctx); dataset.load()
                encoder, pair construction, local associations, global associations,
                objectives: Cls(params, ctx)
                (--resume) component.load_state_tensors(saved)
    each epoch  global_association.epoch_start(epoch_ctx)
      each step views     = pair_construction.views(local batch, encoder)
                features  = encoder on every view          {view: ViewFeatures}, B x d
                (gathered: from here on, features and batch cover the GLOBAL batch)
                relations = {label: association.relate(features, batch, step_ctx)}
                            local associations first, then global ones; None = no relation
                losses    = {label: weight * objective.loss(features, relations, batch, step_ctx)}
                            skipped before start_epoch or when loss() returns None
                backward, optimizer and scheduler step
                global_association.after_step({"base": detached features}, batch, step_ctx)
      epoch end component.diagnostics(); evaluation; (main process) state_tensors() into
                the checkpoint

Shapes: B is the global batch size (``train.batch_size``) in associations and objectives,
this process's share of it in ``views``; d is the encoder's ``embed_dim``; N the number
of training pairs (``BuildContext.num_train``).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Literal, Mapping, Union, get_args, get_origin

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from wsreid.errors import ParamsCheckError, ParamsCheckWarning

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
    "ParamsCheckError",
    "ParamsCheckWarning",
]


BASE_VIEW = "base"
ASYMMETRIC_VIEW = "asymmetric"


class Params(BaseModel):
    """Base class of every parameter model: unknown keys are rejected, values validated
    on assignment, floats must be finite (no ``.inf`` / ``.nan``). Plugin parameter
    models must derive from it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_truth_value_for_a_number(cls, data: Any) -> Any:
        """``true`` / ``false`` where a number is due (``epochs: true``, ``lr: true``, a
        list or mapping of numbers holding one) is refused as not a number: pydantic would
        read them as 1 and 0. Fields that take a truth value are untouched."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        marked = {key: _truth_values_marked(value) for key, value in data.items()
                  if key in fields and _truth_value_for_number(fields[key].annotation, value)}
        return {**data, **marked} if marked else data


class _TruthValue:
    """A YAML ``true`` / ``false`` given where a number is due: no number type accepts it,
    so validation names the key and shows the value as written."""

    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"

    __str__ = __repr__


def _truth_values_marked(value: Any) -> Any:
    if isinstance(value, bool):
        return _TruthValue(value)
    if isinstance(value, dict):
        return {k: _truth_values_marked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_truth_values_marked(v) for v in value)
    return value


def _admits(annotation: Any, kind: str) -> bool:
    """Whether ``annotation`` takes a truth value (``kind`` "bool") or a number ("number")."""
    if annotation is Any:
        return True
    if annotation is bool:
        return kind == "bool"
    if annotation in (int, float):
        return kind == "number"
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_admits(arg, kind) for arg in get_args(annotation))
    if origin is Annotated:
        return _admits(get_args(annotation)[0], kind)
    if origin is Literal:
        values = get_args(annotation)
        if kind == "bool":
            return any(isinstance(v, bool) for v in values)
        return any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return False


def _number_only(annotation: Any) -> bool:
    return _admits(annotation, "number") and not _admits(annotation, "bool")


def _truth_value_for_number(annotation: Any, value: Any) -> bool:
    """Whether ``value`` puts a bool where ``annotation`` wants a number: directly, or as an
    item of a list / tuple or a value of a mapping whose items are numbers."""
    if isinstance(value, bool):
        return _number_only(annotation)
    if not isinstance(value, (list, tuple, dict)):
        return False
    items = list(value.values()) if isinstance(value, dict) else list(value)
    if not any(isinstance(v, bool) for v in items):
        return False
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for option in options:
        origin, args = get_origin(option), get_args(option)
        if isinstance(value, dict) and origin in (dict, Mapping) and len(args) == 2:
            if _number_only(args[1]):
                return True
        elif not isinstance(value, dict) and origin in (list, tuple) and args:
            if any(_number_only(a) for a in args if a is not Ellipsis):
                return True
    return False


# --------------------------------------------------------------------------- data records


@dataclass(frozen=True)
class PairRecord:
    """One caption-level training pair, as a dataset component returns it.

    Fields:
        index: the stable dataset index, 0..N-1 in order; memory banks and pseudo-labels
            are keyed by it (``Batch.index`` carries it into every step).
        image_path: the image file.
        caption: the caption text.
        image_id: 0..M-1 per distinct image; pairs that share an image share it.
        person_id: the true identity: for evaluation and diagnostics only, no weakly
            supervised component may read it.
    """

    index: int
    image_path: Path
    caption: str
    image_id: int
    person_id: int


@dataclass
class EvalSplit:
    """An evaluation split: every caption is a query, every image is in the gallery.

    Fields:
        captions: the queries (Q strings).
        caption_person_ids: the identity of each query (Q ints).
        image_paths: the gallery (G image files, each once).
        image_person_ids: the identity of each gallery image (G ints).
    """

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
    """What a dataset component's ``load()`` returns.

    Fields:
        name: the dataset's name (recorded in ``metrics.json``).
        train: the caption-level training pairs, ``train[i].index == i``.
        test: the test split, evaluated once at the end of a run.
        val: the validation split (checkpoint selection), None where the dataset has none.
        root: the folder the dataset was read from, when there is one.
    """

    name: str
    train: list[PairRecord]
    test: EvalSplit
    val: EvalSplit | None = None
    root: Path | None = None


# --------------------------------------------------------------------------- tensors


@dataclass
class Batch:
    """A training batch of B pairs, on the training device.

    ``pair_construction.views`` gets the batch of this process (B = its share of
    ``train.batch_size``). Associations and objectives get the GLOBAL batch, gathered from
    every process (B = ``train.batch_size``): there ``index``, ``image_id`` and
    ``person_id`` cover the global batch, while ``images``, ``input_ids`` and
    ``attention_mask`` are empty tensors when more than one process trains (the encoder
    already ran; read features, not pixels). With one process both are the same batch.

    Fields:
        images: B x 3 x H x W float, normalised with the encoder's ``image_mean`` /
            ``image_std``.
        input_ids: B x L long, the captions tokenised by the encoder (padded to L =
            ``encoder.max_length``).
        attention_mask: B x L long, 1 for tokens, 0 for padding.
        index: B long, the dataset index of each pair (``PairRecord.index``).
        image_id: B long, the image of each pair (``PairRecord.image_id``).
        person_id: B long, the true identity: diagnostics only, never for a weakly
            supervised loss.
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
        """A copy of the batch on ``device``.

        Called:
            by the engine on each batch from the data loader; by components when needed.

        Arguments:
            device: the target device.

        Returns:
            a new :class:`Batch`.
        """
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


@dataclass
class View:
    """One view of the batch that the encoder sees; every view of a step has the same B,
    H, W and L (views are encoded in one forward pass).

    Fields:
        images: B x 3 x H x W float, normalised.
        input_ids: B x L long.
        attention_mask: B x L long.
    """

    images: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass
class ViewFeatures:
    """Encoder outputs for one view (``features[view]`` in associations and objectives).

    Fields:
        image: B x d float32, L2-normalised, with gradient (in ``after_step``: detached).
        text: B x d float32, L2-normalised, with gradient (in ``after_step``: detached).
        image_raw: B x d float32 as the encoder returned it (no normalisation), with
            gradient like ``image``, or None where not available - e.g. for memory banks
            that store raw features as the authors' code does (docs/method.md), or a loss
            on unnormalised features (the ID loss).
        text_raw: the same for the text features.
    """

    image: torch.Tensor
    text: torch.Tensor
    image_raw: torch.Tensor | None = None
    text_raw: torch.Tensor | None = None


@dataclass
class Relation:
    """Who is whom: the central data type that associations produce and objectives consume.

    Rows ``0..Q-1`` are queries, all N rows are candidates (B <= Q <= N): the first B rows
    are the batch (features with gradient), further rows may come from a memory (no
    gradient). The weights are R of docs/method.md (Eq. 7 in the batch, Eq. 13-14 over
    the memory): the target of an objective such as SDM, so they carry no gradient.

    Fields:
        image: N x d, L2-normalised image features of the rows.
        text: N x d, L2-normalised text features of the rows.
        weights: Q x N float, no gradient: 1 on the diagonal (row i and column i are the
            same pair), a value in (0, 1] for pairs believed to show the same person,
            exactly 0 for the others.
        view: the view the batch rows come from (``"base"`` by default).
        stats: optional finite numbers about this step's relation (checked by the
            conformance kit; the engine does not log them - report per-epoch values from
            ``diagnostics`` instead).
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
    """Handed to every component constructor as ``context`` (kept as ``self.context``).

    Components are built in this order, each context field filled as soon as it is known:
    dataset, encoder, pair construction, local associations, global associations,
    objectives.

    Fields:
        run_dir: the run's output directory (None where nothing is written, e.g. in the
            conformance kit).
        seed: the run seed (``train.seed``); derive per-sample randomness from it.
        num_train: N, the number of training pairs; None only while the dataset itself is
            built. Size memory banks with it.
        encoder: the built encoder (None while the dataset and the encoder are built).
        train_captions: the training captions in index order (None while the dataset is
            built), for encoders that build a tokenizer from them.
        train_person_ids: the TRUE identity of every training pair in index order (None
            while the dataset is built). Only for components with ``weakly_supervised =
            False`` (supervised references, e.g. an identity classifier sizing its output
            layer); a weakly supervised component must not read it.
        train_image_ids: the image of every training pair in index order
            (``PairRecord.image_id``; None while the dataset is built): pairs that share
            an image share it. Not identity information (``Batch.image_id`` carries the
            same to every component).
        image_size: (H, W) of the encoder input (None before the encoder is built).
        device: the training device of this process (also in ``ctx.dist.device``).
        extras: free-form values for embedding applications; the engine leaves it empty.
        is_main: whether this is the main process of the run (rank 0; True with one
            process). :meth:`warn` prints on it only.
        loads_trained_weights: the component is built to receive trained weights
            afterwards, outside training (``wsreid eval`` and ``wsreid search`` of a run or
            a checkpoint): nothing may be written into ``run_dir``, and what the weights
            were trained with (a vocabulary built from the training captions) must be
            read from the run, never derived again from the data at hand.
        trains: the component is built for a training run (False in ``wsreid eval`` and
            ``wsreid search``, zero-shot included: warnings about the training data, such
            as captions cut at the encoder's length, are beside the point there; an
            evaluation warns about the captions it encodes).
    """

    run_dir: Path | None = None
    seed: int = 0
    num_train: int | None = None
    encoder: "EncoderComponent | None" = None
    train_captions: list[str] | None = None
    train_person_ids: tuple[int, ...] | None = None
    train_image_ids: tuple[int, ...] | None = None
    image_size: tuple[int, int] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extras: dict[str, Any] = field(default_factory=dict)
    is_main: bool = True
    loads_trained_weights: bool = False
    trains: bool = True

    def warn(self, message: str) -> None:
        """Print ``warning: {message}`` as one line on stderr, on the main process only
        (a multi-process run says it once).

        Called:
            by a component, usually in ``__init__``, for a setting that works but is
            probably not what the user meant.

        Arguments:
            message: one line that names the setting and says what to change, e.g.
                ``"gsrc-fr top_k 5000: ... (lower top_k below 4246)"``.

        Returns:
            nothing. A mistake that makes the run meaningless is a
            :class:`~wsreid.errors.UserError` instead.
        """
        if self.is_main:
            print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass
class StepContext:
    """State of the current training step, handed to ``relate``, ``loss`` and
    ``after_step``.

    Fields:
        epoch: the current epoch, 1-based (``1 .. num_epochs``).
        step: optimizer steps done before this one over the whole run, from 0.
        num_epochs: ``train.epochs``.
        dist: the process group (:class:`wsreid.distributed.Distributed`): ``rank``,
            ``world_size``, ``is_main``, ``device``, ``gather(t)`` (rows of every
            process, no gradient), ``gather_with_grad(t)``, ``sum(x)``, ``barrier()``;
            identity operations with one process.
    """

    epoch: int
    step: int
    num_epochs: int
    dist: "Distributed"


@dataclass
class EpochContext:
    """Handed to :meth:`GlobalAssociation.epoch_start` before each epoch.

    Fields:
        epoch: the epoch about to start, 1-based.
        num_epochs: ``train.epochs``.
        dist: the process group (see :class:`StepContext`).
        extract_train_features: call it to get un-augmented features of the WHOLE training
            set as :class:`ViewFeatures` (N x d image, N x d text, L2-normalised, no
            gradient, row = dataset index), identical on every process. It encodes the
            training set (costly): call it only in epochs that need it, on every process.
            ``extract_train_features(text=False)`` encodes only the images (``text`` is
            then None).
        train_person_ids: N long, true identities for diagnostics only (e.g. the purity of
            clusters); None where unknown.
    """

    epoch: int
    num_epochs: int
    dist: "Distributed"
    extract_train_features: Callable[..., ViewFeatures]
    train_person_ids: torch.Tensor | None = None  # N, diagnostics only


# --------------------------------------------------------------------------- components


class Component:
    """Base of every component.

    A subclass sets ``Params`` (a :class:`Params` model) and implements its kind's
    methods; a plugin registers it with ``registry.add(kind, name, cls)`` in its
    ``wsreid_register`` hook (docs/hooks.md). A recipe block ``{name: <name>, ...}``
    is validated by ``Params`` and the component is built as ``cls(params, context)`` in
    every process; the methods below are called by the engine in every process too.

    The framework adds recipe keys that the component does not see: ``name`` on every
    block, and ``weight`` (factor of the loss, default 1) and ``start_epoch`` (first epoch
    in which the loss counts, default 1) on objectives, unless ``Params`` declares them;
    a declared one is the component's own (the engine then neither multiplies the loss
    by that ``weight`` nor skips the epochs before that ``start_epoch``).
    Only two parameter names are cross-checked against the rest of the recipe by
    ``wsreid validate``: ``relation`` (an objective's: must be an association label) and
    ``view`` (an association's or objective's: must be a view the pair construction
    declares). Name other references differently and they are not checked.

    Every ``Params`` default must satisfy its own field (a plugin with
    ``k: int = Field("five")`` is refused when it registers).

    **Trainable components.** An association or objective that also derives from
    ``torch.nn.Module`` (call ``torch.nn.Module.__init__(self)`` first in ``__init__``)
    has its parameters trained with the encoder's, by the same optimizer and schedule:
    e.g. a classifier head over the features. The engine moves it to the training device
    (float32), names its parameters ``<section>.<label>.<name>`` (``train.lr_factors``
    globs match these names, e.g. ``objectives.id.*``), keeps it out of the encoder's
    DDP wrapper (every process computes the same global-batch loss, so its gradient is
    the same everywhere) and saves its ``state_dict()`` in every checkpoint, so a resumed
    run continues with it; it is not part of the trained model (``best/``), which is the
    encoder alone. Its ``state_tensors`` names must not start with ``module.`` (that
    prefix holds the module's own tensors in the checkpoint). A dataset or pair
    construction that is a ``torch.nn.Module`` is refused when it registers: nothing would
    train it.

    Attributes:
        Params: the parameter model (derives from :class:`Params`; the default has no
            fields).
        kind: the component kind, set by each base class.
        weakly_supervised: False for components that read true identity labels
            (supervised references); runs using one are labelled "not weakly supervised"
            in every output.
    """

    Params: ClassVar[type[Params]] = Params
    kind: ClassVar[str] = ""
    #: False for components that read true identity labels (supervised references);
    #: runs using one are labelled "not weakly supervised" in every output.
    weakly_supervised: ClassVar[bool] = True

    def __init__(self, params: Params, context: BuildContext):
        """Build the component.

        Called:
            once per run in every process, in ``wsreid run`` set-up (after the dataset is
            loaded for every kind but the dataset), and by the conformance kit.

        Arguments:
            params: the validated ``Params`` instance (kept as ``self.params``).
            context: the :class:`BuildContext` (kept as ``self.context``).

        Returns:
            nothing. Raise :class:`ParamsCheckError` naming the parameter for a value that
            does not fit what only the run knows (``context.num_train``): the run's error
            line then cites the recipe file and line that set it. Raise
            :class:`wsreid.errors.UserError` for another problem the user can fix.
        """
        self.params = params
        self.context = context

    @classmethod
    def check_params(cls, params: Params) -> None:
        """Check what the parameters name outside the recipe (files, folders).

        Called:
            by ``wsreid validate`` and before every run, so before anything is built or
            written, in every process. The recipe loader has made ``data.root`` and the
            ``init`` paths absolute (relative to the recipe file that names them); other
            relative paths are relative to the working directory.

        Arguments:
            params: the validated ``Params`` instance.

        Returns:
            nothing. Raise :class:`ParamsCheckError` naming the parameter; the error then
            cites the recipe file and line. For what may work on the machine that runs
            but not here (a download that needs the network), issue
            ``warnings.warn(ParamsCheckWarning(key, message))`` instead: the recipe stays
            valid and the warning cites the line too. The default checks nothing.
        """

    @classmethod
    def check_recipe(cls, params: Params, recipe: Any) -> None:
        """Check the parameters against the rest of the recipe (e.g. an encoder's weight
        dtype against ``train.mixed_precision``).

        Called:
            by ``wsreid validate``, before every run and whenever a recipe is loaded, after
            the recipe's own types and references are checked; reads no file.

        Arguments:
            params: the validated ``Params`` instance.
            recipe: the whole validated recipe (sections as attributes:
                ``recipe.train.mixed_precision``, ``recipe.encoder``, ...).

        Returns:
            nothing. Raise :class:`ParamsCheckError` naming this component's parameter
            that does not fit (its message names the other key and its value); the error
            cites the recipe file and line of that parameter. The default checks nothing.
        """

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """State that must survive a resume (memory banks, pseudo-labels, step counters).

        Called:
            on the main process each time a checkpoint is written (every
            ``train.checkpoint_every`` epochs and at the end).

        Arguments:
            (none)

        Returns:
            plain name (no ``/``: a run refuses such a name when it writes the
            checkpoint) -> tensor; saved under ``<section>/<label>/<name>``, the pair
            construction's under ``pair_construction/<its registered name>/<name>``
            (not its class name: renaming the class keeps its runs resumable).
            The default returns ``{}`` (stateless).
        """
        return {}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned.

        Called:
            with ``--resume``, in every process, after every component is built and
            before the first epoch; tensors are on the training device.

        Arguments:
            tensors: the saved name -> tensor mapping; ``{}`` when the checkpoint holds no
                state for this component. The conformance kit calls
                ``load_state_tensors({})`` on a fresh instance, which must work, and
                requires an instance restored from ``state_tensors()`` to report the same
                tensors and to relate exactly as the original.

        Returns:
            nothing. The default accepts only ``{}``.
        """
        if tensors:
            raise ValueError(f"{type(self).__name__} has no state but got {sorted(tensors)}")

    def diagnostics(self) -> dict[str, float]:
        """Statistics of the epoch that just ended (e.g. relation precision).

        Called:
            at the end of every epoch, in every process, before the evaluation.

        Arguments:
            (none)

        Returns:
            name -> finite number, logged as ``diag/<label>/<name>`` in
            ``logs/epochs.csv``; reset the counters. May use true identities (they never
            feed a loss). The default returns ``{}``.
        """
        return {}


class DatasetComponent(Component):
    """A dataset: loads training pairs and evaluation splits.

    Raise :class:`wsreid.errors.DataError` (one line: what, which file and record, what
    to do) on bad input. Check the root folder in :meth:`Component.check_params` so that
    ``wsreid validate`` finds a wrong path.
    """

    kind = "dataset"

    def load(self) -> DatasetSplits:  # pragma: no cover - interface
        """Load the dataset.

        Called:
            once per run in every process, first of all components (``context.num_train``
            and ``context.encoder`` are None).

        Arguments:
            (none)

        Returns:
            :class:`DatasetSplits`: ``train[i].index == i``, test (and val) splits.
        """
        raise NotImplementedError


class EncoderComponent(Component, torch.nn.Module):
    """An image and a text encoder with a shared embedding space (a ``torch.nn.Module``
    whose parameters the optimizer trains).

    Write what is needed to rebuild it (e.g. a tokenizer built from the captions) under
    ``context.run_dir`` when it is built.

    Attributes:
        image_size: (H, W) input size in pixels.
        image_mean: per-channel mean used to normalise pixels.
        image_std: per-channel standard deviation used to normalise pixels.
        max_length: L, the token sequence length ``tokenize`` pads to.
        mask_token_id: the token that replaces masked words (text masking).
        pad_token_id: the token at padded positions (attention mask 0).
        special_token_ids: tokens that masking never replaces (start, end, padding, ...).
        embed_dim: d, the width of the features.

    Optional methods, looked up by name (the shipped CLIP encoder has both):
        caption_token_counts(captions) -> [(tokens with start and end, word tokens,
            unknown word tokens)] per caption: ``wsreid search`` warns of a description
            cut at ``max_length`` or with unknown words.
        caption_warnings(captions, described) -> one line per problem of ``captions``
            as a whole (``described``: ``"the test queries"``): ``wsreid eval`` prints
            them as ``warning:`` lines before encoding the split.
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
        """Build the encoder; call it first from a subclass's ``__init__``.

        Called:
            once per run in every process, after the dataset is loaded (so
            ``context.train_captions`` is known), before the other components.

        Arguments:
            params: the validated ``Params`` instance.
            context: the :class:`BuildContext` (``context.encoder`` is None).

        Returns:
            nothing. Set the attributes above to the model's values here.
        """
        torch.nn.Module.__init__(self)
        Component.__init__(self, params, context)

    @classmethod
    def check_initial_weights(cls, params: Params, source: Params) -> None:
        """Check that the encoder weights of an initial run (recipe key ``init``) can load
        into this encoder.

        Called:
            by ``wsreid validate`` and before every run of a recipe with ``init``, when the
            initial run's encoder is this component (``init.run``: the encoder block its
            recorded recipe.yaml holds; ``init.recipe``: that recipe's); reads no file.
            An initial run whose encoder is another component is refused by the engine.

        Arguments:
            params: this recipe's encoder parameters.
            source: the initial run's encoder parameters (the same ``Params`` model).

        Returns:
            nothing. Raise :class:`ParamsCheckError` naming this encoder's parameter whose
            value keeps those weights from loading (its message names the initial run's
            value); the error cites that parameter's line. The default checks nothing:
            the weights' shapes are then checked when they are loaded.
        """

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Image features.

        Called:
            every training step in every process, on all views of this process's batch
            at once (V*B images; once per view with ``train.encode_views: separately``),
            and for evaluation and ``extract_train_features``.

        Arguments:
            images: n x 3 x H x W float, normalised.

        Returns:
            n x d raw features (the engine L2-normalises them, in float32).
        """
        raise NotImplementedError

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Text features.

        Called:
            like :meth:`encode_image`, on the tokens of every view.

        Arguments:
            input_ids: n x L long.
            attention_mask: n x L long (1 = token, 0 = padding).

        Returns:
            n x d raw features (the engine L2-normalises them, in float32).
        """
        raise NotImplementedError

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """Tokenise captions.

        Called:
            once for all training captions after the encoder is built, and for the
            evaluation queries; in every process.

        Arguments:
            texts: n captions.

        Returns:
            ``(input_ids, attention_mask)``, each n x L long, padded with
            ``pad_token_id`` to L = ``max_length``.
        """
        raise NotImplementedError

    def save_pretrained(self, directory: Path) -> None:
        """Write what is needed to rebuild this encoder outside a run.

        Called:
            by the conformance kit; the engine saves the weights itself.

        Arguments:
            directory: an existing folder to write into.

        Returns:
            nothing. The default writes nothing.
        """


class PairConstruction(Component):
    """Turns the batch into the views the encoder sees; must produce ``"base"``.

    Declare the views in ``view_names``: recipes are checked against it (an association
    or objective whose ``view`` names another view is refused by ``wsreid validate``),
    and the conformance kit checks that ``views()`` returns exactly these. Override
    :meth:`declared_views` when the views depend on the parameters.

    Attributes:
        view_names: names of the views ``views()`` returns, ``"base"`` first
            (default ``("base",)``).
    """

    kind = "pair_construction"
    view_names: ClassVar[tuple[str, ...]] = (BASE_VIEW,)

    @classmethod
    def declared_views(cls, params: Params) -> tuple[str, ...]:
        """The views produced with ``params``.

        Called:
            at validation, before anything is built.

        Arguments:
            params: the validated ``Params`` instance.

        Returns:
            view names; the default returns :attr:`view_names`.
        """
        return tuple(cls.view_names)

    def views(self, batch: Batch, encoder: EncoderComponent) -> dict[str, View]:  # pragma: no cover
        """Build this step's views.

        Called:
            every training step, in every process, with this process's LOCAL batch
            (before anything is gathered), before the encoder runs.

        Arguments:
            batch: this process's :class:`Batch` (images and tokens present); do not
                change it in place.
            encoder: the encoder (for ``image_mean``, ``mask_token_id``, ...).

        Returns:
            view name -> :class:`View`, all of the batch's size. Randomness per sample
            should come from (``context.seed``, a step counter kept in the state,
            ``batch.index``) so that runs are reproducible and resumable.
        """
        raise NotImplementedError


class LocalAssociation(Component):
    """In-batch association: relates the pairs of the batch from their features.

    Give ``Params`` a ``view: str = "base"`` field to choose the view it relates (it is
    checked against the pair construction's views).
    """

    kind = "local_association"

    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:  # pragma: no cover
        """Relate the pairs of this step's batch.

        Called:
            every training step in every process, after the encoder, with the GLOBAL batch
            gathered from every process (each process computes the same relation); local
            associations run before global ones.

        Arguments:
            features: view name -> :class:`ViewFeatures` of the global batch (B x d, with
                gradient on this process's rows).
            batch: the global :class:`Batch` (``index``, ``image_id``, ``person_id``; the
                pixels and tokens are empty with several processes).
            ctx: the :class:`StepContext`.

        Returns:
            a :class:`Relation` with Q = N = B (batch rows with their gradient; weights
            without), or None for no relation this step (objectives reading it skip the
            step). Objectives find it under this association's label.
        """
        raise NotImplementedError


class GlobalAssociation(Component):
    """Association from state over the whole training set (memory banks, clusters).

    Keep the state in tensors sized by ``context.num_train`` on ``context.device``,
    return it from :meth:`state_tensors` so that a resumed run continues exactly, and
    update it in :meth:`after_step` (memories) or :meth:`epoch_start` (clustering).
    Give ``Params`` a ``view`` field to choose the view whose batch rows it relates.
    """

    kind = "global_association"

    def epoch_start(self, ctx: EpochContext) -> None:
        """Prepare the epoch (e.g. cluster the training set).

        Called:
            before every epoch in every process, before the ``wsreid_epoch_start`` hook.

        Arguments:
            ctx: the :class:`EpochContext`; ``ctx.extract_train_features()`` encodes the
                whole training set.

        Returns:
            nothing. The default does nothing.
        """

    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:  # pragma: no cover
        """Relate this step's batch to the state (the batch rows first, memory rows after).

        Called:
            every training step in every process, after the local associations, with the
            GLOBAL batch (as :meth:`LocalAssociation.relate`).

        Arguments:
            features: view name -> :class:`ViewFeatures` of the global batch (B x d, with
                gradient on this process's rows).
            batch: the global :class:`Batch`; ``batch.index`` keys the memory.
            ctx: the :class:`StepContext`.

        Returns:
            a :class:`Relation` (Q = B queries, N >= B candidates: rows beyond B come from
            memory, without gradient), or None for no relation this step (e.g. while the
            memory fills); objectives reading it then skip the step.
        """
        raise NotImplementedError

    def after_step(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> None:
        """Update the state with this step's features (e.g. a momentum memory).

        Called:
            after the optimizer and scheduler step of every training step, in every
            process, with the same values everywhere.

        Arguments:
            features: ``{"base": ViewFeatures}`` only: the detached base-view features of
                the global batch (B x d, L2-normalised, no gradient).
            batch: the global :class:`Batch`; ``batch.index`` gives each row's dataset
                index.
            ctx: the :class:`StepContext` of the step just taken.

        Returns:
            nothing. The default does nothing.
        """


class Objective(Component):
    """A loss term. Its block in ``objectives:`` is labelled; the recipe adds ``weight``
    and ``start_epoch``, which the engine applies (the loss itself is unweighted), unless
    ``Params`` declares them: then they are the objective's own, and the engine applies
    neither.

    Give ``Params`` a ``relation: str`` field to consume an association's relation by
    label (checked by ``wsreid validate``) and a ``view`` field to choose a view.
    """

    kind = "objective"

    def loss(
        self,
        features: dict[str, ViewFeatures],
        relations: dict[str, Relation],
        batch: Batch,
        ctx: StepContext,
    ) -> torch.Tensor | None:  # pragma: no cover
        """This step's loss.

        Called:
            every training step in every process, after every association, with the
            GLOBAL batch; not called before the objective's ``start_epoch`` (unless its
            ``Params`` declares ``start_epoch``: every step then). Each process
            computes the loss of the whole global batch; the gradient reaches each
            process's own rows.

        Arguments:
            features: view name -> :class:`ViewFeatures` of the global batch (B x d, with
                gradient).
            relations: association label -> :class:`Relation` for the associations that
                produced one this step (a missing label means "none this step").
            batch: the global :class:`Batch`.
            ctx: the :class:`StepContext`.

        Returns:
            a finite scalar tensor of shape [] (the engine multiplies it by ``weight``, unless
            ``Params`` declares ``weight``, logs it as
            ``loss/<label>`` and adds it to the total), or None to skip this step (e.g.
            when its relation is missing). A non-finite value stops the run.
        """
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
