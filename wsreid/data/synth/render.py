"""Rendering of synth-pedes images: background clutter, the person, occluders, then
lighting, colour cast, noise and blur. Output: an RGB ``PIL.Image`` of ``width x height``.

Everything is drawn at twice the output resolution and reduced with a box filter (cheap
anti-aliasing); all randomness comes from the :class:`Scene`, so the same (identity,
scene, size) always gives the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from wsreid.data.synth.attributes import Identity
from wsreid.data.synth.figure import Pen, draw_person, shade
from wsreid.data.synth.scene import Scene

__all__ = ["render_image", "SUPERSAMPLE"]

SUPERSAMPLE = 2


def _muted(rng: np.random.Generator, lo: int = 60, hi: int = 200, spread: int = 28) -> tuple[int, int, int]:
    base = int(rng.integers(lo, hi))
    return tuple(int(v) for v in np.clip(base + rng.integers(-spread, spread + 1, size=3), 0, 255))  # type: ignore[return-value]


def _background(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator, clutter: int) -> None:
    wall, ground = _muted(rng), _muted(rng, 50, 180)
    horizon = int(h * rng.uniform(0.45, 0.8))
    draw.rectangle([0, 0, w, horizon], fill=wall)
    draw.rectangle([0, horizon, w, h], fill=ground)
    draw.line([0, horizon, w, horizon], fill=shade(ground, 0.7), width=2)
    for _ in range(int(rng.integers(0, clutter + 1))):
        kind = int(rng.integers(6))
        x, y = float(rng.uniform(-0.2, 1.0) * w), float(rng.uniform(0, 1.0) * h)
        if kind == 0:  # building block or shop front
            bw, bh = rng.uniform(0.2, 0.6) * w, rng.uniform(0.2, 0.6) * h
            y1 = min(y, horizon)
            draw.rectangle([x, y1 - bh, x + bw, y1], fill=_muted(rng, 40, 220, 40))
        elif kind == 1:  # window grid
            c = _muted(rng, 30, 230, 20)
            for i in range(3):
                for j in range(2):
                    x0, y0 = x + i * 0.1 * w, y * 0.6 + j * 0.08 * h
                    draw.rectangle([x0, y0, x0 + 0.06 * w, y0 + 0.05 * h], fill=c)
        elif kind == 2:  # pole or tree trunk
            pw = rng.uniform(0.02, 0.06) * w
            draw.rectangle([x, 0, x + pw, horizon + rng.uniform(0, 0.15) * h], fill=_muted(rng, 30, 120, 20))
        elif kind == 3:  # bush
            r = rng.uniform(0.08, 0.2) * w
            g = int(rng.integers(70, 150))
            draw.ellipse([x - r, horizon - r, x + r, horizon + r * 0.5], fill=(g // 2, g, g // 3))
        elif kind == 4:  # a saturated distractor (sign, poster)
            c = tuple(int(v) for v in rng.integers(0, 256, size=3))
            s = rng.uniform(0.05, 0.15) * w
            draw.rectangle([x, y * 0.7, x + s, y * 0.7 + s * 1.4], fill=c)
        else:  # a distant passer-by, small and dim
            c = _muted(rng, 40, 160, 40)
            ph = rng.uniform(0.2, 0.35) * h
            draw.ellipse([x - ph * 0.06, horizon - ph, x + ph * 0.06, horizon - ph * 0.88], fill=shade(c, 1.2))
            draw.rectangle([x - ph * 0.1, horizon - ph * 0.86, x + ph * 0.1, horizon], fill=c)


def _occluder(draw: ImageDraw.ImageDraw, pen: Pen, scene: Scene, w: int, h: int, rng: np.random.Generator) -> None:
    c = scene.occlusion_colour
    if scene.occlusion == "low":  # a car bonnet, bench, railing or box in front of the legs
        y0 = pen.pt(0, scene.occlusion_top)[1]
        draw.rectangle([0, y0, w, h], fill=c)
        draw.rectangle([0, y0, w, y0 + 0.02 * h], fill=shade(c, 1.3))
        if rng.random() < 0.5:
            for i in range(1, 4):
                yy = y0 + i * (h - y0) / 4
                draw.line([0, yy, w, yy], fill=shade(c, 0.7), width=2)
    elif scene.occlusion == "side":  # a pole on the side away from the bags
        x = -float(rng.uniform(0.12, 0.18))
        pen.rect(x - 0.03, -2.0, x + 0.03, 2.0, shade(c, 0.8))


def _backdrop(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    """The ``web`` style's background: a plain vertical gradient between two light colours
    (a photo studio or a product shot), no objects."""
    top, bottom = np.asarray(_muted(rng, 150, 245, 20), float), np.asarray(_muted(rng, 110, 230, 20), float)
    for y in range(0, h, 2):
        t = y / max(1, h - 1)
        draw.rectangle([0, y, w, y + 2], fill=tuple(int(v) for v in top * (1 - t) + bottom * t))


def render_image(
    identity: Identity, scene: Scene, *, height: int = 128, width: int = 64, clutter: int = 6, style: str = "pedes"
) -> Image.Image:
    """Pixels of ``identity`` in ``scene``: an RGB image ``width`` wide, ``height`` high.

    ``style`` "pedes" draws a street scene (clutter, occluders); "web" a plain studio
    backdrop, and the finished image gets 1.6x colour saturation and 1.25x contrast and
    is reduced to 16 levels per channel (a flat, illustrated look)."""
    cw, ch = width * SUPERSAMPLE, height * SUPERSAMPLE
    rng = np.random.default_rng(scene.background)
    canvas = Image.new("RGB", (cw, ch))
    draw = ImageDraw.Draw(canvas)
    if style == "web":
        _backdrop(draw, cw, ch, rng)
    else:
        _background(draw, cw, ch, rng, clutter)
    pen = Pen(draw, scene.centre * cw, scene.top * ch, scene.scale * ch, scene.mirror)
    draw_person(canvas, pen, identity, scene)
    _occluder(draw, pen, scene, cw, ch, rng)
    img = canvas.resize((width, height), Image.Resampling.BOX)
    arr = np.asarray(img, dtype=np.float32)
    ramp = 1.0 + scene.gradient * np.linspace(-1.0, 1.0, width, dtype=np.float32)
    gain = scene.brightness * np.asarray(scene.cast, dtype=np.float32)
    arr = arr * ramp[None, :, None] * gain[None, None, :]
    if scene.noise > 0:
        arr = arr + rng.normal(0.0, scene.noise, size=arr.shape).astype(np.float32)
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    if scene.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur))
    if style == "web":
        img = ImageEnhance.Contrast(ImageEnhance.Color(img).enhance(1.6)).enhance(1.25)
        img = Image.fromarray((np.asarray(img) // 16 * 16 + 8).astype(np.uint8), "RGB")
    return img
