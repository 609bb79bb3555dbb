"""Mistakes the engine catches while it runs a recipe: each gives one line naming the
component's recipe label (or the hook) and its plugin, exit code 2, no traceback, and a
failure before the first epoch leaves no run directory behind. Also: ``--debug`` with every
command, a closed output pipe, dataset counts, paths stored resolved."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsreid.cli import main

FAULTS = {"plugins": ["wsreid_test_faults"]}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("one_element, shape", [(False, "[16]"), (True, "[1]")])
def test_an_objective_returning_a_non_scalar_is_named(make_recipe, tmp_path, test_plugins_path, capsys,
                                                      one_element, shape):
    # One element is not enough: the contract (and the conformance kit) asks for shape [].
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, "objectives": {
        "mine": {"name": "per-pair-loss", "one_element": one_element}}})
    assert main(["run", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert ("objectives.mine (objective 'per-pair-loss' from plugin 'wsreid_test_faults'): "
            f"loss() returned a tensor of shape {shape}, not a scalar tensor (shape [])") in line
    assert "loss.mean()" in line and "loss.squeeze()" in line


def test_a_trainable_objective_using_the_reserved_state_prefix_is_named_before_training(
        make_recipe, tmp_path, test_plugins_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, "objectives": {"mine": {"name": "reserved-state-name"}}})
    assert main(["run", str(recipe)]) == 2
    assert not (tmp_path / "run").exists()  # refused before the first epoch: no run directory left
    line = _one_error_line(capsys)
    assert ("objectives.mine (objective 'reserved-state-name' from plugin 'wsreid_test_faults'): state_tensors() "
            "names 'module.steps', but the prefix 'module.' is reserved for the module's own tensors") in line
    assert "rename that state tensor" in line


def test_a_relation_whose_weights_do_not_match_its_rows_is_named(make_recipe, test_plugins_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, "local_associations": {"near": {"name": "short-relation"}},
                                                "objectives": {"itc": {"name": "itc"},
                                                               "sdm": {"name": "sdm", "relation": "near"}}})
    assert main(["run", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert ("local_associations.near (local_association 'short-relation' from plugin 'wsreid_test_faults'): "
            "relate() returned a Relation whose weights are 16 x 17 for 16 image and 16 text rows") in line
    assert "weights must be Q x N" in line


SDM_NEAR = {"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}}
NEAR = "local_associations.near (local_association 'broken-association' from plugin 'wsreid_test_faults'): "
MINE = "objectives.mine (objective 'broken-loss' from plugin 'wsreid_test_faults'): "


@pytest.mark.parametrize("section, block, objectives, says", [
    *(("local_associations", {"name": "broken-association", "fault": fault}, SDM_NEAR, NEAR + says) for fault, says in [
        ("raises", "relate() failed at epoch 1: KeyError: 'asymetric'"),
        ("half-batch", "relate() returned a Relation whose weights are 8 x 8 for 8 image and 8 text rows and a "
                       "batch of 16"),
        ("bool-weights", "relate() returned torch.bool weights"),
        # trained an objective that reads the weights through its target, silently
        ("grad-weights", "relate() returned weights that carry gradient"),
        ("bad-diagnostics", "diagnostics() failed at epoch 1: TypeError: float() argument must be a string or a "
                            "real number, not 'NoneType'"),
        # was logged as nan in logs/epochs.csv, and drawn as a gap
        ("nan-diagnostics", "diagnostics() failed at epoch 1: ValueError: it returned 'precision': nan, not a finite "
                            "number (leave a name out of an epoch that has no value for it)"),
        ("bad-state", "state_tensors() failed at epoch 1: TypeError: its 'count' is a int, not a tensor"),
        # saved without a word before, then --resume blamed the recipe ("state for components not in the recipe")
        ("slash-state", "state_tensors() failed at epoch 1: ValueError: it names a tensor 'a/b': a state name is a "
                        "plain, non-empty string without '/' (the checkpoint could not be read back)")]),
    *(("local_associations", {"name": "broken-association", "fault": "none"}, objectives, MINE + says)
      for objectives, says in [
        ({"mine": {"name": "broken-loss"}}, "loss() failed at epoch 1: AttributeError: 'Relation' object has no "
                                            "attribute 'weight'"),
        ({"itc": None, "mine": {"name": "broken-loss", "fault": "no-grad"}}, "loss() returned a loss without gradient"),
        ({"mine": {"name": "broken-loss", "fault": "integer"}}, "loss() returned a torch.int64 tensor, not a float "
                                                                "one")]),
    ("global_associations", {"name": "fails-after-step"}, {"itc": {"name": "itc"}, "sdm": {"name": "sdm", "relation": "near"}},
     "global_associations.near (global_association 'fails-after-step' from plugin 'wsreid_test_faults'): "
     "after_step() failed at epoch 1: KeyError: 'image_memory'"),
])
def test_a_component_failing_while_training_is_named(make_recipe, test_plugins_path, capsys, section, block,
                                                      objectives, says):
    """Calls into components during training (relate, loss, after_step, diagnostics,
    state_tensors) and what they return are guarded like their construction: one line
    naming the recipe key, the component and its plugin, exit 2."""
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, section: {"near": block}, "objectives": objectives})
    assert main(["run", str(recipe), "--overwrite"]) == 2
    line = _one_error_line(capsys)
    assert says in line, line


def test_a_component_failing_to_load_its_state_on_resume_is_named(make_recipe, tmp_path, test_plugins_path, capsys,
                                                                  monkeypatch):
    """load_state_tensors() was called unguarded: a KeyError of a plugin reading an older
    run's state (the usual upgrade fault) was a traceback and exit 1."""
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, "plugins": ["wsreid_test_faults", "wsreid_test_hooks"],
                                                "local_associations": {"near": {"name": "broken-association",
                                                                                "fault": "bad-load"}},
                                                "objectives": SDM_NEAR, "train": {"epochs": 2}})
    run_dir = tmp_path / "cut"
    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "2")
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 130
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    capsys.readouterr()
    assert main(["run", str(recipe), "--output-dir", str(run_dir), "--resume"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {NEAR}load_state_tensors() of {run_dir / 'checkpoints' / 'epoch-0001'} failed: "
                           "KeyError: 'count_v2' (a fault of plugin 'wsreid_test_faults'; fix it, or leave the "
                           "component out; --debug shows the traceback)"), line
    assert (run_dir / "checkpoints" / "epoch-0001").is_dir()  # a resume keeps the run


def test_a_hook_failing_before_the_first_epoch_names_plugin_and_hook_and_leaves_no_directory(
        make_recipe, tmp_path, test_plugins_path, capsys, monkeypatch):
    monkeypatch.setenv("WSREID_TEST_FAIL_HOOK", "run_start")
    recipe = make_recipe("baselines/itc.yaml", FAULTS)
    assert main(["run", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: plugin 'wsreid_test_faults': hook wsreid_run_start failed before the first "
                           "epoch: ValueError: the observer's output folder is not writable")
    assert "--disable-plugin wsreid_test_faults" in line
    assert not (tmp_path / "run").exists()  # recipe.yaml, versions.json, logs/, tokenizer/: all gone


def test_a_hook_failing_after_the_run_finished_says_so_and_keeps_the_results(make_recipe, tmp_path, test_plugins_path,
                                                                               capsys, monkeypatch):
    """Before: 'hook wsreid_run_end failed at epoch 1', as if the run had stopped there."""
    monkeypatch.setenv("WSREID_TEST_FAIL_HOOK", "run_end")
    recipe = make_recipe("baselines/itc.yaml", FAULTS)
    assert main(["run", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: plugin 'wsreid_test_faults': hook wsreid_run_end failed after the run finished "
                           f"(its metrics.json is written in {tmp_path / 'run'}): ValueError: the observer's report "
                           "could not be sent"), line
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_component_failing_while_built_is_named_and_leaves_no_directory(make_recipe, tmp_path, test_plugins_path,
                                                                           capsys):
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, "local_associations": {"mine": {"name": "fails-to-build"}},
                                                "objectives": {"itc": {"name": "itc"},
                                                               "sdm": {"name": "sdm", "relation": "mine"}}})
    assert main(["run", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert ("local_associations.mine (local_association 'fails-to-build' from plugin 'wsreid_test_faults'): "
            "building it failed: ZeroDivisionError: division by zero") in line
    assert not (tmp_path / "run").exists()
    with pytest.raises(Exception, match="division by zero"):  # --debug: the traceback instead
        main(["--debug", "run", str(recipe)])


@pytest.mark.parametrize("argv", [["--debug", "plugins"], ["plugins", "--debug"], ["--debug", "schema"],
                                  ["--debug", "data", "check", "/nonexistent/x"],
                                  ["data", "--debug", "check", "/nonexistent/x"],
                                  ["data", "check", "/nonexistent/x", "--debug"]])
def test_debug_is_accepted_before_and_after_every_command(argv, capsys):
    """--debug anywhere: `plugins`/`schema` print and exit 0; `data check` of a missing folder
    re-raises that folder's DataError (the traceback) and prints no one-line error."""
    if "/nonexistent/x" in argv:
        from wsreid.errors import DataError

        with pytest.raises(DataError) as caught:  # --debug re-raises instead of printing one line
            main(argv)
        assert str(caught.value) == ("dataset root /nonexistent/x is not a directory (give the folder holding the "
                                     "annotation file and imgs/)")
        assert capsys.readouterr().err == ""
    else:
        assert main(argv) == 0
        assert capsys.readouterr().out


def test_a_plugin_that_fails_to_import_shows_its_file_and_line(make_recipe, test_plugins_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_broken"]})
    assert main(["validate", str(recipe)]) == 2
    line = _one_error_line(capsys)
    broken = Path(test_plugins_path) / "wsreid_test_broken.py"
    assert f"(at {broken}:3)" in line and "nonexistent_dependency" in line


@pytest.mark.parametrize("command", [["plugins"], ["schema"]])
def test_a_closed_output_pipe_ends_quietly(command):
    proc = subprocess.Popen([sys.executable, "-m", "wsreid", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()  # the reader (`| head`) is gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0
    assert "BrokenPipeError" not in err and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
@pytest.mark.parametrize("command", [["plugins"], ["schema"], ["validate", "recipes/dgia.yaml"]])
def test_output_to_a_full_disk_is_one_error_line(command):
    """``wsreid ... > file`` on a full disk: one line, exit 2 (it was OSError's traceback,
    exit 1, raised by the print of a long output or by the last flush of a short one)."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "wsreid", *command], stdout=full, stderr=subprocess.PIPE,
                              cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=300)
    assert done.returncode == 2
    assert done.stderr.decode() == ("error: cannot write the output to standard output: no space left on the device "
                                    "(free space where it goes, or send it elsewhere)\n")


def test_output_errors_are_told_from_the_commands_own_file_errors(monkeypatch, capsys):
    """Only a failing standard output is that line: the command's own OSError stays its own."""
    import errno

    import wsreid.cli.plugins as plugins_cli

    def failing_file(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/else")

    monkeypatch.setattr(plugins_cli, "cmd_schema", failing_file)
    with pytest.raises(OSError, match="somewhere"):
        main(["schema"])
    assert type(sys.stdout).__name__ != "_GuardedOutput"  # standard output is given back


def test_run_warns_when_evaluation_people_are_training_people(make_recipe, tmp_path, capsys, synth_tiny_root):
    """A dataset in a real format whose test split shares identities with train (a user's
    own split): the run says so before training, in one warning line, prints the count on
    the split's line and records it in metrics.json (``ids_in_train``)."""
    import shutil

    root = tmp_path / "own"
    shutil.copytree(synth_tiny_root, root)
    records = json.loads((root / "reid_raw.json").read_text())
    train_ids = sorted({r["id"] for r in records if r["split"] == "train"})
    test_ids = sorted({r["id"] for r in records if r["split"] == "test"})
    relabel = dict(zip(test_ids[:2], train_ids[:2]))  # two test people relabelled as training people
    for r in records:
        if r["split"] == "test":
            r["id"] = relabel.get(r["id"], r["id"])
    (root / "reid_raw.json").write_text(json.dumps(records))
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}})
    out = tmp_path / "run"
    assert main(["run", str(recipe), "-o", f"data={{name: cuhk-pedes, root: {root}}}", "--output-dir", str(out)]) == 0
    captured = capsys.readouterr()
    counts = json.loads((out / "metrics.json").read_text())["data_counts"]
    n_test = len(test_ids)  # two ids replaced by two others
    assert counts["test"]["ids"] == n_test and counts["test"]["ids_in_train"] == 2 and counts["val"]["ids_in_train"] == 0
    assert "captions  (2 ids also in train)" in captured.out
    warnings = [line for line in captured.err.splitlines() if "also appear in train" in line]
    assert warnings == [f"warning: 2 of the {n_test} test identities also appear in train: test numbers then include people "
                        "seen in training and are not comparable with the benchmarks' (which keep the splits' people "
                        "apart); `wsreid data check` names them"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_training_image_that_fails_in_training_is_named_with_its_pair(make_recipe, tmp_path, capsys, synth_tiny_root,
                                                                       num_workers):
    """With the load-time checks off (check_images: none), a broken training image stops
    the run in epoch 1 with one line naming the file and its training pair, also from a
    loader worker process."""
    import shutil

    root = tmp_path / "own"
    shutil.copytree(synth_tiny_root, root)
    (root / "synth_meta.json").unlink()  # a dataset of one's own, not a generated one
    records = json.loads((root / "reid_raw.json").read_text())
    first_train = next(r for r in records if r["split"] == "train")
    (root / "imgs" / first_train["file_path"]).write_bytes(b"not an image")
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "num_workers": num_workers}})
    out = tmp_path / "run"
    assert main(["run", str(recipe), "-o", f"data={{name: cuhk-pedes, root: {root}, check_images: none}}",
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    # the image's two captions are pairs 0 and 1: whichever the sampler drew first is named
    assert re.fullmatch(re.escape(f"error: image {root / 'imgs' / first_train['file_path']} (split train, training pair ")
                        + r"[01]\) cannot be decoded \(UnidentifiedImageError: .*\) \(replace the file with an intact "
                        r"copy or remove its record\)", lines[0]), lines[0]
    assert not out.exists()  # nothing left half-written


def test_run_prints_and_records_the_dataset_counts_and_stores_resolved_paths(make_recipe, tmp_path, capsys,
                                                                             synth_tiny_root, monkeypatch):
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}})
    # a relative data.root, written relative to the recipe file
    text = recipe.read_text().replace(str(synth_tiny_root), os.path.relpath(synth_tiny_root, recipe.parent))
    recipe.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "chosen"
    assert main(["run", str(recipe), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    counts = json.loads((out / "metrics.json").read_text())["data_counts"]
    assert set(counts) == {"train", "val", "test"} and set(counts["train"]) == {"ids", "images", "captions"}
    assert counts["val"]["ids_in_train"] == counts["test"]["ids_in_train"] == 0  # the splits' people are apart
    for split, c in counts.items():
        assert f"  {split:<5} {c['ids']:>6} ids {c['images']:>7} images {c['captions']:>7} captions" in printed
    assert counts["train"]["captions"] >= counts["train"]["images"] >= counts["train"]["ids"] > 0
    saved = (out / "recipe.yaml").read_text()
    assert f"root: {synth_tiny_root}\n" in saved  # stored absolute
    assert f"output_dir: {out}\n" in saved  # the directory the run used, not the recipe's
    # the saved recipe evaluates from another directory
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"]["root"] == str(synth_tiny_root) and 0 <= result["R1"] <= 100


def test_a_failed_run_closes_its_logs_before_removing_its_directory(make_recipe, tmp_path, test_plugins_path,
                                                                     capsys, monkeypatch):
    """A run that fails in its first epoch, after its first logged step, is removed; its
    TensorBoard writer is closed first (its thread wrote on into the removed folder and
    printed a FileNotFoundError traceback now and then)."""
    from wsreid.engine.logs import RunLogger

    closed = []
    real_close = RunLogger.close

    def close(self, **kwargs):
        closed.append((self._tb is not None, (tmp_path / "run").exists()))
        real_close(self, **kwargs)

    monkeypatch.setattr(RunLogger, "close", close)
    recipe = make_recipe("baselines/itc.yaml", {**FAULTS, "local_associations": {"near": {
        "name": "broken-association", "fault": "bad-state"}}, "objectives": SDM_NEAR})
    assert main(["run", str(recipe)]) == 2
    assert "state_tensors() failed at epoch 1" in _one_error_line(capsys)
    assert closed == [(True, True)]  # the open writer closed, while its folder still existed
    assert not (tmp_path / "run").exists()


def test_freezing_every_parameter_is_refused_before_training_and_freezing_one_tower_trains(make_recipe, tmp_path,
                                                                                         capsys):
    """train.lr_factors {'encoder.*': 0} left the optimizer an empty list (a ValueError
    traceback). Freezing the text tower alone trains, and the gradient checks of relations
    and losses look at what carries gradient (the image features), so LRC and SDM pass."""
    recipe = make_recipe("dgia.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    out = tmp_path / "frozen"
    assert main(["run", str(recipe), "-o", 'train.lr_factors={"encoder.*": 0}', "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "error: override -o train.lr_factors={\"encoder.*\": 0}: train.lr_factors freezes every parameter "
        "({'encoder.*': 0}): there is nothing to train (leave some "
        "parameters trainable (a factor above 0), or evaluate the model with wsreid eval --zero-shot instead of "
        "training it)") and "Traceback" not in err
    assert not out.exists()
    out = tmp_path / "text-frozen"
    assert main(["run", str(recipe), "-o", 'train.lr_factors={"encoder.clip.text_model.*": 0}',
                 "--output-dir", str(out)]) == 0, capsys.readouterr().err
    assert (out / "metrics.json").is_file()


def test_debug_keeps_a_user_errors_exit_status():
    """--debug shows the traceback and the command still exits 2 (it exited 1)."""
    done = subprocess.run([sys.executable, "-m", "wsreid", "--debug", "data", "check", "/nonexistent/x"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and done.stderr.rstrip().splitlines()[-1].startswith(
        "wsreid.errors.DataError: dataset root /nonexistent/x")


@pytest.mark.parametrize("argv", [["eval", "RUN"], ["search", "RUN", "a man", "--images", "x"],
                                  ["data", "check", "x"], ["convert-weights", "a.pt", "out"]])
def test_single_process_commands_are_refused_under_several_processes(argv, monkeypatch, capsys):
    """Under torchrun each process did the whole evaluation (or search, generation) and
    printed it: refused in one line; only run trains on several processes."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # as torchrun sets them
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: wsreid {argv[0]} runs in one process: this one was launched as one of 2 (WORLD_SIZE and MASTER_ADDR "
        f"are set), and each would do all of it (run wsreid {argv[0]} without torchrun (from a job script that "
        f"exports the launcher's variables: env -u WORLD_SIZE wsreid {argv[0]} ...); only wsreid run trains on several "
        "processes)\n")


def test_a_world_size_left_in_the_shell_does_not_stop_a_single_process_command(monkeypatch, capsys):
    """Without the launcher's MASTER_ADDR a WORLD_SIZE is no launch: eval and the others run."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(["data", "check", "/nonexistent/x"]) == 2
    assert capsys.readouterr().err.startswith("error: dataset root /nonexistent/x is not a directory")



def test_values_found_wrong_during_a_run_cite_the_recipe_line(make_recipe, tmp_path, capsys):
    """A batch larger than the training set and an lr_factors glob that matches no
    parameter are found once the data and the model are built; their line named the key
    but not where it was set (validate's errors cite file:line). They now cite the line
    of the file that set them, or the override; a glob's hint lists the names 3 parts deep."""
    base = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}}, name="tiny.yaml")
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"extends: {base}\n"
                    f"output_dir: {tmp_path / 'mine'}\n"
                    "train:\n"
                    "  batch_size: 100000\n"
                    "  lr_factors:\n"
                    "    encoder.clip.vision_model.*: 0.5\n"
                    "    encoder.clip.text.*: 2\n")
    assert main(["run", str(mine)]) == 2
    assert _one_error_line(capsys) == (
        f"error: {mine}:4: train.batch_size 100000 exceeds the 292 training pairs (lower train.batch_size)")
    assert main(["run", str(mine), "-o", "train.batch_size=16"]) == 2
    assert _one_error_line(capsys) == (
        f"error: {mine}:7: train.lr_factors: 'encoder.clip.text.*' matches no parameter of this run (did you mean "
        "'encoder.clip.text_model.*'? parameter names start with: encoder.clip.logit_scale, encoder.clip.text_model.*, "
        "encoder.clip.text_projection.*, encoder.clip.vision_model.*, encoder.clip.visual_projection.*)")
    assert main(["run", str(base), "-o", "train.batch_size=100000"]) == 2
    assert _one_error_line(capsys) == ("error: override -o train.batch_size=100000: train.batch_size 100000 exceeds "
                                       "the 292 training pairs (lower train.batch_size)")
    assert not (tmp_path / "mine").exists() and not (tmp_path / "run").exists()
