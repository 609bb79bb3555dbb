"""Drawing of one person (synth-pedes) with PIL primitives.

Coordinates are in person heights: x = 0 is the body axis (positive towards the side the
bags are carried on, ``mirror`` flips it in the image), y = 0 the top of the head and
y = 1 the soles. :class:`Pen` maps them to canvas pixels. The figure is drawn from back
to front: suitcase, side backpack, legs, lower garment, shoes, torso, pattern, arms,
garment details, bags, head, hair, hat, accessories.
"""

from __future__ import annotations

from PIL import Image, ImageChops, ImageDraw

from wsreid.data.synth.attributes import Identity
from wsreid.data.synth.scene import Scene

__all__ = ["Pen", "draw_person"]

RGB = tuple[int, int, int]


def shade(c: RGB, f: float) -> RGB:
    """``c`` darkened (f < 1) or lightened towards white (f > 1)."""
    if f <= 1:
        return tuple(int(v * f) for v in c)  # type: ignore[return-value]
    t = min(f - 1, 1.0)
    return tuple(int(v + (255 - v) * t) for v in c)  # type: ignore[return-value]


def contrast(c: RGB) -> RGB:
    """A colour that stands out on ``c`` (for stripes, dots, logos)."""
    lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    return shade(c, 1.7) if lum < 110 else shade(c, 0.35)


class Pen:
    """Draws shapes given in person coordinates onto an ``ImageDraw``."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, top: float, height: float, mirror: int):
        self.draw, self.cx, self.top, self.h, self.mirror = draw, cx, top, height, mirror

    def on(self, draw: ImageDraw.ImageDraw) -> "Pen":
        return Pen(draw, self.cx, self.top, self.h, self.mirror)

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return (self.cx + x * self.h * self.mirror, self.top + y * self.h)

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (a, b), (c, d) = self.pt(x0, y0), self.pt(x1, y1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]

    def poly(self, pts, fill) -> None:
        self.draw.polygon([self.pt(x, y) for x, y in pts], fill=fill)

    def rect(self, x0, y0, x1, y1, fill) -> None:
        self.draw.rectangle(self._box(x0, y0, x1, y1), fill=fill)

    def ellipse(self, x, y, rx, ry, fill) -> None:
        self.draw.ellipse(self._box(x - rx, y - ry, x + rx, y + ry), fill=fill)

    def top_half(self, x, y, rx, ry, fill) -> None:
        self.draw.chord(self._box(x - rx, y - ry, x + rx, y + ry), 180, 360, fill=fill)

    def arc(self, x, y, rx, ry, fill, width) -> None:
        self.draw.arc(self._box(x - rx, y - ry, x + rx, y + ry), 180, 360, fill=fill, width=max(1, round(width * self.h)))

    def line(self, pts, fill, width) -> None:
        self.draw.line([self.pt(x, y) for x, y in pts], fill=fill, width=max(1, round(width * self.h)))


def limb(p0, p1, w0, w1, t0=0.0, t1=1.0) -> list[tuple[float, float]]:
    """Quadrilateral along the segment p0 -> p1 between fractions t0..t1 (half widths w0 -> w1)."""
    def at(t):
        return (p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t, w0 + (w1 - w0) * t)
    xa, ya, wa = at(t0)
    xb, yb, wb = at(t1)
    return [(xa - wa, ya), (xa + wa, ya), (xb + wb, yb), (xb - wb, yb)]


def draw_person(canvas: Image.Image, pen: Pen, ident: Identity, scene: Scene) -> None:
    """Draw ``ident`` as seen in ``scene`` onto ``canvas`` (RGB) through ``pen``."""
    a, sh, skin = ident.attrs, ident.shades, ident.skin
    view, side = scene.view, scene.view == "side"
    man = a["gender"] == "man"
    k = 0.6 if side else 1.0
    sw, ww, hw = (0.13 if man else 0.11) * k, (0.095 if man else 0.08) * k, (0.1 if man else 0.108) * k
    upper = sh["upper_colour"]
    bag = a["bag_type"]

    if bag == "suitcase":
        _suitcase(pen, sh["bag_colour"], sw, side)
    if bag == "backpack" and side:
        c = sh["bag_colour"]
        pen.rect(-sw - 0.075, 0.18, -sw + 0.01, 0.43, c)
        pen.rect(-sw - 0.085, 0.3, -sw - 0.06, 0.41, shade(c, 0.75))

    # legs, lower garment, shoes
    st = scene.stride
    if side:
        legs = [((0, 0.5), (-st, 0.93), 0.8), ((0, 0.5), (st, 0.93), 1.0)]
    else:
        legs = [((s * 0.052, 0.5), (s * (0.045 + st / 2), 0.93), 1.0) for s in (-1, 1)]
    for hip, ankle, f in legs:
        pen.poly(limb(hip, ankle, 0.045, 0.03), shade(skin, 0.92 * f))
    _lower(pen, a["lower_type"], sh["lower_colour"], legs, ww, hw, k)
    for _, ankle, f in legs:
        _shoe(pen, a["shoe_type"], shade(sh["shoe_colour"], f) if f < 1 else sh["shoe_colour"], ankle, side)

    # torso and pattern
    utype = a["upper_type"]
    neck = [(-0.022, 0.11), (0.022, 0.11), (0.022, 0.165), (-0.022, 0.165)]
    pen.poly(neck, shade(skin, 0.9))
    bottom = [(0.14 * k, 0.72), (-0.14 * k, 0.72)] if utype == "coat" else [(hw, 0.52), (-hw, 0.52)]
    torso = [(sw, 0.165), (ww, 0.45), *bottom, (-ww, 0.45), (-sw, 0.165)]
    if utype == "tank top":
        pen.poly([(-sw + 0.025, 0.148), (sw - 0.025, 0.148), (sw, 0.165), (sw * 0.8, 0.2), (-sw * 0.8, 0.2), (-sw, 0.165)], skin)
        torso = [(sw * 0.72, 0.19), (ww, 0.45), *bottom, (-ww, 0.45), (-sw * 0.72, 0.19)]
    else:
        torso = [(-sw + 0.025, 0.148), (sw - 0.025, 0.148)] + torso
    pen.poly(torso, upper)
    swing = scene.swing
    if side:
        arms = [((0.0, 0.17), (swing * 2, 0.47))]
    else:
        arms = [((s * (sw + 0.005), 0.17), (s * (sw + 0.02) + swing, 0.47)) for s in (-1, 1)]
    sleeve_end = {"tank top": 0.0, "t-shirt": 0.38}.get(utype, 0.97)
    for p0, p1 in arms:
        pen.poly(limb(p0, p1, 0.024, 0.019), skin)
        pen.ellipse(p1[0], 0.488, 0.021, 0.024, skin)
        if sleeve_end:
            pen.poly(limb(p0, p1, 0.029, 0.024, 0.0, sleeve_end), shade(upper, 0.93))
    pattern = a["upper_pattern"]
    if pattern in ("striped", "checked", "dotted"):
        _pattern(canvas, pen, pattern, contrast(upper), torso, [limb(p0, p1, 0.029, 0.024, 0, sleeve_end) for p0, p1 in arms] if sleeve_end else [])
    if not side:
        _upper_details(pen, utype, upper, skin, view, hw)
    if pattern == "logo" and view == "front":
        pen.poly([(0, 0.235), (0.035, 0.27), (0, 0.305), (-0.035, 0.27)], contrast(upper))

    # bags carried on the body
    if bag == "backpack" and view == "back":
        c = sh["bag_colour"]
        pen.rect(-0.09, 0.18, 0.09, 0.43, c)
        pen.rect(-0.065, 0.33, 0.065, 0.41, shade(c, 0.75))
        pen.line([(-0.03, 0.18), (0, 0.16), (0.03, 0.18)], shade(c, 0.7), 0.01)
    elif bag == "handbag":
        hx = arms[-1][1][0]
        c = sh["bag_colour"]
        pen.line([(hx - 0.02, 0.475), (hx - 0.01, 0.44), (hx + 0.01, 0.44), (hx + 0.02, 0.475)], shade(c, 0.7), 0.008)
        pen.rect(hx - 0.036, 0.475, hx + 0.036, 0.57, c)
    elif bag == "shoulder bag":
        c = sh["bag_colour"]
        if side:
            pen.line([(-0.01, 0.155), (0.03, 0.42)], shade(c, 0.75), 0.012)
            pen.rect(-0.005, 0.4, 0.075, 0.5, c)
        else:
            pen.line([(-sw + 0.03, 0.155), (hw + 0.01, 0.43)], shade(c, 0.75), 0.012)
            pen.rect(hw - 0.02, 0.4, hw + 0.065, 0.5, c)

    _head(pen, ident, view)


def _suitcase(pen: Pen, c: RGB, sw: float, side: bool) -> None:
    x0, x1 = (-0.27, -0.15) if side else (sw + 0.04, sw + 0.15)
    pen.line([(x0 + 0.03, 0.6), (x0 + 0.03, 0.49), (x1 - 0.03, 0.49), (x1 - 0.03, 0.6)], (70, 70, 75), 0.008)
    pen.rect(x0, 0.6, x1, 0.975, c)
    pen.rect(x0, 0.6, x1, 0.62, shade(c, 0.7))
    pen.line([((x0 + x1) / 2, 0.63), ((x0 + x1) / 2, 0.96)], shade(c, 0.75), 0.008)
    for x in (x0 + 0.015, x1 - 0.015):
        pen.ellipse(x, 0.982, 0.012, 0.012, (30, 30, 30))


def _lower(pen: Pen, ltype: str, c: RGB, legs, ww: float, hw: float, k: float) -> None:
    if ltype in ("skirt", "long skirt"):
        y1, wb = (0.68, 0.15) if ltype == "skirt" else (0.87, 0.17)
        pen.poly([(-ww, 0.45), (ww, 0.45), (wb * k, y1), (-wb * k, y1)], c)
        pen.line([(-wb * k, y1 - 0.004), (wb * k, y1 - 0.004)], shade(c, 0.8), 0.008)
        return
    t1 = 0.36 if ltype == "shorts" else 1.0
    for hip, ankle, f in legs:
        top = (hip[0], 0.47)
        colour = shade(c, 0.85 * f) if f < 1 else c
        pen.poly(limb(top, ankle, 0.052, 0.036, 0.0, t1 if t1 == 1.0 else t1 * 1.05), colour)
        if ltype == "jeans":
            pen.line([(top[0], 0.5), ((top[0] + ankle[0]) / 2 + (ankle[0] - top[0]) * 0.5, 0.92)], shade(c, 1.35), 0.007)
    pen.poly([(-ww, 0.45), (ww, 0.45), (hw, 0.56), (-hw, 0.56)], c)
    if ltype == "jeans":
        pen.line([(-ww, 0.46), (ww, 0.46)], shade(c, 1.35), 0.007)


def _shoe(pen: Pen, stype: str, c: RGB, ankle, side: bool) -> None:
    x = ankle[0]
    xa, xb = (x - 0.03, x + 0.065) if side else (x - 0.042, x + 0.042)
    if stype == "boots":
        pen.rect(xa + (0.0 if side else 0.0), 0.8, xb - (0.03 if side else 0.0), 0.95, c)
        pen.rect(xa, 0.93, xb, 0.99, c)
        pen.rect(xa, 0.978, xb, 0.99, shade(c, 0.55))
    elif stype == "sneakers":
        pen.rect(xa, 0.925, xb, 0.99, c)
        lum = sum(c) / 3
        pen.rect(xa, 0.97, xb, 0.99, (150, 150, 150) if lum > 190 else (240, 240, 236))
    else:
        pen.rect(xa + 0.004, 0.94, xb - 0.004, 0.99, c)
        pen.line([(xa + 0.006, 0.943), (xb - 0.006, 0.943)], shade(c, 1.3), 0.005)


def _pattern(canvas: Image.Image, pen: Pen, pattern: str, colour: RGB, torso, sleeves) -> None:
    size = canvas.size
    region = Image.new("L", size, 0)
    rp = pen.on(ImageDraw.Draw(region))
    rp.poly(torso, 255)
    for s in sleeves:
        rp.poly(s, 255)
    marks = Image.new("L", size, 0)
    mp = pen.on(ImageDraw.Draw(marks))
    if pattern in ("striped", "checked"):
        step, width = (0.045, 0.02) if pattern == "striped" else (0.05, 0.012)
        y = 0.17
        while y < 0.75:
            mp.rect(-0.3, y, 0.3, y + width, 255)
            y += step
        if pattern == "checked":
            x = -0.3
            while x < 0.3:
                mp.rect(x, 0.14, x + width, 0.75, 255)
                x += step
    else:
        row, y = 0, 0.18
        while y < 0.75:
            x = -0.3 + (0.02 if row % 2 else 0.0)
            while x < 0.3:
                mp.ellipse(x, y, 0.009, 0.009, 255)
                x += 0.04
            y += 0.038
            row += 1
    canvas.paste(colour, (0, 0, *size), ImageChops.multiply(region, marks))


def _upper_details(pen: Pen, utype: str, c: RGB, skin: RGB, view: str, hw: float) -> None:
    dark = shade(c, 0.72)
    front = view == "front"
    if utype in ("t-shirt", "tank top") and front:
        pen.ellipse(0, 0.15, 0.03 if utype == "t-shirt" else 0.04, 0.022, skin)
    elif utype == "shirt":
        light = shade(c, 1.45)
        if front:
            pen.poly([(-0.032, 0.146), (0.0, 0.162), (-0.018, 0.19)], light)
            pen.poly([(0.032, 0.146), (0.0, 0.162), (0.018, 0.19)], light)
            for y in (0.22, 0.28, 0.34, 0.4):
                pen.ellipse(0, y, 0.006, 0.006, dark)
        else:
            pen.rect(-0.032, 0.145, 0.032, 0.165, light)
    elif utype == "jacket":
        pen.rect(-hw, 0.5, hw, 0.525, dark)
        if front:
            inner = (60, 60, 64) if sum(c) > 600 else (228, 228, 224)
            pen.poly([(-0.036, 0.148), (0.036, 0.148), (0, 0.26)], inner)
            pen.line([(0, 0.26), (0, 0.52)], shade(c, 1.5), 0.006)
        else:
            pen.rect(-0.04, 0.145, 0.04, 0.168, dark)
    elif utype == "coat":
        if front:
            pen.poly([(-0.036, 0.148), (0.036, 0.148), (0, 0.24)], dark)
            for y in (0.28, 0.36, 0.44, 0.52, 0.6):
                pen.ellipse(-0.025, y, 0.006, 0.006, dark)
                pen.ellipse(0.025, y, 0.006, 0.006, dark)
        else:
            pen.line([(0, 0.55), (0, 0.72)], dark, 0.008)
    elif utype == "hoodie":
        if front:
            pen.ellipse(0, 0.148, 0.058, 0.026, dark)
            pen.rect(-0.065, 0.37, 0.065, 0.46, dark)
            for x in (-0.015, 0.015):
                pen.line([(x, 0.16), (x, 0.235)], (235, 235, 230), 0.005)
        else:
            pen.ellipse(0, 0.175, 0.062, 0.05, dark)


def _head(pen: Pen, ident: Identity, view: str) -> None:
    a, sh, skin = ident.attrs, ident.shades, ident.skin
    hair = sh.get("hair_colour")
    length = a["hair_length"]
    side, back = view == "side", view == "back"
    hx = 0.008 if side else 0.0
    if length == "long" and not back:
        if side:
            pen.rect(-0.058, 0.05, -0.01, 0.27, hair)
        else:
            pen.rect(-0.06, 0.05, -0.034, 0.27, hair)
            pen.rect(0.034, 0.05, 0.06, 0.27, hair)
    if back:
        pen.ellipse(0, 0.07, 0.048, 0.06, skin if length == "bald" else hair)
        if length == "long":
            pen.rect(-0.062, 0.06, 0.062, 0.28, hair)
        elif length == "ponytail":
            pen.ellipse(0, 0.17, 0.018, 0.06, hair)
            pen.rect(-0.016, 0.115, 0.016, 0.125, shade(hair, 0.6))
    else:
        if length == "bald":
            pen.ellipse(hx, 0.07, 0.047, 0.06, skin)
            pen.ellipse(hx - 0.012, 0.03, 0.014, 0.008, shade(skin, 1.3))
        else:
            if length == "ponytail" and side:
                pen.ellipse(-0.06, 0.13, 0.016, 0.055, hair)
            pen.ellipse(hx - (0.006 if side else 0), 0.057, 0.051, 0.052, hair)
            pen.ellipse(hx + (0.01 if side else 0), 0.079, 0.042 if not side else 0.038, 0.052, skin)
        eye = (30, 24, 24)
        if side:
            pen.ellipse(0.03, 0.07, 0.006, 0.006, eye)
            pen.poly([(0.045, 0.068), (0.058, 0.088), (0.045, 0.092)], skin)
        else:
            pen.ellipse(-0.018, 0.07, 0.006, 0.006, eye)
            pen.ellipse(0.018, 0.07, 0.006, 0.006, eye)
            pen.line([(-0.01, 0.105), (0.01, 0.105)], shade(skin, 0.7), 0.004)
    _hat(pen, a["hat_type"], sh.get("hat_colour"), view)
    _accessory(pen, a["accessory"], sh.get("accessory_colour"), view)


def _hat(pen: Pen, htype: str, c: RGB | None, view: str) -> None:
    if htype == "none" or c is None:
        return
    if htype == "cap":
        pen.top_half(0, 0.047, 0.053, 0.044, c)
        if view == "front":
            pen.ellipse(0, 0.047, 0.058, 0.011, shade(c, 0.8))
        elif view == "side":
            pen.rect(0.02, 0.04, 0.095, 0.05, shade(c, 0.8))
        else:
            pen.rect(-0.05, 0.04, 0.05, 0.05, shade(c, 0.8))
    elif htype == "beanie":
        pen.top_half(0, 0.054, 0.055, 0.052, c)
        pen.rect(-0.055, 0.04, 0.055, 0.058, shade(c, 0.82))
        pen.ellipse(0, 0.002, 0.013, 0.013, c)
    else:  # sun hat
        pen.ellipse(0, 0.04, 0.1, 0.02, c)
        pen.top_half(0, 0.04, 0.05, 0.04, c)
        pen.rect(-0.05, 0.028, 0.05, 0.04, shade(c, 0.7))


def _accessory(pen: Pen, acc: str, c: RGB | None, view: str) -> None:
    side = view == "side"
    if acc == "glasses" and view != "back":
        frame = (35, 35, 40)
        if side:
            pen.rect(0.02, 0.062, 0.042, 0.078, frame)
            pen.line([(0.02, 0.066), (-0.01, 0.066)], frame, 0.005)
        else:
            for x in (-0.019, 0.019):
                pen.rect(x - 0.015, 0.062, x + 0.015, 0.079, frame)
    elif acc == "face mask" and view != "back" and c is not None:
        if side:
            pen.rect(0.0, 0.085, 0.052, 0.122, c)
        else:
            pen.rect(-0.036, 0.085, 0.036, 0.122, c)
    elif acc == "scarf" and c is not None:
        pen.rect(-0.05, 0.125, 0.05, 0.17, c)
        if view == "front":
            pen.rect(0.012, 0.16, 0.045, 0.3, shade(c, 0.9))
        elif side:
            pen.rect(0.015, 0.16, 0.045, 0.28, shade(c, 0.9))
    elif acc == "headphones" and c is not None:
        pen.arc(0, 0.07, 0.056, 0.066, c, 0.012)
        if side:
            pen.ellipse(-0.005, 0.075, 0.018, 0.024, c)
        else:
            for x in (-0.05, 0.05):
                pen.ellipse(x, 0.075, 0.014, 0.022, c)
