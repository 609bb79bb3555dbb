"""Shipped wsreid plugin: dataset components.

- ``synth-pedes``: the procedurally generated benchmark (generated on first use into a
  cache directory, then reused);
- ``cuhk-pedes``, ``icfg-pedes``, ``rstpreid``: readers of the real datasets.

Every component's ``load()`` returns :class:`wsreid.api.DatasetSplits` and raises
:class:`wsreid.errors.DataError` on bad input.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field

from wsreid import hookimpl
from wsreid.api import DatasetComponent, DatasetSplits, Params
from wsreid.data import SynthConfig, check_dataset, ensure_synth, read_dataset

__all__ = ["SynthPedes", "CuhkPedes", "IcfgPedes", "RstpReid"]


class SynthPedes(DatasetComponent):
    """synth-pedes: procedurally generated text-person dataset in the CUHK-PEDES format."""

    class Params(SynthConfig):
        root: str | None = Field(
            None,
            description="dataset directory; default <cache>/synth-pedes/<size>-seed<seed>-v<version> with "
            "<cache> = $WSREID_CACHE or ~/.cache/wsreid. Generated there on first use, reused afterwards",
        )
        workers: int = Field(1, ge=1, le=64, description="processes that render images on first use (same output for any number)")

    def load(self) -> DatasetSplits:
        p = self.params

        def progress(done: int, total: int) -> None:
            print(f"synth-pedes {p.size}: {done}/{total} images", file=sys.stderr, flush=True)

        root = ensure_synth(p, p.root, workers=p.workers, progress=progress)
        splits = read_dataset(root, "cuhk-pedes")
        splits.name = "synth-pedes"
        return splits


class _RealDataset(DatasetComponent):
    format_name = ""

    class Params(Params):
        root: str = Field(..., description="dataset directory holding the annotation file and imgs/")
        check_images: Literal["exists", "decode", "none"] = Field(
            "exists",
            description="at load: check that every image exists (cheap), decode every image (slow; "
            "same as 'wsreid data check'), or skip image checks",
        )

    def load(self) -> DatasetSplits:
        check = self.params.check_images
        if check == "decode":
            check_dataset(self.params.root, self.format_name)
            check = "none"
        return read_dataset(self.params.root, self.format_name, check_images=check)


class CuhkPedes(_RealDataset):
    """CUHK-PEDES: reid_raw.json + imgs/ (train / val / test)."""

    format_name = "cuhk-pedes"


class IcfgPedes(_RealDataset):
    """ICFG-PEDES: ICFG-PEDES.json (or ICFG_PEDES.json) + imgs/ (train / test, no val)."""

    format_name = "icfg-pedes"


class RstpReid(_RealDataset):
    """RSTPReid: data_captions.json + imgs/ (train / val / test)."""

    format_name = "rstpreid"


@hookimpl
def wsreid_register(registry) -> None:
    registry.add("dataset", "synth-pedes", SynthPedes)
    registry.add("dataset", "cuhk-pedes", CuhkPedes)
    registry.add("dataset", "icfg-pedes", IcfgPedes)
    registry.add("dataset", "rstpreid", RstpReid)
