"""Encoder initialisation from another run (recipe key ``init``): the framework's analogue
of loading a pretrained encoder.

``init.recipe`` names a recipe that is trained once and cached under
``$WSREID_CACHE/init/<recipe name>-<hash>/`` (written into a temporary directory and renamed
when complete, so an interrupted pretraining leaves nothing behind). The hash covers the
recipe as written (``extends`` merged, ``-o`` applied, ``output_dir`` left out) and not the
defaults filled in by validation, so a new option whose default keeps the old behaviour
does not invalidate trained encoders, and the key is the same on every machine;
``init.run`` names an existing run directory. The encoder of the new run gets that run's
tokenizer (copied into ``<run_dir>/tokenizer`` before the encoder is built, where the
``clip`` plugin looks for it) and its weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from wsreid.errors import UserError


def cache_root() -> Path:
    return Path(os.environ.get("WSREID_CACHE") or Path.home() / ".cache" / "wsreid")


def cache_key(tree) -> str:
    """12 hex digits identifying a recipe as written (the merged tree before defaults are
    filled in), without its ``output_dir``."""
    written = {k: v for k, v in dict(tree).items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(written, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolve_init_path(loaded) -> None:
    """Make ``init.recipe`` / ``init.run`` absolute, relative to the file that names them
    (to the working directory for ``-o`` overrides), in the recipe and its resolved tree."""
    init = loaded.recipe.init
    if init is None:
        return
    for key in ("recipe", "run"):
        value = getattr(init, key)
        if value is None or Path(value).is_absolute():
            continue
        where = loaded.locations.find(("init", key)) if loaded.locations is not None else None
        base = Path(where.source).parent if where is not None and where.line is not None else Path.cwd()
        absolute = str((base / value).resolve())
        setattr(init, key, absolute)
        loaded.resolved.setdefault("init", {})[key] = absolute


def weights_of(run_dir: Path, checkpoint: str) -> Path:
    from wsreid.engine.checkpoint import latest_checkpoint

    if checkpoint == "best" and (run_dir / "checkpoints" / "best" / "model.safetensors").exists():
        return run_dir / "checkpoints" / "best" / "model.safetensors"
    last = latest_checkpoint(run_dir)
    if last is None:
        raise UserError(f"init: {run_dir} holds no checkpoint", hint="train it first or name another run")
    return last / "model.safetensors"


def pretrained_run(init, *, world_size: int = 1) -> Path:
    """The run directory whose encoder initialises this run (training it first if needed)."""
    if init.run is not None:
        run_dir = Path(init.run)
        if not (run_dir / "recipe.yaml").exists():
            raise UserError(f"init.run: {run_dir} is not a wsreid run directory", hint="name a run directory")
        return run_dir
    from wsreid.cli import load
    from wsreid.recipe import dump_resolved_yaml

    loaded, plugins = load(init.recipe, [], [])
    text = dump_resolved_yaml(loaded)
    key = cache_key(loaded.tree)
    target = cache_root() / "init" / f"{Path(init.recipe).stem}-{key}"
    if (target / "metrics.json").exists():
        return target
    if world_size > 1:
        raise UserError(f"init: the encoder of {init.recipe} is not trained yet",
                        hint=f"train it once in a single process: wsreid run {init.recipe} (it is cached in {target})")
    from wsreid.engine.run import Run, write_run_files

    print(f"init: training the initial encoder once: {init.recipe} -> {target}", file=sys.stderr)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_run_files(tmp, text, plugins)
        run = Run(loaded.recipe, plugins, tmp, resolved_yaml=text)
        run.setup()
        run.train()
        target.parent.mkdir(parents=True, exist_ok=True)
        if (target / "metrics.json").exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def prepare_init(init, run_dir: Path, *, is_main: bool, world_size: int) -> Path | None:
    """Copy the initial run's tokenizer into ``run_dir`` (main process) and return the
    weights file to load after the encoder is built."""
    if init is None:
        return None
    source = pretrained_run(init, world_size=world_size)
    tokenizer = source / "tokenizer"
    if is_main and tokenizer.is_dir() and not (run_dir / "tokenizer").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tokenizer, run_dir / "tokenizer")
    return weights_of(source, init.checkpoint)
