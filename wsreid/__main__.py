"""``python -m wsreid`` and the ``wsreid`` console script: start the command line.

The command line's modules import torch (about a second): a Ctrl-C in that second ends
the program with the one line of any other interruption, exit status 130, not with the
traceback of the import it cut short (``--debug`` or ``WSREID_DEBUG=1`` shows it)."""

from __future__ import annotations

import sys


def entry() -> None:
    """Import the command line, then run it (:func:`wsreid.cli.entry`)."""
    try:
        from wsreid.cli import entry as run_command
    except KeyboardInterrupt:
        from wsreid.errors import debug_requested

        if "--debug" in sys.argv[1:] or debug_requested():
            raise
        try:
            print("\ninterrupted while starting; nothing was done", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # the terminal is gone
            pass
        sys.exit(130)
    run_command()


if __name__ == "__main__":
    entry()
