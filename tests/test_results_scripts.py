"""The calibration scripts under results/ treat a bad recipe override as `wsreid` does: one
line on stderr naming the key, exit 2, no traceback (WSREID_DEBUG=1 shows it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def _extend(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WSREID_DEBUG"}
    return subprocess.run([sys.executable, str(RESULTS / "extend_text_positions.py"), *args],
                          capture_output=True, text=True, env=env)


def test_extended_text_positions_read_whole_captions_and_keep_the_short_ones(tmp_path):
    """The probe's copy of the shipped encoder: a caption within the old 40 positions gets
    the shipped encoder's feature; one past them is read whole at max_length 64 (its last
    words change the feature) instead of being cut."""
    from wsreid.api import BuildContext
    from wsreid_clip import ClipEncoder
    from wsreid_clip.loading import shipped_models

    source = shipped_models()["synth-web-tiny-clip"]
    out = tmp_path / "pos64"
    done = _extend(str(source), str(out), "--positions", "64")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{out}: text positions 40 -> 64 (new rows zero)"

    def encoder(directory, max_length):
        params = ClipEncoder.Params(pretrained=str(directory), image_size=(128, 64), max_length=max_length,
                                    embed_dim=128)
        return ClipEncoder(params, BuildContext()).eval()

    shipped, extended = encoder(source, 40), encoder(out, 64)
    short = "a man in a red jacket and black trousers"
    head = " ".join(["a man in a red jacket and black trousers ,"] * 4)
    long_a, long_b = f"{head} with a blue bag", f"{head} with a green hat"
    with torch.no_grad():
        def text(enc, caption):
            return enc.encode_text(*enc.tokenize([caption]))
        assert enc_len(shipped, short) < 40 and enc_len(extended, long_a) > 40
        assert torch.allclose(text(shipped, short), text(extended, short), atol=1e-6)
        # cut at 40 positions the two long captions are one text; read whole they differ
        assert torch.equal(text(shipped, long_a), text(shipped, long_b))
        assert not torch.allclose(text(extended, long_a), text(extended, long_b), atol=1e-3)
    assert json.loads((out / "wsreid.json").read_text())["text_positions_extended"]["to"] == 64
    assert "zero_shot" not in json.loads((out / "wsreid.json").read_text())


def enc_len(enc, caption: str) -> int:
    """Tokens of ``caption`` with its start and end, uncut."""
    return len(enc.tokenizer(caption)["input_ids"])


def test_extending_refuses_fewer_positions_and_an_existing_directory(tmp_path):
    from wsreid_clip.loading import shipped_models

    source = shipped_models()["synth-web-tiny-clip"]
    done = _extend(str(source), str(tmp_path / "x"), "--positions", "40")
    assert (done.returncode, done.stderr.strip()) == (2, "error: --positions 40 is not more than the model's 40")
    assert not (tmp_path / "x").exists()
    done = _extend(str(source), str(tmp_path), "--positions", "64")
    assert (done.returncode, done.stderr.strip()) == (2, f"error: {tmp_path} exists; choose a new directory")
