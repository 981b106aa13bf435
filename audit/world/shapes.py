"""A world drawn by another project's generator: scikit-image's ``skimage.draw.random_shapes``.

The demo world was drawn by this repo, and its defaults were first chosen on it; this one was
not. Each image is one call of scikit-image's generator (rectangles, circles, triangles and
ellipses of random colour on white, its own placement rules), its returned extents are the clean
boxes, and label errors (drop, flip, shift, spawn, merge) go in at ``noise_rate`` of each split's
boxes by the demo world's protocol (:func:`audit.world.noise.inject_errors`). Files are those of
every world (:mod:`audit.world.files`). Same arguments, same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from audit import constants as C
from audit.world.files import (
    WorldSummary,
    assign_noisy_ids,
    error_counts,
    world_info_version,
    write_world,
)
from audit.world.noise import ERROR_TYPES, ImageLabels, LabelBox, inject_errors

SHAPE_CLASSES = ("rectangle", "circle", "triangle", "ellipse")  # scikit-image's shape names
SHAPES_IMAGE = 192  # image side, px
SHAPES_PER_IMAGE = (3, 8)  # min and max shapes scikit-image is asked for per image
SHAPE_SIZE = (14, 60)  # min and max shape size, px
SHAPES_VAL_SHARE = 0.25  # images in val
SHAPES_NOISE_RATE = 0.10  # share of each split's boxes given an error (as the demo world)
SHAPES_VERSION = 2  # bumped when the same arguments write a different world (2: boxes clipped)


def _shape_box(rng: np.random.Generator, label: int, side: float) -> tuple[float, float]:
    """A spawned box's width and height: aspect 0.6-1.6, larger side ``side``."""
    aspect = float(rng.uniform(0.6, 1.6))
    return (side, side / aspect) if aspect >= 1 else (side * aspect, side)


def _draw(seed: int, index: int) -> tuple[Image.Image, list[LabelBox]]:
    """One image of scikit-image's generator and its boxes (px xyxy, ends exclusive)."""
    from skimage.draw import random_shapes

    image, found = random_shapes(
        (SHAPES_IMAGE, SHAPES_IMAGE), max_shapes=SHAPES_PER_IMAGE[1],
        min_shapes=SHAPES_PER_IMAGE[0], min_size=SHAPE_SIZE[0], max_size=SHAPE_SIZE[1],
        rng=np.random.default_rng([seed, index, 3]))
    boxes = []
    for name, ((r0, r1), (c0, c1)) in found:
        # a triangle's extent can reach past the image edge (the drawing is clipped): clip it
        box = (float(max(c0, 0)), float(max(r0, 0)), float(min(c1, SHAPES_IMAGE)),
               float(min(r1, SHAPES_IMAGE)))
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            boxes.append(LabelBox(SHAPE_CLASSES.index(name), box, ()))
    return Image.fromarray(image), boxes


def generate_shapes_world(out: str | Path, *, n_images: int = 400, seed: int = C.SEED,
                          noise_rate: float = SHAPES_NOISE_RATE,
                          progress: bool = True) -> WorldSummary:
    """Write the shapes world to ``out`` (replacing a previous world there), atomically.

    Args:
        out: target folder; absent, empty, or a previous world.
        n_images: images over both splits (>= 4).
        seed: the seed every choice derives from.
        noise_rate: errors per clean box in each split, in [0, 1).
        progress: show a tqdm bar while images are written.

    Example:
        >>> print(generate_shapes_world("shapes", n_images=40, progress=False))  # doctest: +SKIP
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 4:
        raise ValueError(f"n_images must be an int >= 4, got {n_images!r}")
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate!r}")
    n_val = max(1, round(SHAPES_VAL_SHARE * n_images))
    val = set(np.random.default_rng([seed, 0]).permutation(n_images)[:n_val].tolist())
    pictures, labels, next_id = [], [], 1
    for i in range(n_images):
        picture, boxes = _draw(seed, i)
        clean = [LabelBox(b.label, b.box, (next_id + k,), 0, next_id + k)
                 for k, b in enumerate(boxes)]
        next_id += len(clean)
        pictures.append(picture)
        labels.append(ImageLabels(i + 1, "val" if i in val else "train", SHAPES_IMAGE,
                                  SHAPES_IMAGE, None, clean, list(clean)))
    records = inject_errors(labels, noise_rate, np.random.default_rng([seed, 1]),
                            n_classes=len(SHAPE_CLASSES), shape=_shape_box)
    assign_noisy_ids(labels)
    write_world(Path(out), labels, pictures, [{"scene": "shapes"}] * len(labels), records,
                class_names=SHAPE_CLASSES, version=f"shapes-{SHAPES_VERSION}",
                description="scikit-image random_shapes", progress=progress)
    return WorldSummary("shapes world", Path(out), *error_counts(labels, records, ERROR_TYPES))


def current_shapes_world(out: str | Path, *, seed: int = C.SEED, progress: bool = True,
                         **kwargs) -> Path:
    """``out`` when it holds a shapes world of this version, else one written there now."""
    out = Path(out)
    if world_info_version(out) != f"shapes-{SHAPES_VERSION}":
        generate_shapes_world(out, seed=seed, progress=progress, **kwargs)
    return out
