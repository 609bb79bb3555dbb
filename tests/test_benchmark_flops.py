"""benchmarks/step_time.py --flops counts attention on the CPU: torch's flop counter has
formulas for the GPU kernels of scaled-dot-product attention only, and the script adds
those of the CPU kernel."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from conftest import load_script

STEP_TIME = Path(__file__).resolve().parents[1] / "benchmarks" / "step_time.py"


def _step_time():
    return load_script(STEP_TIME, "step_time_under_test")


def test_cpu_attention_is_counted_as_its_batched_products():
    b, h, s, d = 2, 4, 33, 32  # the tiny encoder's 33 image tokens
    q, k, v = (torch.randn(b, h, s, d, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False, custom_mapping=_step_time()._cpu_attention_formulas()) as counter:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    product = 2 * b * h * s * s * d  # one s x d by d x s batched product (or s x s by s x d)
    # forward: scores and output; backward: the scores again, then grad of output/values/scores/keys
    assert counter.get_total_flops() == 7 * product
