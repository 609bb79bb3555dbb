"""Cost of the image checks at dataset load (``check_images`` of the dataset components).

Loads one dataset with each check, ``--repeats`` times (the first load is a warm-up of
the file cache), and prints median seconds per check and the ratio to ``exists``, all
measured side by side in one run. The default dataset is synth-pedes ``small``
(generated into ``$WSREID_CACHE`` on first use).

    python benchmarks/image_checks.py                       # synth-pedes small
    python benchmarks/image_checks.py --root data/CUHK-PEDES --format cuhk-pedes
"""

from __future__ import annotations

import argparse
import statistics
import time

from wsreid.data import SynthConfig, ensure_synth, read_dataset
from wsreid.data.readers import read_records

CHECKS = ("none", "exists", "decode-eval", "decode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="dataset folder (default: synth-pedes of --size, generated when missing)")
    parser.add_argument("--format", default="cuhk-pedes", help="annotation format of --root")
    parser.add_argument("--size", default="small", help="synth-pedes size when --root is not given")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="decoding threads")
    args = parser.parse_args()
    root = args.root or ensure_synth(SynthConfig(size=args.size), workers=2)
    _, records = read_records(root, args.format, check_images="none")
    images = {s: len({r.image_path for r in records if r.split == s}) for s in ("train", "val", "test")}
    print(f"dataset {root}: images per split {images}")
    read_dataset(root, args.format, check_images="decode", workers=args.workers)  # warm the file cache
    times: dict[str, list[float]] = {c: [] for c in CHECKS}
    for _ in range(args.repeats):
        for check in CHECKS:  # interleaved, so that drifting machine load hits every check alike
            started = time.perf_counter()
            read_dataset(root, args.format, check_images=check, workers=args.workers)
            times[check].append(time.perf_counter() - started)
    base = statistics.median(times["exists"])
    print(f"{'check_images':<12} {'median s':>9} {'x exists':>9}")
    for check in CHECKS:
        median = statistics.median(times[check])
        print(f"{check:<12} {median:>9.3f} {median / base:>9.2f}")


if __name__ == "__main__":
    main()
