"""The training engine: :class:`Run`, one Accelerator, one run directory, components built
by name. :func:`wsreid.engine.session.run_recipe` prepares the directory and calls it.

A run, in named phases (docs/architecture.md, "The flow of one run")::

    Run.setup()            accelerator, seed, build_components(), build_training()
    Run.train()            restore (--resume), then per epoch:
        train_epoch(e)         global associations' epoch_start, then train_step per batch
        evaluate_and_select(e) val / selection split, best checkpoint
        save()                 checkpoint (every train.checkpoint_every epochs and the last)
    Run.finish()           best weights back, final test evaluation, metrics.json

One step, :meth:`Run.train_step` (docs/architecture.md, "The flow of one step")::

    views     = pair_construction.views(batch)          # {"base": ..., "asymmetric": ...}
    features  = encoder(views)                          # L2-normalised, per view
    relations = {label: association.relate(...)}        # local, then global
    losses    = {label: weight * objective.loss(...)}   # summed -> backward -> step
    global associations .after_step(gathered detached base features, gathered indices)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from wsreid.api import (
    BASE_VIEW,
    Batch,
    BuildContext,
    Relation,
    EpochContext,
    StepContext,
    View,
    ViewFeatures,
)
from wsreid.distributed import Distributed, check_launch, join_process_group
from wsreid.engine import checkpoint as ckpt
from wsreid.engine import signals
from wsreid.engine.components import (
    SECTIONS,
    Components,
    build_component,
    build_encoder,
    component_fault,
    faults_named,
    load_dataset,
)
from wsreid.engine.data import (
    DeviceBatches,
    IdentityBatchSampler,
    PairBatchSampler,
    TrainPairs,
    collate_pairs,
    image_cache_budget,
    missing_gallery_image,
    normalise_batch,
    resume_steps_warning,
    splits_problem,
)
from wsreid.engine.evaluate import check_encoder_output, extract_train_features, split_features, split_metrics
from wsreid.engine.logs import RunLogger, plot_curves
from wsreid.engine.optim import build_optimizer, build_scheduler
from wsreid.errors import ComponentError, DataError, ParamsCheckError, RecipeError, TrainingError, UserError, one_line
from wsreid.fileio import write_failure
from wsreid.recipe.build import params_check_error
from wsreid.pluginmanager import Plugins

#: checkpoint tensor names ``<section>/<label>/module.<name>`` hold a trainable component's
#: ``state_dict()`` (docs/plugins.md, "A trainable objective")
MODULE_PREFIX = "module."


class EncodeViews(torch.nn.Module):
    """Wraps the encoder so that one forward call encodes every view (the unit DDP wraps).

    images: V*B x 3 x H x W, input_ids/attention_mask: V*B x L -> four V*B x d float32
    tensors: image and text L2-normalised, then image and text as the encoder returned them.
    ``sizes`` (rows per view) encodes each view in its own pass (``train.encode_views:
    separately``); None encodes all rows at once."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, images, input_ids, attention_mask, sizes=None):
        """-> (image features, text features, raw image features, raw text features), each
        V*B x d float32; the first two L2-normalised. ``sizes`` (rows per view) encodes each
        view in its own encoder call (``train.encode_views: separately``)."""
        if sizes is not None:
            parts = zip(images.split(sizes), input_ids.split(sizes), attention_mask.split(sizes))
            encoded = [(self._image(i), self._text(t, m)) for i, t, m in parts]
            image = torch.cat([e[0] for e in encoded]).float()
            text = torch.cat([e[1] for e in encoded]).float()
            return F.normalize(image, dim=-1), F.normalize(text, dim=-1), image, text
        image = self._image(images).float()
        text = self._text(input_ids, attention_mask).float()
        return F.normalize(image, dim=-1), F.normalize(text, dim=-1), image, text

    def _image(self, images):
        """encode_image, its output checked (:func:`check_encoder_output`)."""
        return check_encoder_output(self.encoder.encode_image(images), images.shape[0], self.encoder.embed_dim,
                                    "encode_image", "images")

    def _text(self, input_ids, attention_mask):
        """encode_text, its output checked (:func:`check_encoder_output`)."""
        return check_encoder_output(self.encoder.encode_text(input_ids, attention_mask), input_ids.shape[0],
                                    self.encoder.embed_dim, "encode_text", "captions")


def check_shared_run_dir(run_dir: Path, dist: Distributed) -> None:
    """Every process of a multi-process run must see the run directory the main process
    prepared (its marker file): each one reads it - the best checkpoint loaded back at the
    end, ``--resume``. On nodes that do not share it, a process that saw no best checkpoint
    tested with its last weights and the score mixed the two. A :class:`UserError` on every
    process otherwise (a collective: called by all of them)."""
    if not dist.active:
        return
    from wsreid.engine.rundir import RUN_MARKER

    seen = round(dist.sum(float((run_dir / RUN_MARKER).is_file())))
    if seen < dist.world_size:
        raise UserError(f"{dist.world_size - seen} of {dist.world_size} processes cannot see the run directory "
                        f"{run_dir} that the main process prepared (its {RUN_MARKER}): every process reads it (the best "
                        "checkpoint at the end, --resume)",
                        hint="put output_dir on a file system every node sees; see docs/distributed.md")


def epoch_summary(epoch: int, epochs: int, logs: dict[str, float], record: dict[str, Any]) -> str:
    """The line ``wsreid run`` prints after each epoch: ``epoch 3/8: loss 4.1234, lr
    0.0002, val R1 25.10 mAP 24.00 (17.0 s)`` (val where the epoch was evaluated)."""
    parts = [f"loss {logs['loss/total']:.4f}"] if "loss/total" in logs else []
    parts.append(f"lr {logs['lr']:.3g}")
    val = record.get("val")
    if val:
        parts.append(f"val R1 {val['R1']:.2f} mAP {val['mAP']:.2f}")
    return f"epoch {epoch}/{epochs}: {', '.join(parts)} ({logs['seconds']:.1f} s)"


class Run:
    """A training run of a validated recipe into ``run_dir``.

    ``init_weights``: the weights file the encoder starts from (recipe key ``init``, found
    by :func:`wsreid.engine.session.init_weights` before the run is built); not loaded on
    ``resume``, whose checkpoint holds the encoder. Phases: :meth:`setup`
    (:meth:`build_components`, :meth:`build_training`), :meth:`train` (per epoch
    :meth:`train_epoch`, :meth:`evaluate_and_select`, :meth:`save`), :meth:`finish`.
    Plugins' hooks receive this object (docs/hooks.md)."""

    def __init__(self, recipe, plugins: Plugins, run_dir: Path, *, resolved_yaml: str | None = None,
                 resume: bool = False, init_weights: Path | None = None):
        self.recipe, self.plugins, self.run_dir = recipe, plugins, Path(run_dir)
        self.resolved_yaml, self.resume, self.init_weights = resolved_yaml, resume, init_weights
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        #: True once the first training step of this start is about to run
        self.training_started = False
        #: True once metrics.json is written: the run is finished, whatever stops it after
        self.finished = False
        #: training pairs and evaluation splits: ids, images, captions (dataset_counts)
        self.dataset_counts: dict[str, dict[str, int]] = {}
        self._origins: dict[str, str] = {}
        self._providers: dict[str, str] = {}  # recipe key -> the plugin that provides its component
        self._declared_views: tuple[str, ...] | None = None  # the pair construction's, asked at the first step
        self.logger: RunLogger | None = None  # built with the training objects (build_training)

    # ------------------------------------------------------------------ phase 1: build
    def _accelerator(self):
        """A fresh Accelerator with the recipe's mixed precision, the launch checked."""
        from accelerate import Accelerator

        check_precision(self.recipe)  # (run_recipe checks it first, citing the recipe line)
        precision = self.recipe.train.mixed_precision
        cuda = torch.cuda.is_available()
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            # accelerate keeps its settings in process-wide singletons: a run earlier in this
            # process (the init encoder's pretraining, `wsreid ablate` in-process) would make
            # another mixed_precision fail. Nothing is shared between runs, so start afresh.
            from accelerate.state import AcceleratorState, GradientState

            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
        accelerator = Accelerator(cpu=not cuda, mixed_precision=precision)
        check_launch(accelerator)
        return accelerator

    def setup(self) -> None:
        """Start the accelerator (the process group), seed, then build the components and
        the training objects. Every process waits here until the main process has
        prepared the run directory."""
        from accelerate.utils import set_seed

        def join():
            accelerator = self._accelerator()
            dist = Distributed(accelerator)
            dist.barrier()  # the main process has prepared the run directory
            return accelerator, dist

        # a stop while the launch's other processes have not joined acts at once on CPU (on a GPU the
        # rendezvous sets the thread's device, with torch_xla accelerate keeps its state per thread)
        from accelerate.utils import is_torch_xla_available

        stoppable = not torch.cuda.is_available() and not is_torch_xla_available()
        self.accelerator, self.dist = join_process_group(join, stoppable=stoppable)
        check_shared_run_dir(self.run_dir, self.dist)
        set_seed(self.recipe.train.seed)
        self.build_components()
        self.build_training()

    def build_components(self) -> None:
        """Build every component of the recipe by name, in recipe order: dataset (and its
        splits), encoder (with the init weights), pair construction, local and global
        associations, objectives -> ``self.components``, ``self.splits``. A component
        that fails here is reported in one line naming its recipe key and plugin."""
        r = self.recipe
        ctx = BuildContext(run_dir=self.run_dir, seed=r.train.seed, device=self.dist.device, is_main=self.dist.is_main)
        with self.blame("data", "dataset", r.data.name, "building or loading it"):
            dataset, self.splits = load_dataset(self.plugins, r, ctx)
        self._check_splits(dataset)
        self.dataset_counts = dataset_counts(self.splits)
        check_evaluable(self.splits.name, self.dataset_counts)
        self.train_person_ids = torch.tensor(ctx.train_person_ids)  # N, diagnostics and the identity sampler
        if self.dist.is_main:
            print(format_dataset_counts(self.splits.name, self.dataset_counts), flush=True)
            for line in shared_identity_warnings(self.dataset_counts):
                print(f"warning: {line}", file=sys.stderr, flush=True)
        self.dist.barrier()
        with self.blame("encoder", "encoder", r.encoder.name, "building it"):
            encoder = build_encoder(self.plugins, r, ctx)
        if self.init_weights is not None and not self.resume:
            ckpt.load_model_weights(encoder, self.init_weights,
                                    hint="restore it, or set init.checkpoint to another checkpoint of that run")
        with self.blame("pair_construction", "pair_construction", r.pair_construction.name, "building it"):
            pairs = build_component(self.plugins, "pair_construction", r.pair_construction, ctx, "pair_construction")
        comps = Components(dataset, encoder, pairs, supervised_settings=r.train.true_identity_uses(),
                           pair_construction_name=r.pair_construction.name)
        for section, kind in SECTIONS.items():
            for label, spec in getattr(r, section).items():
                if spec is None:
                    continue
                with self.blame(f"{section}.{label}", kind, spec.name, "building it"):
                    getattr(comps, section)[label] = build_component(self.plugins, kind, spec, ctx, f"{section}.{label}")
                if section == "objectives":  # the engine's keys, unless the objective declares them as its own
                    declared = self.plugins.registry.get(kind, spec.name).params_model.model_fields
                    comps.weights[label] = 1.0 if "weight" in declared else float(spec.weight)
                    comps.start_epochs[label] = 1 if "start_epoch" in declared else int(spec.start_epoch)
        labels = set(comps.local_associations) | set(comps.global_associations)
        for label, obj in comps.objectives.items():
            wanted = getattr(obj.params, "relation", None)
            if wanted is not None and wanted not in labels:
                import difflib

                close = difflib.get_close_matches(str(wanted), sorted(labels), n=1)
                raise RecipeError(
                    f"objectives.{label}.relation: no association is labelled {wanted!r}",
                    hint=f"did you mean {close[0]!r}?" if close else f"labels: {', '.join(sorted(labels)) or 'none'}",
                    key=("objectives", label, "relation"))
        self.components = comps
        for key, module in comps.trainable().items():
            module.float().to(self.dist.device)
            self._check_state_names(key, module.state_tensors())  # before any epoch

    # ------------------------------------------------------------------ who failed
    def origin(self, where: str) -> str:
        """``"<recipe key> (<kind> '<name>' from plugin '<plugin>')"`` for a component's
        recipe key (``data``, ``objectives.sdm``, ...), as error messages name it."""
        return f"{where} ({self._origins.get(where, 'component')})"

    @contextmanager
    def blame(self, where: str, kind: str, name: str, doing: str):
        """Turn an exception of a component (other than a UserError, which already says
        what to do) into one line naming its recipe key, name and plugin."""
        entry = self.plugins.registry.get(kind, name, where=where)
        self._origins[where] = f"{kind} {name!r} from plugin {entry.provider!r}"
        self._providers[where] = entry.provider
        try:
            yield
        except ParamsCheckError as exc:  # a parameter that does not fit what the build found (the data's size)
            raise params_check_error(exc, tuple(where.split("."))) from None
        except UserError:
            raise
        except Exception as exc:
            raise self._fault(where, f"{doing} failed", exc) from exc

    def component_call(self, where: str, doing: str):
        """Around a call into a built component while training (``relate()``, ``loss()``,
        ...): an exception other than a UserError, or running out of memory, becomes one
        line naming its recipe key, name and plugin (as :meth:`blame` at build;
        :func:`~wsreid.engine.components.faults_named`)."""
        return faults_named(lambda exc: self._fault(where, f"{doing} failed at epoch {max(self.epoch, 1)}", exc))

    def _fault(self, where: str, what: str, exc: Exception) -> ComponentError:
        """The one-line error of a component's exception (:func:`component_fault`)."""
        return component_fault(self.origin(where), where, self._providers.get(where), what, exc)

    @contextmanager
    def hook_guard(self, name: str):
        """Around a call of the lifecycle hook ``name``: an exception of a plugin's
        implementation (other than a UserError) becomes one line naming the plugin and
        the hook."""
        try:
            yield
        except UserError:
            raise
        except Exception as exc:
            plugin = _raising_plugin(getattr(self.plugins.hook, name), exc)
            fresh = not self.training_started and not self.resume
            when = " before the first epoch" if fresh else f" at epoch {max(self.epoch, 1)}"
            if name == "wsreid_run_end":  # the run is finished: its results are written and stand
                when = f" after the run finished (its metrics.json is written in {self.run_dir})"
            raise ComponentError(f"plugin {plugin!r}: hook {name} failed{when}: {one_line(exc)}",
                                 hint=f"fix the plugin or disable it with --disable-plugin {plugin}; "
                                      "--debug shows the traceback") from exc

    def build_training(self) -> None:
        """The training objects: the encoder wrapped for one forward over all views, the
        training pairs and their sampler and loader, the optimizer (prepared by the
        accelerator), the schedule and the logger."""
        r = self.recipe
        image_cache_budget()  # a bad WSREID_IMAGE_CACHE_MB is refused here, not at the first step
        self.model = EncodeViews(self.encoder)
        with faults_named(lambda exc: self._fault("encoder", "tokenising the training captions failed", exc)):
            self.train_data = TrainPairs(self.splits.train, self.encoder)  # tokenised once, before any epoch
        if r.train.sampler == "identity":  # reads the TRUE person ids: comps.supervised_settings says so
            self.sampler = IdentityBatchSampler(self.train_person_ids.tolist(), r.train.batch_size,
                                                r.train.instances_per_identity, seed=r.train.seed,
                                                rank=self.dist.rank, world_size=self.dist.world_size)
        else:
            self.sampler = PairBatchSampler(len(self.train_data), r.train.batch_size, seed=r.train.seed,
                                            rank=self.dist.rank, world_size=self.dist.world_size,
                                            drop_last=r.train.drop_last)
        if self.sampler.steps_per_epoch() == 0:
            raise RecipeError(f"train.batch_size {r.train.batch_size} exceeds the {len(self.train_data)} training pairs",
                              hint="lower train.batch_size", key=("train", "batch_size"))
        # workers decode and resize (uint8 pixels); images are normalised on the device
        self.loader = DeviceBatches(
            torch.utils.data.DataLoader(self.train_data, batch_sampler=self.sampler, collate_fn=collate_pairs,
                                        num_workers=r.train.num_workers),
            self.dist.device, self.encoder.image_mean, self.encoder.image_std)
        # trainable components stay outside DDP: each process computes the same global-batch
        # loss, so their gradients agree without a reduction (train_step scales them)
        self.trainable_parameters = [param for _, param in self.components.named_trainable_parameters()]
        if self.dist.world_size > 1:  # start every process from the first one's values, as DDP does
            with torch.no_grad():
                for param in self.trainable_parameters:
                    param.copy_(self.dist.broadcast(param.detach().clone()))
        optimizer = build_optimizer(self.model, r.train, self.components.named_trainable_parameters())
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.scheduler = build_scheduler(self.optimizer, self.sampler.steps_per_epoch(), r.train)
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main)

    def close(self) -> None:
        """Release the training objects (the DDP-wrapped model holds the process group),
        then leave the process group. Called once training has returned."""
        import gc

        self.accelerator.free_memory()
        self.model = self.optimizer = self.scheduler = self.loader = None
        gc.collect()
        self.dist.shutdown()

    @property
    def encoder(self):
        """The encoder component (unwrapped)."""
        return self.components.encoder

    # ------------------------------------------------------------------ state
    def component_tensors(self) -> dict[str, torch.Tensor]:
        """The state of every stateful component, keyed ``<section>/<label>/<tensor>``."""
        out = {}
        for key, comp in self.components.stateful().items():
            with self.component_call(_recipe_key(key), "state_tensors()"):
                tensors = comp.state_tensors()
                for name, t in tensors.items():
                    if not torch.is_tensor(t):
                        raise TypeError(f"its {name!r} is a {type(t).__name__}, not a tensor")
                    if not isinstance(name, str) or not name or "/" in name:
                        raise ValueError(f"it names a tensor {name!r}: a state name is a plain, non-empty string "
                                         "without '/' (the checkpoint could not be read back)")
                    out[f"{key}/{name}"] = t
            if isinstance(comp, torch.nn.Module):  # a trainable component: its parameters and buffers
                self._check_state_names(key, tensors)
                for name, t in comp.state_dict().items():
                    out[f"{key}/{MODULE_PREFIX}{name}"] = t.detach()
        return out

    def _check_state_names(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """A trainable component's own state names must not use the prefix of its module
        tensors (they would be read back as module tensors)."""
        for name in tensors:
            if name.startswith(MODULE_PREFIX):
                raise ComponentError(f"{self.origin(key.replace('/', '.'))}: state_tensors() names {name!r}, "
                                     f"but the prefix {MODULE_PREFIX!r} is reserved for the module's own tensors",
                                     hint="rename that state tensor")

    def restore(self) -> None:
        """``--resume``: load the latest checkpoint (encoder, optimizer, schedule,
        component state, RNG, history) and cut the logs back to it."""
        path = ckpt.latest_checkpoint(self.run_dir)
        if path is None:
            raise TrainingError(f"--resume: {self.run_dir} holds no checkpoint yet",
                                hint="run without --resume (add --overwrite to start over)")
        if not (self.run_dir / "checkpoints" / "latest").exists() and self.dist.is_main:
            print(f"note: {self.run_dir / 'checkpoints' / 'latest'} is missing; resuming from {path.name}, "
                  "the newest complete checkpoint", file=sys.stderr)
        data = ckpt.load_checkpoint(path)
        ckpt.load_model_weights(self.encoder, data["model_path"], hint=ckpt.TRAINING_HINT)
        state = data["state"]
        with _wrong_checkpoint(path / "optimizer.safetensors", "the optimizer of this recipe"):
            self.optimizer.load_state_dict(data["optimizer"])
        with _wrong_checkpoint(path / "state.json", "the learning-rate schedule"):
            self.scheduler.load_state_dict(state["scheduler"])
        per_comp: dict[str, dict[str, torch.Tensor]] = {}
        for name, t in data["components"].items():
            key, tname = name.rsplit("/", 1)
            per_comp.setdefault(key, {})[tname] = t.to(self.dist.device)
        _key_pair_construction_by_name(per_comp, self.components)
        for key, comp in self.components.stateful().items():
            tensors = per_comp.pop(key, {})
            if isinstance(comp, torch.nn.Module):  # only a trainable component's names are split
                module_state = {n[len(MODULE_PREFIX):]: t for n, t in tensors.items() if n.startswith(MODULE_PREFIX)}
                tensors = {n: t for n, t in tensors.items() if not n.startswith(MODULE_PREFIX)}
                try:
                    comp.load_state_dict(module_state)
                except RuntimeError as exc:
                    raise TrainingError(f"checkpoint {path}: the saved tensors of {key} do not fit its module "
                                        f"({one_line(exc)})", hint="resume with the recipe the run was started with") from exc
            where = _recipe_key(key)
            with faults_named(lambda exc: self._fault(where, f"load_state_tensors() of {path} failed", exc)):
                comp.load_state_tensors(tensors)
        if per_comp:
            raise TrainingError(f"checkpoint {path} holds state for components not in the recipe: {sorted(per_comp)}",
                                hint="resume with the recipe the run was started with")
        with _wrong_checkpoint(path / "rng.safetensors", "the random generators (with state.json's rng)"):
            ckpt.set_rng_state(data["rng"], state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        changed = resume_steps_warning(self.sampler, self.epoch, self.step,  # another process count, drop_last false
                                       state.get("steps_per_epoch"))
        if changed and self.dist.is_main:
            print(changed, file=sys.stderr, flush=True)
        self.history = state.get("history", [])
        self._check_best_on_resume()
        self.logger.truncate(self.epoch, self.step)

    def _check_best_on_resume(self) -> None:
        """The best checkpoint a resumed run will report: a damaged one is refused now, not
        after the remaining epochs; one of an epoch after the restored checkpoint (with
        ``train.checkpoint_every`` above 1, or written just before a stop; that epoch is now
        trained again) is removed, with a note - its score is not in the restored history,
        and a repeated epoch that scores otherwise (another host, a GPU) must not leave it
        to be reported under another epoch's label."""
        best = ckpt.recover_best(self.run_dir)  # every process reads it: each raises, or none does
        if best is None:
            return
        epoch = _best_epoch_of(best)
        if epoch is not None and epoch > self.epoch:
            self.dist.barrier()  # every process has read it before the main one removes it
            if self.dist.is_main:
                print(f"note: {best} holds epoch {epoch}, after the checkpoint resumed from (epoch {self.epoch}): "
                      "removed; the epochs trained again select the best anew", file=sys.stderr, flush=True)
                shutil.rmtree(best)
            return
        problem = ckpt.weights_problem(best / "model.safetensors")
        if problem is not None:
            raise TrainingError(f"--resume: the best checkpoint {best} is damaged ({problem}); the run would "
                                "report it after training",
                                hint=f"restore it, or delete {best}: the run then reports the last epoch and says "
                                     "so in metrics.json, unless a later epoch scores best")

    # ------------------------------------------------------------------ phase 4: save
    def save(self) -> None:
        """Write a checkpoint of the current epoch (main process); all processes wait."""
        if self.dist.is_main:
            ckpt.save_checkpoint(
                self.run_dir, epoch=self.epoch, model=self.encoder, optimizer=self.optimizer,
                scheduler=self.scheduler, component_tensors=self.component_tensors(),
                state={"step": self.step, "steps_per_epoch": self.sampler.steps_per_epoch(), "history": self.history},
            )
        self.dist.barrier()

    # ------------------------------------------------------------------ one step
    def encode(self, views: dict[str, View]) -> dict[str, ViewFeatures]:
        """Encode every view in one forward call -> {view: ViewFeatures} (B x d each,
        L2-normalised, float32; this process's rows)."""
        names = list(views)
        images = torch.cat([views[n].images for n in names])
        ids = torch.cat([views[n].input_ids for n in names])
        mask = torch.cat([views[n].attention_mask for n in names])
        sizes = [views[n].images.shape[0] for n in names]
        with self.component_call("encoder", "encode_image() / encode_text()"), self.accelerator.autocast():
            separately = sizes if self.recipe.train.encode_views == "separately" else None
            image, text, image_raw, text_raw = self.model(images, ids, mask, separately)
        parts = zip(names, image.split(sizes), text.split(sizes), image_raw.split(sizes), text_raw.split(sizes))
        return {n: ViewFeatures(i, t, ri, rt) for n, i, t, ri, rt in parts}

    def global_batch(self, features: dict[str, ViewFeatures], batch: Batch) -> tuple[dict[str, ViewFeatures], Batch]:
        """Features and indices of the whole global batch on every process.

        Relations and losses are computed over the global batch (as one process would):
        features (normalised and raw) are gathered with :meth:`Distributed.gather_with_grad`
        (this rank's rows keep their gradient), dataset indices and ids without. The gathered Batch carries
        empty image/token tensors (the encoder already ran). Identity on one process."""
        if self.dist.world_size == 1:
            return features, batch
        # the ranks' row counts, taken once for every gather of the step (they differ in a last partial batch)
        sizes = self.dist.shard_sizes(batch.index.shape[0], batch.index.device)
        gathered = {v: ViewFeatures(*(self.dist.gather_with_grad(t, sizes)
                                      for t in (f.image, f.text, f.image_raw, f.text_raw)))
                    for v, f in features.items()}
        empty = torch.zeros(0, device=batch.index.device)
        gbatch = Batch(images=empty, input_ids=empty, attention_mask=empty, index=self.dist.gather(batch.index, sizes),
                       image_id=self.dist.gather(batch.image_id, sizes),
                       person_id=self.dist.gather(batch.person_id, sizes))
        return gathered, gbatch

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """One optimizer step on this process's ``batch`` (docs/architecture.md, "The flow
        of one step"): views, encode, gather the global batch, relate (local, then global
        associations), losses (weighted, summed), backward, step, then the global
        associations' ``after_step`` with the detached gathered base features.
        ``batch.images``: normalised float images, or the uint8 pixels of
        :func:`~wsreid.engine.data.collate_pairs` (normalised here first).
        Returns {"loss/<label>": value, "loss/total": value}."""
        c = self.components
        batch = normalise_batch(batch, self.encoder.image_mean, self.encoder.image_std)  # uint8 from collate_pairs
        with self.component_call("pair_construction", "views()"):
            views = c.pair_construction.views(batch, self.encoder)
        self._check_views(views, len(batch))
        features, batch = self.global_batch(self.encode(views), batch)
        relations = {}
        for section in ("local_associations", "global_associations"):
            # an association's view is one the pair construction declares (validation), and
            # views() returned exactly the declared views (_check_views)
            for label, assoc in getattr(c, section).items():
                with self.component_call(f"{section}.{label}", "relate()"):
                    rel = assoc.relate(features, batch, ctx)
                if rel is not None:
                    self._check_relation(f"{section}.{label}", rel, batch.index.shape[0])
                    self._check_relation_view(f"{section}.{label}", rel, assoc)
                    self._check_relation_values(f"{section}.{label}", rel.weights, ctx)
                    self._check_relation_gradient(f"{section}.{label}", rel, features)
                    relations[label] = rel
        losses: dict[str, torch.Tensor] = {}
        for label, obj in c.objectives.items():
            if ctx.epoch < c.start_epochs.get(label, 1):
                continue
            with self.component_call(f"objectives.{label}", "loss()"):
                value = obj.loss(features, relations, batch, ctx)
            if value is None:
                continue
            if not torch.is_tensor(value) or value.dim() != 0:
                got = f"a tensor of shape {list(value.shape)}" if torch.is_tensor(value) else f"a {type(value).__name__}"
                raise ComponentError(f"{self.origin('objectives.' + label)}: loss() returned {got}, "
                                     "not a scalar tensor (shape [])",
                                     hint="reduce it to one value (e.g. loss.mean(); loss.squeeze() for shape [1]), "
                                          "or return None to skip the step")
            if not value.is_floating_point():
                raise ComponentError(f"{self.origin('objectives.' + label)}: loss() returned a {value.dtype} tensor, "
                                     "not a float one", hint="compute the loss from the features passed to loss()")
            if not value.requires_grad and trains_features(features):
                raise ComponentError(f"{self.origin('objectives.' + label)}: loss() returned a loss without gradient "
                                     "(computed from detached features or constants), so it trains nothing",
                                     hint="compute it from the features passed to loss(), not from detached copies; "
                                          "return None to skip the step")
            if not torch.isfinite(value.detach()).all():
                last = ckpt.latest_checkpoint(self.run_dir)
                raise TrainingError(
                    f"{self.origin('objectives.' + label)}: gave a non-finite loss ({float(value.detach()):.4g}) at "
                    f"epoch {ctx.epoch}, step {ctx.step + 1}",
                    hint=(f"the last good checkpoint {last} is intact" if last else "no checkpoint was written yet")
                    + "; a lower train.lr, or the objective's inputs (a log or division of 0), are the usual causes",
                )
            losses[label] = c.weights.get(label, 1.0) * value
        if not losses:
            raise RecipeError("no objective produced a loss at this step", hint="add an objective such as 'itc'")
        total = sum(losses.values())
        if not total.requires_grad:
            where = ", ".join(self.origin(f"objectives.{label}") for label in losses)
            raise ComponentError(f"{where}: the loss carries no gradient (computed without the features' graph)",
                                 hint="compute it from the features passed to loss(), not from detached copies "
                                      "or constants; return None to skip the step")
        self.optimizer.zero_grad(set_to_none=True)
        # Every process computes the loss of the global batch; its gradient reaches only this
        # rank's rows. DDP averages over ranks, so scale by the world size to get the sum.
        self.accelerator.backward(total * self.dist.world_size)
        trainable = [p for p in self.trainable_parameters if p.grad is not None]
        if self.dist.world_size > 1:  # outside DDP: each process holds world_size x the global gradient
            for param in trainable:
                param.grad.div_(self.dist.world_size)
        if self.recipe.train.grad_clip:
            self.accelerator.clip_grad_norm_([*self.model.parameters(), *trainable], self.recipe.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if c.global_associations:
            base = features[BASE_VIEW]
            detached = {BASE_VIEW: ViewFeatures(base.image.detach(), base.text.detach(),
                                                base.image_raw.detach(), base.text_raw.detach())}
            for label, assoc in c.global_associations.items():
                with self.component_call(f"global_associations.{label}", "after_step()"):
                    assoc.after_step(detached, batch, ctx)
        out = {f"loss/{k}": float(v.detach()) for k, v in losses.items()}
        out["loss/total"] = float(total.detach())
        return out

    def declared_views(self) -> tuple[str, ...]:
        """The views the pair construction declares with its parameters
        (:meth:`wsreid.api.PairConstruction.declared_views`), which recipes were checked
        against; asked once."""
        if self._declared_views is None:
            pairs = self.components.pair_construction
            with self.component_call("pair_construction", "declared_views()"):
                self._declared_views = tuple(type(pairs).declared_views(pairs.params))
        return self._declared_views

    def _check_splits(self, dataset) -> None:
        """What the dataset's ``load()`` returned, before anything trains
        (:func:`~wsreid.engine.data.splits_problem`), and that every val/test gallery image
        is a file (:func:`~wsreid.engine.data.missing_gallery_image`; not with
        ``check_images: none``): a broken evaluation split would otherwise stop the run
        after an epoch or after all of training."""
        problem = splits_problem(self.splits)
        if problem is not None:
            provider = self._providers.get("data")
            raise ComponentError(f"{self.origin('data')}: {problem}",
                                 hint=f"a fault of plugin {provider!r}; fix it, or choose another dataset")
        if getattr(getattr(dataset, "params", None), "check_images", None) == "none":
            return
        missing = missing_gallery_image(self.splits)
        if missing is not None:
            split, position, path = missing
            raise DataError(f"{self.origin('data')}: {split} gallery image {position}, {path}, is not a file",
                            hint="check the dataset's files (evaluation images are read only after training)")

    def _check_views(self, views: Any, rows: int) -> None:
        """What ``views()`` returned for a local batch of ``rows`` rows: a dict holding
        exactly the declared views, each a :class:`View` of B x 3 x H x W floating images
        and B x L long tokens, every view of the same shapes (docs/plugins.md, section 11,
        "Mistakes found while a run builds and trains"). A few attribute reads per view:
        cheap enough for every step."""
        where = "pair_construction"
        if not isinstance(views, dict):
            raise ComponentError(f"{self.origin(where)}: views() returned a {type(views).__name__}, not a dict of "
                                 "view name -> wsreid.api.View",
                                 hint="return {'base': View(...), ...} with the views it declares")
        for name, view in views.items():
            if not isinstance(view, View):
                raise ComponentError(f"{self.origin(where)}: views() returned view {name!r} as a "
                                     f"{type(view).__name__}, not a wsreid.api.View",
                                     hint="return {'base': View(...), ...} with the views it declares")
        declared = self.declared_views()
        if set(views) != set(declared):
            raise ComponentError(f"{self.origin(where)}: views() returned the views {list(views)}, but it declares "
                                 f"{list(declared)} (view_names or declared_views(params))",
                                 hint="return exactly the declared views: recipes are checked against them, so an "
                                      "association or objective may read any of them")
        first = None  # the shapes of the first view: every other view must have them
        for name, view in views.items():
            tensors = (view.images, view.input_ids, view.attention_mask)
            tokens = (rows, *_sizes(view.input_ids, 2, ("L",)))  # input_ids and attention_mask alike
            expected = first or ((rows, 3, *_sizes(view.images, 4, ("H", "W"))), tokens, tokens)
            for what, t, shape in zip(("images", "input_ids", "attention_mask"), tensors, expected):
                if not (torch.is_tensor(t) and tuple(t.shape) == shape
                        and (t.is_floating_point() if what == "images" else t.dtype == torch.long)):
                    got = f"a {t.dtype} tensor of shape {list(t.shape)}" if torch.is_tensor(t) else f"a {type(t).__name__}"
                    shown = "[" + ", ".join(str(n) for n in shape) + "]"
                    wanted = f"a floating tensor of shape {shown}" if what == "images" else f"torch.int64 of shape {shown}"
                    raise ComponentError(
                        f"{self.origin(where)}: views() returned view {name!r} whose {what} is {got}, expected {wanted}",
                        hint=f"a view holds images B x 3 x H x W float, input_ids and attention_mask B x L long, "
                             f"B the rows of the batch ({rows}); every view of a step has the same shapes; "
                             "see wsreid.api.View")
            first = first or tuple(tuple(t.shape) for t in tensors)

    def _check_relation_view(self, where: str, rel: Relation, assoc: Any) -> None:
        """A relation names the view its association's parameters select (``view``, else
        ``"base"``), as the conformance kit requires: the gradient check reads the features
        of ``rel.view``. One attribute read."""
        wanted = getattr(assoc.params, "view", BASE_VIEW)
        if isinstance(wanted, str) and rel.view != wanted:
            raise ComponentError(f"{self.origin(where)}: relate() returned a Relation of view {rel.view!r}, but its "
                                 f"parameters select view {wanted!r}",
                                 hint=f"build it with Relation(..., view={wanted!r}): the view of the features it "
                                      "relates")

    def _check_relation_gradient(self, where: str, rel: Relation, features: dict[str, Any]) -> None:
        """A relation's ``image`` / ``text`` rows carry the gradient of the batch features
        where those do (docs/plugins.md, section 1): detached rows would make an objective
        such as SDM train nothing, silently, while its loss is logged. Two attribute reads."""
        view = features.get(rel.view)
        if view is None:
            return
        lost = [m for m in ("image", "text") if getattr(view, m).requires_grad and not getattr(rel, m).requires_grad]
        if lost:
            raise ComponentError(f"{self.origin(where)}: relate() returned relation.{' and relation.'.join(lost)} "
                                 "without the gradient of the batch features (detached or recomputed), so an "
                                 "objective on this relation trains nothing",
                                 hint="return the features passed to relate() as the first B rows (memory rows may "
                                      "follow, without gradient), not detached copies")

    def _check_relation_values(self, where: str, weights: torch.Tensor, ctx: StepContext) -> None:
        """A relation's weights are finite, lie in [0, 1] and hold 1 on the diagonal (row i
        and column i are the same pair; docs/plugins.md, section 1), to within
        :data:`RELATION_TOLERANCE`: a zero diagonal would give a NaN loss blamed on the
        objective, a weight of 2 would train silently. Three reductions and one transfer
        to the host per relation (about 10 us for 64 x 64 weights and 100 us for
        64 x 4096 on one CPU thread)."""
        with torch.no_grad():
            w = weights.detach()
            lo, hi = torch.aminmax(w)
            values = torch.stack([lo, hi, w.diagonal().min()]).tolist()
        lo, hi, diagonal = values
        when = f"at epoch {ctx.epoch}, step {ctx.step + 1}"
        if not all(map(_finite, values)):
            what = "holding NaN or inf"
        elif lo < -RELATION_TOLERANCE or hi > 1 + RELATION_TOLERANCE:
            what = f"outside [0, 1] ({lo:.4g} .. {hi:.4g})"
        elif diagonal < 1 - RELATION_TOLERANCE:
            what = f"whose diagonal is not 1 (smallest diagonal value {diagonal:.4g})"
        else:
            return
        raise ComponentError(f"{self.origin(where)}: relate() returned weights {what} {when}",
                             hint="relation weights lie in [0, 1]: 1 on the diagonal (row i and column i are the "
                                  "same pair), a value in (0, 1] for related pairs, exactly 0 for the others; see "
                                  "docs/plugins.md, and check the component with wsreid.testing.check_component")

    def _check_relation(self, where: str, rel: Relation, batch_rows: int) -> None:
        """A relation's weights are float, Q x N over its N image and N text rows, with
        B <= Q <= N for a global batch of B rows (every batch row is a query); ``where``:
        the association's recipe key."""
        if not isinstance(rel, Relation):
            raise ComponentError(f"{self.origin(where)}: relate() returned a "
                                 f"{type(rel).__name__}, not a Relation", hint="return a wsreid.api.Relation or None")
        for field in ("weights", "image", "text"):
            value = getattr(rel, field)
            if not torch.is_tensor(value):
                raise ComponentError(f"{self.origin(where)}: relate() returned a Relation whose {field} is a "
                                     f"{type(value).__name__}, not a tensor",
                                     hint="weights is a Q x N float tensor; image and text the N x D features "
                                          "it relates (see wsreid.api.Relation)")
        w, rows_image, rows_text = rel.weights, rel.image.shape[0], rel.text.shape[0]
        if (w.dim() != 2 or w.shape[1] != rows_image or rows_image != rows_text or w.shape[0] > rows_image
                or w.shape[0] < batch_rows):
            shape = " x ".join(str(n) for n in w.shape)
            raise ComponentError(
                f"{self.origin(where)}: relate() returned a Relation whose weights are {shape} "
                f"for {rows_image} image and {rows_text} text rows and a batch of {batch_rows}",
                hint="weights must be Q x N: Q query rows (the first Q rows, at least the batch) by all N rows "
                     "of image and text")
        if not w.is_floating_point():
            raise ComponentError(
                f"{self.origin(where)}: relate() returned {w.dtype} weights",
                hint="relation weights are floats in [0, 1] (e.g. related.float())")
        if w.requires_grad:
            raise ComponentError(
                f"{self.origin(where)}: relate() returned weights that carry gradient, so an objective reading "
                "them would train through its own target",
                hint="compute the weights under torch.no_grad() or return weights.detach(); only relation.image "
                     "and relation.text carry gradient (docs/plugins.md, section 1)")

    # ------------------------------------------------------------------ phase 2: train an epoch
    def train(self) -> dict[str, Any]:
        """Train every remaining epoch (restoring first on ``resume``), then
        :meth:`finish`. Returns the final metrics (also written to metrics.json). A stop
        signal whose exception was swallowed (:func:`wsreid.engine.signals.check`) stops it
        after the step, before the epoch or checkpoint, or before metrics.json."""
        r = self.recipe
        if self.resume:
            self.restore()
        with self.hook_guard("wsreid_run_start"):
            self.plugins.hook.wsreid_run_start(run=self)
        while self.epoch < r.train.epochs:
            signals.check()  # a stop signal whose exception was swallowed stops the run at a boundary
            self.epoch += 1
            logs = self.train_epoch(self.epoch)
            record = self.evaluate_and_select(self.epoch, logs)
            self.history.append(record)
            self.logger.epoch(self.epoch, logs)
            if self.dist.is_main:  # one line an epoch: a log file or CI output shows progress without the bar
                # (stdout, as the dataset summary and the test line: stderr holds warnings and the one error line)
                print(epoch_summary(self.epoch, r.train.epochs, logs, record), flush=True)
            with self.hook_guard("wsreid_epoch_end"):
                self.plugins.hook.wsreid_epoch_end(run=self, epoch=self.epoch, logs=logs)
            if self.epoch % r.train.checkpoint_every == 0 or self.epoch == r.train.epochs:
                signals.check()
                self.save()
        signals.check()
        return self.finish()

    def _train_features(self, text: bool = True) -> ViewFeatures:
        """``EpochContext.extract_train_features``: the encoder's un-augmented features
        of the whole training set; an encoder fault is named as the encoder's."""
        r = self.recipe
        with self.component_call("encoder", "encoding the training set"):
            return extract_train_features(self.encoder, self.splits.train, r.eval.batch_size, self.dist,
                                          r.train.num_workers, text=text)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch: the global associations' ``epoch_start``, the epoch-start hook, then
        :meth:`train_step` over the loader. Returns the epoch's logs: mean losses (each
        over the steps that produced it: an objective that returned None on a step is left
        out of its mean, not counted as 0), the learning rate, seconds, and every
        component's diagnostics."""
        r = self.recipe
        num_epochs = r.train.epochs
        ectx = EpochContext(epoch, num_epochs, self.dist, self._train_features,
                            self.train_person_ids.to(self.dist.device))
        for label, assoc in self.components.global_associations.items():
            with self.blame(f"global_associations.{label}", "global_association",
                            self.recipe.global_associations[label].name, f"epoch_start() of epoch {epoch}"):
                assoc.epoch_start(ectx)
        with self.hook_guard("wsreid_epoch_start"):
            self.plugins.hook.wsreid_epoch_start(run=self, epoch=epoch)
        self.sampler.set_epoch(epoch)
        self.training_started = True
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        started = time.time()
        bar = tqdm(self.loader, desc=f"epoch {epoch}/{num_epochs}", leave=False, disable=None if self.dist.is_main else True)
        used_lr = self.scheduler.get_last_lr()[0]  # what the epoch logs when its loader gives no batch
        for batch in bar:
            batch = batch.to(self.dist.device)
            ctx = StepContext(epoch, self.step, num_epochs, self.dist)
            # the rate this step trains with: after it the scheduler holds the next step's
            # (a 2-epoch warm-up of a 2-epoch run logged train.lr, which no step used)
            used_lr = self.scheduler.get_last_lr()[0]
            values = self.train_step(batch, ctx)
            self.step += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            if self.step % r.train.log_every == 0:
                self.logger.step(self.step, epoch, {**values, "lr": used_lr})
                bar.set_postfix(loss=f"{values['loss/total']:.3f}")
            with self.hook_guard("wsreid_after_step"):
                self.plugins.hook.wsreid_after_step(run=self, epoch=epoch, step=self.step, losses=values)
            signals.check()
        logs: dict[str, float] = {k: v / counts[k] for k, v in sums.items()}
        logs["lr"] = used_lr  # the epoch's last step's
        logs["seconds"] = time.time() - started
        for label, comp in self.components.stateful().items():
            with self.component_call(_recipe_key(label), "diagnostics()"):
                for k, v in comp.diagnostics().items():
                    value = float(v)
                    if not _finite(value):
                        raise ValueError(f"it returned {k!r}: {value}, not a finite number (leave a name out of an "
                                         "epoch that has no value for it)")
                    logs[f"diag/{label.split('/', 1)[1]}/{k}"] = value
        return logs

    # ------------------------------------------------------------------ phase 3: evaluate and select
    def evaluate(self, split_name: str) -> dict[str, float]:
        """Retrieval metrics of the current encoder on ``split_name`` (val or test); calls
        the after-evaluation hook."""
        split = getattr(self.splits, split_name)
        ev = self.recipe.eval
        with self.component_call("encoder", f"encoding the {split_name} split"):
            text, image = split_features(self.encoder, split, ev.batch_size, self.dist, self.recipe.train.num_workers)
        metrics = split_metrics(text, image, split, ev.chunk_size)
        with self.hook_guard("wsreid_after_evaluation"):
            self.plugins.hook.wsreid_after_evaluation(run=self, split=split_name, epoch=self.epoch, metrics=metrics)
        return metrics

    def selection_split(self) -> str | None:
        """The split the best epoch is selected on (``eval.select``), None for ``last``
        or when the dataset lacks the validation split."""
        select = self.recipe.eval.select
        if select == "val":
            return "val" if self.splits.val is not None else None
        return "test" if select == "test" else None

    def evaluate_and_select(self, epoch: int, logs: dict[str, float]) -> dict[str, Any]:
        """On evaluation epochs (every ``eval.every`` and the last): evaluate val and the
        selection split, add their metrics to ``logs``, and save the encoder as the best
        checkpoint when the selection split's R1 improved. Returns the epoch's history
        record ``{"epoch": e, "<split>": metrics, ...}``."""
        r = self.recipe
        sel = self.selection_split()
        record: dict[str, Any] = {"epoch": epoch}
        if epoch % r.eval.every == 0 or epoch == r.train.epochs:
            # a list, not a set: every process must evaluate (and gather) the splits in one order
            for split_name in ["val"] + ([sel] if sel not in (None, "val") else []):
                if getattr(self.splits, split_name, None) is None:
                    continue
                record[split_name] = self.evaluate(split_name)
                for k, v in record[split_name].items():
                    logs[f"{split_name}/{k}"] = v
            if sel and sel in record and self._is_best(sel, record[sel]):
                if self.dist.is_main:
                    ckpt.save_best(self.run_dir, self.encoder, {"epoch": epoch, "split": sel, **record[sel]})
                self.dist.barrier()
        return record

    def _is_best(self, split: str, metrics: dict[str, float]) -> bool:
        previous = [h[split]["R1"] for h in self.history if split in h]
        return not previous or metrics["R1"] > max(previous)

    # ------------------------------------------------------------------ the end
    def finish(self) -> dict[str, Any]:
        """Load the selected (best) weights back, evaluate on test, write metrics.json and
        the curves (main process), call the run-end hook. Returns the metrics."""
        sel = self.selection_split()
        best_epoch = self.epoch
        best_missing = False
        if sel:
            scored = [h for h in self.history if sel in h]
            best = max(scored, key=lambda h: h[sel]["R1"]) if scored else None
            saved = ckpt.recover_best(self.run_dir)
            if best is not None and saved is not None and _best_epoch_of(saved) in (best["epoch"], None):
                best_epoch = best["epoch"]
                ckpt.load_model_weights(self.encoder, saved / "model.safetensors", hint=ckpt.TRAINING_HINT)
            elif best is not None and best["epoch"] != self.epoch:
                # its weights are gone (deleted, or replaced by a later attempt's): the last
                # epoch's are evaluated, and metrics.json says so rather than naming the best
                best_missing = True
                if self.dist.is_main:
                    print(f"warning: the weights of epoch {best['epoch']}, the best on {sel}, are not in "
                          f"{self.run_dir / 'checkpoints' / 'best'}: evaluating the last epoch ({self.epoch}) "
                          "instead", file=sys.stderr, flush=True)
        test = self.evaluate("test")
        comps = self.components
        metrics = {
            "test": test,
            "best_epoch": best_epoch,
            "selection": {"val": "best validation R1", "test": "best TEST R1 (published habit, optimistic)",
                          "last": "last epoch"}[self.recipe.eval.select] if sel or self.recipe.eval.select == "last"
            else "last epoch (dataset has no validation split)",
            "weakly_supervised": comps.weakly_supervised,
            "history": self.history,
            "dataset": self.splits.name,
            "seed": self.recipe.train.seed,
            "epochs": self.epoch,
            "data_counts": self.dataset_counts,
        }
        if best_missing:
            metrics["selection"] = f"last epoch (the best checkpoint on {sel} was missing)"
        if not comps.weakly_supervised:
            metrics["note"] = ("NOT weakly supervised: uses true identity labels via "
                               + ", ".join(comps.supervised_names()))
        signals.check()  # metrics.json marks the run finished: not after a swallowed stop signal
        if self.dist.is_main:
            self.logger.close()  # the logs complete (TensorBoard's last write error raised) before the run is finished
            try:
                ckpt.atomic_write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=1))
            except OSError as exc:
                raise TrainingError(f"cannot write {self.run_dir / 'metrics.json'}: {write_failure(exc)}",
                                    hint="free disk space (or fix the run directory's permissions), then resume "
                                         "with --resume: it evaluates the selected checkpoint again") from None
            self.finished = True
            try:
                plot_curves(self.run_dir)
            except Exception as exc:  # a plotting failure must not lose a finished run
                print(f"warning: could not plot curves: {exc}", file=sys.stderr)
        with self.hook_guard("wsreid_run_end"):
            self.plugins.hook.wsreid_run_end(run=self, metrics=metrics)
        return metrics


def check_precision(recipe, locations=None) -> None:
    """``train.mixed_precision: fp16`` on a machine without a GPU, where accelerate would
    ignore it without a word: a :class:`RecipeError` citing the recipe's line when
    ``locations`` are given (:func:`precision_problem`)."""
    problem = precision_problem(recipe, locations)
    if problem is not None:
        raise RecipeError(problem, hint="accelerate would ignore it without a word; use 'bf16' or 'no' on CPU")


def precision_problem(recipe, locations=None) -> str | None:
    """What :func:`check_precision` refuses, as a line (``wsreid validate``, which may run
    on another machine than the training, prints it as a warning); None when nothing is."""
    if recipe.train.mixed_precision != "fp16" or torch.cuda.is_available():
        return None
    where = f"{locations.find(('train', 'mixed_precision'))}: " if locations is not None else ""
    return f"{where}train.mixed_precision: fp16 needs a GPU, and this machine has none"


def _best_epoch_of(best: Path) -> int | None:
    """The epoch ``checkpoints/best`` holds (its state.json), None when unreadable."""
    try:
        epoch = json.loads((best / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) else None


@contextmanager
def _wrong_checkpoint(file: Path, what: str):
    """Around restoring ``what`` from a checkpoint file that was read but holds values that
    do not fit: one line naming the file."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        raise TrainingError(f"checkpoint file {file} does not fit {what}: {one_line(exc)}",
                            hint="resume with the recipe the run was started with; restore the file, "
                                 "or start again with --overwrite") from exc


#: how far relation weights may stray from [0, 1] and from 1 on the diagonal (rounding)
RELATION_TOLERANCE = 1e-6


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def _sizes(t: Any, dims: int, names: tuple[str, ...]) -> tuple:
    """The last sizes of ``t`` (one per name) when it is a tensor of ``dims`` dimensions,
    else the names themselves (a shape no tensor has): what a first view's tensors are
    compared with."""
    if torch.is_tensor(t) and t.dim() == dims:
        return tuple(t.shape[dims - len(names):])
    return names


def _key_pair_construction_by_name(per_comp: dict[str, dict], components: Components) -> None:
    """Checkpoints written before the pair construction's state was keyed by its registered
    name keyed it by its Python class name (``pair_construction/IASCPairs``): such a key,
    the only one of its section, is read as the recipe's pair construction."""
    wanted = next(key for key in components.stateful() if key.startswith("pair_construction/"))
    found = [key for key in per_comp if key.startswith("pair_construction/")]
    if wanted not in per_comp and len(found) == 1:
        per_comp[wanted] = per_comp.pop(found[0])


def _recipe_key(stateful_key: str) -> str:
    """The recipe key of a :meth:`Components.stateful` key (``objectives/sdm`` ->
    ``objectives.sdm``; the pair construction's is ``pair_construction``)."""
    section, label = stateful_key.split("/", 1)
    return section if section == "pair_construction" else f"{section}.{label}"


def _raising_plugin(caller, exc: BaseException) -> str:
    """The plugin whose implementation of the hook ``caller`` raised ``exc`` (the outermost
    traceback frame running one of the implementations), or ``"?"``."""
    codes = {impl.function.__code__: impl.plugin_name for impl in caller.get_hookimpls()
             if hasattr(impl.function, "__code__")}
    tb = exc.__traceback__
    while tb is not None:
        name = codes.get(tb.tb_frame.f_code)
        if name is not None:
            return name
        tb = tb.tb_next
    return "?"


def trains_features(features: dict[str, Any]) -> bool:
    """Whether any view's image or text features carry gradient (not when every encoder
    parameter is frozen)."""
    return any(v.image.requires_grad or v.text.requires_grad for v in features.values())


def dataset_counts(splits) -> dict[str, dict[str, int]]:
    """Per split: distinct person ids, images and captions (train: of the training pairs;
    val / test: gallery images and query captions, and ``ids_in_train``, how many of the
    split's ids are training ids too - 0 in the benchmarks, whose splits hold disjoint
    people)."""
    train = splits.train
    train_ids = {p.person_id for p in train}
    counts = {"train": {"ids": len(train_ids), "images": len({p.image_id for p in train}), "captions": len(train)}}
    for name in ("val", "test"):
        split = getattr(splits, name)
        if split is not None:
            ids = set(split.caption_person_ids) | set(split.image_person_ids)
            counts[name] = {"ids": len(ids), "images": len(split.image_paths), "captions": len(split.captions),
                            "ids_in_train": len(ids & train_ids)}
    return counts


def check_evaluable(name: str, counts: dict[str, dict[str, int]]) -> None:
    """An evaluation split of one person scores every model 100 (each query's best image is
    of its person): a dataset whose annotation gives every record one id (a placeholder for
    data without identities) trained and reported R@1 100.00, exit 0. A
    :class:`~wsreid.errors.DataError` naming the split."""
    for split, c in counts.items():
        if split != "train" and c["ids"] == 1:  # (an empty split is refused with the dataset's other checks)
            raise DataError(f"dataset {name}: the {split} split holds {c['ids']} person ({c['images']} images, "
                            f"{c['captions']} captions): every retrieval would be correct and its R@1 and mAP 100 "
                            "whatever the model",
                            hint="retrieval is evaluated over several people: check that the annotation gives each "
                                 "person their own id (a weakly supervised method never reads the training ids, but "
                                 "evaluation needs the val and test ones)")


def format_dataset_counts(name: str, counts: dict[str, dict[str, int]]) -> str:
    """The lines ``wsreid run`` prints at start: one per split (an evaluation split
    sharing ids with train says how many)."""
    lines = [f"dataset {name}:"]
    for split, c in counts.items():
        shared = f"  ({c['ids_in_train']} ids also in train)" if c.get("ids_in_train") else ""
        lines.append(f"  {split:<5} {c['ids']:>6} ids {c['images']:>7} images {c['captions']:>7} captions{shared}")
    return "\n".join(lines)


def shared_identity_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    """One line per evaluation split whose people are also training people: its numbers
    then measure retrieval of people seen in training, which the benchmarks' protocol
    (disjoint identities) does not, and are not comparable with published ones."""
    return [f"{c['ids_in_train']} of the {c['ids']} {split} identities also appear in train: {split} numbers then "
            "include people seen in training and are not comparable with the benchmarks' (which keep the "
            "splits' people apart); `wsreid data check` names them"
            for split, c in counts.items() if c.get("ids_in_train")]
