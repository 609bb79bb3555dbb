"""Stopping a command with SIGTERM (a scheduler, ``timeout``), SIGHUP (a closed terminal or
ssh session) or Ctrl-C (wsreid/engine/signals.py, docs/reliability.md "Faults"): the same
one line and run directory as Ctrl-C, exit status 128 + the signal (143, 129, 130); a stop
whose exception Python swallowed (raised inside a finalizer) still stops the run at the
engine's next boundary.
Signals are raised in this process with ``signal.raise_signal``, whose handler runs
before it returns: where the handler raises is deterministic."""

from __future__ import annotations

import signal
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from wsreid.cli import main
from wsreid.engine import signals
from wsreid.errors import DataError, UserError

from test_run_lifecycle_errors import _stub_run

PLUGIN = "wsreid_test_stop_signal"


def send(signum: int, swallowed: bool = False) -> None:
    """Send ``signum`` to this process; ``swallowed``: from inside a weakref finalizer,
    whose exception Python prints as "Exception ignored in ..." and drops. Refuses when
    no stop handler is installed (a SIGTERM would end the test session)."""
    if signal.getsignal(signum) in (signal.SIG_DFL, signal.SIG_IGN):
        raise AssertionError(f"no handler for signal {signum}: the command did not install one")

    class Target:
        pass

    if not swallowed:
        signal.raise_signal(signum)
        return
    target = Target()
    weakref.finalize(target, signal.raise_signal, signum)
    del target  # the finalizer runs here; the handler's exception stays inside it


@pytest.fixture
def stop_plugin(tmp_path, monkeypatch):
    """A recipe plugin that sends a signal at the start of an epoch (``STOP_AT`` =
    (epoch, signal, swallowed)) and records (epoch, step) after every step."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{PLUGIN}.py").write_text(textwrap.dedent("""
        from wsreid import hookimpl

        STOP_AT = None
        STEPS = []
        SEND = None

        @hookimpl
        def wsreid_epoch_start(run, epoch):
            if STOP_AT is not None and STOP_AT[0] == epoch:
                SEND(STOP_AT[1], STOP_AT[2])

        @hookimpl
        def wsreid_after_step(run, epoch, step, losses):
            STEPS.append((epoch, step))
    """))
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    module = importlib.import_module(PLUGIN)
    module.SEND = send
    yield module
    sys.modules.pop(PLUGIN, None)


# --------------------------------------------------------------------------- a real run
@pytest.mark.parametrize("signum, swallowed, code, said", [
    (signal.SIGTERM, False, 143, "stopped by SIGTERM"),  # a silent exit (killed) before
    (signal.SIGINT, True, 130, "interrupted"),  # the run went on to the end before, and exited 0
])
def test_a_stop_in_epoch_2_keeps_epoch_1_and_prints_the_resume_line(make_recipe, tmp_path, capsys, stop_plugin,
                                                                     signum, swallowed, code, said):
    recipe = make_recipe("baselines/itc.yaml", {"plugins": [PLUGIN], "train": {"epochs": 3}})
    run_dir = tmp_path / "cut"
    stop_plugin.STOP_AT = (2, signum, swallowed)
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == (f"{said}; last complete checkpoint: epoch-0001; resume with: wsreid run {run_dir / 'recipe.yaml'} "
                    f"--output-dir {run_dir} --resume")
    assert "Exception ignored" not in err and "Traceback" not in err
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".wsreid-lock").exists()
    epoch_1 = [s for e, s in stop_plugin.STEPS if e == 1]
    # a swallowed stop ends the run after the first step of epoch 2 (the engine's check), a delivered one before it
    assert [s for e, s in stop_plugin.STEPS if e == 2] == ([epoch_1[-1] + 1] if swallowed else [])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best", "epoch-0001", "latest"]
    # the handlers are the process's own again
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signals.received() is None


# --------------------------------------------------------------------------- the session, stubbed
@pytest.mark.parametrize("checkpoint, flag", [(False, "--overwrite"), (True, "--resume")])
def test_sigterm_in_a_run_gives_the_line_ctrl_c_gives_and_exit_143(make_recipe, tmp_path, monkeypatch, capsys,
                                                                    checkpoint, flag):
    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=checkpoint)
    assert main(["run", str(recipe)]) == 143
    err = capsys.readouterr().err.strip()
    assert err.startswith("stopped by SIGTERM; ") and err.endswith(f"--output-dir {run_dir} {flag}"), err
    assert (run_dir / "recipe.yaml").is_file()


@pytest.mark.parametrize("checkpoint, kept", [(False, "no checkpoint was written yet"),
                                              (True, "last complete checkpoint: epoch-0001")])
def test_a_run_a_study_started_says_what_it_kept_not_how_to_resume_it_alone(make_recipe, tmp_path, monkeypatch,
                                                                           capsys, checkpoint, kept):
    """``wsreid run`` started by ``wsreid ablate --subprocess`` or ``-j N`` (the study's
    process id in WSREID_STUDY_PID): its stop line says what it kept; the study's line that
    follows says to run the study again, which resumes or restarts it. Its own ``--resume``
    / ``--overwrite`` command was a second instruction beside the study's."""
    import wsreid.cli
    from wsreid import launcher

    def started_by_a_study():  # as end_with_the_study finds it, without tying this process to another
        launcher.started_by_a_study = True

    monkeypatch.setattr(wsreid.cli, "end_with_the_study", started_by_a_study)
    monkeypatch.setattr(launcher, "started_by_a_study", False)
    recipe = make_recipe("baselines/itc.yaml")
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=checkpoint)
    assert main(["run", str(recipe)]) == 143
    assert capsys.readouterr().err.strip() == f"stopped by SIGTERM; {kept}"


def test_sighup_stops_a_run_as_sigterm_does_with_exit_129(make_recipe, tmp_path, monkeypatch, capsys):
    """A closed terminal or ssh session (SIGHUP) used to kill the run with no line, its lock
    and half-written files left to crash recovery."""
    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    _stub_run(monkeypatch, lambda: send(signal.SIGHUP), checkpoint=True)
    assert main(["run", str(recipe)]) == 129
    assert capsys.readouterr().err.strip() == (f"stopped by SIGHUP; last complete checkpoint: epoch-0001; resume with: "
                                               f"wsreid run {run_dir / 'recipe.yaml'} --output-dir {run_dir} --resume")
    assert not (run_dir / ".wsreid-lock").exists() and not (run_dir / "metrics.json").exists()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL and signals.received() is None


def test_under_nohup_sighup_stays_ignored_and_the_command_goes_on(monkeypatch, capsys):
    """``nohup wsreid run ...`` ignores SIGHUP: the command neither installs its handler
    nor stops when one comes."""
    import wsreid.recipe

    real = wsreid.recipe.load_recipe
    seen = []

    def load_then_hang_up(*args, **kwargs):
        seen.append(signal.getsignal(signal.SIGHUP))
        signal.raise_signal(signal.SIGHUP)  # ignored: nothing happens
        return real(*args, **kwargs)

    monkeypatch.setattr(wsreid.recipe, "load_recipe", load_then_hang_up)
    from conftest import RECIPES

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert main(["validate", str(RECIPES / "baselines" / "itc.yaml")]) == 0
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    captured = capsys.readouterr()
    assert ": valid (" in captured.out and captured.err == ""


class _ClosedTerminal:
    """A stderr whose terminal is gone (after SIGHUP every write fails with EIO)."""

    def write(self, text):
        import errno

        raise OSError(errno.EIO, "Input/output error")

    def flush(self):
        pass


@pytest.mark.parametrize("signum, code", [(signal.SIGHUP, 129), (signal.SIGTERM, 143)])
def test_a_stop_line_the_closed_terminal_cannot_take_still_ends_with_the_stop_s_status(make_recipe, tmp_path,
                                                                                       monkeypatch, signum, code):
    """The print of the stop line used to raise OSError (EIO) once the terminal was gone: a
    traceback and exit status 1 instead of 128 + the signal, which ``wsreid ablate`` counts
    as a failed run."""
    recipe = make_recipe("baselines/itc.yaml")
    _stub_run(monkeypatch, lambda: send(signum), checkpoint=True)
    monkeypatch.setattr(sys, "stderr", _ClosedTerminal())
    assert main(["run", str(recipe)]) == code
    assert not (tmp_path / "run" / ".wsreid-lock").exists()
    assert (tmp_path / "run" / "checkpoints" / "epoch-0001").is_dir()


def test_sigterm_before_the_first_epoch_removes_the_run_directory(make_recipe, tmp_path, monkeypatch, capsys):
    from wsreid.engine.run import Run

    recipe = make_recipe("baselines/itc.yaml")
    monkeypatch.setattr(Run, "setup", lambda self: send(signal.SIGTERM))
    assert main(["run", str(recipe)]) == 143
    assert capsys.readouterr().err == "\nstopped by SIGTERM\n"
    assert not (tmp_path / "run").exists()


def test_a_failure_after_a_swallowed_stop_is_reported_as_the_stop(make_recipe, tmp_path, monkeypatch, capsys):
    """A stop whose exception was swallowed, then another error before the engine's next
    check (a collective whose peer process stopped, a DataLoader worker that ended): the
    run was stopped, and says so, with the resume command."""
    recipe = make_recipe("baselines/itc.yaml")

    def then():
        send(signal.SIGTERM, swallowed=True)
        raise DataError("worker gone")

    _stub_run(monkeypatch, then, checkpoint=True)
    assert main(["run", str(recipe)]) == 143
    err = capsys.readouterr().err
    assert err.strip().startswith("stopped by SIGTERM; last complete checkpoint: epoch-0001; resume with: ")
    assert "worker gone" not in err and "Exception ignored" not in err


def test_a_stop_swallowed_after_the_last_check_is_reported_when_the_command_ends(monkeypatch, capsys):
    import wsreid.recipe

    load = wsreid.recipe.load_recipe

    def load_then_stop(*args, **kwargs):
        loaded = load(*args, **kwargs)
        send(signal.SIGINT, swallowed=True)
        return loaded

    monkeypatch.setattr(wsreid.recipe, "load_recipe", load_then_stop)
    from conftest import RECIPES

    assert main(["validate", str(RECIPES / "baselines" / "itc.yaml")]) == 130
    captured = capsys.readouterr()
    assert ": valid (" in captured.out
    assert captured.err == "\ninterrupted (after the command had finished)\n"


def test_ablate_stopped_by_sigterm_says_so_and_exits_143(monkeypatch, capsys, tmp_path):
    import wsreid.ablate

    def study(*args, **kwargs):
        try:
            send(signal.SIGTERM)
        except KeyboardInterrupt as exc:  # as run_study and ablation_study attach them
            exc.outcomes, exc.total = [], 4
            raise

    monkeypatch.setattr(wsreid.ablate, "ablation_study", study)
    assert main(["ablate", str(tmp_path / "study.yaml")]) == 143
    assert capsys.readouterr().err == "\nstopped by SIGTERM after 0 of 4 runs; run the same command again to go on\n"


def test_the_same_stop_delivered_twice_does_not_cut_the_run_s_stop_handling_short(make_recipe, tmp_path, monkeypatch,
                                                                                   capsys):
    """A terminal's Ctrl-C (a ``kill`` of the process group) reaches a study's child run
    directly and through ``wsreid ablate``, which passes it on: the second delivery, here
    while the run releases its directory's lock, is dropped; the run still prints its
    resume line and leaves no lock (the second exception used to replace both)."""
    import wsreid.engine.session as session

    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    unlock = session.unlock_run_dir

    def unlock_after_a_repeat(path):
        send(signal.SIGTERM)
        unlock(path)

    monkeypatch.setattr(session, "unlock_run_dir", unlock_after_a_repeat)
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=True)
    assert main(["run", str(recipe)]) == 143
    err = capsys.readouterr().err.strip()
    assert err == (f"stopped by SIGTERM; last complete checkpoint: epoch-0001; resume with: wsreid run "
                   f"{run_dir / 'recipe.yaml'} --output-dir {run_dir} --resume")
    assert not (run_dir / ".wsreid-lock").exists()


def test_a_stop_signal_repeated_within_repeat_s_is_dropped_and_a_later_one_raises(monkeypatch):
    with signals.stop_on_signals():
        with pytest.raises(signals.Stopped):
            send(signal.SIGTERM)
        try:
            send(signal.SIGINT)  # within REPEAT_S of the first: the same stop
        except KeyboardInterrupt:  # (not raised on: pytest would take it for the user's Ctrl-C)
            pytest.fail("a stop signal repeated at once raised again")
        assert signals.received() == signal.SIGTERM
        monkeypatch.setattr(signals, "REPEAT_S", 0.0)
        with pytest.raises(signals.Stopped) as caught:
            send(signal.SIGINT)  # a second stop, later: raised, and now the one recorded
        assert caught.value.signum == signal.SIGINT and signals.received() == signal.SIGINT


# --------------------------------------------------------------------------- ablate --subprocess children
def _fake_child(tmp_path, monkeypatch, script: str):
    """``sys.executable`` becomes a shell script (so ``python -m wsreid run ...`` runs
    ``script``, with ``$MARKS`` a folder for its own files)."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\nMARKS={marks}\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    return marks


@pytest.mark.parametrize("script, stop", [
    ("exit 143", signal.SIGTERM),  # wsreid run stopped by SIGTERM: counted as a failed run before
    ("exit 130", signal.SIGINT),
    ("kill -TERM $$", signal.SIGTERM),  # killed by the signal (a negative returncode)
    ("kill -INT $$", signal.SIGINT),
    ("exit 129", signal.SIGHUP),  # wsreid run stopped by SIGHUP: a failed run ("exited with code 129") before
    ("kill -HUP $$", signal.SIGHUP),
])
def test_a_child_run_ended_by_a_stop_signal_stops_the_study_with_that_signal(tmp_path, monkeypatch, script, stop):
    from wsreid.ablate import execute_subprocess

    _fake_child(tmp_path, monkeypatch, script)
    with pytest.raises(KeyboardInterrupt) as caught:  # (any: pytest would take one for the user's Ctrl-C)
        execute_subprocess(["run", "recipe.yaml"])
    assert isinstance(caught.value, signals.Stopped) and caught.value.signum == stop


@pytest.mark.parametrize("script, error, message", [
    ("kill -KILL $$", RuntimeError, "wsreid run was killed by SIGKILL"),  # e.g. out of memory: a failed run
    ("exit 3", RuntimeError, "wsreid run exited with code 3"),
    ("echo 'error: no such file' >&2; exit 2", UserError, "no such file"),
])
def test_a_child_run_that_fails_or_crashes_is_a_failed_run(tmp_path, monkeypatch, script, error, message):
    from wsreid.ablate import execute_subprocess

    _fake_child(tmp_path, monkeypatch, script)
    with pytest.raises(error) as caught:
        execute_subprocess(["run", "recipe.yaml"])
    assert str(caught.value) == message and not isinstance(caught.value, KeyboardInterrupt)
    from wsreid.ablate import _one_line

    assert _one_line(caught.value) == message  # the study's status line: no 'RuntimeError: ' before it


def test_a_run_queued_when_the_study_stops_is_not_announced(tmp_path, monkeypatch):
    """Under -j N every queued run printed 'running -> DIR' as the study stopped, though
    it never started (no directory, no log): its line is now printed as the child starts."""
    from wsreid.ablate import ChildProcesses, execute_subprocess

    _fake_child(tmp_path, monkeypatch, "exit 0")
    announced = []
    assert execute_subprocess(["run", "recipe.yaml"], on_start=lambda: announced.append(1)) is None
    assert announced == [1]
    children = ChildProcesses()
    children.stop(signal.SIGTERM)  # the study stopped; this run was still queued
    with pytest.raises(KeyboardInterrupt) as caught:
        execute_subprocess(["run", "recipe.yaml"], children=children, log_file=tmp_path / "run.log",
                           on_start=lambda: announced.append(2))
    assert isinstance(caught.value, signals.Stopped) and announced == [1] and not (tmp_path / "run.log").exists()


def test_a_child_that_outlasts_child_stop_s_after_the_study_s_stop_is_killed(tmp_path, monkeypatch, capsys):
    import os
    import threading
    import time

    import wsreid.ablate
    from wsreid.ablate import execute_subprocess

    marks = _fake_child(tmp_path, monkeypatch, textwrap.dedent("""\
        trap 'echo > $MARKS/term' TERM
        echo $$ > $MARKS/pid
        while :; do sleep 0.1; done"""))
    monkeypatch.setattr(wsreid.ablate, "CHILD_STOP_S", 0.5)

    def stop_when_it_runs():
        deadline = time.monotonic() + 60
        while not (marks / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # its trap is set
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN):  # never end the test session
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=stop_when_it_runs)
    with signals.stop_on_signals():
        sender.start()
        try:
            with pytest.raises(KeyboardInterrupt) as caught:
                execute_subprocess(["run", "recipe.yaml"])
        finally:
            sender.join()
    assert isinstance(caught.value, signals.Stopped) and caught.value.signum == signal.SIGTERM
    pid = int((marks / "pid").read_text())
    try:
        assert (marks / "term").exists()  # it got the signal, and went on
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:  # never leave it running
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert capsys.readouterr().err == f"wsreid run (process {pid}) did not stop within 0.5 s of SIGTERM; killed it\n"


def test_a_run_the_stopped_study_never_started_leaves_no_log_file(tmp_path, monkeypatch):
    """``-j N`` stopped while a child is being started: the run's log was opened (emptied)
    before the study found it stopped, so a run that never started left an empty log, or
    emptied the log of its previous attempt."""
    from wsreid.ablate import ChildProcesses, execute_subprocess

    marks = _fake_child(tmp_path, monkeypatch, "echo > $MARKS/started")
    children = ChildProcesses()
    children.stop(signal.SIGTERM)  # the study's stop, none running
    logs = tmp_path / "out" / "logs"
    earlier = logs / "a-seed-0.log"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("the previous attempt's output\n")
    for log_file in (earlier, logs / "b-seed-0.log"):
        with pytest.raises(KeyboardInterrupt) as caught:
            execute_subprocess(["run", "recipe.yaml"], log_file=log_file, children=children)
        assert isinstance(caught.value, signals.Stopped) and caught.value.signum == signal.SIGTERM
    assert earlier.read_text() == "the previous attempt's output\n"
    assert sorted(p.name for p in logs.iterdir()) == ["a-seed-0.log"]
    assert not (marks / "started").exists()


def test_a_child_that_cannot_be_started_leaves_no_log_file(tmp_path, monkeypatch):
    from wsreid.ablate import execute_subprocess

    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    log_file = tmp_path / "logs" / "a-seed-0.log"
    with pytest.raises(FileNotFoundError):
        execute_subprocess(["run", "recipe.yaml"], log_file=log_file)
    assert not log_file.exists()


def test_a_child_s_output_is_read_to_its_end_when_the_terminal_is_gone():
    """``--subprocess`` passes a child's stderr on to the study's; once that cannot be
    written (SIGHUP: the terminal closed) the reading used to stop, leaving the child to
    wait on a full pipe (killed after CHILD_STOP_S) and its error lines unread."""
    import io

    from wsreid.ablate import _pass_output

    stream = io.StringIO("progress\nerror: first\n" + "progress\n" * 1000 + "error: last\n")
    errors: list[str] = []
    _pass_output(stream, _ClosedTerminal(), errors)
    assert errors == ["first", "last"] and stream.read() == ""


def _study(make_recipe, tmp_path, variants=("a",)) -> Path:
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 2, "batch_size": 64}})
    study = tmp_path / "study.yaml"
    study.write_text("base: recipe.yaml\nseeds: [0]\nvariants:\n"
                     + "".join(f"  - label: {v}\n    overrides: {{train.lr: {i + 1}.0e-4}}\n" for i, v in enumerate(variants)))
    return study


def test_ablate_subprocess_whose_child_is_stopped_by_sigterm_stops_with_143(make_recipe, tmp_path, monkeypatch,
                                                                           capsys):
    study = _study(make_recipe, tmp_path)
    _fake_child(tmp_path, monkeypatch, "echo 'stopped by SIGTERM; no checkpoint was written yet' >&2; exit 143")
    assert main(["ablate", str(study), "--subprocess", "--output-dir", str(tmp_path / "out")]) == 143
    err = capsys.readouterr().err
    assert err.endswith("stopped by SIGTERM; no checkpoint was written yet\n\n"
                        "stopped by SIGTERM after 0 of 1 runs; run the same command again to go on (it starts a seed 0 "
                        "from the beginning)\n"), err
    assert "FAILED" not in err


@pytest.mark.parametrize("signum, code, to_a_thread", [(signal.SIGTERM, 143, False), (signal.SIGHUP, 129, False),
                                                      (signal.SIGTERM, 143, True)])
def test_a_stop_signal_to_a_parallel_study_alone_stops_its_children_too(make_recipe, tmp_path, monkeypatch, capsys,
                                                                       signum, code, to_a_thread):
    """``--jobs 2``: the study's SIGTERM or SIGHUP (to its process only) is passed on to
    both running children, which end; the study stops with 128 + the signal (it used to
    wait for them to finish; SIGHUP killed the study and left them running). The system may
    give a process's signal to any of its threads (``to_a_thread``: another than the main
    one, on purpose): the main thread, waiting for the runs, was woken only when one ended,
    so the study stopped after its children had finished (a CI run: 20 s, the whole run)."""
    import os
    import threading
    import time

    name = signal.Signals(signum).name

    study = _study(make_recipe, tmp_path, variants=("a", "b"))
    marks = _fake_child(tmp_path, monkeypatch, textwrap.dedent(f"""\
        trap 'echo > $MARKS/term-$$; kill $sleeper; exit {code}' {name[3:]}
        echo > $MARKS/pid-$$
        sleep 20 & sleeper=$!
        wait $sleeper
        echo > $MARKS/finished-$$"""))

    def stop_when_both_run():
        deadline = time.monotonic() + 60
        while len(list(marks.glob("pid-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        if signal.getsignal(signum) not in (signal.SIG_DFL, signal.SIG_IGN):  # never end the test session
            if to_a_thread:
                signal.pthread_kill(threading.get_ident(), signum)  # this thread, not the main one
            else:
                os.kill(os.getpid(), signum)

    sender = threading.Thread(target=stop_when_both_run)
    sender.start()
    started = time.monotonic()
    try:
        status = main(["ablate", str(study), "-j", "2", "--output-dir", str(tmp_path / "out")])
    finally:
        sender.join()
    assert status == code and time.monotonic() - started < 15
    pids = sorted(p.name[len("pid-"):] for p in marks.glob("pid-*"))
    assert len(pids) == 2 and sorted(p.name[len("term-"):] for p in marks.glob("term-*")) == pids
    assert not list(marks.glob("finished-*"))
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    # the line names what running the study again does with each stopped run (these fake children wrote nothing)
    assert capsys.readouterr().err.endswith(
        f"\nstopped by {name} after 0 of 2 runs; run the same command again to go on (it starts a seed 0 from the "
        "beginning; it starts b seed 0 from the beginning)\n")


def test_sigterm_to_wsreid_ablate_subprocess_alone_stops_its_child_run(make_recipe, tmp_path):
    """A real ``wsreid ablate --subprocess`` whose process alone gets SIGTERM (a scheduler)
    while its child ``wsreid run`` trains epoch 2: the child gets the signal, keeps
    epoch-0001, says where to resume and ends before the study exits with 143 (it used to
    train on alone after the study had exited)."""
    import json
    import os
    import subprocess
    import time

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "wsreid_test_slow_epoch_2.py").write_text(textwrap.dedent("""\
        import os
        import time
        from pathlib import Path

        from wsreid import hookimpl

        @hookimpl
        def wsreid_epoch_start(run, epoch):
            if epoch == 2:
                Path(os.environ["WSREID_TEST_MARK"]).write_text(str(os.getpid()))

        @hookimpl
        def wsreid_after_step(run, epoch, step, losses):
            if epoch == 2:
                time.sleep(1.0)
    """))
    make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_slow_epoch_2"], "train": {"epochs": 2}})
    study = tmp_path / "study.yaml"
    study.write_text("base: recipe.yaml\nseeds: [0]\nvariants:\n  - label: itc\n")
    out, mark, log = tmp_path / "out", tmp_path / "child-pid", tmp_path / "stderr.txt"
    run_dir = out / "runs" / "itc" / "seed-0"
    env = dict(os.environ, WSREID_TEST_MARK=str(mark), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(plugins), os.environ.get("PYTHONPATH")])))
    with log.open("w") as err:
        parent = subprocess.Popen([sys.executable, "-m", "wsreid", "ablate", str(study), "--subprocess",
                                   "--output-dir", str(out)], stdout=subprocess.DEVNULL, stderr=err, env=env)
    child = None
    try:
        deadline = time.monotonic() + 300
        while not mark.exists() and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), log.read_text()[-3000:]
        child = int(mark.read_text())
        assert json.loads((run_dir / ".wsreid-lock").read_text())["pid"] == child != parent.pid
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=120) == 143
        with pytest.raises(ProcessLookupError):  # ended (and reaped by the study), not orphaned
            os.kill(child, 0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # one command to go on, the study's: the child says what it kept, not how to resume it alone
    lines = log.read_text().strip().splitlines()
    assert lines[-1] == ("stopped by SIGTERM after 0 of 1 runs; run the same command again to go on (it resumes itc "
                         "seed 0 from its last complete checkpoint)")
    assert "stopped by SIGTERM; last complete checkpoint: epoch-0001" in lines
    assert "resume with" not in log.read_text() and "--resume" not in log.read_text()
    assert "Traceback" not in log.read_text()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best", "epoch-0001", "latest"]
    assert not (run_dir / ".wsreid-lock").exists() and not (run_dir / "metrics.json").exists()


# --------------------------------------------------------------------------- the handlers
def test_handlers_are_installed_only_while_a_command_runs_and_an_ignored_signal_stays_ignored(monkeypatch, capsys):
    import wsreid.recipe

    seen = []
    real = wsreid.recipe.load_recipe

    def load(*args, **kwargs):
        seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
        return real(*args, **kwargs)

    monkeypatch.setattr(wsreid.recipe, "load_recipe", load)
    from conftest import RECIPES

    recipe = str(RECIPES / "baselines" / "itc.yaml")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert main(["validate", recipe]) == 0
    assert seen[-1][0] is seen[-1][1] and seen[-1][0] not in (signal.SIG_DFL, signal.default_int_handler)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup, a background job
    try:
        assert main(["validate", recipe]) == 0
        assert seen[-1][0] is signal.SIG_IGN and seen[-1][1] not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    capsys.readouterr()


def test_the_exit_status_of_a_stop_is_128_plus_the_signal_and_named_in_exit_code():
    from wsreid.errors import ExitCode

    assert signals.exit_code(signal.SIGINT) is ExitCode.INTERRUPTED and ExitCode.INTERRUPTED == 130
    assert signals.exit_code(signal.SIGTERM) is ExitCode.TERMINATED and ExitCode.TERMINATED == 143
    assert signals.exit_code(signal.SIGHUP) is ExitCode.HANGUP and ExitCode.HANGUP == 129
    assert signals.exit_code(signal.SIGUSR1) == 138  # no name: the number


def test_check_raises_only_after_a_recorded_signal():
    signals.check()  # nothing recorded: a library user's process is left alone
    with signals.stop_on_signals():
        signals.check()
        send(signal.SIGTERM, swallowed=True)
        assert signals.received() == signal.SIGTERM
        with pytest.raises(signals.Stopped) as caught:
            signals.check()
        assert isinstance(caught.value, KeyboardInterrupt) and caught.value.signum == signal.SIGTERM
        assert signals.exit_code(signals.signal_of(caught.value)) == 143
    assert signals.received() is None
    signals.check()


def test_once_stopped_exceptions_in_finalizers_print_nothing_and_before_they_do(monkeypatch):
    """A DataLoader iterator's finalizer finds its workers ended by the same SIGTERM
    ("Exception ignored in ... RuntimeError: DataLoader worker (pid N) is killed by signal:
    Terminated" was printed after the one line): dropped once a stop was received."""
    from types import SimpleNamespace

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    before = SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError("a finalizer failed"))
    after = SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError("DataLoader worker is killed by signal"))
    with signals.stop_on_signals():
        sys.unraisablehook(before)
        send(signal.SIGTERM, swallowed=True)  # its own Stopped goes through the hook too
        sys.unraisablehook(after)
    assert seen == [before] and sys.unraisablehook == seen.append


@pytest.mark.parametrize("debug", [False, True])
def test_ctrl_c_while_the_command_line_imports_is_one_line(debug):
    """A Ctrl-C in the second the command line takes to import torch printed the import's
    35-line traceback (a study interrupted while a child started printed it too)."""
    import subprocess

    code = textwrap.dedent(f"""\
        import builtins, sys
        real = builtins.__import__
        def cut_short(name, *args, **kwargs):
            if name == "wsreid.cli":
                raise KeyboardInterrupt  # as Ctrl-C while torch imports
            return real(name, *args, **kwargs)
        builtins.__import__ = cut_short
        sys.argv = ["wsreid", "plugins"{', "--debug"' if debug else ''}]
        from wsreid.__main__ import entry
        entry()
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if debug:
        assert done.returncode == -signal.SIGINT and "Traceback" in done.stderr and "KeyboardInterrupt" in done.stderr
    else:
        assert (done.returncode, done.stderr) == (130, "\ninterrupted while starting; nothing was done\n")
