"""`wsreid ablate` without training: study files, planning, aggregation of fabricated
metrics.json files, and failure handling with a stand-in for the training call."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import torch

from wsreid.ablate import load_study, plan_runs, run_study, run_state
from wsreid.errors import StudyError, UserError
from wsreid.recipe.merge import parse_override
from wsreid.cli import main

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _metrics(r1: float, weakly: bool = True) -> dict:
    test = {"R1": r1, "R5": r1 + 10, "R10": r1 + 20, "mAP": r1 / 2, "mINP": r1 / 4}
    out = {"test": test, "weakly_supervised": weakly}
    if not weakly:
        out["note"] = "NOT weakly supervised: uses true identity labels via local_associations/true_identity"
    return out


@pytest.fixture
def study_file(tmp_path):
    (tmp_path / "recipes").mkdir()
    _write(tmp_path / "recipes" / "base.yaml", f"extends: {REPO / 'recipes' / 'dgia.yaml'}\n")
    return _write(tmp_path / "study.yaml", """\
base: recipes/base.yaml
seeds: [0, 1, 2]
reference: A
output_dir: out
variants:
  - label: A
  - label: B+x
    overrides: {objectives.sdm_global: null, global_associations.gsrc: null, train.lr: 1.0e-4}
  - label: C sup
  - label: D
""")


def test_plan_layers_overrides_in_order_and_names_run_dirs(study_file, tmp_path):
    loaded = load_study(study_file)
    assert loaded.base == (tmp_path / "recipes" / "base.yaml").resolve() and loaded.reference == "A"
    runs = plan_runs(loaded, tmp_path / "out", ["train.epochs=1"])
    assert [(r.label, r.seed) for r in runs][:4] == [("A", 0), ("A", 1), ("A", 2), ("B+x", 0)]
    assert len(runs) == 12
    b0 = runs[3]
    assert b0.run_dir == tmp_path / "out" / "runs" / "B+x" / "seed-0"
    assert runs[6].run_dir.parent.name == "C_sup"
    assert b0.overrides == ["objectives.sdm_global=null", "global_associations.gsrc=null", "train.lr=0.0001", "train.epochs=1", "train.seed=0",
                            f"output_dir={b0.run_dir}"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("base: recipes/base.yaml\nvariants: [{label: A, overide: {}}]\n", "study.yaml:2: variants.0.overide: unknown key 'overide'"),
        ("base: recipes/nope.yaml\nvariants: [{label: A}]\n", "base: 'recipes/nope.yaml' not found"),
        ("base: recipes/base.yaml\nvariants:\n  - label: A\n  - label: A\n", "study.yaml:4: variants: label 'A' is used twice (the variant at line 3 has it too)"),
        ("base: recipes/base.yaml\nreference: Z\nvariants: [{label: A}]\n", "reference: no variant is labelled 'Z'"),
        ("base: recipes/base.yaml\nseeds: [1, 1]\nvariants: [{label: A}]\n", "repeats a seed"),
        ("base: recipes/base.yaml\nvariants: []\n", "variants: list should have at least 1 item after validation, not 0 (got [])"),
        ("base: recipes/base.yaml\nmetrics: [R1,\n  map]\nvariants: [{label: A}]\n",
         "study.yaml:3: metrics: 'map' is not a metric of metrics.json "
         "(did you mean 'mAP'? metrics: R1, R5, R10, mAP, mINP)"),
        ("base: recipes/base.yaml\nmetrics: [R1, R50]\nvariants: [{label: A}]\n", "did you mean 'R5'?"),
        ("base: recipes/base.yaml\nmetrics: [R1, top1]\nvariants: [{label: A}]\n",
         "metrics: 'top1' is not a metric of metrics.json (metrics: R1, R5"),
        ("", "study.yaml: study file is empty (a study is a YAML mapping with 'base: RECIPE' and 'variants: "),
        ("extends: recipes/base.yaml\nobjectives: {itc: {name: itc}}\n",
         "study.yaml: this looks like a recipe, not a study (it has extends, objectives; a study has base and variants)"),
    ],
)
def test_invalid_study_is_a_one_line_user_error(study_file, tmp_path, capsys, text, message):
    _write(study_file, text)
    assert main(["ablate", str(study_file), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == err  # a dry run finds it too, before listing any run


def test_study_base_in_the_home_folder(study_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "recipes"))
    _write(study_file, "base: ~/base.yaml\nvariants: [{label: A}]\n")
    assert load_study(study_file).base == (tmp_path / "recipes" / "base.yaml").resolve()


def test_report_aggregates_fabricated_metrics(study_file, tmp_path, capsys):
    loaded = load_study(study_file)
    runs = plan_runs(loaded, tmp_path / "out")
    r1 = {"A": [10.0, 20.0, 30.0], "B+x": [12.0, 22.0, 35.0], "C sup": [40.0, 44.0, 45.0], "D": [7.0]}
    for run in runs:
        values = r1[run.label]
        if run.seed < len(values):
            run.run_dir.mkdir(parents=True)
            (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(values[run.seed], run.label != "C sup")))
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(tmp_path / "out")]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((tmp_path / "out" / "results.csv").open())}
    assert list(rows) == ["A", "B+x", "C sup", "D"]
    b = rows["B+x"]
    assert float(b["R1_mean"]) == pytest.approx(23.0)
    assert float(b["R1_std"]) == pytest.approx(statistics.stdev([12, 22, 35]))  # sample std, 11.5326
    assert float(b["R1_delta"]) == pytest.approx(3.0) and float(b["mAP_delta"]) == pytest.approx(1.5)
    assert float(b["R10_mean"]) == pytest.approx(43.0)
    a = rows["A"]
    assert (a["reference"], float(a["R1_std"]), float(a["R1_delta"]), a["status"]) == ("true", 10.0, 0.0, "ok")
    c = rows["C sup"]
    assert c["weakly_supervised"] == "false" and "true identity" in c["note"]
    d = rows["D"]
    assert (d["runs_done"], d["R1_std"], d["status"]) == ("1", "", "2/3 not run")
    assert float(d["R1_delta"]) == pytest.approx(-13.0)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| B+x | 3/3 | 23.00 ± 11.53 (+3.00) |" in md
    assert "| A (reference) | 3/3 | 20.00 ± 10.00 |" in md
    assert "| C sup [NOT weakly supervised] | 3/3 |" in md
    assert "| D | 1/3 | 7.00 (-13.00*) |" in md  # 7 against the mean of seeds 0-2: not a like-for-like delta
    assert "| B+x | 3/3 | 23.00 ± 11.53 (+3.00) |" in md and "* the two means are over different seeds" in md
    # paired by seed: B+x - A per seed = +2, +2, +5; D has only seed 0 (7 - 10)
    assert float(b["R1_paired_delta"]) == pytest.approx(3.0) and float(b["R1_paired_std"]) == pytest.approx(statistics.stdev([2, 2, 5]))
    assert float(d["R1_paired_delta"]) == pytest.approx(-3.0) and d["R1_paired_std"] == "" and a["R1_paired_delta"] == ""
    assert "| B+x | 0, 1, 2 | +3.00 ± 1.73 [+2.00 / +2.00 / +5.00] |" in md
    assert "| D | 0 | -3.00 [-3.00] |" in md
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md in capsys.readouterr().out
    # the library returns the same rows (before, only the outcomes: a caller parsed results.csv)
    from wsreid.ablate import ablation_study

    report = ablation_study(study_file, report_only=True, output_dir=tmp_path / "out", log=lambda line: None)
    by_label = {row.label: row for row in report.rows}
    assert list(by_label) == ["A", "B+x", "C sup", "D"] and by_label["A"].is_reference
    assert by_label["B+x"].mean["R1"] == pytest.approx(23.0) and by_label["B+x"].delta["mAP"] == pytest.approx(1.5)
    assert [delta for _, delta in by_label["B+x"].paired["R1"]] == pytest.approx([2.0, 2.0, 5.0])
    assert by_label["C sup"].weakly_supervised is False and by_label["D"].status == "2/3 not run"


def test_failing_runs_are_reported_and_the_others_run(study_file, tmp_path):
    _write(study_file, study_file.read_text().replace("seeds: [0, 1, 2]", "seeds: [0]")
           + "  - label: bad\n    overrides: {train.lr: -1}\n")
    loaded = load_study(study_file)
    runs = plan_runs(loaded, tmp_path / "out")
    called = []

    def fake_execute(study, run, state, disabled):  # stands in for `wsreid run`: writes metrics.json or crashes
        out = run.run_dir
        called.append(out.parent.name)
        if out.parent.name == "C_sup":
            raise RuntimeError("CUDA out of memory\nwhile allocating")
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(_metrics(10.0 + len(called))))

    logs = []
    outcomes = run_study(loaded, runs, execute=fake_execute, log=logs.append)
    assert called == ["A", "B+x", "C_sup", "D"]  # 'bad' fails validation before running
    status = {o.run.label: (o.status, o.error) for o in outcomes}
    assert status["C sup"] == ("failed", "RuntimeError: CUDA out of memory while allocating")
    assert status["bad"][0] == "failed" and "train.lr" in status["bad"][1] and "\n" not in status["bad"][1]
    assert status["A"] == ("ran", None) and outcomes[0].metrics["test"]["R1"] == 11.0
    assert run_state(runs[0].run_dir) == "done" and run_state(tmp_path / "nowhere") == "new"
    assert any("FAILED" in line and "C sup" in line for line in logs)

    from wsreid.ablate_table import aggregate, markdown_table

    rows = aggregate(loaded, outcomes)
    assert [r.status for r in rows][2] == "1/1 failed (seed 0: RuntimeError: CUDA out of memory while allocating)"
    assert rows[4].runs_done == 0 and rows[4].mean == {} and "train.lr" in rows[4].status
    assert "| bad | 0/1 | - | - | - | - | - | 1/1 failed" in markdown_table(loaded, rows)


def test_dry_run_lists_runs_and_creates_nothing(study_file, tmp_path, capsys):
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "out"),
                 "-o", "train.epochs=1"]) == 0
    captured = capsys.readouterr()
    assert "12 runs (0 finished); nothing was run" in captured.out
    assert captured.err.count(": new -> ") == 12 and "-o train.epochs=1 -o train.seed=2" in captured.err
    assert not (tmp_path / "out").exists()


def test_variant_option_runs_only_those_variants(study_file, tmp_path, capsys, monkeypatch):
    import wsreid.ablate as ablate

    out = tmp_path / "out"
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(out), "--variant", "B+x",
                 "--variant", "D", "--seeds", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count(": new -> ") == 2 and "B+x/seed-1" in captured.err and "D/seed-1" in captured.err

    def fake_run(study, run, state, disabled):
        run_dir = run.run_dir
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps(_metrics(20.0)))

    monkeypatch.setattr(ablate, "execute_in_process", fake_run)
    assert main(["ablate", str(study_file), "--output-dir", str(out), "--variant", "D"]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["D"]["runs_done"] == "3" and all(rows[v]["runs_done"] == "0" for v in ("A", "B+x", "C sup"))
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["D"]
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--variant", "B+y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--variant 'B+y'" in err and "did you mean 'B+x'?" in err


def test_seeds_option_runs_a_subset_and_the_table_covers_every_seed(study_file, tmp_path, capsys, monkeypatch):
    import wsreid.ablate as ablate

    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "out"), "--seeds", "2"]) == 0
    captured = capsys.readouterr()
    assert "4 runs (0 finished); nothing was run" in captured.out
    assert captured.err.count(": new -> ") == 4 and "seed-2" in captured.err and "seed-0" not in captured.err

    def fake_run(study, run, state, disabled):  # stands in for `wsreid run`: seed -> R1
        out, seed = run.run_dir, run.seed
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(_metrics(10.0 + seed)))

    monkeypatch.setattr(ablate, "execute_in_process", fake_run)
    assert main(["ablate", str(study_file), "--output-dir", str(tmp_path / "out"), "--seeds", "0,7"]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((tmp_path / "out" / "results.csv").open())}
    assert rows["A"]["runs_done"] == "2" and rows["A"]["runs_total"] == "4"  # study seeds 0-2 plus 7
    assert float(rows["A"]["R1_mean"]) == pytest.approx(13.5)
    assert sorted(p.name for p in (tmp_path / "out" / "runs" / "A").iterdir()) == ["seed-0", "seed-7"]
    assert main(["ablate", str(study_file), "--seeds", "x"]) == 2
    assert "--seeds x: expected comma-separated integers" in capsys.readouterr().err
    assert main(["ablate", str(study_file), "-j", "0"]) == 2
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err


def test_shipped_dgia_study_plans_the_paper_rows():
    loaded = load_study(REPO / "recipes" / "ablations" / "dgia.yaml")
    assert loaded.labels[:9] == ["B", "B+LRC", "B+GSRC-FR", "B+LRC+GSRC-FR", "full", "B+LRC-I", "B+LRC-T",
                                 "BFE+GSRC-T", "BFE+GSRC-IT"]
    assert [v.overrides.get("pair_construction.mask_ratio") for v in loaded.study.variants[9:13]] == [0.1, 0.2, 0.3, 0.4]
    control = loaded.study.variants[13]  # LRC relating every pair: label smoothing, no identity information
    assert control.label == "B+LRC-all (control)" and control.overrides["local_associations.lrc.threshold_image"] == -1
    iasc = loaded.study.variants[14]  # full DGIA whose asymmetric view relates nothing but each pair
    assert iasc.overrides == {"local_associations.lrc_asymmetric.threshold_image": 1.0,
                              "local_associations.lrc_asymmetric.threshold_text": 1.0}
    assert loaded.study.seeds == [0, 1, 2] and loaded.reference == "B"


def test_a_finished_run_whose_recipe_changed_is_run_again(study_file, tmp_path):
    from wsreid.ablate import _decide
    from wsreid.recipe import load_recipe
    from wsreid.recipe import dump_resolved_yaml

    loaded = load_study(study_file)
    run = plan_runs(loaded, tmp_path / "out")[0]
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(10.0)))
    (run.run_dir / ".wsreid-run").write_text("{}")
    resolved = dump_resolved_yaml(load_recipe(str(loaded.base), run.overrides))
    (run.run_dir / "recipe.yaml").write_text(resolved.replace("output_dir:", "output_dir: elsewhere #"))
    assert _decide(loaded, run, []) == "done"  # the same recipe (output_dir aside): kept
    # A run made before an option existed: its recipe.yaml lacks the key; at its default
    # value that is the same recipe, at another it is not.
    assert "  sampler: random\n" in resolved
    (run.run_dir / "recipe.yaml").write_text(resolved.replace("  sampler: random\n", ""))
    assert _decide(loaded, run, []) == "done"
    (run.run_dir / "recipe.yaml").write_text(resolved.replace("  sampler: random\n", "  sampler: identity\n"))
    assert _decide(loaded, run, []) == "restart"
    (run.run_dir / "recipe.yaml").write_text(resolved.replace("seed: 0", "seed: 5"))
    assert _decide(loaded, run, []) == "restart"
    (run.run_dir / "metrics.json").unlink()
    (run.run_dir / "recipe.yaml").write_text(resolved)
    assert _decide(loaded, run, []) == "restart"  # a run without a checkpoint starts again
    (run.run_dir / "checkpoints").mkdir()
    (run.run_dir / "checkpoints" / "latest").write_text("epoch-0001")
    assert _decide(loaded, run, []) == "resume"


def test_progress_lines_reach_stderr_one_write_each(study_file, tmp_path, monkeypatch):
    """`-j N` logs from N threads: a line written as text then newline (two writes) can be
    split by another thread's line, so each line must go out in one write."""
    _write(study_file, study_file.read_text().replace("seeds: [0, 1, 2]", "seeds: [0]"))
    loaded = load_study(study_file)
    runs = plan_runs(loaded, tmp_path / "out")

    def fake_execute(study, run, state, disabled):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(10.0)))

    writes = []

    class Recorder:
        def write(self, text):
            writes.append(text)
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr("sys.stderr", Recorder())
    run_study(loaded, runs, execute=fake_execute)
    assert len(writes) == 2 * len(runs)  # "running ->" and "finished" per run
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in writes), writes


#: every study file in the repository: the shipped studies, the GPU queue and the committed
#: studies behind docs/results.md (the example plugin's study needs its package: its own tests)
SHIPPED_STUDIES = sorted([*(REPO / "recipes" / "ablations").glob("*.yaml"), *(REPO / "benchmarks" / "sweeps").glob("*.yaml"),
                          *(REPO / "results").glob("*/*/study.yaml")])


def test_the_study_files_are_all_found():
    names = {str(p.relative_to(REPO)) for p in SHIPPED_STUDIES}
    assert {"recipes/ablations/dgia.yaml", "benchmarks/sweeps/gpu-sweep.yaml",
            "results/synth-small/replication-b/study.yaml"} <= names


@pytest.mark.parametrize("study", SHIPPED_STUDIES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_variant_of_a_shipped_study_is_a_valid_recipe(study):
    """A variant whose overrides do not make a valid recipe (a parameter on a removed block,
    a pair-construction parameter the new pair construction lacks, an encoder the base no
    longer accepts) would fail only when its turn comes in a study of hours: every study
    file's variants validate now."""
    from wsreid.pluginmanager import load_plugins
    from wsreid.recipe import load_recipe

    registry = load_plugins().registry
    loaded = load_study(study)
    first_seed = [r for r in plan_runs(loaded, REPO / "runs" / "unused") if r.seed == loaded.study.seeds[0]]
    assert [r.label for r in first_seed] == loaded.labels
    for run in first_seed:
        load_recipe(str(loaded.base), run.overrides, registry=registry)  # raises RecipeError naming file and line


def _saved_run(loaded, run, metrics_text: str, recipe_edit=lambda text: text) -> None:
    """A finished run as `wsreid run` leaves it: the run marker, recipe.yaml (the resolved
    recipe of ``run``, passed through ``recipe_edit``) and ``metrics_text`` as metrics.json."""
    from wsreid.recipe import dump_resolved_yaml, load_recipe

    run.run_dir.mkdir(parents=True)
    (run.run_dir / ".wsreid-run").write_text("{}")
    resolved = dump_resolved_yaml(load_recipe(str(loaded.base), run.overrides))
    (run.run_dir / "recipe.yaml").write_text(recipe_edit(resolved))
    (run.run_dir / "metrics.json").write_text(metrics_text)


def test_dry_run_with_invalid_runs_exits_2_and_counts_them(study_file, tmp_path, capsys):
    _write(study_file, study_file.read_text() + "  - label: typo\n    overrides: {train.lrr: 1}\n")
    out = tmp_path / "out"
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert "15 runs (0 finished); nothing was run" in captured.out
    assert captured.err.count("typo seed") == 3 and captured.err.count(": FAILED: ") == 3
    assert captured.err.count(": new -> ") == 12
    last = captured.err.splitlines()[-1]
    assert last == (f"error: {study_file}: 3 of 15 planned runs are invalid (their FAILED lines above say why) "
                    "(fix them, then run the study)")
    assert captured.err.count("error: ") == 1 and not out.exists()


@pytest.mark.parametrize("where", ["last variant", "command line"])
def test_invalid_runs_stop_a_real_study_before_anything_trains(study_file, tmp_path, capsys, monkeypatch, where):
    """The check of --dry-run runs before a real study: a typo in the last variant's
    overrides, or in a command-line -o, is exit 2 with nothing trained or written (it
    surfaced only after the earlier variants had trained, exit 1, a table written)."""
    import wsreid.ablate as ablate

    called = []
    monkeypatch.setattr(ablate, "execute_in_process", lambda *a: called.append(a))
    from wsreid.recipe.yamlio import display_path

    if where == "last variant":  # said where the study file writes it (it named the override alone)
        text = study_file.read_text()
        _write(study_file, text + "  - label: typo\n    overrides: {train.lrr: 1}\n")
        line = text.count("\n") + 2
        extra, invalid, total = ["-j", "1"], 3, 15
        failed = f": FAILED: {display_path(study_file)}:{line}: variant 'typo', override train.lrr=1: train.lrr: unknown key"
    else:
        extra, invalid, total = ["-j", "2", "-o", "train.lrr=1"], 12, 12
        failed = ": FAILED: override -o train.lrr=1: train.lrr: unknown key 'lrr'"
    out = tmp_path / "out"
    assert main(["ablate", str(study_file), "--output-dir", str(out), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.count(failed) == invalid, captured.err
    assert captured.err.splitlines()[-1] == (
        f"error: {study_file}: {invalid} of {total} planned runs are invalid (their FAILED lines above say why); "
        "nothing was run (fix them, then run the study)")
    assert called == [] and not out.exists() and "running ->" not in captured.err


def test_negative_seed_is_a_one_line_user_error_and_nothing_runs(study_file, tmp_path, capsys, monkeypatch):
    import wsreid.ablate as ablate

    called = []
    monkeypatch.setattr(ablate, "execute_in_process", lambda *a: called.append(a))
    out = tmp_path / "out"
    for extra in ([], ["--dry-run"]):
        assert main(["ablate", str(study_file), "--output-dir", str(out), "--seeds=0,-1", *extra]) == 2
        err = capsys.readouterr().err
        assert err == ("error: --seeds 0,-1: seed -1 is negative (a training seed is an integer from 0 to "
                       "4294967295, e.g. --seeds 0 or --seeds 0,1)\n")
        # numpy's generators take seeds below 2**32: the run failed with a traceback after the study started
        assert main(["ablate", str(study_file), "--output-dir", str(out), "--seeds=4294967296", *extra]) == 2
        assert capsys.readouterr().err.startswith("error: --seeds 4294967296: seed 4294967296 is over 4294967295 ")
    text = study_file.read_text()
    for seeds, message in (("[0, -1]", "seeds.1: input should be greater than or equal to 0 (got -1)"),
                           ("[4294967296]", "seeds.0: input should be less than or equal to 4294967295 (got 4294967296)")):
        _write(study_file, text.replace("seeds: [0, 1, 2]", f"seeds: {seeds}"))
        assert main(["ablate", str(study_file), "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert f"study.yaml:2: {message}" in err
    assert called == [] and not out.exists()


def test_study_directory_is_checked_before_any_run(study_file, tmp_path, capsys, monkeypatch):
    import wsreid.ablate as ablate

    called = []
    monkeypatch.setattr(ablate, "execute_in_process", lambda *a: called.append(a))
    taken = _write(tmp_path / "taken", "not a directory")
    for out, extra, message in [
        (taken, [], f"error: --output-dir {taken}: exists and is not a directory"),
        (taken, ["--dry-run"], f"error: --output-dir {taken}: exists and is not a directory"),
        (taken / "sub", [], f"error: --output-dir {taken / 'sub'}: cannot create the study directory: {taken} is not a "
         "directory"),
        (taken / "sub", ["--dry-run"],
         f"error: --output-dir {taken / 'sub'}: cannot create the study directory: {taken} is not a directory"),
        (taken, ["--report-only"], f"error: --output-dir {taken}: exists and is not a directory"),
    ]:
        assert main(["ablate", str(study_file), "--output-dir", str(out), *extra]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith(message) and captured.err.count("\n") == 1, captured.err
        assert "[1/12]" not in captured.err + captured.out  # no run was planned or tried
    assert called == [] and taken.read_text() == "not a directory"
    # the study file's own output_dir is named as such
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "out", "a file")
    assert main(["ablate", str(study_file)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {study_file}: output_dir out: exists and is not a directory")


def test_unreadable_metrics_json_is_a_failed_run_not_a_crash(study_file, tmp_path, capsys):
    loaded = load_study(study_file)
    out = tmp_path / "out"
    runs = plan_runs(loaded, out)
    a0, a1, a2 = runs[:3]
    _saved_run(loaded, a0, '{"test": ')  # truncated
    _saved_run(loaded, a1, '{"test": {"R1": "abc"}}')
    _saved_run(loaded, a2, json.dumps(_metrics(30.0)))
    for run in runs[3:6]:  # B+x
        _saved_run(loaded, run, json.dumps(_metrics(20.0 + run.seed)))
    path0, path1 = a0.run_dir / "metrics.json", a1.run_dir / "metrics.json"

    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 1
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["A"]["status"].startswith(f"2/3 failed (seed 0: unreadable metrics.json ({path0}): ")
    assert rows["A"]["runs_done"] == "1" and float(rows["A"]["R1_mean"]) == 30.0
    assert float(rows["B+x"]["R1_mean"]) == 21.0 and float(rows["B+x"]["R1_delta"]) == -9.0
    assert rows["B+x"]["status"] == "ok"

    logs = []
    outcomes = run_study(loaded, runs[:3], execute=lambda *a: pytest.fail("a finished run is not run again"),
                         log=logs.append)
    assert [o.status for o in outcomes] == ["failed", "failed", "done"]
    assert outcomes[1].error == (f"unreadable metrics.json ({path1}): test.R1 is \"abc\", not a number; "
                                 "delete it and run the study again to redo this run")
    assert sum("FAILED: unreadable metrics.json" in line for line in logs) == 2
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(out)]) == 2
    assert "2 of 12 planned runs are invalid" in capsys.readouterr().err


def test_report_marks_runs_with_another_recipe_outdated(study_file, tmp_path, capsys, monkeypatch):
    import wsreid.ablate as ablate

    loaded = load_study(study_file)
    out = tmp_path / "out"
    runs = plan_runs(loaded, out)
    for run in runs[:6]:  # A and B+x, every seed; A seed 1 was made with another sampler
        other = run.seed == 1 and run.label == "A"
        # (seed 1 also lacks a key at its default, as a run of an older wsreid: no difference, not named)
        edit = (lambda t: t.replace("  sampler: random\n", "  sampler: identity\n").replace("  image_format: png\n", "")
                ) if other else (lambda t: t)
        _saved_run(loaded, run, json.dumps(_metrics(10.0 * (run.seed + 1))), edit)
    expected = ("1/3 outdated (seed 1: its recipe.yaml differs from what the study asks for now; rerun the variant: "
                f"wsreid ablate {study_file} --output-dir {out} --variant A --rerun-outdated)")

    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["A"]["status"] == expected
    assert rows["A"]["runs_done"] == "2" and float(rows["A"]["R1_mean"]) == 20.0  # seeds 0 and 2: 10, 30
    assert rows["B+x"]["status"] == "ok" and float(rows["B+x"]["R1_delta"]) == 0.0
    assert "| A (reference) | 2/3 | 20.00 ± 14.14 |" in (out / "results.md").read_text()
    # runs copied in on purpose (to pair by seed) are taken as they are with --include-outdated
    assert main(["ablate", str(study_file), "--report-only", "--include-outdated", "--output-dir", str(out)]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["A"]["status"] == ("1/3 outdated, included (seed 1: their recipe.yaml differs from what the study "
                                   "asks for now)")  # tabulated, and the row says so (it said 'ok')
    assert rows["A"]["runs_done"] == "3" and float(rows["A"]["R1_mean"]) == 20.0
    assert rows["B+x"]["status"] == "ok"
    # running the study would delete the finished outdated run: refused before anything
    # runs unless --rerun-outdated (it was deleted and trained again without a word)
    finished = (runs[1].run_dir / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--variant", "A", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"error: {out}: 1 finished run(s) were trained with another recipe than the study asks for now (A seed 1: "
        'train.sampler: "identity" in the run, "random" now); running would delete them and train them again; '
        "nothing was run (add --rerun-outdated to do so, or --report-only --include-outdated to tabulate them as "
        "they are, or give another --output-dir)")
    assert (runs[1].run_dir / "metrics.json").read_text() == finished
    assert main(["ablate", str(study_file), "--variant", "A", "--dry-run", "--output-dir", str(out)]) == 2
    assert ("note: A seed 1 finished with another recipe than the study asks for now (train.sampler: \"identity\" "
            "in the run, \"random\" now): running the study replaces it only with --rerun-outdated") in \
        capsys.readouterr().err

    # the rows not selected by --variant are merged into the table the same way
    def fake_run(study, run, state, disabled):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(5.0)))

    monkeypatch.setattr(ablate, "execute_in_process", fake_run)
    assert main(["ablate", str(study_file), "--output-dir", str(out), "--variant", "D"]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["A"]["status"] == expected and rows["A"]["runs_done"] == "2" and rows["D"]["runs_done"] == "3"
    # with --include-outdated, as with --report-only: tabulated, and the row says so (it said 'ok')
    assert main(["ablate", str(study_file), "--output-dir", str(out), "--variant", "B+x", "--include-outdated"]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["A"]["status"] == ("1/3 outdated, included (seed 1: their recipe.yaml differs from what the study "
                                   "asks for now)") and rows["A"]["runs_done"] == "3"
    # the dry run, which uses the same check, lists that run as the study would take it
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(out), "--variant", "A"]) == 2
    err = capsys.readouterr().err
    assert "A seed 1: outdated, refused without --rerun-outdated" in err and err.count(": done -> ") == 2
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(out), "--variant", "A",
                 "--rerun-outdated"]) == 0
    err = capsys.readouterr().err
    assert "A seed 1: restart" in err and err.count(": done -> ") == 2


def test_a_variant_whose_component_never_runs_is_warned_once_before_anything_trains(study_file, tmp_path):
    """The study's check of every run prints the schedule warnings of a variant once (its
    seeds share the schedule), before the first training: an ablation row whose objective
    starts after the last epoch compares identical models."""
    import wsreid.ablate as ablate

    _write(study_file, study_file.read_text()
           + "  - label: late\n    overrides: {train.epochs: 3, objectives.sdm_global.start_epoch: 5}\n")
    log_lines = []
    loaded = load_study(study_file)
    runs = plan_runs(loaded, tmp_path / "out")
    ablate.check_runs(loaded, runs, log=log_lines.append)
    warnings = [line for line in log_lines if line.startswith("warning: late: ")]
    assert len(warnings) == 1, log_lines
    assert "objectives.sdm_global.start_epoch: objective 'sdm' never runs (starts at epoch 5, the run ends at " \
           "epoch 3)" in warnings[0]
    # the other variants have no schedule warning; 'C sup' and 'D' set nothing, so they train A's recipe
    same = "train the same recipe (seed 0): the overrides that tell them apart change nothing, so their rows will be the same"
    assert [line for line in log_lines if line.startswith("warning:")] == [
        f"warning: variants 'A' and 'C sup' {same}", f"warning: variants 'A' and 'D' {same}", *warnings]


def test_a_warning_every_variant_shares_is_printed_once(study_file, tmp_path, capsys):
    """The documented smoke study (-o train.epochs=2) repeated the base recipe's warm-up
    warning once per variant (15 lines for the shipped study)."""
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "out"),
                 "-o", "train.epochs=2"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")
                and "warm-up" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: every variant: ") and \
        "train.warmup_epochs: the learning rate never reaches train.lr (warm-up of 2 epochs, the run ends at epoch 2)" \
        in warnings[0], warnings


def test_a_dry_run_prints_the_warnings_a_study_prints_before_training(study_file, tmp_path, capsys):
    """--dry-run, where a study is checked before it runs, says what the run would warn
    about: a component that never runs (once per variant), variants that train one
    recipe - an override that repeats the base's value, or a variant without overrides."""
    _write(study_file, study_file.read_text().replace("  - label: C sup\n", "  - label: C sup\n    overrides: {train.lr: 1.0e-4}\n")
           .replace("  - label: D\n", "  - label: D\n    overrides: {encoder.pretrained: synth-web-tiny-clip}\n")
           + "  - label: late\n    overrides: {train.epochs: 3, objectives.sdm_global.start_epoch: 5}\n")
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "out"), "--seeds", "0,1"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: variants 'A' and 'D' train the same recipe (seed 0): the overrides that tell them apart change "
        "nothing, so their rows will be the same",
        "warning: late: override -o objectives.sdm_global.start_epoch=5: objectives.sdm_global.start_epoch: objective "
        "'sdm' never runs (starts at epoch 5, the run ends at epoch 3) (raise train.epochs to at least 5, or lower "
        "start_epoch)"]


@pytest.mark.parametrize(("extra", "message"), [
    (["-o", "output_dir=/tmp/elsewhere"], "error: -o output_dir=/tmp/elsewhere: the study sets output_dir for each run, so "
     "this value would be replaced without a word (each run goes to <output_dir>/runs/<label>/seed-<S>: give "
     "--output-dir)\n"),
    (["-o", "train.seed=5"], "error: -o train.seed=5: the study sets train.seed for each run, so this value would be "
     "replaced without a word (give --seeds)\n"),
    (["--seeds", "0,0"], "error: --seeds 0,0: seed 0 is given twice (list each seed once)\n"),
    (["--seeds", "0,,1"], "error: --seeds 0,,1: expected comma-separated integers (e.g. --seeds 0 or --seeds 0,1)\n"),
])
def test_command_line_values_the_study_would_drop_are_refused(study_file, tmp_path, capsys, extra, message):
    """-o output_dir / -o train.seed were replaced by each run's own (the runs went
    elsewhere, or every seed trained with its planned seed); --seeds 0,0 ran seed 0 once."""
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "o"), *extra]) == 2
    assert capsys.readouterr().err == message


@pytest.mark.parametrize(("change", "message"), [
    (("  - label: D\n", "  - label: D\n    overrides: {train.seed: 4}\n"),
     "{path}:11: variants.3.overrides.train.seed: the study sets train.seed for each run, so this value would be "
     "replaced without a word (list the seeds in the study's 'seeds:')"),
    (("output_dir: out\n", "output_dir: out\noverrides: {train: {seed: 4}}\n"),
     "{path}:5: overrides.train: the study sets train.seed for each run, so this value would be replaced without a "
     "word (list the seeds in the study's 'seeds:')"),
    (("  - label: D\n", "  - label: D\n    overrides: {output_dir: x}\n"),
     "{path}:11: variants.3.overrides.output_dir: the study sets output_dir for each run, so this value would be "
     "replaced without a word (each run goes to <output_dir>/runs/<label>/seed-<S>: set the study's 'output_dir:')"),
    (("seeds: [0, 1, 2]", "seeds: [0, true]"), "{path}:2: seeds.1: input should be a valid integer (got True)"),
    (("seeds: [0, 1, 2]", "seeds: [0, 1.0]"), "{path}:2: seeds.1: input should be a valid integer (got 1.0)"),
    (("  - label: C sup\n  - label: D\n", "  - label: '..'\n  - label: '.'\n"),
     "{path}:10: variants: labels '..' and '.' give the same directory name (give every variant its own label)"),
])
def test_study_file_values_that_would_be_dropped_or_misplaced_are_refused(study_file, capsys, change, message):
    """A variant's train.seed or output_dir was replaced by the run's own without a word;
    seeds true / 1.0 were read as 1; labels '..' and '.' put run directories outside runs/."""
    _write(study_file, study_file.read_text().replace(*change))
    with pytest.raises(StudyError) as info:
        load_study(study_file)
    assert str(info.value) == message.format(path=study_file)


def test_a_variant_whose_override_lines_are_all_commented_out_has_none(study_file):
    _write(study_file, study_file.read_text().replace("  - label: D\n", "  - label: D\n    overrides:\n"
                                                                          "    #  train.lr: 1.0e-4\n"))
    assert load_study(study_file).study.variants[3].overrides == {}


def test_report_only_with_an_override_that_outdates_every_run_keeps_the_tables(study_file, tmp_path, capsys):
    """A mistaken -o on --report-only made every run outdated and overwrote results.md,
    results.csv and the chart with an empty table."""
    loaded = load_study(study_file)
    out = tmp_path / "out"
    for run in plan_runs(loaded, out):
        _saved_run(loaded, run, json.dumps(_metrics(10.0 * (run.seed + 1))), lambda t: t)
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 0
    tables = {name: (out / name).read_bytes() for name in ("results.md", "results.csv")}
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out), "-o", "train.weight_decay=0.5"]) == 2
    assert capsys.readouterr().err == (
        f"error: --report-only -o train.weight_decay=0.5: no finished run matches what the study asks for now (12 of 12 "
        f"outdated), so the table would be empty; nothing written, the results in {out} are kept (drop the -o that "
        "changes the runs)\n")
    assert {name: (out / name).read_bytes() for name in tables} == tables


def test_a_run_that_failed_is_reported_as_failed_by_later_reports(study_file, tmp_path, capsys, monkeypatch):
    """A failed run leaves no directory behind, so a later --report-only said 'not run'
    and the message was gone; the study directory keeps it (failures.json) until the run
    finishes."""
    import wsreid.ablate as ablate

    _write(study_file, study_file.read_text().replace("seeds: [0, 1, 2]", "seeds: [0]"))
    out = tmp_path / "out"
    broken = {"C_sup"}

    def fake_run(study, run, state, disabled):
        if run.run_dir.parent.name in broken:
            raise RuntimeError("k1 1000 is larger than the training set")
        run.run_dir.mkdir(parents=True, exist_ok=True)
        (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(20.0)))

    monkeypatch.setattr(ablate, "execute_in_process", fake_run)
    assert main(["ablate", str(study_file), "--output-dir", str(out)]) == 1
    recorded = json.loads((out / "failures.json").read_text())
    assert list(recorded) == ["C_sup/seed-0"]
    assert recorded["C_sup/seed-0"]["error"] == "RuntimeError: k1 1000 is larger than the training set"
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 1
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["C sup"]["status"] == ("1/1 failed (seed 0: RuntimeError: k1 1000 is larger than the training set "
                                       "(when it last ran))")
    # a record written when overrides were written as JSON (output_dir="...") is still this run's
    as_json = [f'{o.split("=", 1)[0]}={json.dumps(parse_override(o)[1])}' for o in recorded["C_sup/seed-0"]["overrides"]]
    assert as_json != recorded["C_sup/seed-0"]["overrides"]
    (out / "failures.json").write_text(json.dumps({"C_sup/seed-0": {**recorded["C_sup/seed-0"], "overrides": as_json}}))
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 1
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["C sup"]["status"].startswith("1/1 failed (seed 0: RuntimeError: k1 1000")
    # the variant changed since (its fault fixed in the study file): the old message is not its
    changed = study_file.read_text().replace("  - label: C sup\n", "  - label: C sup\n    overrides: {train.lr: 1.0e-4}\n")
    assert changed != study_file.read_text()
    _write(study_file, changed)
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 0
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["C sup"]["status"] == "1/1 not run"
    broken.clear()  # fixed: the next invocation runs it, and the record goes
    assert main(["ablate", str(study_file), "--output-dir", str(out)]) == 0
    assert not (out / "failures.json").exists()
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["C sup"]["status"] == "ok"


def test_a_study_under_several_processes_is_refused(study_file, tmp_path, monkeypatch, capsys):
    """Under torchrun each process planned and started the study's runs on its own, and
    the second run hung (the processes waited for each other at different points)."""
    from wsreid.ablate import ablation_study
    from wsreid.errors import StudyError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # as torchrun sets them
    with pytest.raises(StudyError) as caught:  # the library
        ablation_study(study_file, output_dir=tmp_path / "out")
    assert str(caught.value) == (
        "wsreid ablate runs under one process only: it starts its trainings itself (-j N for N at once), and "
        "under torchrun every process would start them on its own (run it without torchrun; train one recipe on "
        "several processes with torchrun ... -m wsreid run RECIPE)")
    assert main(["ablate", str(study_file), "--output-dir", str(tmp_path / "out")]) == 2  # the command
    assert capsys.readouterr().err == (
        "error: wsreid ablate runs in one process: this one was launched as one of 2 (WORLD_SIZE and MASTER_ADDR are "
        "set), and each would do all of it (run wsreid ablate without torchrun (from a job script that exports the "
        "launcher's variables: env -u WORLD_SIZE wsreid ablate ...); only wsreid run trains on several processes)\n")
    assert not (tmp_path / "out").exists()


def test_results_are_written_as_one_set_or_not_at_all(study_file, tmp_path, capsys, monkeypatch):
    """A full disk while the chart is written: the previous results.md, .csv and .png are
    kept whole and no temporary file is left (a new table beside a truncated old chart was)."""
    import errno

    import wsreid.ablate_table as table

    loaded = load_study(study_file)
    out = tmp_path / "out"
    for run in plan_runs(loaded, out):
        _saved_run(loaded, run, json.dumps(_metrics(10.0 * (run.seed + 1))), lambda t: t)
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(before) >= {"results.md", "results.csv", "results.png"}
    runs = plan_runs(loaded, out)
    (runs[0].run_dir / "metrics.json").write_text(json.dumps(_metrics(55.0)))  # the new tables differ
    real_chart = table.write_chart

    def chart_on_a_full_disk(target, loaded, rows):
        out_file = open(target, "wb") if isinstance(target, (str, Path)) else target
        out_file.write(b"\x89PNG\r\n\x1a\n cut short")
        out_file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(table, "write_chart", chart_on_a_full_disk)
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--report-only", "--include-outdated", "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out}: cannot write the study's results: no space left on the device; the previous results.md, "
        "results.csv, results.png kept as they were (free space, then run with --report-only)\n")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # a folder where the chart goes: refused before any file is replaced
    monkeypatch.setattr(table, "write_chart", real_chart)
    (out / "results.png").unlink()
    (out / "results.png").mkdir()
    assert main(["ablate", str(study_file), "--report-only", "--include-outdated", "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out}: cannot write the study's results: {out / 'results.png'}: a folder stands where the file goes; "
        "the previous results.md, results.csv kept as they were (fix that, then run with --report-only)\n")
    assert (out / "results.md").read_bytes() == before["results.md"]


def test_report_only_into_a_folder_without_runs_writes_nothing(study_file, tmp_path, capsys):
    """A mistyped --output-dir with --report-only created the folder and wrote a table of
    'not run' rows, exit 0."""
    typo = tmp_path / "ouy"
    assert main(["ablate", str(study_file), "--report-only", "--output-dir", str(typo)]) == 2
    assert capsys.readouterr().err == (
        f"error: --report-only: {typo} holds no run of a study (no runs/ folder); nothing written (check --output-dir "
        f"(the study's own is out), or run the study first)\n")
    assert not typo.exists()


def test_the_library_run_study_refuses_to_replace_finished_runs_too(study_file, tmp_path, monkeypatch):
    """run_study called directly (no check_runs before it) deleted and trained again the
    finished runs whose recipe differs."""
    import wsreid.ablate as ablate
    from wsreid.errors import StudyError

    loaded = load_study(study_file)
    runs = plan_runs(loaded, tmp_path / "out")[:1]
    _saved_run(loaded, runs[0], json.dumps(_metrics(10.0)),
               lambda t: t.replace("  sampler: random\n", "  sampler: identity\n"))
    called = []
    monkeypatch.setattr(ablate, "execute_in_process", lambda *a: called.append(a))
    with pytest.raises(StudyError, match=r"1 finished run\(s\) were trained with another recipe .*train\.sampler"):
        run_study(loaded, runs, log=lambda line: None)
    assert called == []
    run_study(loaded, runs, log=lambda line: None, rerun_outdated=True)
    assert [state for _, _, state, _ in called] == ["restart"]


def test_the_chart_defaults_to_the_metrics_the_table_has(study_file):
    """`metrics: [R1]` alone was refused with 'plot_metrics: mAP is not in metrics', a key
    the study did not write (the default's)."""
    text = study_file.read_text()
    _write(study_file, text + "metrics: [R1]\n")
    assert load_study(study_file).study.plot_metrics == ["R1"]
    _write(study_file, text + "metrics: [R5, R10, mINP]\n")
    assert load_study(study_file).study.plot_metrics == ["R5", "R10"]
    _write(study_file, text + "metrics: [R1]\nplot_metrics: [mAP]\n")  # written: checked, with its line
    with pytest.raises(StudyError, match=r"study\.yaml:12: plot_metrics: 'mAP' is not in metrics"):
        load_study(study_file)


def test_the_table_names_the_command_line_overrides_and_keeps_a_bar_in_a_label(study_file, tmp_path, capsys,
                                                                                monkeypatch):
    """A smoke study's results.md read like the full study's; a '|' in a label split its
    cell (one column more than the header)."""
    import wsreid.ablate as ablate

    _write(study_file, study_file.read_text().replace("label: D", "label: D|E").replace("seeds: [0, 1, 2]", "seeds: [0]"))

    def fake_run(study, run, state, disabled):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(10.0)))

    monkeypatch.setattr(ablate, "execute_in_process", fake_run)
    out = tmp_path / "out"
    assert main(["ablate", str(study_file), "--output-dir", str(out), "-o", "train.epochs=1"]) == 0
    text = (out / "results.md").read_text()
    assert "Base recipe `recipes/base.yaml` (relative to the study file) with the command line's " \
           "`-o train.epochs=1`, seeds 0; test split of each run's selected checkpoint (metrics.json)" in text
    row = next(line for line in text.splitlines() if line.startswith("| D"))
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert row.startswith("| D\\|E | 1/1 |") and row.count(" | ") == header.count(" | "), row


def test_a_run_another_invocation_held_and_finished_is_tabulated_as_finished(study_file, tmp_path, capsys,
                                                                                monkeypatch):
    """Two invocations of one study at once: each was refused the run the other held, and
    reported it FAILED ('in use') after the other had finished it (exit 1 with every
    metrics.json there)."""
    import wsreid.ablate as ablate
    from wsreid.engine.rundir import IN_USE

    _write(study_file, study_file.read_text().replace("seeds: [0, 1, 2]", "seeds: [0]"))

    def fake_run(study, run, state, disabled):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(10.0)))
        if run.label == "D":  # the other invocation held it, and finished it while this one went on
            raise UserError(f"output directory {run.run_dir} {IN_USE} 4242 on host (started now)")

    monkeypatch.setattr(ablate, "execute_in_process", fake_run)
    out = tmp_path / "out"
    assert main(["ablate", str(study_file), "--output-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "D seed 0: FAILED: output directory" in err and "D seed 0: finished by another process meanwhile, kept" in err
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["D"]["status"] == "ok" and rows["D"]["runs_done"] == "1"
    assert not (out / "failures.json").exists()


def test_a_block_removed_then_written_again_is_blamed_on_the_override_that_wrote_it(study_file, tmp_path, capsys):
    """A variant removing a component while another override sets one of its parameters
    made a block without a name, blamed on the base recipe's line of the removed block."""
    _write(study_file, study_file.read_text().replace(
        "  - label: D\n", "  - label: D\n    overrides: {objectives.sdm_global: null, objectives.sdm_global.weight: 2}\n"))
    assert main(["ablate", str(study_file), "--dry-run", "--output-dir", str(tmp_path / "out"), "--seeds", "0"]) == 2
    failed = [line for line in capsys.readouterr().err.splitlines() if ": FAILED: " in line]
    assert failed == [f"[4/4] D seed 0: FAILED: {study_file}:11: variant 'D', override objectives.sdm_global.weight=2: "
                      "objectives.sdm_global: missing 'name' (objective names: " + failed[0].split("(objective names: ")[1]]
    # the same with the command line's -o
    capsys.readouterr()
    assert main(["validate", str(REPO / "recipes" / "dgia.yaml"), "-o", "local_associations.lrc=null", "-o",
                 "local_associations.lrc.threshold_image=0.6"]) == 2
    assert capsys.readouterr().err.startswith("error: override -o local_associations.lrc.threshold_image=0.6: "
                                              "local_associations.lrc: missing 'name'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only on a machine without a GPU")
def test_an_fp16_variant_without_a_gpu_stops_the_study_before_anything_trains(study_file, tmp_path, capsys,
                                                                               monkeypatch):
    """`wsreid run` refuses fp16 without a GPU before the run starts; a study planned
    such a variant as valid and each of its runs failed alone after the others trained.
    Now it is one FAILED line per run and nothing is run."""
    import wsreid.ablate as ablate

    called = []
    monkeypatch.setattr(ablate, "execute_in_process", lambda *a: called.append(a))
    _write(study_file, study_file.read_text() + "  - label: half\n    overrides: {train.mixed_precision: fp16}\n")
    out = tmp_path / "out"
    assert main(["ablate", str(study_file), "--output-dir", str(out), "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    from wsreid.recipe.yamlio import display_path

    line = study_file.read_text().count("\n")
    assert err.count(f"half seed 0: FAILED: {display_path(study_file)}:{line}: variant 'half', override "
                     "train.mixed_precision=fp16: train.mixed_precision: fp16 needs a GPU, and this machine has none")\
        == 1, err
    assert err.splitlines()[-1] == (f"error: {study_file}: 1 of 5 planned runs are invalid (their FAILED lines above "
                                    "say why); nothing was run (fix them, then run the study)")
    assert called == [] and not out.exists()


def _fake_finished_run(study, run, state, disabled):
    """A stand-in for the training call: the run finishes with R1 10."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "metrics.json").write_text(json.dumps(_metrics(10.0)))


def test_the_table_names_the_study_s_own_overrides_and_the_base_as_the_study_file_writes_it(study_file, tmp_path,
                                                                                           capsys, monkeypatch):
    """A study whose own `overrides:` make it a 1-epoch smoke study had a table header that
    named only the command line's -o (it read like the full result), and the base by its
    file name alone."""
    import wsreid.ablate as ablate

    _write(study_file, study_file.read_text().replace(
        "seeds: [0, 1, 2]", "seeds: [0]\noverrides: {train.epochs: 1, data.size: tiny}"))
    monkeypatch.setattr(ablate, "execute_in_process", _fake_finished_run)
    out = tmp_path / "out"
    header = ("Base recipe `recipes/base.yaml` (relative to the study file) with the study's overrides "
              "`-o train.epochs=1 -o data.size=tiny` and the command line's `-o train.warmup_epochs=0`, seeds 0; "
              "test split of each run's selected checkpoint (metrics.json), %, mean ± sample std over the finished "
              "seeds, (delta) to the reference `A`.")
    assert main(["ablate", str(study_file), "--output-dir", str(out), "-o", "train.warmup_epochs=0"]) == 0
    assert (out / "results.md").read_text().splitlines()[2] == header
    assert header in capsys.readouterr().out.splitlines()  # the table printed at the end
    # the study's overrides alone; a base given as an absolute path is named as it is
    _write(study_file, study_file.read_text().replace("base: recipes/base.yaml",
                                                      f"base: {tmp_path / 'recipes' / 'base.yaml'}"))
    assert main(["ablate", str(study_file), "--output-dir", str(out), "--report-only"]) == 0
    assert (out / "results.md").read_text().splitlines()[2].startswith(
        f"Base recipe `{tmp_path / 'recipes' / 'base.yaml'}` with the study's overrides "
        "`-o train.epochs=1 -o data.size=tiny`, seeds 0; ")


def test_a_dry_run_says_that_the_study_would_refuse_its_outdated_runs(study_file, tmp_path, capsys):
    """`--dry-run -o KEY=VALUE` that outdates finished runs exited 0, listed them as
    `restart` and counted '3 runs (0 finished)', while the same command without --dry-run
    refuses them (exit 2)."""
    _write(study_file, study_file.read_text().replace("seeds: [0, 1, 2]", "seeds: [0, 1]"))
    loaded = load_study(study_file)
    out = tmp_path / "out"
    runs = [r for r in plan_runs(loaded, out) if r.label == "A"]
    for run in runs:
        _saved_run(loaded, run, json.dumps(_metrics(10.0)))
    command = ["ablate", str(study_file), "--variant", "A", "--output-dir", str(out), "-o", "train.lr=1e-4"]
    capsys.readouterr()
    assert main(command) == 2
    refusal = capsys.readouterr().err.splitlines()[-1]
    assert refusal.startswith(f"error: {out}: 2 finished run(s) were trained with another recipe")
    assert main(command + ["--dry-run"]) == 2  # what the real run does: refused, with the same line
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == ("2 runs (0 finished, 2 outdated: the study refuses them without "
                                             "--rerun-outdated); nothing was run")
    assert captured.err.splitlines()[-1] == refusal
    assert f"[1/2] A seed 0: outdated, refused without --rerun-outdated -> {runs[0].run_dir}" in captured.err
    assert ": restart -> " not in captured.err
    # with --rerun-outdated, the dry run lists them as the runs it trains again, and exits 0
    assert main(command + ["--dry-run", "--rerun-outdated"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == ("2 runs (0 finished, 2 outdated: --rerun-outdated trains them again); "
                                             "nothing was run")
    assert f"[1/2] A seed 0: restart -> {runs[0].run_dir}" in captured.err
    assert all((r.run_dir / "metrics.json").exists() for r in runs)  # nothing deleted


@pytest.mark.parametrize("text, message", [
    ("base: recipes/base.yaml\nseed: [0]\nvariants: [{label: A}]\n",
     "error: {study}:2: seed: unknown key 'seed' (did you mean 'seeds'?)"),
    ("base: recipes/base.yaml\nseeds: [zero]\nvariants: [{label: A}]\n",
     "error: {study}:2: seeds.0: input should be a valid integer (got 'zero')"),
    ("base: recipes/base.yaml\nvariants: [{label: A, overide: {}}]\n",
     "error: {study}:2: variants.0.overide: unknown key 'overide' (did you mean 'overrides'?)"),
    ("base: recipes/base.yaml\nvariants: [{label: A, extra: 1}]\n",
     "error: {study}:2: variants.0.extra: unknown key 'extra' (valid keys here: label, overrides, note)"),
    ("base: recipes/base.yaml\nvariants:\n  - overrides: {}\n",
     "error: {study}:3: variants.0.label: required key 'label' is missing (add it: the variant's row in the table "
     "and its directory runs/<label>)"),
])
def test_a_study_file_error_reads_as_a_recipe_error_does(study_file, capsys, text, message):
    """Errors of a study file used pydantic's wording (`seed: Extra inputs are not
    permitted`): no 'did you mean', no got-value."""
    _write(study_file, text)
    assert main(["ablate", str(study_file), "--dry-run"]) == 2
    assert capsys.readouterr().err == message.format(study=study_file) + "\n"


def test_ablate_help_says_how_o_values_read_and_where_the_study_directory_is(capsys):
    from wsreid.cli.common import OVERRIDE_VALUE_HELP

    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (f"override a recipe key in every run, after the study's own overrides ({OVERRIDE_VALUE_HELP})"
            in text)
    assert ("study directory (default: the study's output_dir, else runs/ablations/<study file name without "
            ".yaml>; either, when relative, is relative to the working directory, not to the study file)") in text


def test_an_interrupted_run_of_a_study_gives_one_instruction(study_file, tmp_path, capsys, monkeypatch):
    """The interrupted inner run printed its own `wsreid run ... --resume` line right before
    the study's `run the same command again to go on`: two instructions for one thing."""
    import wsreid.engine.session as session

    def interrupted(loaded, output_dir, mode):
        run_dir = Path(loaded.resolved["output_dir"])
        (run_dir / "checkpoints" / "epoch-0001").mkdir(parents=True)
        (run_dir / ".wsreid-run").write_text("{}")
        (run_dir / "checkpoints" / "latest").write_text("epoch-0001")
        raise session.RunInterrupted(run_dir, "interrupted; last complete checkpoint: epoch-0001; resume with: "
                                              f"wsreid run {run_dir / 'recipe.yaml'} --output-dir {run_dir} --resume")

    monkeypatch.setattr(session, "run_recipe", interrupted)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["ablate", str(study_file), "--output-dir", str(out)]) == 130
    err = capsys.readouterr().err
    assert "resume with" not in err
    assert err.endswith("\ninterrupted after 0 of 12 runs; run the same command again to go on (it resumes A seed 0 "
                        "from its last complete checkpoint)\n"), err
