"""Joining the process group of a multi-process launch (wsreid/distributed.py
``join_process_group``). With WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT left in the
shell (or a pod whose peer never comes), ``wsreid run`` waited in torch's rendezvous for
30 minutes without a word, deaf to SIGTERM (torch waits in C++), and left a half-made run
directory when it was finally killed. It now says what it waits for after a few seconds,
and on CPU a stop signal ends it at once, as anywhere else in a run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import wsreid.distributed as dist
from wsreid.distributed import join_process_group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_lone_process_of_a_launch_says_what_it_waits_for_and_stops_on_sigterm(make_recipe, tmp_path, rank):
    """Rank 0 waits for workers to connect, rank 1 for a server to connect to: each says so
    (the wait before the line shortened to 1 s here, 10 s as shipped) and SIGTERM stops it
    with the stop's line and status, the run directory it made removed."""
    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE"):
        env.pop(key, None)
    code = ("import sys, wsreid.distributed as d; d.JOIN_LINE_S = 1.0; from wsreid.cli import entry; "
            f"sys.argv = ['wsreid', 'run', {str(recipe)!r}, '--output-dir', {str(run_dir)!r}]; entry()")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line == (f"note: waiting for the other processes of this 2-process launch to join at 127.0.0.1:{port} "
                        f"(this is rank {rank}): WORLD_SIZE, RANK and MASTER_ADDR come from the environment; if no "
                        "multi-process launch was meant they were left in the shell (unset them: env -u WORLD_SIZE "
                        "-u RANK -u MASTER_ADDR wsreid ...); Ctrl-C stops\n")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 143, rest
    finally:
        proc.kill()
    assert time.monotonic() - sent < 30  # (it ignored SIGTERM for torch's 30 minutes)
    # rank 1 named a resume command for the run directory the main process never made
    assert rest == "\nstopped by SIGTERM\n" and not run_dir.exists()


@pytest.fixture
def launch(monkeypatch):
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29500",
                       "TORCHELASTIC_RUN_ID": "job"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(dist, "JOIN_LINE_S", 0.1)


@pytest.mark.usefixtures("launch")
@pytest.mark.parametrize("stoppable", [False, True])
def test_a_slow_join_is_said_once_and_its_result_returned(capsys, stoppable):
    """Started by torchrun, the variables are the launcher's: no word of leftovers. Where
    the wait cannot be stopped (a GPU's device is set by the rendezvous' thread), it says so."""
    assert join_process_group(lambda: time.sleep(0.6) or 7, stoppable=stoppable) == 7
    how = "Ctrl-C stops" if stoppable else "a stop signal takes effect once they have joined"
    assert capsys.readouterr().err == ("note: waiting for the other processes of this 2-process launch to join at "
                                       f"10.0.0.5:29500 (this is rank 1); {how}\n")


@pytest.mark.usefixtures("launch")
def test_a_quick_join_says_nothing_and_an_error_of_it_is_raised_here(capsys):
    assert join_process_group(lambda: "group", stoppable=True) == "group"

    def fails():
        raise ValueError("launcher started 2 processes but this one sees a world of 1")

    with pytest.raises(ValueError, match="sees a world of 1"):
        join_process_group(fails, stoppable=True)
    assert capsys.readouterr().err == ""


def test_one_process_joins_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(dist, "JOIN_LINE_S", 0.0)
    import threading

    assert join_process_group(threading.current_thread, stoppable=True) is threading.current_thread()
