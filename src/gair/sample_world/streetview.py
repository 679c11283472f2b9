"""Street-view photographs of the sample world, drawn from the truth around the camera.

The camera stands on a road and sees its surroundings only partly: a perspective image
shows what lies to the left, ahead and to the right of its heading; a 2:1 spherical
panorama shows eight directions around it. Each direction is drawn with the visual
vocabulary of the land-cover class found there (houses, warehouses, tree lines, crop rows,
open water ...), and the ``affluence`` field changes façades, street trees and the state
of the road. Weather, time of day, vehicles and sensor noise vary independently of the
land, so that appearance alone does not give the class away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gair.sample_world.landscape import LandCover

WEATHER = ("clear", "cloudy", "rainy", "foggy")
WEATHER_P = (0.55, 0.25, 0.1, 0.1)


@dataclass(frozen=True)
class StreetViewScene:
    """What one camera sees: the classes around it and the conditions of the shot."""

    sectors: tuple[int, ...]  # LandCover code per direction, left to right in the image
    panorama: bool
    affluence: float  # [0, 1] at the camera
    urbanity: float  # [0, 1] at the camera
    weather: str
    lighting: str  # "day", "dusk/dawn" or "night"


Box = tuple[int, int, int, int]


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _sky(draw: ImageDraw.ImageDraw, rng, width: int, horizon: int, scene: StreetViewScene) -> None:
    palettes = {
        ("day", "clear"): ((70, 125, 205), (175, 205, 235)),
        ("day", "cloudy"): ((140, 145, 158), (200, 202, 208)),
        ("day", "rainy"): ((100, 104, 112), (150, 152, 158)),
        ("day", "foggy"): ((185, 187, 190), (200, 201, 203)),
        ("dusk/dawn", "clear"): ((60, 70, 125), (235, 150, 90)),
        ("night", "clear"): ((8, 12, 32), (30, 36, 64)),
    }
    top, bottom = palettes.get(
        (scene.lighting, scene.weather),
        palettes.get((scene.lighting, "clear"), palettes[("day", scene.weather)]),
    )
    for y in range(horizon + 1):
        t = y / max(horizon, 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    if scene.weather in ("cloudy", "rainy"):
        for _ in range(int(rng.integers(3, 9))):
            cx, cy = rng.uniform(0, width), rng.uniform(0, horizon * 0.7)
            rx, ry = rng.uniform(0.05, 0.2) * width, rng.uniform(0.03, 0.08) * width
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple([int(rng.integers(200, 230))] * 3))


def _ground(code: int, rng: np.random.Generator) -> tuple[int, ...]:
    colours = {
        LandCover.WATER: (62, 92, 118), LandCover.FOREST: (52, 68, 34),
        LandCover.GRASSLAND: (112, 158, 70), LandCover.CROPLAND: (138, 128, 70),
        LandCover.RESIDENTIAL: (128, 124, 118), LandCover.INDUSTRIAL: (148, 147, 142),
        LandCover.BARE: (172, 142, 102), LandCover.ROAD: (92, 92, 95),
    }
    return _jitter(rng, colours.get(LandCover(code), (120, 120, 120)), 10)


def _tree(draw, rng, x: float, base: float, size: float, dark: bool = False) -> None:
    draw.rectangle([x - size * 0.06, base - size * 0.45, x + size * 0.06, base], fill=(74, 54, 36))
    green = (24, 58, 26) if dark else (52, 102, 40)
    for _ in range(3):
        cx, cy = x + rng.uniform(-0.15, 0.15) * size, base - size * rng.uniform(0.6, 0.85)
        r = size * rng.uniform(0.22, 0.34)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(rng, green, 14))


def _draw_sector(draw, rng, code: int, box: Box, horizon: int, scale: float,
                 scene: StreetViewScene, vanish_x: float) -> None:
    """Draw one direction's class into the column range of ``box``."""
    x0, _, x1, height = box
    span = x1 - x0
    draw.rectangle([x0, horizon, x1, height], fill=_ground(code, rng))
    unit = height * scale
    aff = scene.affluence
    if code == LandCover.WATER:
        draw.line([(x0, horizon), (x1, horizon)], fill=(40, 70, 40), width=max(1, int(unit * 0.02)))
        for _ in range(int(span * 0.4)):
            y = rng.uniform(horizon + 2, height)
            x = rng.uniform(x0, x1)
            draw.line([(x, y), (x + rng.uniform(2, 8) * scale, y)], fill=(120, 150, 175))
    elif code == LandCover.FOREST:
        for _ in range(int(span / (unit * 0.07)) + 2):
            _tree(draw, rng, rng.uniform(x0, x1), horizon + rng.uniform(0, 0.05) * unit,
                  unit * rng.uniform(0.35, 0.6), dark=True)
    elif code == LandCover.GRASSLAND:
        for _ in range(int(span * 0.5)):
            x, y = rng.uniform(x0, x1), rng.uniform(horizon, height)
            draw.point((x, y), fill=_jitter(rng, (90, 140, 60), 25))
        for _ in range(int(rng.integers(0, 3))):
            _tree(draw, rng, rng.uniform(x0, x1), horizon + 2, unit * rng.uniform(0.1, 0.2))
    elif code == LandCover.CROPLAND:
        stripe_a, stripe_b = _jitter(rng, (128, 150, 62), 15), _jitter(rng, (122, 96, 62), 12)
        for k, x in enumerate(np.linspace(x0 - span, x1 + span, int(span / 3) + 6)):
            draw.line([(vanish_x, horizon), (x, height)], fill=stripe_a if k % 2 else stripe_b,
                      width=2)
    elif code == LandCover.RESIDENTIAL:
        x = x0 + rng.uniform(-0.1, 0.2) * unit * 0.4
        while x < x1:
            w = unit * rng.uniform(0.22, 0.38)
            h = unit * rng.uniform(0.18, 0.3)
            base = horizon + unit * 0.06
            saturation = 0.3 + 0.7 * aff
            facade = tuple(int(200 - (200 - c) * saturation)
                           for c in _jitter(rng, (226, 196, 150), 40))
            if aff < 0.35:
                facade = tuple(int(c * 0.8) for c in facade)  # weathered paint
            draw.rectangle([x, base - h, x + w, base], fill=facade)
            roof = _jitter(rng, (150, 60, 45) if rng.random() < 0.6 else (80, 80, 88), 15)
            draw.polygon([(x - w * 0.06, base - h), (x + w / 2, base - h - h * 0.45),
                          (x + w * 1.06, base - h)], fill=roof)
            for wx in np.arange(x + w * 0.15, x + w * 0.85, w * 0.25):
                for wy in np.arange(base - h * 0.85, base - h * 0.25, h * 0.3):
                    draw.rectangle([wx, wy, wx + w * 0.1, wy + h * 0.14], fill=(60, 70, 85))
            x += w * rng.uniform(1.05, 1.3)
            if rng.random() < 0.15 + 0.7 * aff:
                _tree(draw, rng, x, base + 1, unit * rng.uniform(0.25, 0.4))
                x += unit * 0.1
    elif code == LandCover.INDUSTRIAL:
        x = x0 + rng.uniform(-0.3, 0.0) * unit
        while x < x1:
            w = unit * rng.uniform(0.5, 1.0)
            h = unit * rng.uniform(0.1, 0.2)
            base = horizon + unit * 0.05
            body = _jitter(rng, (150, 156, 162) if rng.random() < 0.6 else (170, 160, 140), 14)
            draw.rectangle([x, base - h, x + w, base], fill=body)
            for sx in np.arange(x, x + w, max(2.0, unit * 0.03)):
                draw.line([(sx, base - h), (sx, base)], fill=tuple(c - 18 for c in body))
            if rng.random() < 0.5:
                cx = x + w * rng.uniform(0.2, 0.8)
                draw.rectangle([cx, base - h - unit * 0.3, cx + unit * 0.03, base - h],
                               fill=(110, 105, 100))
                r = unit * 0.06
                draw.ellipse([cx - r, base - h - unit * 0.42 - r, cx + r * 2,
                              base - h - unit * 0.3], fill=(185, 185, 185))
            x += w * rng.uniform(1.05, 1.2)
        for fx in np.arange(x0, x1, max(3.0, unit * 0.04)):  # chain-link fence
            draw.line([(fx, horizon + unit * 0.06), (fx, horizon + unit * 0.12)], fill=(90, 90, 90))
    elif code == LandCover.BARE:
        peaks = [(x0, horizon)] + [
            (x, horizon - unit * rng.uniform(0.02, 0.12)) for x in np.linspace(x0, x1, 5)
        ] + [(x1, horizon)]
        draw.polygon(peaks, fill=_jitter(rng, (150, 120, 95), 10))
        for _ in range(int(span * 0.3)):
            x, y = rng.uniform(x0, x1), rng.uniform(horizon, height)
            r = rng.uniform(0.5, 2.0) * scale
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(rng, (120, 105, 90), 15))


def _road(draw, rng, left: float, right: float, vanish_x: float, horizon: int, height: int,
          scene: StreetViewScene) -> None:
    """A road from the bottom edge to the vanishing point, worn where affluence is low."""
    grey = _jitter(rng, (88, 88, 92), 6)
    draw.polygon([(left, height), (vanish_x - 1, horizon), (vanish_x + 1, horizon),
                  (right, height)], fill=grey)
    if scene.urbanity > 0.45:  # kerbs and pavements in town
        for edge in (left, right):
            draw.line([(edge, height), (vanish_x, horizon)], fill=(170, 168, 160), width=2)
    centre = (left + right) / 2
    for t0 in np.arange(0.05, 1.0, 0.16):
        t1 = t0 + 0.07
        p0 = (centre + (vanish_x - centre) * t0, height + (horizon - height) * t0)
        p1 = (centre + (vanish_x - centre) * t1, height + (horizon - height) * t1)
        draw.line([p0, p1], fill=(225, 225, 215), width=max(1, int(3 * (1 - t0))))
    for _ in range(int((1.0 - scene.affluence) ** 2 * 14)):  # cracks and patches
        t = rng.uniform(0.0, 0.8)
        y = height + (horizon - height) * t
        half = (right - left) / 2 * (1 - t)
        x = centre + (vanish_x - centre) * t + rng.uniform(-half, half)
        r = (1 - t) * rng.uniform(2, 6)
        draw.ellipse([x - r, y - r * 0.4, x + r, y + r * 0.4], fill=(60, 60, 62))


def _vehicle(draw, rng, x: float, base: float, size: float) -> None:
    body = _jitter(rng, tuple(int(c) for c in rng.integers(30, 220, 3)), 0)
    draw.rectangle([x, base - size * 0.45, x + size, base - size * 0.12], fill=body)
    draw.rectangle([x + size * 0.2, base - size * 0.7, x + size * 0.8, base - size * 0.45],
                   fill=tuple(int(c * 0.8) for c in body))
    for wx in (x + size * 0.2, x + size * 0.8):
        r = size * 0.12
        draw.ellipse([wx - r, base - size * 0.12 - r, wx + r, base - size * 0.12 + r],
                     fill=(20, 20, 20))


def _finish(image: Image.Image, rng: np.random.Generator, scene: StreetViewScene) -> np.ndarray:
    """Weather, light and sensor: fog veil, rain streaks, exposure, noise."""
    pixels = np.asarray(image, dtype=np.float32)
    if scene.weather == "foggy":
        veil = rng.uniform(0.45, 0.65)
        pixels = pixels * (1 - veil) + 195.0 * veil
    if scene.weather == "rainy":
        pixels *= 0.85
        ys, xs = rng.integers(0, pixels.shape[0], 150), rng.integers(0, pixels.shape[1], 150)
        for y, x in zip(ys, xs, strict=True):
            pixels[y : y + 6, x] = pixels[y : y + 6, x] * 0.5 + 110
    gain = {"day": 1.0, "dusk/dawn": 0.65, "night": 0.3}[scene.lighting]
    pixels *= gain * rng.uniform(0.88, 1.12)
    pixels += rng.normal(0.0, 4.0 if scene.lighting == "day" else 9.0, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_street_view(
    scene: StreetViewScene, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) of ``scene``."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.4, 0.5))
    _sky(draw, rng, width, horizon, scene)
    n = len(scene.sectors)
    edges = np.linspace(0, width, n + 1)
    if scene.panorama:
        # Columns are azimuths: the heading is at the centre, the way back at both edges.
        for k, code in enumerate(scene.sectors):
            box = (int(edges[k]), 0, int(edges[k + 1]), height)
            _draw_sector(draw, rng, code, box, horizon, 0.45, scene, (edges[k] + edges[k + 1]) / 2)
        for centre in (width / 2, 0.0, float(width)):
            half = width / n * 0.55
            _road(draw, rng, centre - half, centre + half, centre, horizon, height, scene)
    else:
        vanish = width * rng.uniform(0.45, 0.55)
        scales = [1.0 if k in (0, n - 1) else 0.5 for k in range(n)]
        for k, code in enumerate(scene.sectors):
            box = (int(edges[k]), 0, int(edges[k + 1]), height)
            sector = Image.new("RGB", (width, height))
            sector.paste(image)
            sector_draw = ImageDraw.Draw(sector)
            _draw_sector(sector_draw, rng, code, box, horizon, scales[k], scene, vanish)
            image.paste(sector.crop(box), box)  # objects stay within their own direction
        draw = ImageDraw.Draw(image)
        _road(draw, rng, width * 0.18, width * 0.82, vanish, horizon, height, scene)
    if rng.random() < 0.25 + 0.5 * scene.urbanity:
        size = height * rng.uniform(0.15, 0.3)
        _vehicle(draw, rng, rng.uniform(0, width - size), height * rng.uniform(0.75, 0.95), size)
    image = image.filter(ImageFilter.GaussianBlur(0.5))
    return _finish(image, rng, scene)


def draw_weather(rng: np.random.Generator) -> str:
    return str(rng.choice(WEATHER, p=WEATHER_P))


def lighting_at(hour: int) -> str:
    """The Global Streetscapes ``lighting_condition`` a local hour gives."""
    if 8 <= hour <= 17:
        return "day"
    if hour in (6, 7, 18, 19):
        return "dusk/dawn"
    return "night"
