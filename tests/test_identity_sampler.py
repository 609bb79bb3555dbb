"""The identity-balanced (PK) sampler of the supervised reference (``train.sampler:
identity``): P distinct true identities x K pairs per global batch, the multi-process and
resume contract of the random sampler, and the run labelled NOT weakly supervised."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from conftest import RECIPES
from wsreid.cli import main
from wsreid.recipe import load_recipe
from wsreid.engine.data import IdentityBatchSampler
from wsreid.errors import UserError
from wsreid.recipe.model import TrainConfig


def _person_ids(sizes: list[int], shuffle_seed: int = 0) -> list[int]:
    """Identity 10*i (non-contiguous ids) holding sizes[i] pairs, pairs interleaved."""
    import random

    ids = [10 * i for i, n in enumerate(sizes) for _ in range(n)]
    random.Random(shuffle_seed).shuffle(ids)
    return ids


def _check_batches(batches: list[list[int]], ids: list[int], p: int, k: int) -> None:
    counts = Counter(ids)
    for batch in batches:
        assert len(batch) == p * k
        groups = [batch[j * k:(j + 1) * k] for j in range(p)]
        owners = [ids[g[0]] for g in groups]
        assert len(set(owners)) == p  # P distinct identities ...
        for owner, group in zip(owners, groups):
            assert {ids[i] for i in group} == {owner}  # ... x K pairs of that identity
            assert len(set(group)) == min(k, counts[owner])  # repeats only when it has < K pairs


def test_batches_are_p_identities_times_k_pairs():
    sizes = [1, 2, 3, 4, 5, 7, 8, 9, 12, 1, 6, 4, 3, 2, 10, 5]
    ids = _person_ids(sizes)
    s = IdentityBatchSampler(ids, 16, 4, seed=0)
    groups = sum((n + 3) // 4 for n in sizes)
    assert s.steps_per_epoch() == groups // 4 and len(s) == groups // 4
    batches = s.global_batches(1)
    assert len(batches) == s.steps_per_epoch()
    _check_batches(batches, ids, 4, 4)
    s.set_epoch(1)
    assert list(s) == batches


def test_deterministic_per_seed_and_epoch_and_epochs_differ():
    ids = _person_ids([5, 9, 3, 8, 4, 6, 7, 2, 11, 4] * 3)
    a, b = IdentityBatchSampler(ids, 8, 2, seed=4), IdentityBatchSampler(ids, 8, 2, seed=4)
    assert a.global_batches(3) == b.global_batches(3)
    assert a.global_batches(3) != a.global_batches(4)
    assert a.global_batches(3) != IdentityBatchSampler(ids, 8, 2, seed=5).global_batches(3)


def test_rank_slices_concatenate_to_the_global_batch_and_skip_resumes():
    ids = _person_ids([6, 4, 9, 1, 3, 8, 5, 5, 2, 7, 12, 4])
    single = IdentityBatchSampler(ids, 16, 4, seed=1)
    ranks = [IdentityBatchSampler(ids, 16, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in (single, *ranks):
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert all(len(b) == 8 for part in per_rank for b in part)  # 2 whole groups of 4 per rank
    assert [a + b for a, b in zip(*per_rank)] == list(single)
    full = list(single)
    for s in (single, *ranks):
        s.set_epoch(2, skip=2)
    assert list(single) == full[2:] and len(single) == len(full) - 2
    assert [a + b for a, b in zip(*[list(s) for s in ranks])] == full[2:]


def test_identities_with_one_pair_fill_their_group():
    ids = _person_ids([1, 1, 1, 1, 1, 1])
    s = IdentityBatchSampler(ids, 6, 3, seed=0)
    assert s.steps_per_epoch() == 3
    for batch in s.global_batches(1):
        assert [batch[j] for j in range(0, 6, 3)] == [batch[j + 1] for j in range(0, 6, 3)]
    _check_batches(s.global_batches(1), ids, 2, 3)


def test_a_dominant_identity_is_capped_at_one_group_per_batch():
    ids = _person_ids([40, 1, 1, 1])  # 20 groups of one identity, 3 singletons: 23 groups
    s = IdentityBatchSampler(ids, 4, 2, seed=0)  # P = 2: 3 batches (each singleton + one of the 20)
    assert s.steps_per_epoch() == 3
    _check_batches(s.global_batches(1), ids, 2, 2)


@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=40), k=st.sampled_from([2, 3, 4]),
       p=st.sampled_from([1, 2, 4]), world=st.sampled_from([1, 2]), seed=st.integers(0, 3), epoch=st.integers(1, 3))
@settings(max_examples=80, deadline=None)
def test_pk_property(sizes, k, p, world, seed, epoch):
    ids = _person_ids(sizes, seed)
    if len(sizes) < p:
        with pytest.raises(UserError, match="distinct identities"):
            IdentityBatchSampler(ids, p * k, k, seed=seed)
        return
    if p % world:
        with pytest.raises(UserError, match="whole identity groups|not divisible"):
            IdentityBatchSampler(ids, p * k, k, seed=seed, world_size=world)
        return
    single = IdentityBatchSampler(ids, p * k, k, seed=seed)
    batches = single.global_batches(epoch)
    groups = [(n + k - 1) // k for n in sizes]
    steps = len(batches)
    assert steps == single.steps_per_epoch() <= sum(groups) // p
    # the largest feasible number of steps: one group of an identity per batch at most
    assert sum(min(m, steps) for m in groups) >= steps * p
    assert sum(min(m, steps + 1) for m in groups) < (steps + 1) * p
    _check_batches(batches, ids, p, k)
    assert len({g for b in batches for g in map(tuple, (b[j * k:(j + 1) * k] for j in range(p)))}) == steps * p
    ranks = [IdentityBatchSampler(ids, p * k, k, seed=seed, rank=r, world_size=world) for r in range(world)]
    for s in ranks:
        s.set_epoch(epoch)
    assert [sum(parts, []) for parts in zip(*[list(s) for s in ranks])] == batches


def test_rank_slices_must_be_whole_groups():
    ids = _person_ids([4] * 8)
    with pytest.raises(UserError, match="not a multiple of train.instances_per_identity 4"):
        IdentityBatchSampler(ids, 8, 4, seed=0, world_size=4)  # 2 pairs per process
    with pytest.raises(UserError, match="not a multiple"):
        IdentityBatchSampler(ids, 10, 4, seed=0)


def test_config_rejects_batch_not_multiple_of_k():
    with pytest.raises(ValidationError, match="batch_size 18 is not a multiple of train.instances_per_identity 4"):
        TrainConfig(sampler="identity", batch_size=18)
    TrainConfig(sampler="random", batch_size=18)  # the random sampler does not care
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        TrainConfig(sampler="identity", instances_per_identity=1)
    with pytest.raises(ValidationError, match="drop_last"):
        TrainConfig(sampler="identity", drop_last=False)


def test_recipe_validation_names_the_problem(capsys):
    recipe = str(RECIPES / "baselines" / "supervised-pk.yaml")
    assert main(["validate", recipe]) == 0
    assert main(["validate", recipe, "-o", "train.batch_size=18"]) == 2
    assert "batch_size 18 is not a multiple of train.instances_per_identity 4" in capsys.readouterr().err


def test_pk_recipe_settings_and_supervision_note():
    from wsreid.engine.offline_eval import supervision as _supervision

    loaded = load_recipe(str(RECIPES / "baselines" / "supervised-pk.yaml"), [])
    plugins = loaded.plugins
    t = loaded.recipe.train
    assert (t.sampler, t.instances_per_identity, t.batch_size % t.instances_per_identity) == ("identity", 4, 0)
    assert _supervision(loaded.recipe, plugins, zero_shot=False) == (
        False, "NOT weakly supervised: trained with true identity labels via local_associations.true_identity, "
               "train.sampler: identity reads true person ids")
    loaded = load_recipe(str(RECIPES / "baselines" / "itc.yaml"), ["train.sampler=identity"])
    plugins = loaded.plugins
    assert _supervision(loaded.recipe, plugins, zero_shot=False)[0] is False
    assert _supervision(loaded.recipe, plugins, zero_shot=True) == (True, None)


def test_identity_sampler_run_is_not_weakly_supervised(make_recipe, tmp_path, capsys):
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1}, "eval": {"select": "last"}})
    assert main(["run", str(recipe), "-o", "train.sampler=identity"]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["weakly_supervised"] is False
    assert m["note"] == "NOT weakly supervised: uses true identity labels via train.sampler: identity reads true person ids"
    assert "[NOT weakly supervised]" in capsys.readouterr().out
    # the run trained on PK batches: as many steps as the identity sampler makes of the train ids
    from wsreid.api import BuildContext
    from wsreid.engine.components import build_component

    loaded = load_recipe(str(recipe), [])
    plugins = loaded.plugins
    train = build_component(plugins, "dataset", loaded.recipe.data, BuildContext(run_dir=tmp_path, seed=0),
                            "data").load().train
    steps = IdentityBatchSampler([r.person_id for r in train], 16, 4, seed=0).steps_per_epoch()
    assert steps != len(train) // 16  # distinguishable from the random sampler's epoch
    logged = list(csv.DictReader((tmp_path / "run" / "logs" / "steps.csv").open()))
    assert int(logged[-1]["step"]) == steps - steps % 2  # logged every 2 steps
