"""Where an epoch of the embedded default goes: the epoch as ``wsreid run`` trains it, beside
its parts measured in the same process - the loader alone (decoding, tensors, collation) and
the training steps alone over batches already in memory.

    python benchmarks/epoch_overhead.py                      # recipes/dgia.yaml and the ITC baseline
    python benchmarks/epoch_overhead.py --recipe recipes/dgia.yaml --rounds 3
    python benchmarks/epoch_overhead.py --steps 20          # the last 20 steps of each epoch (quicker)
    python benchmarks/epoch_overhead.py --loader-epochs 4   # the loader alone, whole epochs 1-4

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


def build(recipe: str, workdir: Path, overrides: list[str] = ()):
    """The recipe (relative to the repository, or absolute) built as ``wsreid run`` builds
    it, initial weights included; ``overrides``: KEY=VALUE strings."""
    from wsreid.engine.run import Run
    from wsreid.engine.session import init_weights
    from wsreid.recipe import dump_resolved_yaml, load_recipe

    loaded = load_recipe(str(REPO / recipe), list(overrides))
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


def loader_epochs(recipe: str, epochs: int) -> list[tuple[float, float]]:
    """(CPU seconds, wall seconds) of whole passes of the training loader alone, epochs
    1..``epochs`` (the first decodes every image; later ones read what the process kept)."""
    with tempfile.TemporaryDirectory(prefix="wsreid-epoch-") as tmp:
        run = build(recipe, Path(tmp))
        out = []
        for epoch in range(1, epochs + 1):
            run.sampler.set_epoch(epoch)
            c, t = time.process_time(), time.perf_counter()
            for _ in run.loader:
                pass
            out.append((time.process_time() - c, time.perf_counter() - t))
        run.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", help="recipe (repeatable; default: DGIA and ITC)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (loader, steps, epoch); medians")
    parser.add_argument("--steps", type=int, default=None, help="time only the last STEPS steps of each epoch, "
                        "scaled to the whole epoch (default: all)")
    parser.add_argument("--loader-epochs", type=int, default=0, help="instead: time the loader alone over this "
                        "many whole epochs")
    args = parser.parse_args()
    if args.loader_epochs:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
        for recipe in args.recipe or DEFAULT_RECIPES:
            times = loader_epochs(recipe, args.loader_epochs)
            print(f"{recipe}: loader alone, CPU s per epoch " + " / ".join(f"{c:.2f}" for c, _ in times)
                  + "; wall s " + " / ".join(f"{w:.2f}" for _, w in times), flush=True)
        return 0
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
