"""The numbers of processes a run resumes with (docs/distributed.md, "Launching").

With the identity sampler (P identities x K pairs) a process count N works only when every
process gets whole identity groups: batch_size a multiple of N x K. The stop line, the
error of a process whose peer ended and the sampler's own refusal said "any number of
processes that divides train.batch_size", and the refusal's hint asked to change the batch
size, which --resume refuses: they now name the counts that work. With ``train.drop_last:
false`` a last partial batch smaller than N is not trained, so the steps per epoch (and the
learning-rate schedule) depend on N: the stop line names only the counts that keep them,
and :func:`~wsreid.engine.data.resume_steps_warning` says when a resume changes them.

The decisions are functions of (batch size, K, N, training pairs): tested with values; the
stop lines through the command line as rank 0 of a 2-process launch whose store the test
serves (as tests/test_stop_signals_ranks.py does), training stubbed."""

from __future__ import annotations

import signal

import pytest

from wsreid.cli import main
from wsreid.errors import UserError

from test_run_lifecycle_errors import _stub_run
from test_stop_signals import send
from test_stop_signals_ranks import launcher_store  # noqa: F401 (a fixture)
from test_stop_signals import PLUGIN, stop_plugin  # noqa: F401 (a fixture)


def _person_ids(identities: int, pairs: int) -> list[int]:
    """``identities`` people of ``pairs`` training pairs each, in order."""
    return [i for i in range(identities) for _ in range(pairs)]


# ---------------------------------------------------------------- which counts work
def test_the_counts_that_work_give_every_process_whole_groups():
    from wsreid.engine.data import IdentityBatchSampler, PairBatchSampler, listed_processes, process_counts

    assert process_counts(12, 4) == [1, 3]
    assert process_counts(12) == [1, 2, 3, 4, 6, 12]
    assert process_counts(16, 8) == [1, 2]
    assert process_counts(128, 4)[-1] == 32 and process_counts(256)[-1] == 64  # at most 64 listed
    # exactly those counts are accepted by the samplers
    ids = _person_ids(6, 4)
    accepted = []
    for n in range(1, 13):
        try:
            IdentityBatchSampler(ids, 12, 4, seed=0, world_size=n)
            accepted.append(n)
        except UserError:
            pass
    assert accepted == [1, 3]
    assert [n for n in range(1, 13) if not 12 % n] == process_counts(12)
    PairBatchSampler(24, 12, seed=0, world_size=2)  # the pair sampler takes 2 for the same batch size
    assert [listed_processes(c) for c in ([1], [3], [1, 3], [1, 2, 4])] == [
        "1 process", "3 processes", "1 or 3 processes", "1, 2 or 4 processes"]


def test_the_identity_samplers_refusal_lists_the_counts_that_work():
    """batch_size 12, K 4, 2 processes: 2 divides 12, but each process would get 6 pairs,
    one and a half identity groups. The hint asked to change batch_size / processes, which
    --resume (the same recipe) cannot: it names the counts that work."""
    from wsreid.engine.data import IdentityBatchSampler

    ids = _person_ids(6, 4)
    with pytest.raises(UserError) as caught:
        IdentityBatchSampler(ids, 12, 4, seed=0, world_size=2)
    assert str(caught.value) == (
        "train.batch_size 12 over 2 processes gives 6 pairs per process, not a multiple of "
        "train.instances_per_identity 4 (each process must get whole identity groups: start as many processes as "
        "divide batch_size / K = 3 (for --resume, which keeps the recipe: 1, 3), or for a new run choose a batch "
        "size that is a multiple of K x the number of processes)")


def test_a_count_that_does_not_divide_the_batch_lists_the_identity_samplers_counts():
    """5 processes do not divide 12: the pair sampler's refusal named 1, 2, 3, 4, 6, 12 -
    of which 2, 4, 6 and 12 are refused in turn with the identity sampler."""
    from wsreid.engine.data import IdentityBatchSampler

    with pytest.raises(UserError) as caught:
        IdentityBatchSampler(_person_ids(6, 4), 12, 4, seed=0, world_size=5)
    assert str(caught.value) == (
        "train.batch_size 12 is not divisible by the 5 processes (each process must get whole identity groups: "
        "start as many processes as divide batch_size / K = 3 (for --resume, which keeps the recipe: 1, 3), or for "
        "a new run choose a batch size that is a multiple of K x the number of processes)")


# ---------------------------------------------------------------- drop_last: false and the steps per epoch
@pytest.mark.parametrize("items, batch, world, drop_last, steps, counts", [
    (10, 4, 4, False, 2, [4]),           # remainder 2 < 4 processes: not trained
    (10, 4, 2, False, 3, [1, 2]),        # remainder 2 split over 2 processes: a step
    (10, 4, 1, False, 3, [1, 2]),
    (10, 4, 4, True, 2, [1, 2, 4]),      # dropped whatever the count
    (12, 4, 4, False, 3, [1, 2, 4]),     # no remainder
    (17, 16, 2, False, 1, [2, 4, 8, 16]),
])
def test_the_counts_that_keep_the_steps_per_epoch(items, batch, world, drop_last, steps, counts):
    from wsreid.engine.data import PairBatchSampler, pair_steps_per_epoch

    sampler = PairBatchSampler(items, batch, seed=0, world_size=world, drop_last=drop_last)
    assert sampler.steps_per_epoch() == pair_steps_per_epoch(items, batch, world, drop_last) == steps
    assert sampler.resume_counts() == counts


def test_the_identity_samplers_steps_do_not_depend_on_the_count():
    from wsreid.engine.data import IdentityBatchSampler

    samplers = [IdentityBatchSampler(_person_ids(6, 4), 12, 4, seed=0, world_size=n) for n in (1, 3)]
    assert [s.steps_per_epoch() for s in samplers] == [2, 2]
    assert [s.resume_counts() for s in samplers] == [[1, 3], [1, 3]]


def test_a_resume_that_changes_the_steps_per_epoch_says_so():
    from wsreid.engine.data import PairBatchSampler, resume_steps_warning

    four = PairBatchSampler(10, 4, seed=0, world_size=4, drop_last=False)  # 2 steps per epoch
    assert resume_steps_warning(four, epoch=2, step=6) == (  # 3 steps per epoch with 1 or 2 processes
        "warning: --resume with 4 processes: steps per epoch were 3, now 2 (train.drop_last false: the last partial "
        "batch, 2 pairs, is trained only when every process gets a pair), so the step count and the learning-rate "
        "schedule change from epoch 3 on (to keep them, resume with 1 or 2 processes)")
    assert resume_steps_warning(four, epoch=2, step=4) is None
    one = PairBatchSampler(10, 4, seed=0, world_size=1, drop_last=False)  # 3 steps per epoch
    assert resume_steps_warning(one, epoch=1, step=2) == (
        "warning: --resume with 1 process: steps per epoch were 2, now 3 (train.drop_last false: the last partial "
        "batch, 2 pairs, is trained only when every process gets a pair), so the step count and the learning-rate "
        "schedule change from epoch 2 on (to keep them, resume with 4 processes)")
    assert resume_steps_warning(one, epoch=2, step=5) == (  # resumed with another count before
        "warning: --resume with 1 process: steps per epoch averaged 2.5 (5 steps in 2 epochs), now 3 "
        "(train.drop_last false: the last partial batch, 2 pairs, is trained only when every process gets a pair), "
        "so the step count and the learning-rate schedule change from epoch 3 on (to keep them, resume as the run "
        "was launched before)")
    assert resume_steps_warning(one, epoch=3, step=9) is None
    # a checkpoint that records its launch's steps per epoch: the last launch's count decides, not the average
    assert resume_steps_warning(one, epoch=4, step=10, recorded=3) is None  # resumed with 1 process before
    assert resume_steps_warning(four, epoch=4, step=10, recorded=3) == (
        "warning: --resume with 4 processes: steps per epoch were 3, now 2 (train.drop_last false: the last partial "
        "batch, 2 pairs, is trained only when every process gets a pair), so the step count and the learning-rate "
        "schedule change from epoch 5 on (to keep them, resume with 1 or 2 processes)")
    assert "the last partial batch, 1 pair, is" in resume_steps_warning(
        PairBatchSampler(9, 4, seed=0, world_size=1, drop_last=False), epoch=1, step=2, recorded=2)
    assert resume_steps_warning(PairBatchSampler(10, 4, seed=0, world_size=4), epoch=2, step=4) is None


# ---------------------------------------------------------------- the lines that name the counts
def _again(run_dir) -> str:
    return f"wsreid run {run_dir / 'recipe.yaml'} --output-dir {run_dir}"


def test_the_stop_line_of_an_identity_run_names_the_counts_that_work(make_recipe, tmp_path, monkeypatch, capsys,
                                                                      launcher_store):  # noqa: F811
    """batch_size 12, K 4, stopped under 3 processes: it said any number that divides 12."""
    recipe = make_recipe("baselines/itc.yaml", {"train": {"sampler": "identity", "batch_size": 12,
                                                          "instances_per_identity": 4}})
    run_dir = tmp_path / "run"
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=True)
    assert main(["run", str(recipe)]) == 143
    again = _again(run_dir)
    assert capsys.readouterr().err.strip() == (
        f"stopped by SIGTERM; last complete checkpoint: epoch-0001; resume with: {again} --resume (in one process; "
        f"or launched as before, e.g. torchrun --nproc_per_node 3 -m {again} --resume: with 1 or 3 processes)")


def test_the_stop_line_leaves_out_the_counts_that_change_the_steps_per_epoch(make_recipe, tmp_path, monkeypatch,
                                                                             capsys, launcher_store):  # noqa: F811
    """17 pairs, batch 16, drop_last false, 2 processes: the last pair is not trained, one
    step per epoch; in one process it would be a second step: the line names the launch."""
    from wsreid.engine.data import PairBatchSampler
    from wsreid.engine.run import Run

    recipe = make_recipe("baselines/itc.yaml", {"train": {"drop_last": False}})
    run_dir = tmp_path / "run"
    monkeypatch.setenv("RANK", "0")
    _stub_run(monkeypatch, lambda: send(signal.SIGTERM), checkpoint=True)
    monkeypatch.setattr(Run, "setup", lambda self: setattr(
        self, "sampler", PairBatchSampler(17, 16, seed=0, world_size=2, drop_last=False)))
    assert main(["run", str(recipe)]) == 143
    again = _again(run_dir)
    assert capsys.readouterr().err.strip() == (
        f"stopped by SIGTERM; last complete checkpoint: epoch-0001; resume with: torchrun --nproc_per_node 2 -m "
        f"{again} --resume (with 2, 4, 8 or 16 processes: others change the steps per epoch)")


def test_a_process_whose_peer_ended_names_the_counts_that_work(tmp_path):
    from test_engine_parts import _state

    from wsreid.engine.session import _peer_lost

    run_dir = tmp_path / "run"
    _state(run_dir, epoch=2)
    again = _again(run_dir)
    assert str(_peer_lost(run_dir, 3, removed=False, counts=[1, 3])) == (
        "another process of this 3-process launch ended during the run (its own message says why); last complete "
        f"checkpoint: epoch-0002 (fix what it reports, then resume (with 1 or 3 processes): {again} --resume)")
    assert str(_peer_lost(run_dir, 2, removed=False, counts=[2, 4])) == (
        "another process of this 2-process launch ended during the run (its own message says why); last complete "
        "checkpoint: epoch-0002 (fix what it reports, then resume (with 2 or 4 processes: others change the steps "
        f"per epoch): torchrun --nproc_per_node 2 -m {again} --resume)")


def test_the_counts_of_a_run_come_from_its_sampler_else_from_the_recipe():
    from types import SimpleNamespace

    from wsreid.engine.data import PairBatchSampler
    from wsreid.engine.session import _resume_counts

    identity = SimpleNamespace(train=SimpleNamespace(batch_size=12, sampler="identity", instances_per_identity=4))
    pairs = SimpleNamespace(train=SimpleNamespace(batch_size=12, sampler="random", instances_per_identity=4))
    assert _resume_counts(identity, None) == [1, 3]
    assert _resume_counts(pairs, None) == [1, 2, 3, 4, 6, 12]
    built = SimpleNamespace(sampler=PairBatchSampler(14, 12, seed=0, world_size=3, drop_last=False))
    assert _resume_counts(pairs, built) == [3, 4, 6, 12]


def test_resuming_a_checkpoint_of_other_steps_per_epoch_prints_the_warning(make_recipe, tmp_path, capsys,
                                                                             stop_plugin):
    """Run.restore says it, once, on the main process, and the run goes on. The run is stopped
    after epoch 1 in one process; its checkpoint then says one step more than this launch
    takes per epoch, as a checkpoint of a launch with another process count would
    (train.drop_last false, a last partial batch smaller than that count: not trained)."""
    import json

    recipe = make_recipe("baselines/itc.yaml", {"plugins": [PLUGIN], "train": {"epochs": 2, "drop_last": False}})
    run_dir = tmp_path / "cut"
    stop_plugin.STOP_AT = (2, signal.SIGTERM, False)
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 143
    steps = len(stop_plugin.STEPS)  # epoch 1's: 292 pairs in batches of 16, the last 4 included
    assert steps == 19
    state_file = run_dir / "checkpoints" / "epoch-0001" / "state.json"
    state = json.loads(state_file.read_text())
    assert (state["step"], state["steps_per_epoch"]) == (steps, steps)
    state_file.write_text(json.dumps({**state, "step": steps + 1, "steps_per_epoch": steps + 1}))
    capsys.readouterr()
    stop_plugin.STOP_AT = None
    assert main(["run", str(run_dir / "recipe.yaml"), "--output-dir", str(run_dir), "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: --resume")]
    assert warnings == [
        "warning: --resume with 1 process: steps per epoch were 20, now 19 (train.drop_last false: the last partial "
        "batch, 4 pairs, is trained only when every process gets a pair), so the step count and the learning-rate "
        "schedule change from epoch 2 on (to keep them, resume as the run was launched before)"]
