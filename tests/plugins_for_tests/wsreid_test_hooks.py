"""A lifecycle plugin used by the tests: interrupts a run at the start of an epoch
(simulating Ctrl-C) and records the hook calls it sees, with copies of their arguments:
``("run_start",)``, ``("epoch_start", epoch)``, ``("evaluation", split, epoch, metrics)``,
``("epoch_end", epoch, logs)``, ``("run_end", metrics)``."""

import copy
import os

from wsreid import hookimpl

CALLS: list[tuple] = []


@hookimpl
def wsreid_run_start(run):
    CALLS.append(("run_start",))


@hookimpl
def wsreid_epoch_start(run, epoch):
    CALLS.append(("epoch_start", epoch))
    if os.environ.get("WSREID_TEST_INTERRUPT_AT") == str(epoch):
        raise KeyboardInterrupt


@hookimpl
def wsreid_after_evaluation(run, split, epoch, metrics):
    CALLS.append(("evaluation", split, epoch, dict(metrics)))


@hookimpl
def wsreid_epoch_end(run, epoch, logs):
    CALLS.append(("epoch_end", epoch, dict(logs)))


@hookimpl
def wsreid_run_end(run, metrics):
    CALLS.append(("run_end", copy.deepcopy(metrics)))


@hookimpl
def wsreid_after_step(run, epoch, step, losses):
    """With WSREID_TEST_CHECK_STATE=1: after every step, every process must hold the same
    component state (memory banks, pseudo-labels) - checked with a collective on all ranks."""
    if os.environ.get("WSREID_TEST_CHECK_STATE") != "1":
        return
    import torch

    tensors = run.component_tensors()
    checksum = torch.tensor([float(t.double().sum()) if t.is_floating_point() else float(t.sum())
                             for _, t in sorted(tensors.items())] or [0.0], dtype=torch.float64, device=run.dist.device)
    every_rank = run.dist.gather(checksum.view(1, -1))
    if not torch.equal(every_rank, every_rank[:1].expand_as(every_rank)):
        raise RuntimeError(f"component state differs between processes after step {step}")
    CALLS.append(("state_checked", step, every_rank.shape[0]))
