"""Collectives for engine and plugins: gather (with dataset indices), gather with
gradient, broadcast. On one process every helper is the identity.

All collectives must be called on every process (never under ``if is_main_process``).

Also which process of a launch prints the line of a stop (:func:`stop_line_here`): one
stop, one line, though torchrun passes its stop signal to every process.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as torch_dist

from wsreid.errors import UserError
from wsreid.launcher import launch_from_env

T = TypeVar("T")

#: seconds a process other than the main one of a torchrun launch waits, once stopped, for
#: the main process to record that it prints the stop's line (:func:`stop_line_here`);
#: torchrun waits 30 s for its processes to end after passing its stop signal to them
MAIN_STOP_WAIT_S = 5.0

#: the key of the launcher's store under which the main process records that it prints
#: the stop's line (followed by the launch's run id and restart count)
_STOP_LINE_KEY = "wsreid/stop-line"


#: seconds a process of a multi-process launch waits for the others to join before it says
#: what it waits for (:func:`join_process_group`; under torchrun they start together)
JOIN_LINE_S = 10.0


def join_process_group(start: Callable[[], T], *, stoppable: bool) -> T:
    """``start()`` - the accelerator's process-group rendezvous and the first barrier -
    with a line on stderr when the other processes of the launch have not joined within
    :data:`JOIN_LINE_S` seconds: where it waits, and, when no torchrun started this process,
    that ``WORLD_SIZE`` / ``RANK`` / ``MASTER_ADDR`` left in the shell make a lone command
    wait for processes that never come. torch's rendezvous waits in C++ for up to 30 minutes,
    and a stop signal is acted on only once it returns; with ``stoppable`` it runs in a
    helper thread and this one waits, so Ctrl-C, SIGTERM or SIGHUP stop the command there
    as anywhere else (:mod:`wsreid.engine.signals`). Only where the rendezvous sets no
    thread's state (the CPU's gloo, not a GPU's current device). One process: ``start()``."""
    launch = launch_from_env()
    if launch.world_size <= 1:
        return start()
    said = threading.Event()

    def say_waiting() -> None:
        address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        line = (f"waiting for the other processes of this {launch.world_size}-process launch to join at {address} "
                f"(this is rank {launch.rank})")
        if not os.environ.get("TORCHELASTIC_RUN_ID"):  # not started by torchrun: the variables may be left over
            line += (": WORLD_SIZE, RANK and MASTER_ADDR come from the environment; if no multi-process launch was "
                     "meant they were left in the shell (unset them: env -u WORLD_SIZE -u RANK -u MASTER_ADDR "
                     "wsreid ...)")
        line += "; Ctrl-C stops" if stoppable else "; a stop signal takes effect once they have joined"
        print(f"note: {line}", file=sys.stderr, flush=True)
        said.set()

    if not stoppable:
        timer = threading.Timer(JOIN_LINE_S, say_waiting)
        timer.daemon = True
        timer.start()
        try:
            return start()
        finally:
            timer.cancel()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run_start() -> None:
        try:
            outcome["value"] = start()
        except BaseException as exc:  # raised again in the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    # a daemon: if a stop ends the command while torch still waits, the process may exit
    threading.Thread(target=run_start, name="wsreid-join", daemon=True).start()
    deadline = time.monotonic() + JOIN_LINE_S
    while not done.wait(0.2):  # stop signals are handled between the waits
        if not said.is_set() and time.monotonic() >= deadline:
            say_waiting()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


_LEFT_PROCESS_GROUP = False


def left_process_group() -> bool:
    """True once this process has left a multi-process group via :meth:`Distributed.shutdown`.

    Gloo's worker threads can still be torn down during interpreter finalization; a thread
    that then needs the GIL ends the process with ``terminate called without an active
    exception`` (SIGABRT) although the run finished. The console entry therefore ends such
    a process with ``os._exit`` after flushing its output."""
    return _LEFT_PROCESS_GROUP


class Distributed:
    """Process-group facts and collectives. ``world_size``/``rank`` come from the
    Accelerator; every method also works without one (single process)."""

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self.world_size = accelerator.num_processes if accelerator is not None else 1
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.device = accelerator.device if accelerator is not None else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this is the first process (the one that writes files)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether a process group of more than one process is running."""
        return self.world_size > 1 and torch_dist.is_available() and torch_dist.is_initialized()

    def barrier(self) -> None:
        """Wait for every process (no-op on one)."""
        if self.active:
            torch_dist.barrier()

    def shutdown(self) -> None:
        """Leave the process group cleanly (gloo may abort at interpreter exit otherwise).

        Call it after every object that holds the group (the DDP-wrapped model) is
        released; :func:`left_process_group` then tells the command-line entry to end the
        process without interpreter finalization."""
        global _LEFT_PROCESS_GROUP
        if self.active:
            torch_dist.barrier()
            torch_dist.destroy_process_group()
            _LEFT_PROCESS_GROUP = True

    def gather(self, tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
        """Concatenate ``tensor`` (n_r x ...) from every rank in rank order, sizes may
        differ between ranks. No gradient. ``sizes``: the ranks' row counts when known
        (:meth:`shard_sizes`), saving one collective."""
        tensor = tensor.detach()
        if not self.active:
            return tensor
        return torch.cat(self._shards(tensor, sizes))

    def shard_sizes(self, n: int, device: torch.device | None = None) -> list[int]:
        """Every rank's ``n`` (rows of its shard), in rank order; ``[n]`` on one process."""
        if not self.active:
            return [n]
        mine = torch.tensor([n], device=device or self.device, dtype=torch.long)
        sizes = [torch.zeros_like(mine) for _ in range(self.world_size)]
        torch_dist.all_gather(sizes, mine)
        return [int(s.item()) for s in sizes]

    def gather_with_grad(self, tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
        """Like :meth:`gather` (shards in rank order, sizes may differ: the last partial
        batch), but the local shard keeps its gradient (other ranks' shards are constants
        here; their gradients flow on their own ranks). Summing a loss over the gathered
        batch on every rank and averaging gradients over ranks (DDP) then equals the
        single-process gradient."""
        if not self.active:
            return tensor
        shards = self._shards(tensor.detach(), sizes)
        shards[self.rank] = tensor
        return torch.cat(shards)

    def _shards(self, tensor: torch.Tensor, sizes: list[int] | None) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (no gradient), in rank order: padded to the longest
        shard for one all-gather, then cut back to each rank's size."""
        sizes = self.shard_sizes(tensor.shape[0], tensor.device) if sizes is None else list(sizes)
        if sizes[self.rank] != tensor.shape[0]:
            raise ValueError(f"gather: this rank holds {tensor.shape[0]} rows, sizes say {sizes[self.rank]}")
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, padded.contiguous())
        return [p[:s] for p, s in zip(parts, sizes)]

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """``tensor`` of process ``src`` on every process (in place)."""
        if self.active:
            torch_dist.broadcast(tensor, src)
        return tensor

    def sum(self, value: float) -> float:
        """The sum of ``value`` over processes."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t)
        return float(t.item())


#: what gloo and NCCL say when the process at the other end of a collective has ended
#: (not a timeout: a slow process is no ended one, and every process would blame another)
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing", "Broken pipe")


def peer_process_lost(exc: BaseException | None) -> bool:
    """Whether ``exc`` - or an exception it was raised from, such as the one a
    component's one-line error wraps - is a collective that failed because another process
    of the launch ended (its own error, a kill by the out-of-memory killer, Ctrl-C to it
    alone): then this process has nothing of its own to report."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in _PEER_LOST):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def check_launch(accelerator) -> None:
    """Fail clearly when the launcher and the process group disagree (e.g. torchrun
    started two processes that each think they are alone)."""
    env_world = launch_from_env(strict=True).world_size
    cpu_launch = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if cpu_launch and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        # `accelerate launch --cpu --num_processes N` (N > 1) runs the script once, unsharded.
        raise UserError(
            "`accelerate launch --cpu --num_processes N` starts a single process on CPU, not N",
            hint="use `torchrun --nproc_per_node N -m wsreid run ...` for a multi-process CPU run; "
            "see docs/distributed.md",
        )
    if env_world != accelerator.num_processes:
        raise UserError(
            f"launcher started {env_world} processes but this one sees a world of {accelerator.num_processes}",
            hint="on CPU use `torchrun --nproc_per_node N -m wsreid run ...` (wsreid selects the gloo backend); "
            "see docs/distributed.md",
        )


def prints_stop_line(rank: int, main_printed: bool | None) -> bool:
    """Whether the process of ``rank`` prints the line of a stop: the main process (rank 0)
    always; another one only when the main process could not have printed it: when the
    main process did not record, within :data:`MAIN_STOP_WAIT_S` seconds, that it prints it
    (``main_printed`` False: the signal reached this process alone, as with ``kill`` of its
    process id, or the main process could not act on it, held in a collective that waits
    for this one), and when it cannot be asked (None: no launcher store). So a stop that
    reached every process prints one line, and no stop is left without one."""
    return rank == 0 or main_printed is not True


def stop_line_here() -> bool:
    """Whether this process prints the line of the stop it received
    (:func:`prints_stop_line`). One process (``WORLD_SIZE`` unset or 1): yes, at once.
    Under torchrun (which serves its processes a store at ``MASTER_ADDR:MASTER_PORT`` for
    as long as the launch runs, ``TORCHELASTIC_USE_AGENT_STORE=True``) the main process
    records there that it prints it, and another process waits for that record at most
    :data:`MAIN_STOP_WAIT_S` seconds. Under another launcher no process can know what the
    main one did: each prints its line. Never raises."""
    launch = launch_from_env()
    rank, world_size = launch.rank, launch.world_size
    if world_size <= 1:
        return True
    store = _launcher_store()
    key = _stop_line_key()
    if rank == 0:
        _record(store, key, "1")
        return True
    return prints_stop_line(rank, _main_printed(store, key))


def _record(store, key: str, value: str) -> None:
    """The main process's record of what it prints (``value`` under ``key``) in the
    launcher's ``store``, for the other processes; nothing when there is no store or the
    launcher is gone (nobody to tell)."""
    if store is not None:
        try:
            store.set(key, value)
        except Exception:
            pass


def _launch_id() -> str:
    """'<torchrun's run id>/<restart count>': keys of one launch, apart from a restart's."""
    return f"{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _stop_line_key() -> str:
    return f"{_STOP_LINE_KEY}/{_launch_id()}"


def _launcher_store():
    """A client of torchrun's store, or None: another launcher (whose store, if any, lives
    in the main process and may be gone already), or a store that cannot be reached."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from datetime import timedelta

    try:
        return torch_dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                   wait_for_workers=False, timeout=timedelta(seconds=MAIN_STOP_WAIT_S))
    except Exception:
        return None


def _main_printed(store, key: str) -> bool | None:
    """Whether the main process recorded ``key`` in ``store`` within
    :data:`MAIN_STOP_WAIT_S` seconds; None when it cannot be asked (no store, the store
    failing, another stop signal while waiting)."""
    if store is None:
        return None
    deadline = time.monotonic() + MAIN_STOP_WAIT_S
    try:
        while True:
            if store.check([key]):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
    except (Exception, KeyboardInterrupt):
        return None


#: the key of the launcher's store under which the main process records the line of the
#: user error it ends with (followed by the launch's run id and restart count)
_ERROR_LINE_KEY = "wsreid/error-line"


def error_line_here(line: str) -> bool:
    """Whether this process prints ``line``, the one line of the user error it ends with.
    One process: yes. Under torchrun the main process records its line in the launcher's
    store and prints it; another process waits at most :data:`MAIN_STOP_WAIT_S` seconds
    for that record and prints its own line only when the main process recorded none or
    another one (an error this process met alone, in its share of the data). So a mistake
    every process meets - a recipe key, a value found wrong by every rank, a one-process
    command under torchrun - is one line for the launch, and no error is left unsaid. Under
    another launcher no process can know what the main one said: each prints. Never raises."""
    launch = launch_from_env()
    if launch.world_size <= 1:
        return True
    store = _launcher_store()
    key = f"{_ERROR_LINE_KEY}/{_launch_id()}"
    if launch.rank == 0:
        _record(store, key, line)
        return True
    if _main_printed(store, key) is not True:
        return True
    try:
        return store.get(key).decode("utf-8", "replace") != line
    except (Exception, KeyboardInterrupt):
        return True


#: the key of the launcher's store under which the main process records how preparing a
#: run directory went (followed by the launch's run id, restart count and the directory:
#: `wsreid ablate` trains several runs, each in its own directory, in one launch)
_RUN_DIR_KEY = "wsreid/run-dir"
#: the value recorded when the run directory is ready
RUN_DIR_READY = "ready"


def run_dir_key(run_dir: str | os.PathLike[str]) -> str:
    """The store key under which the main process records how preparing ``run_dir`` went
    (the same on every process of the launch: the absolute path of the directory)."""
    return f"{_RUN_DIR_KEY}/{_launch_id()}/{os.path.abspath(run_dir)}"


def announce_run_dir(run_dir: str | os.PathLike[str], problem: str | None) -> None:
    """On the main process of a torchrun launch: record in the launcher's store that
    ``run_dir`` is ready (``problem`` None) or that preparing it failed (``problem``: the
    error's line), so the other processes stop at once instead of waiting in the process
    group's rendezvous for a main process that has left (they cannot act on a stop signal
    there, and torchrun kills them after 30 s). Nothing under another launcher or on one
    process (the first barrier of the run stands in). Never raises."""
    launch = launch_from_env()
    if launch.world_size <= 1:
        return
    key = run_dir_key(run_dir)
    store = _launcher_store()
    if store is None:
        return
    try:
        store.set(key, RUN_DIR_READY if problem is None else f"error: {problem}")
    except Exception:  # the launcher is gone: nobody waits
        pass


def wait_for_run_dir(run_dir: str | os.PathLike[str], poll_s: float = 0.05) -> str | None:
    """On another process of a torchrun launch: wait until the main process has recorded
    how preparing ``run_dir`` went (:func:`announce_run_dir`) and return its error
    line, or None when the directory is ready - or when the store cannot be asked (another
    launcher: the run's first barrier waits instead). The wait polls, so a stop signal ends
    it at once."""
    launch = launch_from_env()
    if launch.world_size <= 1:
        return None
    key = run_dir_key(run_dir)
    store = _launcher_store()
    if store is None:
        return None
    try:
        while not store.check([key]):
            time.sleep(poll_s)
        value = store.get(key).decode()
    except Exception:  # the store went away (the launch is ending): the barrier decides
        return None
    return None if value == RUN_DIR_READY else value.removeprefix("error: ")
