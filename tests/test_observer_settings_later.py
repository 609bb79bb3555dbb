"""An installed observer plugin that declares settings writes its block into the recipe.yaml
of every run trained while it is installed (docs/plugins.md). Disabled or uninstalled
later, it broke those runs: ``wsreid eval RUN`` said ``settings.loss_log: unknown key
'loss_log'``, naming neither the plugin nor a way out. Evaluation and search call no
hook, so they now leave such a block out with a note; a recipe that trains says which
block no loaded plugin declares and what to do."""

from __future__ import annotations

import csv
import io
import json

from test_plugin_manager import site  # noqa: F401 - a fixture

from wsreid.cli import main

OBSERVER = '''
from pydantic import Field
from wsreid import hookimpl
from wsreid.api import Params


class LossLog(Params):
    """Where the loss log goes."""

    every: int = Field(10, ge=1, description="a line every N steps")


@hookimpl
def wsreid_register(registry):
    registry.add_settings("loss_log", LossLog)


@hookimpl
def wsreid_after_step(run, epoch, step, losses):
    pass


@hookimpl
def wsreid_epoch_start(run, epoch):
    import os, signal
    if epoch == 2 and os.environ.get("FAKEPLUG_STOP_AT_EPOCH_2"):
        signal.raise_signal(signal.SIGTERM)
'''


def test_a_run_trained_with_an_observer_is_evaluated_without_it(site, make_recipe, tmp_path, capsys):  # noqa: F811
    site("fake-loss-log", "0.3", {"losslog": "fakeplug_losslog"}, {"fakeplug_losslog": OBSERVER})
    run_dir = tmp_path / "trained"
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 0
    saved = run_dir / "recipe.yaml"
    assert "settings:\n  loss_log:\n    every: 10\n" in saved.read_text()
    capsys.readouterr()

    assert main(["eval", str(run_dir), "--disable-plugin", "losslog"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"note: {saved}: settings.loss_log left out: no plugin loaded now declares it (read by a "
                            "plugin's hooks while the run trained; evaluation and search call none)\n")
    assert "R1" in captured.out

    # training from that recipe (a resume, a rerun) needs the plugin, or the block left out
    line = next(n for n, text in enumerate(saved.read_text().splitlines(), 1) if text.startswith("  loss_log:"))
    assert main(["validate", str(saved), "--disable-plugin", "losslog"]) == 2
    assert capsys.readouterr().err == (
        f"error: {saved}:{line}: settings.loss_log: no plugin loaded now declares settings 'loss_log' (install or "
        "enable the plugin that declares them (none is declared now; wsreid plugins lists them), or leave the block "
        "out (-o settings.loss_log=null))\n")
    assert main(["validate", str(saved), "--disable-plugin", "losslog", "-o", "settings.loss_log=null"]) == 0


def test_a_run_stopped_with_an_observer_resumes_without_it(site, make_recipe, tmp_path, capsys,  # noqa: F811
                                                           monkeypatch):
    """The refusal's own advice (-o settings.loss_log=null) was refused again by --resume:
    the recipe the run was started with did not load without the plugin. An observer's
    block left out is not a change of the training: the run resumes after its epoch-1
    checkpoint (epoch 1's logged rows kept, epochs 2 and 3 added), saying so."""
    site("fake-loss-log", "0.3", {"losslog": "fakeplug_losslog"}, {"fakeplug_losslog": OBSERVER})
    run_dir = tmp_path / "stopped"
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 3, "warmup_epochs": 0}})
    monkeypatch.setenv("FAKEPLUG_STOP_AT_EPOCH_2", "1")
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 143
    monkeypatch.delenv("FAKEPLUG_STOP_AT_EPOCH_2")
    assert "last complete checkpoint: epoch-0001;" in capsys.readouterr().err
    epochs_before = (run_dir / "logs" / "epochs.csv").read_text()
    steps_before = (run_dir / "logs" / "steps.csv").read_text()
    assert [r["epoch"] for r in csv.DictReader(io.StringIO(epochs_before))] == ["1"]
    again = ["run", str(run_dir / "recipe.yaml"), "--output-dir", str(run_dir), "--resume", "--disable-plugin",
             "losslog"]
    assert main(again) == 2
    assert "settings.loss_log: no plugin loaded now declares settings 'loss_log'" in capsys.readouterr().err
    assert main([*again, "-o", "settings.loss_log=null"]) == 0
    err = capsys.readouterr().err
    assert ("note: --resume: settings.loss_log left out (no plugin loaded now declares it): the run goes on without "
            "that observer\n") in err and "error" not in err
    # resumed after epoch 1, not restarted: the stopped process's log rows (epoch 1's, with its
    # own timing in 'seconds') are kept as written, and the resumed one adds epochs 2 and 3 only
    epochs_after = (run_dir / "logs" / "epochs.csv").read_text()
    steps_after = (run_dir / "logs" / "steps.csv").read_text()
    assert epochs_after.startswith(epochs_before) and steps_after.startswith(steps_before)
    assert [r["epoch"] for r in csv.DictReader(io.StringIO(epochs_after))] == ["1", "2", "3"]
    added = list(csv.DictReader(io.StringIO(steps_after)))[len(steps_before.splitlines()) - 1:]
    assert added and {r["epoch"] for r in added} == {"2", "3"}
    steps = [int(r["step"]) for r in csv.DictReader(io.StringIO(steps_after))]
    assert steps == sorted(set(steps))  # no step logged twice
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
