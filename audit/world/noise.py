"""Labels of the demo world: book conventions on shelves, then injected label errors.

Starting from the clean labels (one box per object, books one box per book), each shelf image gets
a labelling convention (``individual``, ``group``: one box per run of touching books, ``partial``:
some books left unlabelled), then errors are injected at a given share of the clean boxes:
``drop`` (box removed), ``flip`` (wrong class), ``shift`` (box moved/resized to IoU 0.4-0.7 with
the true box), ``spawn`` (box where no object is) and ``merge`` (2+ adjacent same-class boxes
replaced by their union). Boxes are absolute pixel xyxy tuples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from audit.world.scene import BOOK, CLASS_NAMES, Box, iou_one_to_many, object_shape

CONVENTIONS = ("individual", "group", "partial")  # how books on a shelf image are labelled
ERROR_TYPES = ("drop", "flip", "shift", "spawn", "merge")  # injected error kinds, equal shares
SHIFT_IOU = (0.4, 0.7)  # IoU range of a shifted box with its true box
GROUP_CROWD_PROB = 0.2  # share of group boxes marked iscrowd=1 (the rest iscrowd=0, as COCO often)
PARTIAL_DROP_PROB = 0.4  # share of books left unlabelled on a partial-convention image
MERGE_GAP = 0.25  # boxes closer than this fraction of their smaller side count as adjacent
MERGE_THIRD_PROB = 0.3  # chance a merge takes in a third adjacent box when one exists
SPAWN_MAX_IOS = 0.05  # a spawned box covers at most this share of itself with any object


@dataclass
class LabelBox:
    """One annotation: class index, xyxy px box, the clean annotation ids it stands for.

    ``clean_ids`` is one id for a box that labels one object, several for a group or merged box,
    none for a spawned box. ``ann_id`` is filled in when the file's ids are assigned.
    """

    label: int
    box: Box
    clean_ids: tuple[int, ...]
    iscrowd: int = 0
    ann_id: int = 0


@dataclass
class ImageLabels:
    """The clean and the noisy labels of one image (``noisy`` is edited while errors go in)."""

    image_id: int
    split: str
    width: int
    height: int
    convention: str | None
    clean: list[LabelBox]
    noisy: list[LabelBox] = field(default_factory=list)


@dataclass
class ErrorRecord:
    """One injected error; ``noisy`` holds the boxes it left in the noisy file (none for drop)."""

    split: str
    image_id: int
    error_type: str
    clean: list[LabelBox]
    noisy: list[LabelBox]


def union(boxes: list[Box]) -> Box:
    """The smallest xyxy box containing every box of ``boxes``."""
    arr = np.asarray(boxes, dtype=np.float64)
    return (float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()),
            float(arr[:, 3].max()))


def apply_convention(clean: list[LabelBox], runs: tuple[tuple[int, ...], ...], convention: str,
                     rng: np.random.Generator) -> list[LabelBox]:
    """The labels of a shelf image under ``convention``; ``runs`` index into ``clean``."""
    if convention == "individual":
        return list(clean)
    if convention == "group":
        grouped = {i for run in runs if len(run) > 1 for i in run}
        out = [b for i, b in enumerate(clean) if i not in grouped]
        for run in runs:
            if len(run) > 1:
                box = union([clean[i].box for i in run])
                crowd = int(rng.random() < GROUP_CROWD_PROB)
                out.append(LabelBox(BOOK, box, tuple(clean[i].clean_ids[0] for i in run), crowd))
        return out
    books = [i for i, b in enumerate(clean) if b.label == BOOK]
    dropped = {i for i in books if rng.random() < PARTIAL_DROP_PROB}
    if books and not dropped:
        dropped = {books[int(rng.integers(0, len(books)))]}
    if books and dropped.issuperset(books):
        dropped.discard(books[0])
    return [b for i, b in enumerate(clean) if i not in dropped]


def _shifted(rng: np.random.Generator, box: Box, width: int, height: int) -> Box | None:
    """A moved and resized copy of ``box`` inside the image with IoU in ``SHIFT_IOU``, or None."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    lo, hi = SHIFT_IOU[0] + 0.02, SHIFT_IOU[1] - 0.02
    for _ in range(200):
        sx, sy = np.exp(rng.uniform(-0.45, 0.45, size=2))
        dx, dy = rng.uniform(-0.35, 0.35, size=2) * (w, h)
        nw, nh = w * sx, h * sy
        new = (round(max(0.0, cx + dx - nw / 2), 2), round(max(0.0, cy + dy - nh / 2), 2),
               round(min(float(width), cx + dx + nw / 2), 2),
               round(min(float(height), cy + dy + nh / 2), 2))
        if new[2] - new[0] < 2 or new[3] - new[1] < 2:
            continue
        if lo <= float(iou_one_to_many(box, np.array([new]))[0]) <= hi:
            return new
    return None


ShapeFn = Callable[[np.random.Generator, int, float], tuple[float, float]]  # (rng, label, side)


def _spawned(rng: np.random.Generator, img: ImageLabels, n_classes: int = len(CLASS_NAMES),
             shape: ShapeFn = object_shape) -> LabelBox | None:
    """A box of a random class, sized like the image's objects, over empty background."""
    taken = np.array([b.box for b in img.clean + img.noisy], dtype=np.float64).reshape(-1, 4)
    sides = np.sqrt((taken[:, 2] - taken[:, 0]) * (taken[:, 3] - taken[:, 1]))
    typical = float(np.median(sides)) if len(sides) else 0.2 * min(img.width, img.height)
    label = int(rng.integers(0, n_classes))
    for _ in range(100):
        w, h = shape(rng, label, typical * float(rng.uniform(0.8, 1.25)))
        w, h = max(round(w), 4), max(round(h), 4)
        if w >= img.width or h >= img.height:
            continue
        x1, y1 = int(rng.integers(0, img.width - w)), int(rng.integers(0, img.height - h))
        ix = np.clip(np.minimum(x1 + w, taken[:, 2]) - np.maximum(x1, taken[:, 0]), 0, None)
        iy = np.clip(np.minimum(y1 + h, taken[:, 3]) - np.maximum(y1, taken[:, 1]), 0, None)
        if len(taken) == 0 or float((ix * iy).max()) <= SPAWN_MAX_IOS * w * h:
            return LabelBox(label, (float(x1), float(y1), float(x1 + w), float(y1 + h)), ())
    return None


def _adjacent(a: LabelBox, b: LabelBox) -> bool:
    """Same class and the gap between the boxes is under ``MERGE_GAP`` of the smaller side."""
    if a.label != b.label:
        return False
    gx = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    gy = max(a.box[1], b.box[1]) - min(a.box[3], b.box[3])
    side = min(a.box[2] - a.box[0], a.box[3] - a.box[1], b.box[2] - b.box[0], b.box[3] - b.box[1])
    return max(gx, gy) <= MERGE_GAP * side


class _Injector:
    """Draws error targets in one split without touching any clean box twice."""

    def __init__(self, images: list[ImageLabels], rng: np.random.Generator, *,
                 n_classes: int = len(CLASS_NAMES), shape: ShapeFn = object_shape) -> None:
        self.images, self.rng, self.touched = images, rng, set()
        self.n_classes, self.shape = n_classes, shape
        self.singles = [(img, b) for img in images for b in img.noisy if len(b.clean_ids) == 1]
        self.singles = [self.singles[i] for i in rng.permutation(len(self.singles))]
        pairs = [(img, a, b) for img in images if img.convention != "group"
                 for i, a in enumerate(img.noisy) for b in img.noisy[i + 1:]
                 if len(a.clean_ids) == len(b.clean_ids) == 1 and _adjacent(a, b)]
        self.pairs = [pairs[i] for i in rng.permutation(len(pairs))]

    def _free(self, box: LabelBox) -> bool:
        """Whether no error has used this single-object box yet."""
        return box.clean_ids[0] not in self.touched

    def _replace(self, img: ImageLabels, old: list[LabelBox], new: LabelBox | None) -> None:
        """Swap ``old`` boxes of ``img.noisy`` for ``new`` (kept in the first one's place)."""
        where = next(i for i, b in enumerate(img.noisy) if b is old[0])
        img.noisy[:] = [b for b in img.noisy if all(b is not o for o in old)]
        if new is not None:
            img.noisy.insert(where, new)
        self.touched.update(c for o in old for c in o.clean_ids)

    def single(self, error_type: str) -> ErrorRecord | None:
        """A drop, flip or shift on a box not used yet; None when no candidate is left."""
        while self.singles:
            img, box = self.singles.pop()
            if not self._free(box):
                continue
            if error_type == "drop":
                new = None
            elif error_type == "flip":
                others = [c for c in range(self.n_classes) if c != box.label]
                if not others:
                    return None
                new = LabelBox(others[int(self.rng.integers(0, len(others)))], box.box,
                               box.clean_ids, box.iscrowd)
            else:
                shifted = _shifted(self.rng, box.box, img.width, img.height)
                if shifted is None:
                    continue
                new = LabelBox(box.label, shifted, box.clean_ids, box.iscrowd)
            self._replace(img, [box], new)
            return ErrorRecord(img.split, img.image_id, error_type, [box],
                               [new] if new is not None else [])
        return None

    def merge(self) -> ErrorRecord | None:
        """Two (sometimes three) adjacent same-class boxes replaced by their union."""
        while self.pairs:
            img, a, b = self.pairs.pop()
            if not (self._free(a) and self._free(b)) or a not in img.noisy or b not in img.noisy:
                continue
            members = [a, b]
            if self.rng.random() < MERGE_THIRD_PROB:
                third = [c for c in img.noisy if len(c.clean_ids) == 1 and self._free(c)
                         and all(c is not m for m in members)
                         and (_adjacent(c, a) or _adjacent(c, b))]
                members += third[:1]
            new = LabelBox(a.label, union([m.box for m in members]),
                           tuple(m.clean_ids[0] for m in members))
            self._replace(img, members, new)
            return ErrorRecord(img.split, img.image_id, "merge", members, [new])
        return None

    def spawn(self) -> ErrorRecord | None:
        """A box of a random class over empty background in a random image."""
        for _ in range(20):
            img = self.images[int(self.rng.integers(0, len(self.images)))]
            new = _spawned(self.rng, img, self.n_classes, self.shape)
            if new is not None:
                img.noisy.append(new)
                return ErrorRecord(img.split, img.image_id, "spawn", [], [new])
        return None


def inject_errors(images: list[ImageLabels], noise_rate: float,
                  rng: np.random.Generator, *, n_classes: int = len(CLASS_NAMES),
                  error_types: Sequence[str] = ERROR_TYPES,
                  shape: ShapeFn = object_shape) -> list[ErrorRecord]:
    """Inject errors into ``img.noisy`` of every image, ``noise_rate`` of each split's boxes.

    Args:
        images: every image of the world; ``noisy`` starts as the convention's labels.
        noise_rate: errors per clean box in each split, in [0, 1); the count is split into equal
            shares of ``error_types``.
        rng: the generator every choice comes from.
        n_classes: classes a flip or a spawn may take (a flip needs two).
        error_types: the kinds injected (a subset of ``ERROR_TYPES``).
        shape: ``(rng, label, side) -> (w, h)`` of a spawned box of ``label`` whose larger side
            is about ``side`` (px).

    Returns:
        One record per injected error, in the order they were made (per split, per type).
    """
    records: list[ErrorRecord] = []
    for split in sorted({img.split for img in images}):
        imgs = [img for img in images if img.split == split]
        n_errors = round(noise_rate * sum(len(img.clean) for img in imgs))
        wanted = {t: sum(1 for i in range(n_errors) if error_types[i % len(error_types)] == t)
                  for t in error_types}
        injector = _Injector(imgs, rng, n_classes=n_classes, shape=shape)
        for error_type in [t for t in ("merge", "shift", "flip", "drop", "spawn") if t in wanted]:
            for _ in range(wanted[error_type]):
                if error_type == "merge":
                    record = injector.merge()
                elif error_type == "spawn":
                    record = injector.spawn()
                else:
                    record = injector.single(error_type)
                if record is None:
                    warnings.warn(f"{split}: no candidate left for a {error_type!r} error; "
                                  f"injected fewer than {wanted[error_type]}", stacklevel=2)
                    break
                records.append(record)
    return records
