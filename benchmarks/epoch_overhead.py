"""Where an epoch of the embedded default goes: the epoch as ``wsreid run`` trains it, beside
its parts measured in the same process - the loader alone (decoding, tensors, collation) and
the training steps alone over batches already in memory.

    python benchmarks/epoch_overhead.py                      # recipes/dgia.yaml and the ITC baseline
    python benchmarks/epoch_overhead.py --recipe recipes/dgia.yaml --rounds 3
    python benchmarks/epoch_overhead.py --steps 20          # the last 20 steps of each epoch (quicker)

Each recipe is built as ``wsreid run`` builds it (the shipped encoder, synth-pedes from
``WSREID_CACHE``, generated first if missing). Then, ``--rounds`` times in turn: one pass of
the training loader (data loading alone), the steps of one epoch replayed on the batches
of that pass kept in memory (``Run.train_step``, no loading), and one epoch of
``Run.train_epoch`` (the ``seconds`` of logs/epochs.csv). Per-epoch overhead = epoch -
steps alone; the loader's share of it is printed beside. Medians over the rounds. The
steps and epochs run at epoch 2 and later (every objective active; the first round of
steps fills the memory banks at epoch 1 and is not counted). Training numerics are not
compared here (tests do that); this measures time only. ``--steps N`` keeps the last N
steps of every epoch (the sampler skips the others), for a quicker estimate on a busy
machine; the printed epoch is then scaled to the full epoch (x steps per epoch / N).
CPU seconds (``time.process_time``, all threads) are printed beside the wall clock: on a
shared machine they move less with the load than the wall clock does.
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


def measure(recipe: str, rounds: int, steps: int | None = None) -> dict:
    from wsreid.api import StepContext

    with tempfile.TemporaryDirectory(prefix="wsreid-epoch-") as tmp:
        t = time.perf_counter()
        run = build(recipe, Path(tmp))
        setup = time.perf_counter() - t
        n = run.sampler.steps_per_epoch()
        kept = min(steps or n, n)
        set_epoch = run.sampler.set_epoch
        run.sampler.set_epoch = lambda epoch, skip=0: set_epoch(epoch, max(skip, n - kept))
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
        run.close()
    full = n / kept  # scale the kept steps to a whole epoch
    return {"recipe": recipe, "setup": setup, "steps_per_epoch": n, "load": full * statistics.median(loads),
            "steps": full * statistics.median(steps), "epoch": full * statistics.median(epochs),
            "cpu": {k: full * statistics.median(v) for k, v in cpu.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", help="recipe (repeatable; default: DGIA and ITC)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (loader, steps, epoch); medians")
    parser.add_argument("--steps", type=int, default=None, help="time only the last STEPS steps of each epoch, "
                        "scaled to the whole epoch (default: all)")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load0:.2f}")
    print("| recipe | epoch | steps alone | per step | overhead (epoch - steps) | loader alone | CPU s: epoch / steps / loader | setup | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for recipe in args.recipe or DEFAULT_RECIPES:
        m = measure(recipe, args.rounds, args.steps)
        n = m["steps_per_epoch"]
        print(f"| {recipe} | {m['epoch']:.2f} s | {m['steps']:.2f} s ({n} steps) | {1000 * m['steps'] / n:.0f} ms "
              f"| {m['epoch'] - m['steps']:.2f} s | {m['load']:.2f} s | {m['cpu']['epoch']:.2f} / {m['cpu']['steps']:.2f} / {m['cpu']['load']:.2f} | {m['setup']:.1f} s | {os.getloadavg()[0]:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
