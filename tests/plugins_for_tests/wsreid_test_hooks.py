"""A lifecycle plugin used by the tests: interrupts a run at the start of an epoch
(simulating Ctrl-C) and records the hook calls it sees."""

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
    CALLS.append(("evaluation", split, epoch, round(metrics["R1"], 6)))


@hookimpl
def wsreid_run_end(run, metrics):
    CALLS.append(("run_end",))
