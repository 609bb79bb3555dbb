"""synth-pedes generator: identity and caption invariants (hypothesis), determinism,
disjoint splits, rendering, atomic writing and the cache."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsreid.data import check_dataset, read_cuhk_pedes
from wsreid.data.synth import generate as gen
from wsreid.data.synth.attributes import SLOTS, Identity, choices, mutate_identity, sample_identity, visible_slots
from wsreid.data.synth.captions import COLOUR_WORDS, make_caption
from wsreid.data.synth.generate import PRESETS, SynthConfig, SynthPreset, ensure_synth, generate_synth, plan_dataset
from wsreid.data.synth.render import render_image
from wsreid.data.synth.scene import Scene
from wsreid.errors import DataError

MICRO = SynthPreset(4, 2, 3)
seeds = st.integers(0, 2**32 - 1)
views = st.sampled_from(["front", "back", "side"])


def _valid(attrs: dict[str, str]) -> bool:
    for slot in SLOTS:
        values, weights = choices(slot, attrs)
        if attrs[slot] not in values or weights[values.index(attrs[slot])] <= 0:
            return False
    return True


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_sampled_identities_respect_constraints(seed: int) -> None:
    ident = sample_identity(1, np.random.default_rng(seed), shade_jitter=0.12)
    a = ident.attrs
    assert set(a) == set(SLOTS) and _valid(a)
    assert not (a["upper_type"] == "coat" and a["lower_type"] in ("shorts", "skirt"))
    assert (a["hair_colour"] == "none") == (a["hair_length"] == "bald")
    assert all(0 <= v <= 255 for rgb in ident.shades.values() for v in rgb)


@settings(max_examples=60, deadline=None)
@given(seeds, st.integers(1, 4))
def test_near_duplicates_change_only_a_few_slots(seed: int, changes: int) -> None:
    rng = np.random.default_rng(seed)
    original = sample_identity(1, rng, shade_jitter=0.12)
    dup = mutate_identity(original, 2, rng, changes=changes, shade_jitter=0.12)
    differing = {s for s in SLOTS if dup.attrs[s] != original.attrs[s]}
    assert differing and differing <= set(dup.changed)
    assert len(dup.changed) <= 2 * changes  # each change may bring its dependent colour along
    assert dup.attrs["gender"] == original.attrs["gender"] and _valid(dup.attrs)
    assert dup.family == original.family == 1 and dup.parent == 1 and dup.key() != original.key()
    for slot, rgb in original.shades.items():  # unchanged colours keep the identity's shade
        if slot not in dup.changed:
            assert dup.shades[slot] == rgb


def _colour_words_outside(text: str, allowed: set[str]) -> list[str]:
    """Colour words in ``text`` that belong to no colour in ``allowed``."""
    text = text.lower()
    for name in allowed:
        for word in sorted(COLOUR_WORDS.get(name, (name,)), key=len, reverse=True):
            text = re.sub(rf"\b{re.escape(word)}\b", " ", text)
    return [w for words in COLOUR_WORDS.values() for w in words if re.search(rf"\b{re.escape(w)}\b", text)]


INVISIBLE_WORDS = {
    "backpack": ("backpack", "rucksack", "knapsack"),
    "glasses": ("glasses",),
    "face mask": ("mask",),
    "logo": ("logo", "emblem", "print on the chest"),
    "shoes": ("sneakers", "trainers", "boots", "shoes"),
}


@settings(max_examples=150, deadline=None)
@given(seeds, views, st.booleans(), st.integers(1, 7))
def test_captions_mention_only_visible_attributes(seed: int, view: str, shoes_hidden: bool, min_mentions: int) -> None:
    rng = np.random.default_rng(seed)
    attrs = sample_identity(1, rng, shade_jitter=0.1).attrs
    visible = visible_slots(attrs, view, shoes_hidden=shoes_hidden)
    cap = make_caption(attrs, visible, rng, min_mentions=min_mentions, max_mentions=7, noise=0.0)
    assert set(cap.mentions) <= visible and not cap.noisy
    assert cap.text.endswith(".") and 5 <= len(cap.text.split()) <= 80
    mentioned_colours = {attrs[s] for s in cap.mentions if s.endswith("_colour")}
    assert _colour_words_outside(cap.text, mentioned_colours) == []
    text = cap.text.lower()
    hidden = []
    if attrs["bag_type"] == "backpack" and view == "front":
        hidden.append("backpack")
    if attrs["accessory"] in ("glasses", "face mask") and view == "back":
        hidden.append(attrs["accessory"])
    if attrs["upper_pattern"] == "logo" and view != "front":
        hidden.append("logo")
    if shoes_hidden:
        hidden.append("shoes")
        assert "shoe_type" not in visible
    for item in hidden:
        assert not any(re.search(rf"\b{w}\b", text) for w in INVISIBLE_WORDS[item]), (item, cap.text)


def test_visibility_rules() -> None:
    a = dict(sample_identity(1, np.random.default_rng(0), shade_jitter=0).attrs)
    a.update(bag_type="backpack", bag_colour="red", accessory="glasses", accessory_colour="none", upper_pattern="logo", hat_type="cap", hat_colour="blue", hair_length="short", hair_colour="black")
    front, back, side = (visible_slots(a, v) for v in ("front", "back", "side"))
    assert "bag_type" not in front and "bag_type" in back and "bag_type" in side
    assert "accessory" in front and "accessory" not in back and "accessory" in side
    assert "upper_pattern" in front and "upper_pattern" not in back
    assert "hair_length" not in front  # short hair under a cap
    assert "shoe_type" in front and "shoe_type" not in visible_slots(a, "front", shoes_hidden=True)


@settings(max_examples=150, deadline=None)
@given(seeds, views)
def test_a_caption_is_flagged_noisy_exactly_when_it_writes_a_wrong_colour(seed: int, view: str) -> None:
    """Every colour of the person is red, and every caption draws a noisy fact (noise 1):
    the flag says whether a colour other than red was written - the noisy fact may be
    written without its colour ("a backpack"), and then the caption is clean."""
    rng = np.random.default_rng(seed)
    attrs = dict(sample_identity(1, rng, shade_jitter=0.0).attrs)
    attrs.update({s: "red" for s in attrs if s.endswith("_colour") and attrs[s] != "none"})
    cap = make_caption(attrs, visible_slots(attrs, view), rng, noise=1.0)
    assert cap.noisy == bool(_colour_words_outside(cap.text, {"red"})), cap.text


def test_caption_noise_share_and_wording_variety() -> None:
    cfg = SynthConfig(size="small", caption_noise=0.2)
    preset = SynthPreset(60, 5, 5)
    plan = plan_dataset(cfg, preset)
    caps = [c for im in plan.images for c in im.captions]
    noisy = np.mean([c.noisy for c in caps])
    assert 0.12 < noisy < 0.28  # ~0.2 of captions (minus those without a colour mention)
    words = [len(c.text.split()) for c in caps]
    assert 18 <= np.mean(words) <= 32  # comparable to CUHK-PEDES (~23)
    # two captions of one image are different texts, often sharing little
    pairs = [(im.captions[0].text, im.captions[1].text) for im in plan.images]
    assert sum(a != b for a, b in pairs) == len(pairs)
    # the opener "A young {subject}" never doubles a subject that already says "young"
    texts = [c.text for c in caps]
    assert not any("young young" in t.lower() for t in texts)
    assert any(t.startswith("A young man") or t.startswith("A young woman") for t in texts)
    jaccard = [len(set(a.split()) & set(b.split())) / len(set(a.split()) | set(b.split())) for a, b in pairs]
    assert np.mean(jaccard) < 0.5
    # silent (noise-free) captions never carry a colour word that no mentioned item has
    clean = SynthConfig(caption_noise=0.0)
    for im in plan_dataset(clean, preset).images[:100]:
        for c in im.captions:
            assert _colour_words_outside(c.text, {im.identity.attrs[s] for s in c.mentions if s.endswith("_colour")}) == []


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000))
def test_plan_is_deterministic_with_disjoint_unique_identities(seed: int) -> None:
    cfg = SynthConfig(size="tiny", seed=seed)
    p1, p2 = plan_dataset(cfg, MICRO), plan_dataset(cfg, MICRO)
    assert [(im.file_path, im.scene, [c.text for c in im.captions]) for im in p1.images] == [
        (im.file_path, im.scene, [c.text for c in im.captions]) for im in p2.images
    ]
    ids = {s: {i.person_id for i in p1.identities[s]} for s in ("train", "val", "test")}
    assert [len(v) for v in ids.values()] == [4, 2, 3]
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    keys = [i.key() for s in p1.identities.values() for i in s]
    assert len(set(keys)) == len(keys)
    assert all(2 <= i.num_images <= 6 for s in p1.identities.values() for i in s)
    assert all(len(im.captions) == 2 and set(c.mentions) <= im.visible for im in p1.images for c in im.captions)
    assert all(im.split == next(s for s, v in ids.items() if im.identity.person_id in v) for im in p1.images)
    assert plan_dataset(SynthConfig(size="tiny", seed=seed + 1), MICRO).images[0].captions != p1.images[0].captions


def test_preset_statistics_are_pinned() -> None:
    """The exact counts of the tiny preset (a change here needs a GENERATOR_VERSION bump)."""
    plan = plan_dataset(SynthConfig(size="tiny"))
    counts = gen._counts(plan)
    assert counts == {
        "train": {"ids": 40, "images": 146, "captions": 292},
        "val": {"ids": 10, "images": 39, "captions": 78},
        "test": {"ids": 20, "images": 63, "captions": 126},
    }
    fams = [i for i in plan.identities["test"] if i.parent is not None]
    assert 0.1 <= len(fams) / 20 <= 0.5  # near-duplicates present in the test gallery
    assert PRESETS["cuhk"].train_ids == 11003


def _scene(view: str, **kw) -> Scene:
    base = dict(view=view, mirror=1, scale=0.9, top=0.05, centre=0.5, stride=0.0, swing=0.0, occlusion="none", occlusion_top=1.0,
                occlusion_colour=(0, 0, 0), brightness=1.0, cast=(1.0, 1.0, 1.0), gradient=0.0, blur=0.0, noise=0.0, background=3)  # fmt: skip
    base.update(kw)
    return Scene(**base)


def _person(**attrs) -> Identity:
    a = dict(gender="man", upper_type="t-shirt", upper_colour="red", upper_pattern="plain", lower_type="trousers", lower_colour="blue",
             shoe_type="sneakers", shoe_colour="black", hair_length="short", hair_colour="black", hat_type="none", hat_colour="none",
             bag_type="none", bag_colour="none", accessory="none", accessory_colour="none")  # fmt: skip
    a.update(attrs)
    shades = {"upper_colour": (200, 30, 40), "lower_colour": (40, 90, 200), "shoe_colour": (20, 20, 20), "hair_colour": (20, 20, 20)}
    if a["bag_type"] != "none":
        shades["bag_colour"] = (30, 200, 60)
    return Identity(1, a, shades, (220, 180, 140), family=1)


def _pixel(img, x: float, y: float, scene: Scene) -> tuple[int, int, int]:
    w, h = img.size
    return img.getpixel((int(scene.centre * w + x * scene.scale * h), int(scene.top * h + y * scene.scale * h)))


def test_render_is_deterministic_and_shows_attribute_colours() -> None:
    ident, scene = _person(), _scene("front")
    img = render_image(ident, scene, clutter=0)
    assert img.size == (64, 128) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), np.asarray(render_image(ident, scene, clutter=0)))
    assert np.abs(np.subtract(_pixel(img, 0, 0.33, scene), (200, 30, 40))).max() <= 3  # chest = upper colour
    assert np.abs(np.subtract(_pixel(img, -0.05, 0.75, scene), (40, 90, 200))).max() <= 3  # thigh = lower colour
    # a backpack covers the back, and is not drawn in a front view
    bag = _person(bag_type="backpack", bag_colour="green")
    assert np.abs(np.subtract(_pixel(render_image(bag, _scene("back"), clutter=0), 0, 0.25, scene), (30, 200, 60))).max() <= 3
    assert np.abs(np.subtract(_pixel(render_image(bag, scene, clutter=0), 0, 0.25, scene), (200, 30, 40))).max() <= 3
    # lighting scales pixels; blur and noise change them but keep the size
    dark = render_image(ident, _scene("front", brightness=0.5), clutter=0)
    assert np.abs(np.subtract(_pixel(dark, 0, 0.33, scene), (100, 15, 20))).max() <= 3
    noisy = render_image(ident, _scene("front", noise=8.0, blur=0.8))
    assert noisy.size == (64, 128) and not np.array_equal(np.asarray(noisy), np.asarray(img))


def test_generate_writes_cuhk_format_deterministically(tmp_path: Path) -> None:
    cfg = SynthConfig(size="tiny", seed=5)
    a = generate_synth(cfg, tmp_path / "a", preset=MICRO)
    b = generate_synth(cfg, tmp_path / "b", preset=MICRO, workers=2)
    assert (a / "reid_raw.json").read_bytes() == (b / "reid_raw.json").read_bytes()
    files = sorted(p.relative_to(a) for p in (a / "imgs").rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in (b / "imgs").rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    raw = json.loads((a / "reid_raw.json").read_text())
    assert set(raw[0]) == {"split", "captions", "file_path", "processed_tokens", "id"}
    splits = read_cuhk_pedes(a)
    assert len(splits.train) == 2 * sum(1 for r in raw if r["split"] == "train")
    assert len(raw) == len(files) and {r["file_path"] for r in raw} == {str(f.relative_to("imgs")) for f in files}
    assert {p.person_id for p in splits.train} == {1, 2, 3, 4} and set(splits.test.image_person_ids) == {7, 8, 9}
    report = check_dataset(a, "cuhk-pedes", workers=2)
    assert report.image_sizes == {(64, 128): len(files)} and report.shared_ids == 0
    meta = json.loads((a / gen.META_FILE).read_text())
    assert meta["generator_version"] == gen.GENERATOR_VERSION and meta["config"]["seed"] == 5
    attrs = json.loads((a / gen.ATTRIBUTES_FILE).read_text())
    assert len(attrs["identities"]) == 9 and len(attrs["images"]) == len(files)
    jpg = generate_synth(SynthConfig(size="tiny", image_format="jpg", image_height=96, image_width=48), tmp_path / "j", preset=MICRO)
    assert read_cuhk_pedes(jpg).train[0].image_path.suffix == ".jpg"
    assert check_dataset(jpg, "cuhk-pedes").image_sizes.keys() == {(48, 96)}


def test_generation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = gen._write_image

    def failing(job):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        real(job)

    monkeypatch.setattr(gen, "_write_image", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synth(SynthConfig(size="tiny"), tmp_path / "out", preset=MICRO, workers=1)  # in this process
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary directory


def test_concurrent_identical_generation_keeps_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = gen._write_files
    out = tmp_path / "out"

    def racing(plan, tmp, workers, progress):
        real(plan, tmp, workers, progress)
        shutil.copytree(tmp, out)  # another process finished the same dataset first

    monkeypatch.setattr(gen, "_write_files", racing)
    monkeypatch.setitem(PRESETS, "tiny", MICRO)
    assert generate_synth(SynthConfig(size="tiny"), out) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ensure_synth_caches_and_refuses_foreign_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PRESETS, "tiny", MICRO)
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    cfg = SynthConfig(size="tiny")
    root = ensure_synth(cfg)
    assert root == tmp_path / "cache" / "synth-pedes" / f"tiny-seed0-v{gen.GENERATOR_VERSION}"
    stamp = (root / "reid_raw.json").stat().st_mtime_ns
    monkeypatch.setattr(gen, "generate_synth", lambda *a, **k: pytest.fail("regenerated"))
    assert ensure_synth(cfg) == root and (root / "reid_raw.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError) as caught:
        ensure_synth(SynthConfig(size="tiny", seed=1), root)
    assert str(caught.value) == (f"{root} holds a synth-pedes dataset generated with other settings: seed 0 there, 1 "
                                 "asked (to reuse it, ask for the folder's settings; else delete that directory or "
                                 "choose another location (data.root))")
    meta = json.loads((root / gen.META_FILE).read_text())
    (root / gen.META_FILE).write_text(json.dumps({**meta, "generator_version": 1}))  # an older generator's
    with pytest.raises(DataError) as caught:
        ensure_synth(cfg, root)
    assert str(caught.value) == (f"{root} holds a synth-pedes dataset written by generator version 1 (this wsreid "
                                 f"generates version {gen.GENERATOR_VERSION}) (delete that directory or choose another "
                                 "location (data.root))")  # no setting asks for another generator
    config = meta["config"]
    for edited, says in (({**config, "bogus": 1}, "bogus 1 there, not a setting here"),
                         ({k: v for k, v in config.items() if k != "clutter"}, "clutter not recorded there, 6 asked"),
                         ({**config, "clutter": -1}, "clutter -1 there, 6 asked")):
        (root / gen.META_FILE).write_text(json.dumps({**meta, "config": edited}))
        with pytest.raises(DataError) as caught:  # nothing a recipe can ask for reuses these: no such advice
            ensure_synth(cfg, root)
        assert str(caught.value) == (f"{root} holds a synth-pedes dataset generated with other settings: {says} "
                                     "(delete that directory or choose another location (data.root))")
    (root / gen.META_FILE).write_text(json.dumps({**meta, "config": {**config, "train_ids": 6}}))
    with pytest.raises(DataError) as caught:  # values as a recipe writes them: null, not None
        ensure_synth(cfg, root)
    assert str(caught.value).startswith(f"{root} holds a synth-pedes dataset generated with other settings: "
                                        "train_ids 6 there, null asked (to reuse it, ask for the folder's settings;")
    (root / gen.META_FILE).write_text(json.dumps(meta))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    with pytest.raises(DataError, match="not a synth-pedes dataset"):
        ensure_synth(cfg, foreign)
    assert SynthConfig(size="tiny", caption_noise=0.1).cache_name().startswith(f"tiny-seed0-v{gen.GENERATOR_VERSION}-")
    assert SynthConfig(size="tiny", caption_noise=0.1).cache_name() != SynthConfig(size="tiny", caption_noise=0.2).cache_name()
    with pytest.raises(ValueError) as caught:  # pydantic's ValidationError, for the two fields together
        SynthConfig(min_mentions=5, max_mentions=3)
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        ((), "Value error, max_mentions must be at least min_mentions")]


def test_training_set_of_more_people_with_fewer_images_each(tmp_path: Path) -> None:
    """train_ids and train_images_per_id reshape only the training split: 1,000 people with
    mostly 2 images instead of 600 with 3.55 on average (about the same number of images);
    val and test keep their identity counts and the preset's image distribution. Left
    unset they are absent from the metadata, so datasets made before they existed match."""
    default = SynthConfig()
    wide = SynthConfig(train_ids=1000, train_images_per_id=[0.85, 0.15])
    assert "train_ids" not in default.generator_config() and default.cache_name() == f"small-seed0-v{gen.GENERATOR_VERSION}"
    assert wide.cache_name().startswith(default.cache_name() + "-") and wide.cache_name() != SynthConfig(train_ids=1000).cache_name()
    plan, base = gen._counts(plan_dataset(wide)), gen._counts(plan_dataset(default))
    assert plan["train"]["ids"] == 1000 and base["train"]["ids"] == 600
    assert 2000 <= plan["train"]["images"] <= 2300 and abs(plan["train"]["images"] - base["train"]["images"]) < 100
    per_id = [i.num_images for i in plan_dataset(wide).identities["train"]]
    assert set(per_id) == {2, 3} and 0.8 < per_id.count(2) / len(per_id) < 0.9
    for split in ("val", "test"):
        assert plan[split]["ids"] == base[split]["ids"]
        assert 3.0 < plan[split]["images"] / plan[split]["ids"] < 4.1  # the preset's mean 3.55
    tiny = SynthConfig(size="tiny", train_ids=6, train_images_per_id=[1.0])
    root = generate_synth(tiny, tmp_path / "d", preset=SynthPreset(6, 2, 2))
    meta = json.loads((root / gen.META_FILE).read_text())
    assert meta["config"]["train_images_per_id"] == [1.0] and meta["counts"]["train"] == {"ids": 6, "images": 12, "captions": 24}
    for bad in ([0.5, 0.4], [1.2, -0.2]):
        with pytest.raises(ValueError, match="summing to 1"):
            SynthConfig(train_images_per_id=bad)


def test_web_style_is_another_domain_of_the_same_people() -> None:
    """style=web: same identities and scenes as pedes for a seed (only the caption writer
    and the renderer change), deterministic, alt-text captions with another vocabulary that
    mention only visible items, and a plain backdrop instead of the street; the default
    configuration (and so its cache name) is unchanged."""
    from wsreid.data.synth.web_captions import lexicon_captions

    assert SynthConfig().cache_name() == f"small-seed0-v{gen.GENERATOR_VERSION}"
    assert SynthConfig(style="web").cache_name() != SynthConfig().cache_name()
    pedes, web = plan_dataset(SynthConfig(seed=3), SynthPreset(30, 2, 2)), plan_dataset(SynthConfig(seed=3, style="web"), SynthPreset(30, 2, 2))
    assert [(im.identity.key(), im.scene) for im in pedes.images] == [(im.identity.key(), im.scene) for im in web.images]
    again = plan_dataset(SynthConfig(seed=3, style="web"), SynthPreset(30, 2, 2))
    assert [c.text for im in again.images for c in im.captions] == [c.text for im in web.images for c in im.captions]
    assert all(set(c.mentions) <= im.visible for im in web.images for c in im.captions)
    words = lambda plan: {w for im in plan.images for c in im.captions for w in re.findall(r"[a-z]+", c.text.lower())}  # noqa: E731
    shared = words(pedes) & words(web)
    assert {"black", "jeans"} & shared and len(shared) < 0.4 * len(words(web))  # another vocabulary, partly shared
    assert not any(c.text.endswith(".") for im in web.images for c in im.captions)  # no sentences
    ident, scene = _person(), _scene("front")
    street, studio = render_image(ident, scene, clutter=6), render_image(ident, scene, clutter=6, style="web")
    assert np.array_equal(np.asarray(studio), np.asarray(render_image(ident, scene, clutter=6, style="web")))
    corner = lambda im: np.asarray(im)[:20, :6].astype(float)  # noqa: E731 - background only
    assert corner(studio).mean() > 120 and not np.array_equal(corner(street), corner(studio))
    lexicon = {w for t in lexicon_captions() for w in re.findall(r"[a-z]+", t.lower())}
    assert words(pedes) | words(web) <= lexicon


def test_partial_folders_of_killed_generations_are_removed(tmp_path: Path) -> None:
    """A generation killed with SIGKILL (no cleanup runs) left its hidden partial folder
    forever; the next generation into the same folder removes it - only its own machine's,
    and only when the process that wrote it no longer runs."""
    import os
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive, host = int(ended.stdout), os.getppid(), gen._host()
    out = tmp_path / "out"
    left = {name: tmp_path / name for name in (f".out.partial-{host}-{dead}-0a1b2c3d",  # killed: removed
                                               f".out.partial-{host}-{alive}-0a1b2c3d",  # still writing: kept
                                               f".out.partial-otherhost-{dead}-0a1b2c3d",  # another machine's: kept
                                               f".other.partial-{host}-{dead}-0a1b2c3d")}  # another dataset's: kept
    for folder in left.values():
        (folder / "imgs").mkdir(parents=True)
    generate_synth(SynthConfig(size="tiny"), out, preset=MICRO, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", *list(left)[1:]])


def test_the_library_takes_settings_as_a_mapping_and_says_what_is_wrong_in_one_line(tmp_path, monkeypatch):
    """From Python, SynthConfig(size='huge') was pydantic's multi-line error, a mapping an
    AttributeError ('dict' object has no attribute 'preset'); the one-line error and the
    settings' parsing lived in the command line only."""
    from wsreid.data.synth import synth_config, synth_records

    monkeypatch.setitem(PRESETS, "tiny", SynthPreset(4, 2, 3))
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    path, records = synth_records({"size": "tiny", "seed": 3}, tmp_path / "out")
    assert path == tmp_path / "out" / "reid_raw.json" and len(records) > 0
    assert synth_config({"size": "tiny", "seed": 3}) == SynthConfig(size="tiny", seed=3)
    for settings, says in (({"size": "huge"}, "synth-pedes setting size: input should be 'tiny', 'small', 'medium' "
                                               "or 'cuhk' (got 'huge')"),
                           ({"caption_noise": "abc"}, "synth-pedes setting caption_noise: input should be a valid "
                                                      "number, unable to parse string as a number (got 'abc')"),
                           ({"caption_noize": 0.1}, "synth-pedes setting 'caption_noize' is unknown (settings are: "
                                                    "size, seed, "),
                           ({"min_mentions": 5, "max_mentions": 4}, "synth-pedes settings: max_mentions must be at "
                                                                    "least min_mentions")):
        with pytest.raises(DataError) as caught:
            synth_records(settings, tmp_path / "other")
        assert str(caught.value).startswith(says), str(caught.value)
    with pytest.raises(TypeError, match=r"^synth-pedes settings are a SynthConfig or a mapping of settings"):
        synth_records("tiny", tmp_path / "other")
    assert not (tmp_path / "other").exists()
