"""Reading and validating detection ground truth: COCO JSON per split, or an ultralytics data.yaml.

Everything is checked before anything is written anywhere: the file parses and has the COCO keys,
ids are unique, every annotation points at a known image and category, every box is finite, has a
positive size and lies inside its image (1 px tolerance; boxes within it are clipped), every image
file exists and its header reads with a positive size. Problems are collected (up to
``MAX_PROBLEMS``) and raised together in one ``ValueError`` whose lines name the file and record,
for example ``train.json: annotation id 17 (image id 4): bbox [10, 5, -3, 8] has negative width``.

Boxes come out as absolute pixel ``xyxy`` float arrays; class labels as names (COCO category ids are
not contiguous, so classes are matched to the model by name, see :func:`check_class_names`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audit import constants as C
from audit.data.images import image_size

MAX_PROBLEMS = 20  # problems listed in one error message before the rest are only counted
BOX_TOLERANCE_PX = 1.0  # a box may overhang its image by this much; it is then clipped
INT64_MAX = 2**63 - 1  # annotation ids are stored as int64 (MongoDB's largest integer)


@dataclass(frozen=True)
class ImageRecord:
    """One image and its ground truth.

    Attributes:
        filepath: absolute path of the image file.
        width: image width in pixels (after EXIF orientation, as ultralytics reads it).
        height: image height in pixels.
        record: how the input names this image, e.g. ``"image id 4 (a.jpg)"``.
        boxes: ``(M, 4)`` float64 absolute pixel ``xyxy``, clipped to the image.
        labels: ``M`` class names.
        iscrowd: ``(M,)`` bool, COCO ``iscrowd`` (always False for YOLO labels).
        coco_ids: ``(M,)`` int64 COCO annotation ids (YOLO labels: 1-based line numbers).
        file_name: the COCO ``file_name`` as the JSON gives it (relative to the images root;
            what a COCO export writes back), None for YOLO labels.
    """

    filepath: Path
    width: int
    height: int
    record: str
    boxes: NDArray[np.float64]
    labels: tuple[str, ...]
    iscrowd: NDArray[np.bool_]
    coco_ids: NDArray[np.int64]
    file_name: str | None = None


@dataclass(frozen=True)
class CocoSplit:
    """The validated ground truth of one split.

    Attributes:
        split: ``"train"`` or ``"val"``.
        source: the COCO JSON (or data.yaml) it was read from.
        class_names: category names in category-id order (data.yaml: ``names`` order).
        images: one record per image.
    """

    split: str
    source: Path
    class_names: tuple[str, ...]
    images: tuple[ImageRecord, ...] = field(repr=False)

    @property
    def n_boxes(self) -> int:
        """Number of ground-truth boxes over all images."""
        return sum(len(r.labels) for r in self.images)

    @property
    def used_class_names(self) -> list[str]:
        """Class names that label at least one box, in ``class_names`` order."""
        used = {label for r in self.images for label in r.labels}
        return [n for n in self.class_names if n in used]


class Problems:
    """Collects input problems and raises them together."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: list[str] = []

    def add(self, message: str) -> None:
        """Record one problem."""
        self.items.append(message)

    def raise_if_any(self) -> None:
        """Raise one ValueError listing up to ``MAX_PROBLEMS`` problems."""
        if not self.items:
            return
        shown = self.items[:MAX_PROBLEMS]
        more = len(self.items) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise ValueError(f"{len(self.items)} problem(s) in {self.what}:\n  "
                         + "\n  ".join(shown) + tail)


def _split_name(split: str) -> str:
    """Validate a split name."""
    if split not in C.SPLITS:
        raise ValueError(f"split must be one of {C.SPLITS}, got {split!r}")
    return split


def _load_json(path: Path) -> dict:
    """Parse a COCO JSON file; a ValueError names the file."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ValueError(f"{path.name}: empty file, expected COCO JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: not COCO JSON (top level is {type(data).__name__}, "
                         "expected an object with images, annotations, categories)")
    missing = [k for k in ("images", "annotations", "categories")
               if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"{path.name}: not COCO JSON: missing or non-list key(s) "
                         + ", ".join(repr(k) for k in missing))
    return data


def is_id(value: object) -> bool:
    """True for an int id (bools excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _coco_categories(data: dict, name: str, problems: Problems) -> dict[int, str]:
    """Category id -> name, checking ids and names are unique."""
    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        cid, cname = (cat.get("id"), cat.get("name")) if isinstance(cat, dict) else (None, None)
        if not is_id(cid) or not isinstance(cname, str) or not cname:
            problems.add(f"{name}: categories[{i}]: needs an int 'id' and a non-empty 'name'")
        elif cid in categories:
            problems.add(f"{name}: category id {cid}: duplicate id")
        elif cname in categories.values():
            problems.add(f"{name}: category id {cid}: duplicate name {cname!r}")
        else:
            categories[cid] = cname
    return dict(sorted(categories.items()))


def _coco_images(data: dict, name: str, images_dir: Path,
                 problems: Problems) -> dict[int, tuple[Path, int, int]]:
    """Image id -> (path, width, height), checking ids, files and headers."""
    images: dict[int, tuple[Path, int, int]] = {}
    seen_files: set[str] = set()
    for i, img in enumerate(data["images"]):
        iid, fname = ((img.get("id"), img.get("file_name")) if isinstance(img, dict)
                      else (None, None))
        if not is_id(iid) or not isinstance(fname, str) or not fname:
            problems.add(f"{name}: images[{i}]: needs an int 'id' and a 'file_name'")
            continue
        rec = f"{name}: image id {iid} ({fname})"
        if iid in images:
            problems.add(f"{rec}: duplicate image id")
            continue
        if fname in seen_files:
            problems.add(f"{rec}: file_name listed twice")
            continue
        seen_files.add(fname)
        path = (images_dir / fname).resolve()
        if not path.is_file():
            problems.add(f"{rec}: image file not found at {path}")
            continue
        try:
            width, height = image_size(path)
        except ValueError as exc:
            problems.add(f"{rec}: {exc}")
            continue
        declared = _declared_size(img)
        if declared is None:
            problems.add(f"{rec}: width and height must be integers (pixels), got width="
                         f"{img.get('width')!r}, height={img.get('height')!r}")
            continue
        if all(v is not None for v in declared) and declared != (width, height):
            problems.add(f"{rec}: JSON says {declared[0]}x{declared[1]}, "
                         f"the file is {width}x{height}")
            continue
        images[iid] = (path, width, height)
    return images


def _as_pixels(value: object) -> int | None:
    """A COCO width / height as an int: ints, integral floats and numeric strings ("420")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _declared_size(img: dict) -> tuple[int | None, int | None] | None:
    """The image record's ``(width, height)`` (None for an absent one); None when one given is
    not an integer."""
    out = []
    for key in ("width", "height"):
        value = img.get(key)
        out.append(None if value is None else _as_pixels(value))
        if value is not None and out[-1] is None:
            return None
    return out[0], out[1]


def check_box(xyxy: Sequence[float], width: int, height: int) -> str | None:
    """Why an absolute xyxy box is unusable in a width x height image, or None."""
    x1, y1, x2, y2 = xyxy
    if not all(math.isfinite(v) for v in xyxy):
        return "is not finite"
    if x2 - x1 < 0:
        return "has negative width"
    if y2 - y1 < 0:
        return "has negative height"
    if x2 - x1 == 0 or y2 - y1 == 0:
        return "has zero size"
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return f"lies outside the {width}x{height} image"
    return None


def _coco_annotation(ann: object, i: int, name: str, categories: dict[int, str],
                     images: dict[int, tuple[Path, int, int]], all_image_ids: set[int],
                     problems: Problems) -> tuple[int, int, list[float], str, bool] | None:
    """Validate one annotation; (ann id, image id, xyxy, class name, iscrowd) or None."""
    if not isinstance(ann, dict) or not is_id(ann.get("id")):
        problems.add(f"{name}: annotations[{i}]: needs an int 'id'")
        return None
    aid, iid, cid = ann["id"], ann.get("image_id"), ann.get("category_id")
    rec = f"{name}: annotation id {aid} (image id {iid})"
    if not -INT64_MAX - 1 <= aid <= INT64_MAX:
        problems.add(f"{rec}: id does not fit a 64-bit integer (ids must lie within "
                     f"+-{INT64_MAX}); renumber the annotations")
        return None
    if iid not in all_image_ids:
        problems.add(f"{rec}: unknown image id {iid}")
        return None
    if cid not in categories:
        problems.add(f"{rec}: unknown category id {cid}")
        return None
    bbox = ann.get("bbox")
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
        problems.add(f"{rec}: bbox {bbox!r} is not a list of 4 numbers [x, y, w, h]")
        return None
    if iid not in images:  # the image itself had a problem, already reported
        return None
    _, width, height = images[iid]
    x, y, w, h = (float(v) for v in bbox)
    xyxy = [x, y, x + w, y + h]
    why = check_box(xyxy, width, height)
    if why is not None:
        problems.add(f"{rec}: bbox {bbox} {why}")
        return None
    return aid, iid, xyxy, categories[cid], bool(ann.get("iscrowd", 0))


def build_record(path: Path, width: int, height: int, record: str,
                 rows: list[tuple[list[float], str, bool, int]],
                 file_name: str | None = None) -> ImageRecord:
    """Build an ImageRecord from (xyxy, label, iscrowd, record id) rows, clipping boxes."""
    boxes = np.array([r[0] for r in rows], dtype=np.float64).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return ImageRecord(
        filepath=path, width=width, height=height, record=record, boxes=boxes,
        labels=tuple(r[1] for r in rows), iscrowd=np.array([r[2] for r in rows], dtype=bool),
        coco_ids=np.array([r[3] for r in rows], dtype=np.int64), file_name=file_name)


def read_coco_split(json_path: str | Path, images_dir: str | Path, split: str) -> CocoSplit:
    """Read and validate one COCO detection JSON.

    Args:
        json_path: COCO JSON with ``images``, ``annotations``, ``categories``; ``bbox`` is
            absolute pixel ``[x, y, w, h]``.
        images_dir: folder that ``file_name`` is relative to.
        split: ``"train"`` or ``"val"``.

    Returns:
        The split, boxes as absolute pixel ``xyxy`` (clipped to the image).

    Raises:
        ValueError: every problem found (up to ``MAX_PROBLEMS``), each naming file and record.

    Example:
        >>> train = read_coco_split("world/train.json", "world/images", "train")  # doctest: +SKIP
    """
    split = _split_name(split)
    json_path, images_dir = Path(json_path), Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"images folder {images_dir} does not exist")
    data = _load_json(json_path)
    name = json_path.name
    problems = Problems(name)
    categories = _coco_categories(data, name, problems)
    images = _coco_images(data, name, images_dir, problems)
    all_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    rows: dict[int, list[tuple[list[float], str, bool, int]]] = {iid: [] for iid in images}
    seen: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        if isinstance(ann, dict) and is_id(ann.get("id")) and ann["id"] in seen:
            problems.add(f"{name}: annotation id {ann['id']}: duplicate annotation id")
            continue
        checked = _coco_annotation(ann, i, name, categories, images, all_ids, problems)
        if isinstance(ann, dict) and is_id(ann.get("id")):
            seen.add(ann["id"])
        if checked is not None:
            aid, iid, xyxy, label, crowd = checked
            rows[iid].append((xyxy, label, crowd, aid))
    problems.raise_if_any()
    if not images:
        warnings.warn(f"{name}: no images", stacklevel=2)
    file_names = {img["id"]: img["file_name"] for img in data["images"]
                  if isinstance(img, dict) and img.get("id") in images}
    records = tuple(build_record(p, w, h, f"{name}: image id {iid} ({p.name})", rows[iid],
                                 file_name=file_names[iid])
                    for iid, (p, w, h) in images.items())
    return CocoSplit(split, json_path.resolve(), tuple(categories.values()), records)



def check_class_names(dataset_names: Iterable[str], model_names: Sequence[str], *,
                      source: str = "dataset", model: str = "the model") -> dict[str, int]:
    """Map dataset class names onto the model's class indices, by name.

    Args:
        dataset_names: class names used by the ground truth.
        model_names: the model's class names, index = class id.
        source: what to name in the error (a file name).
        model: how the error names the model (its checkpoint's file name).

    Returns:
        ``{dataset name: model class id}``.

    Raises:
        ValueError: some names are not classes of the model; lists them and the model's names.

    Example:
        >>> check_class_names(["book", "cup"], ["cup", "book", "lamp"])
        {'book': 1, 'cup': 0}
    """
    index = {n: i for i, n in enumerate(model_names)}
    names = list(dict.fromkeys(dataset_names))
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"{source}: class name(s) {', '.join(map(repr, unknown))} are not classes "
                         f"of {model}; the model knows: {', '.join(model_names)}")
    return {n: index[n] for n in names}
