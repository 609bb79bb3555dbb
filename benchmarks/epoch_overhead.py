"""Where an epoch of the embedded default goes: the epoch as ``wsreid run`` trains it, beside
its parts measured in the same process - the loader alone (decoding, tensors, collation) and
the training steps alone over batches already in memory.

    python benchmarks/epoch_overhead.py                      # recipes/dgia.yaml and the ITC baseline
    python benchmarks/epoch_overhead.py --recipe recipes/dgia.yaml --rounds 3

Each recipe is built as ``wsreid run`` builds it (the shipped encoder, synth-pedes from
``WSREID_CACHE``, generated first if missing). Then, ``--rounds`` times in turn: one pass of
the training loader (data loading alone), the steps of one epoch replayed on the batches
of that pass kept in memory (``Run.train_step``, no loading), and one epoch of
``Run.train_epoch`` (the ``seconds`` of logs/epochs.csv). Per-epoch overhead = epoch -
steps alone; the loader's share of it is printed beside. Medians over the rounds. The
steps and epochs run at epoch 2 and later (every objective active; the first round of
steps fills the memory banks at epoch 1 and is not counted). Training numerics are not
compared here (tests do that); this measures time only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = ("recipes/dgia.yaml", "recipes/baselines/itc.yaml")


def build(recipe: str, workdir: Path):
    from wsreid.engine.run import Run
    from wsreid.engine.session import init_weights
    from wsreid.recipe import dump_resolved_yaml, load_recipe

    loaded = load_recipe(str(REPO / recipe), [])
    weights = init_weights(loaded.recipe.init, workdir)
    run = Run(loaded.recipe, loaded.plugins, workdir, resolved_yaml=dump_resolved_yaml(loaded), init_weights=weights)
    run.setup()
    return run


def measure(recipe: str, rounds: int) -> dict:
    from wsreid.api import StepContext

    with tempfile.TemporaryDirectory(prefix="wsreid-epoch-") as tmp:
        t = time.perf_counter()
        run = build(recipe, Path(tmp))
        setup = time.perf_counter() - t
        loads, steps, epochs, cpu = [], [], [], {"load": [], "steps": [], "epoch": []}
        run.sampler.set_epoch(1)
        batches = [b.to(run.dist.device) for b in run.loader]
        for i, batch in enumerate(batches):  # epoch 1: fills the memory banks (not counted)
            run.train_step(batch, StepContext(1, i, run.recipe.train.epochs, run.dist))
        epoch = 1
        for _ in range(rounds):
            epoch += 1
            run.sampler.set_epoch(epoch)
            t, c = time.perf_counter(), time.process_time()
            batches = [b.to(run.dist.device) for b in run.loader]
            loads.append(time.perf_counter() - t)
            cpu["load"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            for i, batch in enumerate(batches):
                run.train_step(batch, StepContext(epoch, i, run.recipe.train.epochs, run.dist))
            steps.append(time.perf_counter() - t)
            cpu["steps"].append(time.process_time() - c)
            del batches
            epoch += 1
            run.epoch = epoch
            c = time.process_time()
            epochs.append(run.train_epoch(epoch)["seconds"])
            cpu["epoch"].append(time.process_time() - c)
        n = run.sampler.steps_per_epoch()
        run.close()
    return {"recipe": recipe, "setup": setup, "steps_per_epoch": n, "load": statistics.median(loads),
            "steps": statistics.median(steps), "epoch": statistics.median(epochs),
            "cpu": {k: statistics.median(v) for k, v in cpu.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", help="recipe (repeatable; default: DGIA and ITC)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (loader, steps, epoch); medians")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load0:.2f}")
    print("| recipe | epoch | steps alone | per step | overhead (epoch - steps) | loader alone | CPU s: epoch / steps / loader | setup | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for recipe in args.recipe or DEFAULT_RECIPES:
        m = measure(recipe, args.rounds)
        n = m["steps_per_epoch"]
        print(f"| {recipe} | {m['epoch']:.2f} s | {m['steps']:.2f} s ({n} steps) | {1000 * m['steps'] / n:.0f} ms "
              f"| {m['epoch'] - m['steps']:.2f} s | {m['load']:.2f} s | {m['cpu']['epoch']:.2f} / {m['cpu']['steps']:.2f} / {m['cpu']['load']:.2f} | {m['setup']:.1f} s | {os.getloadavg()[0]:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
