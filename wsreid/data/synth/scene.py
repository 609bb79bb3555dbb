"""Per-image variation of synth-pedes that does not change identity: view, position,
scale, pose, background clutter, lighting and colour cast, occlusion, blur, noise.

:func:`sample_scene` draws an :class:`Scene` from a random generator; the renderer turns
(identity, scene) into pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Variation", "Scene", "sample_scene"]


@dataclass(frozen=True)
class Variation:
    """Strengths of the per-image variation (0 turns a kind of variation off)."""

    occlusion_prob: float = 0.15  # share of images with an occluder (low: hides the shoes; side: a pole)
    blur_prob: float = 0.3  # share of images blurred (Gaussian, radius 0.3-1.1 px)
    clutter: int = 6  # at most this many background objects
    lighting: float = 0.25  # brightness varies by +-lighting, colour cast by +-lighting/2.5 per channel
    noise: float = 6.0  # at most this pixel noise standard deviation (0-255 scale)
    position: float = 0.08  # horizontal shift, share of the image width


@dataclass(frozen=True)
class Scene:
    """How one image of a person is taken. Coordinates are shares of the image size.

    view: "front" | "back" | "side"; mirror: +1 or -1 (left-right flip of the person);
    scale: person height / image height; top: head top / image height; centre: body axis /
    image width; stride, swing: leg and arm spread in person heights; occlusion: "none",
    "low" (an object covering the person from ``occlusion_top`` down) or "side" (a pole);
    lighting: brightness, cast (3 gains), gradient (left-right light falloff); blur radius
    in pixels; noise standard deviation; background: seed of the clutter.
    """

    view: str
    mirror: int
    scale: float
    top: float
    centre: float
    stride: float
    swing: float
    occlusion: str
    occlusion_top: float
    occlusion_colour: tuple[int, int, int]
    brightness: float
    cast: tuple[float, float, float]
    gradient: float
    blur: float
    noise: float
    background: int

    @property
    def shoes_hidden(self) -> bool:
        return self.occlusion == "low"

    def to_json(self) -> dict:
        return asdict(self)


def sample_scene(rng: np.random.Generator, variation: Variation, *, has_suitcase: bool = False) -> Scene:
    """Draw the scene of one image. Views: front 45%, back 35%, side 20%."""
    u = rng.random()
    view = "front" if u < 0.45 else "back" if u < 0.8 else "side"
    mirror = 1 if rng.random() < 0.5 else -1
    scale = float(rng.uniform(0.8, 0.95))
    top = float(rng.uniform(0.01, max(0.011, 1.0 - scale - 0.01)))
    centre = 0.5 + float(rng.uniform(-variation.position, variation.position))
    if has_suitcase:  # leave room for the suitcase beside the person
        centre -= 0.08 * mirror
    stride = float(rng.uniform(0.0, 0.06))
    swing = float(rng.uniform(-0.03, 0.03))
    occlusion, occlusion_top = "none", 1.0
    if rng.random() < variation.occlusion_prob:
        occlusion = "low" if rng.random() < 0.6 else "side"
        occlusion_top = float(rng.uniform(0.74, 0.88)) if occlusion == "low" else 0.0
    occlusion_colour = tuple(int(v) for v in rng.integers(40, 200, size=3))
    lighting = variation.lighting
    brightness = float(1 + rng.uniform(-lighting, lighting))
    cast = tuple(float(1 + rng.uniform(-lighting / 2.5, lighting / 2.5)) for _ in range(3))
    gradient = float(rng.uniform(-lighting, lighting) * 0.8)
    blur = float(rng.uniform(0.3, 1.1)) if rng.random() < variation.blur_prob else 0.0
    noise = float(rng.uniform(0, variation.noise))
    background = int(rng.integers(2**31 - 1))
    return Scene(
        view, mirror, scale, top, centre, stride, swing, occlusion, occlusion_top,
        occlusion_colour, brightness, cast, gradient, blur, noise, background,  # type: ignore[arg-type]
    )  # fmt: skip
