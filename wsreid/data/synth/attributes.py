"""Identities of synth-pedes: combinations of visible attributes.

An identity assigns a value to every slot of :data:`SLOTS`; slots are grouped into the
attribute families of :data:`FAMILIES` (gender, upper garment, lower garment, shoes, hair,
hat, bag, accessory). Colour slots also get a per-identity shade (RGB), so that two
identities with the same colour word differ slightly in pixels. Near-duplicates (hard
negatives) are made by changing one or two slots of an existing identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "COLOURS",
    "SLOTS",
    "FAMILIES",
    "COLOUR_SLOTS",
    "Identity",
    "choices",
    "sample_identity",
    "mutate_identity",
    "visible_slots",
]

#: colour name -> base RGB
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 32),
    "white": (236, 236, 230),
    "grey": (128, 128, 128),
    "red": (196, 34, 38),
    "blue": (44, 92, 206),
    "navy": (30, 40, 96),
    "green": (44, 140, 66),
    "yellow": (232, 204, 44),
    "orange": (234, 122, 30),
    "pink": (236, 138, 176),
    "purple": (118, 52, 150),
    "brown": (112, 72, 40),
    "beige": (204, 184, 136),
}
#: hair colours are drawn from their own palette
HAIR_RGB: dict[str, tuple[int, int, int]] = {
    "black": (22, 20, 20),
    "brown": (96, 60, 30),
    "blonde": (218, 188, 112),
    "grey": (168, 168, 162),
    "red": (150, 56, 26),
}
SKIN_TONES: tuple[tuple[int, int, int], ...] = ((242, 206, 178), (224, 180, 140), (196, 146, 104), (150, 102, 68), (104, 70, 48))

SLOTS: tuple[str, ...] = (
    "gender",
    "upper_type", "upper_colour", "upper_pattern",
    "lower_type", "lower_colour",
    "shoe_type", "shoe_colour",
    "hair_length", "hair_colour",
    "hat_type", "hat_colour",
    "bag_type", "bag_colour",
    "accessory", "accessory_colour",
)  # fmt: skip
FAMILIES: dict[str, tuple[str, ...]] = {
    "gender": ("gender",),
    "upper garment": ("upper_type", "upper_colour", "upper_pattern"),
    "lower garment": ("lower_type", "lower_colour"),
    "shoes": ("shoe_type", "shoe_colour"),
    "hair": ("hair_length", "hair_colour"),
    "hat": ("hat_type", "hat_colour"),
    "bag": ("bag_type", "bag_colour"),
    "accessory": ("accessory", "accessory_colour"),
}
COLOUR_SLOTS = ("upper_colour", "lower_colour", "shoe_colour", "hair_colour", "hat_colour", "bag_colour", "accessory_colour")

_ALL = tuple(COLOURS)
_UPPER_COLOURS = _ALL
_LOWER_COLOURS = ("black", "navy", "blue", "grey", "beige", "brown", "white", "red", "green", "pink")
_SHOE_COLOURS = ("black", "white", "brown", "grey", "red", "blue")
_HAT_COLOURS = ("black", "white", "red", "blue", "grey", "beige", "yellow", "green")
_BAG_COLOURS = ("black", "brown", "red", "blue", "grey", "white", "pink", "green", "yellow")
_SKIRTS = ("skirt", "long skirt")


def choices(slot: str, attrs: dict[str, str]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Allowed values of ``slot`` and their sampling weights, given the other slots of
    ``attrs`` (slots not yet set impose no constraint)."""
    g = attrs.get("gender")
    if slot == "gender":
        return ("man", "woman"), (1, 1)
    if slot == "upper_type":
        values = ("t-shirt", "shirt", "jacket", "coat", "tank top", "hoodie")
        weights = [25, 20, 17, 13, 10, 15]
        if attrs.get("lower_type") in ("shorts", "skirt"):  # a long coat would hide them
            weights[3] = 0
        return values, tuple(weights)
    if slot == "upper_colour":
        return _UPPER_COLOURS, (1,) * len(_UPPER_COLOURS)
    if slot == "upper_pattern":
        return ("plain", "striped", "checked", "dotted", "logo"), (45, 17, 13, 10, 15)
    if slot == "lower_type":
        values = ("trousers", "jeans", "shorts", "skirt", "long skirt")
        weights = [45, 40, 15, 0, 0] if g == "man" else [25, 30, 10, 20, 15]
        if attrs.get("upper_type") == "coat":
            weights[2] = weights[3] = 0
        return values, tuple(weights)
    if slot == "lower_colour":
        return _LOWER_COLOURS, (1,) * len(_LOWER_COLOURS)
    if slot == "shoe_type":
        return ("sneakers", "boots", "shoes"), (50, 20, 30)
    if slot == "shoe_colour":
        return _SHOE_COLOURS, (1,) * len(_SHOE_COLOURS)
    if slot == "hair_length":
        values = ("short", "long", "ponytail", "bald")
        return values, ((70, 10, 8, 12) if g == "man" else (25, 50, 25, 0))
    if slot == "hair_colour":
        if attrs.get("hair_length") == "bald":
            return ("none",), (1,)
        return tuple(HAIR_RGB), (40, 30, 15, 8, 7)
    if slot == "hat_type":
        return ("none", "cap", "beanie", "sun hat"), (60, 15, 13, 12)
    if slot == "hat_colour":
        return (("none",), (1,)) if attrs.get("hat_type") == "none" else (_HAT_COLOURS, (1,) * len(_HAT_COLOURS))
    if slot == "bag_type":
        return ("none", "backpack", "handbag", "shoulder bag", "suitcase"), (35, 25, 15, 15, 10)
    if slot == "bag_colour":
        return (("none",), (1,)) if attrs.get("bag_type") == "none" else (_BAG_COLOURS, (1,) * len(_BAG_COLOURS))
    if slot == "accessory":
        return ("none", "glasses", "face mask", "scarf", "headphones"), (45, 20, 12, 13, 10)
    if slot == "accessory_colour":
        acc = attrs.get("accessory")
        if acc in (None, "none", "glasses"):
            return ("none",), (1,)
        if acc == "face mask":
            return ("white", "black", "blue"), (3, 2, 2)
        if acc == "headphones":
            return ("black", "white", "red", "blue"), (3, 2, 1, 1)
        return _ALL, (1,) * len(_ALL)
    raise KeyError(slot)


def _dependents(slot: str) -> tuple[str, ...]:
    return {"hair_length": ("hair_colour",), "hat_type": ("hat_colour",), "bag_type": ("bag_colour",), "accessory": ("accessory_colour",)}.get(slot, ())


@dataclass
class Identity:
    """One person. ``attrs`` maps every slot of :data:`SLOTS` to a value ("none" where a
    slot does not apply); ``shades`` maps colour slots to the identity's RGB; ``family``
    is the person id of the original this identity was derived from (itself if none)."""

    person_id: int
    attrs: dict[str, str]
    shades: dict[str, tuple[int, int, int]]
    skin: tuple[int, int, int]
    family: int
    num_images: int = 0
    parent: int | None = None  # the identity this one was derived from (None for originals)
    changed: tuple[str, ...] = field(default_factory=tuple)  # slots changed w.r.t. the parent

    def key(self) -> tuple[str, ...]:
        """The attribute combination; unique within a generated dataset."""
        return tuple(self.attrs[s] for s in SLOTS)


def _pick(rng: np.random.Generator, values: tuple[str, ...], weights: tuple[float, ...]) -> str:
    u = rng.random() * sum(weights)
    for value, w in zip(values, weights):
        u -= w
        if u < 0 and w > 0:
            return value
    return next(v for v, w in zip(reversed(values), reversed(weights)) if w > 0)


def _shade(colour_slot: str, name: str, rng: np.random.Generator, jitter: float) -> tuple[int, int, int]:
    base = np.asarray(HAIR_RGB[name] if colour_slot == "hair_colour" else COLOURS[name], dtype=float)
    rgb = base * (1 + rng.uniform(-jitter, jitter)) + rng.uniform(-jitter * 80, jitter * 80, size=3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))  # type: ignore[return-value]


def _shades(attrs: dict[str, str], rng: np.random.Generator, jitter: float, keep: dict | None = None) -> dict:
    out = {}
    for slot in COLOUR_SLOTS:
        name = attrs[slot]
        if name == "none":
            continue
        out[slot] = keep[slot] if keep and slot in keep else _shade(slot, name, rng, jitter)
    return out


def sample_identity(person_id: int, rng: np.random.Generator, *, shade_jitter: float) -> Identity:
    """A fresh identity: every slot drawn from :func:`choices` in :data:`SLOTS` order."""
    attrs: dict[str, str] = {}
    for slot in SLOTS:
        attrs[slot] = _pick(rng, *choices(slot, attrs))
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    return Identity(person_id, attrs, _shades(attrs, rng, shade_jitter), skin, family=person_id)


_MUTABLE = tuple(s for s in SLOTS if s != "gender")


def mutate_identity(original: Identity, person_id: int, rng: np.random.Generator, *, changes: int, shade_jitter: float) -> Identity:
    """A near-duplicate of ``original``: ``changes`` slots (not gender) take another allowed
    value; unchanged colour slots keep the original's shade. Slots that depend on a changed
    type slot (e.g. the colour of a newly added bag) are resampled with it."""
    attrs = dict(original.attrs)
    changed: list[str] = []
    order = list(rng.permutation(len(_MUTABLE)))
    for k in order:
        if len(changed) >= changes:
            break
        slot = _MUTABLE[k]
        if slot in changed:
            continue
        values, weights = choices(slot, attrs)
        options = [(v, w) for v, w in zip(values, weights) if v != attrs[slot] and w > 0]
        if not options:
            continue
        attrs[slot] = _pick(rng, tuple(v for v, _ in options), tuple(w for _, w in options))
        changed.append(slot)
        for dep in _dependents(slot):
            dep_values, dep_weights = choices(dep, attrs)
            if attrs[dep] not in dep_values:
                attrs[dep] = _pick(rng, dep_values, dep_weights)
                changed.append(dep)
    keep = {s: v for s, v in original.shades.items() if s not in changed}
    return Identity(
        person_id, attrs, _shades(attrs, rng, shade_jitter, keep), original.skin, original.family,
        parent=original.person_id, changed=tuple(changed),
    )  # fmt: skip


def visible_slots(attrs: dict[str, str], view: str, *, shoes_hidden: bool = False) -> frozenset[str]:
    """Slots whose value can be seen in an image of a person with ``attrs`` from ``view``
    ("front", "back" or "side"). Slots holding "none" are never visible (there is nothing
    to describe). Rules: a logo is printed on the front; a backpack is seen from the back
    or side; glasses and face masks from the front or side; short hair or baldness is
    hidden under a hat; shoes are hidden by a low occluder."""
    visible = {"gender", "upper_type", "upper_colour", "lower_type", "lower_colour"}
    pattern = attrs["upper_pattern"]
    if pattern != "plain" and (pattern != "logo" or view == "front"):
        visible.add("upper_pattern")
    if not shoes_hidden:
        visible |= {"shoe_type", "shoe_colour"}
    if not (attrs["hat_type"] != "none" and attrs["hair_length"] in ("short", "bald")):
        visible.add("hair_length")
        if attrs["hair_colour"] != "none":
            visible.add("hair_colour")
    if attrs["hat_type"] != "none":
        visible |= {"hat_type", "hat_colour"}
    bag = attrs["bag_type"]
    if bag != "none" and (bag != "backpack" or view != "front"):
        visible |= {"bag_type", "bag_colour"}
    acc = attrs["accessory"]
    if acc != "none" and (acc not in ("glasses", "face mask") or view != "back"):
        visible.add("accessory")
        if attrs["accessory_colour"] != "none":
            visible.add("accessory_colour")
    return frozenset(visible)
