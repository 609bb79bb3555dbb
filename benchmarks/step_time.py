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
(on the same model and optimizer) with every relation and objective replaced by a trivial
loss over the same features: the two encoder passes (base + asymmetric view) with their
backward and the optimizer step.

How the figures are measured side by side: both recipes are built first, then the timing
runs in ``--warmup`` + ``--steps`` rounds, each round one ITC step, one DGIA step, one
encoders-only step and (``--flops``) one 2048^3 matrix product, in an order shuffled from
round to round (seeded), so that load from elsewhere and the machine's drift fall on all of
them alike; the ``--warmup`` rounds are not kept. Each time printed is the median over the
kept rounds, and each ratio is a ratio of these medians: DGIA / ITC, the share of DGIA's
step outside the encoders (1 - encoders only / DGIA) and the % of the ceiling (a step's
FLOP rate / the matrix product's). DGIA / ITC and the outside share are also given as the
median of the per-round ratios (the steps of one round are close in time). On a GPU each
timed call ends with a synchronisation.

The header says what the figures were measured under: the CPU, whether torch sees AMX
tiles and AVX512_BF16 (they decide GSRC-FR's ``scoring_dtype: auto``), torch's threads,
the OpenMP wait policy and the load average. OpenMP threads wait passively
(``OMP_WAIT_POLICY=PASSIVE`` unless set), as in benchmarks/performance.py: on a machine
shared with other jobs, spinning worker threads make every small tensor operation wait for
a time slice, which would measure the load, not the code.
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # before torch starts its OpenMP pool (a script importing this module sets its own)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VIT_B16 = [
    "encoder.embed_dim=512", "encoder.image_size=[384, 128]", "encoder.max_length=77",
    "encoder.vision={hidden: 768, layers: 12, heads: 12, patch_size: 16}",
    "encoder.text={hidden: 512, layers: 12, heads: 8}",
]


def build(recipe: str, overrides: list[str], workdir: Path):
    """The set-up :class:`wsreid.engine.run.Run` of ``recipe`` (a path under the repository)
    with ``overrides`` and no pretrained weights, writing under ``workdir``; a recipe the
    overrides make invalid raises its :class:`wsreid.errors.UserError`."""
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
    """The first ``count`` training batches of ``run`` on its device (normalised)."""
    out = []
    for i, batch in enumerate(run.loader):
        if i == count:
            break
        out.append(batch.to(run.dist.device))
    return out


def _sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (nothing on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_call(run, batches, epoch: int, encoders_only: bool = False):
    """A function ``step(i)`` that makes training step ``i`` of ``run`` in ``epoch`` on batch
    ``i % len(batches)``: ``run.train_step``, or (``encoders_only``) the pair construction's
    views, the encoder passes, a trivial loss over their features, its backward and the
    optimizer step."""
    from wsreid.api import StepContext

    def step(i: int) -> None:
        batch = batches[i % len(batches)]
        if encoders_only:
            views = run.components.pair_construction.views(batch, run.encoder)
            feats = run.encode(views)
            loss = sum((f.image.sum() + f.text.sum()) * 1e-3 for f in feats.values())
            run.optimizer.zero_grad(set_to_none=True)
            run.accelerator.backward(loss)
            run.optimizer.step()
        else:
            run.train_step(batch, StepContext(epoch, i, epoch + 1, run.dist))

    return step


def interleaved_rounds(calls: dict, rounds: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """name -> wall seconds of ``calls[name](i)`` in each kept round ``i``: each of the
    ``warmup + rounds`` rounds calls every function once, in an order shuffled per round
    (seeded: no function always follows the same one), each call between two device
    synchronisations; the first ``warmup`` rounds are not kept."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = random.Random(0)
    for i in range(warmup + rounds):
        names = list(calls)
        order.shuffle(names)
        for name in names:
            _sync(device)
            t0 = time.perf_counter()
            calls[name](i)
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def matmul_call(device: torch.device, n: int = 2048):
    """A function ``product(i)`` that makes one float32 n x n x n matrix product (2 n^3
    FLOP): a sample of the machine's practical ceiling."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product(i: int) -> None:
        a @ b

    return product


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


def main() -> int:
    from bench_common import argument_parser, machine_line

    from wsreid.cli.common import at_least

    from wsreid.errors import UserError

    ap = argument_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", choices=["tiny", "vit-b16"], default="tiny")
    ap.add_argument("--steps", type=at_least(1), default=20, help="timed rounds (one step of each recipe per round)")
    ap.add_argument("--warmup", type=at_least(0), default=3, help="rounds run first and not timed")
    ap.add_argument("--batch-size", type=at_least(1), default=64)
    ap.add_argument("--memory-rows", type=at_least(1), default=None, help="GSRC-FR bank rows (default: training pairs; "
                    "vit-b16 default 68,126 = CUHK-PEDES training captions)")
    ap.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no",
                    help="train.mixed_precision of both recipes (fp16 needs a GPU)")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="render and encode the benchmark at H x W (default: the recipe's)")
    ap.add_argument("--flops", action="store_true", help="count each step's FLOPs and compare with a large matmul")
    ap.add_argument("--compile", action="store_true", help="torch.compile the vision and text towers first")
    args = ap.parse_args()
    print(machine_line(torch.get_num_threads()), flush=True)
    try:
        measure(args)
    except UserError as err:  # a recipe value these options made invalid (--image-size, fp16 on a CPU)
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def measure(args) -> None:
    """Build both recipes, time them in interleaved rounds and print the table."""
    overrides = (VIT_B16 if args.encoder == "vit-b16" else []) + [f"train.batch_size={args.batch_size}",
                                                                 f"train.mixed_precision={args.mixed_precision}"]
    if args.image_size:
        h, w = args.image_size
        overrides += [f"data.image_height={h}", f"data.image_width={w}", f"encoder.image_size=[{h}, {w}]"]
    flops, epoch_steps, first_step, calls = {}, {}, {}, {}
    rows = args.memory_rows or (68126 if args.encoder == "vit-b16" else None)
    with tempfile.TemporaryDirectory() as tmp:
        runs, epochs, batches = {}, {}, {}
        for name, recipe in (("ITC", "recipes/baselines/itc.yaml"), ("DGIA", "recipes/dgia.yaml")):
            run = runs[name] = build(recipe, overrides, Path(tmp) / name)
            if args.compile:
                for tower in ("vision_model", "text_model"):
                    setattr(run.encoder.clip, tower, torch.compile(getattr(run.encoder.clip, tower), dynamic=False))
            batches[name] = _batches(run, 4)
            t0 = time.perf_counter()
            epochs[name] = fill_memory(run, batches[name][0], rows)
            first_step[name] = time.perf_counter() - t0
            epoch_steps[name] = (run.recipe.train.epochs, len(run.loader))
            calls[name] = step_call(run, batches[name], epochs[name])
        calls["DGIA encoders only"] = step_call(runs["DGIA"], batches["DGIA"], epochs["DGIA"], encoders_only=True)
        device = runs["DGIA"].dist.device
        if args.flops:
            calls["ceiling"] = matmul_call(device)
        results = interleaved_rounds(calls, args.steps, args.warmup, device)
        if args.flops:
            for name, run in runs.items():
                flops[name] = step_flops(run, batches[name][0], epochs[name])
        del runs, calls
    ceiling_times = results.pop("ceiling", None)
    med = {k: statistics.median(v) for k, v in results.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    size = "x".join(map(str, args.image_size)) if args.image_size else "the recipe's"
    print(f"device: {name}; encoder: {args.encoder}; images {size}; batch {args.batch_size}; "
          f"mixed precision: {args.mixed_precision}; compiled: {'yes' if args.compile else 'no'}; "
          f"GSRC-FR memory rows: {rows or 'training pairs'}; "
          f"median of {args.steps} rounds, one step of each recipe per round, interleaved")
    for k, v in med.items():
        print(f"  {k:<20} {v * 1000:9.1f} ms/step   ({1 / v:6.2f} steps/s)")
    per_round = statistics.median(d / i for d, i in zip(results["DGIA"], results["ITC"]))
    print(f"  DGIA / ITC step time: {med['DGIA'] / med['ITC']:.2f}x (median of the per-round ratios {per_round:.2f}x)")
    print("  first step (epoch 1, compilation included): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in first_step.items()))
    outside = 1 - med["DGIA encoders only"] / med["DGIA"]
    per_round = statistics.median(1 - e / d for e, d in zip(results["DGIA encoders only"], results["DGIA"]))
    print(f"  share of the DGIA step outside the encoders (relations, memory, targets, losses): {100 * outside:.1f} % "
          f"(median of the per-round shares {100 * per_round:.1f} %)")
    if flops:
        ceiling = 2 * 2048**3 / statistics.median(ceiling_times)
        print(f"  float32 2048^3 matrix product: {ceiling / 1e9:.0f} GFLOP/s (median of one product per round; "
              "the ceiling below)")
        for k, f in flops.items():
            n_epochs, n_steps = epoch_steps[k]
            print(f"  {k:<5} {f / 1e9:7.2f} GFLOP/step, {f / med[k] / 1e9:6.1f} GFLOP/s = {100 * f / med[k] / ceiling:5.1f} % "
                  f"of the ceiling; {n_epochs} epochs of {n_steps} steps: {n_epochs * n_steps * med[k]:6.1f} s "
                  f"at this rate, >= {n_epochs * n_steps * f / ceiling:6.1f} s at the ceiling")


if __name__ == "__main__":
    sys.exit(main())
