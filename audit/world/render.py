"""Drawing a ``Scene`` into an RGB image: textured background, shelves, then objects back to front.

Each class has a shape and texture a small detector tells apart at 320 px: red shaded balls,
brown crates with a cross brace, orange cones with a white band, blue-green rings (background shows
through the hole), upright books with light bands on the spine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from audit.world.scene import CLASS_NAMES, Scene, SceneObject

# Base colour of each background kind: a scene kind's setting has its own palette (sky, sand,
# wood, concrete), as real settings do; each image jitters it.
PALETTES = {"gradient": (120, 170, 225), "noise": (200, 185, 150), "stripes": (150, 110, 75),
            "plain": (140, 140, 140)}


def _two_colors(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours (float arrays of shape (3,)) jittered around ``kind``'s palette."""
    base = np.asarray(PALETTES[kind], dtype=np.float64)
    c0 = np.clip(base + rng.uniform(-30, 30, size=3), 20, 235)
    return c0, np.clip(c0 + rng.uniform(-45, 45, size=3), 20, 235)


def background(kind: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A ``width x height`` RGB background: ``gradient``, low-frequency ``noise``, ``stripes``
    or ``plain`` (one colour), with pixel noise."""
    c0, c1 = _two_colors(rng, kind)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "gradient":
        angle = float(rng.uniform(0, np.pi))
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    elif kind == "plain":
        t = np.zeros((height, width), np.float32)
    elif kind == "stripes":
        angle = float(rng.uniform(0, np.pi))
        period = float(rng.uniform(12, 40))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    else:
        coarse = rng.uniform(0, 255, size=(height // 48 + 2, width // 48 + 2)).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR),
                       dtype=np.float32) / 255.0
    img = c0 + (c1 - c0) * t[..., None]
    img += rng.normal(0, 6, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """The colour scaled towards black (factor < 1) or white (factor > 1)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in color)
    return tuple(int(c + (255 - c) * (factor - 1)) for c in color)


def _ball(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    """A filled circle with a dark rim and a light highlight up-left."""
    x1, y1, x2, y2 = o.box
    s = x2 - x1
    draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=o.color, outline=_shade(o.color, 0.5),
                 width=max(1, round(s / 20)))
    hx, hy = x1 + 0.22 * s, y1 + 0.2 * (y2 - y1)
    draw.ellipse((hx, hy, hx + 0.25 * s, hy + 0.2 * (y2 - y1)), fill=_shade(o.color, 1.6))


def _crate(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    """A brown square with a thick dark frame and a diagonal cross brace."""
    x1, y1, x2, y2 = o.box
    lw = max(1, round(min(x2 - x1, y2 - y1) / 10))
    dark = _shade(o.color, 0.45)
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=o.color, outline=dark, width=lw)
    draw.line((x1, y1, x2 - 1, y2 - 1), fill=dark, width=lw)
    draw.line((x1, y2 - 1, x2 - 1, y1), fill=dark, width=lw)


def _cone(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    """An orange triangle on a dark base, with one white band across its middle."""
    x1, y1, x2, y2 = o.box
    w, h = x2 - x1, y2 - y1
    base_h = max(2.0, 0.12 * h)
    cx, top, bottom = (x1 + x2) / 2, y1, y2 - base_h
    draw.polygon([(cx, top), (x2 - 1, bottom), (x1, bottom)], fill=o.color)

    def half(y: float) -> float:
        return (w / 2) * (y - top) / max(bottom - top, 1)

    b0, b1 = top + 0.45 * (bottom - top), top + 0.65 * (bottom - top)
    draw.polygon([(cx - half(b0), b0), (cx + half(b0), b0), (cx + half(b1), b1),
                  (cx - half(b1), b1)], fill=(245, 245, 245))
    draw.rectangle((x1, bottom, x2 - 1, y2 - 1), fill=_shade(o.color, 0.4))


def _ring(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    """A thick annulus; the background shows through the hole."""
    x1, y1, x2, y2 = o.box
    draw.ellipse((x1, y1, x2 - 1, y2 - 1), outline=o.color,
                 width=max(2, round(min(x2 - x1, y2 - y1) / 5)))


def _book(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    """An upright spine: cover colour, dark edge, light bands near top and bottom, a title label."""
    x1, y1, x2, y2 = o.box
    w, h = x2 - x1, y2 - y1
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=o.color, outline=_shade(o.color, 0.4), width=1)
    band = _shade(o.color, 1.7)
    for t in (0.08, 0.86):
        draw.rectangle((x1 + 1, y1 + t * h, x2 - 2, y1 + (t + 0.05) * h), fill=band)
    if w >= 6:
        draw.rectangle((x1 + 0.25 * w, y1 + 0.35 * h, x2 - 0.25 * w, y1 + 0.55 * h),
                       fill=(235, 230, 215))


_DRAW = {"ball": _ball, "crate": _crate, "cone": _cone, "ring": _ring, "book": _book}


def render_scene(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``scene.width x scene.height`` px.

    Example:
        >>> img = render_scene(make_scene("mixed", np.random.default_rng(0)),
        ...                    np.random.default_rng(1))
    """
    img = background(scene.background, scene.width, scene.height, rng)
    draw = ImageDraw.Draw(img)
    plank = tuple(int(v) for v in rng.integers(90, 200, size=3))
    for shelf in scene.shelves:
        draw.rectangle((shelf[0], shelf[1], shelf[2] - 1, shelf[3] - 1), fill=plank,
                       outline=_shade(plank, 0.5))
    for obj in scene.objects:
        _DRAW[CLASS_NAMES[obj.label]](draw, obj)
    return img
