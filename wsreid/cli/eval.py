"""``wsreid eval``: evaluate a run, a checkpoint or (``--zero-shot``) a recipe's encoder.

    wsreid eval RUN_DIR                              # the run's selected checkpoint
    wsreid eval RUN_DIR --data OTHER_RECIPE          # cross-dataset: OTHER_RECIPE's data block
    wsreid eval RUN_DIR -o data.name=rstpreid -o data.root=DIR      # the same with overrides
    wsreid eval RUN_DIR --query-mask-ratio 0.1,0.3,0.5              # degraded queries
    wsreid eval RUN_DIR --show 8 --figure top5.png                  # a retrieval figure
    wsreid eval --zero-shot --recipe RECIPE          # the encoder as loaded, no run needed

The work is done by :mod:`wsreid.engine.offline_eval` and :mod:`wsreid.query_masking`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from wsreid.cli.common import OVERRIDE_VALUE_HELP, add_common, add_overrides, path_argument
from wsreid.errors import ExitCode, UserError


def add_parsers(sub) -> None:
    """Register ``eval``."""
    p = sub.add_parser("eval", help="evaluate a run, a checkpoint, or (--zero-shot) a recipe's encoder")
    p.add_argument("target", nargs="?", type=path_argument,
                   help="run directory, checkpoint directory, model .safetensors, or (with --zero-shot) a recipe")
    p.add_argument("--recipe", type=path_argument, help="recipe (default: the run's recipe.yaml)")
    add_overrides(p, f"override a key of the recipe, e.g. -o data.root=DIR ({OVERRIDE_VALUE_HELP})")
    p.add_argument("--data", metavar="RECIPE", type=path_argument,
                   help="cross-dataset evaluation: use the data block of this recipe instead of the run's")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="the split whose captions query its images (default test)")
    p.add_argument("--zero-shot", action="store_true", help="evaluate the encoder as the recipe loads it (no weights)")
    p.add_argument("--query-mask-ratio", metavar="R[,R...]",
                   help="also evaluate with a share R of each query's word tokens masked, e.g. 0.1,0.3,0.5")
    p.add_argument("--mask-seed", type=int, default=None, help="seed of the query masks (default 0; needs "
                   "--query-mask-ratio)")
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="write a PNG with N queries and their top-k images (green frame: same person, red: not)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="images per query in the --show figure (default 5)")
    p.add_argument("--figure", type=path_argument, default=None, metavar="PNG",
                   help="path of the --show figure (default retrieval.png; needs --show)")
    p.add_argument("--format", choices=["json", "table"], default="json", help="output format (default json)")
    add_common(p)
    p.add_error_hint(checkpoint_option_hint)
    p.set_defaults(func=cmd_eval)


def checkpoint_option_hint(parser, message: str, argv) -> tuple[str, str] | None:
    """An :meth:`~wsreid.cli.common.ArgumentParser.add_error_hint` hook: ``--checkpoint``
    (or ``--weights``), which eval does not take, names the way it does take a checkpoint."""
    given = message.removeprefix("unrecognized arguments:").split()
    option = next((a.partition("=")[0] for a in given if a.partition("=")[0] in ("--checkpoint", "--weights")), None)
    if not message.startswith("unrecognized arguments:") or option is None:
        return None
    return (f"eval has no {option} option: a checkpoint is the target itself",
            "pass its folder or file in place of the run: wsreid eval RUN/checkpoints/best (or latest, epoch-0003, "
            "a model.safetensors)")


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics (JSON, or a Markdown table)."""
    from wsreid.engine.offline_eval import (DEFAULT_FIGURE, check_figure_path, evaluate_target, evaluation_table,
                                            load_target_recipe, missing_best_note, resolve_target,
                                            unfinished_run_note)
    from wsreid.query_masking import parse_ratios

    ratios = parse_ratios(args.query_mask_ratio)
    if args.show < 0 or (args.top_k is not None and args.top_k < 1):
        raise UserError("--show N needs N >= 0 and --top-k K needs K >= 1", hint="e.g. --show 8 --top-k 5")
    if args.mask_seed is not None and not ratios:  # it only draws the masks
        raise UserError(f"--mask-seed {args.mask_seed}: the queries are masked only with --query-mask-ratio",
                        hint="add --query-mask-ratio R (e.g. 0.5), or leave --mask-seed out")
    for option, value in (("--figure", args.figure), ("--top-k", args.top_k)):  # they only shape the figure
        if value is not None and not args.show:
            raise UserError(f"{option} {value}: the figure is drawn only with --show N",
                            hint=f"add --show N (the number of queries to draw), or leave {option} out")
    if args.show:
        if args.figure is not None and str(args.figure).endswith(("/", os.sep)):  # a Path would drop the slash
            raise UserError(f"--figure {args.figure}: names a folder (it ends with /), not the image file",
                            hint=f"name the file, e.g. --figure {args.figure}{DEFAULT_FIGURE}")
        check_figure_path(Path(args.figure or DEFAULT_FIGURE), "--figure ")
    target = resolve_target(args.target, args.recipe, args.zero_shot)
    loaded = load_target_recipe(target, args.override, args.disable_plugin, data_recipe=args.data)
    result = evaluate_target(loaded, target, split=args.split, ratios=ratios, mask_seed=args.mask_seed or 0,
                             show=args.show, top_k=args.top_k, figure=args.figure)
    for note in (unfinished_run_note(args.target, target), missing_best_note(args.target, target)):
        if note:  # said once it worked: an error stays one line
            print(note, file=sys.stderr, flush=True)
    drawn = result.get("figure_size")
    if drawn and args.top_k is not None and args.top_k > drawn["images_per_query"]:
        print(f"note: --top-k {args.top_k}: the {args.split} gallery holds {result['gallery']} images; the figure "
              f"shows {drawn['images_per_query']} per query", file=sys.stderr, flush=True)
    if drawn and args.show > drawn["queries"]:
        print(f"note: --show {args.show}: the {args.split} split has {result['queries']} queries; the figure shows "
              "each once", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1) if args.format == "json" else evaluation_table(result))
    return ExitCode.OK
