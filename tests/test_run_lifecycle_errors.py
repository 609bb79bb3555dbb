"""User errors around a run's life: --resume and its recipe, failures and Ctrl-C before the
first checkpoint, commands printed for copy-paste, damaged or odd checkpoints, environment
variables. Each is one line naming what and where (docs/reliability.md). Mostly unit-level;
the engine's run is stubbed where only the session's handling is under test."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from wsreid.cli import main
from wsreid.engine import checkpoint as ckpt
from wsreid.errors import DataError, TrainingError, UserError

from test_engine_parts import _state


def _checkpoint(run_dir, epoch=1):
    """A small checkpoint of a linear model in ``run_dir`` (test_engine_parts' own); its path."""
    return _state(run_dir, epoch)[2]


# ---------------------------------------------------------------- --resume and the recipe
@pytest.fixture
def saved_run(make_recipe, tmp_path):
    """A run directory (a space in its path) holding the resolved recipe.yaml of a tiny
    ITC recipe, as a run writes it; -> (run_dir, loaded recipe, resolved yaml, resolved dict)."""
    from wsreid.engine.rundir import write_run_files
    from wsreid.engine.session import resolved_yaml_for
    from wsreid.recipe import load_recipe

    run_dir = tmp_path / "my runs" / "itc"
    loaded = load_recipe(make_recipe("baselines/itc.yaml"))
    text = resolved_yaml_for(loaded, run_dir)
    write_run_files(run_dir, text, {})
    return run_dir, loaded, text, {**loaded.resolved, "output_dir": str(run_dir)}


def test_resume_compares_the_loaded_recipes_not_their_text(saved_run):
    from wsreid.engine.rundir import check_resume_recipe

    run_dir, _, text, resolved = saved_run
    saved = run_dir / "recipe.yaml"
    # a comment edited by hand
    saved.write_text(text.replace("# Run it again with", "# my note; run it again with"))
    check_resume_recipe(run_dir, text)
    check_resume_recipe(run_dir, text, resolved)  # as run_recipe calls it
    # written by an older wsreid that did not know a key which now has a default
    lines = text.splitlines(keepends=True)
    saved.write_text("".join(line for line in lines if not line.startswith("  num_workers:")))
    assert saved.read_text() != text
    check_resume_recipe(run_dir, text)
    check_resume_recipe(run_dir, text, resolved)


def test_resume_with_another_recipe_names_the_keys_and_a_quoted_command(saved_run):
    from wsreid.engine.rundir import check_resume_recipe

    run_dir, _, text, resolved = saved_run
    other = re.sub("(?m)^  epochs: 2$", "  epochs: 7", re.sub("(?m)^  lr: 0.0002$", "  lr: 0.5", text))
    assert other.count(": 0.5\n") == 1 and other.count(": 7\n") == 1
    with pytest.raises(UserError) as caught:
        check_resume_recipe(run_dir, other)
    message = str(caught.value)
    assert "train.lr: 0.0002 in the run, 0.5 now" in message and "train.epochs: 2 in the run, 7 now" in message
    suggested = shlex.split(message.split("resume with the recipe the run was started with: ")[1].split(";")[0])
    assert suggested == ["wsreid", "run", str(run_dir / "recipe.yaml"), "--output-dir", str(run_dir), "--resume"]
    # as run_recipe calls it, resumed from the saved recipe itself (with -o): the hint
    # does not repeat the command that was just refused
    changed = {**resolved, "train": {**resolved["train"], "lr": 0.5, "epochs": 7}}
    with pytest.raises(UserError, match="resume without -o overrides") as caught:
        check_resume_recipe(run_dir, other, changed, source=run_dir / "recipe.yaml")
    assert "train.lr: 0.0002 in the run, 0.5 now" in str(caught.value) and "wsreid run" not in str(caught.value)


def test_resume_of_a_run_without_its_recipe_is_refused(saved_run):
    from wsreid.engine.rundir import check_resume_recipe

    run_dir, _, text, _ = saved_run
    (run_dir / "recipe.yaml").unlink()
    with pytest.raises(UserError, match="holds no recipe.yaml"):
        check_resume_recipe(run_dir, text)


# ---------------------------------------------------------------- failures and Ctrl-C in a run
def _stub_run(monkeypatch, then, checkpoint=False):
    """Run.setup does nothing; Run.train starts training, writes a checkpoint when asked,
    then calls ``then()`` (which raises)."""
    from wsreid.engine.run import Run

    def train(self):
        self.training_started = True
        if checkpoint:
            _checkpoint(self.run_dir)
        then()

    monkeypatch.setattr(Run, "setup", lambda self: None)
    monkeypatch.setattr(Run, "train", train)


def _bad_image():
    raise DataError("image x.png cannot be decoded", hint="replace the file")


def test_a_failure_before_the_first_checkpoint_leaves_no_run_directory(make_recipe, tmp_path, monkeypatch, capsys):
    recipe = make_recipe("baselines/itc.yaml")
    _stub_run(monkeypatch, _bad_image)
    for _ in range(2):  # the same command, run again, meets the same error (not "already holds a run")
        assert main(["run", str(recipe)]) == 2
        assert capsys.readouterr().err == "error: image x.png cannot be decoded (replace the file)\n"
        assert not (tmp_path / "run").exists()
    # with a checkpoint, the run is kept (it can be resumed)
    _stub_run(monkeypatch, _bad_image, checkpoint=True)
    assert main(["run", str(recipe)]) == 2
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "epoch-0001"


def test_interrupt_commands_are_shell_quoted(make_recipe, tmp_path, monkeypatch, capsys):
    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "my runs" / "it's"

    def interrupt():
        raise KeyboardInterrupt

    for checkpoint, flag in ((False, "--overwrite"), (True, "--resume")):
        shutil.rmtree(run_dir, ignore_errors=True)
        _stub_run(monkeypatch, interrupt, checkpoint=checkpoint)
        assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 130
        err = capsys.readouterr().err.strip()
        suggested = shlex.split(err.split(" with: ")[1])
        assert suggested == ["wsreid", "run", str(run_dir / "recipe.yaml"), "--output-dir", str(run_dir), flag]


def test_interrupting_the_init_pretraining_names_no_deleted_folder(make_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    make_recipe("baselines/itc.yaml", name="pretrain.yaml")
    recipe = make_recipe("baselines/itc.yaml", {"init": {"recipe": "pretrain.yaml"}}, name="main.yaml")

    def interrupt():
        raise KeyboardInterrupt

    _stub_run(monkeypatch, interrupt, checkpoint=True)
    assert main(["run", str(recipe)]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "interrupted while training the initial encoder" in err and "run your command again" in err
    assert ".tmp-" not in err and "--resume" not in err
    assert list((tmp_path / "cache" / "init").iterdir()) == [] and not (tmp_path / "run").exists()


def test_a_data_error_in_a_loader_worker_keeps_its_one_line():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DataError("image x.png cannot be decoded", hint="replace the file")

    batches = iter(torch.utils.data.DataLoader(Broken(), num_workers=1))
    try:
        with pytest.raises(DataError) as caught:
            next(batches)
        assert str(caught.value) == "image x.png cannot be decoded (replace the file)"
    finally:
        batches._shutdown_workers()


# ---------------------------------------------------------------- checkpoints
def test_a_truncated_model_file_is_called_corrupt(tmp_path):
    path = _checkpoint(tmp_path) / "model.safetensors"
    data = path.read_bytes()
    for cut in (40, len(data) - 4):
        path.write_bytes(data[:cut])
        with pytest.raises(TrainingError, match="model.safetensors is corrupt or truncated") as caught:
            ckpt.load_model_weights(torch.nn.Linear(3, 2), path)
        assert "does not fit" not in str(caught.value)


def test_a_missing_latest_pointer_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    from wsreid.engine.rundir import RUN_MARKER, RunState, run_state

    (tmp_path / RUN_MARKER).write_text("{}")
    path = _checkpoint(tmp_path, epoch=3)
    (tmp_path / "checkpoints" / "epoch-0004.tmp").mkdir()  # unfinished: never chosen
    (tmp_path / "checkpoints" / "latest").unlink()
    assert ckpt.latest_checkpoint(tmp_path) == path
    assert run_state(tmp_path) is RunState.RESUME


def test_a_full_disk_at_the_first_checkpoint_promises_no_previous_one(tmp_path, monkeypatch):
    def full_disk(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(TrainingError, match="No space left") as caught:
        _checkpoint(tmp_path)
    assert "is kept" not in str(caught.value) and "--resume" not in str(caught.value)
    assert "no earlier checkpoint" in str(caught.value)
    monkeypatch.setattr(ckpt, "save_model", full_disk)
    with pytest.raises(TrainingError, match="best checkpoint") as caught:
        ckpt.save_best(tmp_path, torch.nn.Linear(3, 2), {"epoch": 1})
    assert "is kept" not in str(caught.value) and "--resume" not in str(caught.value)


@pytest.mark.parametrize("damage", ["state {}", "state [1]", "state without rng", "rng from components",
                                    "components from rng", "optimizer names"])
def test_a_checkpoint_file_with_other_content_is_named(tmp_path, damage):
    path = _checkpoint(tmp_path)
    state = json.loads((path / "state.json").read_text())
    expected = "state.json"
    if damage == "state {}":
        (path / "state.json").write_text("{}")
    elif damage == "state [1]":
        (path / "state.json").write_text("[1]")
    elif damage == "state without rng":
        del state["rng"]
        (path / "state.json").write_text(json.dumps(state))
    elif damage == "rng from components":
        shutil.copy(path / "components.safetensors", path / "rng.safetensors")
        expected = "rng.safetensors"
    elif damage == "components from rng":
        shutil.copy(path / "rng.safetensors", path / "components.safetensors")
        expected = "components.safetensors"
    else:
        save_file({"exp_avg": torch.zeros(2)}, str(path / "optimizer.safetensors"))
        expected = "optimizer.safetensors"
    with pytest.raises(TrainingError) as caught:
        ckpt.load_checkpoint(path)
    assert f"checkpoint file {path / expected} " in str(caught.value)


# ---------------------------------------------------------------- environment variables
@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-5", "abc"])
def test_an_image_cache_size_that_is_not_a_finite_size_is_refused(monkeypatch, value):
    from wsreid.engine.data import DecodedImages

    monkeypatch.setenv("WSREID_IMAGE_CACHE_MB", value)
    with pytest.raises(UserError, match=f"WSREID_IMAGE_CACHE_MB={value!r} is not a number of MiB"):
        DecodedImages().budget


def test_an_empty_image_cache_size_is_the_default(monkeypatch):
    """Empty means unset, as for WSREID_CACHE (it was refused: '' is not a number of MiB)."""
    from wsreid.engine.data import image_cache_budget

    monkeypatch.setenv("WSREID_IMAGE_CACHE_MB", " ")
    assert image_cache_budget() == 1024 * 2**20
    monkeypatch.setenv("WSREID_IMAGE_CACHE_MB", "0")
    assert image_cache_budget() == 0


def test_a_bad_image_cache_size_is_refused_before_training(make_recipe, tmp_path, monkeypatch, capsys):
    from wsreid.engine.run import Run

    monkeypatch.setenv("WSREID_IMAGE_CACHE_MB", "abc")
    monkeypatch.setattr(Run, "build_components", lambda self: None)
    monkeypatch.setattr(Run, "encoder", None)
    assert main(["run", str(make_recipe("baselines/itc.yaml"))]) == 2
    assert "WSREID_IMAGE_CACHE_MB='abc'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # validate refuses what the run would refuse, in the same line
    assert main(["validate", str(tmp_path / "recipe.yaml")]) == 2
    assert capsys.readouterr().err == ("error: WSREID_IMAGE_CACHE_MB='abc' is not a number of MiB (0 or more) (set "
                                       "WSREID_IMAGE_CACHE_MB to e.g. 1024, or 0 to decode images every time)\n")


def test_a_world_size_that_is_not_a_number_is_one_line(make_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert main(["run", str(make_recipe("baselines/itc.yaml"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: WORLD_SIZE='abc' is not a number of processes") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- two runs in one directory
def _lock(run_dir, pid):
    import socket

    from wsreid.engine.rundir import RUN_LOCK

    (run_dir / RUN_LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "then"}))


def test_a_run_in_progress_keeps_its_directory(tmp_path):
    import os
    import subprocess
    import sys

    from wsreid.engine.rundir import RUN_LOCK, RUN_MARKER, RunMode, lock_run_dir, prepare_run_dir, unlock_run_dir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_MARKER).write_text("{}")
    _lock(run_dir, os.getppid())  # a live process on this host: the run in progress
    for mode in (RunMode.OVERWRITE, RunMode.RESUME):
        with pytest.raises(UserError, match=f"is in use by the run of wsreid process {os.getppid()}"):
            prepare_run_dir(run_dir, mode)
    assert (run_dir / RUN_MARKER).exists()  # --overwrite deleted nothing
    # a lock left by a process that was killed is taken over, and released at the end
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _lock(run_dir, int(gone.stdout))
    assert prepare_run_dir(run_dir, RunMode.RESUME) is False
    lock_run_dir(run_dir)
    assert json.loads((run_dir / RUN_LOCK).read_text())["pid"] == os.getpid()
    unlock_run_dir(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == [RUN_MARKER]


def test_resume_of_a_run_in_its_first_epoch_says_it_is_in_progress(tmp_path):
    """It was told the run held no checkpoint yet, to start it again with --overwrite -
    which refuses a directory in use."""
    import os
    import socket

    from wsreid.engine.rundir import RUN_LOCK, RUN_MARKER, check_resume_target

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_MARKER).write_text("{}")
    _lock(run_dir, os.getppid())
    with pytest.raises(UserError) as caught:
        check_resume_target(run_dir)
    assert str(caught.value) == (f"output directory {run_dir} is in use by the run of wsreid process {os.getppid()} "
                                 f"on {socket.gethostname()} (started then) (wait for it to end or stop it; if it no "
                                 f"longer runs, delete {run_dir / RUN_LOCK})")
    # another process of a multi-process launch finds its own main process's lock: not its to judge
    with pytest.raises(UserError, match=r"holds no checkpoint yet"):
        check_resume_target(run_dir, is_main=False)
    from wsreid.checkpoint_layout import FILES

    (run_dir / "checkpoints" / "epoch-0001").mkdir(parents=True)
    for name in FILES:
        (run_dir / "checkpoints" / "epoch-0001" / name).write_bytes(b"")
    (run_dir / "checkpoints" / "latest").write_text("epoch-0001")
    assert check_resume_target(run_dir, is_main=False) is None  # it resumes with the launch
    with pytest.raises(UserError, match="is in use by the run of wsreid process"):
        check_resume_target(run_dir)
    (run_dir / RUN_LOCK).unlink()
    shutil.rmtree(run_dir / "checkpoints")  # stopped in its first epoch: now there is nothing to resume
    with pytest.raises(UserError, match=r"holds no checkpoint yet .*\(start it again in place with --overwrite\)"):
        check_resume_target(run_dir)


def test_only_the_main_process_of_a_launch_judges_whether_the_run_is_in_use(make_recipe, tmp_path, monkeypatch):
    """A second process of a torchrun launch that reached --resume's checks after the main
    process had locked the run directory refused its own launch (seen with a rank started
    6 s late: exit 1, 'in use by the run of wsreid process <the main one>')."""
    import wsreid.engine.session as session
    from wsreid.recipe import load_recipe

    seen = []

    def record(run_dir, is_main=True):
        seen.append(is_main)
        raise SystemExit(0)

    monkeypatch.setattr(session, "check_resume_target", record)
    loaded = load_recipe(make_recipe("baselines/itc.yaml"))
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # as torchrun sets it
    for rank in ("1", "0"):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit):
            session.run_recipe(loaded, tmp_path / "run", "resume")
    assert seen == [False, True]


def test_a_run_holds_the_lock_while_it_runs(make_recipe, tmp_path, monkeypatch):
    from wsreid.engine.rundir import RUN_LOCK

    held = []
    _stub_run(monkeypatch, lambda: held.append((tmp_path / "run" / RUN_LOCK).exists()) or _bad_image(),
              checkpoint=True)
    assert main(["run", str(make_recipe("baselines/itc.yaml"))]) == 2
    assert held == [True] and not (tmp_path / "run" / RUN_LOCK).exists()


def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path):
    """Locking, or writing the run files into, a directory that a file stands in for is a
    UserError (exit code 2) whose whole one-line message names the directory and the OS error."""
    import errno
    import os

    from wsreid.engine.rundir import lock_run_dir, write_run_files

    blocked = tmp_path / "a file"
    blocked.write_text("")  # as root, permissions do not stop a write; a file in the way does
    for where, write in ((blocked, lambda: lock_run_dir(blocked)),
                         (blocked / "run", lambda: write_run_files(blocked / "run", "", {}))):
        with pytest.raises(UserError) as caught:
            write()
        assert caught.value.exit_code == 2
        assert str(caught.value) == (f"output directory {where} cannot be written: {os.strerror(errno.ENOTDIR)} "
                                     "(check its permissions and free space, or choose another --output-dir)")


def test_resume_into_checkpoints_it_cannot_write_is_refused_before_training(saved_run, monkeypatch):
    """A checkpoints/ folder the run cannot write: refused at --resume (it failed after a
    whole epoch, at the first checkpoint, with the hint to free disk space)."""
    import errno

    import wsreid.engine.rundir as rundir
    from wsreid.engine.rundir import RunMode, prepare_run_dir

    run_dir = saved_run[0]
    _checkpoint(run_dir)
    assert prepare_run_dir(run_dir, RunMode.RESUME) is False  # writable: resumed
    seen = []

    def read_only(folder, name):
        seen.append(folder)
        return PermissionError(errno.EACCES, "Permission denied")  # as a probe file in a read-only folder fails

    monkeypatch.setattr(rundir, "cannot_create_in", read_only)
    with pytest.raises(UserError) as caught:
        prepare_run_dir(run_dir, RunMode.RESUME)
    assert seen == [run_dir / "checkpoints"]
    assert str(caught.value) == (f"--resume: {run_dir / 'checkpoints'} cannot be written: Permission denied (fix its "
                                 "permissions; the run writes its next checkpoint there)")
