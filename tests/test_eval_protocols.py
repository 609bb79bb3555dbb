"""results/eval_protocols.py: every finished run of a study evaluated under degraded
queries and on another dataset by `wsreid eval` processes, tabulated per variant; a second
call reuses the saved evaluations."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_script
from wsreid.cli import main as wsreid_main

SCRIPT = Path(__file__).resolve().parents[1] / "results" / "eval_protocols.py"


def _script():
    return load_script(SCRIPT, "eval_protocols")


def test_study_runs_are_evaluated_tabulated_and_reused(make_recipe, tmp_path, monkeypatch, capsys):
    make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "batch_size": 16}})
    study = tmp_path / "study.yaml"
    study.write_text("base: recipe.yaml\nseeds: [0, 1]\nvariants:\n  - label: itc\n")
    runs = tmp_path / "study"
    assert wsreid_main(["ablate", str(study), "--output-dir", str(runs)]) == 0
    # a variant added after the study ran: listed, with no numbers
    study.write_text(study.read_text() + "  - label: later\n    overrides: {train.lr: 0.001}\n")

    out = tmp_path / "protocols"
    args = [str(study), "--runs", str(runs), "--out", str(out), "--ratios", "0.5",
            "--data", str(tmp_path / "recipe.yaml"), "--figure", str(out / "fig.png")]
    script = _script()
    assert script.main(args) == 0

    metrics = [json.loads((runs / "runs" / "itc" / f"seed-{s}" / "metrics.json").read_text())["test"] for s in (0, 1)]
    saved = [json.loads((out / "runs" / "itc" / f"seed-{s}" / "degraded.json").read_text()) for s in (0, 1)]
    assert [d["mAP"] for d in saved] == pytest.approx([m["mAP"] for m in metrics])  # the run's own checkpoint
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    itc = rows["itc"]
    assert itc["runs_done"] == "2" and itc["runs_total"] == "2"
    assert float(itc["clean_mAP_mean"]) == pytest.approx(statistics.fmean(m["mAP"] for m in metrics))
    assert float(itc["clean_mAP_std"]) == pytest.approx(statistics.stdev(m["mAP"] for m in metrics))
    masked = [d["query_mask"][0] for d in saved]
    assert all(m["ratio"] == 0.5 for m in masked)
    assert float(itc["mask0.5_mAP_mean"]) == pytest.approx(statistics.fmean(m["mAP"] for m in masked))
    assert float(itc["mask0.5_mAP_mean"]) != pytest.approx(float(itc["clean_mAP_mean"]))
    # the "other" dataset is the same data here: cross-dataset numbers equal the clean ones
    assert float(itc["cross_mAP_mean"]) == pytest.approx(float(itc["clean_mAP_mean"]))
    assert rows["later"]["runs_done"] == "0" and rows["later"]["clean_R1_mean"] == ""
    md = (out / "results.md").read_text()
    assert float(itc["mask0.5_top1_hub_share_mean"]) == pytest.approx(statistics.fmean(m["top1_hub_share"] for m in masked))
    assert "| itc | 2/2 |" in md and "| later | 0/2 | - |" in md
    # the figure: 6.4 x 4.2 inches at 120 dpi, with the itc line drawn in matplotlib's first
    # colour C0 (#1f77b4; measured: 993 pixels of it, the line and its markers)
    with Image.open(out / "fig.png") as fig:
        pixels = np.asarray(fig.convert("RGB"))
    assert pixels.shape == (504, 768, 3)
    assert int(np.all(pixels == (31, 119, 180), axis=-1).sum()) > 300
    assert "later seed 0: no finished run with weights" in capsys.readouterr().out

    # second call: nothing is evaluated again
    def no_process(*a, **k):
        raise AssertionError("evaluated again")

    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", no_process)
    (out / "results.csv").unlink()
    assert script.main(args) == 0
    assert {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}["itc"] == itc

    # --seeds and --variant narrow the table to what was asked, still from the saved files
    assert script.main([*args, "--seeds", "1", "--variant", "itc"]) == 0
    narrowed = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert list(narrowed) == ["itc"]
    assert narrowed["itc"]["runs_done"] == "1" and narrowed["itc"]["runs_total"] == "1"
    assert float(narrowed["itc"]["clean_mAP_mean"]) == pytest.approx(metrics[1]["mAP"])
    assert "--ratios 0.5" in (out / "results.md").read_text()
    assert "--seeds 1 --variant itc`" in (out / "results.md").read_text()
    with pytest.raises(SystemExit) as exc:
        script.main([*args, "--variant", "nope"])
    assert exc.value.code == 2
    assert "--variant 'nope': not a variant of" in capsys.readouterr().err

    # evaluations that fail leave '-' cells and exit 1 (it was 0); the default cross-dataset
    # recipe is the repository's, wherever the script is started from
    monkeypatch.setattr(subprocess, "run", real_run)
    assert Path(script.DEFAULT_DATA).is_file() and Path(script.DEFAULT_DATA).is_absolute()
    missing = tmp_path / "missing.yaml"
    assert script.main([str(study), "--runs", str(runs), "--out", str(tmp_path / "failing"), "--ratios", "0.5",
                        "--data", str(missing), "--variant", "itc", "--seeds", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 1 evaluation(s) failed, their cells are '-' (first: wsreid eval ") and str(missing) in err


REPO = Path(__file__).resolve().parents[1]
#: the committed evaluations of the studies behind docs/results.md: JSON files, no weights
COMMITTED_EVALUATIONS = sorted(p.parent for p in (REPO / "results" / "synth-small").glob("*-eval/results.md"))


def test_the_committed_evaluations_are_found():
    assert len(COMMITTED_EVALUATIONS) >= 15
    assert REPO / "results" / "synth-small" / "headline-web16-wu2-eval" in COMMITTED_EVALUATIONS


@pytest.mark.parametrize("committed", COMMITTED_EVALUATIONS, ids=lambda p: p.name)
def test_a_committed_evaluation_table_is_what_its_json_files_give(committed, tmp_path, monkeypatch, capsys):
    """Every number of a committed degraded-query / cross-dataset table (results.csv) comes
    back from the committed JSON files: the command its results.md names, with
    ``--report-only`` (nothing evaluated) and its output into a copy. The ratios are the
    table's columns (older tables were made before the command line named them)."""
    import re
    import shlex
    import shutil

    text = (committed / "results.md").read_text()
    command = shlex.split(re.search(r"^Made with `python results/eval_protocols\.py (.*)`\.$", text, re.M).group(1))
    ratios = re.search(r"^\| variant \| runs \| clean \| (.*) \| mAP \| hub % \| query cos \|$", text, re.M).group(1)
    ratios = ",".join(cell.removeprefix("r=") for cell in ratios.split(" | "))
    copy = tmp_path / committed.name
    shutil.copytree(committed, copy)
    for option in ("--out", "--ratios"):
        if option in command:
            del command[command.index(option):command.index(option) + 2]
    monkeypatch.chdir(REPO)  # the study paths are relative to the repository
    assert _script().main([*command, "--out", str(copy), "--ratios", ratios, "--report-only"]) == 0
    assert "$ wsreid eval" not in capsys.readouterr().out  # nothing evaluated

    def rows(path):
        return {row["variant"]: row for row in csv.DictReader(path.open())}

    before, after = rows(committed / "results.csv"), rows(copy / "results.csv")
    assert set(before) <= set(after)
    for variant, row in before.items():
        numbers = {key: value for key, value in row.items() if key != "variant"}
        assert {key: after[variant][key] for key in numbers} == numbers, variant
    assert sum(int(row["runs_done"]) for row in before.values()) >= 3  # a table of numbers, not of empty rows
    for variant in set(after) - set(before):  # a variant the study gained since: no evaluation
        assert after[variant]["runs_done"] == "0", variant


def test_report_only_lists_an_evaluation_it_does_not_have_as_missing(tmp_path, monkeypatch, capsys):
    """--report-only where some JSON files are gone (the zero-shot row's, one run's): those
    rows count only what is there, each gap said once, and nothing is evaluated."""
    import shutil

    copy = tmp_path / "eval"
    shutil.copytree(REPO / "results" / "synth-small" / "headline-web16-wu2-eval", copy)
    shutil.rmtree(copy / "zero-shot")
    shutil.rmtree(copy / "runs" / "DGIA" / "seed-1")
    monkeypatch.chdir(REPO)
    assert _script().main(["recipes/ablations/headline.yaml", "--runs", "runs/ablations/headline-wu2", "--out", str(copy),
                           "--zero-shot", "recipes/dgia.yaml", "--report-only"]) == 0
    out = capsys.readouterr().out
    assert f"zero-shot: no evaluation in {copy / 'zero-shot'}, skipped" in out
    assert f"DGIA seed 1: no evaluation in {copy / 'runs' / 'DGIA' / 'seed-1'}, skipped" in out
    assert "$ wsreid eval" not in out
    md = (copy / "results.md").read_text()
    assert "| zero-shot (initial encoder) | 0/1 | - |" in md and "| DGIA | 2/3 |" in md
    assert "| ITC (B) | 3/3 |" in md
