"""Shipped wsreid plugin: dataset components.

- ``synth-pedes``: the procedurally generated benchmark (generated on first use into a
  cache directory, then reused);
- ``cuhk-pedes``, ``icfg-pedes``, ``rstpreid``: readers of the real datasets.

Every component's ``load()`` returns :class:`wsreid.api.DatasetSplits` and raises
:class:`wsreid.errors.DataError` on bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from wsreid import hookimpl
from wsreid.api import DatasetComponent, DatasetSplits, Params, ParamsCheckError
from wsreid.data import SynthConfig, load_synth, read_dataset
from wsreid.data.readers import dataset_root_problem

__all__ = ["SynthPedes", "CuhkPedes", "IcfgPedes", "RstpReid"]


CHECK_IMAGES_DESCRIPTION = (
    "at load: 'decode-eval' checks that every image exists and decodes the val and test images (an evaluation "
    "split is otherwise read only when evaluated, after training); 'exists' only checks existence; 'decode' "
    "decodes every image (slow; as 'wsreid data check'); 'none' skips image checks"
)


class SynthPedes(DatasetComponent):
    """synth-pedes: procedurally generated text-person dataset in the CUHK-PEDES format."""

    class Params(SynthConfig):
        root: str | None = Field(
            None,
            description="dataset directory; default <cache>/synth-pedes/<size>-seed<seed>-v<version> with "
            "<cache> = $WSREID_CACHE or ~/.cache/wsreid. Generated there on first use, reused afterwards",
        )
        workers: int | None = Field(None, ge=1, le=64, description="processes that render images on first use (same output "
                                    "for any number; default: one per CPU core, at most 8)")
        check_images: Literal["exists", "decode-eval", "decode", "none"] = Field(
            "decode-eval", description=CHECK_IMAGES_DESCRIPTION,
        )

    @classmethod
    def check_params(cls, params) -> None:
        """A missing ``root`` is fine (the dataset is generated there on first use); an
        existing one must be a folder."""
        if params.root is not None and Path(params.root).expanduser().is_file():
            raise ParamsCheckError("root", f"{params.root} is a file, not a folder",
                                   hint="name a new or empty folder, or one written by synth-pedes")

    def load(self) -> DatasetSplits:
        p = self.params

        def progress(done: int, total: int) -> None:
            print(f"synth-pedes {p.size}: {done}/{total} images", file=sys.stderr, flush=True)

        return load_synth(p, p.root, check_images=p.check_images, workers=p.workers, progress=progress)


class _RealDataset(DatasetComponent):
    format_name = ""

    class Params(Params):
        root: str = Field(..., description="dataset directory holding the annotation file and imgs/")
        check_images: Literal["exists", "decode-eval", "decode", "none"] = Field(
            "decode-eval", description=CHECK_IMAGES_DESCRIPTION,
        )

    @classmethod
    def check_params(cls, params) -> None:
        """``root`` exists and holds the annotation file of the format."""
        problem = dataset_root_problem(params.root, cls.format_name)
        if problem is not None:
            raise ParamsCheckError("root", *problem)

    def load(self) -> DatasetSplits:
        return read_dataset(self.params.root, self.format_name, check_images=self.params.check_images)


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
