"""How often a finished 2-process gloo job aborts at interpreter exit, by how it ends.

    python benchmarks/gloo_exit.py [--launches 20] [--busy]

Each launch is ``torchrun --nproc_per_node 2`` of a small DDP training (accelerate, CPU,
20 steps, an all_gather per step) that then ends in one of three ways:

- ``plain``: barrier and ``destroy_process_group()`` while the DDP model is still alive
  (what ``wsreid run`` did before);
- ``released``: the DDP model and optimizer are released (``free_memory``, ``gc``) first;
- ``released+os._exit``: as ``released``, then ``os._exit(0)`` (what ``wsreid`` does now).

An abort shows as ``terminate called without an active exception`` and a non-zero exit
status of the launch although every step finished. ``--busy`` keeps one extra CPU core
busy during each launch (the abort is timing-dependent; load makes it likelier). Prints
the number of failed launches per ending.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = '''
import gc, os, sys
import torch
import torch.distributed as dist
from accelerate import Accelerator

ending = sys.argv[1]
accelerator = Accelerator(cpu=True)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
optimizer = torch.optim.AdamW(model.parameters())
model, optimizer = accelerator.prepare(model, optimizer)
for _ in range(20):
    x = torch.randn(16, 64)
    out = model(x)
    parts = [torch.empty(16, 8) for _ in range(accelerator.num_processes)]
    dist.all_gather(parts, out.detach())
    accelerator.backward(out.pow(2).mean())
    optimizer.step()
    optimizer.zero_grad()
if ending != "plain":
    accelerator.free_memory()
    del model, optimizer
    gc.collect()
dist.barrier()
dist.destroy_process_group()
if ending == "released+os._exit":
    sys.stdout.flush()
    os._exit(0)
'''

ENDINGS = ("plain", "released", "released+os._exit")


def launch(script: Path, ending: str, port: int, busy: bool) -> int:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", str(port), str(script), ending],
                              capture_output=True, text=True, env=env, timeout=300)
        return proc.returncode
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--launches", type=int, default=20, help="launches per ending")
    ap.add_argument("--busy", action="store_true", help="keep one extra core busy during each launch")
    ap.add_argument("--port", type=int, default=29561)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(WORKER)
        failed = dict.fromkeys(ENDINGS, 0)
        for i in range(args.launches):  # interleaved, so load changes hit every ending alike
            for ending in ENDINGS:
                failed[ending] += launch(script, ending, args.port, args.busy) != 0
    print(f"{args.launches} launches per ending{' (one extra core busy)' if args.busy else ''}; failed launches:")
    for ending, n in failed.items():
        print(f"  {ending:<20} {n:3d} / {args.launches}")


if __name__ == "__main__":
    main()
