"""Engine parts: sampler, learning-rate schedule, parameter groups, checkpoints."""

import json
import os

import pytest
import torch
from pathlib import Path
from hypothesis import given, settings, strategies as st
from safetensors import SafetensorError

from wsreid.engine import checkpoint as ckpt
from wsreid.engine.data import PairBatchSampler
from wsreid.engine.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups
from wsreid.errors import RecipeError, TrainingError, UserError
from wsreid.recipe.model import TrainConfig


@given(n=st.integers(4, 300), batch=st.sampled_from([2, 4, 8, 16]), world=st.sampled_from([1, 2]),
       seed=st.integers(0, 5), epoch=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_sampler_shards_are_the_global_batches(n, batch, world, seed, epoch):
    """Concatenating every rank's slice gives the single-process batch, whatever the world size."""
    single = PairBatchSampler(n, batch, seed=seed)
    single.set_epoch(epoch)
    ranks = [PairBatchSampler(n, batch, seed=seed, rank=r, world_size=world) for r in range(world)]
    for s in ranks:
        s.set_epoch(epoch)
    merged = [sum(parts, []) for parts in zip(*[list(s) for s in ranks])]
    assert merged == list(single)
    flat = sum(list(single), [])
    assert len(flat) == len(set(flat)) == (n // batch) * batch  # drop_last: no repeats, full batches only


#: (batch, world size) pairs a run accepts: the batch divides over the processes
DIVISIBLE = [(b, w) for b in (4, 6, 8, 12) for w in (2, 3, 4) if b % w == 0]


@given(n=st.integers(4, 300), batch_world=st.sampled_from(DIVISIBLE), seed=st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_sampler_keeps_the_last_partial_batch_whole_on_every_world_size(n, batch_world, seed):
    """drop_last: false - the last partial batch is split over the ranks whole (slices
    differ by at most one pair), so the ranks train what one process trains; only a
    remainder smaller than the number of processes is left out."""
    batch, world = batch_world
    single = PairBatchSampler(n, batch, seed=seed, drop_last=False)
    ranks = [PairBatchSampler(n, batch, seed=seed, rank=r, world_size=world, drop_last=False) for r in range(world)]
    shards = list(zip(*[list(s) for s in ranks]))
    rest = n % batch
    if rest >= world or rest == 0:
        assert [sum(parts, []) for parts in shards] == list(single)
        assert sorted(sum(list(single), [])) == list(range(n))
    else:
        assert [sum(parts, []) for parts in shards] == list(single)[:-1]
    assert all(max(map(len, parts)) - min(map(len, parts)) <= 1 for parts in shards)


def test_sampler_resume_skips_steps_and_epochs_differ():
    s = PairBatchSampler(50, 8, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, skip=2)
    assert list(s) == full[2:]
    s.set_epoch(3)
    assert list(s) != full


def test_sampler_rejects_indivisible_batch():
    with pytest.raises(UserError, match="not divisible"):
        PairBatchSampler(10, 5, seed=0, world_size=2)


def test_lr_schedule_warmup_then_cosine():
    train = TrainConfig(epochs=10, warmup_epochs=2, warmup_factor=0.1, lr=1.0)
    steps = 10
    assert lr_factor(0, steps, train) == pytest.approx(0.1)
    assert lr_factor(10, steps, train) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through warm-up
    assert lr_factor(20, steps, train) == pytest.approx(1.0)
    assert lr_factor(60, steps, train) == pytest.approx(0.5)  # cosine midpoint
    assert lr_factor(100, steps, train) == pytest.approx(0.0, abs=1e-12)


def test_parameter_groups_bias_factor_and_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    train = TrainConfig(lr=1e-3, weight_decay=4e-5, bias_lr_factor=2, bias_weight_decay=0,
                        lr_factors={"1.*": 5.0})
    groups = {(g["lr"], g["weight_decay"]): g["names"] for g in parameter_groups(model.named_parameters(), train)}
    assert groups[(1e-3, 4e-5)] == ["0.weight"]
    assert groups[(2e-3, 0.0)] == ["0.bias"]
    assert groups[(5e-3, 4e-5)] == ["1.weight"]
    assert groups[(1e-2, 0.0)] == ["1.bias"]


def test_an_lr_factor_glob_matching_no_parameter_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    extra = [("objectives.id.classifier.weight", torch.nn.Parameter(torch.zeros(2, 4)))]
    ok = TrainConfig(lr=1e-3, lr_factors={"objectives.id.*": 5.0})
    groups = build_optimizer(model, ok, extra).param_groups
    assert sorted(g["lr"] for g in groups) == pytest.approx([1e-3, 2e-3, 5e-3])
    typo = TrainConfig(lr=1e-3, lr_factors={"objective.id.*": 5.0})
    with pytest.raises(RecipeError, match=r"train.lr_factors: 'objective.id.\*' matches no parameter of this run") as info:
        build_optimizer(model, typo, extra)
    assert "(did you mean 'objectives.id.*'? parameter names start with: 0.bias, 0.weight, objectives.id.classifier.*)" in str(info.value)


def test_an_lr_factor_glob_shadowed_by_an_earlier_one_is_refused():
    """The first matching glob sets a factor: a specific glob after a general one changed
    nothing, silently (the reviewer's vision tower kept 0.5, not 2). Written first, it
    applies; a glob that an earlier one only partly covers stays valid."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    shadowed = TrainConfig(lr=1.0, lr_factors={"*": 0.5, "1.*": 2.0})
    with pytest.raises(RecipeError) as info:
        parameter_groups(model.named_parameters(), shadowed)
    assert str(info.value) == ("train.lr_factors: '1.*' sets nothing: every parameter it matches is matched by an "
                               "earlier glob ('*'), and the first matching glob sets a parameter's factor (write '1.*' "
                               "before '*' in train.lr_factors)")
    ordered = TrainConfig(lr=1.0, bias_lr_factor=1.0, weight_decay=0.0, bias_weight_decay=0.0, lr_factors={"1.*": 2.0, "*": 0.5})
    groups = {g["lr"]: g["names"] for g in parameter_groups(model.named_parameters(), ordered)}
    assert groups == {0.5: ["0.weight", "0.bias"], 2.0: ["1.weight", "1.bias"]}
    partly = TrainConfig(lr=1.0, bias_lr_factor=1.0, weight_decay=0.0, bias_weight_decay=0.0, lr_factors={"*.weight": 0.5, "1.*": 2.0})
    groups = {g["lr"]: g["names"] for g in parameter_groups(model.named_parameters(), partly)}
    assert groups == {0.5: ["0.weight", "1.weight"], 1.0: ["0.bias"], 2.0: ["1.bias"]}


def test_scheduler_sets_group_lrs():
    model = torch.nn.Linear(2, 2)
    train = TrainConfig(lr=1.0, epochs=2, warmup_epochs=1, warmup_factor=0.5)
    opt = build_optimizer(model, train)
    sched = build_scheduler(opt, steps_per_epoch=4, train=train)
    lrs = []
    for _ in range(8):
        lrs.append(sorted(g["lr"] for g in opt.param_groups))
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx([0.5, 1.0])  # weight, bias (x2)
    assert lrs[4] == pytest.approx([1.0, 2.0])
    assert lrs[6] == pytest.approx([0.5, 1.0])


def _state(tmp_path, epoch=1):
    model = torch.nn.Linear(3, 2)
    train = TrainConfig(lr=0.1, epochs=2)
    opt = build_optimizer(model, train)
    sched = build_scheduler(opt, 2, train)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    path = ckpt.save_checkpoint(tmp_path, epoch=epoch, model=model, optimizer=opt, scheduler=sched,
                                component_tensors={"global/memory/image": torch.arange(6.0).view(2, 3)},
                                state={"step": 2, "history": [{"epoch": 1}]})
    return model, opt, path


def test_checkpoint_round_trip(tmp_path):
    model, opt, path = _state(tmp_path)
    assert ckpt.latest_checkpoint(tmp_path) == path
    data = ckpt.load_checkpoint(path)
    other = torch.nn.Linear(3, 2)
    ckpt.load_model_weights(other, data["model_path"])
    assert torch.equal(other.weight, model.weight)
    assert torch.equal(data["components"]["global/memory/image"], torch.arange(6.0).view(2, 3))
    sd = opt.state_dict()
    assert torch.equal(data["optimizer"]["state"][0]["exp_avg"], sd["state"][0]["exp_avg"])
    assert data["state"]["step"] == 2 and data["state"]["epoch"] == 1


def test_checkpoint_keeps_only_newest_and_no_tmp(tmp_path):
    _state(tmp_path, epoch=1)
    _state(tmp_path, epoch=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch-0002", "latest"]


def test_rng_state_round_trip():
    import random

    import numpy as np

    tensors, meta = ckpt.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(tensors, meta)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "delete"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    _, _, path = _state(tmp_path)
    if damage == "truncate":
        f = path / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[:40])
    elif damage == "garbage_json":
        (path / "state.json").write_text("{not json")
    else:
        (path / "components.safetensors").unlink()
    with pytest.raises(TrainingError, match="corrupt|incomplete|truncated"):
        ckpt.load_checkpoint(path)


def test_a_best_checkpoint_moved_aside_by_a_stopped_write_is_recovered(tmp_path):
    """save_best renames best -> best.old, then best.tmp -> best: a process stopped between
    the two leaves no best; the readers (eval, search, init) read the previous one where it
    is, without writing into the run (a read-only run was a PermissionError traceback), and
    the engine's next write takes it back."""
    from wsreid.engine.rundir import run_weights

    model = torch.nn.Linear(3, 2)
    ckpt.save_best(tmp_path, model, {"epoch": 1, "R1": 10.0})
    root = tmp_path / "checkpoints"
    os.replace(root / "best", root / "best.old")  # the instant between the renames
    assert run_weights(tmp_path) == root / "best.old" / "model.safetensors"
    assert sorted(p.name for p in root.iterdir()) == ["best.old"]  # read where it is
    assert ckpt.recover_best(tmp_path) == root / "best"  # the engine moves it back
    assert json.loads((root / "best" / "state.json").read_text())["epoch"] == 1
    os.replace(root / "best", root / "best.old")
    ckpt.save_best(tmp_path, model, {"epoch": 2, "R1": 12.0})
    assert sorted(p.name for p in root.iterdir()) == ["best"]
    assert json.loads((root / "best" / "state.json").read_text())["epoch"] == 2


def test_cuda_generator_states_are_restored_in_device_order():
    """A node with 12 GPUs saves cuda/0 .. cuda/11; sorted as text cuda/10 would come third."""
    tensors = {f"cuda/{i}": torch.tensor([i]) for i in range(12)} | {"torch": torch.tensor([-1])}
    assert [int(t) for t in ckpt.cuda_rng_states(tensors)] == list(range(12))


#: a full disk as the operating system reports it, and as safetensors does (its own error type)
FULL_DISK = [OSError(28, "No space left on device"),
             SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")]


@pytest.mark.parametrize("error", FULL_DISK, ids=["OSError", "SafetensorError"])
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, error):
    _state(tmp_path, epoch=1)

    def full_disk(*a, **k):
        raise error

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(TrainingError, match="No space left"):
        _state(tmp_path, epoch=2)
    assert ckpt.latest_checkpoint(tmp_path).name == "epoch-0001"
    assert not (tmp_path / "checkpoints" / "epoch-0002.tmp").exists()
    ckpt.load_checkpoint(tmp_path / "checkpoints" / "epoch-0001")


@pytest.mark.parametrize("error", FULL_DISK, ids=["OSError", "SafetensorError"])
def test_failed_best_write_keeps_the_previous_best(tmp_path, monkeypatch, error):
    model = torch.nn.Linear(3, 2)
    ckpt.save_best(tmp_path, model, {"epoch": 1, "R1": 10.0})

    def full_disk(*a, **k):
        raise error

    monkeypatch.setattr(ckpt, "save_model", full_disk)
    with pytest.raises(TrainingError, match="could not write the best checkpoint .*: .*No space left") as caught:
        ckpt.save_best(tmp_path, model, {"epoch": 2, "R1": 12.0})
    assert str(caught.value).endswith("(the previous best checkpoint is kept; no earlier checkpoint exists to resume "
                                      "from: free disk space and start the run again)")
    best = tmp_path / "checkpoints" / "best"
    assert json.loads((best / "state.json").read_text())["epoch"] == 1 and (best / "model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best"]


@pytest.mark.parametrize("error, fix", [
    (PermissionError(13, "Permission denied"), "fix the permissions of the run directory"),
    (OSError(30, "Read-only file system"), "fix the permissions of the run directory"),
    (OSError(5, "Input/output error"), "fix the cause"),
])
def test_a_failed_write_that_is_no_full_disk_does_not_say_free_disk_space(tmp_path, monkeypatch, error, fix):
    _state(tmp_path, epoch=1)

    def failing(*a, **k):
        raise error

    monkeypatch.setattr(ckpt, "save_file", failing)
    with pytest.raises(TrainingError) as caught:
        _state(tmp_path, epoch=2)
    assert str(caught.value).endswith(f": {error.strerror} (the previous checkpoint epoch-0001 is kept; {fix} and "
                                      "resume with --resume)")


def test_a_batch_the_processes_do_not_divide_names_the_process_counts_that_do():
    """Resuming a 1-process run of batch 15 with 2 processes: the hint said to change the
    batch size, which --resume refuses; it names the numbers of processes that divide it."""
    from wsreid.engine.data import PairBatchSampler
    from wsreid.errors import UserError

    with pytest.raises(UserError) as caught:
        PairBatchSampler(100, 15, seed=0, world_size=2)
    assert str(caught.value) == (
        "train.batch_size 15 is not divisible by the 2 processes (start as many processes as divide it (for --resume, "
        "which keeps the batch size: 1, 3, 5, 15), or for a new run choose a batch size that is a multiple of the "
        "number of processes)")


def test_a_checkpoint_this_user_may_not_read_is_not_called_damaged(tmp_path, monkeypatch):
    """safetensors reports an unreadable file as "No such file or directory": the message
    said the intact checkpoint was corrupt or truncated and sent the user to restore it.
    (The tests run as root, who reads everything: os.access is patched.)"""
    import os

    from safetensors.torch import save_file

    from wsreid.engine import checkpoint as ckpt
    from wsreid.errors import TrainingError

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == path else real_access(p, mode, **k))
    with pytest.raises(TrainingError) as info:
        ckpt.load_model_weights(model, path)
    assert str(info.value) == (f"checkpoint file {path} cannot be read by this user: permission denied (give this "
                               "user read permission on the run's files, or run the command as the user that owns "
                               "them)")
    assert ckpt.weights_problem(path) == "its model.safetensors cannot be read by this user (permission denied)"
