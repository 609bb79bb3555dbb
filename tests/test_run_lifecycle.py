"""A run's life around its directory, as a newcomer's review found it (docs/reliability.md):
a resume after its own recipe.yaml was edited, ``--overwrite`` of a run that cannot be
deleted, damaged logs on ``--resume``, a stop in a directory made beforehand, a ``latest``
pointer leading out of the run, and the hint of a corrupt checkpoint under ``wsreid eval``.
The engine's run is stubbed where only the handling around it is under test."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import stat

import pytest
import torch
from safetensors.torch import save_file

from wsreid.cli import main
from wsreid.engine import checkpoint as ckpt
from wsreid.engine.rundir import RUN_MARKER, RunMode, check_resume_recipe, prepare_run_dir
from wsreid.errors import TrainingError, UserError

import test_run_lifecycle_errors
import test_run_logs_tensorboard
from test_run_lifecycle_errors import _bad_image, _checkpoint, _stub_run

#: a run directory holding the resolved recipe.yaml of a tiny ITC recipe (the fixture of test_run_lifecycle_errors)
saved_run = test_run_lifecycle_errors.saved_run
#: interrupt_at(epoch): a run with the test plugin wsreid_test_hooks stops (Ctrl-C) at that epoch's start
interrupt_at = test_run_logs_tensorboard.interrupt_at


def _interrupt():
    raise KeyboardInterrupt


def _one_error_line(err: str) -> str:
    """The single ``error:`` line of a command's stderr (asserting that it is one line)."""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: "):].rstrip("\n")


# ---------------------------------------------------------------- 1. recipe.yaml edited before --resume
@pytest.fixture
def interrupted_run(make_recipe, tmp_path, monkeypatch, capsys):
    """A run (stubbed engine) stopped by Ctrl-C after its first checkpoint -> its directory;
    ``trained`` (a list) records each later start of Run.train."""
    recipe = make_recipe("baselines/itc.yaml")
    _stub_run(monkeypatch, _interrupt, checkpoint=True)
    assert main(["run", str(recipe)]) == 130
    capsys.readouterr()
    return tmp_path / "run"


#: what the stubbed engine of a resumed run ends with (it trained: the resume was accepted)
TRAINED = "error: image x.png cannot be decoded (replace the file)\n"


def _resume(run_dir, monkeypatch, *extra: str) -> list[bool]:
    """Resume ``run_dir`` from its own recipe.yaml (engine stubbed: it fails with the line
    TRAINED once it trains) -> [True] when it trained."""
    trained: list[bool] = []
    _stub_run(monkeypatch, lambda: trained.append(True) or _bad_image())
    main(["run", str(run_dir / "recipe.yaml"), "--output-dir", str(run_dir), "--resume", *extra])
    return trained


@pytest.mark.parametrize("edit, shown", [(("  lr: 0.0002", "  lr: 0.002"), "train.lr: 0.0002 in the run, 0.002 now"),
                                         (("  batch_size: 16", "  batch_size: 8"),
                                          "train.batch_size: 16 in the run, 8 now")])
def test_resume_refuses_a_run_whose_own_recipe_yaml_was_edited(interrupted_run, monkeypatch, capsys, edit, shown):
    run_dir = interrupted_run
    saved = run_dir / "recipe.yaml"
    old, new = edit
    text = saved.read_text()
    assert len(re.findall(f"(?m)^{re.escape(old)}$", text)) == 1
    edited = re.sub(f"(?m)^{re.escape(old)}$", new, text)
    saved.write_text(edited)
    assert _resume(run_dir, monkeypatch) == []
    line = _one_error_line(capsys.readouterr().err)
    assert line == (f"--resume: the recipe differs from the one {run_dir} was started with (recorded in "
                    f"{run_dir / RUN_MARKER}): {shown} ({saved} was edited since the run started and no longer "
                    f"holds its recipe: undo that edit, or start a new run in another --output-dir)")
    assert saved.read_text() == edited  # nothing was written


def test_resume_after_a_comment_edit_of_recipe_yaml_goes_on(interrupted_run, monkeypatch, capsys):
    saved = interrupted_run / "recipe.yaml"
    saved.write_text("# my notes on this run\n" + saved.read_text().replace("  lr: 0.0002", "  lr: 0.0002  # tried"))
    assert _resume(interrupted_run, monkeypatch) == [True]
    assert capsys.readouterr().err == TRAINED


def test_resume_with_the_recorded_recipe_names_an_edit_of_recipe_yaml(interrupted_run, make_recipe, monkeypatch,
                                                                     capsys):
    """Resumed with the recipe it was started with, a run whose recipe.yaml was edited is
    refused all the same (recipe.yaml is still compared), with the values the right way
    round: the run's (recorded) value, then the edited one."""
    saved = interrupted_run / "recipe.yaml"
    saved.write_text(saved.read_text().replace("  lr: 0.0002", "  lr: 0.5"))
    trained: list[bool] = []
    _stub_run(monkeypatch, lambda: trained.append(True) or _bad_image())
    assert main(["run", str(make_recipe("baselines/itc.yaml")), "--resume"]) == 2
    assert trained == []
    assert _one_error_line(capsys.readouterr().err) == (
        f"--resume: {saved} was edited since the run started and no longer holds its recipe: train.lr: 0.0002 in "
        "the run, 0.5 now (undo that edit; the recipe you resume with is the one the run was started with)")


def test_resume_of_a_run_without_the_record_compares_recipe_yaml_only(interrupted_run, monkeypatch, capsys):
    """A run written before wsreid recorded its recipe: the old check only (the edited
    recipe.yaml is the recipe)."""
    marker = interrupted_run / RUN_MARKER
    marker.write_text(json.dumps({"created": "2024-01-01T00:00:00"}))
    saved = interrupted_run / "recipe.yaml"
    saved.write_text(saved.read_text().replace("  lr: 0.0002", "  lr: 0.002"))
    assert _resume(interrupted_run, monkeypatch) == [True]
    assert capsys.readouterr().err == TRAINED


def test_the_record_is_compared_as_data(saved_run):
    """check_resume_recipe and same_recipe alike: the record is read as data, so an option
    added since at its default is the same recipe, and a value changed in recipe.yaml alone
    is not."""
    from wsreid.engine.rundir import same_recipe

    run_dir, _, text, resolved = saved_run
    assert "recipe" in json.loads((run_dir / RUN_MARKER).read_text())
    marker = json.loads((run_dir / RUN_MARKER).read_text())
    marker["recipe"] = "".join(line for line in marker["recipe"].splitlines(keepends=True)
                               if not line.startswith("  num_workers:"))
    (run_dir / RUN_MARKER).write_text(json.dumps(marker))
    check_resume_recipe(run_dir, text, resolved)
    assert same_recipe(run_dir, text, resolved=resolved)
    edited = text.replace("  lr: 0.0002", "  lr: 0.002")
    (run_dir / "recipe.yaml").write_text(edited)
    with pytest.raises(UserError, match="train.lr: 0.0002 in the run, 0.002 now"):
        check_resume_recipe(run_dir, edited)
    assert not same_recipe(run_dir, edited)


# ---------------------------------------------------------------- 2. --overwrite of a run that cannot be deleted
def _a_run(run_dir):
    run_dir.mkdir(parents=True)
    (run_dir / RUN_MARKER).write_text("{}")
    (run_dir / "recipe.yaml").write_text("train: {}\n")
    _checkpoint(run_dir)
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "steps.csv").write_text("step,epoch\n1,1\n")


def _refuse(monkeypatch, function: str, name: str, error: int):
    """Make ``os.<function>`` fail with ``error`` for the entry called ``name``."""
    real = getattr(os, function)

    def refused(path, *args, **kwargs):
        if os.path.basename(os.fspath(path)) == name:
            raise OSError(error, os.strerror(error), os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, function, refused)


@pytest.mark.parametrize("function, name, error, what", [
    ("rmdir", "epoch-0001", errno.EACCES, "checkpoints/epoch-0001: Permission denied"),
    ("unlink", "steps.csv", errno.EROFS, "logs/steps.csv: Read-only file system"),
])
def test_overwrite_of_a_run_that_cannot_be_deleted_is_one_line_and_stays_a_run(
        make_recipe, tmp_path, monkeypatch, capsys, function, name, error, what):
    run_dir = tmp_path / "run"
    _a_run(run_dir)
    recipe = make_recipe("baselines/itc.yaml")
    _stub_run(monkeypatch, _bad_image)
    with monkeypatch.context() as m:
        _refuse(m, function, name, error)
        assert main(["run", str(recipe), "--overwrite"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (f"cannot delete the run in {run_dir} for --overwrite: {run_dir}/{what} (part of it may be "
                    "deleted; it is still a wsreid run: make it writable and run the same command again, or "
                    "choose another --output-dir)")
    assert (run_dir / RUN_MARKER).is_file()  # deleted last: still wsreid's run
    assert prepare_run_dir(run_dir, RunMode.OVERWRITE)  # so a retry deletes it
    assert list(run_dir.iterdir()) == []


# ---------------------------------------------------------------- 3. damaged logs on --resume
def _logger_with_rows(run_dir, steps: int = 6, epochs: int = 3):
    from wsreid.engine.logs import RunLogger

    logger = RunLogger(run_dir)
    for step in range(1, steps + 1):
        logger.step(step, (step + 1) // 2, {"loss/total": float(step)})
    for epoch in range(1, epochs + 1):
        logger.epoch(epoch, {"lr": 0.1 * epoch})
    logger.close()
    return run_dir / "logs"


def _rows(path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _truncate(run_dir, epoch: int, step: int) -> None:
    from wsreid.engine.logs import RunLogger

    logger = RunLogger(run_dir)
    logger.truncate(epoch, step)
    logger.close()


def test_a_nul_tail_of_steps_csv_is_dropped_with_one_warning(tmp_path, capsys):
    logs = _logger_with_rows(tmp_path)
    with (logs / "steps.csv").open("ab") as f:
        f.write(b"\x00\x00\x00\x00")
    _truncate(tmp_path, 2, 4)
    assert capsys.readouterr().err == (f"warning: {logs / 'steps.csv'}: 1 unreadable row dropped (a line cut "
                                       "short or damaged, e.g. by a crash); the log goes on from the checkpoint\n")
    assert [r["step"] for r in _rows(logs / "steps.csv")] == ["1", "2", "3", "4"]
    assert [r["epoch"] for r in _rows(logs / "epochs.csv")] == ["1", "2"]


def test_rows_with_a_bad_key_or_cut_short_are_dropped(tmp_path, capsys):
    logs = _logger_with_rows(tmp_path)
    text = (logs / "epochs.csv").read_text()
    (logs / "epochs.csv").write_text(text.replace("\n2,", "\nx,") + "4")
    _truncate(tmp_path, 3, 6)
    assert capsys.readouterr().err == (f"warning: {logs / 'epochs.csv'}: 2 unreadable rows dropped (a line cut "
                                       "short or damaged, e.g. by a crash); the log goes on from the checkpoint\n")
    assert [r["epoch"] for r in _rows(logs / "epochs.csv")] == ["1", "3"]
    (logs / "steps.csv").write_bytes(b"\xff\xfe" + (logs / "steps.csv").read_bytes()[4:])  # garbled header
    _truncate(tmp_path, 3, 6)
    assert capsys.readouterr().err == (f"warning: {logs / 'steps.csv'}: its header is unreadable (no 'step' "
                                       f"column), so the log starts afresh; the damaged file is kept as "
                                       f"{logs / 'steps.csv.damaged'}\n")
    assert not (logs / "steps.csv").exists() and (logs / "steps.csv.damaged").exists()
    from wsreid.engine.logs import RunLogger

    logger = RunLogger(tmp_path)  # the next row starts the file again
    logger.step(7, 4, {"loss/total": 7.0})
    logger.close()
    assert _rows(logs / "steps.csv") == [{"step": "7", "epoch": "4", "loss/total": "7.0"}]


def test_a_real_run_resumes_past_a_damaged_log_but_not_past_an_edited_recipe(make_recipe, tmp_path, interrupt_at,
                                                                            capsys):
    """Findings 1 and 3 with the engine: a run stopped at epoch 2 (its checkpoint is epoch
    1's) is refused when its recipe.yaml was edited, and resumes to the end when the edit
    is undone although steps.csv ends in the NUL bytes of a crash."""
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_hooks"]})
    run_dir = tmp_path / "cut"
    interrupt_at(2)
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 130
    interrupt_at(None)
    saved = run_dir / "recipe.yaml"
    text = saved.read_text()
    saved.write_text(text.replace("  lr: 0.0002\n", "  lr: 0.002\n"))
    capsys.readouterr()
    resume = ["run", str(saved), "--output-dir", str(run_dir), "--resume"]
    assert main(resume) == 2
    assert "train.lr: 0.0002 in the run, 0.002 now" in _one_error_line(capsys.readouterr().err)
    saved.write_text(text)
    steps = run_dir / "logs" / "steps.csv"
    with steps.open("ab") as f:
        f.write(b"\x00\x00\x00\x00")
    assert main(resume) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("warning", "error"))]
    assert warnings == [f"warning: {steps}: 1 unreadable row dropped (a line cut short or damaged, e.g. by a crash); "
                        "the log goes on from the checkpoint"]
    assert (run_dir / "metrics.json").is_file() and b"\x00" not in steps.read_bytes()


def test_the_pair_constructions_state_is_keyed_by_its_name_and_older_checkpoints_resume(make_recipe, tmp_path,
                                                                                       interrupt_at, capsys):
    """The pair construction's state was keyed by its Python class name
    (pair_construction/InformationAsymmetricPairs): renaming the class in a plugin broke
    the resume of its runs. It is keyed by the recipe's name now; a checkpoint written with
    the class name resumes all the same."""
    from safetensors.torch import load_file

    recipe = make_recipe("dgia.yaml", {"plugins": ["wsreid_test_hooks"], "train": {"epochs": 2}})
    run_dir = tmp_path / "cut"
    interrupt_at(2)
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 130
    interrupt_at(None)
    path = run_dir / "checkpoints" / "epoch-0001" / "components.safetensors"
    tensors = load_file(str(path))
    step = tensors.pop("pair_construction/iasc/step")
    assert int(step) > 0
    tensors["pair_construction/InformationAsymmetricPairs/step"] = step  # as an older version wrote it
    save_file(tensors, str(path))
    capsys.readouterr()
    assert main(["run", str(recipe), "--output-dir", str(run_dir), "--resume"]) == 0
    final = load_file(str(run_dir / "checkpoints" / "epoch-0002" / "components.safetensors"))
    assert int(final["pair_construction/iasc/step"]) == 2 * int(step)  # counted on from the checkpoint


# ---------------------------------------------------------------- 4. a stop in a directory made beforehand
@pytest.mark.parametrize("stop, status", [(_interrupt, 130), (_bad_image, 2)])
def test_a_stop_before_the_first_epoch_keeps_a_directory_made_beforehand(make_recipe, tmp_path, monkeypatch,
                                                                        capsys, stop, status):
    from wsreid.engine.run import Run

    run_dir = tmp_path / "e3"
    run_dir.mkdir()
    run_dir.chmod(0o2775)
    monkeypatch.setattr(Run, "setup", lambda self: None)
    monkeypatch.setattr(Run, "train", lambda self: stop())
    assert main(["run", str(make_recipe("baselines/itc.yaml")), "--output-dir", str(run_dir)]) == status
    assert run_dir.is_dir() and list(run_dir.iterdir()) == []
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o2775
    # a directory the run created is removed, as before
    assert main(["run", str(make_recipe("baselines/itc.yaml")), "--output-dir", str(tmp_path / "new")]) == status
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- 5. a latest pointer leading out of the run
@pytest.mark.parametrize("pointer", ["../../other/checkpoints/epoch-0002", "/elsewhere/epoch-0002", "epoch-0002/..",
                                     "best"])
def test_a_latest_pointer_must_name_an_epoch_folder_of_the_run(tmp_path, pointer):
    run_dir, other = tmp_path / "run", tmp_path / "other"
    _checkpoint(run_dir, epoch=1)
    _checkpoint(other, epoch=2)
    (run_dir / "checkpoints" / "best").mkdir()
    (run_dir / "checkpoints" / "latest").write_text(pointer + "\n")
    with pytest.raises(TrainingError) as caught:
        ckpt.latest_checkpoint(run_dir)
    assert str(caught.value) == (
        f"checkpoint pointer {run_dir / 'checkpoints' / 'latest'} holds {pointer!r}, not the name of an epoch-NNNN "
        f"folder in {run_dir / 'checkpoints'} (write the name of one into it, e.g. epoch-0001, or delete it to use "
        "the newest complete checkpoint)")
    (run_dir / "checkpoints" / "latest").write_text("epoch-0001\n")
    assert ckpt.latest_checkpoint(run_dir) == run_dir / "checkpoints" / "epoch-0001"


# ---------------------------------------------------------------- 6. a corrupt checkpoint under wsreid eval
@pytest.fixture
def run_with_corrupt_best(saved_run):
    """``saved_run`` with a truncated best checkpoint and an intact epoch-0002 (and the
    vocabulary its run saved: the recipe's encoder builds one from the captions)."""
    from wsreid_clip.tokenizer import build_word_tokenizer, save_tokenizer

    run_dir = saved_run[0]
    save_tokenizer(build_word_tokenizer(["a man in a red coat"], max_length=64), run_dir / "tokenizer")
    root = run_dir / "checkpoints"
    (root / "best").mkdir(parents=True)
    (root / "best" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    (root / "epoch-0002").mkdir()
    save_file({"w": torch.zeros(2)}, str(root / "epoch-0002" / "model.safetensors"))
    (root / "latest").write_text("epoch-0002\n")
    return run_dir


def test_eval_of_a_corrupt_best_checkpoint_names_another_one(run_with_corrupt_best, capsys):
    run_dir = run_with_corrupt_best
    assert main(["eval", str(run_dir)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"checkpoint file {run_dir / 'checkpoints' / 'best' / 'model.safetensors'} is corrupt "
                           "or truncated: ")
    quoted = f"'{run_dir / 'checkpoints' / 'epoch-0002'}'"  # the path holds a space
    assert line.endswith(f" (restore it, or evaluate another checkpoint of the run: wsreid eval and wsreid search "
                         f"take a checkpoint folder, e.g. wsreid eval {quoted})")
    assert "--overwrite" not in line


def test_a_corrupt_checkpoint_without_another_one_says_restore_it(run_with_corrupt_best):
    import shutil

    run_dir = run_with_corrupt_best
    shutil.rmtree(run_dir / "checkpoints" / "epoch-0002")
    (run_dir / "checkpoints" / "latest").unlink()
    with pytest.raises(TrainingError) as caught:
        ckpt.load_model_weights(torch.nn.Linear(3, 2), run_dir / "checkpoints" / "best" / "model.safetensors")
    assert str(caught.value).endswith(" (restore it; the run holds no other checkpoint to use instead)")


def test_a_corrupt_checkpoint_on_resume_keeps_the_training_hint(tmp_path):
    """Run.restore loads the latest checkpoint's weights with the training-side hint."""
    from wsreid.engine.run import Run

    path = _checkpoint(tmp_path)
    (path / "model.safetensors").write_bytes(b"\x00" * 12)
    run = Run.__new__(Run)
    run.run_dir = tmp_path
    run.components = type("C", (), {"encoder": torch.nn.Linear(3, 2)})()
    run.dist = type("D", (), {"is_main": True})()
    with pytest.raises(TrainingError) as caught:
        run.restore()
    assert str(caught.value).endswith(" (restore it or start again with --overwrite)")


def test_a_step_appends_its_row_without_reading_the_log_again(tmp_path, monkeypatch):
    """steps.csv grows by one row a step: its header is read once per logger, not the whole
    file at every step (that made a long run's logging quadratic in its length)."""
    from pathlib import Path

    from wsreid.engine.logs import RunLogger

    logs = _logger_with_rows(tmp_path, steps=4, epochs=1)  # a run's earlier attempt
    reads: list[str] = []
    real_open = Path.open

    def counting_open(self, mode="r", *args, **kwargs):
        if "r" in mode and self.name == "steps.csv":
            reads.append(mode)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    logger = RunLogger(tmp_path)
    for step in range(5, 205):  # the row's keys in another order: the file's order is kept
        logger.step(step, 3, {"loss/total": float(step)})
    assert len(reads) == 1
    logger.step(205, 3, {"loss/total": 205.0, "loss/new": 1.0})  # a new column: the file is rewritten once
    logger.step(206, 3, {"loss/new": 2.0, "loss/total": 206.0})
    assert len(reads) == 2
    logger.truncate(3, 205)  # a resume rewrites the files: their headers are read again
    logger.step(206, 3, {"loss/total": 206.0})
    logger.close()
    monkeypatch.undo()
    rows = _rows(logs / "steps.csv")
    assert list(rows[0]) == ["step", "epoch", "loss/total", "loss/new"]
    assert [r["step"] for r in rows] == [str(s) for s in range(1, 207)]
    assert rows[3] == {"step": "4", "epoch": "2", "loss/total": "4.0", "loss/new": ""}
    assert rows[-2] == {"step": "205", "epoch": "3", "loss/total": "205.0", "loss/new": "1.0"}
    assert rows[-1] == {"step": "206", "epoch": "3", "loss/total": "206.0", "loss/new": ""}
