"""Datasets: readers of the real text-person datasets, the synth-pedes generator, checks.

Public API::

    load_image(path) -> PIL.Image (RGB); DataError naming the file if it cannot be read
    read_dataset(root, format) / read_cuhk_pedes / read_icfg_pedes / read_rstpreid
        -> wsreid.api.DatasetSplits
    check_dataset(root, format) -> DatasetReport (decodes every image)
    same_identity_pair_rate(person_ids[, image_ids]) -> share of distinct item pairs showing one person
    SynthConfig, PRESETS, GENERATOR_VERSION, generate_synth, ensure_synth, plan_dataset
    load_synth(config[, root], check_images=...) -> DatasetSplits (ensure_synth + read_dataset, the file read once)
    write_contact_sheet(root, out_png)
"""

from wsreid.data.check import (
    DatasetReport,
    SplitStats,
    check_dataset,
    format_report,
    same_identity_pair_rate,
    split_statistics,
)
from wsreid.data.images import load_image
from wsreid.data.readers import (
    FORMATS,
    ImageRecord,
    read_cuhk_pedes,
    read_dataset,
    read_icfg_pedes,
    read_records,
    read_rstpreid,
)
from wsreid.data.synth import (
    GENERATOR_VERSION,
    PRESETS,
    SynthConfig,
    SynthPreset,
    default_cache_dir,
    ensure_synth,
    generate_synth,
    load_synth,
    plan_dataset,
    write_contact_sheet,
)

__all__ = [
    "load_image",
    "FORMATS",
    "ImageRecord",
    "read_dataset",
    "read_records",
    "read_cuhk_pedes",
    "read_icfg_pedes",
    "read_rstpreid",
    "check_dataset",
    "format_report",
    "split_statistics",
    "same_identity_pair_rate",
    "DatasetReport",
    "SplitStats",
    "GENERATOR_VERSION",
    "PRESETS",
    "SynthConfig",
    "SynthPreset",
    "default_cache_dir",
    "ensure_synth",
    "generate_synth",
    "load_synth",
    "plan_dataset",
    "write_contact_sheet",
]
