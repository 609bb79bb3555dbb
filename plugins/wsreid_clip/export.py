"""Turn a trained run into a shipped encoder: ``python -m wsreid_clip.export RUN_DIR``.

Writes ``plugins/wsreid_clip/weights/<name>/`` (or ``--out DIR``): the run's ``CLIPModel``
saved with ``save_pretrained`` (``config.json`` + ``model.safetensors``), its word-level
tokenizer extended with every word the synth-pedes generator can write (see
:func:`wsreid.data.synth.web_captions.lexicon_captions`; the added words get new ids after
the run's own and embedding rows equal to the mean of the trained rows, so every word of
the benchmark has its own token, as every word has BPE tokens in CLIP's vocabulary), and
``wsreid.json`` (the recipe it was trained with, its final metrics). A recipe then uses it
with ``encoder.pretrained: <name>`` (:func:`wsreid_clip.loading.shipped_models`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from wsreid.errors import UserError

DEFAULT_NAME = "synth-web-tiny-clip"


def extend_word_tokenizer(tokenizer: Any, texts: list[str]) -> Any:
    """A copy of built word-level ``tokenizer`` whose vocabulary also holds every word of
    ``texts`` it lacked; existing ids are unchanged, new words follow in the order of a
    vocabulary built from ``texts`` (frequency, then alphabetical)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from wsreid_clip.tokenizer import UNK, build_word_tokenizer

    vocab = dict(tokenizer.get_vocab())
    extra = build_word_tokenizer(texts).get_vocab()
    for word, _ in sorted(extra.items(), key=lambda kv: kv[1]):
        if word not in vocab:
            vocab[word] = len(vocab)
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    new = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    new.normalizer, new.pre_tokenizer, new.post_processor = backend.normalizer, backend.pre_tokenizer, backend.post_processor
    return PreTrainedTokenizerFast(
        tokenizer_object=new, pad_token=tokenizer.pad_token, unk_token=tokenizer.unk_token,
        mask_token=tokenizer.mask_token, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token,
        model_max_length=tokenizer.model_max_length,
    )  # fmt: skip


def export_run(run_dir: Path, out_dir: Path, *, checkpoint: str = "last") -> Path:
    """Write the shipped form of ``run_dir``'s encoder to ``out_dir`` (replaced atomically)."""
    from safetensors.torch import load_file
    from ruamel.yaml import YAML

    from wsreid.data.synth.web_captions import lexicon_captions
    from wsreid.engine.rundir import weights_of
    from wsreid_clip.encoder import ClipEncoder, ClipParams, _resize_token_embedding
    from wsreid_clip.loading import random_clip_model
    from wsreid_clip.tokenizer import TOKENIZER_DIRNAME, load_tokenizer

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file() or not (run_dir / TOKENIZER_DIRNAME).is_dir():
        raise UserError(f"{run_dir} is not a finished run of a clip encoder with a built tokenizer",
                        hint="train it first: wsreid run recipes/base/pretrain-tiny-clip-web.yaml")
    recipe = YAML(typ="safe").load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    spec = {k: v for k, v in recipe["encoder"].items() if k != "name"}
    params = ClipParams(**spec)
    if params.pretrained is not None:
        raise UserError(f"{run_dir}: its encoder starts from pretrained weights", hint="export a run with a built tokenizer")
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIRNAME, local_files_only=True)
    ids = ClipEncoder._special_ids(tokenizer)
    model = random_clip_model(embed_dim=params.embed_dim, vision=params.vision, text=params.text,
                              image_size=params.image_size, vocab_size=len(tokenizer),
                              max_length=params.max_length, special_ids=ids, seed=0)  # fmt: skip
    weights = weights_of(run_dir, checkpoint)
    state = {k.removeprefix("clip."): v for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state, strict=True)
    extended = extend_word_tokenizer(tokenizer, lexicon_captions())
    added = _resize_token_embedding(model, len(extended))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")) if (run_dir / "metrics.json").exists() else None
    provenance = {
        "made_by": "wsreid run RECIPE --output-dir RUN_DIR; python -m wsreid_clip.export RUN_DIR (RECIPE: below)",
        "weights": str(weights.relative_to(run_dir)),
        "run_vocabulary": len(tokenizer),
        "added_words": added,
        "image_size": list(params.image_size),
        "max_length": params.max_length,
        "recipe": recipe,
        "run_metrics": metrics,
    }
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        extended.save_pretrained(str(staging))
        (staging / "wsreid.json").write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # package data: readable by everyone (mkdtemp makes it private)
        for file in staging.iterdir():
            file.chmod(0o644)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


#: Where the zero-shot R@1 of a shipped encoder is recorded (``wsreid.json`` key
#: ``zero_shot``): synth-pedes sizes evaluated with the default recipe's data block.
ZERO_SHOT_SIZES = ("small", "tiny")


def zero_shot(model_dir: Path, size: str, recipe: Path | None = None) -> dict:
    """``wsreid eval --zero-shot`` of the encoder in ``model_dir`` on synth-pedes ``size``
    (seed 0, the default recipe's data; generated into the cache if needed), in a
    subprocess; returns its JSON result (R1, R5, R10, mAP, mINP, ...)."""
    import subprocess

    recipe = recipe or Path(__file__).resolve().parents[2] / "recipes" / "dgia.yaml"
    cmd = [sys.executable, "-m", "wsreid", "eval", "--zero-shot", "--recipe", str(recipe), "--format", "json",
           "-o", f"encoder.pretrained={Path(model_dir).resolve()}", "-o", f"data.size={size}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"zero-shot evaluation of {model_dir} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def record_zero_shot(model_dir: Path) -> dict:
    """Evaluate ``model_dir`` zero-shot on every size of :data:`ZERO_SHOT_SIZES` and write
    the metrics into its ``wsreid.json`` (key ``zero_shot``: size -> R1, R5, R10, mAP, mINP)."""
    info_path = Path(model_dir) / "wsreid.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["zero_shot"] = {}
    for size in ZERO_SHOT_SIZES:
        result = zero_shot(model_dir, size)
        info["zero_shot"][size] = {k: result[k] for k in ("R1", "R5", "R10", "mAP", "mINP", "top1_hub_share")}
    info["zero_shot_command"] = "wsreid eval --zero-shot --recipe recipes/dgia.yaml -o data.size=SIZE"
    info_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info["zero_shot"]


def main(argv: list[str] | None = None) -> int:
    from wsreid_clip.loading import SHIPPED_DIR

    parser = argparse.ArgumentParser(prog="python -m wsreid_clip.export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run (e.g. of recipes/base/pretrain-tiny-clip-web.yaml)")
    parser.add_argument("--out", type=Path, default=None, help=f"output directory (default: {SHIPPED_DIR}/{DEFAULT_NAME})")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last")
    parser.add_argument("--no-zero-shot", action="store_true", help="do not record the zero-shot metrics (wsreid.json)")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out or SHIPPED_DIR / DEFAULT_NAME, checkpoint=args.checkpoint)
        if not args.no_zero_shot:
            print(json.dumps(record_zero_shot(out)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
