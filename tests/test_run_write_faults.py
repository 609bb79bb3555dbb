"""Writes of a run that a stop or a full disk cuts short: the logs, metrics.json, the
curves and the checkpoints. Each is one line (exit 2) or the stop's line (exit 130), and
nothing half-written is left: a log keeps the rows it had, a checkpoint folder being
written is removed."""

from __future__ import annotations

import csv
import errno
import json
import shutil
import socket
from pathlib import Path

import pytest

from wsreid.cli import main
from wsreid.engine.logs import RunLogger
from wsreid.errors import TrainingError


def test_a_log_rewritten_for_a_new_column_keeps_its_rows_when_the_rewrite_is_cut_short(tmp_path, monkeypatch):
    """A new column (DGIA's epoch 2) rewrote the whole CSV in place: a stop in the middle
    left the header alone, the rows the checkpoint covers lost for good."""
    logger = RunLogger(tmp_path)
    for step in range(1, 4):
        logger.step(step, 1, {"loss/itc": 1.0 / step})
    before = (tmp_path / "logs" / "steps.csv").read_text()

    def stopped(self, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", stopped)
    with pytest.raises(KeyboardInterrupt):
        logger.step(4, 2, {"loss/itc": 0.2, "loss/sdm_global": 3.0})
    assert (tmp_path / "logs" / "steps.csv").read_text() == before
    monkeypatch.undo()
    logger.step(4, 2, {"loss/itc": 0.2, "loss/sdm_global": 3.0})
    rows = list(csv.DictReader((tmp_path / "logs" / "steps.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and rows[0]["loss/sdm_global"] == ""
    assert rows[3]["loss/sdm_global"] == "3.0"
    logger.close()


def test_a_log_that_cannot_be_written_is_one_line(tmp_path):
    """A full disk or an unwritable log file was a traceback (exit 1), and before the first
    checkpoint it left a run directory no command would continue."""
    logger = RunLogger(tmp_path)
    (tmp_path / "logs" / "epochs.csv").mkdir()  # stands for any OSError of the write
    with pytest.raises(TrainingError) as caught:
        logger.epoch(1, {"loss/itc": 1.0})
    assert str(caught.value).startswith(f"cannot update the run's log {tmp_path / 'logs' / 'epochs.csv'}: ")
    assert "run the command again (with --resume once the run has a checkpoint" in str(caught.value)
    logger.close()


def test_a_full_disk_at_metrics_json_is_one_line_and_the_run_resumes(make_recipe, tmp_path, capsys, monkeypatch):
    import wsreid.engine.checkpoint as ckpt

    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    write = ckpt.atomic_write_text

    def full_for_metrics(path, text):
        if path.name == "metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, text)

    monkeypatch.setattr(ckpt, "atomic_write_text", full_for_metrics)
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    run_dir = tmp_path / "run"
    assert err == (f"error: cannot write {run_dir / 'metrics.json'}: no space left on the device (free disk space (or "
                   "fix the run directory's permissions), then resume with --resume: it evaluates the selected "
                   "checkpoint again)\n")
    monkeypatch.undo()
    assert main(["run", str(recipe), "--resume"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1


def test_a_stop_after_metrics_json_says_the_run_finished(make_recipe, tmp_path, capsys, monkeypatch):
    """It said 'interrupted; last complete checkpoint ...; resume with ... --resume', exit
    130, for a run that metrics.json marks finished (and ablate counts as such)."""
    import wsreid.engine.run as run_module

    def stopped(run_dir, out=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "plot_curves", stopped)
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    assert main(["run", str(recipe)]) == 130
    err = capsys.readouterr().err.strip()
    run_dir = tmp_path / "run"
    assert err.startswith("interrupted after the run had finished (its metrics.json is written); curves.png or what "
                          "plugins do at the run's end may be missing; to do them, resume with: wsreid run ") and \
        err.endswith(" --resume"), err
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "curves.png").exists()
    # as it says: --resume trains nothing more, does the end again, and says so (it said nothing)
    monkeypatch.undo()
    finished = json.loads((run_dir / "metrics.json").read_text())
    assert main(["run", str(recipe), "--resume"]) == 0
    assert capsys.readouterr().err == (
        f"note: {run_dir} had finished (its metrics.json is written): --resume trains no more epochs; it evaluates "
        "the selected checkpoint again and does the end of the run again (metrics.json, curves.png, what plugins do "
        "then)\n")
    assert (run_dir / "curves.png").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == finished["test"]


def test_a_stop_while_a_checkpoint_is_written_leaves_no_partial_folder(make_recipe, tmp_path, capsys, monkeypatch):
    """Only a failed write removed the temporary folder; a stop left epoch-0001.tmp with
    part of the files."""
    import wsreid.engine.checkpoint as ckpt

    real = ckpt.save_file

    def stop_at_the_rng_file(tensors, path, *args, **kwargs):
        if path.endswith("rng.safetensors"):
            raise KeyboardInterrupt
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", stop_at_the_rng_file)
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 2, "warmup_epochs": 0}})
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "run")]) == 130
    left = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) \
        if (tmp_path / "run" / "checkpoints").exists() else []
    assert not any(name.endswith(".tmp") for name in left), left


def _val_scores_falling(monkeypatch):
    """Validation R1 60, 50, 40 ... at epochs 1, 2, 3: the best epoch is the first."""
    from wsreid.engine.run import Run

    real = Run.evaluate

    def evaluate(self, split_name):
        metrics = real(self, split_name)
        return {**metrics, "R1": 70.0 - 10 * self.epoch} if split_name == "val" else metrics

    monkeypatch.setattr(Run, "evaluate", evaluate)


def test_a_run_whose_best_checkpoint_is_missing_says_it_reports_the_last_epoch(make_recipe, tmp_path, capsys,
                                                                               monkeypatch):
    """metrics.json said 'best validation R1' of the last epoch's weights when best/ was
    gone (a user who deleted a damaged one): 38.10 R@1 reported for a best epoch that
    scored 32.54."""
    import wsreid.engine.checkpoint as ckpt

    _val_scores_falling(monkeypatch)
    monkeypatch.setattr(ckpt, "save_best", lambda run_dir, model, info: None)  # as if deleted
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 2, "warmup_epochs": 0}})
    assert main(["run", str(recipe)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["best_epoch"], metrics["selection"]) == (2, "last epoch (the best checkpoint on val was missing)")
    assert ("warning: the weights of epoch 1, the best on val, are not in "
            f"{tmp_path / 'run' / 'checkpoints' / 'best'}: evaluating the last epoch (2) instead") in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["stale", "truncated"])
def test_resume_checks_the_best_checkpoint_before_training(make_recipe, tmp_path, capsys, monkeypatch,
                                                           test_plugins_path, damage):
    """A damaged best/ was found after the remaining epochs had trained; one written for
    an epoch after the restored checkpoint (the stop came between the two writes) was
    reported with the restored history's best epoch as its label."""
    _val_scores_falling(monkeypatch)
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_hooks"],
                                                "train": {"epochs": 2, "warmup_epochs": 0}})
    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "2")
    assert main(["run", str(recipe)]) == 130
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    best = tmp_path / "run" / "checkpoints" / "best"
    capsys.readouterr()
    if damage == "stale":  # best/ of an epoch 2 whose checkpoint was never written
        state = json.loads((best / "state.json").read_text())
        (best / "state.json").write_text(json.dumps({**state, "epoch": 2}))
        assert main(["run", str(recipe), "--resume"]) == 0
        assert (f"note: {best} holds epoch 2, after the checkpoint resumed from (epoch 1): removed; the epochs "
                "trained again select the best anew") in capsys.readouterr().err
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        assert (metrics["best_epoch"], metrics["selection"]) == (2, "last epoch (the best checkpoint on val was "
                                                                    "missing)")
    else:
        (best / "model.safetensors").write_bytes((best / "model.safetensors").read_bytes()[:1000])
        assert main(["run", str(recipe), "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --resume: the best checkpoint {best} is damaged (corrupt or truncated: ")
        assert not (tmp_path / "run" / "checkpoints" / "epoch-0002").exists()  # refused before training


def test_resume_into_what_is_no_resumable_run_says_which_option_works(make_recipe, tmp_path, capsys, monkeypatch,
                                                                      test_plugins_path):
    """A folder that is no run, or a file, was told its recipe.yaml was missing and to use
    --overwrite (which refuses a foreign folder); a run without a checkpoint was sent from
    the plain command to --resume, and back, --resume failing only after its data and
    encoder were built."""
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_hooks"],
                                                "train": {"epochs": 2, "warmup_epochs": 0}})
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    for target, says in ((foreign, f"--resume: {foreign} holds no wsreid run"),
                         (tmp_path / "afile", f"--resume: {tmp_path / 'afile'} is a file, not a run directory")):
        assert main(["run", str(recipe), "--output-dir", str(target), "--resume"]) == 2
        assert capsys.readouterr().err.startswith(f"error: {says} (check --output-dir / output_dir)")
    # a run stopped in its first epoch, before its first checkpoint (kept: it had started)
    started = tmp_path / "started"
    assert main(["run", str(recipe), "--output-dir", str(started)]) == 0
    shutil.rmtree(started / "checkpoints")
    (started / "metrics.json").unlink()
    capsys.readouterr()
    assert main(["run", str(recipe), "--output-dir", str(started)]) == 2
    assert capsys.readouterr().err == (f"error: output directory {started} already holds a run that has no checkpoint "
                                       "yet (pass --overwrite to start it again, or choose another --output-dir)\n")
    assert main(["run", str(recipe), "--output-dir", str(started), "--resume"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: --resume: {started} holds no checkpoint yet (its first epoch did not finish), so "
                            "there is nothing to resume (start it again in place with --overwrite)\n")
    assert "dataset" not in captured.out  # refused before the data were loaded


def test_a_folder_left_with_only_a_stale_lock_is_used_as_empty(make_recipe, tmp_path):
    """A run killed between taking its lock and writing its marker left a folder that every
    command refused as 'not a wsreid run'."""
    from wsreid.engine.rundir import RUN_LOCK

    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    left = tmp_path / "left"
    left.mkdir()
    (left / RUN_LOCK).write_text(json.dumps({"pid": 999999999, "host": socket.gethostname(), "started": "then"}))
    assert main(["run", str(recipe), "--output-dir", str(left)]) == 0
    assert (left / "metrics.json").is_file()


def test_an_evaluation_split_of_one_person_is_refused_before_training(make_recipe, synth_tiny_root, tmp_path, capsys):
    """A CUHK-PEDES-format annotation giving every record one id (a placeholder for data
    without identities) trained and reported R@1 100.00 / mAP 100, exit 0."""
    root = tmp_path / "one-id"
    root.mkdir()
    (root / "imgs").symlink_to(synth_tiny_root / "imgs")
    records = json.loads((synth_tiny_root / "reid_raw.json").read_text())
    (root / "reid_raw.json").write_text(json.dumps([{**r, "id": 1} for r in records]))
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["run", str(recipe), "-o", f"data={{name: cuhk-pedes, root: '{root}'}}"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: dataset cuhk-pedes: the val split holds 1 person (") and \
        "every retrieval would be correct and its R@1 and mAP 100 whatever the model" in err, err
    assert not (tmp_path / "run").exists()


def test_objectives_that_all_weigh_nothing_are_refused(make_recipe, capsys):
    """ITC at weight 0 alone trained nothing (losses logged as 0) while weight decay moved
    the weights: validation R@1 11.7 -> 2.1, exit 0."""
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["validate", str(recipe), "-o", "objectives.itc.weight=0"]) == 2
    assert capsys.readouterr().err == (
        "error: override -o objectives.itc.weight=0: every objective has weight 0 (itc), so the run would train "
        "nothing (the optimizer's weight decay alone would move the weights) (give an objective a weight above 0; to "
        "score the encoder as it is, use wsreid eval --zero-shot)\n")
    assert main(["validate", str(recipe), "-o", "objectives.itc.weight=0", "-o",
                 "objectives.late={name: itc, weight: 0.5}"]) == 0  # one is enough
    assert main(["run", str(recipe), "-o", "objectives.itc.weight=0"]) == 2
    assert "every objective has weight 0 (itc)" in capsys.readouterr().err


def test_an_evaluation_does_not_refuse_objectives_that_weigh_nothing(make_recipe, capsys):
    """The refusal's own advice, `wsreid eval --zero-shot`, refused the same recipe: an
    evaluation trains nothing, whatever the objectives weigh."""
    recipe = make_recipe("baselines/itc.yaml")
    capsys.readouterr()
    assert main(["eval", "--zero-shot", "--recipe", str(recipe), "--format", "json"]) == 0
    as_written = json.loads(capsys.readouterr().out)
    assert main(["eval", "--zero-shot", "--recipe", str(recipe), "-o", "objectives.itc.weight=0",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out) == as_written


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="fp16 is valid on a GPU")
def test_fp16_on_a_machine_without_gpu_is_refused_before_anything_and_named_where_it_is_set(
        make_recipe, tmp_path, capsys, monkeypatch):
    """It passed validate, and the run refused it only once its directory was made, the
    data loaded (or generated) and an init encoder pretrained, naming no line."""
    import wsreid.engine.session as session

    recipe = make_recipe("baselines/itc.yaml")
    assert main(["validate", str(recipe), "-o", "train.mixed_precision=fp16"]) == 0
    assert capsys.readouterr().err == (
        "warning: override -o train.mixed_precision=fp16: train.mixed_precision: fp16 needs a GPU, and this machine "
        "has none: wsreid run refuses it here (use 'bf16' or 'no' on CPU)\n")
    monkeypatch.setattr(session, "init_weights", lambda *a, **k: pytest.fail("reached the init encoder"))
    assert main(["run", str(recipe), "-o", "train.mixed_precision=fp16"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("error: override -o train.mixed_precision=fp16: train.mixed_precision: fp16 needs a GPU, "
                            "and this machine has none (accelerate would ignore it without a word; use 'bf16' or 'no' "
                            "on CPU)\n") and "dataset" not in captured.out
    assert not (tmp_path / "run").exists()


def test_validate_says_when_a_recipe_is_not_weakly_supervised(make_recipe, capsys):
    """`train.sampler: identity` (read as 'plain' beside pair_construction: identity) made
    a weakly supervised recipe supervised, said only on the run's last line."""
    recipe = make_recipe("dgia.yaml")
    assert main(["validate", str(recipe)]) == 0
    assert "NOT weakly supervised" not in capsys.readouterr().out
    assert main(["validate", str(recipe), "-o", "train.sampler=identity"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        ") [NOT weakly supervised: true identity labels via train.sampler: identity reads true person ids]")


def test_values_written_in_another_unit_are_warned_of(make_recipe, capsys):
    """A logit scale written as the temperature (50 for 0.02) trained on a flat loss, a
    percentile written as a fraction (0.9 for 90) was a no-op: both without a word."""
    recipe = make_recipe("dgia.yaml")
    assert main(["validate", str(recipe), "-o", "objectives.sdm_local.temperature=50", "-o",
                 "local_associations.lrc.threshold_percentile=0.9"]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert ("warning: override -o local_associations.lrc.threshold_percentile=0.9: local_associations.lrc."
            "threshold_percentile: 0.9 is the 0.9th percentile of the batch's cosines, not 90 %: so low a percentile "
            "stays under the fixed thresholds (image 0.7, text 0.7), which it only raises, and most likely changes "
            "nothing (write a percentage, e.g. 90)") in warnings
    assert ("warning: override -o objectives.sdm_local.temperature=50: objectives.sdm_local.temperature: 50 is tau, "
            "the divisor of the cosines, so the logits stay within +-0.02 and the loss barely moves; a logit scale of 50 "
            "is temperature 0.02 (the authors': 0.02, a scale of 50)") in warnings
    assert main(["validate", str(recipe), "-o", "objectives.itc.temperature=0.05", "-o",
                 "local_associations.lrc.threshold_percentile=90"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_extending_recipe_that_writes_what_does_not_do_what_it_reads_as_is_warned_of(tmp_path, capsys):
    """`local_associations: {}` kept every association of the extended recipe (an 'ITC
    only' row trained DGIA), `output_dir: ~` (YAML's null) sent a 9-minute run to runs/run:
    both silently."""
    from conftest import RECIPES

    recipe = tmp_path / "itc-only.yaml"
    recipe.write_text(f"extends: {RECIPES / 'dgia.yaml'}\noutput_dir: ~\nlocal_associations: {{}}\n"
                      "objectives: {itc: {name: itc}}\n")
    assert main(["validate", str(recipe)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    shown = recipe.relative_to(Path.cwd()) if recipe.is_relative_to(Path.cwd()) else recipe
    assert f"warning: {shown}:3: local_associations: {{}} changes nothing: mappings merge key by key, so every key " \
           "the extended recipe gives it stays (remove one with local_associations.<key>: null)" in warnings, warnings
    assert f"warning: {shown}:2: output_dir: null (or ~, which YAML reads as null) removes it, so without " \
           "--output-dir the run goes to the default 'runs/run' (for the home folder write a path: '~/runs/name')" \
        in warnings, warnings
    assert main(["validate", str(recipe), "-o", f"output_dir={tmp_path / 'runs'}"]) == 0  # set again: no warning
    assert "output_dir: null" not in capsys.readouterr().err


def test_a_view_nothing_reads_is_warned_of(make_recipe, capsys):
    """IASC on the ITC baseline made and encoded its asymmetric view at every step (1.6x
    the step time) and trained exactly as ITC, without a word."""
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["validate", str(recipe), "-o", "pair_construction.name=iasc"]) == 0
    assert capsys.readouterr().err == (
        "warning: override -o pair_construction.name=iasc: pair_construction: 'iasc' builds the view 'asymmetric', "
        "which no association or objective reads, yet it is made and encoded at every step (use pair_construction: "
        "{name: identity}, or add a component with view: asymmetric)\n")
    assert main(["validate", str(make_recipe("dgia.yaml"))]) == 0  # DGIA reads it (LRC and SDM on it)
    assert "builds the view" not in capsys.readouterr().err
