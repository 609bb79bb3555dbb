"""The ``wsreid`` command line.

    wsreid run RECIPE [-o key=value ...] [--output-dir DIR] [--resume | --overwrite]
    wsreid eval RUN_DIR_OR_CHECKPOINT [--recipe RECIPE] [--split test|val] [--data RECIPE]
                [--query-mask-ratio R,...] [--show N]      (wsreid.evalcmd)
    wsreid eval --zero-shot --recipe RECIPE
    wsreid ablate STUDY.yaml [-o key=value ...] [--dry-run]  (wsreid.ablate)
    wsreid validate RECIPE [-o key=value ...]
    wsreid schema
    wsreid plugins
    wsreid data synth|check ...
    wsreid convert-weights IN.pt OUT_DIR [--tokenizer BPE_FILE]   (wsreid_clip.convert)

User errors print one line ``error: ...`` and exit with code 2 (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from wsreid.ablate import add_ablate_parser
from wsreid.errors import UserError
from wsreid.evalcmd import add_eval_arguments, cmd_eval

RUN_MARKER = ".wsreid-run"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                   help="do not load this plugin (repeatable; also WSREID_DISABLE_PLUGINS=a,b)")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. -o train.lr=2e-5 (repeatable; VALUE is YAML)")


def load(recipe_path: str, overrides, disabled, data_recipe: str | None = None):
    """Read a recipe, load the plugins it names, validate it. -> (loaded, plugins).

    ``data_recipe``: take the ``data`` block (and the plugins) of that recipe instead;
    ``wsreid eval --data`` evaluates on another dataset this way. Overrides apply last;
    errors cite the file and line each key came from."""
    from wsreid.engine.init import resolve_init_path
    from wsreid.pluginmanager import load_plugins
    from wsreid.recipe import apply_overrides, read_recipe_tree, recipe_plugin_modules, validate_tree

    tree, locations = read_recipe_tree(recipe_path)
    if data_recipe is not None:
        other, other_locations = read_recipe_tree(data_recipe)
        if not isinstance(other.get("data"), dict):
            raise UserError(f"--data {data_recipe}: the recipe has no data block", hint="pass a recipe with 'data:'")
        tree["data"] = other["data"]
        locations.replace_subtree(("data",), other_locations)
        modules = list(dict.fromkeys(recipe_plugin_modules(tree, locations)
                                     + recipe_plugin_modules(other, other_locations)))
        if modules:
            tree["plugins"] = modules
    tree = apply_overrides(tree, overrides, locations)
    plugins = load_plugins(recipe_plugin_modules(tree, locations), disabled=disabled)
    loaded = validate_tree(tree, locations, plugins.registry, Path(recipe_path))
    resolve_init_path(loaded)  # relative init paths: against the recipe file that names them
    return loaded, plugins


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Check the output directory; returns True when this call creates it."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other", hint="choose one")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        if not (run_dir / RUN_MARKER).exists():
            raise UserError(f"--resume: {run_dir} holds no wsreid run", hint="check --output-dir / output_dir")
        return False
    if exists:
        if not (run_dir / RUN_MARKER).exists():
            raise UserError(f"output directory {run_dir} exists and is not a wsreid run",
                            hint="choose another --output-dir; wsreid never deletes foreign directories")
        if not overwrite:
            raise UserError(f"output directory {run_dir} already holds a run",
                            hint="pass --resume to continue it or --overwrite to start it again")
        shutil.rmtree(run_dir)
    return True


def cmd_run(args) -> int:
    from wsreid.engine.run import Run, write_run_files
    from wsreid.recipe import dump_resolved_yaml

    loaded, plugins = load(args.recipe, args.override, args.disable_plugin)
    recipe = loaded.recipe
    run_dir = Path(args.output_dir or recipe.output_dir)
    resolved_yaml = dump_resolved_yaml(loaded)
    if args.resume and (run_dir / "recipe.yaml").exists():
        saved = (run_dir / "recipe.yaml").read_text()
        if _strip_output_dir(saved) != _strip_output_dir(resolved_yaml):
            raise UserError(f"--resume: the recipe differs from {run_dir / 'recipe.yaml'}",
                            hint=f"resume with `wsreid run {run_dir / 'recipe.yaml'} --output-dir {run_dir} --resume`")
    # Under a multi-process launcher only the first process prepares the directory; the
    # others wait for it at the first barrier in Run.setup().
    main_process = os.environ.get("RANK", "0") == "0"
    created = _prepare_run_dir(run_dir, args.resume, args.overwrite) if main_process else False
    run = Run(recipe, plugins, run_dir, resolved_yaml=resolved_yaml, resume=args.resume)
    try:
        if main_process:
            write_run_files(run_dir, resolved_yaml, plugins)
        run.setup()
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        metrics = run.train()
    except KeyboardInterrupt:
        from wsreid.engine.checkpoint import latest_checkpoint

        last = latest_checkpoint(run_dir)
        where = f"last complete checkpoint: {last.name}" if last else "no checkpoint was written yet"
        print(f"\ninterrupted; {where}; resume with: wsreid run {run_dir / 'recipe.yaml'} --output-dir {run_dir} "
              "--resume", file=sys.stderr)
        return 130
    run.close()
    if run.dist.is_main:
        test = metrics["test"]
        label = "" if metrics["weakly_supervised"] else "  [NOT weakly supervised]"
        print(f"test ({metrics['selection']}, epoch {metrics['best_epoch']}): "
              + "  ".join(f"{k} {v:.2f}" for k, v in test.items()) + label)
        print(f"run directory: {run_dir}")
    return 0


def _strip_output_dir(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("output_dir:"))


def cmd_validate(args) -> int:
    loaded, plugins = load(args.recipe, args.override, args.disable_plugin)
    r = loaded.recipe
    comps = [f"data={r.data.name}", f"encoder={r.encoder.name}", f"pairs={r.pair_construction.name}"]
    for section in ("local_associations", "global_associations", "objectives"):
        for label, spec in getattr(r, section).items():
            if spec is not None:
                comps.append(f"{label}={spec.name}")
    print(f"{args.recipe}: valid ({', '.join(comps)})")
    return 0


def cmd_schema(args) -> int:
    from wsreid.pluginmanager import load_plugins
    from wsreid.recipe import recipe_json_schema

    plugins = load_plugins(disabled=args.disable_plugin)
    print(json.dumps(recipe_json_schema(plugins.registry), indent=1))
    return 0


def cmd_plugins(args) -> int:
    from wsreid.pluginmanager import load_plugins

    plugins = load_plugins(args.module, disabled=args.disable_plugin)
    for kind in ("dataset", "encoder", "pair_construction", "local_association", "global_association", "objective"):
        entries = list(plugins.registry.entries(kind))
        print(f"{kind}:")
        for e in entries:
            flag = "" if e.cls.weakly_supervised else "  [NOT weakly supervised]"
            print(f"  {e.name:<24} {e.provided_by} ({e.provider}){flag}")
            if e.summary:
                print(f"      {e.summary}")
            for fname, field in e.params_model.model_fields.items():
                default = field.get_default(call_default_factory=True) if not field.is_required() else "<required>"
                print(f"      {fname} = {default!r}")
    for b in plugins.broken:
        print(f"broken: {b.describe()}")
    if plugins.disabled:
        print(f"disabled: {', '.join(sorted(plugins.disabled))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsreid", description="Weakly-supervised text-to-person re-identification")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train a recipe")
    _recipe_args(p)
    p.add_argument("--output-dir", help="run directory (default: the recipe's output_dir)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the run in the output directory")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="evaluate a run, a checkpoint, or (--zero-shot) a recipe's encoder")
    add_eval_arguments(p)
    _common(p)
    p.set_defaults(func=cmd_eval)

    add_ablate_parser(sub, _common)

    p = sub.add_parser("validate", help="check a recipe without running it")
    _recipe_args(p)
    _common(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON schema of recipes")
    _common(p)
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("convert-weights", help="write an OpenAI CLIP checkpoint file as a transformers model folder")
    p.add_argument("source", metavar="IN.pt", help="OpenAI checkpoint (TorchScript archive or state dict)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="new folder for config, safetensors and tokenizer")
    p.add_argument("--tokenizer", metavar="BPE_FILE", help="OpenAI's bpe_simple_vocab_16e6.txt.gz, saved as the tokenizer")
    _common(p)
    # the shipped clip plugin's library function, imported when the command runs
    p.set_defaults(func=lambda args: __import__("wsreid_clip.convert", fromlist=["_"]).cmd_convert_weights(args))

    p = sub.add_parser("plugins", help="list registered components")
    p.add_argument("--module", action="append", default=[], help="also load this plugin module")
    _common(p)
    p.set_defaults(func=cmd_plugins)

    try:
        from wsreid.data.cli import add_data_parser
    except ImportError:  # pragma: no cover
        add_data_parser = None
    if add_data_parser is not None:
        add_data_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("WSREID_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script and ``python -m wsreid`` entry: :func:`main`, then exit.

    A process that took part in a multi-process run has written and closed every file
    when :func:`main` returns; it ends with ``os._exit`` so that gloo's threads are not
    torn down during interpreter finalization (see :func:`wsreid.distributed.left_process_group`)."""
    code = main()
    from wsreid.distributed import left_process_group

    if left_process_group():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
