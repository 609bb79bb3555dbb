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


def measure(recipe: str, threads: int | None) -> dict:
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
            raise SystemExit(f"{recipe} failed:\n{proc.stderr[-2000:]}")
        out = json.loads(timings.read_text())
        return {"recipe": recipe, "wall": wall, "load_before": load_before, "load_after": os.getloadavg()[0], **out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", help="recipe to time (repeatable; default: DGIA and ITC)")
    parser.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of the run (default: torch's choice)")
    parser.add_argument("--child", nargs=4, metavar=("RECIPE", "OUT", "TIMINGS", "STARTED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.child[2], float(args.child[3]))
    print("| recipe | wall | imports | generation | loading, other | epochs | evaluation | test R@1 / mAP | load avg before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for recipe in args.recipe or DEFAULT_RECIPES:
        m = measure(recipe, args.threads)
        print(f"| {m['recipe']} | {m['wall']:.1f} s | {m['imports']:.1f} s | {m['generation']:.1f} s | {m['loading']:.1f} s "
              f"| {m['epochs']:.1f} s ({m['num_epochs']} x {m['epochs'] / m['num_epochs']:.1f}) | {m['evaluation']:.1f} s "
              f"| {m['test']['R1']:.2f} / {m['test']['mAP']:.2f} | {m['load_before']:.2f} / {m['load_after']:.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
