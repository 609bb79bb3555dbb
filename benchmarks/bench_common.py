"""What the benchmark scripts share: the header line that says which machine, settings and
load their figures were measured under (:func:`machine_line`), and their command-line
parser (an argument mistake is one ``error: ...`` line on stderr and exit status 2, as
with ``wsreid``; whole-number options take ``wsreid.cli.common.at_least``).

A script finds this module on ``sys.path[0]`` (its own folder) when run as
``python benchmarks/<script>.py``. Each script sets ``OMP_WAIT_POLICY`` itself, before it
imports torch: this module imports torch only when a function is called.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name: the first ``model name`` of /proc/cpuinfo, or where there is
    none (not Linux, an ARM kernel) what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_matrix_units() -> str:
    """Whether torch sees AMX tiles and AVX512_BF16, as ``AMX tiles yes|no, AVX512_BF16
    yes|no`` ("unknown" where this torch lacks the probe or it fails): GSRC-FR's own probe
    (``wsreid_dgia.memory.cpu_bf16_matrix_units``), whose answer makes ``scoring_dtype:
    auto`` mine large banks in bfloat16 on a CPU, so it decides which path a mining figure
    measures."""
    from wsreid_dgia.memory import cpu_bf16_matrix_units

    words = {True: "yes", False: "no", None: "unknown"}
    return ", ".join(f"{name} {words[seen]}" for name, seen in cpu_bf16_matrix_units().items())


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages (``os.getloadavg``), or "unknown"."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_line(threads: int | str) -> str:
    """The header line of a benchmark: ``machine: <CPU model>, <n> cpus, torch <version>,
    AMX tiles <yes|no>, AVX512_BF16 <yes|no>, threads <threads>, OMP_WAIT_POLICY=<value>,
    load average <1 5 15 minutes>``."""
    import torch

    return ", ".join([f"machine: {cpu_model()}", f"{os.cpu_count()} cpus", f"torch {torch.__version__}",
                      bf16_matrix_units(), f"threads {threads}",
                      f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
                      f"load average {load_average()}"])


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The command-line parser of a benchmark: ``wsreid``'s (an argument mistake prints
    ``error: <what> (see <script> --help)`` and exits with 2; ``--help`` as argparse's)."""
    from wsreid.cli.common import ArgumentParser

    return ArgumentParser(description=description)
