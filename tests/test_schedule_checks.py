"""Recipe values that make an experiment quietly wrong, caught before or at the start of
training (docs/reliability.md, "bad input"; docs/recipes.md, `train`):

* a component whose start epoch lies after the run's last epoch, and a warm-up not
  shorter than the run: one ``warning:`` line each from ``wsreid validate`` and ``wsreid
  run`` (before training), naming file:line and key;
* the identity (PK) sampler with one identity per batch (an error), and with K larger than
  the pairs of some identities (a warning when the sampler is built);
* neighbour counts larger than the training set: ``cluster-pseudo-labels`` k1 / k2 /
  min_samples (an error: one cluster for all data, or none) and ``gsrc-fr`` top_k (a
  warning: it acts as N - 1).
"""

from __future__ import annotations

import glob

import pytest

from conftest import RECIPES
from wsreid.api import BuildContext
from wsreid.cli import main
from wsreid.errors import RecipeError
from wsreid.recipe.yamlio import display_path

DGIA = RECIPES / "dgia.yaml"


def _line_of(path, text: str) -> int:
    """1-based number of the first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def _extend(tmp_path, base, body: str, name: str = "late.yaml"):
    """A recipe file extending ``base`` with ``body`` (its lines start at line 2)."""
    path = tmp_path / name
    path.write_text(f"extends: {base}\n{body}")
    return path


# --------------------------------------------------------------------------- start epochs


def test_an_objective_starting_after_the_last_epoch_is_one_warning_line(make_recipe, tmp_path, capsys):
    base = make_recipe("dgia.yaml")  # tiny: train.epochs 2; gsrc starts at 2, so it runs
    late = _extend(tmp_path, base, "objectives:\n  sdm_local:\n    start_epoch: 50\n")
    assert main(["validate", str(late)]) == 0
    captured = capsys.readouterr()
    assert ": valid (" in captured.out
    assert captured.err == (
        f"warning: {display_path(late)}:4: objectives.sdm_local.start_epoch: objective 'sdm' never runs "
        "(starts at epoch 50, the run ends at epoch 2) (raise train.epochs to at least 50, or lower start_epoch)\n")


def test_a_default_start_epoch_is_reported_at_the_block(make_recipe, tmp_path, capsys):
    """triplet starts at epoch 21 by default: the line is the block's, which sets no start_epoch."""
    base = make_recipe("baselines/cluster-pseudo-labels.yaml",
                       {"objectives": {"triplet": {"name": "triplet", "relation": "pseudo_labels", "start_epoch": 2}}})
    late = _extend(tmp_path, base, "objectives:\n  triplet_late: {name: triplet, relation: pseudo_labels}\n")
    assert main(["validate", str(late)]) == 0
    assert capsys.readouterr().err == (
        f"warning: {display_path(late)}:3: objectives.triplet_late.start_epoch: objective 'triplet' never runs "
        "(starts at epoch 21, the run ends at epoch 2) (raise train.epochs to at least 21, or lower start_epoch)\n")


def test_a_one_epoch_smoke_run_of_dgia_warns_of_gsrc_and_the_warm_up(capsys):
    """Associations have their own start_epoch (found generically, not by name); a short
    smoke run stays allowed (warnings, exit 0)."""
    assert main(["validate", str(DGIA), "-o", "train.epochs=1"]) == 0
    base = RECIPES / "base" / "synth-pretrained-tiny-clip.yaml"
    assert capsys.readouterr().err == (
        f"warning: {display_path(DGIA)}:{_line_of(DGIA, 'start_epoch: 2')}: global_associations.gsrc.start_epoch: "
        "global association 'gsrc-fr' never runs (starts at epoch 2, the run ends at epoch 1) "
        "(raise train.epochs to at least 2, or lower start_epoch)\n"
        f"warning: {display_path(base)}:{_line_of(base, 'warmup_epochs: 2')}: train.warmup_epochs: the learning rate "
        "never reaches train.lr (warm-up of 2 epochs, the run ends at epoch 1) "
        "(make train.warmup_epochs shorter than train.epochs)\n")


def test_a_warm_up_as_long_as_the_run_is_one_warning_line(make_recipe, capsys):
    recipe = make_recipe("baselines/itc.yaml")  # train.epochs 2
    assert main(["validate", str(recipe), "-o", "train.warmup_epochs=2"]) == 0
    assert capsys.readouterr().err == (
        "warning: override -o train.warmup_epochs=2: train.warmup_epochs: the learning rate never reaches train.lr "
        "(warm-up of 2 epochs, the run ends at epoch 2) (make train.warmup_epochs shorter than train.epochs)\n")
    assert main(["validate", str(recipe), "-o", "train.warmup_epochs=1.5"]) == 0
    assert capsys.readouterr().err == ""
    # whole epochs when the lr changes once per epoch: 1.6 was rounded to 2 (and 0.5 to no
    # warm-up at all) without a word; it is refused, naming the whole numbers around it
    assert main(["validate", str(recipe), "-o", "train.warmup_epochs=1.6", "-o", "train.lr_schedule_unit=epoch"]) == 2
    assert capsys.readouterr().err == (
        "error: override -o train.warmup_epochs=1.6 -o train.lr_schedule_unit=epoch: train: train.warmup_epochs 1.6: "
        "with train.lr_schedule_unit epoch the learning rate changes once per epoch, so the warm-up lasts whole "
        "epochs (write 1 or 2, or set train.lr_schedule_unit: step)\n")
    assert main(["validate", str(recipe), "-o", "train.warmup_epochs=2", "-o", "train.lr_schedule_unit=epoch"]) == 0
    assert "train.warmup_epochs: the learning rate never reaches train.lr" in capsys.readouterr().err


def test_run_prints_the_warnings_before_training_once_its_directory_is_accepted(make_recipe, monkeypatch, capsys,
                                                                                tmp_path):
    """The warnings come once the run directory is checked and prepared, before the data
    and the encoder: a refused directory (or --resume) was the last of several lines,
    behind warnings about a run that never started."""
    import wsreid.engine.session as session
    from wsreid.cli.run import print_warnings
    from wsreid.recipe import load_recipe

    seen = []

    def no_training(*args, **kwargs):
        seen.append(capsys.readouterr().err)
        raise SystemExit(0)

    monkeypatch.setattr(session, "init_weights", no_training)  # the first step of training
    recipe = make_recipe("baselines/itc.yaml")
    with pytest.raises(SystemExit):
        main(["run", str(recipe), "-o", "train.warmup_epochs=3", "--output-dir", str(tmp_path / "fresh")])
    assert seen == [
        "warning: override -o train.warmup_epochs=3: train.warmup_epochs: the learning rate never reaches train.lr "
        "(warm-up of 3 epochs, the run ends at epoch 2) (make train.warmup_epochs shorter than train.epochs)\n"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    assert main(["run", str(recipe), "-o", "train.warmup_epochs=3", "--output-dir", str(foreign)]) == 2
    assert capsys.readouterr().err == (f"error: output directory {foreign} exists and is not a wsreid run (choose "
                                       "another --output-dir; wsreid never deletes foreign directories)\n")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # another process of a multi-process launch: the first one says it
    print_warnings(load_recipe(recipe, ["train.warmup_epochs=3"]))
    assert capsys.readouterr().err == ""


def test_shipped_recipes_have_no_schedule_warnings():
    """Every shipped recipe that is a whole recipe (ablation studies and partial bases are
    not) validates - none is left out of the check by a validation error - and has no
    schedule warning."""
    from wsreid.errors import UserError
    from wsreid.pluginmanager import load_plugins
    from wsreid.recipe.build import schedule_warnings, validate_recipe
    from wsreid.recipe.loader import read_recipe_tree, recipe_plugin_modules

    checked, invalid = 0, []
    for path in sorted(glob.glob(str(RECIPES / "**" / "*.yaml"), recursive=True)):
        tree, locations = read_recipe_tree(path)
        if "data" not in tree or "objectives" not in tree:
            continue
        registry = load_plugins(recipe_plugin_modules(tree, locations)).registry
        try:  # validation without the data folders (the paper's datasets are not here)
            recipe = validate_recipe(tree, registry, locations)
        except UserError as error:
            invalid.append(f"{path}: {error}")
            continue
        assert schedule_warnings(recipe, locations, registry) == [], path
        checked += 1
    assert invalid == []
    assert checked >= 25, checked  # 27 whole recipes today: the filter above leaves out none of them


# --------------------------------------------------------------------------- PK sampler


def test_identity_batches_of_one_identity_are_refused(tmp_path, capsys):
    recipe = _extend(tmp_path, RECIPES / "baselines" / "supervised-pk.yaml",
                     "train:\n  batch_size: 8\n  instances_per_identity: 8\n", name="pk.yaml")
    assert main(["validate", str(recipe)]) == 2
    assert capsys.readouterr().err == (
        f"error: {display_path(recipe)}:2: train: train.sampler identity: train.batch_size 8 equals "
        "train.instances_per_identity 8, so every batch holds ONE identity and every in-batch negative is the same "
        "person (make train.batch_size a multiple of 8 of at least 16)\n")
    assert main(["validate", str(RECIPES / "baselines" / "supervised-pk.yaml"), "-o", "train.batch_size=4"]) == 2
    assert capsys.readouterr().err == (
        "error: override -o train.batch_size=4: train: train.sampler identity: train.batch_size 4 equals "
        "train.instances_per_identity 4, so every batch holds ONE identity and every in-batch negative is the same "
        "person (make train.batch_size a multiple of 4 of at least 8)\n")


def test_identity_sampler_warns_when_most_identities_have_fewer_than_k_pairs(capsys):
    from wsreid.engine.data import IdentityBatchSampler

    ids = [i for i, n in enumerate([1, 3, 4, 6, 9]) for _ in range(n)]
    IdentityBatchSampler(ids, 10, 5, seed=0)  # median 4 < K = 5
    assert capsys.readouterr().err == (
        "warning: train.instances_per_identity 5: 3 of 5 training identities have fewer than 5 pairs "
        "(median 4 pairs per identity), so their groups repeat pairs (lower train.instances_per_identity to repeat "
        "fewer)\n")
    IdentityBatchSampler(ids, 10, 5, seed=0, rank=1, world_size=2)  # the first process says it
    IdentityBatchSampler(ids, 8, 4, seed=0)  # two short identities of five, median 4 = K: usual, no warning
    IdentityBatchSampler(ids, 4, 1, seed=0)  # every identity has K pairs
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- neighbour counts


def _cluster(n: int, **params):
    from wsreid_baselines.pseudo_labels import ClusterPseudoLabels

    return ClusterPseudoLabels(ClusterPseudoLabels.Params(**params), BuildContext(num_train=n))


@pytest.mark.parametrize("params, key, message", [
    ({"k1": 1000}, "k1", "1000: N(i, k1) holds k1 + 1 rows, and the training set has only 292 pairs: every row is a "
                         "reciprocal neighbour of every other and the clustering gives ONE cluster for all data"),
    ({"k1": 291}, "k1", "291: N(i, k1) holds k1 + 1 rows, and the training set has only 292 pairs: every row is a "
                        "reciprocal neighbour of every other and the clustering gives ONE cluster for all data"),
    ({"k2": 292}, "k2", "292: the query expansion would average every row over all 292 training pairs, making every "
                        "row the same and the clustering ONE cluster for all data"),
    ({"min_samples": 293}, "min_samples", "293: the training set has only 292 pairs, so no row is a core point and "
                                          "every image becomes its own pseudo identity (no relation between images)"),
])
def test_cluster_neighbour_counts_larger_than_the_data_are_refused(params, key, message):
    """At build, a ParamsCheckError naming the parameter (the run cites its line); for an
    epoch's features, a RecipeError naming the component and the parameter."""
    from wsreid.errors import ParamsCheckError

    with pytest.raises(ParamsCheckError) as raised:
        _cluster(292, **params)
    assert (raised.value.key, raised.value.message) == (key, message) and raised.value.hint.startswith("lower ")
    with pytest.raises(RecipeError) as raised:
        _cluster(10_000, **params)._check_sizes(292)
    assert str(raised.value).startswith(f"cluster-pseudo-labels {key} {message} (lower {key} ")
    _cluster(292, k1=290, k2=291, min_samples=292)  # the largest that can still give more than one result


def test_cluster_k1_larger_than_the_data_stops_the_run_before_training(make_recipe, capsys):
    """Found once the data is loaded: cited where it was set (the override), as validate cites."""
    recipe = make_recipe("baselines/cluster-pseudo-labels.yaml",
                         {"objectives": {"itc": {"name": "itc"}, "sdm_pseudo": {"name": "sdm", "relation": "pseudo_labels"},
                                         "triplet": None}})
    assert main(["validate", str(recipe), "-o", "global_associations.pseudo_labels.k1=100000"]) == 0  # sizes unknown
    capsys.readouterr()
    assert main(["run", str(recipe), "-o", "global_associations.pseudo_labels.k1=100000"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: override -o global_associations.pseudo_labels.k1=100000: global_associations.pseudo_labels.k1: "
                   "100000: N(i, k1) holds k1 + 1 rows, and the training set has only 292 pairs: every row is a "
                   "reciprocal neighbour of every other and the clustering gives ONE cluster for all data (lower k1 "
                   "below 291 (the family uses 30))\n"), err


def test_gsrc_top_k_larger_than_the_memory_is_one_warning_line(capsys):
    from wsreid_dgia.memory import GlobalRelationConstruction, GsrcParams

    GlobalRelationConstruction(GsrcParams(top_k=1000), BuildContext(num_train=292))
    assert capsys.readouterr().err == (
        "warning: gsrc-fr top_k 1000: the memory holds 292 rows (one per training pair), so an anchor has at most "
        "291 neighbours and every row is considered: top_k acts as 291 (lower top_k below 292)\n")
    GlobalRelationConstruction(GsrcParams(top_k=291), BuildContext(num_train=292))
    GlobalRelationConstruction(GsrcParams(top_k=1000), BuildContext())  # the size is not known yet
    # another process of a multi-process run: the main one says it (BuildContext.warn)
    GlobalRelationConstruction(GsrcParams(top_k=1000), BuildContext(num_train=292, is_main=False))
    assert capsys.readouterr().err == ""


def test_an_association_no_objective_reads_and_a_k_without_its_sampler_warn(make_recipe, capsys):
    """Removing GSRC-FR's loss but not GSRC-FR left its memory banks and mining running at
    every step, silently; instances_per_identity with the random sampler changed nothing."""
    recipe = make_recipe("dgia.yaml")
    assert main(["validate", str(recipe), "-o", "objectives.sdm_global=null"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and err.count("\n") == 1
    assert err.endswith(": global_associations.gsrc: no objective reads this association (none has relation: gsrc), "
                        "yet it is computed at every step (remove it with global_associations.gsrc: null, or add an "
                        "objective with relation: gsrc)\n")
    assert main(["validate", str(recipe), "-o", "objectives.sdm_global=null", "-o", "global_associations.gsrc=null"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["validate", str(recipe), "-o", "train.instances_per_identity=8"]) == 0
    assert capsys.readouterr().err == (
        "warning: override -o train.instances_per_identity=8: train.instances_per_identity: 8 is read by "
        "train.sampler: identity only, and the sampler is 'random': it changes nothing (set train.sampler: identity "
        "for batches of P people x K pairs, or remove it)\n")
