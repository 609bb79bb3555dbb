"""synth-pedes: planning, writing and caching the procedurally generated dataset.

The dataset is written in the CUHK-PEDES format, so :func:`wsreid.data.read_cuhk_pedes`
loads it::

    ROOT/reid_raw.json          [{split, captions, file_path, processed_tokens, id}, ...]
    ROOT/imgs/<split>/<id>_<k>.png
    ROOT/synth_attributes.json  identities (attributes, near-duplicate families) and, per
                                image, its scene, visible slots and caption mentions
    ROOT/synth_meta.json        generator version, configuration, counts (written last)

Everything is a function of (configuration, generator version): identities come from one
random stream, each image from its own stream seeded by (seed, version, person, k).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from wsreid.api import DatasetSplits, Params
from wsreid.data.images import ExistenceIndex
from wsreid.data.readers import (DatasetImageCheck, ImageCheck, ImageRecord, dataset_of_records, parse_records,
                                  read_records)
from wsreid.data.synth.attributes import Identity, mutate_identity, sample_identity, visible_slots
from wsreid.data.synth.captions import Caption, make_caption
from wsreid.data.synth.damage import META_FILE, damaged, default_cache_dir, regenerate_hint
from wsreid.data.synth.render import render_image
from wsreid.data.synth.scene import Scene, Variation, sample_scene
from wsreid.data.synth.web_captions import make_web_caption
from wsreid.errors import DataError

__all__ = [
    "GENERATOR_VERSION",
    "SynthPreset",
    "PRESETS",
    "SynthConfig",
    "PlannedImage",
    "SynthPlan",
    "plan_dataset",
    "generate_synth",
    "ensure_synth",
    "load_synth",
    "synth_records",
    "default_cache_dir",
    "META_FILE",
    "ATTRIBUTES_FILE",
]

#: bump whenever the output for a given configuration changes; part of the cache key.
#: 2: "A young young man/woman" no longer written (the opener's "young" before a subject
#: that already says it); no random draw changed.
GENERATOR_VERSION = 2
#: the namespace of the generator's random streams; kept when a fix changes the output
#: without changing what is drawn (version 2), so that datasets differ only by that fix
RNG_STREAM = 1
ATTRIBUTES_FILE = "synth_attributes.json"
SPLITS = ("train", "val", "test")
MAX_FAMILY = 4  # an original and at most three near-duplicates
#: settings recorded in a dataset's metadata only when set (None keeps the preset's)
OPTIONAL_SETTINGS = ("train_ids", "train_images_per_id")


@dataclass(frozen=True)
class SynthPreset:
    """Identities per split and the distribution of images per identity
    (``images_per_id[i]`` = probability of ``2 + i`` images)."""

    train_ids: int
    val_ids: int
    test_ids: int
    images_per_id: tuple[float, ...] = (0.25, 0.3, 0.2, 0.15, 0.1)  # mean 3.55


_CUHK_LIKE = (0.3, 0.45, 0.15, 0.06, 0.04)  # mean 3.09 images per identity, as CUHK-PEDES
PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(40, 10, 20),
    "small": SynthPreset(600, 100, 200),
    "medium": SynthPreset(3000, 500, 1000),
    "cuhk": SynthPreset(11003, 1000, 1000, _CUHK_LIKE),
}


class SynthConfig(Params):
    """Everything that determines a synth-pedes dataset (with the generator version)."""

    size: Literal["tiny", "small", "medium", "cuhk"] = Field(
        "small",
        description="preset: tiny (40/10/20 train/val/test ids, tests), small (600/100/200, default recipes), "
        "medium (3000/500/1000), cuhk (11003/1000/1000 ids, ~34k training images, scaling benchmarks)",
    )
    seed: int = Field(0, ge=0, description="dataset seed (independent of the training seed)")
    train_ids: int | None = Field(
        None, ge=1, le=100_000,
        description="training identities (default: the preset's); with train_images_per_id it reshapes the "
        "training set, e.g. more people with fewer images each (val/test keep their sizes but hold other people: "
        "one random stream draws every split)",
    )  # fmt: skip
    train_images_per_id: tuple[float, ...] | None = Field(
        None, min_length=1, max_length=12,
        description="probabilities of 2, 3, 4, ... images per training identity, summing to 1 (default: the "
        "preset's, mean 3.55; val and test keep the preset's)",
    )  # fmt: skip
    image_height: int = Field(128, ge=32, le=1024, description="image height in pixels")
    image_width: int = Field(64, ge=16, le=512, description="image width in pixels")
    image_format: Literal["png", "jpg"] = Field("png", description="image file format (png is lossless, jpg smaller)")
    captions_per_image: int = Field(2, ge=1, le=6, description="captions written per image")
    caption_noise: float = Field(0.05, ge=0, le=1, description="share of captions with one wrong colour word")
    min_mentions: int = Field(3, ge=1, le=7, description="fewest visible items a caption describes (if that many are visible)")
    max_mentions: int = Field(6, ge=1, le=7, description="most visible items a caption describes")
    near_duplicate_share: float = Field(0.3, ge=0, le=0.9, description="share of identities made by changing an earlier identity of the same split (hard negatives)")
    near_duplicate_changes: int = Field(2, ge=1, le=4, description="a near-duplicate changes 1 to this many attributes")
    shade_jitter: float = Field(0.12, ge=0, le=0.5, description="per-identity variation of each colour (brightness share; channels +-80x)")
    occlusion_prob: float = Field(0.15, ge=0, le=1, description="share of images with an occluder")
    blur_prob: float = Field(0.3, ge=0, le=1, description="share of blurred images")
    clutter: int = Field(6, ge=0, le=30, description="at most this many background objects per image")
    lighting: float = Field(0.25, ge=0, le=0.6, description="brightness variation (+-); colour cast is 0.4 times this")
    pixel_noise: float = Field(6.0, ge=0, le=40, description="largest pixel noise standard deviation (0-255 scale)")
    style: Literal["pedes", "web"] = Field(
        "pedes",
        description="pedes: street scenes and CUHK-PEDES-like sentences (the benchmark); web: studio backdrops, "
        "saturated flat colours and alt-text-like noun-phrase captions with another vocabulary (the pretraining "
        "pool of the shipped initial encoder; docs/datasets.md)",
    )

    @model_validator(mode="after")
    def _mentions_ordered(self) -> "SynthConfig":
        if self.max_mentions < self.min_mentions:
            raise ValueError("max_mentions must be at least min_mentions")
        return self

    @model_validator(mode="after")
    def _train_images_per_id_is_a_distribution(self) -> "SynthConfig":
        probs = self.train_images_per_id
        if probs is not None and (min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6):
            raise ValueError(f"train_images_per_id {list(probs)} must be probabilities (of 2, 3, ... images) summing to 1")
        return self

    def preset(self) -> SynthPreset:
        """The size preset, with ``train_ids`` applied if set."""
        base = PRESETS[self.size]
        return base if self.train_ids is None else replace(base, train_ids=self.train_ids)

    def generator_config(self) -> dict:
        """The fields that determine the output (subclasses may add others, e.g. a root)."""
        values = {name: getattr(self, name) for name in SynthConfig.model_fields}
        for name in OPTIONAL_SETTINGS:  # left out at their default: datasets generated before they existed still match
            if values[name] is None:
                del values[name]
        return values

    def cache_name(self) -> str:
        """Directory name in the cache: ``<size>-seed<seed>-v<version>`` plus a short hash
        of the other settings when they differ from the defaults."""
        name = f"{self.size}-seed{self.seed}-v{GENERATOR_VERSION}"
        defaults = SynthConfig().generator_config()
        changed = {k: v for k, v in self.generator_config().items() if k not in ("size", "seed") and v != defaults.get(k)}
        if changed:
            name += "-" + hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
        return name

    def variation(self) -> Variation:
        return Variation(self.occlusion_prob, self.blur_prob, self.clutter, self.lighting, self.pixel_noise)


@dataclass(frozen=True)
class PlannedImage:
    """One image to write: who, how it is taken, its captions and its file (relative to imgs/)."""

    split: str
    identity: Identity
    number: int
    scene: Scene
    captions: tuple[Caption, ...]
    visible: frozenset[str]
    file_path: str


@dataclass(frozen=True)
class SynthPlan:
    """Everything about a dataset except the pixels."""

    config: SynthConfig
    preset: SynthPreset
    identities: dict[str, list[Identity]]
    images: list[PlannedImage]


def _split_identities(n: int, first_id: int, rng: np.random.Generator, config: SynthConfig, images_per_id: tuple[float, ...], seen: set) -> list[Identity]:
    out: list[Identity] = []
    family_size: dict[int, int] = {}
    open_: list[Identity] = []  # identities whose family can still grow
    cumulative = np.cumsum(np.asarray(images_per_id, dtype=float))
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise DataError(f"synth-pedes cannot find {n} distinct identities", hint="lower near_duplicate_share")
        pid = first_id + len(out)
        original = None
        if open_ and rng.random() < config.near_duplicate_share:
            while open_ and original is None:
                k = int(rng.integers(len(open_)))
                if family_size[open_[k].family] < MAX_FAMILY:
                    original = open_[k]
                else:  # family complete: drop it from the candidates (swap-remove)
                    open_[k] = open_[-1]
                    open_.pop()
        if original is not None:
            changes = int(rng.integers(1, config.near_duplicate_changes + 1))
            ident = mutate_identity(original, pid, rng, changes=changes, shade_jitter=config.shade_jitter)
        else:
            ident = sample_identity(pid, rng, shade_jitter=config.shade_jitter)
        if ident.key() in seen:
            continue
        seen.add(ident.key())
        ident.num_images = 2 + int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        family_size[ident.family] = family_size.get(ident.family, 0) + 1
        out.append(ident)
        open_.append(ident)
    return out


def synth_config(settings: SynthConfig | Mapping[str, Any]) -> SynthConfig:
    """The :class:`SynthConfig` of ``settings``: a config as it is, or a mapping of
    setting -> value (``{"size": "tiny", "seed": 4}``) validated, a bad setting being one
    :class:`DataError` line naming it (not pydantic's multi-line error); a ``TypeError``
    for anything else. What ``wsreid data synth --set`` and the generation functions use."""
    if isinstance(settings, SynthConfig):
        return settings
    if not isinstance(settings, Mapping):
        raise TypeError(f"synth-pedes settings are a SynthConfig or a mapping of settings (e.g. {{'size': 'tiny'}}), "
                        f"got a {type(settings).__name__}")
    unknown = [key for key in settings if key not in SynthConfig.model_fields]
    if unknown:
        known = ", ".join(SynthConfig.model_fields)
        raise DataError(f"synth-pedes setting {unknown[0]!r} is unknown", hint=f"settings are: {known}")
    try:
        return SynthConfig.model_validate(dict(settings))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = " " + ".".join(str(p) for p in err["loc"]) if err["loc"] else "s"  # a model check names no one field
        message = re.sub(r"^Value error, ", "", err["msg"])
        message = message[:1].lower() + message[1:]
        if err["loc"] and not isinstance(err.get("input"), Mapping):  # the value given, as a recipe's error says
            message += f" (got {err.get('input')!r})"
        raise DataError(f"synth-pedes setting{where}: {message}") from None


def plan_dataset(config: SynthConfig, preset: SynthPreset | None = None) -> SynthPlan:
    """Sample identities, scenes and captions (cheap: no pixels). Person ids are 1-based:
    train first, then val, then test; identities never repeat across splits."""
    preset = preset or config.preset()
    rng = np.random.default_rng([config.seed, RNG_STREAM, 0])
    seen: set = set()
    identities: dict[str, list[Identity]] = {}
    next_id = 1
    for split, n in zip(SPLITS, (preset.train_ids, preset.val_ids, preset.test_ids)):
        probs = config.train_images_per_id if split == "train" and config.train_images_per_id else preset.images_per_id
        identities[split] = _split_identities(n, next_id, rng, config, tuple(probs), seen)
        next_id += n
    images: list[PlannedImage] = []
    ext = config.image_format
    for split in SPLITS:
        for ident in identities[split]:
            for k in range(ident.num_images):
                irng = np.random.default_rng([config.seed, RNG_STREAM, 1, ident.person_id, k])
                scene = sample_scene(irng, config.variation(), has_suitcase=ident.attrs["bag_type"] == "suitcase")
                visible = visible_slots(ident.attrs, scene.view, shoes_hidden=scene.shoes_hidden)
                write = make_web_caption if config.style == "web" else make_caption
                captions = tuple(
                    write(ident.attrs, visible, irng, min_mentions=config.min_mentions, max_mentions=config.max_mentions, noise=config.caption_noise)
                    for _ in range(config.captions_per_image)
                )
                images.append(PlannedImage(split, ident, k, scene, captions, visible, f"{split}/{ident.person_id:05d}_{k}.{ext}"))
    return SynthPlan(config, preset, identities, images)


def _write_image(job: tuple[Identity, Scene, int, int, int, str, str]) -> None:
    ident, scene, height, width, clutter, style, path = job
    img = render_image(ident, scene, height=height, width=width, clutter=clutter, style=style)
    if path.endswith(".jpg"):
        img.save(path, quality=92)
    else:  # lossless at any level: 1 encodes about twice as fast as 6, files ~14 % larger
        img.save(path, compress_level=1)


def _tokens(caption: str) -> list[str]:
    return re.findall(r"[a-z]+(?:-[a-z]+)*", caption.lower())


def _counts(plan: SynthPlan) -> dict:
    return {
        split: {
            "ids": len(plan.identities[split]),
            "images": sum(1 for im in plan.images if im.split == split),
            "captions": sum(len(im.captions) for im in plan.images if im.split == split),
        }
        for split in SPLITS
    }


def default_workers() -> int:
    """Rendering processes when none are asked for: one per CPU core this process may
    use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _write_files(plan: SynthPlan, out: Path, workers: int | None, progress: Callable[[int, int], None] | None) -> None:
    cfg = plan.config
    workers = default_workers() if workers is None else workers
    for split in SPLITS:
        (out / "imgs" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(im.identity, im.scene, cfg.image_height, cfg.image_width, cfg.clutter, cfg.style, str(out / "imgs" / im.file_path)) for im in plan.images]
    total = len(jobs)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done, _ in enumerate(pool.map(_write_image, jobs, chunksize=64), 1):
                if progress and (done % 500 == 0 or done == total):
                    progress(done, total)
    else:
        for done, job in enumerate(jobs, 1):
            _write_image(job)
            if progress and (done % 500 == 0 or done == total):
                progress(done, total)
    records = [
        {"split": im.split, "captions": [c.text for c in im.captions], "file_path": im.file_path,
         "processed_tokens": [_tokens(c.text) for c in im.captions], "id": im.identity.person_id}
        for im in plan.images
    ]  # fmt: skip
    (out / "reid_raw.json").write_text(json.dumps(records), encoding="utf-8")
    attributes = {
        "generator_version": GENERATOR_VERSION,
        "identities": [
            {"id": i.person_id, "split": split, "family": i.family, "parent": i.parent, "changed": list(i.changed),
             "attributes": i.attrs, "shades": i.shades}
            for split in SPLITS
            for i in plan.identities[split]
        ],
        "images": [
            {"file_path": im.file_path, "id": im.identity.person_id, "scene": im.scene.to_json(), "visible": sorted(im.visible),
             "mentions": [list(c.mentions) for c in im.captions], "noisy": [c.noisy for c in im.captions]}
            for im in plan.images
        ],
    }  # fmt: skip
    (out / ATTRIBUTES_FILE).write_text(json.dumps(attributes), encoding="utf-8")
    meta = {"generator": "synth-pedes", "generator_version": GENERATOR_VERSION, "config": cfg.generator_config(), "preset": asdict(plan.preset), "counts": _counts(plan)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _read_meta(root: Path) -> dict | None:
    """The meta file of the dataset in ``root`` as a mapping; None when it cannot be read."""
    try:
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _matches(root: Path, config: SynthConfig, preset: SynthPreset) -> bool | None:
    """True/False whether ``root`` holds this dataset; None if it holds no synth-pedes dataset."""
    if not (root / META_FILE).is_file():
        return None
    meta = _read_meta(root)
    if meta is None:
        return False
    return (
        meta.get("generator_version") == GENERATOR_VERSION
        and meta.get("config") == json.loads(json.dumps(config.generator_config()))
        and meta.get("preset") == json.loads(json.dumps(asdict(preset)))
    )


def _other_dataset_error(root: Path, config: SynthConfig, preset: SynthPreset, root_setting: str) -> DataError:
    """The error of ``root`` holding a synth-pedes dataset other than ``config``'s: what
    differs, one phrase each in the settings' order (``size tiny there, small asked``;
    values as a recipe writes them), and the advice to ask for the folder's settings where
    that would reuse it (every difference a setting whose recorded value is valid, the
    generator and the preset the same)."""
    from wsreid.recipe.yamlio import flow_text

    fix = f"delete that directory or choose another location ({root_setting})"
    unnamed = f"{root} holds a synth-pedes dataset generated with other settings or another generator version"
    meta = _read_meta(root)
    if meta is None:
        return DataError(unnamed, hint=fix)
    if meta.get("generator_version") != GENERATOR_VERSION:  # no setting asks for another generator
        return DataError(f"{root} holds a synth-pedes dataset written by generator version "
                         f"{flow_text(meta.get('generator_version'))} (this wsreid generates version "
                         f"{GENERATOR_VERSION})", hint=fix)
    there = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    asked = json.loads(json.dumps(config.generator_config()))
    fields = list(SynthConfig.model_fields)
    phrases, reusable = [], True
    for name in [*fields, *sorted(set(there) - set(fields))]:
        if there.get(name) == asked.get(name):
            continue
        if name not in fields:
            phrases.append(f"{name} {flow_text(there[name])} there, not a setting here")
            reusable = False
        elif name not in there and name not in OPTIONAL_SETTINGS:
            phrases.append(f"{name} not recorded there, {flow_text(asked.get(name))} asked")
            reusable = False
        else:
            phrases.append(f"{name} {flow_text(there.get(name))} there, {flow_text(asked.get(name))} asked")
    if reusable and phrases:
        try:
            SynthConfig.model_validate({**asked, **{k: v for k, v in there.items() if k in fields}})
        except ValidationError:
            reusable = False
    if not phrases and meta.get("preset") != json.loads(json.dumps(asdict(preset))):
        phrases, reusable = [f"the {config.size!r} preset's identities and images per identity differ"], False
    if not phrases:  # the meta file changed since _matches read it
        return DataError(unnamed, hint=fix)
    return DataError(f"{root} holds a synth-pedes dataset generated with other settings: {'; '.join(phrases)}",
                     hint=f"to reuse it, ask for the folder's settings; else {fix}" if reusable else fix)


def generate_synth(
    config: SynthConfig | Mapping[str, Any],
    out_dir: str | Path,
    *,
    preset: SynthPreset | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    fix: str = "choose another output directory",
) -> Path:
    """Write the dataset of ``config`` to ``out_dir`` (which must not exist or be empty).

    Files go to a temporary sibling directory that is renamed to ``out_dir`` when complete,
    so an interrupted run (or a full disk) leaves no half-written dataset. ``workers`` > 1
    renders in processes (same output; None = :func:`default_workers`). If another process
    finishes the same dataset first, its copy is kept. A folder that cannot be created or
    written (a file in the way, no permission, a full disk) is a :class:`DataError` naming
    it, with ``fix`` (what to set to write elsewhere) as its hint. Returns ``out_dir``.
    """
    config = synth_config(config)
    out = Path(out_dir).expanduser()
    plan = plan_dataset(config, preset)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DataError(f"synth-pedes output {out} already exists and is not empty",
                            hint="remove it or choose another directory")
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(out)
        tmp = out.parent / f".{out.name}.partial-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise _write_error(exc, out, fix) from None
    try:
        _write_files(plan, tmp, workers, progress)
        try:
            os.rename(tmp, out)
        except OSError:
            if _matches(out, config, plan.preset):
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise DataError(f"synth-pedes output {out} appeared while generating and holds something else", hint="remove it and retry") from None
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(exc, out, fix) from None
        raise
    return out


def _host() -> str:
    """Where this process's id means something, as a partial folder's name holds it (no
    '-' or '.'): the machine's name and, where Linux shows it, the process-id namespace
    (containers that share a host name and a dataset cache do not share process ids)."""
    import socket

    name = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
    try:
        namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:  # not Linux, or no /proc
        namespace = ""
    return f"{name}_{namespace}" if namespace else name


def _remove_stale_partials(out: Path) -> None:
    """Remove the partial folders of ``out`` that a process of this machine left when it
    was killed (SIGKILL, the out-of-memory killer: no cleanup ran): their process no
    longer runs. Another machine's, or a live process's, are left alone."""
    prefix = f".{out.name}.partial-{_host()}-"
    try:
        candidates = [p for p in out.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for folder in candidates:
        pid = folder.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # it runs: still writing
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # another user's process: it runs
            continue


def _write_error(exc: OSError, out: Path, fix: str) -> DataError:
    """The :class:`DataError` for an ``exc`` raised while creating or writing ``out``:
    what stood in the way (a file where a folder should be, a folder without write
    permission, a full disk) and ``fix``."""
    from wsreid.fileio import disk_full, nearest_existing, permission_refused

    if disk_full(exc):
        return DataError(f"cannot write the synth-pedes dataset to {out}: no space left on the device",
                         hint=f"free space there, or {fix}")
    try:
        parent = nearest_existing(out, include_self=True)
    except OSError:  # not searchable: no file on the way to name
        parent = None
    if parent is not None and not parent.is_dir():
        return DataError(f"cannot create the synth-pedes folder {out}: {parent} is a file, not a folder", hint=fix)
    why = exc.strerror or type(exc).__name__
    if permission_refused(exc) and exc.filename:
        failed = Path(os.fsdecode(exc.filename))
        folder = failed if failed.is_dir() else failed.parent
        return DataError(f"cannot write the synth-pedes dataset to {out}: {folder} is not writable ({why})", hint=fix)
    where = f" ({os.fsdecode(exc.filename)})" if exc.filename else ""
    return DataError(f"cannot write the synth-pedes dataset to {out}: {why}{where}", hint=fix)


def _read_generated(root: Path) -> tuple[str | None, list[ImageRecord]]:
    """Read the records of the generated dataset at ``root`` and what is missing or broken
    in it: (None, its records) when intact, else (what, []). Checked: its files, the
    annotation file as JSON, its records (as the readers check them), and the existence of
    every image it lists (one directory listing per folder; no image is decoded). This is
    the check for datasets that an interrupted copy, a cleanup or a full disk left
    incomplete, and the records are those the dataset is then built from (the file is
    read once)."""
    for name in ("reid_raw.json", ATTRIBUTES_FILE):
        if not (root / name).is_file():
            return f"{name} is missing", []
    annotations = root / "reid_raw.json"
    try:
        raw = json.loads(annotations.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "reid_raw.json is not valid JSON (truncated?)", []
    if not isinstance(raw, list) or not all(isinstance(r, dict) and isinstance(r.get("file_path"), str) for r in raw):
        return "reid_raw.json is not a list of image records", []
    records = parse_records(annotations, raw, "cuhk-pedes", check_images="none")
    index = ExistenceIndex()
    missing = [r.relative_path for r in records if not index.exists(r.image_path)]
    if missing:
        if len(missing) == 1:
            return f"image imgs/{missing[0]} (one of the {len(records)} it lists) is missing", []
        return f"images imgs/{missing[0]} and {len(missing) - 1} more (of the {len(records)} it lists) are missing", []
    return None, records


def ensure_synth(
    config: SynthConfig | Mapping[str, Any],
    root: str | Path | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    root_setting: str = "data.root",
) -> Path:
    """The directory of the dataset of ``config``: generated on first use, reused after.

    ``root`` defaults to ``<cache>/synth-pedes/<config.cache_name()>``. A ``root`` that
    holds a synth-pedes dataset of other settings, or anything else, is an error; so is
    a generated dataset with files missing (the hint: delete it, it is generated again)
    and a folder that cannot be read, created or written (the hint names what to set:
    ``WSREID_CACHE`` for the cache, else ``root_setting``, the option that gave ``root``).
    """
    return _ensure(config, root, workers=workers, progress=progress, root_setting=root_setting)[0]


def load_synth(
    config: SynthConfig | Mapping[str, Any],
    root: str | Path | None = None,
    *,
    check_images: DatasetImageCheck = "exists",
    workers: int | None = None,
    decode_workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
    root_setting: str = "data.root",
) -> DatasetSplits:
    """The dataset of ``config`` as :class:`DatasetSplits` named ``synth-pedes``: where
    :func:`ensure_synth` puts it (with its errors), read as :func:`wsreid.data.read_dataset`
    reads the CUHK-PEDES format with ``check_images`` (``decode_workers`` threads decode),
    from the records of :func:`synth_records` (the annotation file read once)."""
    path, records = synth_records(config, root, check_images="none" if check_images == "none" else "exists",
                                  workers=workers, progress=progress, root_setting=root_setting)
    return dataset_of_records(path, records, "cuhk-pedes", check_images=check_images,
                              name="synth-pedes", workers=decode_workers)


def synth_records(
    config: SynthConfig | Mapping[str, Any],
    root: str | Path | None = None,
    *,
    check_images: ImageCheck = "exists",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    root_setting: str = "data.root",
) -> tuple[Path, list[ImageRecord]]:
    """The annotation file and records of the dataset of ``config``, where
    :func:`ensure_synth` puts it (with its errors), as
    :func:`wsreid.data.readers.read_records` returns them; the file is read once. A reused
    dataset gives the records its damage check read (every image is known to exist); a
    dataset generated here is read with ``check_images`` (see docs/datasets.md)."""
    path, records = _ensure(config, root, workers=workers, progress=progress, root_setting=root_setting)
    if records is None:
        return read_records(path, "cuhk-pedes", check_images=check_images)
    return path / "reid_raw.json", records


def _ensure(
    config: SynthConfig,
    root: str | Path | None,
    *,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    root_setting: str,
) -> tuple[Path, list[ImageRecord] | None]:
    """:func:`ensure_synth`, and the records of a dataset it reuses (None when it
    generates the dataset)."""
    config = synth_config(config)
    preset = config.preset()
    cached = root is None
    path = Path(root).expanduser() if root is not None else default_cache_dir() / "synth-pedes" / config.cache_name()
    if cached:
        fix = f"set WSREID_CACHE to a folder you can write to, or {root_setting} to where the dataset should go"
    else:
        fix = f"set {root_setting} to a new or empty folder you can write to"
    what = "synth-pedes cache entry" if cached else "synth-pedes dataset"
    try:
        state = _matches(path, config, preset)
        if state:
            damage, records = _read_generated(path)
            if damage:
                raise damaged(path, damage, cached=cached, root_setting=root_setting)
            return path, records
        if state is False:
            if cached:
                raise damaged(path, f"its {META_FILE} does not match its name (unreadable or edited)",
                              cached=cached, root_setting=root_setting)
            raise _other_dataset_error(path, config, preset, root_setting)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if cached and path.is_dir():
                raise DataError(f"the {what} {path} is incomplete (no {META_FILE})",
                                hint=regenerate_hint(path, cached=cached, root_setting=root_setting))
            raise DataError(f"{path} exists but is not a synth-pedes dataset (no {META_FILE})",
                            hint=f"choose an empty or new directory ({root_setting})")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        where = f" ({os.fsdecode(exc.filename)})" if exc.filename else ""
        raise DataError(f"cannot read the {what} {path}: {why}{where}", hint=fix) from None
    return generate_synth(config, path, workers=workers, progress=progress, fix=fix), None
