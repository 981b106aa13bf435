"""Pure PIL / numpy drawing: boxes on an image and heat-map overlays.

Nothing here knows about Streamlit or FiftyOne; every function takes arrays and returns a new
``PIL.Image.Image`` (inputs are never mutated).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

# Distinct colours: ground truth in greens/blues, predictions in oranges, the flagged box in red.
GT_COLOR = (46, 204, 113)
PRED_COLOR = (255, 159, 28)
HIGHLIGHT_COLOR = (231, 29, 54)
_JET_STOPS = np.array(  # (position, r, g, b): a perceptually ordered blue -> red ramp
    [
        [0.00, 0, 0, 131],
        [0.25, 0, 128, 255],
        [0.50, 64, 255, 160],
        [0.75, 255, 200, 0],
        [1.00, 200, 0, 0],
    ],
    dtype=np.float64,
)


def _as_boxes(boxes: NDArray[np.floating] | Sequence[Sequence[float]]) -> NDArray[np.float64]:
    """Validate and return boxes as a float ``(N, 4)`` xyxy array."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) in xyxy pixels, got {arr.shape}")
    return arr


def draw_boxes(
    image: Image.Image,
    boxes: NDArray[np.floating] | Sequence[Sequence[float]],
    labels: Sequence[str] | None = None,
    *,
    colors: Sequence[tuple[int, int, int]] | None = None,
    highlight: Sequence[bool] | None = None,
    dashed: Sequence[bool] | None = None,
    width: int = 2,
) -> Image.Image:
    """Draw boxes with captions on a copy of ``image``.

    Args:
        image: the picture, any PIL mode (converted to RGB).
        boxes: ``(N, 4)`` absolute pixel ``xyxy`` boxes.
        labels: ``N`` captions drawn above each box (None: no captions).
        colors: ``N`` RGB colours (default: ``GT_COLOR`` for all).
        highlight: ``N`` flags; a highlighted box is drawn in ``HIGHLIGHT_COLOR``, three times
            thicker, on top of the others.
        dashed: ``N`` flags; a dashed box is drawn with a broken outline (predictions).
        width: outline width in pixels of a normal box.

    Returns:
        A new RGB image of the same size.

    Example:
        >>> img = draw_boxes(Image.new("RGB", (64, 64)), [[4, 4, 30, 30]], ["book"])
    """
    arr = _as_boxes(boxes)
    n = len(arr)
    labels = list(labels) if labels is not None else [""] * n
    colors = list(colors) if colors is not None else [GT_COLOR] * n
    highlight = list(highlight) if highlight is not None else [False] * n
    dashed = list(dashed) if dashed is not None else [False] * n
    if not len(labels) == len(colors) == len(highlight) == len(dashed) == n:
        raise ValueError(
            f"labels/colors/highlight/dashed must each have {n} entries, got "
            f"{len(labels)}/{len(colors)}/{len(highlight)}/{len(dashed)}"
        )
    out = image.convert("RGB")  # convert() always returns a new image
    canvas = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    order = sorted(range(n), key=lambda i: highlight[i])  # highlighted boxes last, on top
    for i in order:
        color = HIGHLIGHT_COLOR if highlight[i] else colors[i]
        w = width * 3 if highlight[i] else width
        _outline(canvas, arr[i], color, w, dashed[i])
        if labels[i]:
            _caption(canvas, arr[i], labels[i], color, font)
    return out


def _outline(
    canvas: ImageDraw.ImageDraw, box: NDArray[np.float64], color: tuple, width: int, dashed: bool
) -> None:
    """Draw one rectangle, solid or dashed."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not dashed:
        canvas.rectangle([x1, y1, x2, y2], outline=color, width=width)
        return
    dash = max(4, 3 * width)
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)),
                 ((x1, y2), (x1, y1))):
        length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        steps = max(1, int(length // dash))
        for k in range(0, steps, 2):
            t0, t1 = k / steps, min(1.0, (k + 1) / steps)
            p0 = (a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0)
            p1 = (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)
            canvas.line([p0, p1], fill=color, width=width)


def _caption(
    canvas: ImageDraw.ImageDraw, box: NDArray[np.float64], text: str, color: tuple, font
) -> None:
    """Write ``text`` on a filled strip just above (or inside) the box's top-left corner."""
    left, top, right, bottom = canvas.textbbox((0, 0), text, font=font)
    tw, th = right - left, bottom - top
    x, y = float(box[0]), float(box[1]) - th - 4
    if y < 0:
        y = float(box[1]) + 1
    canvas.rectangle([x, y, x + tw + 4, y + th + 4], fill=color)
    canvas.text((x + 2, y + 2 - top), text, fill=(0, 0, 0), font=font)


def colormap(values: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map values in ``[0, 1]`` to RGB with a blue (low) to red (high) ramp.

    Args:
        values: any-shape float array; NaN and out-of-range values are clipped to ``[0, 1]``.

    Returns:
        ``uint8`` array of shape ``values.shape + (3,)``.
    """
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    rgb = [np.interp(v, _JET_STOPS[:, 0], _JET_STOPS[:, c]) for c in (1, 2, 3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def heat_overlay(
    image: Image.Image, heatmap: NDArray[np.floating], *, alpha: float = 0.5
) -> Image.Image:
    """Blend a heat map over ``image``.

    Args:
        image: the picture (any PIL mode).
        heatmap: ``(h, w)`` float array, any range; it is min-max normalised (higher = hotter,
            drawn red) and resized bilinearly to the image size.
        alpha: weight of the heat colours, in ``[0, 1]``.

    Returns:
        A new RGB image of the image's size.

    Example:
        >>> heat_overlay(Image.new("RGB", (32, 32)), np.eye(8)).size
        (32, 32)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heatmap must be a non-empty 2-D array, got shape {heat.shape}")
    heat = np.nan_to_num(heat, nan=0.0)
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    base = image.convert("RGB")
    small = Image.fromarray((norm * 255).round().astype(np.uint8), mode="L")
    resized = np.asarray(small.resize(base.size, Image.Resampling.BILINEAR), dtype=np.float64)
    colored = colormap(resized / 255.0).astype(np.float64)
    blended = (1 - alpha) * np.asarray(base, dtype=np.float64) + alpha * colored
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8), mode="RGB")


def thumbnail(image: Image.Image, max_side: int = 256) -> Image.Image:
    """Return a copy of ``image`` scaled down so its longer side is at most ``max_side``."""
    out = image.copy()
    out.thumbnail((max_side, max_side))
    return out


def colour_bar(width: int = 256, height: int = 14) -> Image.Image:
    """The heat maps' colour scale as a horizontal bar: low (left, blue) to high (right, red),
    the ramp :func:`heat_overlay` paints with.

    Example:
        >>> bar = colour_bar(100, 10)
        >>> bar.size, bar.getpixel((0, 0)) != bar.getpixel((99, 0))
        ((100, 10), True)
    """
    if width < 2 or height < 1:
        raise ValueError(f"colour bar needs width >= 2 and height >= 1, got {width}x{height}")
    ramp = colormap(np.linspace(0.0, 1.0, width))
    return Image.fromarray(np.repeat(ramp[None, :, :], height, axis=0), mode="RGB")
