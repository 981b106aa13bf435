"""Image files as the model reads them: opening (past ultralytics' PIL patch), RGB arrays (16-bit
greyscale scaled as OpenCV does) and sizes from the header, refusing a decompression bomb."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL modes of 16-bit (and 32-bit integer) greyscale; scaled to 8 bit as OpenCV reads them
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def open_image(path: Path) -> Image.Image:
    """``PIL.Image.open`` itself, also once ultralytics is imported.

    Importing ultralytics replaces ``PIL.Image.open`` with a wrapper that, on the first file PIL
    cannot identify, runs ``check_requirements("pi-heif")`` (a pip install when online) and then
    fails with ``ModuleNotFoundError``; a garbage image must instead be reported as unreadable.
    """
    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(path)


def rgb_array(im: Image.Image) -> np.ndarray:
    """An opened image as ``HxWx3`` uint8 RGB, EXIF orientation applied, as the model sees it.

    16-bit greyscale (PIL modes ``I;16*``; ``I`` is read as the same 0..65535 range) is scaled
    to 8 bit by ``value >> 8``, exactly as OpenCV's ``imread`` (ultralytics' reader in training)
    does; PIL's own ``convert("RGB")`` clips every value above 255, which turns such an image
    white. Other modes go through ``convert("RGB")``.
    """
    im = ImageOps.exif_transpose(im)
    if im.mode in WIDE_GREY_MODES:
        values = np.asarray(im).astype(np.int64)
        grey = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image header, past PIL's pixel limit (None if unknown)."""
    with open(path, "rb") as fh:
        prefix = fh.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            accepted = accept(prefix) if accept is not None else True
            if not accepted or isinstance(accepted, str):
                continue
            fh.seek(0)
            try:
                return tuple(factory(fh, str(path)).size)  # type: ignore[return-value]
            except Exception:  # any plugin failure: try the next format
                continue
    return None


def _too_large(path: Path) -> str:
    """The message for an image past PIL's decompression-bomb limit (what it is, what to do)."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    size = _header_size(path)
    what = (f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size
            else "more pixels")
    return (f"image too large to decode safely: {what}, over PIL's limit of {limit:,} pixels "
            "(a guard against decompression bombs); downscale or tile the image (and its boxes) "
            "below that, or leave it out of the JSON")


def image_size(path: Path) -> tuple[int, int]:
    """Read ``(width, height)`` from an image header and check the file is not truncated.

    Args:
        path: image file.

    Returns:
        ``(width, height)`` in pixels after EXIF orientation.

    Raises:
        ValueError: unreadable, truncated or zero-size image (message without the file name).
    """
    try:
        with open_image(path) as im:
            fmt = im.format
            width, height = im.size
            orientation = im.getexif().get(0x0112)
        if fmt != "JPEG":
            with open_image(path) as im:
                im.verify()  # PNG: walks every chunk and checks CRCs, finds truncation
    except Image.DecompressionBombError:
        raise ValueError(_too_large(path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, RuntimeError) as exc:
        if path.stat().st_size == 0:
            raise ValueError("empty image file (0 bytes)") from None
        kind = "truncated" if "truncat" in str(exc).lower() else "unreadable"
        raise ValueError(f"{kind} image ({exc})") from None
    if fmt == "JPEG":
        with open(path, "rb") as fh:
            fh.seek(max(path.stat().st_size - 64, 0))
            if b"\xff\xd9" not in fh.read():
                raise ValueError("truncated JPEG (no end-of-image marker)")
    if width <= 0 or height <= 0:
        raise ValueError(f"zero-size image ({width}x{height})")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return int(width), int(height)
