"""Scenes of the synthetic demo world: what objects lie where, and how an image of them is drawn.

Boxes here are absolute pixel ``xyxy`` tuples of floats (integers in practice: objects are drawn
exactly inside their box). Every random choice comes from the ``numpy.random.Generator`` passed
in, so a scene and its image are a pure function of the generator's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

CLASS_NAMES = ("ball", "crate", "cone", "ring", "book")  # category ids 1..5 in this order
BOOK = CLASS_NAMES.index("book")
SCENE_KINDS = ("easy", "small", "shelf", "mixed")  # the planted scene kinds
BACKGROUNDS = ("gradient", "noise", "stripes", "plain")
# Each scene kind has its own setting, as COCO's kitchens, streets and shelves do, so that the
# detector's own embedding can tell the kinds apart (a kind's background is drawn from its tuple).
KIND_BACKGROUNDS = {"easy": ("gradient",), "small": ("noise",), "shelf": ("stripes",),
                    "mixed": ("plain",)}

Box = tuple[float, float, float, float]  # absolute pixel xyxy

_SIZE_RANGE = (320, 513)  # image width and height are drawn from [320, 512]
_ASPECT = {  # width / height range per class (books stand upright)
    "ball": (1.0, 1.0), "crate": (0.85, 1.15), "cone": (0.6, 0.8), "ring": (0.8, 1.25),
    "book": (0.22, 0.35),
}


@dataclass(frozen=True)
class SceneObject:
    """One object: class index into ``CLASS_NAMES``, its box (xyxy px) and its colour (RGB)."""

    label: int
    box: Box
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """One image's content, drawn back to front in ``objects`` order.

    ``runs`` lists, for shelf scenes, the object indices of each run of touching books (left to
    right); ``shelves`` the plank boxes (xyxy px) drawn under them.
    """

    kind: str
    width: int
    height: int
    background: str
    objects: tuple[SceneObject, ...]
    runs: tuple[tuple[int, ...], ...] = ()
    shelves: tuple[Box, ...] = ()


def iou_one_to_many(box: Box, others: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of one xyxy box with an ``(N, 4)`` xyxy array; returns shape ``(N,)``, in [0, 1]."""
    if len(others) == 0:
        return np.zeros(0)
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _color(rng: np.random.Generator, label: int) -> tuple[int, int, int]:
    """A colour typical of the class: red balls, brown crates, orange cones, blue-green rings."""
    name = CLASS_NAMES[label]
    jitter = rng.integers(-25, 26, size=3)
    base = {
        "ball": (210, 40, 50), "crate": (170, 120, 60), "cone": (245, 120, 20),
        "ring": (30, 110 + int(rng.integers(0, 90)), 200),
    }.get(name)
    if base is None:  # books: any of a few saturated cover colours
        palette = ((40, 50, 140), (20, 110, 60), (120, 30, 120), (230, 200, 40), (20, 20, 30))
        base = palette[int(rng.integers(0, len(palette)))]
    return tuple(int(v) for v in np.clip(np.array(base) + jitter, 0, 255))


def object_shape(rng: np.random.Generator, label: int, side: float) -> tuple[float, float]:
    """Width and height (px) of an object of ``label`` whose larger side is about ``side``."""
    lo, hi = _ASPECT[CLASS_NAMES[label]]
    aspect = float(rng.uniform(lo, hi))
    if aspect >= 1:
        return side, side / aspect
    return side * aspect, side


def _place(rng: np.random.Generator, size: tuple[int, int], wh: tuple[float, float],
           boxes: list[Box], iou_range: tuple[float, float], tries: int = 60) -> Box | None:
    """A random integer box of ``wh`` inside the image whose max IoU with ``boxes`` is in range."""
    w, h = max(round(wh[0]), 4), max(round(wh[1]), 4)
    if w >= size[0] or h >= size[1]:
        return None
    for _ in range(tries):
        x1, y1 = int(rng.integers(0, size[0] - w)), int(rng.integers(0, size[1] - h))
        box = (float(x1), float(y1), float(x1 + w), float(y1 + h))
        best = float(iou_one_to_many(box, np.array(boxes)).max()) if boxes else 0.0
        if iou_range[0] <= best <= iou_range[1]:
            return box
    return None


def _place_near(rng: np.random.Generator, size: tuple[int, int], anchor: Box,
                boxes: list[Box], max_iou: float) -> Box | None:
    """A box of the anchor's size just beside it (gap under 15% of its side), or None."""
    w, h = anchor[2] - anchor[0], anchor[3] - anchor[1]
    gap = float(rng.uniform(0.0, 0.15)) * min(w, h)
    for side in rng.permutation(4):
        dx, dy = ((w + gap, 0), (-w - gap, 0), (0, h + gap), (0, -h - gap))[int(side)]
        box = (round(anchor[0] + dx), round(anchor[1] + dy), round(anchor[2] + dx),
               round(anchor[3] + dy))
        if box[0] < 0 or box[1] < 0 or box[2] > size[0] or box[3] > size[1]:
            continue
        box = tuple(float(v) for v in box)
        if float(iou_one_to_many(box, np.array(boxes)).max()) <= max_iou:
            return box
    return None


def _scatter(rng: np.random.Generator, size: tuple[int, int], n: int,
             side_frac: tuple[float, float], iou_range: tuple[float, float], buddy_prob: float,
             labels: list[int] | None = None) -> list[SceneObject]:
    """Up to ``n`` objects at random, some placed right beside an earlier one of their class."""
    objects: list[SceneObject] = []
    boxes: list[Box] = []
    for i in range(n):
        label = labels[i] if labels else int(rng.integers(0, len(CLASS_NAMES)))
        box = None
        same = [o for o in objects if o.label == label]
        if same and rng.random() < buddy_prob:
            box = _place_near(rng, size, same[-1].box, boxes, iou_range[1])
        if box is None:
            side = float(rng.uniform(*side_frac)) * min(size)
            box = _place(rng, size, object_shape(rng, label, side), boxes, iou_range)
        if box is not None:
            objects.append(SceneObject(label, box, _color(rng, label)))
            boxes.append(box)
    return objects


def _occluded(rng: np.random.Generator, size: tuple[int, int]) -> list[SceneObject]:
    """Two large objects, the second overlapping the first strongly (IoU about 0.2-0.5)."""
    objects: list[SceneObject] = []
    for _ in range(2):
        label = int(rng.integers(0, len(CLASS_NAMES)))
        side = float(rng.uniform(0.3, 0.42)) * min(size)
        boxes = [o.box for o in objects]
        box = _place(rng, size, object_shape(rng, label, side), boxes,
                     (0.2, 0.5) if boxes else (0.0, 0.0), tries=400)
        if box is not None:
            objects.append(SceneObject(label, box, _color(rng, label)))
    return objects


def _shelf(rng: np.random.Generator, size: tuple[int, int]) -> tuple[list[SceneObject],
                                                                      list[tuple[int, ...]],
                                                                      list[Box]]:
    """Shelves of touching upright books in runs, with the odd other object in a gap."""
    w, h = size
    n_rows = int(rng.integers(1, 3 if h < 400 else 4))
    row_h = (h - 20) / n_rows
    objects: list[SceneObject] = []
    runs: list[tuple[int, ...]] = []
    shelves: list[Box] = []
    for r in range(n_rows):
        plank_top = round(10 + (r + 1) * row_h - 10)
        shelves.append((0.0, float(plank_top), float(w), float(plank_top + 10)))
        x = int(rng.integers(4, 30))
        while x < w - 40:
            if rng.random() < 0.15:  # a non-book object standing in the gap
                label = int(rng.integers(0, BOOK))
                bw, bh = object_shape(rng, label, float(rng.uniform(0.35, 0.6)) * row_h)
                bw, bh = round(bw), round(bh)
                if x + bw < w:
                    box = (float(x), float(plank_top - bh), float(x + bw), float(plank_top))
                    objects.append(SceneObject(label, box, _color(rng, label)))
                x += bw + int(rng.integers(8, 30))
                continue
            run: list[int] = []
            for _ in range(int(rng.integers(2, 8))):
                bw = round(float(rng.uniform(0.035, 0.065)) * w)
                bh = round(float(rng.uniform(0.55, 0.88)) * (row_h - 10))
                if x + bw > w - 4:
                    break
                box = (float(x), float(plank_top - bh), float(x + bw), float(plank_top))
                run.append(len(objects))
                objects.append(SceneObject(BOOK, box, _color(rng, BOOK)))
                x += bw
            if run:
                runs.append(tuple(run))
            x += int(rng.integers(int(0.05 * w), int(0.15 * w)))
    return objects, runs, shelves


def make_scene(kind: str, rng: np.random.Generator, *, occluded: bool = False) -> Scene:
    """Draw the content of one image of scene ``kind``.

    Args:
        kind: one of ``SCENE_KINDS``.
        rng: the generator every choice comes from.
        occluded: for ``easy`` scenes, objects overlap strongly instead of barely.

    Returns:
        A ``Scene`` of 320-512 px per side whose object boxes are xyxy px.
    """
    if kind not in SCENE_KINDS:
        raise ValueError(f"scene kind must be one of {SCENE_KINDS}, got {kind!r}")
    size = (int(rng.integers(*_SIZE_RANGE)), int(rng.integers(*_SIZE_RANGE)))
    choices = KIND_BACKGROUNDS[kind]
    background = choices[int(rng.integers(0, len(choices)))]
    runs: list[tuple[int, ...]] = []
    shelves: list[Box] = []
    if kind == "easy" and occluded:
        objects = _occluded(rng, size)
    elif kind == "easy":
        objects = _scatter(rng, size, 2, (0.3, 0.5), (0.0, 0.03), 0.0)
    elif kind == "small":
        objects = _scatter(rng, size, int(rng.integers(8, 17)), (0.035, 0.07), (0.0, 0.1), 0.3)
    elif kind == "mixed":
        n = int(rng.integers(4, 9))
        labels = [int(v) for v in rng.permutation(len(CLASS_NAMES))[:2]]
        labels += [int(rng.integers(0, len(CLASS_NAMES))) for _ in range(n - 2)]
        objects = _scatter(rng, size, n, (0.12, 0.28), (0.0, 0.3), 0.35, labels)
    else:
        objects, runs, shelves = _shelf(rng, size)
    return Scene(kind, size[0], size[1], background, tuple(objects), tuple(runs), tuple(shelves))
