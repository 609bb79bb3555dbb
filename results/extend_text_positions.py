"""A copy of a saved CLIP model directory whose text position table is longer.

The new rows are zeros: what the shipped encoder's pretraining left in the positions its
captions never reached (rows 36-39 of ``synth-web-tiny-clip`` have norms under 1e-36 -
weight decay was their only gradient). So the copy is the pretrained encoder as a longer
table would have come out of the same pretraining, up to the random initialisation of the
unreached rows, and fine-tuning with a larger ``encoder.max_length`` reads whole captions.
Used by the probe "The default: captions longer than the encoder reads" (docs/results.md):

    python results/extend_text_positions.py plugins/wsreid_clip/weights/synth-web-tiny-clip \
        runs/probes/web-tiny-clip-64pos --positions 64
    wsreid run recipes/baselines/itc.yaml -o encoder.pretrained=runs/probes/web-tiny-clip-64pos \
        -o encoder.max_length=64

Every other tensor and file is copied unchanged; ``wsreid.json`` records the extension.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TABLE = "text_model.embeddings.position_embedding.weight"
POSITION_IDS = "text_model.embeddings.position_ids"


def extend(source: Path, out: Path, positions: int) -> int:
    """Write the extended copy of ``source`` to ``out``; return the old number of positions."""
    state = load_file(str(source / "model.safetensors"))
    table = state[TABLE]
    old = table.shape[0]
    if positions <= old:
        raise ValueError(f"--positions {positions} is not more than the model's {old}")
    state[TABLE] = torch.cat([table, table.new_zeros(positions - old, table.shape[1])])
    if POSITION_IDS in state:
        state[POSITION_IDS] = torch.arange(positions, dtype=state[POSITION_IDS].dtype).unsqueeze(0)
    out.mkdir(parents=True, exist_ok=False)
    for item in source.iterdir():
        if item.name != "model.safetensors":
            shutil.copy2(item, out / item.name)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["text_config"]["max_position_embeddings"] = positions
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer_config = out / "tokenizer_config.json"
    if tokenizer_config.exists():
        settings = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        settings["model_max_length"] = positions
        tokenizer_config.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    info_path = out / "wsreid.json"
    if info_path.exists():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["max_length"] = positions
        info["text_positions_extended"] = {"from": old, "to": positions, "new_rows": "zeros",
                                           "source": str(source)}
        info.pop("zero_shot", None)
        info_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a saved model directory (config.json, model.safetensors)")
    parser.add_argument("out", type=Path, help="the new directory (must not exist)")
    parser.add_argument("--positions", type=int, default=64, help="text positions of the copy (default 64)")
    args = parser.parse_args(argv)
    if not (args.source / "model.safetensors").is_file():
        print(f"error: {args.source} has no model.safetensors", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"error: {args.out} exists; choose a new directory", file=sys.stderr)
        return 2
    try:
        old = extend(args.source, args.out, args.positions)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: text positions {old} -> {args.positions} (new rows zero)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
