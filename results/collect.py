"""Copy the small, checkable files of finished runs into results/ (no checkpoints).

    python results/collect.py SOURCE_STUDY_DIR results/<benchmark>/<study>

For each ``SOURCE/runs/<label>/seed-<S>/`` holding ``metrics.json``, copies
``metrics.json``, ``recipe.yaml``, ``versions.json``, ``.wsreid-run`` and
``logs/epochs.csv``. ``wsreid ablate STUDY --output-dir results/<benchmark>/<study>``
then treats those runs as finished (``--report-only`` tabulates them; without it, only
the missing runs are trained).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FILES = ["metrics.json", "recipe.yaml", "versions.json", ".wsreid-run", "logs/epochs.csv"]


def collect(source: Path, target: Path) -> int:
    copied = 0
    for metrics in sorted(source.glob("runs/*/seed-*/metrics.json")):
        run = metrics.parent
        dest = target / run.relative_to(source)
        for name in FILES:
            if (run / name).exists():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, dest / name)
        copied += 1
    return copied


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(f"{collect(Path(sys.argv[1]), Path(sys.argv[2]))} runs copied")
