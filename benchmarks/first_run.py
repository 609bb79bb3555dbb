"""Wall-clock time of the default run as a newcomer meets it: ``wsreid run RECIPE`` from an
EMPTY cache (synth-pedes generated, the shipped encoder loaded, every epoch, every
evaluation), with its breakdown.

    python benchmarks/first_run.py                                  # recipes/dgia.yaml and the ITC baseline
    python benchmarks/first_run.py --recipe recipes/dgia.yaml --threads 2

Each recipe runs in a fresh process with a fresh ``WSREID_CACHE`` and output directory (both
temporary), one after the other. Printed per recipe: the wall clock of the whole process
(what the user waits for), and its parts - interpreter start and imports, synth-pedes
generation, loading (building the dataset splits and the encoder, checkpoints, curves: the
rest), training epochs (the ``seconds`` column of ``logs/epochs.csv``, data loading
included) and evaluation (validation every ``eval.every`` epochs and the final test). The
load average of the machine before and after is printed too: on a shared machine the
figures are only as good as it is idle. Targets (docs/results.md, "Cost"): DGIA at most
3 minutes, ITC at most 1.5 on 2 CPU cores.

The header says what the runs were measured under: the CPU, torch's threads, the OpenMP
wait policy and the load average. The runs' OpenMP threads wait passively
(``OMP_WAIT_POLICY=PASSIVE`` unless set, passed to each run through its environment), as in
benchmarks/performance.py: on a shared machine spinning worker threads make every small
tensor operation wait for a time slice, which would measure the load, not the code. A run
that fails ends this script with its failure: its ``error: ...`` line and exit status (a
recipe mistake: 2), or, for a crash, the end of its stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # this process and, through the environment, each run's (it imports torch)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = ("recipes/dgia.yaml", "recipes/baselines/itc.yaml")


def child(recipe: str, out_dir: str, timings_path: str, started: float) -> int:
    """Run ``recipe`` in this process with timers around generation and evaluation."""
    import wsreid.data.synth.generate as generate
    from wsreid.cli import main
    from wsreid.engine.run import Run

    spent = {"generation": 0.0, "evaluation": 0.0}
    original_generate, original_evaluate = generate.generate_synth, Run.evaluate

    def timed_generate(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original_generate(*args, **kwargs)
        finally:
            spent["generation"] += time.perf_counter() - t

    def timed_evaluate(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original_evaluate(self, *args, **kwargs)
        finally:
            spent["evaluation"] += time.perf_counter() - t

    generate.generate_synth, Run.evaluate = timed_generate, timed_evaluate
    imports = time.time() - started
    t = time.perf_counter()
    code = main(["run", recipe, "--output-dir", out_dir])
    in_process = time.perf_counter() - t
    if code != 0:  # main printed why (a recipe mistake: its one error line); nothing to time
        return code
    rows = list(csv.DictReader((Path(out_dir) / "logs" / "epochs.csv").open()))
    epochs = sum(float(r["seconds"]) for r in rows)
    metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
    Path(timings_path).write_text(json.dumps({
        "code": code, "imports": imports, "generation": spent["generation"], "evaluation": spent["evaluation"],
        "epochs": epochs, "num_epochs": len(rows),
        "loading": in_process - spent["generation"] - spent["evaluation"] - epochs,
        "test": metrics["test"],
    }))  # fmt: skip
    return code


class RunFailed(Exception):
    """A timed run exited with a failure: ``str(err)`` is what to print (its ``error: ...``
    line, or the end of its stderr), ``code`` its exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def measure(recipe: str, threads: int | None) -> dict:
    """Time ``wsreid run recipe`` in a fresh process (fresh cache and output directory) and
    return its wall clock, parts and test metrics; raises :class:`RunFailed` if it fails."""
    with tempfile.TemporaryDirectory(prefix="wsreid-first-run-") as tmp:
        env = {**os.environ, "WSREID_CACHE": str(Path(tmp) / "cache")}
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        timings = Path(tmp) / "timings.json"
        load_before = os.getloadavg()[0]
        t = time.time()
        proc = subprocess.run([sys.executable, __file__, "--child", recipe, str(Path(tmp) / "run"), str(timings), repr(t)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wall = time.time() - t
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
            if errors:  # a user error: wsreid's one line says what, where and what to do
                raise RunFailed(errors[-1], proc.returncode)
            raise RunFailed(f"{proc.stderr[-2000:].rstrip()}\nerror: {recipe}: the run failed with exit status "
                            f"{proc.returncode} (its stderr above)", proc.returncode)
        out = json.loads(timings.read_text())
        return {"recipe": recipe, "wall": wall, "load_before": load_before, "load_after": os.getloadavg()[0], **out}


def main() -> int:
    from bench_common import argument_parser, machine_line

    from wsreid.cli.common import at_least

    parser = argument_parser(__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", help="recipe to time (repeatable; default: DGIA and ITC)")
    parser.add_argument("--threads", type=at_least(1), default=None,
                        help="OMP/MKL threads of the run (default: torch's choice)")
    parser.add_argument("--child", nargs=4, metavar=("RECIPE", "OUT", "TIMINGS", "STARTED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.child[2], float(args.child[3]))
    import torch  # imported already by the parser; here for the threads a run gets by default

    print(machine_line(args.threads or torch.get_num_threads()), flush=True)
    print("| recipe | wall | imports | generation | loading, other | epochs | evaluation | test R@1 / mAP | load avg before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for recipe in args.recipe or DEFAULT_RECIPES:
        try:
            m = measure(recipe, args.threads)
        except RunFailed as failed:
            print(failed, file=sys.stderr)
            return failed.code
        print(f"| {m['recipe']} | {m['wall']:.1f} s | {m['imports']:.1f} s | {m['generation']:.1f} s | {m['loading']:.1f} s "
              f"| {m['epochs']:.1f} s ({m['num_epochs']} x {m['epochs'] / m['num_epochs']:.1f}) | {m['evaluation']:.1f} s "
              f"| {m['test']['R1']:.2f} / {m['test']['mAP']:.2f} | {m['load_before']:.2f} / {m['load_after']:.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
