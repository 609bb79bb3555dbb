"""User errors around a run's life: --resume and its recipe, failures and Ctrl-C before the
first checkpoint, commands printed for copy-paste, damaged or odd checkpoints, environment
variables. Each is one line naming what and where (docs/reliability.md). Mostly unit-level;
the engine's run is stubbed where only the session's handling is under test."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from wsreid.cli import main
from wsreid.engine import checkpoint as ckpt
from wsreid.engine.optim import build_optimizer, build_scheduler
from wsreid.errors import DataError, TrainingError, UserError
from wsreid.recipe.model import TrainConfig


def test_a_data_error_in_a_loader_worker_keeps_its_one_line():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DataError("image x.png cannot be decoded", hint="replace the file")

    with pytest.raises(DataError) as caught:
        list(torch.utils.data.DataLoader(Broken(), num_workers=1))
    assert str(caught.value) == "image x.png cannot be decoded (replace the file)"