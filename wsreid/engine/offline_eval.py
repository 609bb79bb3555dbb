"""Evaluation of a trained run, a checkpoint or (zero-shot) a recipe's encoder: the library
behind ``wsreid eval``.

    wsreid eval RUN_DIR                              # the run's selected checkpoint
    wsreid eval RUN_DIR --data OTHER_RECIPE          # cross-dataset: OTHER_RECIPE's data block
    wsreid eval RUN_DIR -o data.name=rstpreid -o data.root=DIR      # the same with overrides
    wsreid eval RUN_DIR --query-mask-ratio 0.1,0.3,0.5              # degraded queries
    wsreid eval RUN_DIR --show 8 --figure top5.png                  # a retrieval figure
    wsreid eval --zero-shot --recipe RECIPE          # the encoder as loaded, no run needed

Evaluation only reads: nothing is written into the run directory (the run's saved
tokenizer, ``RUN_DIR/tokenizer``, is reused by the ``clip`` encoder), and a zero-shot
evaluation of a recipe creates no run directory. It runs in one process (on the GPU when
there is one). The result is printed as JSON (``--format table``: a Markdown table); the
metrics keys (R1, R5, R10, mAP, mINP) sit at the top level.
Degraded queries: :mod:`wsreid.query_masking`. Cross-dataset evaluation: the recipe is
loaded with another recipe's data block (:func:`wsreid.recipe.load_recipe`, ``data_recipe``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsreid.engine.checkpoint import callers_random_state_kept
from wsreid.engine.components import build_dataset_and_encoder, encoder_calls, recipe_identity_readers
from wsreid.engine.rundir import run_weights, weights_of
from wsreid.errors import UserError
from wsreid.query_masking import masked_text_features

__all__ = ["EvalTarget", "resolve_target", "supervision", "build_for_evaluation", "evaluate_target",
           "unfinished_run_note", "missing_best_note",
           "evaluation_table", "METRIC_KEYS"]

METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")
RECIPE_SUFFIXES = (".yaml", ".yml")


@dataclass
class EvalTarget:
    """What to evaluate: the recipe file, the run directory (None: none), the weights file
    (None: the encoder as loaded)."""

    recipe: str
    run_dir: Path | None
    weights: Path | None

    def __post_init__(self):
        self.recipe = os.fspath(self.recipe)
        self.run_dir = None if self.run_dir is None else Path(self.run_dir)
        self.weights = None if self.weights is None else Path(self.weights)


def resolve_target(target: str | os.PathLike[str] | None = None, recipe: str | os.PathLike[str] | None = None,
                   zero_shot: bool = False) -> EvalTarget:
    """What ``wsreid eval TARGET [--recipe RECIPE] [--zero-shot]`` evaluates: ``target``
    a run directory (its best weights, its recipe), a checkpoint directory or
    ``.safetensors`` file (the recipe of its run, or ``recipe``), or a recipe file with
    ``zero_shot`` (the encoder as the recipe loads it)."""
    target = None if target is None else os.fspath(target)
    recipe = None if recipe is None else os.fspath(recipe)
    if target is None or Path(target).suffix in RECIPE_SUFFIXES:
        if target is not None and recipe is not None:
            raise UserError(f"{target} is a recipe and --recipe names another one", hint="give the recipe once")
        recipe = recipe or target
        if recipe is None:
            raise UserError("wsreid eval: nothing to evaluate",
                            hint="pass a run directory, or --zero-shot --recipe RECIPE")
        if not zero_shot:
            raise UserError(f"{recipe}: a recipe holds no trained weights",
                            hint="pass --zero-shot to use the encoder as the recipe loads it, or pass a run directory")
        return EvalTarget(recipe, None, None)
    path = Path(target)
    if not path.exists():
        raise UserError(f"{target} does not exist",
                        hint="pass a run directory (holding recipe.yaml), a checkpoint directory or .safetensors file")
    if path.name == "latest" and path.parent.name == "checkpoints" and path.is_file():
        pointed = path.parent / path.read_text().strip()  # RUN/checkpoints/latest names the newest checkpoint
        if not (pointed / "model.safetensors").is_file():
            raise UserError(f"{target} points to {pointed.name}, which holds no model.safetensors",
                            hint="pass the run directory, or another checkpoint folder of checkpoints/")
        path = pointed
    if path.is_dir() and (path / "recipe.yaml").exists():
        run_dir, weights = path, None
    elif path.is_dir() and (path / "model.safetensors").exists():
        weights = path / "model.safetensors"
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    elif path.suffix == ".safetensors" and path.exists():
        # RUN/checkpoints/<name>/model.safetensors belongs to RUN (its recipe and its tokenizer)
        owner = path.parent.parent.parent
        in_run = path.parent.parent.name == "checkpoints" and (owner / "recipe.yaml").exists()
        weights, run_dir = path, owner if in_run else None
    else:
        inside = sorted(path.glob("runs/*/seed-*/recipe.yaml")) if path.is_dir() else []
        if inside:  # an ablation study's directory: its runs are below it
            example = inside[0].parent
            raise UserError(f"{target} is an ablation study's directory, not a run (its {len(inside)} runs are in "
                            f"{path / 'runs'}/<label>/seed-<seed>)", hint=f"name one of them, e.g. {example}")
        raise UserError(f"{target} is neither a run directory nor a checkpoint",
                        hint="pass a run directory (holding recipe.yaml), a checkpoint directory or .safetensors file")
    recipe = recipe or (str(run_dir / "recipe.yaml") if run_dir else None)
    if recipe is None:
        raise UserError(f"{target}: cannot find the recipe of this checkpoint", hint="pass --recipe RECIPE")
    if zero_shot and weights is not None:
        raise UserError(f"{target} is a checkpoint, and --zero-shot evaluates the encoder without trained weights",
                        hint="drop --zero-shot to evaluate the checkpoint, or give its run directory "
                             "(or --recipe) with --zero-shot")
    if not zero_shot and weights is None:  # a run directory: its selected checkpoint
        weights = run_weights(run_dir)
        if weights is None:
            raise UserError(f"{run_dir} holds no checkpoint yet (a run writes its first one at the end of its first "
                            "epoch)", hint="train it first, or wait for its first epoch, or pass --zero-shot")
    return EvalTarget(recipe, run_dir, weights)


def unfinished_run_note(given: str | os.PathLike[str], target: EvalTarget, done: str = "evaluated") -> str | None:
    """The ``note:`` line for a run directory ``given`` as the target while it has no
    metrics.json (still training, or stopped): which checkpoint was ``done`` (evaluated,
    searched with); None otherwise."""
    if target.run_dir is None or target.weights is None or (target.run_dir / "metrics.json").exists():
        return None
    if Path(given).resolve() != target.run_dir.resolve():  # a checkpoint named by the user: nothing to tell
        return None
    return (f"note: {target.run_dir} is not finished (no metrics.json): {done} its checkpoint "
            f"{target.weights.parent.name}")


def missing_best_note(given: str | os.PathLike[str], target: EvalTarget | None,
                      done: str = "evaluated") -> str | None:
    """The ``note:`` line for a finished run directory ``given`` as the target (it has a
    metrics.json) whose ``checkpoints/best`` is gone (deleted to save space, or not copied
    along): which checkpoint was ``done`` (searched with) instead of the best epoch its
    metrics.json names; None otherwise (a checkpoint named by the user, the best in place,
    or a latest checkpoint of the epoch metrics.json names)."""
    from wsreid.checkpoint_layout import BEST, BEST_OLD, checkpoint_name

    if target is None or target.run_dir is None or target.weights is None:
        return None
    if target.weights.parent.name in (BEST, BEST_OLD) or Path(given).resolve() != target.run_dir.resolve():
        return None
    try:
        best_epoch = json.loads((target.run_dir / "metrics.json").read_text())["best_epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no metrics.json: unfinished_run_note says so
    used = target.weights.parent.name
    if not isinstance(best_epoch, int) or isinstance(best_epoch, bool) or used == checkpoint_name(best_epoch):
        return None
    return (f"note: {target.run_dir} has no checkpoints/{BEST} (its metrics.json names epoch {best_epoch} as the "
            f"best): {done} its latest checkpoint {used}")


def load_target_recipe(target: EvalTarget, overrides=(), disabled=(), data_recipe=None, plugins=None):
    """:func:`~wsreid.recipe.load_recipe` of ``target``'s recipe (with the plugin set
    ``plugins`` when given, as for ``load_recipe``); when the run's own
    recipe.yaml does not load (the error cites it, not an ``-o``, ``--data`` or
    ``--recipe`` of the user's) and the run was written by another version of wsreid (its
    versions.json), the error says so first (a key added by a newer version read as a
    typo, with a 'did you mean'). A settings block of the run's recipe.yaml that no plugin
    loaded now declares (an observer plugin disabled or uninstalled since the run trained)
    is left out with a ``note:`` line: settings are read by lifecycle hooks while a run
    trains, and evaluation calls none."""
    from wsreid.errors import RecipeError, check_strings
    from wsreid.recipe import load_recipe
    from wsreid.recipe.yamlio import display_path

    saved = None if target.run_dir is None else target.run_dir / "recipe.yaml"
    overrides = check_strings("overrides", overrides)  # (a lone string is refused, not read letter by letter)
    left_out: list[str] = []
    while True:
        try:
            loaded = load_recipe(target.recipe, [*overrides, *(f"settings.{key}=null" for key in left_out)],
                                 disabled=disabled, data_recipe=data_recipe, plugins=plugins, trains=False)
            break
        except RecipeError as exc:
            in_saved = saved is not None and Path(target.recipe).resolve() == saved.resolve() and any(
                str(exc).startswith(f"{shown}:") for shown in {str(saved), display_path(saved), str(target.recipe)})
            if not in_saved:  # the user's own -o, --data or --recipe: the error as it is
                raise
            undeclared = getattr(exc, "undeclared_settings", None)
            if undeclared is not None and undeclared not in left_out:
                left_out.append(undeclared)
                continue
            other = _as_other_versions(target.run_dir, exc, "its recipe does not load here")
            if other is None:
                raise
            raise other from exc
    if left_out:
        blocks = ", ".join(f"settings.{key}" for key in left_out)
        print(f"note: {display_path(saved)}: {blocks} left out: no plugin loaded now declares "
              f"{'it' if len(left_out) == 1 else 'them'} (read by a plugin's hooks while the run trained; evaluation "
              "and search call none)", file=sys.stderr, flush=True)
    return loaded


def _as_other_versions(run_dir: Path | None, exc: UserError, what: str) -> UserError | None:
    """``exc`` (of ``exc``'s class) said as a run of another version of wsreid: ``RUN was
    written by wsreid X (this is wsreid Y), and <what>: <exc>``; None when ``run_dir`` was
    written by this version, or has no record."""
    from wsreid import __version__

    written_by = other_version(run_dir)
    if written_by is None:
        return None
    return type(exc)(f"{run_dir} was written by wsreid {written_by} (this is wsreid {__version__}), and {what}: {exc}",
                     hint=f"use wsreid {written_by} for this run")


def other_version(run_dir: Path | None) -> str | None:
    """The version of wsreid that wrote ``run_dir`` (its versions.json) when it is not
    this one; None when it is, or when the run has no readable record."""
    from wsreid import __version__

    if run_dir is None:
        return None
    try:
        written_by = json.loads((run_dir / "versions.json").read_text())["packages"]["wsreid"]
    except Exception:  # no record
        return None
    return None if written_by == __version__ else str(written_by)


def supervision(recipe, plugins, zero_shot: bool) -> tuple[bool, str | None]:
    """Whether the evaluated model was trained weakly supervised, and a note when not
    (:func:`wsreid.engine.components.recipe_identity_readers`)."""
    supervised = recipe_identity_readers(recipe, plugins.registry, trained=not zero_shot)
    if not supervised:
        return True, None
    return False, "NOT weakly supervised: trained with true identity labels via " + ", ".join(supervised)


def _evaluation_context(recipe, run_dir: Path | None, loads_trained_weights: bool):
    """The build context of an evaluation, seeded as a run seeds its build -> (context, device)."""
    import torch
    from accelerate.utils import set_seed

    from wsreid.api import BuildContext

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    set_seed(recipe.train.seed)
    return BuildContext(run_dir=run_dir, seed=recipe.train.seed, device=device,
                        loads_trained_weights=loads_trained_weights, trains=False), device


def build_for_evaluation(recipe, plugins, run_dir: Path | None, loads_trained_weights: bool = False):
    """Dataset splits and encoder, built as a run builds them (same seed, same order,
    :func:`wsreid.engine.components.build_dataset_and_encoder`) -> (splits, encoder, device).
    ``loads_trained_weights``: trained weights are loaded afterwards
    (``BuildContext.loads_trained_weights``: nothing is written into ``run_dir``, a
    vocabulary comes from the run)."""
    ctx, device = _evaluation_context(recipe, run_dir, loads_trained_weights)
    _, splits, encoder = build_dataset_and_encoder(plugins, recipe, ctx)
    return splits, encoder, device


def build_encoder_alone(recipe, plugins, run_dir: Path | None, loads_trained_weights: bool = False):
    """The recipe's encoder without its dataset (:func:`build_for_evaluation` without the
    splits) -> (None, encoder, device). Enough where the weights are loaded afterwards and
    the tokenizer comes from a pretrained model or the run directory; an encoder that
    needs the training captions says so (the shipped CLIP encoder with a vocabulary built
    from them and no saved tokenizer)."""
    from wsreid.engine.components import build_encoder

    ctx, device = _evaluation_context(recipe, run_dir, loads_trained_weights)
    return None, build_encoder(plugins, recipe, ctx), device


def target_encoder(loaded, target: EvalTarget, *, with_dataset: bool = True):
    """The encoder ``target`` names, built with the loaded recipe as a run builds it, its
    weights loaded (the run's selected checkpoint, a checkpoint file, or for a zero-shot
    target of a recipe with ``init`` the initial run's), in eval mode on the device ->
    (splits, encoder, device). ``with_dataset=False`` builds the encoder alone
    (:func:`build_encoder_alone`; splits None): the dataset need not be at hand."""
    from wsreid.engine.checkpoint import WeightsMismatch, load_model_weights

    recipe, plugins = loaded.recipe, loaded.plugins
    init_source = None
    if target.weights is None and recipe.init is not None:
        # zero-shot of a recipe with `init`: the encoder as the run would start - the
        # initial run's tokenizer (found in its directory) and its weights
        from wsreid.engine.session import initial_run

        init_source = initial_run(recipe.init)
    build = build_for_evaluation if with_dataset else build_encoder_alone
    splits, encoder, device = build(recipe, plugins, target.run_dir or init_source,
                                    target.weights is not None or init_source is not None)
    if target.weights is not None:
        try:
            load_model_weights(encoder, target.weights)
        except WeightsMismatch as exc:
            other = _as_other_versions(target.run_dir, exc, "its weights do not fit the model built here")
            if other is None:
                raise
            raise other from exc
    elif init_source is not None:
        load_model_weights(encoder, weights_of(init_source, recipe.init.checkpoint))
    encoder.to(device).eval()
    return splits, encoder, device


def data_changes(loaded) -> str | None:
    """What replaced the evaluated recipe's own data block, for the result's header:
    ``--data RECIPE`` (cross-dataset) and the ``-o data.*`` overrides, in that order; None
    when the data are the recipe's own (a cross-dataset table read like an in-domain one)."""
    parts = [f"--data {loaded.data_recipe}"] if loaded.data_recipe is not None else []
    if loaded.locations is not None:
        parts += list(dict.fromkeys(loc.source.removeprefix("override ")
                                    for _, loc in loaded.locations.under(("data",))
                                    if loc.line is None and loc.source.startswith("override ")))
    return " ".join(parts) or None


def _or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def evaluation_table(result: dict[str, Any]) -> str:
    """Markdown table of an evaluation result: the unmasked queries ("none"), then one row
    per requested mask ratio. The last three columns are diagnostics, not metrics: the
    distinct images ranked first and the % of queries sent to the commonest of them
    (:func:`wsreid.evaluation.top1_concentration`), and the mean cosine between two
    queries' features (:func:`wsreid.evaluation.mean_pairwise_cosine`)."""
    tag = "" if result.get("weakly_supervised", True) else "  [NOT weakly supervised]"
    size = f" ({result['queries']} queries, {result['gallery']} images)" if "queries" in result else ""
    data = f", data: {result['data_from']}" if result.get("data_from") else ""
    lines = [f"{result['dataset']} {result['split']}{size}{data}, weights: {result['weights']}{tag}", "",
             "| query mask ratio | " + " | ".join(METRIC_KEYS) + " | top-1 images | top-1 hub % | query cos |",
             "|---" * (len(METRIC_KEYS) + 4) + "|"]
    rows = [{"ratio": "none", **result}] + [{**r, "ratio": f"{r['ratio']:g}"} for r in result.get("query_mask", [])]
    for row in rows:
        lines.append(f"| {row['ratio']} | " + " | ".join(f"{row[k]:.2f}" for k in METRIC_KEYS)
                     + f" | {row['top1_images']} | {row['top1_hub_share']:.1f} | {_or_dash(row['query_mean_cosine'], '.3f')} |")
    if result.get("mask_seed") is not None:
        lines += ["", f"query masks drawn with seed {result['mask_seed']}"]
    if result.get("figure"):
        lines += ["", f"figure: {result['figure']}"]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines)


#: images per query in the ``show`` figure when ``top_k`` is not given, and the figure's path
DEFAULT_TOP_K, DEFAULT_FIGURE = 5, "retrieval.png"


def check_figure_path(figure: Path, name: str = "figure=") -> None:
    """The retrieval figure can be written at ``figure`` (checked before the evaluation):
    not a directory, no file on the way, and a file can be created in its folder (or in the
    nearest existing folder above, where missing folders are created). ``name`` prefixes
    the path in the message (``"--figure "`` on the command line). Its suffix names a
    format the figure can be written in (:func:`wsreid.showcase.figure_format`)."""
    import errno

    from wsreid.fileio import cannot_create_in, nearest_existing
    from wsreid.showcase import figure_format

    if figure.is_dir():
        raise UserError(f"{name}{figure} is a directory", hint="name the image file, e.g. retrieval.png")
    figure_format(figure, name)
    folder = nearest_existing(figure)  # missing folders are created; a file on the way is not a folder
    if not folder.is_dir():
        raise UserError(f"{name}{figure}: {folder} is a file", hint="name another path")
    exc = cannot_create_in(folder, figure.name)  # no permission, a read-only or special file system (/proc)
    if exc is not None:
        why = "it takes no new files" if exc.errno == errno.ENOENT else exc.strerror or str(exc)  # /proc
        raise UserError(f"{name}{figure}: cannot write in {folder}: {why}",
                        hint="name a path in a folder you can write to") from None


#: the splits a model can be evaluated on
EVAL_SPLITS = ("val", "test")


@callers_random_state_kept()
def evaluate_target(loaded, target: EvalTarget | str | os.PathLike[str], *, split: str = "test",
                    ratios: Iterable[float] = (), mask_seed: int = 0, show: int = 0, top_k: int | None = None,
                    figure: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Evaluate ``target`` with the loaded recipe (its data block possibly another
    recipe's: cross-dataset, ``load_recipe(..., data_recipe=...)``) -> the result printed by
    ``wsreid eval``: the metrics at the top level, diagnostics, ``query_mask`` rows for each
    of ``ratios`` (:mod:`wsreid.query_masking`) and, with ``show``, a retrieval figure.

    ``target``: an :class:`EvalTarget` (:func:`resolve_target`), or a run directory,
    checkpoint directory or ``.safetensors`` file. The arguments are checked before
    anything is built (:class:`~wsreid.errors.UserError`; ``TypeError`` for a ``loaded``
    that is not a runnable :class:`~wsreid.recipe.LoadedRecipe`)."""
    import torch

    from wsreid.engine.session import check_runnable
    from wsreid.query_masking import check_mask_ratio

    check_runnable(loaded, "evaluate_target")
    if not isinstance(target, EvalTarget):
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError(f"evaluate_target: target is an EvalTarget, a run directory or a checkpoint path, "
                            f"got a {type(target).__name__}")
        target = resolve_target(os.fspath(target), None, False)
    if split not in EVAL_SPLITS:
        raise UserError(f"split={split!r} is not a split to evaluate on", hint="use 'test' or 'val'")
    if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Iterable):
        raise TypeError(f"evaluate_target: ratios takes a list of numbers, got {ratios!r}: write [{ratios!r}]")
    ratios = [check_mask_ratio(r, "ratios") for r in ratios]
    if not show and (top_k is not None or figure is not None):  # they only shape the figure
        given = ", ".join(f"{name}={value!r}" for name, value in (("top_k", top_k), ("figure", figure))
                          if value is not None)
        raise UserError(f"{given}: the figure is drawn only with show=N",
                        hint="pass show=N (the number of queries to draw), or leave them out")
    top_k = DEFAULT_TOP_K if top_k is None else top_k
    figure = DEFAULT_FIGURE if figure is None else figure
    if (isinstance(show, bool) or not isinstance(show, int) or show < 0 or isinstance(top_k, bool)
            or not isinstance(top_k, int) or top_k < 1):
        raise UserError(f"show={show!r}, top_k={top_k!r}: show needs a whole number >= 0 and top_k one >= 1",
                        hint="e.g. show=8, top_k=5")
    if show:
        check_figure_path(Path(figure))

    from wsreid.distributed import Distributed
    from wsreid.engine.evaluate import extract_image_features, extract_text_features
    from wsreid.evaluation import mean_pairwise_cosine, retrieval_metrics, top1_concentration

    recipe, plugins = loaded.recipe, loaded.plugins
    splits, encoder, device = target_encoder(loaded, target)
    split_name = split
    split = getattr(splits, split_name)
    if split is None:
        raise UserError(f"dataset {splits.name!r} has no {split_name} split", hint="use --split test")
    from wsreid.engine.run import check_evaluable, dataset_counts

    check_evaluable(splits.name, {split_name: dataset_counts(splits)[split_name]})
    dist = Distributed(None)
    dist.device = device
    ev = recipe.eval
    qids, gids = torch.tensor(split.caption_person_ids), torch.tensor(split.image_person_ids)
    query_warnings = getattr(encoder, "caption_warnings", None)  # optional (EncoderComponent), as the CLIP encoder's
    if query_warnings is not None:
        with encoder_calls(plugins, recipe, f"caption_warnings() of the {split_name} queries"):
            lines = query_warnings(list(split.captions), f"the {split_name} queries")
        for line in lines:
            print(f"warning: {line}", file=sys.stderr, flush=True)
    with encoder_calls(plugins, recipe, f"encoding the {split_name} split"):
        image = extract_image_features(encoder, split.image_paths, ev.batch_size, dist, recipe.train.num_workers)
        text = extract_text_features(encoder, split.captions, ev.batch_size, dist)
    weakly, note = supervision(recipe, plugins, target.weights is None)

    def scored(queries):
        """Metrics and diagnostics of N x d query features against the gallery."""
        similarity = (queries @ image.T).cpu()
        return {**retrieval_metrics(similarity, qids, gids, chunk_size=ev.chunk_size),
                **top1_concentration(similarity), "query_mean_cosine": mean_pairwise_cosine(queries)}

    result: dict[str, Any] = {
        "split": split_name,
        "dataset": splits.name,
        "data": recipe.data.model_dump(mode="json"),
        "weights": (str(target.weights) if target.weights is not None
                    else f"initial encoder of init {recipe.init.recipe or recipe.init.run} (zero-shot)"
                    if recipe.init is not None else "encoder as loaded (zero-shot)"),
        "queries": len(split.captions),
        "gallery": len(split.image_paths),
        **scored(text),
        "weakly_supervised": weakly,
    }
    changed = data_changes(loaded)
    if changed:
        result["data_from"] = changed
    if note:
        result["note"] = note
    if ratios:
        result["query_mask"] = []
        for ratio in ratios:
            with encoder_calls(plugins, recipe, f"encoding the masked queries (ratio {ratio:g})"):
                masked = masked_text_features(encoder, split.captions, ratio, mask_seed, ev.batch_size, device)
            result["query_mask"].append({"ratio": ratio, **scored(masked)})
        result["mask_seed"] = mask_seed
    if show:
        from wsreid.showcase import write_retrieval_figure

        result["figure"] = str(write_retrieval_figure(figure, text, image, split, show, top_k))
        result["figure_size"] = {"queries": min(show, len(split.captions)),
                                 "images_per_query": min(top_k, len(split.image_paths))}
    return result
