"""The calibration scripts under results/ treat a bad recipe override as `wsreid` does: one
line on stderr naming the key, exit 2, no traceback (WSREID_DEBUG=1 shows it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize("script", ["thresholds.py", "caption_ceiling.py"])
def test_a_misspelled_override_is_one_line_and_exit_2(script):
    cmd = [sys.executable, str(RESULTS / script), "-o", "data.image_heigth=256"]
    env = {k: v for k, v in os.environ.items() if k != "WSREID_DEBUG"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: override -o data.image_heigth=256")
    assert "did you mean 'image_height'" in lines[0]
    debug = subprocess.run(cmd, capture_output=True, text=True, env={**env, "WSREID_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr
