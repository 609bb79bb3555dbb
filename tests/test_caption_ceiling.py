"""results/caption_ceiling.py: the test R@1 of a perfect attribute matcher, by hand and on a
generated synth-pedes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "results" / "caption_ceiling.py"


def _ceiling():
    return load_script(SCRIPT, "caption_ceiling").caption_ceiling


def test_hand_case(tmp_path):
    # persons 1 and 2 share a red top and differ in trousers; person 3 wears blue
    identities = [
        {"id": 1, "attributes": {"upper_colour": "red", "lower_colour": "black"}},
        {"id": 2, "attributes": {"upper_colour": "red", "lower_colour": "grey"}},
        {"id": 3, "attributes": {"upper_colour": "blue", "lower_colour": "black"}},
    ]
    both = ["upper_colour", "lower_colour"]
    images = [
        # caption "red top": images 1_0, 1_1, 2_0, 2_1 match -> 2/4; with the fact visible 2_1
        # drops out (its top is hidden) -> 2/3. Caption "red top, black trousers": only person 1
        # matches -> 1/1; visible: 1_1 hides the trousers, 1_0 is left -> 1/1
        {"file_path": "test/1_0.png", "id": 1, "visible": both, "mentions": [["upper_colour"], both]},
        {"file_path": "test/1_1.png", "id": 1, "visible": ["upper_colour"], "mentions": []},
        {"file_path": "test/2_0.png", "id": 2, "visible": both, "mentions": []},
        {"file_path": "test/2_1.png", "id": 2, "visible": ["lower_colour"], "mentions": []},
        {"file_path": "test/3_0.png", "id": 3, "visible": both, "mentions": []},
        {"file_path": "train/9_0.png", "id": 9, "visible": [], "mentions": [["upper_colour"]]},  # another split
    ]
    (tmp_path / "synth_attributes.json").write_text(json.dumps({"identities": identities, "images": images}))
    captions, ceiling, visible = _ceiling()(tmp_path)
    assert captions == 2
    assert ceiling == pytest.approx(100 * (2 / 4 + 1) / 2)
    assert visible == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_generated_dataset_is_far_from_chance(synth_tiny_root):
    captions, ceiling, visible = _ceiling()(synth_tiny_root)
    meta = json.loads((synth_tiny_root / "synth_attributes.json").read_text())
    tests = [im for im in meta["images"] if im["file_path"].startswith("test/")]
    assert captions == sum(len(im["mentions"]) for im in tests) > 0
    people = len({im["id"] for im in tests})
    assert 100.0 / people < ceiling <= 100.0 and 0.0 < visible <= 100.0


def test_a_folder_without_attributes_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(SCRIPT), "--dataset", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {tmp_path} holds no synth_attributes.json; give --dataset a synth-pedes directory"
