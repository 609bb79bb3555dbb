"""The launcher's variables (RANK, WORLD_SIZE) read in one place: wsreid.launcher."""

import pytest

from wsreid.errors import UserError
from wsreid.launcher import Launch, launch_from_env


@pytest.mark.parametrize("environ, expected", [
    ({}, Launch(0, 1)),
    ({"RANK": "", "WORLD_SIZE": ""}, Launch(0, 1)),
    ({"RANK": "0", "WORLD_SIZE": "1"}, Launch(0, 1)),
    ({"RANK": "1", "WORLD_SIZE": "2"}, Launch(1, 2)),
    ({"RANK": "0", "WORLD_SIZE": "4"}, Launch(0, 4)),
    ({"WORLD_SIZE": "2"}, Launch(0, 2)),  # RANK unset: the first process
])
def test_valid_launches(environ, expected):
    assert launch_from_env(environ) == expected
    launched = {**environ, "MASTER_ADDR": "127.0.0.1"} if expected.multi_process else environ  # as torchrun sets it
    assert launch_from_env(launched, strict=True) == expected


def test_a_world_size_left_in_the_shell_is_not_a_launch():
    """WORLD_SIZE=2 without the launcher's MASTER_ADDR: accelerate's 25-line traceback
    ('Tried to launch on distributed with multinode...') became one line."""
    with pytest.raises(UserError) as caught:
        launch_from_env({"WORLD_SIZE": "2"}, strict=True)
    assert str(caught.value) == (
        "WORLD_SIZE=2 is set but no launcher started this process (MASTER_ADDR, which torchrun and accelerate launch "
        "set, is not) (unset WORLD_SIZE (a value left in the shell or script) to run in one process, or start the "
        "processes with torchrun; see docs/distributed.md)")
    assert launch_from_env({"WORLD_SIZE": "2", "MASTER_ADDR": " "}) == Launch(0, 2)  # not strict: never fails


def test_main_and_multi_process():
    assert Launch(0, 1).is_main and not Launch(0, 1).multi_process
    assert not Launch(1, 2).is_main and Launch(1, 2).multi_process


@pytest.mark.parametrize("environ, message", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a number of processes"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0' is not a number of processes"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not a process of WORLD_SIZE=2 (0 .. 1)"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK='2' is not a process of WORLD_SIZE=2 (0 .. 1)"),
    ({"RANK": "1"}, "RANK='1' is not a process of WORLD_SIZE=1 (0 .. 0)"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK='-1' is not a process of WORLD_SIZE=2 (0 .. 1)"),
])
def test_bad_values_are_a_user_error_when_strict_and_one_process_otherwise(environ, message):
    with pytest.raises(UserError) as caught:
        launch_from_env(environ, strict=True)
    assert str(caught.value).startswith(message + " (the launcher (torchrun, accelerate launch) sets ")
    assert launch_from_env(environ) == Launch(0, 1)  # printing a stop line or a warning never fails


def test_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert launch_from_env() == Launch(2, 3)
