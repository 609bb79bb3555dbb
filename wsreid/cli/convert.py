"""``wsreid convert-weights``: an OpenAI CLIP checkpoint file -> a transformers model folder.

The work is the shipped clip plugin's library function
:func:`wsreid_clip.convert.convert_openai_checkpoint`, imported when the command runs.
"""

from __future__ import annotations

import argparse
import importlib

from wsreid.cli.common import add_debug, path_argument
from wsreid.errors import ExitCode, UserError


def add_parsers(sub) -> None:
    """Register ``convert-weights``."""
    p = sub.add_parser("convert-weights", help="write an OpenAI CLIP checkpoint file as a transformers model folder")
    p.add_argument("source", metavar="IN.pt", type=path_argument, help="OpenAI checkpoint (TorchScript archive or state dict)")
    p.add_argument("out_dir", metavar="OUT_DIR", type=path_argument, help="new folder for config, safetensors and tokenizer")
    p.add_argument("--tokenizer", metavar="BPE_FILE", type=path_argument,
                   help="OpenAI's bpe_simple_vocab_16e6.txt.gz, saved as the tokenizer")
    add_debug(p, default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_convert_weights)


def cmd_convert_weights(args: argparse.Namespace) -> int:
    """Convert ``args.source`` into ``args.out_dir`` and print the folder."""
    try:
        convert = importlib.import_module("wsreid_clip.convert")
    except ImportError as exc:
        raise UserError(f"convert-weights: the clip plugin (wsreid_clip) cannot be imported: {exc}",
                        hint="install the shipped plugins (the wsreid_clip package)") from exc
    print(convert.convert_openai_checkpoint(args.source, args.out_dir, args.tokenizer))
    return ExitCode.OK
