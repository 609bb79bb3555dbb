"""One user error, one line, under a multi-process launch (wsreid/distributed.py
``error_line_here``): every process of a torchrun launch meets a recipe mistake, and each
printed its ``error:`` line (two lines under 2 processes, eight with 8 GPUs), followed by
torchrun's report. The main process now records its line in the launcher's store; another
process prints its own only when the main one recorded none within
:data:`~wsreid.distributed.MAIN_STOP_WAIT_S`, or another line. The command line runs here
as rank 0 and rank 1 of a launch whose store is a real TCPStore served by the test
(the fixture of tests/test_stop_signals_ranks.py); one real torchrun launch closes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wsreid.cli import main

from test_stop_signals_ranks import launcher_store  # noqa: F401 - a fixture

EVAL_LINE = ("error: wsreid eval runs in one process: this one was launched as one of 2 (WORLD_SIZE and MASTER_ADDR "
             "are set), and each would do all of it (run wsreid eval without torchrun (from a job script that exports "
             "the launcher's variables: env -u WORLD_SIZE wsreid eval ...); only wsreid run trains on several "
             "processes)")


def _as_rank(monkeypatch, capsys, rank: int, argv: list[str]) -> str:
    monkeypatch.setenv("RANK", str(rank))
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.usefixtures("launcher_store")
def test_a_line_the_main_process_printed_is_not_printed_again(monkeypatch, capsys, tmp_path):
    assert _as_rank(monkeypatch, capsys, 0, ["eval", str(tmp_path)]) == EVAL_LINE + "\n"
    assert _as_rank(monkeypatch, capsys, 1, ["eval", str(tmp_path)]) == ""  # the same line: said once
    # an error of this process alone (another line than the main one's) is said
    missing = tmp_path / "missing.yaml"
    assert _as_rank(monkeypatch, capsys, 1, ["validate", str(missing)]) == (
        f"error: {missing}: recipe file not found (check the path)\n")


@pytest.mark.usefixtures("launcher_store")
def test_an_error_the_main_process_did_not_record_is_printed_after_the_wait(monkeypatch, capsys, tmp_path):
    import wsreid.distributed as dist

    monkeypatch.setattr(dist, "MAIN_STOP_WAIT_S", 0.3)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # a restart: the first launch's record is not this one's
    assert _as_rank(monkeypatch, capsys, 1, ["eval", str(tmp_path)]) == EVAL_LINE + "\n"


def test_without_a_launcher_store_every_process_prints(monkeypatch, capsys, tmp_path):
    """A launcher other than torchrun (no store to ask): no process can know what the main
    one said, so each says its line rather than none."""
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    assert _as_rank(monkeypatch, capsys, 1, ["eval", str(tmp_path)]) == EVAL_LINE + "\n"


@pytest.mark.parametrize("argv", [["eval", "{tmp}"],
                                  ["run", "{recipes}/baselines/itc.yaml", "-o", "train.lrr=0.1", "--output-dir",
                                   "{tmp}/run"]])
def test_a_torchrun_launch_prints_one_error_line(tmp_path, argv):
    from conftest import RECIPES

    argv = [a.format(tmp=tmp_path, recipes=RECIPES) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29535", "-m", "wsreid", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0] == EVAL_LINE if argv[0] == "eval" else "train.lrr" in errors[0]
    assert "exitcode  : 2" in proc.stderr and not (tmp_path / "run").exists()
