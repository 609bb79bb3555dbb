"""synth-pedes, a procedurally generated text-person dataset (see docs/datasets.md)."""

from wsreid.data.synth.contact_sheet import write_contact_sheet
from wsreid.data.synth.generate import (
    ATTRIBUTES_FILE,
    GENERATOR_VERSION,
    META_FILE,
    PRESETS,
    SynthConfig,
    SynthPlan,
    SynthPreset,
    default_cache_dir,
    ensure_synth,
    generate_synth,
    load_synth,
    plan_dataset,
    synth_config,
    synth_records,
)

__all__ = [
    "ATTRIBUTES_FILE",
    "GENERATOR_VERSION",
    "META_FILE",
    "PRESETS",
    "SynthConfig",
    "SynthPlan",
    "SynthPreset",
    "default_cache_dir",
    "ensure_synth",
    "generate_synth",
    "load_synth",
    "plan_dataset",
    "synth_config",
    "synth_records",
    "write_contact_sheet",
]
