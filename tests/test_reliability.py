"""Faults during training: SIGKILL and resume, non-finite losses."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from wsreid.cli import main


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_sigkill_then_resume_equals_uninterrupted_run(make_recipe, tmp_path):
    recipe = make_recipe("dgia.yaml", {"train": {"epochs": 4, "log_every": 1}})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run([sys.executable, "-m", "wsreid", "run", str(recipe), "--output-dir", str(full)],
                   check=True, capture_output=True, env=env, timeout=600)
    # kill at a random logged step of epochs 2-3 (18 steps per epoch here), never at a boundary we chose
    target = random.Random(os.getpid()).randint(20, 52)
    proc = subprocess.Popen([sys.executable, "-m", "wsreid", "run", str(recipe), "--output-dir", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    steps = cut / "logs" / "steps.csv"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if steps.exists() and len(steps.read_text().splitlines()) - 1 >= target:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "metrics.json").exists(), "the run finished before it could be killed"
    subprocess.run([sys.executable, "-m", "wsreid", "run", str(recipe), "--output-dir", str(cut), "--resume"],
                   check=True, capture_output=True, env=env, timeout=600)
    a, b = _metrics(full), _metrics(cut)
    assert b["test"] == a["test"] and b["history"] == a["history"]


def test_non_finite_loss_stops_with_step_and_objective(make_recipe, tmp_path, test_plugins_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_external"],
                                                "objectives": {"bad": {"name": "nan-after", "epoch": 2}}})
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: objectives.bad (objective 'nan-after' from plugin 'wsreid_test_external'): gave a "
                          "non-finite loss (nan) at epoch 2, step ")  # named with its plugin, as other faults are
    assert err.rstrip().endswith("is intact; a lower train.lr, or the objective's inputs (a log or division of 0), "
                                 "are the usual causes)")
    assert "epoch-0001" in err and err.count("\n") == 1
    from wsreid.engine.checkpoint import latest_checkpoint, load_checkpoint

    last = latest_checkpoint(tmp_path / "run")
    assert last.name == "epoch-0001"
    assert load_checkpoint(last)["state"]["epoch"] == 1  # intact and loadable
