"""TensorBoard events of a resumed run (wsreid.engine.logs.RunLogger): the interrupted
attempt's points after the checkpoint are dropped - step values after its step, epoch
values after its epoch - and ``logs/tensorboard`` holds no events file without a point."""

from __future__ import annotations

import csv

import pytest

from wsreid.cli import main


def _files_in_written_order(run_dir) -> list:
    """The run's events files in the order they were written (the time of their first
    event): their names sort two files of one second and one process by a counter as text
    (the 10th writer before the 9th), which made these tests depend on how many writers
    the tests before them had opened."""
    from wsreid.engine.logs import events_files_in_written_order

    return [path for path, _, _ in events_files_in_written_order(run_dir / "logs" / "tensorboard")]


def _scalars(path, tag: str | None = None) -> list[tuple[int, float]]:
    """The scalar points of one events file (of ``tag``, or of every tag), as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path))
    events.Reload()
    tags = [tag] if tag is not None else events.Tags()["scalars"]
    return [(e.step, e.value) for name in tags if name in events.Tags()["scalars"] for e in events.Scalars(name)]


def _points_per_file(run_dir) -> list[int]:
    """The number of scalar points in each events file of the run, in written order."""
    return [len(_scalars(path)) for path in _files_in_written_order(run_dir)]


def _merged_points(run_dir, tag: str) -> list[tuple[int, float]]:
    """``tag``'s points over the run's events files, in written order."""
    return [point for path in _files_in_written_order(run_dir) for point in _scalars(path, tag)]


def test_a_resumed_logger_writes_one_events_file_with_its_points(tmp_path):
    from wsreid.engine.logs import RunLogger

    first = RunLogger(tmp_path)  # an attempt logs steps 1-10, its checkpoint is at step 6
    for step in range(1, 11):
        first.step(step, 1, {"loss/total": float(step)})
    first.close()
    resumed = RunLogger(tmp_path)
    resumed.truncate(1, 6)
    for step in range(7, 10):
        resumed.step(step, 1, {"loss/total": 100.0 + step})
    resumed.close()
    assert _points_per_file(tmp_path) == [6, 3]  # the attempt's points 7-10 are cut from its file
    assert _merged_points(tmp_path, "train/loss/total") == ([(s, float(s)) for s in range(1, 7)]
                                                           + [(s, 100.0 + s) for s in range(7, 10)])
    assert [int(r["step"]) for r in csv.DictReader((tmp_path / "logs" / "steps.csv").open())] == list(range(1, 10))
    again = RunLogger(tmp_path)  # resumed again, and stopped before it logged anything: no new file
    again.truncate(1, 9)
    again.close()
    assert _points_per_file(tmp_path) == [6, 3]


def test_a_resumed_logger_drops_the_epoch_values_after_the_checkpoint_epoch(tmp_path):
    """Epoch values are drawn against the epoch, step values against the step: one purge
    step cannot cut both (TensorBoard showed epoch 3 twice here)."""
    from wsreid.engine.logs import RunLogger

    first = RunLogger(tmp_path)  # 3 epochs of 10 steps; the checkpoint is epoch 2's (step 20)
    for step in range(1, 31):
        first.step(step, (step - 1) // 10 + 1, {"loss/total": float(step)})
        if step % 10 == 0:
            first.epoch(step // 10, {"loss/itc": float(step)})
    first.close()
    resumed = RunLogger(tmp_path)
    resumed.truncate(2, 20)
    for step in range(21, 31):
        resumed.step(step, 3, {"loss/total": -float(step)})
    resumed.epoch(3, {"loss/itc": -30.0})
    resumed.close()
    assert _merged_points(tmp_path, "loss/itc") == [(1, 10.0), (2, 20.0), (3, -30.0)]
    assert _merged_points(tmp_path, "train/loss/total") == ([(s, float(s)) for s in range(1, 21)]
                                                           + [(s, -float(s)) for s in range(21, 31)])


def test_an_events_file_cut_short_by_a_crash_keeps_its_readable_points_with_one_warning(tmp_path, capsys):
    from wsreid.engine.logs import RunLogger

    first = RunLogger(tmp_path)
    for step in range(1, 6):
        first.step(step, 1, {"loss/total": float(step)})
    first.close()
    (path,) = (tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*")
    path.write_bytes(path.read_bytes()[:-7])  # the last record (step 5) is cut short
    resumed = RunLogger(tmp_path)
    resumed.truncate(1, 5)
    resumed.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {tmp_path / 'logs' / 'tensorboard'}: {path.name}: a record "
                                                "cannot be read (cut short or damaged")
    assert _merged_points(tmp_path, "train/loss/total") == [(s, float(s)) for s in range(1, 5)]
    assert _points_per_file(tmp_path) == [4]


@pytest.fixture
def interrupt_at(monkeypatch, test_plugins_path):
    def set_epoch(epoch: int | None) -> None:
        if epoch is None:
            monkeypatch.delenv("WSREID_TEST_INTERRUPT_AT", raising=False)
        else:
            monkeypatch.setenv("WSREID_TEST_INTERRUPT_AT", str(epoch))
    return set_epoch


def test_an_interrupted_and_resumed_run_leaves_no_empty_events_file(make_recipe, tmp_path, interrupt_at, capsys):
    recipe = make_recipe("baselines/itc.yaml", {"plugins": ["wsreid_test_hooks"]})
    run_dir = tmp_path / "cut"
    interrupt_at(2)  # stopped at the start of epoch 2; its checkpoint is epoch 1's
    assert main(["run", str(recipe), "--output-dir", str(run_dir)]) == 130
    first = _points_per_file(run_dir)
    assert len(first) == 1 and first[0] > 0
    interrupt_at(None)
    assert main(["run", str(recipe), "--output-dir", str(run_dir), "--resume"]) == 0
    counts = _points_per_file(run_dir)
    assert len(counts) == 2 and counts[0] == first[0] and counts[1] > 0, counts
    epochs = [step for step, _ in _merged_points(run_dir, "loss/itc")]
    assert epochs == [1, 2]


def test_an_events_file_that_cannot_be_read_stops_the_resume_with_one_error(tmp_path, monkeypatch):
    from wsreid.engine import logs
    from wsreid.errors import TrainingError

    first = logs.RunLogger(tmp_path)
    first.step(1, 1, {"loss/total": 1.0})
    first.close()

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(logs, "_read_events", refused)
    with pytest.raises(TrainingError) as caught:
        logs.RunLogger(tmp_path).truncate(1, 1)
    assert str(caught.value) == (f"cannot cut the log {tmp_path / 'logs' / 'tensorboard'} back to the checkpoint: "
                                 "Permission denied (check the permissions and free space of the run "
                                 "directory, then resume again)")


def test_a_rewrite_that_fails_on_a_full_disk_keeps_every_events_file_as_it_was(tmp_path, monkeypatch):
    """The rewrite went through tensorboard's writer thread, whose write errors near the
    end were only stored: the originals were deleted with points lost, or a partial copy
    stayed beside them and drew points twice after the next resume."""
    import errno

    from wsreid.engine import logs
    from wsreid.errors import TrainingError

    first = logs.RunLogger(tmp_path)
    for step in range(1, 11):
        first.step(step, 1, {"loss/total": float(step)})
    first.close()
    folder = tmp_path / "logs" / "tensorboard"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    real = logs.write_atomically

    def full_disk(path, content, fsync=False):  # the events file only: the CSV logs are cut as before
        if "tfevents" not in str(path):
            return real(path, content, fsync=fsync)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(logs, "write_atomically", full_disk)
    with pytest.raises(TrainingError, match=r"^cannot cut the log .*tensorboard back to the checkpoint: No space left"):
        logs.RunLogger(tmp_path).truncate(1, 6)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_cut_stopped_before_its_removals_leaves_no_point_twice_after_the_next_cut(tmp_path, monkeypatch):
    """A stop between the merged file's write and the removal of the files merged into it
    left every point twice, and the next cut merged both copies again: twice for good."""
    from pathlib import Path

    from wsreid.engine.logs import RunLogger

    first = RunLogger(tmp_path)
    for step in range(1, 11):
        first.step(step, 1, {"loss/total": float(step)})
    first.close()
    second = RunLogger(tmp_path)  # a resumed attempt: a second events file
    second.truncate(1, 5)
    for step in range(6, 11):
        second.step(step, 1, {"loss/total": 50.0 + step})
    second.close()

    def stopped(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "unlink", stopped)  # the cut of the next resume stops before its removals
    with pytest.raises(KeyboardInterrupt):
        RunLogger(tmp_path).truncate(1, 8)
    monkeypatch.undo()
    assert len(_merged_points(tmp_path, "train/loss/total")) > 8  # the merged file beside its sources
    RunLogger(tmp_path).truncate(1, 8)  # the resume after it
    assert _merged_points(tmp_path, "train/loss/total") == ([(s, float(s)) for s in range(1, 6)]
                                                           + [(s, 50.0 + s) for s in range(6, 9)])


@pytest.mark.parametrize("first, resumed", [
    ("1700000000.host.4242.9", "1700000000.host.4242.10"),  # one process: the writer counter, 9 then 10
    ("1700000000.host.5000.0", "1700000000.host.4999.0"),  # a resumed process of a smaller id, the same second
])
def test_events_files_are_merged_in_the_order_they_were_written_not_by_name(tmp_path, first, resumed):
    """Two events files of one second differ in the process id and the writer counter at the
    end of their names, which sorted as text put the 10th writer before the 9th (or a
    resumed process of a smaller id first): the cut wrote the resumed attempt's points
    before the first attempt's (a test failed whenever the process's counter crossed
    9 -> 10 between its two loggers). The time of each file's first event decides."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    from wsreid.engine.logs import _record, cut_tensorboard

    folder = tmp_path / "logs" / "tensorboard"
    folder.mkdir(parents=True)

    def events_file(name: str, opened: float, steps: range, offset: float) -> None:
        events = [Event(wall_time=opened, file_version="brain.Event:2")]
        events += [Event(wall_time=opened + step, step=step,
                         summary=Summary(value=[Summary.Value(tag="train/loss/total", simple_value=offset + step)]))
                   for step in steps]
        path = folder / f"events.out.tfevents.{name}"
        path.write_bytes(b"".join(_record(event.SerializeToString()) for event in events))

    events_file(first, 100.25, range(1, 6), 0.0)  # the first attempt, up to its checkpoint at step 5
    events_file(resumed, 100.75, range(6, 11), 50.0)  # the resumed attempt, the same second
    assert cut_tensorboard(folder, 1, 8) is None
    assert [p.name for p in folder.iterdir()] == [f"events.out.tfevents.{first}"]  # merged into the first
    assert _merged_points(tmp_path, "train/loss/total") == ([(s, float(s)) for s in range(1, 6)]
                                                           + [(s, 50.0 + s) for s in range(6, 9)])
