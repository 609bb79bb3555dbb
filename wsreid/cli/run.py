"""``wsreid run`` and ``wsreid validate``: parse, load the recipe, call the engine, print."""

from __future__ import annotations

import argparse
import sys

from wsreid.cli.common import add_common, add_recipe_args, path_argument, say_stop
from wsreid.errors import ExitCode, UserError


def add_parsers(sub) -> None:
    """Register ``run`` and ``validate``."""
    p = sub.add_parser("run", help="train a recipe")
    add_recipe_args(p)
    p.add_argument("--output-dir", type=path_argument, help="run directory (default: the recipe's output_dir; either, when relative, is "
                                        "relative to the working directory, not to the recipe file)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory")
    p.add_argument("--overwrite", action="store_true", help="delete the run in the output directory, every file in it included (a wsreid run's "
                        "directory only), and train it again")
    add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a recipe without running it")
    add_recipe_args(p)
    p.add_argument("--print", action="store_true", dest="print_resolved",
                   help="print the resolved recipe (extends and -o applied, every default written out: the "
                        "recipe.yaml a run of it records) instead of the summary line")
    add_common(p)
    p.set_defaults(func=cmd_validate)


def run_mode(args: argparse.Namespace):
    """``--resume`` / ``--overwrite`` -> a RunMode."""
    from wsreid.engine.rundir import RunMode

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other", hint="choose one")
    return RunMode.RESUME if args.resume else RunMode.OVERWRITE if args.overwrite else RunMode.NEW


def print_warnings(loaded) -> None:
    """The recipe's schedule warnings (:attr:`wsreid.recipe.LoadedRecipe.warnings`), one
    ``warning:`` line each on stderr; under a multi-process launch only the first process
    prints them."""
    from wsreid.launcher import launch_from_env

    if not launch_from_env().is_main:
        return
    for line in loaded.warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Train the recipe (:func:`wsreid.engine.session.run_recipe`) and print the test
    metrics of the selected epoch. Stopped by Ctrl-C, SIGTERM or SIGHUP: the run's one line
    (where to resume; one for all the processes of a multi-process launch) and 128 + the
    signal's number (130, 143, 129). A run a study started says only what was kept: the
    study's own stop line that follows says to run the study again, which resumes it."""
    from wsreid.engine import signals
    from wsreid.engine.session import RunInterrupted, run_recipe
    from wsreid.recipe import load_recipe

    mode = run_mode(args)
    loaded = load_recipe(args.recipe, args.override, disabled=args.disable_plugin)
    try:  # the warnings once the run directory is accepted: a refusal is then the one line
        result = run_recipe(loaded, args.output_dir, mode, on_prepared=lambda: print_warnings(loaded))
    except RunInterrupted as exc:
        from wsreid import launcher

        say_stop(exc.brief if launcher.started_by_a_study else exc.message)
        return signals.exit_code(exc.signum)
    if result.is_main:
        metrics = result.metrics
        test = metrics["test"]
        label = "" if metrics["weakly_supervised"] else "  [NOT weakly supervised]"
        print(f"test ({metrics['selection']}, epoch {metrics['best_epoch']}): "
              + "  ".join(f"{k} {v:.2f}" for k, v in test.items()) + label)
        print(f"run directory: {result.run_dir}")
    return ExitCode.OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Load and validate the recipe; print its components, or with ``--print`` the resolved
    recipe (and, on stderr, the parts of its schedule that a run never reaches:
    :func:`print_warnings`)."""
    from wsreid.api import KINDS
    from wsreid.engine.components import recipe_identity_readers
    from wsreid.engine.data import image_cache_budget
    from wsreid.engine.run import precision_problem
    from wsreid.recipe import load_recipe

    loaded = load_recipe(args.recipe, args.override, disabled=args.disable_plugin)
    image_cache_budget()  # the environment a run of it reads: a bad WSREID_IMAGE_CACHE_MB is refused as a run refuses it
    print_warnings(loaded)
    precision = precision_problem(loaded.recipe, loaded.locations)
    if precision is not None:  # a warning: the recipe may be meant for another machine
        print(f"warning: {precision}: wsreid run refuses it here (use 'bf16' or 'no' on CPU)",
              file=sys.stderr, flush=True)
    if args.print_resolved:  # as a run records it (its output_dir as the run resolves it: ~ expanded)
        from pathlib import Path

        from wsreid.engine.session import resolved_yaml_for

        print(resolved_yaml_for(loaded, Path(loaded.recipe.output_dir).expanduser()), end="")
        return ExitCode.OK
    r = loaded.recipe
    short = {"pair_construction": "pairs"}
    comps = []
    for kind in KINDS:
        block = getattr(r, kind.section)
        if not kind.labelled:
            comps.append(f"{short.get(kind.section, kind.section)}={block.name}")
            continue
        for label, spec in block.items():
            if spec is not None:
                comps.append(f"{label}={spec.name}")
    readers = recipe_identity_readers(r, loaded.plugins.registry)
    supervised = f" [NOT weakly supervised: true identity labels via {', '.join(readers)}]" if readers else ""
    print(f"{args.recipe}: valid ({', '.join(comps)}){supervised}")
    return ExitCode.OK
