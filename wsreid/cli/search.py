"""``wsreid search``: find the images that match a description with a trained run.

    wsreid search RUN_DIR "a woman in a red coat with a black bag" --images photos/
    wsreid search RUN_DIR "man, blue jeans" "girl, yellow dress" --images a.jpg b.jpg --top-k 3
    wsreid search RUN_DIR "..." --images photos/ --format json

The work is done by :mod:`wsreid.retrieval` (docs/library.md, "Searching your own images").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from wsreid.cli.common import OVERRIDE_VALUE_HELP, GreedyOptionHint, add_common, add_overrides, path_argument
from wsreid.errors import ExitCode, UserError

#: unreadable image files named one by one; more are counted in one line
SHOWN_UNREADABLE = 5


def add_parsers(sub) -> None:
    """Register ``search``."""
    p = sub.add_parser("search", help="rank your own images for a description, with a trained run")
    p.add_argument("target", type=path_argument, help="run directory, checkpoint directory or model .safetensors "
                                  "(or, with --zero-shot, a recipe)")
    p.add_argument("queries", nargs="+", metavar="DESCRIPTION", help="one or more descriptions (quote each)")
    p.add_argument("--images", type=path_argument, nargs="+", required=True, metavar="PATH",
                   help="image files, or folders searched for images at any depth")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="images listed per description (default 5)")
    p.add_argument("--recipe", type=path_argument, help="recipe (default: the run's recipe.yaml)")
    p.add_argument("--zero-shot", action="store_true", help="use the encoder as the recipe loads it (no weights)")
    add_overrides(p, f"override a key of the recipe ({OVERRIDE_VALUE_HELP})")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    add_common(p)
    p.add_error_hint(GreedyOptionHint("--images", "DESCRIPTION"))  # `--images DIR "a man"`: the description taken as a path
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Print, for each description, its top-K images with their cosine similarity."""
    from PIL import Image

    from wsreid.engine.offline_eval import missing_best_note, unfinished_run_note
    from wsreid.retrieval import image_files, load_encoder, plural

    if args.top_k < 1:
        raise UserError(f"--top-k {args.top_k}: needs K >= 1", hint="e.g. --top-k 5")
    for i, query in enumerate(args.queries, 1):
        if not query.strip():
            raise UserError(f"description {i} is empty", hint='quote each description: "a man in a red jacket"')
    check_images_took_no_description(args.images)
    folders: list[str] = []  # folders below --images that cannot be listed
    links: list[tuple[Path, str]] = []  # symbolic links below --images to nothing
    files = image_files(args.images, folders, skipped=links)  # before the encoder is built: a typo costs nothing
    for line in folders:
        print(f"warning: {line}; searched without the images in it", file=sys.stderr, flush=True)
    encoder = load_encoder(args.target, recipe=args.recipe, zero_shot=args.zero_shot, overrides=args.override,
                           disabled=args.disable_plugin)
    for line in encoder.caption_warnings(args.queries):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        # PIL warns of files between 89 and 179 million pixels (a guard against decompression
        # bombs) and refuses larger ones (load_image says so): the files here are the user's own
        warnings.simplefilter("ignore", category=Image.DecompressionBombWarning)
        # a file that does not decode is left out with a warning, as a photo viewer skips it
        readable, problems = encoder.readable_images(files)
        if not readable:  # one line: the warnings would say what it says
            if len(files) == 1:
                raise UserError(problems[0])
            raise UserError(f"none of the {len(files)} image files can be read as an image; the first: {problems[0]}")
        kept = set(readable)
        skipped = links + list(zip([f for f in files if f not in kept], problems))
        for _, line in skipped[:SHOWN_UNREADABLE]:
            print(f"warning: {line}; searched without it", file=sys.stderr, flush=True)
        if len(skipped) > SHOWN_UNREADABLE:
            more = len(skipped) - SHOWN_UNREADABLE
            print(f"warning: {more} more image {plural(more, 'file')} cannot be read; searched without "
                  f"{'it' if more == 1 else 'them'}", file=sys.stderr, flush=True)
        results = encoder.search(args.queries, readable, top_k=args.top_k)
    for note in (unfinished_run_note(args.target, encoder.target, "searched with"),
                 missing_best_note(args.target, encoder.target, "searched with")):
        if note:  # said once it worked: an error stays one line
            print(note, file=sys.stderr, flush=True)
    if args.format == "json":
        weights = encoder.target.weights if encoder.target is not None else None
        print(json.dumps({
            "images": len(readable),
            "skipped": [{"path": str(path), "problem": line} for path, line in skipped],
            "checkpoint": None if weights is None else str(weights),
            "results": [{"query": q, "hits": [{"rank": h.rank, "score": round(h.score, 6), "path": str(h.path)}
                                              for h in hits]} for q, hits in zip(args.queries, results)],
        }, indent=1))
        return ExitCode.OK
    left_out = f" ({len(skipped)} unreadable {plural(len(skipped), 'file')} left out)" if skipped else ""
    print(f"{len(readable)} {plural(len(readable), 'image')}{left_out}; encoder {encoder.name}")
    for query, hits in zip(args.queries, results):
        print(f"\n{query}")
        for h in hits:
            print(f"  {h.rank:>3}  {h.score:+.3f}  {h.path}")
    return ExitCode.OK


def check_images_took_no_description(images: list[str]) -> None:
    """A :class:`UserError` when an argument of ``--images`` is no file or folder and reads
    as a description (``wsreid search RUN "a man" --images photos/ "a woman"``: the second
    description taken as a path): words with a space, no ``/`` and no image suffix. Said
    as :class:`~wsreid.cli.common.GreedyOptionHint` says it when no description is left."""
    from wsreid.retrieval import IMAGE_SUFFIXES

    strays = [a for a in images if not os.path.lexists(os.path.expanduser(a)) and len(a.split()) > 1
              and "/" not in a and os.sep not in a and not a.lower().endswith(IMAGE_SUFFIXES)]
    if strays:  # a folder with a space in its name that is missing reads the same: say both
        raise UserError(f"--images {', '.join(map(repr, strays))}: no such file or folder; if "
                        f"{'it is a description' if len(strays) == 1 else 'they are descriptions'}: --images takes "
                        "every argument after it",
                        hint="put every DESCRIPTION before --images, or correct the path")
