"""Captions of the ``web`` style of synth-pedes: short alt-text-like descriptions.

The ``pedes`` style (:mod:`wsreid.data.synth.captions`) writes CUHK-PEDES-like sentences
("A woman is wearing a red jacket and black trousers. She has long hair."). The ``web``
style describes the same attributes the way image alt-text does - noun-phrase lists and
photo tags, no full sentences, another vocabulary ("woman in crimson windbreaker and
black joggers, long locks, street style photo"). Some words are shared by both styles
(the basic colour names, "jeans", "backpack", "hoodie", ...), most are not, so an encoder
pretrained on ``web`` captions knows part of the ``pedes`` vocabulary and none of its
grammar: the domain shift between web alt-text and pedestrian captions, at synth scale.
"""

from __future__ import annotations

import random

import numpy as np

from wsreid.data.synth.attributes import COLOURS
from wsreid.data.synth.captions import FACT_SLOTS, FACTS, Caption

__all__ = ["make_web_caption", "WEB_COLOUR_WORDS", "WEB_WORDS"]

WEB_COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "black": ("black", "jet black", "ebony"), "white": ("white", "ivory", "cream"),
    "grey": ("charcoal", "grey", "slate"), "red": ("red", "crimson", "scarlet"),
    "blue": ("blue", "cobalt", "royal blue"), "navy": ("navy", "midnight blue", "indigo"),
    "green": ("olive", "green", "emerald"), "yellow": ("mustard", "yellow", "lemon"),
    "orange": ("orange", "rust", "tangerine"), "pink": ("pink", "blush", "fuchsia"),
    "purple": ("plum", "lavender", "purple"), "brown": ("brown", "chocolate", "camel"),
    "beige": ("beige", "sand", "oatmeal"), "blonde": ("blonde", "golden", "platinum"),
}  # fmt: skip
WEB_WORDS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("tee", "graphic tee", "crew neck tee"), "shirt": ("button-down", "dress shirt", "oxford shirt"),
    "jacket": ("windbreaker", "bomber jacket", "jacket"), "coat": ("trench coat", "parka", "duffle coat"),
    "tank top": ("tank", "vest top", "camisole"), "hoodie": ("hoodie", "pullover", "sweatshirt"),
    "trousers": ("chinos", "joggers", "slim fit trousers"), "jeans": ("jeans", "skinny jeans", "denim"),
    "shorts": ("bermudas", "cargo shorts", "shorts"), "skirt": ("mini skirt", "pleated skirt", "a-line skirt"),
    "long skirt": ("maxi", "flowing skirt", "midi skirt"), "sneakers": ("kicks", "sneakers", "high-tops"),
    "boots": ("ankle boots", "combat boots", "chelsea boots"), "shoes": ("loafers", "oxfords", "flats"),
    "short": ("buzz cut", "pixie cut", "crew cut"), "long": ("long locks", "flowing hair", "long mane"),
    "ponytail": ("ponytail", "pony tail", "tied-back hair"), "bald": ("shaved head", "bald head", "buzzed scalp"),
    "cap": ("snapback", "ball cap", "trucker cap"), "beanie": ("beanie", "toque", "knitted cap"),
    "sun hat": ("straw hat", "bucket hat", "panama hat"), "backpack": ("backpack", "daypack", "bookbag"),
    "handbag": ("tote", "clutch", "handbag"), "shoulder bag": ("satchel", "sling bag", "cross-body satchel"),
    "suitcase": ("luggage", "carry-on", "roller bag"), "glasses": ("sunglasses", "shades", "specs"),
    "face mask": ("face covering", "mask", "cloth mask"), "scarf": ("bandana", "scarf", "muffler"),
    "headphones": ("earphones", "headphones", "cans"),
}  # fmt: skip
WEB_SUBJECTS = {"man": ("man", "guy", "male model", "dude"), "woman": ("woman", "girl", "female model", "gal")}
WEB_NEUTRAL = ("model", "adult", "commuter")
WEB_PATTERNS = {"striped": ("pinstripe", "striped"), "checked": ("tartan", "gingham"), "dotted": ("polka-dot", "dotty"), "logo": ("graphic", "logo print")}
WEB_TAGS = ("street style", "stock photo", "outfit idea", "urban fashion", "candid shot", "full body shot", "lookbook")
WEB_SHAPES = (
    "{subject} in {items}", "photo of a {subject} wearing {items}", "{subject} wearing {items}, {tag}",
    "{tag}: {subject}, {items}", "{items} - {subject} outfit", "{subject} with {items}", "{subject} {tag}, {items}",
)  # fmt: skip


def _pick(rng: random.Random, options):
    return options[rng.randrange(len(options))]


def _item(attrs: dict[str, str], fact: str, visible: frozenset[str], rng: random.Random, noisy_fact: str | None, mentions: list[str]) -> str:
    ctype, ccol = FACT_SLOTS[fact][0], FACT_SLOTS[fact][1]
    colour = ""
    if ccol in visible and attrs[ccol] != "none" and rng.random() < 0.85:
        name = attrs[ccol]
        if fact == noisy_fact:
            name = _pick(rng, tuple(c for c in COLOURS if c != name))
        mentions.append(ccol)
        colour = _pick(rng, WEB_COLOUR_WORDS.get(name, (name,))) + " "
    mentions.append(ctype)
    if fact == "hair" and attrs["hair_length"] == "bald":
        return _pick(rng, WEB_WORDS["bald"])
    word = _pick(rng, WEB_WORDS[attrs[ctype]])
    if fact == "upper" and "upper_pattern" in visible and rng.random() < 0.6:
        mentions.append("upper_pattern")
        word = f"{_pick(rng, WEB_PATTERNS[attrs['upper_pattern']])} {word}"
    return colour + word


def make_web_caption(
    attrs: dict[str, str],
    visible: frozenset[str],
    generator: np.random.Generator,
    *,
    min_mentions: int = 3,
    max_mentions: int = 6,
    noise: float = 0.0,
) -> Caption:
    """Describe a random subset of the visible items of a person in the ``web`` style (a
    noun-phrase list with a photo tag). Same contract as :func:`~wsreid.data.synth.captions.make_caption`:
    draws one number from ``generator``."""
    rng = random.Random(int(generator.integers(2**63)))
    present = [f for f in FACTS if FACT_SLOTS[f][0] in visible]
    k = max(1, min(rng.randint(min_mentions, max_mentions), len(present)))
    keys = sorted(((rng.random() ** (1.0 / FACTS[f]), f) for f in present), reverse=True)
    chosen = [f for _, f in keys[:k]]
    rng.shuffle(chosen)  # alt-text has no fixed order
    coloured = [f for f in chosen if FACT_SLOTS[f][1] in visible and attrs[FACT_SLOTS[f][1]] != "none"]
    noisy_fact = _pick(rng, coloured) if coloured and rng.random() < noise else None
    mentions: list[str] = []
    gender = attrs["gender"] if rng.random() < 0.85 else None
    if gender:
        mentions.append("gender")
    subject = _pick(rng, WEB_SUBJECTS[gender]) if gender else _pick(rng, WEB_NEUTRAL)
    items = [_item(attrs, f, visible, rng, noisy_fact, mentions) for f in chosen]
    joined = ", ".join(items[:-1]) + (" and " if len(items) > 1 and rng.random() < 0.5 else ", " if len(items) > 1 else "") + items[-1]
    text = _pick(rng, WEB_SHAPES).format(subject=subject, items=joined, tag=_pick(rng, WEB_TAGS))
    return Caption(text, tuple(dict.fromkeys(mentions)), noisy_fact is not None)


def lexicon_captions(per_style: int = 4000, seed: int = 0) -> list[str]:
    """``per_style`` captions of each style (``pedes``, ``web``) of random identities seen
    from the front and the back, from a fixed random stream: text that holds every word
    the generator can write (each table entry is drawn many times over). A vocabulary
    built from them covers every synth-pedes caption, whatever its dataset - the role of
    CLIP's BPE vocabulary, which covers the words of any caption style."""
    from wsreid.data.synth.attributes import sample_identity, visible_slots
    from wsreid.data.synth.captions import make_caption

    rng = np.random.default_rng([seed, 7919])
    texts: list[str] = []
    for write in (make_caption, make_web_caption):
        for i in range(per_style):
            attrs = sample_identity(i, rng, shade_jitter=0.0).attrs
            visible = visible_slots(attrs, ("front", "back", "side")[i % 3])
            texts.append(write(attrs, visible, rng, min_mentions=1, max_mentions=7, noise=0.1).text)
    return texts
