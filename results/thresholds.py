"""The calibration rules of the association thresholds for an initial encoder whose features
of the benchmark lie in too narrow a cone for the paper's 0.7 (a deviation from the paper,
used by recipes/profiles/web-init-4ep.yaml; docs/method.md "Thresholds on the embedded
benchmark"), measured once on the initial encoder's cosine similarities between distinct
training items, the encoder as loaded - no labels are used:

- LRC's thresholds: the p-th percentile (p = 97) of the image-image cosines (th_image) and
  of the text-text cosines (th_text);
- GSRC-FR's th_g: the cosine above which an item has on average k + 1 of the N - 1 other
  bank rows (k = the recipe's gsrc top_k, N training items; image-image cosines, the image
  anchor), i.e. the 100 (1 - (k + 1) / (N - 1))-th percentile.

    python results/thresholds.py [--recipe recipes/dgia.yaml] [--percentile 97] [-o KEY=VALUE ...]

``-o`` overrides the recipe as ``wsreid run -o`` does (e.g. the image size of a probe:
``-o data.image_height=256 -o data.image_width=128 -o 'encoder.image_size=[256,128]'``).

Prints the percentiles and the share of distinct pairs that the paper's 0.7 relates, per
modality and for both together (LRC relates a pair when both cosines exceed their
thresholds), and - reading the identity labels, for the record only - how often the pairs
related at 0.7 and at the percentiles are one person (precision, as a multiple of the base
rate of same-person pairs) and what share of the same-person pairs they cover (recall).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "dgia.yaml"))
    parser.add_argument("--percentile", type=float, default=97.0)
    parser.add_argument("--also", default="90,95,98,99", help="other percentiles to report the joint share of")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override, as in `wsreid run -o` (repeatable)")
    args = parser.parse_args()
    from wsreid.data import same_identity_pair_rate
    from wsreid.distributed import Distributed
    from wsreid.engine.evaluate import extract_train_features
    from wsreid.engine.offline_eval import build_for_evaluation
    from wsreid.recipe import load_recipe

    loaded = load_recipe(args.recipe, args.override)
    splits, encoder, device = build_for_evaluation(loaded.recipe, loaded.plugins, None)
    dist = Distributed(None)
    dist.device = device
    features = extract_train_features(encoder, splits.train, 256, dist)
    image = torch.nn.functional.normalize(features.image.float(), dim=1)
    text = torch.nn.functional.normalize(features.text.float(), dim=1)
    off = ~torch.eye(len(image), dtype=torch.bool)
    image_cos, text_cos = (image @ image.T)[off], (text @ text.T)[off]
    q = args.percentile / 100
    sample = torch.randperm(len(image_cos), generator=torch.Generator().manual_seed(0))[:4_000_000]
    th_image = float(torch.quantile(image_cos[sample], q))
    th_text = float(torch.quantile(text_cos[sample], q))
    print(f"training items: {len(image)} (distinct pairs {int(off.sum()):,})")
    print(f"image-image cosine: mean {image_cos.mean():.3f}, share > 0.7 {100 * (image_cos > 0.7).float().mean():.1f} %, "
          f"{args.percentile:g}th percentile {th_image:.3f}")
    print(f"text-text cosine:   mean {text_cos.mean():.3f}, share > 0.7 {100 * (text_cos > 0.7).float().mean():.1f} %, "
          f"{args.percentile:g}th percentile {th_text:.3f}")
    both_paper = ((image_cos > 0.7) & (text_cos > 0.7)).float().mean()
    both_rule = ((image_cos > th_image) & (text_cos > th_text)).float().mean()
    print(f"pairs related by both: at 0.7 {100 * both_paper:.2f} %; at the percentiles {100 * both_rule:.3f} %")
    # a measurement only (the rules above use no labels): how often a related pair is one person
    person = torch.tensor([r.person_id for r in splits.train])
    same = (person[:, None] == person[None, :])[off]
    base = same_identity_pair_rate(r.person_id for r in splits.train)
    for name, ti, tt in (("0.7", 0.7, 0.7), ("the percentiles", th_image, th_text)):
        related = (image_cos > ti) & (text_cos > tt)
        if related.any():
            precision = same[related].float().mean()
            recall = (same & related).sum() / same.sum()
            print(f"  related at {name}: precision {100 * precision:.2f} % ({precision / base:.1f}x the base rate "
                  f"{100 * base:.3f} % of same-person pairs), recall {100 * recall:.1f} % (identity labels, measurement only)")
    mining = [g for g in (loaded.recipe.global_associations or {}).values() if hasattr(g, "top_k")]
    if not mining:
        print("GSRC-FR th_g: the recipe has no global association with a top_k (nothing to calibrate)")
    for gsrc in mining:
        top_k = gsrc.top_k
        p_g = 100 * (1 - (top_k + 1) / (len(image) - 1))
        th_g = float(torch.quantile(image_cos[sample], p_g / 100))
        print(f"GSRC-FR th_g (on average k + 1 = {top_k + 1} of the {len(image) - 1:,} other bank rows above it): "
              f"{p_g:.4f}th percentile of the image-image cosines, {th_g:.3f}")
    for other in [float(x) for x in args.also.split(",") if x]:
        ti, tt = (float(torch.quantile(c[sample], other / 100)) for c in (image_cos, text_cos))
        share = ((image_cos > ti) & (text_cos > tt)).float().mean()
        print(f"  {other:g}th percentiles: image {ti:.3f}, text {tt:.3f}, pairs related by both {100 * share:.3f} %")
    return 0


if __name__ == "__main__":
    from wsreid.errors import report_user_errors  # a bad recipe, override, dataset or encoder: one line, exit 2

    raise SystemExit(report_user_errors(main))
