"""Encoder initialisation from another run (recipe key ``init``): the framework's analogue
of loading a pretrained encoder. The act of training the initial run lives in
:func:`wsreid.engine.session.initial_run`; this module holds its cache rules.

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
from pathlib import Path


def cache_root() -> Path:
    """``$WSREID_CACHE``, else ``~/.cache/wsreid``."""
    return Path(os.environ.get("WSREID_CACHE") or Path.home() / ".cache" / "wsreid")


def cache_key(tree) -> str:
    """12 hex digits identifying a recipe as written (the merged tree before defaults are
    filled in), without its ``output_dir``."""
    written = {k: v for k, v in dict(tree).items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(written, sort_keys=True, default=str).encode()).hexdigest()[:12]


def init_cache_dir(loaded) -> Path:
    """Where the run of ``init.recipe`` (loaded) is cached:
    ``$WSREID_CACHE/init/<recipe name>-<hash of the recipe as written>``."""
    return cache_root() / "init" / f"{Path(loaded.source).stem}-{cache_key(loaded.tree)}"


def copy_tokenizer(source_run: Path, run_dir: Path) -> None:
    """Copy the tokenizer of the initial run into ``run_dir/tokenizer`` (before the
    encoder is built, where the ``clip`` plugin looks for it), unless one is there."""
    tokenizer = source_run / "tokenizer"
    if tokenizer.is_dir() and not (run_dir / "tokenizer").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tokenizer, run_dir / "tokenizer")
