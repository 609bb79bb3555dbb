"""Multi-process behaviour: launch checks, collectives, and a real 2-process gloo run that
must match the 1-process run with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_engine_parts import _state

from wsreid.distributed import Distributed, check_launch
from wsreid.errors import UserError


def test_single_process_collectives_are_identity():
    d = Distributed()
    x = torch.randn(3, 2, requires_grad=True)
    assert d.gather(x).requires_grad is False and torch.equal(d.gather(x), x.detach())
    assert d.gather_with_grad(x) is x
    assert d.sum(2.5) == 2.5 and d.world_size == 1 and d.is_main


def _gather_unequal_shards(rank: int, world: int, store: str, out: str) -> None:
    """Worker of the test below: rank r holds r + 2 rows (3 x 2 features)."""
    import torch.distributed as torch_dist

    torch_dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    dist = Distributed(SimpleNamespace(num_processes=world, process_index=rank, device=torch.device("cpu")))
    local = (torch.arange((rank + 2) * 2, dtype=torch.float32).reshape(-1, 2) + 100 * rank).requires_grad_()
    sizes = dist.shard_sizes(local.shape[0])
    gathered = dist.gather_with_grad(local, sizes)
    (gathered.sum(1) * torch.arange(1, gathered.shape[0] + 1)).sum().backward()
    torch.save({"sizes": sizes, "gathered": gathered.detach(), "grad": local.grad,
                "plain": dist.gather(local)}, f"{out}/rank{rank}.pt")
    torch_dist.barrier()
    torch_dist.destroy_process_group()


def test_gather_with_grad_takes_shards_of_different_sizes(tmp_path):
    """The last partial batch of ``drop_last: false`` gives ranks one row more or less:
    every rank sees all rows in rank order, and each rank's gradient is its own rows' share
    of the global loss."""
    torch.multiprocessing.spawn(_gather_unequal_shards, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    want = torch.cat([torch.arange(4.0).reshape(2, 2), torch.arange(6.0).reshape(3, 2) + 100])
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["sizes"] == [2, 3] and torch.equal(got["gathered"], want) and torch.equal(got["plain"], want)
        rows = torch.arange(1.0, 6.0)[[0, 1]] if rank == 0 else torch.arange(1.0, 6.0)[[2, 3, 4]]
        assert torch.equal(got["grad"], rows[:, None].expand(-1, 2))


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "sees a world of 1"),
        ({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}, "starts a single process"),
    ],
)
def test_launch_mismatch_is_a_clear_error(monkeypatch, env, message):
    for key in ("WORLD_SIZE", "ACCELERATE_USE_CPU", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError, match=message):
        check_launch(SimpleNamespace(num_processes=1))


def test_launch_check_passes_for_a_consistent_world(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    check_launch(SimpleNamespace(num_processes=2))


@pytest.mark.parametrize("left_group", [False, True])
def test_entry_ends_a_process_that_left_a_group_without_finalization(monkeypatch, capsys, left_group):
    """After a multi-process run the entry ends the process with os._exit (its output
    flushed) so gloo's threads are never torn down during interpreter finalization;
    any other command exits normally with main's code."""
    import wsreid.cli as cli
    import wsreid.distributed as dist_mod

    class Ended(Exception):
        pass

    def fake_exit(code):
        raise Ended(code)

    def fake_main():
        print("test: R1 12.50")
        return 3

    monkeypatch.setattr(cli, "main", fake_main)
    monkeypatch.setattr(dist_mod, "_LEFT_PROCESS_GROUP", left_group)
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    expected = Ended if left_group else SystemExit
    with pytest.raises(expected) as info:
        cli.entry()
    assert info.value.args[0] == 3 if left_group else info.value.code == 3
    assert capsys.readouterr().out == "test: R1 12.50\n"


def _run(args, env=None, timeout=600):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _one_and_two_processes(recipe, tmp_path, port, plugins_path=None):
    """Run ``recipe`` in one process and with torchrun in two -> (run dir one, run dir two).
    With ``plugins_path`` (the test plugins) the hook plugin checks after every step that
    both ranks hold identical component state."""
    env = None
    if plugins_path is not None:
        # keep the caller's PYTHONPATH after the test plugins (a checkout's own plugins/ may be on it)
        path = os.pathsep.join(p for p in (plugins_path, os.environ.get("PYTHONPATH", "")) if p)
        env = {"PYTHONPATH": path, "WSREID_TEST_CHECK_STATE": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "wsreid", "run", str(recipe), "--output-dir", str(one)], env)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
          "-m", "wsreid", "run", str(recipe), "--output-dir", str(two)], env)
    return one, two


def _worst_weight_difference(one, two) -> float:
    """Largest absolute difference between the encoder weights of two runs at epoch 2.
    Attention key biases have an exactly zero true gradient (softmax ignores a constant
    shift), so Adam turns float noise in them into lr-sized steps: they are left out."""
    wa = load_file(str(one / "checkpoints" / "epoch-0002" / "model.safetensors"))
    wb = load_file(str(two / "checkpoints" / "epoch-0002" / "model.safetensors"))
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa if not k.endswith("k_proj.bias"))


def test_a_run_directory_the_main_process_refuses_stops_every_process_with_its_line(make_recipe, tmp_path):
    """Only the main process prepares the run directory. When it refuses it (here a folder
    of the user's), the other process learns that from torchrun's store and ends with exit
    status 2 too, without printing the line again; it used to wait in the process group's rendezvous, deaf to
    torchrun's SIGTERM, until torchrun killed it 30 s later."""
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("the user's")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", "-m", "wsreid", "run", str(recipe), "--output-dir", str(foreign)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode != 0
    line = (f"error: output directory {foreign} exists and is not a wsreid run (choose another --output-dir; wsreid "
            "never deletes foreign directories)")
    assert [e for e in proc.stderr.splitlines() if e.startswith("error: ")] == [line]  # the other process: silent
    assert "forcefully exiting via 9" not in proc.stderr and "exitcode: 2" in proc.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_two_process_run_matches_one_process(make_recipe, tmp_path, test_plugins_path):
    """torchrun with 2 gloo processes == 1 process with the same global batch: the same
    relations and memory banks (gathered with their dataset indices), the same metrics.
    The asymmetric view's LRC takes its thresholds from the batch (p90): the percentile
    is taken over the global batch, so both runs apply the same thresholds."""
    recipe = make_recipe("dgia.yaml", {"train": {"epochs": 2, "batch_size": 16}, "plugins": ["wsreid_test_hooks"],
                                       "local_associations": {"lrc_asymmetric": {"threshold_percentile": 90}}})
    one, two = _one_and_two_processes(recipe, tmp_path, 29517, test_plugins_path)  # memory banks checked each step
    a = json.loads((one / "metrics.json").read_text())
    b = json.loads((two / "metrics.json").read_text())
    for key in a["test"]:
        assert b["test"][key] == pytest.approx(a["test"][key], abs=0.5), key  # metrics in %, float tolerance
    ca = load_file(str(one / "checkpoints" / "epoch-0002" / "components.safetensors"))
    cb = load_file(str(two / "checkpoints" / "epoch-0002" / "components.safetensors"))
    assert ca.keys() == cb.keys()
    for key in ca:
        if ca[key].is_floating_point():
            torch.testing.assert_close(cb[key].float(), ca[key].float(), atol=2e-3, rtol=0,
                                       msg=lambda m, key=key: f"{key}: {m}")
        else:
            assert torch.equal(ca[key], cb[key]), key
    worst = _worst_weight_difference(one, two)
    assert worst < 1e-5, worst
    ea = list(csv.DictReader((one / "logs" / "epochs.csv").open()))
    eb = list(csv.DictReader((two / "logs" / "epochs.csv").open()))
    for key in ("diag/lrc_asymmetric/threshold_image", "diag/lrc_asymmetric/threshold_text",
                "diag/lrc_asymmetric/related_pairs_per_batch", "diag/lrc/related_pairs_per_batch"):
        assert [float(r[key]) for r in eb] == pytest.approx([float(r[key]) for r in ea], abs=1e-4), key


def test_two_processes_with_other_hash_seeds_evaluate_the_splits_in_one_order(make_recipe, tmp_path):
    """With ``eval.select: test`` each epoch evaluates val and test, gathering features
    across processes; processes started independently get different string-hash seeds, so
    the order of the two must not depend on hashing (with a set, rank 0 gathered val while
    rank 1 gathered test: 'feature gather returned 102 rows for 126 items')."""
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "batch_size": 16}, "eval": {"select": "test"}})
    launcher = tmp_path / "launch_with_rank_hash_seed.py"
    launcher.write_text(
        "import os, sys\n"
        "os.environ['PYTHONHASHSEED'] = '0' if os.environ['LOCAL_RANK'] == '0' else '3'\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'wsreid', 'run', *sys.argv[1:]])\n"
    )
    out = tmp_path / "two"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29520",
          str(launcher), str(recipe), "--output-dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["R1"] > 0 and {"val", "test"} <= set(metrics["history"][0])


def test_two_process_pseudo_labels_equal_one_process(make_recipe, tmp_path):
    """Cluster pseudo-labels are computed once (first process) for the whole training set
    and broadcast: every rank trains with the labels the 1-process run computes."""
    recipe = make_recipe("baselines/cluster-pseudo-labels.yaml",
                         {"train": {"epochs": 2, "batch_size": 16}, "eval": {"every": 2}})
    one, two = _one_and_two_processes(recipe, tmp_path, 29518)
    la = load_file(str(one / "checkpoints" / "epoch-0002" / "components.safetensors"))
    lb = load_file(str(two / "checkpoints" / "epoch-0002" / "components.safetensors"))
    key = "global_associations/pseudo_labels/labels"
    assert torch.equal(la[key], lb[key])
    assert la[key].numel() == 292  # one label per training pair of synth-pedes tiny


def test_two_process_trainable_classifier_matches_one_process(make_recipe, tmp_path, test_plugins_path):
    """A trainable component (the ID loss's classifier) stays outside DDP: every process
    starts from the same values, applies the gradient of the global batch once (not
    world_size times) and holds the same values after every step (checked by the hook
    plugin); the trained classifier equals the 1-process run's."""
    recipe = make_recipe("baselines/itc.yaml", {
        "train": {"epochs": 2, "batch_size": 16, "lr_factors": {"objectives.id.*": 2000.0}, "eps": 1.0},
        "objectives": {"id": {"name": "identity-classification"}}, "plugins": ["wsreid_test_hooks"],
        "eval": {"every": 2}})
    one, two = _one_and_two_processes(recipe, tmp_path, 29519, test_plugins_path)  # classifier checked each step
    ca = load_file(str(one / "checkpoints" / "epoch-0002" / "components.safetensors"))
    cb = load_file(str(two / "checkpoints" / "epoch-0002" / "components.safetensors"))
    key = "objectives/id/module.classifier.weight"
    start = float(ca[key].std())
    assert start > 0.002  # trained away from its N(0, 0.001) start
    # Adam with eps 1 steps about lr x gradient (the classifier at 2000 x lr to move it), so a
    # gradient applied world_size times would show
    torch.testing.assert_close(cb[key], ca[key], atol=2e-4, rtol=0)
    torch.testing.assert_close(cb["objectives/id/module.classifier.bias"], ca["objectives/id/module.classifier.bias"],
                               atol=2e-4, rtol=0)
    worst = _worst_weight_difference(one, two)
    assert worst < 1e-5, worst


def test_a_run_directory_that_some_process_cannot_see_is_refused(tmp_path):
    """Nodes that do not share the run directory: a process that saw no best checkpoint
    tested with its last weights and metrics.json mixed the two; now every process stops
    at set-up (each counts itself in; the sum is the collective)."""
    from wsreid.engine.run import check_shared_run_dir
    from wsreid.engine.rundir import RUN_MARKER

    def processes(others_seeing: int):
        return SimpleNamespace(active=True, world_size=3, sum=lambda mine: mine + others_seeing)

    check_shared_run_dir(tmp_path, SimpleNamespace(active=False))  # one process: nothing to check
    (tmp_path / RUN_MARKER).write_text("{}")
    check_shared_run_dir(tmp_path, processes(2))  # all three see it
    with pytest.raises(UserError) as caught:
        check_shared_run_dir(tmp_path, processes(1))
    assert str(caught.value) == (
        f"1 of 3 processes cannot see the run directory {tmp_path} that the main process prepared (its .wsreid-run): "
        "every process reads it (the best checkpoint at the end, --resume) (put output_dir on a file system every "
        "node sees; see docs/distributed.md)")
    (tmp_path / RUN_MARKER).unlink()  # this process is on the other node
    with pytest.raises(UserError, match="^1 of 3 processes cannot see"):
        check_shared_run_dir(tmp_path, processes(2))


def test_a_collective_whose_peer_ended_is_told_from_a_fault_of_this_process(tmp_path):
    """A process whose gather failed because another process ended (its own error, the
    out-of-memory killer, Ctrl-C to it alone) blamed the encoder plugin ('choose another
    encoder') or printed a traceback: it now says another process ended, with the resume
    command when a checkpoint is there."""
    from wsreid.distributed import peer_process_lost
    from wsreid.engine.session import _peer_lost
    from wsreid.errors import ComponentError

    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
                        "[127.0.0.1]:42154")
    try:
        try:
            raise gloo
        except RuntimeError as exc:  # as the engine wraps a component's exception
            raise ComponentError("encoder (encoder 'clip' from plugin 'clip'): encode_image() failed") from exc
    except ComponentError as wrapped:
        assert peer_process_lost(wrapped) and peer_process_lost(gloo)
    assert not peer_process_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not peer_process_lost(ValueError("Connection closed by peer"))  # not a collective's error
    assert not peer_process_lost(None)

    run_dir = tmp_path / "run"
    assert str(_peer_lost(run_dir, 2, removed=True, counts=[1, 2, 4, 8, 16])) == (
        "another process of this 2-process launch ended during the run (its own message says why); no checkpoint was "
        "written yet (fix what it reports, then run the command again)")
    _state(run_dir, epoch=2)
    assert str(_peer_lost(run_dir, 2, removed=False, counts=[1, 2, 4, 8, 16])) == (
        "another process of this 2-process launch ended during the run (its own message says why); last complete "
        f"checkpoint: epoch-0002 (fix what it reports, then resume (with 1, 2, 4, 8 or 16 processes): wsreid run "
        f"{run_dir / 'recipe.yaml'} --output-dir {run_dir} --resume)")

def test_a_main_process_failing_at_the_run_end_leaves_the_other_one_line(make_recipe, tmp_path):
    """The main process's run-end hook fails (an upload, a report; or metrics.json cannot be
    written): the other process waited in the final barrier and printed a 34-line gloo
    traceback. It now says in one line that another process ended."""
    (tmp_path / "wsreid_test_end_fails.py").write_text(
        "from wsreid import hookimpl\n\n\n"
        "@hookimpl\n"
        "def wsreid_run_end(run, metrics):\n"
        "    if run.dist.is_main:\n"
        "        raise ConnectionError('the report server is down')\n")
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0},
                                                "plugins": ["wsreid_test_end_fails"]})
    out = tmp_path / "run"
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29533", "-m", "wsreid", "run", str(recipe), "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    main_line = "error: plugin 'wsreid_test_end_fails': hook wsreid_run_end failed after the run finished"
    assert sum(line.startswith(main_line) for line in errors) == 1, proc.stderr[-3000:]
    assert [line for line in errors if not line.startswith(main_line)] == [
        "error: another process of this 2-process launch ended during the run (its own message says why); last "
        f"complete checkpoint: epoch-0001 (fix what it reports, then resume (with 1, 2, 4, 8 or 16 processes): "
        f"wsreid run {out / 'recipe.yaml'} --output-dir {out} --resume)"], proc.stderr[-3000:]
    # torchrun's own report of the failed launch follows (its ChildFailedError traceback); none of a process's
    assert "[rank" not in proc.stderr and "wsreid/engine" not in proc.stderr and (out / "metrics.json").is_file()


def test_a_file_a_plugin_left_open_is_written_when_a_multi_process_run_ends(tmp_path):
    """A process of a multi-process run ends with os._exit, which drops what Python still
    buffers: an observer's log opened in wsreid_run_start and never closed (a common
    pattern) was empty after a 2-process run and whole after a 1-process one. The entry
    flushes such files first, and closes a compressed one (its end marker). A real
    os._exit, in a child process."""
    out = tmp_path / "steps-rank0.txt"
    code = ("import gzip, wsreid.cli as cli, wsreid.distributed as d\n"
            "d._LEFT_PROCESS_GROUP = True\n"
            "def main():\n"
            f"    cli.LOG = open({str(out)!r}, 'w')\n"
            f"    cli.ZIPPED = gzip.open({str(out)!r} + '.gz', 'wt')\n"
            "    for step in range(36):\n"
            "        cli.LOG.write(f'step {step}\\n')\n"
            "        cli.ZIPPED.write(f'step {step}\\n')\n"
            "    return 0\n"
            "cli.main = main\n"
            "cli.entry()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [f"step {i}" for i in range(36)]
    import gzip

    with gzip.open(f"{out}.gz", "rt") as zipped:  # closed: its end marker written (a flush leaves it out)
        assert zipped.read().splitlines() == [f"step {i}" for i in range(36)]
