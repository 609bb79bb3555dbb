"""``wsreid eval``: evaluate a run, a checkpoint or (``--zero-shot``) a recipe's encoder.

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

Degraded queries (METHOD.md 5, the paper's supplement): for each ratio r, every test caption
has ``round(r * n)`` of its n word tokens (at least one when r > 0) replaced by the
encoder's mask token; word tokens are attended positions whose id is not in
``encoder.special_token_ids``. Which tokens is a random permutation per caption, seeded by
(``--mask-seed``, caption index), the same permutation for every r: the tokens masked at
0.1 are also masked at 0.3 (nested masks keep the curve free of resampling noise).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsreid.errors import UserError

__all__ = [
    "add_eval_arguments",
    "cmd_eval",
    "parse_ratios",
    "mask_query_tokens",
    "masked_text_features",
    "EvalTarget",
    "resolve_target",
    "evaluation_table",
]

METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")
RECIPE_SUFFIXES = (".yaml", ".yml")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wsreid eval`` (the caller adds --debug/--disable-plugin)."""
    p.add_argument("target", nargs="?",
                   help="run directory, checkpoint directory, model .safetensors, or (with --zero-shot) a recipe")
    p.add_argument("--recipe", help="recipe (default: the run's recipe.yaml)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the recipe, e.g. -o data.root=DIR (repeatable; VALUE is YAML)")
    p.add_argument("--data", metavar="RECIPE",
                   help="cross-dataset evaluation: use the data block of this recipe instead of the run's")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--zero-shot", action="store_true", help="evaluate the encoder as the recipe loads it (no weights)")
    p.add_argument("--query-mask-ratio", metavar="R[,R...]",
                   help="also evaluate with a share R of each query's word tokens masked, e.g. 0.1,0.3,0.5")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the query masks (default 0)")
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="write a PNG with N queries and their top-k images (green frame: same person, red: not)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="images per query in the --show figure (default 5)")
    p.add_argument("--figure", default="retrieval.png", metavar="PNG", help="path of the --show figure")
    p.add_argument("--format", choices=["json", "table"], default="json", help="output format (default json)")


def parse_ratios(text: str | None) -> list[float]:
    """``"0.1,0.3"`` -> [0.1, 0.3]; each ratio in [0, 1). Raises UserError otherwise."""
    if text is None:
        return []
    ratios = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"--query-mask-ratio: {part.strip()!r} is not a number",
                            hint="give comma-separated ratios such as 0.1,0.3,0.5") from None
        if not 0.0 <= value < 1.0:
            raise UserError(f"--query-mask-ratio: {value} is outside [0, 1)", hint="a ratio is a share of word tokens")
        ratios.append(value)
    return ratios


# --------------------------------------------------------------------------- query masking


def _row_generator(seed: int, index: int):
    import torch

    return torch.Generator().manual_seed((seed * 0x9E3779B1 + index * 0x85EBCA77 + 1) % (2**63 - 1))


def mask_query_tokens(input_ids, attention_mask, ratio: float, mask_token_id: int, special_token_ids,
                      row_indices, seed: int = 0):
    """B x L ids -> B x L ids with ``round(ratio * n)`` of each row's n word tokens (at least
    one when ratio > 0) set to ``mask_token_id``. The positions are the first ones of a
    random permutation drawn per row from (``seed``, ``row_indices[b]``)."""
    import torch

    out = input_ids.clone()
    if ratio <= 0.0:
        return out
    special = torch.tensor(sorted(special_token_ids), dtype=input_ids.dtype, device=input_ids.device)
    word = attention_mask.bool() & ~torch.isin(input_ids, special)
    for b, index in enumerate(row_indices):
        positions = word[b].nonzero().flatten()
        n = int(positions.numel())
        if n == 0:
            continue
        k = min(n, max(1, math.floor(ratio * n + 0.5)))
        order = torch.randperm(n, generator=_row_generator(seed, int(index)))
        out[b, positions[order[:k]]] = mask_token_id
    return out


def masked_text_features(encoder, captions: list[str], ratio: float, seed: int, batch_size: int, device):
    """N x d L2-normalised text features of ``captions`` with masked word tokens (see
    :func:`mask_query_tokens`); ratio 0 gives exactly the unmasked features."""
    import torch
    import torch.nn.functional as F

    feats = []
    with torch.no_grad():
        for start in range(0, len(captions), batch_size):
            stop = min(start + batch_size, len(captions))
            ids, mask = encoder.tokenize(captions[start:stop])
            ids = mask_query_tokens(ids, mask, ratio, encoder.mask_token_id, encoder.special_token_ids,
                                    range(start, stop), seed)
            feats.append(F.normalize(encoder.encode_text(ids.to(device), mask.to(device)).float(), dim=-1))
    return torch.cat(feats) if feats else torch.zeros(0, encoder.embed_dim, device=device)


# --------------------------------------------------------------------------- target


@dataclass
class EvalTarget:
    """What to evaluate: the recipe file, the run directory (None: none), the weights file
    (None: the encoder as loaded)."""

    recipe: str
    run_dir: Path | None
    weights: Path | None


def _run_weights(run_dir: Path) -> Path | None:
    from wsreid.engine.checkpoint import latest_checkpoint

    best = run_dir / "checkpoints" / "best" / "model.safetensors"
    if best.exists():
        return best
    last = latest_checkpoint(run_dir)
    return last / "model.safetensors" if last else None


def resolve_target(target: str | None, recipe: str | None, zero_shot: bool) -> EvalTarget:
    """Interpret the command line: a run directory, a checkpoint, or a recipe."""
    if target is None or Path(target).suffix in RECIPE_SUFFIXES:
        if target is not None and recipe is not None:
            raise UserError(f"{target} is a recipe and --recipe names another one", hint="give the recipe once")
        recipe = recipe or target
        if recipe is None:
            raise UserError("wsreid eval: nothing to evaluate",
                            hint="pass a run directory, or --zero-shot --recipe RECIPE")
        if not zero_shot:
            raise UserError(f"{recipe}: a recipe holds no trained weights",
                            hint="pass --zero-shot to evaluate the encoder as loaded, or pass a run directory")
        return EvalTarget(recipe, None, None)
    path = Path(target)
    if path.is_dir() and (path / "recipe.yaml").exists():
        run_dir, weights = path, None
    elif path.is_dir() and (path / "model.safetensors").exists():
        weights = path / "model.safetensors"
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    elif path.suffix == ".safetensors" and path.exists():
        weights, run_dir = path, None
    else:
        raise UserError(f"{target} is neither a run directory nor a checkpoint",
                        hint="pass a run directory (holding recipe.yaml), a checkpoint directory or .safetensors file")
    recipe = recipe or (str(run_dir / "recipe.yaml") if run_dir else None)
    if recipe is None:
        raise UserError(f"{target}: cannot find the recipe of this checkpoint", hint="pass --recipe RECIPE")
    if zero_shot:
        weights = None
    elif weights is None:
        weights = _run_weights(run_dir)
        if weights is None:
            raise UserError(f"{run_dir} holds no checkpoint", hint="train it first, or pass --zero-shot")
    return EvalTarget(recipe, run_dir, weights)


def _supervision(recipe, plugins, zero_shot: bool) -> tuple[bool, str | None]:
    """Whether the evaluated model was trained weakly supervised, and a note when not."""
    sections = [("dataset", "data", recipe.data), ("encoder", "encoder", recipe.encoder)]
    if not zero_shot:
        from wsreid.engine.run import SECTIONS

        for section, kind in SECTIONS.items():
            for label, spec in getattr(recipe, section).items():
                if spec is not None:
                    sections.append((kind, f"{section}.{label}", spec))
    supervised = [where for kind, where, spec in sections
                  if not plugins.registry.get(kind, spec.name, where=where).cls.weakly_supervised]
    if not zero_shot:
        supervised += recipe.train.true_identity_uses()
    if not supervised:
        return True, None
    return False, "NOT weakly supervised: trained with true identity labels via " + ", ".join(supervised)


def _build(recipe, plugins, run_dir: Path | None):
    """Dataset splits and encoder, built as a run builds them (same seed, same order)."""
    import torch
    from accelerate.utils import set_seed

    from wsreid.api import BuildContext
    from wsreid.engine.run import build_component

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    set_seed(recipe.train.seed)
    ctx = BuildContext(run_dir=run_dir, seed=recipe.train.seed, device=device)
    splits = build_component(plugins, "dataset", recipe.data, ctx, "data").load()
    ctx.train_captions = [p.caption for p in splits.train]
    ctx.num_train = len(splits.train)
    encoder = build_component(plugins, "encoder", recipe.encoder, ctx, "encoder")
    return splits, encoder, device


def _or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def evaluation_table(result: dict[str, Any]) -> str:
    """Markdown table of an evaluation result: the unmasked queries ("none"), then one row
    per requested mask ratio. The last three columns are diagnostics, not metrics: the
    distinct images ranked first and the % of queries sent to the commonest of them
    (:func:`wsreid.evaluation.top1_concentration`), and the mean cosine between two
    queries' features (:func:`wsreid.evaluation.mean_pairwise_cosine`)."""
    tag = "" if result.get("weakly_supervised", True) else "  [NOT weakly supervised]"
    lines = [f"{result['dataset']} {result['split']}, weights: {result['weights']}{tag}", "",
             "| query mask ratio | " + " | ".join(METRIC_KEYS) + " | top-1 images | top-1 hub % | query cos |",
             "|---" * (len(METRIC_KEYS) + 4) + "|"]
    rows = [{"ratio": "none", **result}] + [{**r, "ratio": f"{r['ratio']:g}"} for r in result.get("query_mask", [])]
    for row in rows:
        lines.append(f"| {row['ratio']} | " + " | ".join(f"{row[k]:.2f}" for k in METRIC_KEYS)
                     + f" | {row['top1_images']} | {row['top1_hub_share']:.1f} | {_or_dash(row['query_mean_cosine'], '.3f')} |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines)


def cmd_eval(args) -> int:
    """Evaluate and print the metrics (see the module docstring)."""
    import torch

    from wsreid.cli import load
    from wsreid.distributed import Distributed
    from wsreid.engine.checkpoint import load_model_weights
    from wsreid.engine.evaluate import extract_image_features, extract_text_features
    from wsreid.evaluation import mean_pairwise_cosine, retrieval_metrics, top1_concentration

    ratios = parse_ratios(args.query_mask_ratio)
    if args.show < 0 or args.top_k < 1:
        raise UserError("--show N needs N >= 0 and --top-k K needs K >= 1", hint="e.g. --show 8 --top-k 5")
    target = resolve_target(args.target, args.recipe, args.zero_shot)
    loaded, plugins = load(target.recipe, args.override, args.disable_plugin, args.data)
    recipe = loaded.recipe
    init_source = None
    if target.weights is None and recipe.init is not None:
        # zero-shot of a recipe with `init`: the encoder as the run would start - the
        # initial run's tokenizer (found in its directory) and its weights
        from wsreid.engine.init import pretrained_run

        init_source = pretrained_run(recipe.init)
    splits, encoder, device = _build(recipe, plugins, target.run_dir or init_source)
    split = getattr(splits, args.split)
    if split is None:
        raise UserError(f"dataset {splits.name!r} has no {args.split} split", hint="use --split test")
    if target.weights is not None:
        load_model_weights(encoder, target.weights)
    elif init_source is not None:
        from wsreid.engine.init import weights_of

        load_model_weights(encoder, weights_of(init_source, recipe.init.checkpoint))
    encoder.to(device).eval()
    dist = Distributed(None)
    dist.device = device
    ev = recipe.eval
    qids, gids = torch.tensor(split.caption_person_ids), torch.tensor(split.image_person_ids)
    image = extract_image_features(encoder, split.image_paths, ev.batch_size, dist, recipe.train.num_workers)
    text = extract_text_features(encoder, split.captions, ev.batch_size, dist)
    weakly, note = _supervision(recipe, plugins, target.weights is None)

    def scored(queries):
        """Metrics and diagnostics of N x d query features against the gallery."""
        similarity = (queries @ image.T).cpu()
        return {**retrieval_metrics(similarity, qids, gids, chunk_size=ev.chunk_size),
                **top1_concentration(similarity), "query_mean_cosine": mean_pairwise_cosine(queries)}

    result: dict[str, Any] = {
        "split": args.split,
        "dataset": splits.name,
        "data": recipe.data.model_dump(mode="json"),
        "weights": (str(target.weights) if target.weights is not None
                    else f"initial encoder of init {recipe.init.recipe or recipe.init.run} (zero-shot)"
                    if recipe.init is not None else "encoder as loaded (zero-shot)"),
        **scored(text),
        "weakly_supervised": weakly,
    }
    if note:
        result["note"] = note
    if ratios:
        result["query_mask"] = []
        for ratio in ratios:
            masked = masked_text_features(encoder, split.captions, ratio, args.mask_seed, ev.batch_size, device)
            result["query_mask"].append({"ratio": ratio, **scored(masked)})
        result["mask_seed"] = args.mask_seed
    if args.show:
        from wsreid.showcase import write_retrieval_figure

        result["figure"] = str(write_retrieval_figure(args.figure, text, image, split, args.show, args.top_k))
    print(json.dumps(result, indent=1) if args.format == "json" else evaluation_table(result))
    return 0
