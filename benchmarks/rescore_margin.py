"""How many extra candidates GSRC-FR's low-precision scoring needs (docs/performance.md).

With a bfloat16 scoring copy, mining takes the best ``k + 1 + margin`` rows per anchor from
the bf16 product and re-scores them in float32 (``RESCORE_MARGIN`` in
``wsreid_dgia.functional``). The result equals float32 scoring unless rounding pushes a
true top-(k+1) row behind ``margin`` others. This script measures how often that happens
on real features: the initial encoder of a recipe (default: the shipped encoder of
``recipes/dgia.yaml``, whose features of the benchmark lie in a narrow cone - the hardest
case, many near-ties) encodes every training image, stored as the fp16 bank would store
it, and every row is used as an anchor. For each margin it prints the anchors whose
re-scored top-(k+1) similarities differ from exact float32 scoring.

    python benchmarks/rescore_margin.py [--recipe recipes/dgia.yaml] [-o KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def training_image_features(recipe: str, overrides: list[str]) -> torch.Tensor:
    """N x d image features of every training pair the loader yields, as an fp16 bank."""
    from epoch_overhead import build  # the recipe built as `wsreid run` builds it

    with tempfile.TemporaryDirectory() as tmp:
        run = build(recipe, Path(tmp), overrides)
        run.model.eval()
        rows: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for batch in run.loader:
                b = batch.to(run.dist.device)
                image = run.model(b.images, b.input_ids, b.attention_mask)[0]
                rows.update(zip(b.index.tolist(), image.cpu()))
        run.close()
    return torch.stack([rows[i] for i in sorted(rows)]).half()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes/dgia.yaml"))
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--k", type=int, default=3, help="neighbours per anchor (ranks 2..k+1 are kept)")
    parser.add_argument("--margins", type=int, nargs="+", default=[0, 1, 2, 4, 8, 12, 16])
    args = parser.parse_args()
    torch.manual_seed(0)
    bank = training_image_features(args.recipe, args.override)
    exact_rows = F.normalize(bank.float(), dim=1)  # what float32 scoring reads
    scoring = exact_rows.bfloat16()  # the scoring copy (scoring_rows(bank, bf16))
    n, slots = bank.shape[0], args.k + 1
    missed = dict.fromkeys(args.margins, 0)
    above_07 = 0
    for start in range(0, n, 512):
        anchors = exact_rows[start:start + 512]
        exact = anchors @ exact_rows.t()
        above_07 += int((exact > 0.7).sum())
        proposal = (anchors.bfloat16() @ scoring.t()).float()
        want = torch.topk(exact, slots, dim=1).values
        for margin in args.margins:
            candidates = torch.topk(proposal, slots + margin, dim=1).indices
            got = torch.topk(exact.gather(1, candidates), slots, dim=1).values
            missed[margin] += int((got != want).any(dim=1).sum())
    print(f"{n} training rows as anchors, k = {args.k}; {100.0 * above_07 / n / n:.1f} % of image-image cosines above 0.7")
    for margin, count in missed.items():
        print(f"  margin {margin:2d}: {count:5d} anchors ({100.0 * count / n:.2f} %) whose re-scored top-{slots} "
              f"similarities differ from float32 scoring")


if __name__ == "__main__":
    main()
