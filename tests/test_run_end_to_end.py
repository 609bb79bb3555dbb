"""End-to-end runs through the CLI on generated data: what a user runs, only tiny."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from wsreid.cli import main

KEYS = {"R1", "R5", "R10", "mAP", "mINP"}


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_itc_baseline_trains_and_writes_the_run(make_recipe, tmp_path, capsys):
    recipe = make_recipe("baselines/itc.yaml")
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe)]) == 0
    m = _metrics(run_dir)
    assert set(m["test"]) == KEYS and all(0 <= v <= 100 for v in m["test"].values())
    assert m["test"]["R1"] <= m["test"]["R5"] <= m["test"]["R10"]
    assert m["weakly_supervised"] is True and m["epochs"] == 2
    assert [h["epoch"] for h in m["history"]] == [1, 2] and all("val" in h for h in m["history"])
    assert m["best_epoch"] == max(m["history"], key=lambda h: h["val"]["R1"])["epoch"]
    for name in ("recipe.yaml", "versions.json", "curves.png", "logs/epochs.csv", "logs/steps.csv",
                 "checkpoints/latest", "checkpoints/best/model.safetensors", "tokenizer"):
        assert (run_dir / name).exists(), name
    rows = list(csv.DictReader((run_dir / "logs" / "epochs.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[0]["loss/itc"]) > 0 and float(rows[1]["val/R1"]) == pytest.approx(m["history"][1]["val"]["R1"])
    # The best checkpoint is the epoch of the highest validation R1 in the logs (the first on ties),
    # not whichever epoch came last: this tiny run peaks at epoch 1, so best/ must hold epoch 1.
    val_r1 = [float(r["val/R1"]) for r in rows]
    peak = val_r1.index(max(val_r1)) + 1
    assert peak == 1 and val_r1[1] < val_r1[0], val_r1  # the fixture's premise: best != last
    best = json.loads((run_dir / "checkpoints" / "best" / "state.json").read_text())
    assert best["epoch"] == m["best_epoch"] == peak and best["split"] == "val" and best["R1"] == val_r1[0]
    best_weights = load_file(str(run_dir / "checkpoints" / "best" / "model.safetensors"))
    last_weights = load_file(str(run_dir / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert best_weights.keys() == last_weights.keys()
    assert any(not torch.equal(best_weights[k], last_weights[k]) for k in best_weights)
    out = capsys.readouterr().out
    assert "test (best validation R1" in out and f"R1 {m['test']['R1']:.2f}" in out

    # The resolved recipe reproduces the run exactly (CPU is deterministic here).
    assert main(["run", str(run_dir / "recipe.yaml"), "--output-dir", str(tmp_path / "again")]) == 0
    assert _metrics(tmp_path / "again")["test"] == m["test"]

    # `wsreid eval` of the run directory evaluates the selected (best) checkpoint: same test metrics.
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert {k: evaluated[k] for k in KEYS} == pytest.approx(m["test"])


def test_resume_after_interrupt_matches_uninterrupted_run(make_recipe, tmp_path, test_plugins_path, monkeypatch, capsys):
    recipe = make_recipe("dgia.yaml", {"plugins": ["wsreid_test_hooks"], "train": {"epochs": 3}})
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["run", str(recipe), "--output-dir", str(full)]) == 0
    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "3")
    assert main(["run", str(recipe), "--output-dir", str(cut)]) == 130
    err = capsys.readouterr().err
    assert "last complete checkpoint: epoch-0002" in err and "--resume" in err
    assert not (cut / "metrics.json").exists()
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    assert main(["run", str(recipe), "--output-dir", str(cut), "--resume"]) == 0
    a, b = _metrics(full), _metrics(cut)
    assert b["test"] == a["test"] and b["history"] == a["history"]
    # memory banks and weights identical bit for bit
    for name in ("model.safetensors", "components.safetensors"):
        ta = load_file(str(full / "checkpoints" / "epoch-0003" / name))
        tb = load_file(str(cut / "checkpoints" / "epoch-0003" / name))
        assert ta.keys() == tb.keys() and all((ta[k] == tb[k]).all() for k in ta)
    rows = list(csv.DictReader((cut / "logs" / "epochs.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_interrupt_before_the_first_checkpoint_suggests_a_command_that_works(make_recipe, tmp_path, test_plugins_path,
                                                                              monkeypatch, capsys):
    """Cut in epoch 2 with checkpoints every 3 epochs: there is nothing to resume, so the
    message suggests starting again in place (--overwrite), and that command runs."""
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_hooks"],
                                                "train": {"epochs": 2, "checkpoint_every": 3}})
    run_dir = tmp_path / "cut"
    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "2")
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint was written yet" in err[0] and "--resume" not in err[0], err
    suggested = err[0].split("start again with: ")[1].split()
    assert suggested[:2] == ["wsreid", "run"] and suggested[-1] == "--overwrite"
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    assert main(suggested[1:]) == 0
    assert _metrics(run_dir)["test"]["R1"] > 0


def test_dgia_recipe_fills_memory_and_logs_diagnostics(make_recipe, tmp_path, test_plugins_path):
    import wsreid_test_hooks

    recipe = make_recipe("dgia.yaml", {"plugins": ["wsreid_test_hooks"]})
    wsreid_test_hooks.CALLS.clear()
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "run"
    comps = load_file(str(run_dir / "checkpoints" / "epoch-0002" / "components.safetensors"))
    banks = {k: v for k, v in comps.items() if k.startswith("global_associations/gsrc/")}
    assert banks, sorted(comps)
    image_bank = next(v for k, v in banks.items() if "image" in k and v.dim() == 2)
    # every pair seen in a full batch has a filled (non-zero) memory row
    assert (image_bank.float().abs().sum(1) > 0).float().mean() > 0.5
    rows = list(csv.DictReader((run_dir / "logs" / "epochs.csv").open()))
    assert any(k.startswith("diag/lrc/") for k in rows[0])
    assert any(k.startswith("diag/gsrc/") for k in rows[1])
    assert rows[0]["loss/sdm_global"] == "" and float(rows[1]["loss/sdm_global"]) >= 0  # epoch 1 only fills memory
    # The lifecycle hooks in order, with the arguments of docs/hooks.md: epoch_end gets the row
    # written to logs/epochs.csv, after_evaluation each split's metrics as metrics.json holds
    # them (the final test evaluation at the last epoch), run_end the content of metrics.json.
    m = _metrics(run_dir)
    logged = [{k: float(v) for k, v in r.items() if k != "epoch" and v != ""} for r in rows]
    assert {"loss/total", "lr", "seconds", "val/R1"} <= set(logged[0]) and "loss/sdm_global" in logged[1]
    assert wsreid_test_hooks.CALLS == [
        ("run_start",),
        ("epoch_start", 1), ("evaluation", "val", 1, m["history"][0]["val"]), ("epoch_end", 1, logged[0]),
        ("epoch_start", 2), ("evaluation", "val", 2, m["history"][1]["val"]), ("epoch_end", 2, logged[1]),
        ("evaluation", "test", 2, m["test"]),
        ("run_end", m),
    ]
    for e in (0, 1):  # epoch_end's val/<metric> are the metrics after_evaluation got in that epoch
        assert {k: logged[e][f"val/{k}"] for k in KEYS} == m["history"][e]["val"]


def test_lrc_relating_every_pair_is_warned_once(make_recipe, tmp_path, capsys, monkeypatch, test_plugins_path):
    """Thresholds of -1 relate every pair of every batch: the base view's LRC warns once, at
    epoch 1, and logs a related share of 100 %; the asymmetric view's LRC, at thresholds of
    1.0, relates nothing and stays silent. The run is cut during epoch 2 and resumed: the
    checkpoint remembers the warning, so the resumed epoch 2 does not print it again."""
    recipe = make_recipe("dgia.yaml", {"plugins": ["wsreid_test_hooks"], "local_associations": {
        "lrc": {"name": "lrc", "modalities": "image+text", "threshold_image": -1.0, "threshold_text": -1.0},
        "lrc_asymmetric": {"name": "lrc", "view": "asymmetric", "threshold_image": 1.0, "threshold_text": 1.0}}})
    monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", "2")
    assert main(["run", str(recipe)]) == 130
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: epoch 1: lrc (view base, thresholds -1.0 / -1.0) related 100.0 % of each batch's pairs: it no "
        "longer selects neighbours and its objective only smooths the labels; a lower train.lr, higher "
        "thresholds or a threshold_percentile keep it selective (docs/results.md, \"The default: the learning "
        "rate\")"], err
    monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT")
    assert main(["run", str(recipe), "--resume"]) == 0
    err = capsys.readouterr().err
    assert not [line for line in err.splitlines() if line.startswith("warning:")], err
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "epochs.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [float(r["diag/lrc/related_share"]) for r in rows] == [100.0, 100.0]
    assert [float(r["diag/lrc_asymmetric/related_share"]) for r in rows] == [0.0, 0.0]


def test_lrc_threshold_percentile_caps_the_related_share(make_recipe, tmp_path):
    """The same thresholds of -1 with ``threshold_percentile: 90``: the applied thresholds
    follow the batch (logged, above -1) and LRC relates at most 10 % of a batch's pairs in
    every epoch, not 100 %."""
    recipe = make_recipe("dgia.yaml", {"local_associations": {
        "lrc": {"name": "lrc", "modalities": "image+text", "threshold_image": -1.0, "threshold_text": -1.0,
                "threshold_percentile": 90}}})
    assert main(["run", str(recipe)]) == 0
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "epochs.csv").open()))
    shares = [float(r["diag/lrc/related_share"]) for r in rows]
    assert len(shares) == 2 and all(0.0 < s <= 10.0 for s in shares), shares
    assert all(-1.0 < float(r["diag/lrc/threshold_image"]) <= 1.0 for r in rows)
    assert all(-1.0 < float(r["diag/lrc/threshold_text"]) <= 1.0 for r in rows)
    assert "diag/lrc_asymmetric/threshold_image" not in rows[0]  # the fixed-threshold component logs none


def test_runs_in_one_process_may_differ_in_mixed_precision(make_recipe, tmp_path, capsys):
    """accelerate's settings are process-wide singletons; a second run in the same process
    (the init encoder's pretraining, in-process `wsreid ablate`) gets its own precision."""
    from accelerate.state import AcceleratorState

    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}})
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "fp32")]) == 0
    assert AcceleratorState().mixed_precision == "no"
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "bf16"), "-o", "train.mixed_precision=bf16"]) == 0
    assert AcceleratorState().mixed_precision == "bf16"
    capsys.readouterr()


def test_external_plugin_component_is_used_by_name(make_recipe, tmp_path, test_plugins_path):
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_external"], "train": {"epochs": 1},
                                                "objectives": {"itc": None, "half": {"name": "half-itc", "factor": 0.25}}})
    assert main(["run", str(recipe)]) == 0
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "epochs.csv").open()))
    assert "loss/half" in rows[0] and "loss/itc" not in rows[0]
    versions = json.loads((tmp_path / "run" / "versions.json").read_text())
    assert {"kind": "objective", "name": "half-itc", "provider": "wsreid_test_external",
            "distribution": None, "version": None} in versions["components"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "train.lr=-1"], "train.lr"),
        pytest.param(["-o", "train.mixed_precision=fp16"], "fp16 needs a GPU",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is valid on a GPU")),
        (["-o", "objectives.itc.name=itcc"], "did you mean 'itc'"),
        (["-o", "train.batch_size=100000"], "exceeds"),
        (["-o", "data.name=cuhk-pedes", "-o", "data.root=/nonexistent/dir"], "/nonexistent/dir"),
    ],
)
def test_user_errors_are_one_line_and_leave_no_run_dir(make_recipe, tmp_path, capsys, args, message):
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["run", str(recipe), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_output_dir_holding_a_run_is_refused(make_recipe, tmp_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})  # no schedule warning
    assert main(["run", str(recipe)]) == 0
    before = (tmp_path / "run" / "metrics.json").read_text()
    assert main(["run", str(recipe)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").read_text() == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["run", str(recipe), "--output-dir", str(foreign), "--overwrite"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    # a run that starts from the run it would overwrite is refused before anything is deleted
    capsys.readouterr()
    assert main(["run", str(recipe), "-o", f"init={{run: {tmp_path / 'run'}}}", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would delete the weights it starts from" in err, err
    assert (tmp_path / "run" / "metrics.json").read_text() == before
    # an output directory that is a file, or lies under one, is one line too
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert main(["run", str(recipe), "--output-dir", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: output directory {target} ") and err.count("\n") == 1, err
    assert (tmp_path / "afile").read_text() == "x"
    assert main(["run", str(recipe), "--overwrite"]) == 0
