"""One stop, one line, under a multi-process launch (wsreid/distributed.py, docs/reliability.md
"Faults"): torchrun passes its stop signal to every process, and each used to print the
stop line (Ctrl-C on two processes: two lines, the second one's often wrong - "no
checkpoint was written yet" where the main process had just removed the directory).

The main process (rank 0) prints it and records in the launcher's store (torchrun's TCPStore
at MASTER_ADDR:MASTER_PORT) that it did; another process prints it only when the main one
did not record that within :data:`~wsreid.distributed.MAIN_STOP_WAIT_S` (it received no
signal - the signal reached that process alone - or it could not act on it), or when there
is no launcher store to ask. A real torchrun launch stopped at a chosen point is slow and
racy on a loaded machine (which process handles the signal first depends on where each one
is); these tests call the decision directly with values, and run the command line as rank 0
and rank 1 of a launch whose store is a real TCPStore served by the test. One real torchrun
launch is stopped where every process must end up stopped by the launcher's signal."""

from __future__ import annotations

import signal
import socket
from datetime import timedelta

import pytest

from wsreid.cli import main

from test_run_lifecycle_errors import _stub_run
from test_stop_signals import send


@pytest.mark.parametrize("rank, main_printed, prints", [
    (0, True, True),  # the main process always prints
    (0, False, True),
    (0, None, True),
    (1, True, False),  # the main process printed it: the one line
    (3, True, False),
    (1, False, True),  # the main process did not (the signal reached rank 1 alone): rank 1 says it
    (1, None, True),  # no launcher store to ask: say it rather than nothing
])
def test_which_process_prints_the_stop_line(rank, main_printed, prints):
    from wsreid.distributed import prints_stop_line

    assert prints_stop_line(rank, main_printed) is prints


def test_a_non_main_process_waits_a_few_seconds_for_the_main_one():
    from wsreid.distributed import MAIN_STOP_WAIT_S

    assert 1.0 <= MAIN_STOP_WAIT_S <= 10.0  # within torchrun's 30 s between its stop signal and SIGKILL


@pytest.fixture
def launcher_store(monkeypatch):
    """A TCPStore served here, as torchrun's agent serves one to its processes; sets the
    environment torchrun gives a process of a 2-process launch (RANK is the test's)."""
    import torch.distributed as torch_dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = torch_dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                                timeout=timedelta(seconds=10))
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                       "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RUN_ID": "stop-test",
                       "TORCHELASTIC_RESTART_COUNT": "0"}.items():
        monkeypatch.setenv(key, value)
    return store


def _stop_line(run_dir) -> str:
    """The stop line of a 2-process run: the resume command, in one process or as launched."""
    again = f"run {run_dir / 'recipe.yaml'} --output-dir {run_dir} --resume"
    return (f"stopped by SIGTERM; last complete checkpoint: epoch-0001; resume with: wsreid {again} (in one process; "
            f"or launched as before, e.g. torchrun --nproc_per_node 2 -m wsreid {again}: with 1, 2, 4, 8 or 16 "
            "processes)")


def test_a_stop_of_two_processes_prints_one_line(make_recipe, tmp_path, monkeypatch, capsys, launcher_store):
    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=True)
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(recipe)]) == 143
    assert capsys.readouterr().err.strip() == _stop_line(run_dir)
    monkeypatch.setenv("RANK", "1")  # the other process of the same launch, stopped by the same signal
    assert main(["run", str(recipe)]) == 143  # the same command; the exit status is every process's
    assert capsys.readouterr().err == ""


def test_a_stop_the_main_process_did_not_print_is_printed_by_the_process_that_got_it(make_recipe, tmp_path,
                                                                                      monkeypatch, capsys,
                                                                                      launcher_store):
    import time

    import wsreid.distributed

    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    monkeypatch.setattr(wsreid.distributed, "MAIN_STOP_WAIT_S", 0.3, raising=False)
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=True)
    monkeypatch.setenv("RANK", "1")  # rank 1 alone got SIGTERM (kill PID): rank 0 records nothing
    launcher_store.set(wsreid.distributed.run_dir_key(run_dir), wsreid.distributed.RUN_DIR_READY)  # rank 0's start
    started = time.monotonic()
    assert main(["run", str(recipe)]) == 143
    assert capsys.readouterr().err.strip() == _stop_line(run_dir)
    assert time.monotonic() - started >= 0.3


def test_a_stop_outside_a_run_prints_one_line_too(monkeypatch, capsys, launcher_store):
    """The command line's own stop line (here: a stop while the recipe loads)."""
    import wsreid.recipe

    def load(*args, **kwargs):
        send(signal.SIGTERM)

    monkeypatch.setattr(wsreid.recipe, "load_recipe", load)
    monkeypatch.setenv("RANK", "0")
    assert main(["validate", "recipe.yaml"]) == 143
    assert capsys.readouterr().err == "\nstopped by SIGTERM\n"
    monkeypatch.setenv("RANK", "1")
    assert main(["validate", "recipe.yaml"]) == 143
    assert capsys.readouterr().err == ""


def test_without_a_launcher_store_every_process_says_it(monkeypatch, capsys):
    """A launch without torchrun's store (the environment set by hand): no process can
    know whether the main one printed, so none stays silent, and nothing is connected to."""
    import wsreid.recipe

    def load(*args, **kwargs):
        send(signal.SIGTERM)

    monkeypatch.setattr(wsreid.recipe, "load_recipe", load)
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    assert main(["validate", "recipe.yaml"]) == 143
    assert capsys.readouterr().err == "\nstopped by SIGTERM\n"


def test_torchrun_stopped_by_sigterm_prints_one_line(make_recipe, tmp_path):
    """A real 2-process launch whose torchrun gets SIGTERM (as from a scheduler) at the
    start of epoch 2 and passes it to both processes: rank 0 prints the stop line, rank 1
    prints nothing (each printed it before). Rank 0 sends the signal, then waits in Python
    so that it acts on it at once; rank 1 acts on it where it is (in a collective waiting
    for rank 0: once rank 0 has ended), and finds rank 0's record either way."""
    import os
    import subprocess
    import sys
    import textwrap

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "wsreid_test_stop_launcher.py").write_text(textwrap.dedent("""\
        import os
        import signal
        import time

        from wsreid import hookimpl

        @hookimpl
        def wsreid_epoch_start(run, epoch):
            if epoch == 2 and os.environ["RANK"] == "0":
                os.kill(os.getppid(), signal.SIGTERM)  # torchrun, which passes it to both processes
                time.sleep(60)
    """))
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_stop_launcher"], "train": {"epochs": 3}})
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(plugins), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(port), "--log-dir", str(logs), "--redirects", "2", "-m", "wsreid", "run", str(recipe),
                           "--output-dir", str(run_dir)], capture_output=True, text=True, env=env, timeout=300)
    stderr = {int(f.parent.name): f.read_text() for f in logs.rglob("stderr.log")}
    assert sorted(stderr) == [0, 1], proc.stderr[-3000:]
    assert stderr[0].strip().splitlines()[-1] == _stop_line(run_dir), stderr
    assert "stopped by" not in stderr[1] and "Traceback" not in stderr[1], stderr[1][-3000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best", "epoch-0001", "latest"]
    assert not (run_dir / ".wsreid-lock").exists()


def test_the_other_process_ends_with_the_main_ones_run_directory_error_printed_once(make_recipe, tmp_path,
                                                                                    monkeypatch, capsys,
                                                                                    launcher_store):
    """The main process records in torchrun's store why it refused the run directory; the
    other process of the launch reads it instead of joining the process group, and ends
    with the same exit status without a second line (a real launch: tests/test_distributed.py)."""
    recipe = make_recipe("baselines/itc.yaml")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("the user's")
    line = (f"error: output directory {foreign} exists and is not a wsreid run (choose another --output-dir; wsreid "
            "never deletes foreign directories)\n")
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(recipe), "--output-dir", str(foreign)]) == 2
    assert capsys.readouterr().err == line
    monkeypatch.setenv("RANK", "1")
    assert main(["run", str(recipe), "--output-dir", str(foreign)]) == 2
    assert capsys.readouterr().err == ""
