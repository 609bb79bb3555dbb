"""``wsreid data`` commands: ``synth`` (generate synth-pedes and a contact sheet) and
``check`` (validate a dataset, decoding every image, and print its statistics).

:func:`add_data_parser` adds the ``data`` sub-command to an argparse sub-parser set;
each leaf sets ``func(args) -> int`` (exit code). Errors are raised as
:class:`wsreid.errors.DataError` for the caller to print.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wsreid.data.check import check_dataset, format_report, split_statistics
from wsreid.data.readers import FORMATS, detect_format
from wsreid.data.synth import PRESETS, SynthConfig, synth_config, synth_records, write_contact_sheet
from wsreid.data.synth.contact_sheet import check_sheet_path
from wsreid.cli.common import add_debug, path_argument, positive_int
from wsreid.errors import DataError
from wsreid.recipe.yamlio import parse_flow_value

__all__ = ["add_data_parser", "run_synth", "run_check"]


def _path(text: str) -> Path:
    """A path option (:func:`~wsreid.cli.common.path_argument`) as a ``Path``."""
    return Path(path_argument(text))


def add_data_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``data synth`` and ``data check`` to ``subparsers``."""
    data = subparsers.add_parser("data", help="generate synth-pedes or check a dataset", description=__doc__.split("\n\n")[0])
    add_debug(data, default=argparse.SUPPRESS)  # wsreid data --debug check ...
    sub = data.add_subparsers(dest="data_command", metavar="{synth,check}")
    sub.required = True

    synth = sub.add_parser("synth", help="generate synth-pedes (CUHK-PEDES format) and a contact sheet")
    synth.add_argument("--out", type=_path, required=True, help="output directory (must be new or empty; an identical dataset is reused)")
    synth.add_argument("--size", choices=list(PRESETS), default="small", help="preset (default: small)")
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    synth.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help="other generator setting, e.g. caption_noise=0.1 or train_images_per_id=[0.85,0.15] (repeatable)")
    synth.add_argument("--contact-sheet", type=_path, default=None, metavar="PATH", help="contact sheet PNG (default: OUT/contact_sheet.png)")
    synth.add_argument("--no-contact-sheet", action="store_true", help="do not write a contact sheet")
    synth.add_argument("--workers", type=positive_int, default=None,
                       help="rendering processes (same output for any number; default: one per CPU core, at most 8)")
    add_debug(synth, default=argparse.SUPPRESS)
    synth.set_defaults(func=run_synth)

    check = sub.add_parser("check", help="validate a dataset (decodes every image) and print its statistics")
    check.add_argument("root", type=_path, help="dataset directory (annotation file + imgs/)")
    check.add_argument("--format", choices=list(FORMATS), default=None, help="annotation format (default: detected from the file name)")
    check.add_argument("--no-decode", action="store_true", help="only check that images exist")
    check.add_argument("--workers", type=positive_int, default=4, help="decoding threads (default: 4)")
    add_debug(check, default=argparse.SUPPRESS)
    check.set_defaults(func=run_check)


def _synth_config(args: argparse.Namespace) -> SynthConfig:
    values: dict[str, object] = {"size": args.size, "seed": args.seed}
    for item in args.settings:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in SynthConfig.model_fields:
            known = ", ".join(k for k in SynthConfig.model_fields if k not in ("size", "seed"))
            raise DataError(f"--set {item!r}: unknown synth-pedes setting", hint=f"settings are: {known}")
        value = value.strip()
        values[key] = parse_flow_value(value, f"--set {item}") if value.startswith("[") else value
    return synth_config(values)


def run_synth(args: argparse.Namespace) -> int:
    """Generate (or reuse) synth-pedes at ``args.out``; print statistics; write the contact sheet."""
    config = _synth_config(args)
    if args.contact_sheet is not None and not args.no_contact_sheet:
        check_sheet_path(args.contact_sheet)  # before the rendering, which may take minutes
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"  {done}/{total} images", file=sys.stderr, flush=True)

    try:
        fresh = not (args.out / "synth_meta.json").is_file()
    except OSError:  # unreadable: synth_records says so
        fresh = True
    # the annotation file read once: the records give the statistics and the contact sheet
    # (whose images must exist: a reused dataset's damage check has looked them up)
    path, records = synth_records(config, args.out, check_images="none" if args.no_contact_sheet else "exists",
                                  workers=args.workers,
                                  progress=progress, root_setting="--out")
    root = path.parent
    took = time.perf_counter() - start
    print(f"synth-pedes {config.size} (seed {config.seed}) " + (f"generated in {took:.1f} s" if fresh else "already present") + f": {root}")
    for s in split_statistics(records, FORMATS["cuhk-pedes"].splits):
        print(f"  {s.split:<5} {s.ids:>6} ids {s.images:>7} images {s.captions:>7} captions {s.words_per_caption:5.1f} words/caption")
    if not args.no_contact_sheet:
        sheet = write_contact_sheet(root, args.contact_sheet or root / "contact_sheet.png", records=records)
        print(f"contact sheet: {sheet}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Validate the dataset at ``args.root`` and print its statistics (0 when valid)."""
    fmt = args.format or detect_format(args.root)

    on_terminal = sys.stderr.isatty()

    def progress(done: int, total: int, failed: int) -> None:
        # at most ten lines (decode_images), or one line rewritten in place on a terminal
        line = f"  read {done}/{total} images" + (f" ({failed} failed)" if failed else "")
        if on_terminal:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    report = check_dataset(args.root, fmt, decode=not args.no_decode, workers=args.workers, progress=progress)
    print(format_report(report))
    return 0
