"""How much a synth-pedes test caption says: the test R@1 of a perfect attribute matcher.

The matcher knows every identity's attributes. For a caption, a gallery image is a match when
its identity has every value the caption mentions (``synth_attributes.json``: the mentioned
slots of each caption, the attributes of each identity); among the matches it picks one at
random. Its R@1 is the expected share of captions whose pick shows the right person: the
ceiling that the captions' information puts on any model (a caption that names three
attributes shared by ten test people cannot single one out). A second figure also requires
each mentioned fact to be visible in the gallery image, as a matcher that sees only the
image would. The oracle reads the true values of the mentioned slots, so a caption whose
colour word caption noise flipped is matched as if it were right: an upper bound.

    python results/caption_ceiling.py [--dataset DIR] [-o data.KEY=VALUE ...]

Without ``--dataset`` the synth-pedes configuration of recipes/dgia.yaml (with the
overrides) is generated if missing and read from the cache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def caption_ceiling(root: Path, split: str = "test") -> tuple[int, float, float]:
    """(captions, R@1 of the attribute oracle in %, the same with mentioned facts visible in %)."""
    meta = json.loads((root / "synth_attributes.json").read_text())
    attributes = {i["id"]: i["attributes"] for i in meta["identities"]}
    images = [im for im in meta["images"] if im["file_path"].startswith(f"{split}/")]
    person = np.array([im["id"] for im in images])
    visible = [frozenset(im["visible"]) for im in images]
    hit = hit_visible = 0.0
    captions = 0
    for image in images:
        own = attributes[image["id"]]
        same = person == image["id"]
        for mentioned in image["mentions"]:
            match = np.array([all(attributes[q][s] == own[s] for s in mentioned) for q in person])
            seen = match & np.array([set(mentioned) <= v for v in visible])
            hit += (match & same).sum() / match.sum()
            if seen.any():
                hit_visible += (seen & same).sum() / seen.sum()
            captions += 1
    return captions, 100.0 * hit / captions, 100.0 * hit_visible / captions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, help="a synth-pedes directory (default: the recipe's, from the cache)")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "dgia.yaml"))
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--split", default="test", choices=["test", "val", "train"])
    args = parser.parse_args()
    root = args.dataset
    if root is None:
        from wsreid.data.synth.generate import ensure_synth
        from wsreid.recipe import load_recipe

        data = load_recipe(args.recipe, args.override).recipe.data
        root = Path(ensure_synth(data, data.root, workers=data.workers))
    if not (root / "synth_attributes.json").is_file():
        from wsreid.errors import DataError

        raise DataError(f"{root} holds no synth_attributes.json; give --dataset a synth-pedes directory")
    captions, ceiling, ceiling_visible = caption_ceiling(root, args.split)
    print(f"{root} ({args.split}): {captions} captions; attribute oracle R@1 {ceiling:.1f} % "
          f"(mentioned facts also visible in the gallery image: {ceiling_visible:.1f} %)")
    return 0


if __name__ == "__main__":
    from wsreid.errors import report_user_errors  # a bad recipe, override or dataset: one line, exit 2

    raise SystemExit(report_user_errors(main))
