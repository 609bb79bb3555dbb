"""Captions of synth-pedes images, in the style of CUHK-PEDES annotations.

A caption describes a random subset of what is visible in its image (see
:func:`~wsreid.data.synth.attributes.visible_slots`), with synonyms, several sentence
shapes and orders, and sometimes only part of an item ("a red top", "a backpack"). With
probability ``noise`` one colour word is wrong, as in real annotations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from wsreid.data.synth.attributes import COLOURS

__all__ = ["Caption", "make_caption", "COLOUR_WORDS"]

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "black": ("black",), "white": ("white",), "grey": ("grey", "gray"), "red": ("red",),
    "blue": ("blue",), "navy": ("dark blue", "navy", "navy blue"), "green": ("green",),
    "yellow": ("yellow",), "orange": ("orange",), "pink": ("pink",), "purple": ("purple", "violet"),
    "brown": ("brown",), "beige": ("beige", "khaki", "tan"), "blonde": ("blonde", "blond", "light blonde"),
}  # fmt: skip
SUBJECTS = {"man": ("man", "male", "guy", "gentleman", "young man"), "woman": ("woman", "female", "lady", "girl", "young woman")}
NEUTRAL = ("person", "pedestrian")
PRONOUNS = {"man": ("he", "his"), "woman": ("she", "her"), None: ("they", "their")}
WORDS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "tee shirt", "short sleeved shirt", "short-sleeve top"),
    "shirt": ("long sleeved shirt", "shirt", "long-sleeve top", "button-up shirt"),
    "jacket": ("jacket", "zip-up jacket", "light jacket"),
    "coat": ("coat", "long coat", "overcoat", "knee-length coat"),
    "tank top": ("tank top", "sleeveless top", "sleeveless shirt"),
    "hoodie": ("hoodie", "hooded sweatshirt", "hooded top"),
    "trousers": ("trousers", "pants", "slacks"),
    "jeans": ("jeans", "denim jeans", "denim pants"),
    "shorts": ("shorts", "short pants"),
    "skirt": ("skirt", "short skirt", "knee-length skirt"),
    "long skirt": ("long skirt", "ankle-length skirt", "maxi skirt"),
    "sneakers": ("sneakers", "trainers", "running shoes", "sports shoes"),
    "boots": ("boots", "tall boots", "high boots"),
    "shoes": ("shoes", "leather shoes", "flat shoes", "dress shoes"),
    "short": ("short hair", "cropped hair"),
    "long": ("long hair", "long hair down past the shoulders"),
    "ponytail": ("a ponytail", "hair tied in a ponytail", "hair pulled back into a ponytail"),
    "bald": ("a bald head", "a shaved head"),
    "cap": ("cap", "baseball cap"),
    "beanie": ("beanie", "knit hat", "woolly hat with a bobble"),
    "sun hat": ("sun hat", "wide-brimmed hat", "brimmed hat"),
    "backpack": ("backpack", "rucksack", "knapsack"),
    "handbag": ("handbag", "purse", "hand bag"),
    "shoulder bag": ("shoulder bag", "messenger bag", "crossbody bag"),
    "suitcase": ("suitcase", "rolling suitcase", "trolley case"),
    "glasses": ("glasses", "a pair of glasses", "dark glasses"),
    "face mask": ("face mask", "mask", "surgical mask"),
    "scarf": ("scarf", "neck scarf"),
    "headphones": ("headphones", "a headset", "a pair of headphones"),
}  # fmt: skip
GENERIC = {"upper": ("top", "upper garment"), "lower": ("bottoms",), "shoes": ("shoes",), "hat": ("hat",), "bag": ("bag",)}
PATTERN_BEFORE = {"striped": ("striped",), "checked": ("plaid", "checkered", "checked"), "dotted": ("polka dot", "spotted")}
PATTERN_AFTER = {"striped": ("with stripes", "with horizontal stripes"), "checked": ("with a checked pattern",), "dotted": ("with dots", "covered in small dots"), "logo": ("with a logo on the front", "with a print on the chest", "with a small emblem on the chest")}
PLURAL = {"trousers", "pants", "slacks", "jeans", "shorts", "short pants", "sneakers", "trainers", "boots", "shoes", "bottoms", "headphones", "glasses", "dark glasses", "running shoes", "sports shoes", "tall boots", "high boots", "leather shoes", "flat shoes", "dress shoes", "denim jeans", "denim pants"}
WEAR = ("wearing", "dressed in", "wearing", "in")
OPENERS = ("A {s}", "The {s}", "This {s}", "A {s}", "The {s} in the picture", "A young {s}")
FILLERS = ("{P} {is} walking.", "{P} {is} walking down the street.", "{P} {seems} to be in a hurry.", "{P} {is} looking straight ahead.", "{P} {is} standing on the pavement.", "{P} {is} walking with {p} arms at {p} sides.")
# fact -> (slots it can mention, weight in subset sampling)
FACTS = {"upper": 3.0, "lower": 2.2, "shoes": 1.5, "hair": 1.6, "hat": 2.0, "bag": 2.2, "accessory": 1.6}
FACT_SLOTS = {
    "upper": ("upper_type", "upper_colour", "upper_pattern"), "lower": ("lower_type", "lower_colour"),
    "shoes": ("shoe_type", "shoe_colour"), "hair": ("hair_length", "hair_colour"), "hat": ("hat_type", "hat_colour"),
    "bag": ("bag_type", "bag_colour"), "accessory": ("accessory", "accessory_colour"),
}  # fmt: skip


@dataclass(frozen=True)
class Caption:
    """A caption, the slots it mentions, and whether a colour word was corrupted."""

    text: str
    mentions: tuple[str, ...]
    noisy: bool


def _choice(rng: random.Random, options):
    return options[rng.randrange(len(options))]


def _article(np_: str) -> str:
    head = np_.split()[-1] if np_ else np_
    if np_.startswith(("a ", "an ", "a pair")) or head in PLURAL or np_ in PLURAL:
        return np_
    return ("an " if np_[0] in "aeiou" else "a ") + np_


class _Builder:
    def __init__(self, attrs: dict[str, str], rng: random.Random, noisy_fact: str | None):
        self.attrs, self.rng, self.noisy_fact = attrs, rng, noisy_fact
        self.wrong_colour_written = False  # the noisy fact may end up written without its colour
        self.mentions: list[str] = []

    def colour(self, fact: str, slot: str) -> str:
        name = self.attrs[slot]
        if fact == self.noisy_fact:
            name = _choice(self.rng, tuple(c for c in COLOURS if c != name))
            self.wrong_colour_written = True
        self.mentions.append(slot)
        return _choice(self.rng, COLOUR_WORDS.get(name, (name,)))

    def type_word(self, slot: str) -> str:
        self.mentions.append(slot)
        return _choice(self.rng, WORDS[self.attrs[slot]])

    def phrase(self, fact: str, visible: frozenset[str]) -> str:
        """A noun phrase for ``fact``; mentions only slots in ``visible``."""
        a, rng = self.attrs, self.rng
        ctype, ccol = FACT_SLOTS[fact][0], FACT_SLOTS[fact][1]
        has_colour = ccol in visible and a[ccol] != "none"
        r = rng.random()
        if fact == "hair":
            if a["hair_length"] == "bald":
                return self.type_word("hair_length")
            if has_colour and r < 0.15:
                return f"{self.colour(fact, ccol)} hair"
            words = self.type_word("hair_length")
            if has_colour and rng.random() < 0.8:
                col = self.colour(fact, ccol)
                words = words.replace("hair", f"{col} hair", 1) if "ponytail" not in words or "hair" in words else f"a {col} ponytail"
            return words
        if fact == "accessory":
            words = self.type_word("accessory")
            if has_colour and rng.random() < 0.7 and not words.startswith("a "):
                words = f"{self.colour(fact, ccol)} {words}"
            return _article(words)
        colour_only = has_colour and fact in GENERIC and r < 0.12
        type_only = not has_colour or r > 0.9
        if colour_only:
            words = f"{self.colour(fact, ccol)} {_choice(rng, GENERIC[fact])}"
        else:
            col = "" if type_only else self.colour(fact, ccol) + " "
            words = col + self.type_word(ctype)
        if fact == "upper" and "upper_pattern" in visible and rng.random() < 0.75:
            pattern = a["upper_pattern"]
            self.mentions.append("upper_pattern")
            if pattern in PATTERN_BEFORE and rng.random() < 0.6:
                words = f"{_choice(rng, PATTERN_BEFORE[pattern])} {words}"
            else:
                words = f"{words} {_choice(rng, PATTERN_AFTER[pattern])}"
        if fact == "shoes" and rng.random() < 0.25:
            return f"a pair of {words}"
        return _article(words)


def _bag_clause(bag: str, np_: str, p: str, rng: random.Random, *, participle_only: bool) -> str:
    options = {
        "backpack": (f"carrying {np_} on {p} back", f"with {np_} on {p} back", f"carrying {np_}"),
        "handbag": (f"carrying {np_}", f"holding {np_} in {p} hand", f"with {np_} in {p} hand"),
        "shoulder bag": (f"carrying {np_} over {p} shoulder", f"with {np_} on {p} shoulder", f"carrying {np_}"),
        "suitcase": (f"pulling {np_}", f"dragging {np_} behind", f"walking with {np_}"),
    }[bag]
    if participle_only:
        options = tuple(o for o in options if not o.startswith("with "))
    return _choice(rng, options)


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def make_caption(
    attrs: dict[str, str],
    visible: frozenset[str],
    generator: np.random.Generator,
    *,
    min_mentions: int = 3,
    max_mentions: int = 6,
    noise: float = 0.0,
) -> Caption:
    """Describe a random subset (between ``min_mentions`` and ``max_mentions`` items, as
    far as visible) of the visible items of a person with ``attrs``. Draws one number from
    ``generator`` and uses it to seed the (faster) word-level random choices."""
    rng = random.Random(int(generator.integers(2**63)))
    present = [f for f in FACTS if FACT_SLOTS[f][0] in visible]
    k = max(1, min(rng.randint(min_mentions, max_mentions), len(present)))
    # weighted sampling without replacement: the k largest of u ** (1 / weight)
    keys = sorted(((rng.random() ** (1.0 / FACTS[f]), f) for f in present), reverse=True)
    chosen = [f for _, f in keys[:k]]
    if rng.random() < 0.6:  # usual order (top to bottom), otherwise as drawn
        chosen.sort(key=list(FACTS).index)
    coloured = [f for f in chosen if FACT_SLOTS[f][1] in visible and attrs[FACT_SLOTS[f][1]] != "none"]
    noisy_fact = _choice(rng, coloured) if coloured and rng.random() < noise else None
    b = _Builder(attrs, rng, noisy_fact)
    gender = attrs["gender"] if rng.random() < 0.92 else None
    if gender:
        b.mentions.append("gender")
    subject = _choice(rng, SUBJECTS[gender]) if gender else _choice(rng, NEUTRAL)
    he, his = PRONOUNS[gender]
    he_be, he_has, he_wears = ("are", "have", "wear") if gender is None else ("is", "has", "wears")

    wear = [b.phrase(f, visible) for f in chosen if f not in ("hair", "bag")]
    hair = b.phrase("hair", visible) if "hair" in chosen else None
    bag_np = b.phrase("bag", visible) if "bag" in chosen else None

    sentences: list[str] = []
    opener = _choice(rng, OPENERS).format(s=subject).replace("young young", "young")
    shape = rng.randrange(3)
    first = opener
    if shape == 0 and hair:  # "A woman with long hair is wearing X and Y."
        first, hair = f"{opener} with {hair}", None
    rest: list[str] = []
    if wear:
        n = rng.randint(1, len(wear)) if shape == 2 else len(wear)
        verb = _choice(rng, WEAR)
        first += f" {verb} " if shape == 1 and verb == "in" else f" is {verb} "
        first += _join(wear[:n])
        rest = wear[n:]
    else:
        first += " is walking"
    if bag_np and rng.random() < 0.5:
        first += ", " + _bag_clause(attrs["bag_type"], bag_np, his, rng, participle_only=False)
        bag_np = None
    sentences.append(first + ".")
    he_cap = he.capitalize()
    if rest:
        sentences.append(f"{he_cap} also {he_wears} {_join(rest)}.")
    if hair:
        colour_only = hair.endswith(" hair") and len(hair.split()) == 2 and hair.split()[0] not in ("short", "long", "cropped")
        if colour_only and rng.random() < 0.5:
            sentences.append(f"{his.capitalize()} hair is {hair.split()[0]}.")
        else:
            sentences.append(f"{he_cap} {he_has} {hair}.")
    if bag_np:
        sentences.append(f"{he_cap} {he_be} " + _bag_clause(attrs["bag_type"], bag_np, his, rng, participle_only=True) + ".")
    if rng.random() < 0.35:
        seems = "seem" if gender is None else "seems"
        sentences.append(_choice(rng, FILLERS).format(P=he_cap, p=his, seems=seems, **{"is": he_be}))
    if len(sentences) > 2 and rng.random() < 0.3:
        head, tail = sentences[0], sentences[1:]
        rng.shuffle(tail)
        sentences = [head] + tail
    text = " ".join(sentences)
    return Caption(text, tuple(dict.fromkeys(b.mentions)), b.wrong_colour_written)
