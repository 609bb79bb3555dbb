"""Caption lengths in tokens against the encoder's ``max_length``, per split.

    python benchmarks/caption_lengths.py recipes/dgia.yaml [-o key=value ...]

Builds the recipe's dataset and encoder as a run does and tokenises every caption
without truncation (start and end tokens included). Prints, per split: captions, median
and longest length, how many are longer than ``max_length`` (they lose their last
words) and the mean number of tokens those lose.
"""

from __future__ import annotations

import argparse
import statistics

from wsreid.api import BuildContext
from wsreid.engine.components import build_dataset_and_encoder
from wsreid.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    loaded = load_recipe(args.recipe, args.override)
    _, splits, encoder = build_dataset_and_encoder(loaded.plugins, loaded.recipe, BuildContext(is_main=False))
    limit = encoder.max_length
    print(f"{args.recipe}: dataset {splits.name}, encoder max_length {limit}")
    print(f"{'split':<6} {'captions':>8} {'median':>7} {'longest':>8} {'cut':>6} {'cut %':>6} {'tokens lost':>12}")
    for name, captions in (("train", [p.caption for p in splits.train]),
                           ("val", splits.val.captions if splits.val else []), ("test", splits.test.captions)):
        if not captions:
            continue
        lengths = [len(row) for row in encoder.tokenizer(captions, truncation=False, verbose=False)["input_ids"]]
        cut = [n - limit for n in lengths if n > limit]
        lost = f"{statistics.fmean(cut):.1f}" if cut else "-"
        print(f"{name:<6} {len(lengths):>8} {statistics.median(lengths):>7.0f} {max(lengths):>8} {len(cut):>6} "
              f"{100 * len(cut) / len(lengths):>6.1f} {lost:>12}")


if __name__ == "__main__":
    main()
