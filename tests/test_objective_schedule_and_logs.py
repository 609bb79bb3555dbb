"""The engine's handling of objectives in a tiny ITC run, read back from its logs: an
objective's ``weight`` is a factor of its loss, its ``start_epoch`` is the first epoch it
counts, and each epoch's losses in ``logs/epochs.csv`` are the means of that epoch's rows
of ``logs/steps.csv`` (docs/components.md "Objective", docs/hooks.md ``wsreid_epoch_end``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import RECIPES, TINY_OVERRIDES, plugin_module, yaml_file
from wsreid.cli import main

WEIGHT = 0.25


def _run(work: Path, data_root: Path, name: str, weight: float, epochs: int) -> Path:
    """A tiny ITC run logging every step, with a second ITC objective ``itc_late`` (weight 1)
    that starts at epoch 2; ``itc`` carries ``weight``. Returns the run directory."""
    tree = {"extends": str(RECIPES / "baselines" / "itc.yaml"), "output_dir": str(work / name),
            "data": {"name": "synth-pedes", "size": "tiny", "root": str(data_root)}}
    tree.update({k: dict(v) for k, v in TINY_OVERRIDES.items()})
    tree["train"].update(epochs=epochs, batch_size=32, log_every=1)
    tree["init"] = None
    tree["objectives"] = {"itc": {"name": "itc", "weight": weight}, "itc_late": {"name": "itc", "start_epoch": 2}}
    assert main(["run", str(yaml_file(tree, work / f"{name}.yaml"))]) == 0
    return work / name


def _rows(run_dir: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "logs" / name).open()))


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory, synth_tiny_root) -> Path:
    """2 epochs: ``itc`` at weight 0.25 from epoch 1, ``itc_late`` at weight 1 from epoch 2."""
    return _run(tmp_path_factory.mktemp("schedule"), synth_tiny_root, "weighted", WEIGHT, epochs=2)


@pytest.fixture(scope="module")
def unweighted(tmp_path_factory, synth_tiny_root) -> Path:
    """The same run at ``itc`` weight 1, one epoch (only its first step is compared)."""
    return _run(tmp_path_factory.mktemp("schedule"), synth_tiny_root, "unweighted", 1.0, epochs=1)


def test_an_objective_counts_from_its_start_epoch(scheduled):
    epochs = _rows(scheduled, "epochs.csv")
    steps = _rows(scheduled, "steps.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2]
    first = [r for r in steps if r["epoch"] == "1"]
    second = [r for r in steps if r["epoch"] == "2"]
    assert len(first) == len(second) > 1 and len(steps) == len(first) + len(second)
    assert [int(r["step"]) for r in steps] == list(range(1, len(steps) + 1))  # log_every 1: every step
    # epoch 1: itc_late has not started, the total is itc alone
    assert epochs[0]["loss/itc_late"] == "" and all(r["loss/itc_late"] == "" for r in first)
    assert all(float(r["loss/itc"]) > 0 and r["loss/total"] == r["loss/itc"] for r in first)
    # epoch 2: it counts at every step and is part of the total
    assert float(epochs[1]["loss/itc_late"]) > 0 and all(float(r["loss/itc_late"]) > 0 for r in second)
    for r in second:
        assert float(r["loss/total"]) == pytest.approx(float(r["loss/itc"]) + float(r["loss/itc_late"]), rel=1e-6)


def test_the_weight_multiplies_the_logged_loss_and_the_total(scheduled, unweighted):
    """Step 1 sees the same weights and the same batch in both runs (same seed): with
    ``weight: 0.25`` the logged ``loss/itc`` and the total are exactly 0.25 of the run at
    weight 1 (a power of two: no rounding). docs/components.md: the engine multiplies the
    loss by ``weight``, then logs it as ``loss/<label>``: the logged loss is the weighted one."""
    one = _rows(unweighted, "steps.csv")[0]
    quarter = _rows(scheduled, "steps.csv")[0]
    assert one["step"] == quarter["step"] == "1"
    assert float(one["loss/itc"]) > 0
    assert float(quarter["loss/itc"]) == WEIGHT * float(one["loss/itc"])
    assert float(quarter["loss/total"]) == WEIGHT * float(one["loss/total"])
    # In epoch 2 itc (weight 0.25) and itc_late (weight 1) compute the same ITC on the same
    # features at every step: the logged values differ by exactly the factor.
    second = [r for r in _rows(scheduled, "steps.csv") if r["epoch"] == "2"]
    assert second and all(float(r["loss/itc"]) == WEIGHT * float(r["loss/itc_late"]) for r in second)


def test_epoch_losses_are_the_means_of_the_step_losses(scheduled):
    """logs/epochs.csv holds, per epoch, the mean of each loss over the epoch's steps
    (docs/hooks.md, wsreid_epoch_end); with ``log_every: 1`` steps.csv holds every step."""
    epochs = _rows(scheduled, "epochs.csv")
    steps = _rows(scheduled, "steps.csv")
    checked = 0
    for row in epochs:
        mine = [r for r in steps if r["epoch"] == row["epoch"]]
        for key in ("loss/itc", "loss/itc_late", "loss/total"):
            values = [float(r[key]) for r in mine if r[key] != ""]
            if row[key] == "":
                assert not values, (row["epoch"], key)
                continue
            assert len(values) == len(mine)
            mean = sum(values) / len(values)
            assert float(row[key]) == pytest.approx(mean, rel=1e-12, abs=0), (row["epoch"], key)
            assert values[-1] != pytest.approx(mean, rel=1e-3)  # the last step alone would not do
            checked += 1
    assert checked == 5  # itc and the total in both epochs, itc_late in epoch 2


def test_an_objective_that_skips_steps_is_averaged_over_the_steps_it_ran(tmp_path, synth_tiny_root, test_plugins_path):
    tree = {"extends": str(RECIPES / "baselines" / "itc.yaml"), "output_dir": str(tmp_path / "run"),
            "data": {"name": "synth-pedes", "size": "tiny", "root": str(synth_tiny_root)},
            "plugins": ["wsreid_test_faults"]}
    tree.update({k: dict(v) for k, v in TINY_OVERRIDES.items()})
    tree["train"].update(epochs=1, batch_size=32, log_every=1)
    tree["init"] = None
    tree["objectives"] = {"itc": {"name": "itc"}, "even": {"name": "even-steps-itc"}}
    assert main(["run", str(yaml_file(tree, tmp_path / "even.yaml"))]) == 0
    steps = _rows(tmp_path / "run", "steps.csv")
    ran = [float(r["loss/even"]) for r in steps if r["loss/even"] != ""]
    assert 1 < len(ran) < len(steps)  # it skipped some steps
    epoch = _rows(tmp_path / "run", "epochs.csv")[0]
    assert float(epoch["loss/even"]) == pytest.approx(sum(ran) / len(ran), rel=1e-9)  # not sum / all steps


def test_an_objective_declaring_its_own_weight_is_not_weighted_again(tmp_path, synth_tiny_root, monkeypatch):
    """docs/components.md: the framework adds ``weight`` unless Params declares it; an
    objective that declared it (and applied it) had its loss multiplied by it a second
    time (loss/own 49.0 for a weight of 7)."""
    from pydantic import Field

    from wsreid.api import Objective
    from wsreid.api import Params as BaseParams

    class OwnWeight(Objective):
        class Params(BaseParams):
            weight: float = Field(7.0, description="the objective's own factor")

        def loss(self, features, relations, batch, ctx):
            base = features["base"]
            return (base.image.sum() * 0.0 + 1.0) * self.params.weight

    plugin_module(monkeypatch, "own_weight_plugin", ("objective", "own-weight", OwnWeight))
    tree = {"extends": str(RECIPES / "baselines" / "itc.yaml"), "output_dir": str(tmp_path / "run"),
            "plugins": ["own_weight_plugin"], "init": None,
            "data": {"name": "synth-pedes", "size": "tiny", "root": str(synth_tiny_root)},
            **{k: dict(v) for k, v in TINY_OVERRIDES.items()}}
    tree["train"].update(epochs=1, warmup_epochs=0)
    tree["objectives"] = {"itc": {"name": "itc"}, "own": {"name": "own-weight"}}
    assert main(["run", str(yaml_file(tree, tmp_path / "own.yaml"))]) == 0
    assert float(_rows(tmp_path / "run", "epochs.csv")[0]["loss/own"]) == pytest.approx(7.0)


def test_the_logged_learning_rate_is_the_one_each_step_trained_with(scheduled):
    """steps.csv's lr of step s (1-based) is the schedule's factor at step s - 1, the rate
    that step's update used, and epochs.csv's that of the epoch's last step. Both logged the
    scheduler's rate after the update, one step ahead: a 2-epoch warm-up of a 2-epoch run
    logged train.lr for epoch 2, which no step used (while a warning said so)."""
    from wsreid.engine.optim import lr_factor
    from wsreid.recipe import load_recipe

    train = load_recipe(scheduled / "recipe.yaml").recipe.train
    steps = _rows(scheduled, "steps.csv")
    per_epoch = sum(row["epoch"] == "1" for row in steps)
    assert per_epoch > 1 and [int(row["step"]) for row in steps] == list(range(1, 2 * per_epoch + 1))
    assert [float(row["lr"]) for row in steps] == pytest.approx(
        [train.lr * lr_factor(int(row["step"]) - 1, per_epoch, train) for row in steps], rel=1e-6)
    assert float(steps[0]["lr"]) == pytest.approx(train.lr * train.warmup_factor)  # the first update's
    epochs = _rows(scheduled, "epochs.csv")
    assert [float(row["lr"]) for row in epochs] == pytest.approx(
        [train.lr * lr_factor(e * per_epoch - 1, per_epoch, train) for e in (1, 2)], rel=1e-6)


def test_run_prints_one_line_an_epoch_with_what_epochs_csv_holds(make_recipe, tmp_path, capsys):
    """Output to a log file or CI (no progress bar) was silent between the dataset summary
    and the test line, for minutes."""
    import re

    recipe = make_recipe("baselines/itc.yaml")  # 2 epochs, validation every epoch
    capsys.readouterr()
    assert main(["run", str(recipe)]) == 0
    captured = capsys.readouterr()
    printed = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert captured.err == ""  # stderr: warnings and the one error line only
    rows = _rows(tmp_path / "run", "epochs.csv")
    assert len(printed) == len(rows) == 2
    for line, row in zip(printed, rows):
        found = re.fullmatch(r"epoch (\d)/2: loss (\S+), lr (\S+), val R1 (\S+) mAP (\S+) \((\S+) s\)", line)
        assert found, line
        epoch, loss, lr, r1, m_ap, seconds = found.groups()
        assert epoch == row["epoch"]
        assert float(loss) == pytest.approx(float(row["loss/total"]), abs=5e-5)
        assert float(lr) == pytest.approx(float(row["lr"]), rel=1e-2)
        assert (float(r1), float(m_ap)) == pytest.approx((float(row["val/R1"]), float(row["val/mAP"])), abs=5e-3)
        assert float(seconds) == pytest.approx(float(row["seconds"]), abs=0.05)


def test_the_epoch_line_leaves_out_what_an_epoch_does_not_have():
    from wsreid.engine.run import epoch_summary

    assert epoch_summary(1, 8, {"loss/total": 4.12345, "lr": 2e-4, "seconds": 17.04}, {"epoch": 1}) == (
        "epoch 1/8: loss 4.1235, lr 0.0002 (17.0 s)")
    assert epoch_summary(2, 8, {"lr": 1.5e-5, "seconds": 3.0}, {"epoch": 2, "val": {"R1": 25.104, "mAP": 24.0}}) == (
        "epoch 2/8: lr 1.5e-05, val R1 25.10 mAP 24.00 (3.0 s)")
