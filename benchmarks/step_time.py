"""Median training-step time of DGIA vs the ITC baseline, and the share of DGIA's step spent
outside the encoders (relations, memory, targets, losses).

    python benchmarks/step_time.py                      # tiny CPU encoder, synth-pedes small
    python benchmarks/step_time.py --encoder vit-b16    # the paper's encoder shape, random init,
                                                        # 384x128, memory banks of CUHK-PEDES size
    python benchmarks/step_time.py --encoder vit-b16 --mixed-precision bf16   # (GPU)
    python benchmarks/step_time.py --image-size 256 128 --flops   # a finer patch grid, against the machine
    python benchmarks/step_time.py --compile            # both encoders under torch.compile

``--image-size H W`` renders the benchmark and encodes it at H x W (the tiny encoder's
position table is interpolated). ``--flops`` also counts the floating-point operations of
one step of each recipe (matrix products, convolutions and attention, forward and backward:
``torch.utils.flop_counter``) and prints the rate each step achieves next to the rate of a
large float32 matrix product on the same threads - the machine's practical ceiling - and
the shortest time the recipe's epochs (8 for both defaults) could take at that ceiling.
``--compile`` wraps the vision and text towers in ``torch.compile`` (inductor, default mode,
static shapes) before the first step and prints how long the first step of each recipe
took, compilation included - what a first run would pay before the faster steps.

Both recipes are built as ``wsreid run`` builds them (recipes/baselines/itc.yaml and
recipes/dgia.yaml), with no ``init`` (random weights; time does not depend on them). Steps
are timed in epoch ``start_epoch`` of GSRC-FR, so every DGIA objective is active, with its
memory banks pre-filled with random unit rows (``--memory-rows``, default: the training set).
The same batches are reused (data loading is not timed). "Encoders only" replays DGIA's step
with every relation and objective replaced by a trivial loss over the same features: the
two encoder passes (base + asymmetric view) with their backward and the optimizer step.
Outside share = 1 - encoders only / DGIA step. Medians over ``--steps`` steps after
``--warmup``; on a GPU each step ends with a synchronisation.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
VIT_B16 = [
    "encoder.embed_dim=512", "encoder.image_size=[384, 128]", "encoder.max_length=77",
    "encoder.vision={hidden: 768, layers: 12, heads: 12, patch_size: 16}",
    "encoder.text={hidden: 512, layers: 12, heads: 8}",
]


def build(recipe: str, overrides: list[str], workdir: Path):
    from wsreid.recipe import load_recipe
    from wsreid.engine.run import Run
    from wsreid.recipe import dump_resolved_yaml

    loaded = load_recipe(str(REPO / recipe), ["init=null", "encoder.pretrained=null", *overrides])
    plugins = loaded.plugins
    run = Run(loaded.recipe, plugins, workdir, resolved_yaml=dump_resolved_yaml(loaded))
    run.setup()
    return run


def fill_memory(run, batch, rows: int | None) -> int:
    """One epoch-1 step allocates the GSRC-FR banks; then every bank is replaced by random
    unit rows (all marked written). Returns the epoch in which every objective is active."""
    from wsreid.api import StepContext

    run.train_step(batch, StepContext(1, 0, 2, run.dist))
    start = 1
    for assoc in run.components.global_associations.values():
        memory = getattr(assoc, "image_memory", None)
        if memory is None:
            continue
        n, dim = rows or memory.shape[0], memory.shape[1]
        banks = [torch.nn.functional.normalize(torch.randn(n, dim), dim=1) for _ in range(2)]
        if rows:  # a bank of another size than the training set
            assoc.context = dataclasses.replace(assoc.context, num_train=n)
        assoc.load_state_tensors({  # the public way in: derived state (the scoring copy) follows
            "image_memory": banks[0], "text_memory": banks[1],
            "written": torch.ones(n, dtype=torch.bool), "person_ids": torch.randint(0, max(n // 4, 1), (n,)),
        })  # fmt: skip
        start = max(start, assoc.params.start_epoch)
    return start


def _batches(run, count: int):
    out = []
    for i, batch in enumerate(run.loader):
        if i == count:
            break
        out.append(batch.to(run.dist.device))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run, batches, epoch: int, steps: int, warmup: int, encoders_only: bool = False) -> list[float]:
    from wsreid.api import StepContext

    times = []
    device = run.dist.device
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        ctx = StepContext(epoch, i, epoch + 1, run.dist)
        _sync(device)
        t0 = time.perf_counter()
        if encoders_only:
            views = run.components.pair_construction.views(batch, run.encoder)
            feats = run.encode(views)
            loss = sum((f.image.sum() + f.text.sum()) * 1e-3 for f in feats.values())
            run.optimizer.zero_grad(set_to_none=True)
            run.accelerator.backward(loss)
            run.optimizer.step()
        else:
            run.train_step(batch, ctx)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def _cpu_attention_formulas() -> dict:
    """Flop formulas for the CPU kernels of scaled-dot-product attention, which
    ``torch.utils.flop_counter`` has none for (it counts the GPU kernels only): without them
    attention counts 0 on the CPU. The counts of its GPU formulas: two batched products
    forward, five backward (the kernel computes the scores again)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten
    formulas = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None:
        formulas[forward] = lambda q, k, v, *args, out_shape=None, **kw: sdpa_flop_count(q, k, v)
    if backward is not None:
        formulas[backward] = lambda g, q, k, v, *args, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v)
    return formulas


def step_flops(run, batch, epoch: int) -> int:
    """Floating-point operations of one training step (forward, backward; the optimizer's
    elementwise update is not counted), by ``torch.utils.flop_counter`` with attention's
    CPU kernels added (:func:`_cpu_attention_formulas`)."""
    from torch.utils.flop_counter import FlopCounterMode

    from wsreid.api import StepContext

    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as counter:
        run.train_step(batch, StepContext(epoch, 0, epoch + 1, run.dist))
    return counter.get_total_flops()


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Median float32 FLOP/s of an n x n x n matrix product: the practical ceiling."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", choices=["tiny", "vit-b16"], default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--memory-rows", type=int, default=None, help="GSRC-FR bank rows (default: training pairs; "
                    "vit-b16 default 68,126 = CUHK-PEDES training captions)")
    ap.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no",
                    help="train.mixed_precision of both recipes (fp16 needs a GPU)")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="render and encode the benchmark at H x W (default: the recipe's)")
    ap.add_argument("--flops", action="store_true", help="count each step's FLOPs and compare with a large matmul")
    ap.add_argument("--compile", action="store_true", help="torch.compile the vision and text towers first")
    args = ap.parse_args()
    overrides = (VIT_B16 if args.encoder == "vit-b16" else []) + [f"train.batch_size={args.batch_size}",
                                                                 f"train.mixed_precision={args.mixed_precision}"]
    if args.image_size:
        h, w = args.image_size
        overrides += [f"data.image_height={h}", f"data.image_width={w}", f"encoder.image_size=[{h}, {w}]"]
    flops, epoch_steps, first_step = {}, {}, {}
    rows = args.memory_rows or (68126 if args.encoder == "vit-b16" else None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in (("ITC", "recipes/baselines/itc.yaml"), ("DGIA", "recipes/dgia.yaml")):
            run = build(recipe, overrides, Path(tmp) / name)
            if args.compile:
                for tower in ("vision_model", "text_model"):
                    setattr(run.encoder.clip, tower, torch.compile(getattr(run.encoder.clip, tower), dynamic=False))
            batches = _batches(run, 4)
            t0 = time.perf_counter()
            epoch = fill_memory(run, batches[0], rows)
            first_step[name] = time.perf_counter() - t0
            results[name] = time_steps(run, batches, epoch, args.steps, args.warmup)
            epoch_steps[name] = (run.recipe.train.epochs, len(run.loader))
            if args.flops:
                flops[name] = step_flops(run, batches[0], epoch)
            if name == "DGIA":
                results["DGIA encoders only"] = time_steps(run, batches, epoch, args.steps, args.warmup, encoders_only=True)
            device = run.dist.device
            del run
    med = {k: statistics.median(v) for k, v in results.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    size = "x".join(map(str, args.image_size)) if args.image_size else "the recipe's"
    print(f"device: {name}; encoder: {args.encoder}; images {size}; batch {args.batch_size}; "
          f"mixed precision: {args.mixed_precision}; compiled: {'yes' if args.compile else 'no'}; "
          f"GSRC-FR memory rows: {rows or 'training pairs'}; "
          f"median of {args.steps} steps")
    for k, v in med.items():
        print(f"  {k:<20} {v * 1000:9.1f} ms/step   ({1 / v:6.2f} steps/s)")
    print(f"  DGIA / ITC step time: {med['DGIA'] / med['ITC']:.2f}x")
    print("  first step (epoch 1, compilation included): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in first_step.items()))
    outside = 1 - med["DGIA encoders only"] / med["DGIA"]
    print(f"  share of the DGIA step outside the encoders (relations, memory, targets, losses): {100 * outside:.1f} %")
    if flops:
        ceiling = matmul_rate(device)
        print(f"  float32 2048^3 matrix product: {ceiling / 1e9:.0f} GFLOP/s (the ceiling below)")
        for k, f in flops.items():
            epochs, steps = epoch_steps[k]
            print(f"  {k:<5} {f / 1e9:7.2f} GFLOP/step, {f / med[k] / 1e9:6.1f} GFLOP/s = {100 * f / med[k] / ceiling:5.1f} % "
                  f"of the ceiling; {epochs} epochs of {steps} steps: {epochs * steps * med[k]:6.1f} s "
                  f"at this rate, >= {epochs * steps * f / ceiling:6.1f} s at the ceiling")


if __name__ == "__main__":
    main()
