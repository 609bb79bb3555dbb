"""`wsreid ablate` end to end on a tiny study: 2 variants x 2 seeds (1 epoch, tiny encoder)
plus a variant that fails while running (its run directory holds another folder's files);
a second invocation retrains nothing; an interrupted run is resumed. A variant whose recipe
is invalid stops the study before anything trains (tests/test_ablate_study.py)."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from wsreid.cli import main
from wsreid.engine.run import Run


def test_tiny_study_runs_tabulates_and_resumes(make_recipe, tmp_path, capsys, monkeypatch):
    make_recipe("baselines/supervised.yaml", {"train": {"epochs": 1, "batch_size": 64}})
    study = tmp_path / "study.yaml"
    study.write_text("""\
base: recipe.yaml
seeds: [0, 1]
reference: itc
variants:
  - label: itc
    overrides: {local_associations.true_identity: null, objectives.sdm_identity: null}
  - label: supervised
  - label: broken
""")
    out = tmp_path / "study"
    for seed in (0, 1):  # valid, but the run directories hold something else: each run fails when it starts
        (out / "runs" / "broken" / f"seed-{seed}").mkdir(parents=True)
        (out / "runs" / "broken" / f"seed-{seed}" / "notes.txt").write_text("not a run")
    steps = []
    real_step = Run.train_step
    monkeypatch.setattr(Run, "train_step", lambda self, *a: steps.append(1) or real_step(self, *a))

    assert main(["ablate", str(study), "--output-dir", str(out)]) == 1  # 1: some run failed
    captured = capsys.readouterr()
    assert steps, "the first invocation trains"
    runs = {(v, s): out / "runs" / v / f"seed-{s}" for v in ("itc", "supervised") for s in (0, 1)}
    metrics = {k: json.loads((d / "metrics.json").read_text()) for k, d in runs.items()}
    assert all(m["epochs"] == 1 for m in metrics.values())
    assert metrics[("itc", 0)]["test"] != metrics[("itc", 1)]["test"]  # the seed reaches the run
    assert metrics[("itc", 0)]["weakly_supervised"] and not metrics[("supervised", 0)]["weakly_supervised"]
    assert "[NOT weakly supervised]" in captured.out  # the `wsreid run` print of the supervised runs
    assert sorted(p.name for p in (out / "runs" / "broken").rglob("*")) == ["notes.txt", "notes.txt", "seed-0", "seed-1"]

    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    for variant in ("itc", "supervised"):
        values = [metrics[(variant, s)]["test"]["mAP"] for s in (0, 1)]
        assert float(rows[variant]["mAP_mean"]) == pytest.approx(statistics.fmean(values))
        assert float(rows[variant]["mAP_std"]) == pytest.approx(statistics.stdev(values))
        assert rows[variant]["status"] == "ok" and rows[variant]["runs_done"] == "2"
    r1 = {v: statistics.fmean(metrics[(v, s)]["test"]["R1"] for s in (0, 1)) for v in ("itc", "supervised")}
    assert float(rows["supervised"]["R1_delta"]) == pytest.approx(r1["supervised"] - r1["itc"])
    assert rows["supervised"]["weakly_supervised"] == "false"
    assert rows["broken"]["status"] == (f"2/2 failed (seed 0: output directory {out}/runs/broken/seed-0 exists and "
                                        "is not a wsreid run (choose another --output-dir; wsreid never deletes "
                                        "foreign directories))") and rows["broken"]["runs_done"] == "0"
    md = (out / "results.md").read_text()
    assert "| supervised [NOT weakly supervised] | 2/2 |" in md and "| broken | 0/2 |" in md
    assert (out / "results.png").stat().st_size > 1000

    # Second invocation: finished runs are kept as they are, nothing is trained.
    mtimes = {k: (d / "metrics.json").stat().st_mtime_ns for k, d in runs.items()}
    steps.clear()
    assert main(["ablate", str(study), "--output-dir", str(out)]) == 1
    assert steps == [] and {k: (d / "metrics.json").stat().st_mtime_ns for k, d in runs.items()} == mtimes
    assert capsys.readouterr().err.count("finished earlier, kept") == 4

    # An interrupted run (its checkpoint written, no metrics.json yet) is resumed: it finishes
    # without training again and gives the numbers of the uninterrupted run.
    (runs[("itc", 1)] / "metrics.json").unlink()
    assert main(["ablate", str(study), "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "itc seed 1: resuming" in err and err.count("finished earlier, kept") == 3 and steps == []
    assert json.loads((runs[("itc", 1)] / "metrics.json").read_text())["test"] == metrics[("itc", 1)]["test"]


def test_parallel_study_runs_each_training_in_its_own_process(make_recipe, tmp_path, capsys):
    """``--jobs 2``: two `python -m wsreid run` children at once, their output in
    OUTPUT_DIR/logs/, the table in study order; a second invocation reruns nothing."""
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "batch_size": 64}})
    study = tmp_path / "study.yaml"
    study.write_text("""\
base: recipe.yaml
seeds: [3]
variants:
  - label: lr small
    overrides: {train.lr: 1.0e-5}
  - label: lr large
    overrides: {train.lr: 1.0e-3}
  - label: broken
""")
    out = tmp_path / "study"
    (out / "runs" / "broken" / "seed-3").mkdir(parents=True)  # not a run: the run fails when it starts
    (out / "runs" / "broken" / "seed-3" / "notes.txt").write_text("not a run")
    assert main(["ablate", str(study), "--output-dir", str(out), "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    metrics = {v: json.loads((out / "runs" / v / "seed-3" / "metrics.json").read_text())
               for v in ("lr_small", "lr_large")}
    assert metrics["lr_small"]["test"] != metrics["lr_large"]["test"]
    for slug in ("lr_small", "lr_large"):
        log = (out / "logs" / f"{slug}-seed-3.log").read_text()
        assert "R1" in log  # the child's own report went to its log, not to our stderr
    assert "lr small seed 3: finished" in err and "broken seed 3: FAILED" in err
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["variant"] for r in rows] == ["lr small", "lr large", "broken"]
    assert [r["status"] for r in rows][:2] == ["ok", "ok"]
    assert main(["ablate", str(study), "--output-dir", str(out), "-j", "2"]) == 1
    assert capsys.readouterr().err.count("finished earlier, kept") == 2


def test_the_runs_of_a_study_killed_with_sigkill_stop_with_it(make_recipe, tmp_path):
    """``wsreid ablate -j 2`` SIGKILLed (or ended by the out-of-memory killer) left its
    ``wsreid run`` children training as orphans, holding their run directories, so the
    study started again refused them as in use. On Linux each child now gets SIGTERM when
    the study's process ends and stops as on any SIGTERM: its lock released, its
    checkpoints kept, or its directory removed when it had none (its stop line is lost
    with the study, which wrote its log)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    make_recipe("baselines/itc.yaml", {"train": {"epochs": 500}})
    study = tmp_path / "study.yaml"
    study.write_text("base: recipe.yaml\nseeds: [0]\nvariants:\n  - label: a\n  - label: b\n"
                     "    overrides: {train.lr: 1.0e-3}\n")
    out = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "wsreid", "ablate", str(study), "--output-dir", str(out), "-j", "2"],
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    locks = [out / "runs" / v / "seed-0" / ".wsreid-lock" for v in ("a", "b")]
    try:
        deadline = time.monotonic() + 300
        while not all(lock.exists() for lock in locks):
            assert proc.poll() is None and time.monotonic() < deadline, "the study's runs did not start"
            time.sleep(0.2)  # both children hold their run directory
        children = [json.loads(lock.read_text())["pid"] for lock in locks]
    finally:
        proc.kill()  # SIGKILL: the study cannot pass anything on
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 120  # (a few seconds; a loaded machine is slower)
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    stragglers = [pid for pid in children if alive(pid)]
    for pid in stragglers:
        os.kill(pid, signal.SIGKILL)
    assert stragglers == []
    for lock in locks:  # released: the study started again resumes the run (or starts it, if stopped before
        assert not lock.exists()  # its first checkpoint: then its directory is removed, as after any such stop)
        assert not (lock.parent / "metrics.json").exists()
        assert not lock.parent.exists() or (lock.parent / "checkpoints" / "latest").exists()
